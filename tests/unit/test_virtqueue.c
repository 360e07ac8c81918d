/* Split virtqueues (src/hw/virtio/virtqueue.c) driven by the simulated
 * driver (virtio_driver.h) against an echo device: round trips (direct,
 * indirect, mixed), 16-bit index wrap-around, notification suppression in
 * both directions with and without EVENT_IDX, and hostile rings — each
 * violation makes virtq_pop return -EINVAL without consuming anything, and
 * the device (through virtio_queue_pop) enters NEEDS_RESET with a config
 * interrupt. */
#include "test.h"
#include "virtio_driver.h"

#include <stdlib.h>
#include <sys/mman.h>

/* ---- the echo device: copies what it reads into the writable buffers ---- */

struct echo {
    unsigned processed, errors;
    struct virtq_elem elem;
};

static size_t echo_copy(struct virtq_elem *e)
{
    size_t done = 0;
    unsigned oi = 0, ii = e->out_num;
    size_t ooff = 0, ioff = 0;
    while (oi < e->out_num && ii < e->out_num + e->in_num) {
        struct iovec *o = &e->iov[oi], *in = &e->iov[ii];
        size_t n = o->iov_len - ooff;
        if (in->iov_len - ioff < n)
            n = in->iov_len - ioff;
        memcpy((uint8_t *)in->iov_base + ioff, (uint8_t *)o->iov_base + ooff, n);
        done += n;
        ooff += n;
        ioff += n;
        if (ooff == o->iov_len) {
            oi++;
            ooff = 0;
        }
        if (ioff == in->iov_len) {
            ii++;
            ioff = 0;
        }
    }
    return done;
}

static void echo_queue_notify(struct virtio_dev *vd, unsigned q)
{
    struct echo *e = vd->opaque;
    /* The canonical device loop: no kicks while draining, then re-enable
     * and re-check for buffers that raced with the re-enable. */
    do {
        virtio_queue_set_notification(vd, q, false);
        for (;;) {
            int rc = virtio_queue_pop(vd, q, &e->elem);
            if (rc < 0) {
                if (rc == -EINVAL)
                    e->errors++;
                return;
            }
            if (rc == 0)
                break;
            size_t n = echo_copy(&e->elem);
            if (virtio_queue_push(vd, q, &e->elem, (uint32_t)n) < 0) {
                e->errors++;
                return;
            }
            e->processed++;
        }
    } while (virtio_queue_set_notification(vd, q, true));
    virtio_notify(vd, q);
}

static uint64_t echo_features(struct virtio_dev *vd)
{
    return 0;
}

static const struct virtio_device_ops echo_ops_template = {
    .device_id = 0x7f,
    .name = "echo",
    .num_queues = 1,
    .queue_max_size = 256,
    .features = echo_features,
    .queue_notify = echo_queue_notify,
};

/* ---- fixture ---- */

struct fx {
    struct guest_mem mem;
    struct virtio_device_ops ops;
    struct virtio_dev vd;
    struct vdrv drv;
    struct echo echo;
};

/* Guest RAM: 8 MiB in one region, or (two_regions) 1 MiB at 0 and 1 MiB at
 * 4 GiB with the "PCI hole" between — built by hand, gmem_init would need
 * more than 3 GiB for that. */
static struct fx *fx_new_ex(uint64_t features, uint16_t qmax, bool two_regions)
{
    struct fx *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    if (two_regions) {
        size_t sz = 2 << 20;
        void *p = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            free(f);
            return NULL;
        }
        f->mem.base = p;
        f->mem.map_size = sz;
        f->mem.ram_size = sz;
        f->mem.regions[0] = (struct gmem_region){ 0, 1 << 20, p };
        f->mem.regions[1] = (struct gmem_region){ GMEM_HIGH_BASE, 1 << 20, (uint8_t *)p + (1 << 20) };
        f->mem.n = 2;
    } else if (gmem_init(&f->mem, 8 << 20) < 0) {
        free(f);
        return NULL;
    }
    f->ops = echo_ops_template;
    f->ops.queue_max_size = qmax;
    if (virtio_dev_init(&f->vd, &f->ops, &f->echo, &f->mem) < 0 ||
        vdrv_init(&f->drv, &f->vd, features | (1ULL << VIRTIO_F_VERSION_1)) < 0) {
        vdrv_destroy(&f->drv);
        gmem_destroy(&f->mem);
        free(f);
        return NULL;
    }
    return f;
}

static struct fx *fx_new(uint64_t features)
{
    return fx_new_ex(features, 256, false);
}

static void fx_free(struct fx *f)
{
    if (!f)
        return;
    vdrv_destroy(&f->drv);
    virtio_dev_destroy(&f->vd);
    gmem_destroy(&f->mem);
    free(f);
}

#define F_INDIRECT (1ULL << VIRTIO_F_INDIRECT_DESC)
#define F_EVENT_IDX (1ULL << VIRTIO_F_EVENT_IDX)

/* One request: out = `msg`, in = a buffer of in_len; returns the head. */
static int send_echo(struct fx *f, const char *msg, uint32_t in_len, bool indirect,
                     uint64_t *in_gpa)
{
    size_t n = strlen(msg);
    struct vdrv_sg out = { vdrv_alloc_copy(&f->drv, msg, n), (uint32_t)n };
    struct vdrv_sg in = { vdrv_alloc(&f->drv, in_len, 8), in_len };
    *in_gpa = in.gpa;
    return vdrv_add_chain_ex(&f->drv, 0, &out, 1, &in, 1, indirect);
}

/* A hostile chain was published on queue 0: the queue rejects it without
 * consuming it, and the device goes to NEEDS_RESET with one config
 * interrupt and nothing processed. */
#define EXPECT_BROKEN(f)                                                         \
    do {                                                                         \
        struct virtq *_vq = &(f)->vd.vqs[0];                                     \
        uint16_t _before = _vq->s.last_avail_idx;                                \
        _vq->error = NULL;                                                       \
        CHECK_EQ(virtq_pop(_vq, &(f)->echo.elem), -EINVAL);                      \
        CHECK_EQ(_vq->s.last_avail_idx, _before);                                \
        CHECK(_vq->error != NULL);                                               \
        if (getenv("VQ_VERBOSE"))                                                \
            printf("    rejected: %s\n", _vq->error);                             \
        vdrv_kick_force(&(f)->drv, 0);                                           \
        CHECK_EQ((f)->echo.errors, 1);                                           \
        CHECK(virtio_get_status(&(f)->vd) & VIRTIO_STATUS_NEEDS_RESET);          \
        CHECK_EQ((f)->drv.config_irqs, 1);                                       \
        CHECK_EQ((f)->echo.processed, 0);                                        \
        CHECK_EQ((f)->drv.irqs[0], 0);                                           \
        /* Broken stays broken: another kick does nothing, logs nothing. */     \
        vdrv_kick_force(&(f)->drv, 0);                                           \
        CHECK_EQ((f)->echo.errors, 1);                                           \
        CHECK_EQ((f)->drv.config_irqs, 1);                                       \
    } while (0)

/* ---- round trips ---- */

TEST(round_trip_direct)
{
    struct fx *f = fx_new(0);
    CHECK(f);
    struct vdrv_sg out[2] = {
        { vdrv_alloc_copy(&f->drv, "hello ", 6), 6 },
        { vdrv_alloc_copy(&f->drv, "world", 5), 5 },
    };
    struct vdrv_sg in[2] = { { vdrv_alloc(&f->drv, 4, 8), 4 }, { vdrv_alloc(&f->drv, 16, 8), 16 } };
    int head = vdrv_add_chain(&f->drv, 0, out, 2, in, 2);
    CHECK(head >= 0);
    CHECK(vdrv_kick(&f->drv, 0));
    CHECK_EQ(f->echo.processed, 1);
    CHECK_EQ(f->echo.elem.out_num, 2);
    CHECK_EQ(f->echo.elem.in_num, 2);
    CHECK_EQ(f->echo.elem.out_len, 11);
    CHECK_EQ(f->echo.elem.in_len, 20);
    uint16_t id;
    uint32_t len;
    CHECK_EQ(vdrv_get_used(&f->drv, 0, &id, &len), 1);
    CHECK_EQ(id, head);
    CHECK_EQ(len, 11);
    CHECK(memcmp(vdrv_ptr(&f->drv, in[0].gpa, 4), "hell", 4) == 0);
    CHECK(memcmp(vdrv_ptr(&f->drv, in[1].gpa, 7), "o world", 7) == 0);
    CHECK_EQ(vdrv_get_used(&f->drv, 0, &id, &len), 0);
    CHECK_EQ(f->drv.irqs[0], 1);
    CHECK_EQ(f->echo.errors, 0);
    CHECK_EQ(f->drv.q[0].num_free, 256);
    fx_free(f);
}

TEST(round_trip_indirect)
{
    struct fx *f = fx_new(F_INDIRECT);
    CHECK(f);
    CHECK(f->vd.vqs[0].indirect);
    uint64_t in_gpa;
    int head = send_echo(f, "indirect!", 32, true, &in_gpa);
    CHECK(head >= 0);
    CHECK_EQ(f->drv.q[0].num_free, 255);     /* one descriptor in the ring */
    CHECK(vdrv_kick(&f->drv, 0));
    uint16_t id;
    uint32_t len;
    CHECK_EQ(vdrv_get_used(&f->drv, 0, &id, &len), 1);
    CHECK_EQ(id, head);
    CHECK_EQ(len, 9);
    CHECK(memcmp(vdrv_ptr(&f->drv, in_gpa, 9), "indirect!", 9) == 0);
    CHECK_EQ(f->echo.errors, 0);
    fx_free(f);
}

/* §2.7.5.3: direct descriptors may precede the (last) indirect one; the
 * WRITE flag of the descriptor referring to a table is ignored. */
TEST(direct_then_indirect)
{
    struct fx *f = fx_new(F_INDIRECT);
    CHECK(f);
    uint64_t a = vdrv_alloc_copy(&f->drv, "abc", 3), b = vdrv_alloc_copy(&f->drv, "def", 3);
    uint64_t out = vdrv_alloc(&f->drv, 8, 8), table = vdrv_alloc(&f->drv, 32, 16);
    struct virtq_desc t[2] = {
        { b, 3, VIRTQ_DESC_F_NEXT, 1 },
        { out, 8, VIRTQ_DESC_F_WRITE, 0 },
    };
    memcpy(vdrv_ptr(&f->drv, table, 32), t, 32);
    vdrv_desc_write(&f->drv, 0, 10, a, 3, VIRTQ_DESC_F_NEXT, 11);
    vdrv_desc_write(&f->drv, 0, 11, table, 32, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_WRITE, 0);
    vdrv_avail_push_raw(&f->drv, 0, 10);
    struct virtq *vq = &f->vd.vqs[0];
    struct virtq_elem *e = &f->echo.elem;
    CHECK_EQ(virtq_pop(vq, e), 1);
    CHECK_EQ(e->head, 10);
    CHECK_EQ(e->out_num, 2);
    CHECK_EQ(e->in_num, 1);
    CHECK_EQ(echo_copy(e), 6);
    CHECK_EQ(virtq_push(vq, e, 6), 0);
    CHECK(memcmp(vdrv_ptr(&f->drv, out, 6), "abcdef", 6) == 0);
    CHECK_EQ(*vdrv_used_word(&f->drv, 0, 2), 1);
    fx_free(f);
}

/* Zero-length descriptors are accepted, whatever their address, and give no
 * iovec. */
TEST(zero_length_descriptor)
{
    struct fx *f = fx_new(0);
    CHECK(f);
    uint64_t a = vdrv_alloc_copy(&f->drv, "xy", 2), out = vdrv_alloc(&f->drv, 2, 8);
    vdrv_desc_write(&f->drv, 0, 0, ~0ULL, 0, VIRTQ_DESC_F_NEXT, 1);
    vdrv_desc_write(&f->drv, 0, 1, a, 2, VIRTQ_DESC_F_NEXT, 2);
    vdrv_desc_write(&f->drv, 0, 2, 0xdead0000000ULL, 0, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 3);
    vdrv_desc_write(&f->drv, 0, 3, out, 2, VIRTQ_DESC_F_WRITE, 0);
    vdrv_avail_push_raw(&f->drv, 0, 0);
    struct virtq_elem *e = &f->echo.elem;
    CHECK_EQ(virtq_pop(&f->vd.vqs[0], e), 1);
    CHECK_EQ(e->out_num, 1);
    CHECK_EQ(e->in_num, 1);
    CHECK_EQ(e->out_len, 2);
    CHECK_EQ(e->in_len, 2);
    fx_free(f);
}

TEST(unpop_and_push_clamp)
{
    struct fx *f = fx_new(0);
    CHECK(f);
    uint64_t in_gpa;
    int head = send_echo(f, "abcd", 4, false, &in_gpa);
    CHECK(head >= 0);
    struct virtq *vq = &f->vd.vqs[0];
    struct virtq_elem *e = &f->echo.elem;
    CHECK_EQ(virtq_pop(vq, e), 1);
    virtq_unpop(vq);
    CHECK_EQ(virtq_pop(vq, e), 1);
    CHECK_EQ(e->head, head);
    CHECK_EQ(virtq_pop(vq, e), 0);
    CHECK_EQ(virtq_push(vq, e, 1000), 0);    /* more than in_len: clamped */
    uint16_t id;
    uint32_t len;
    CHECK_EQ(vdrv_get_used(&f->drv, 0, &id, &len), 1);
    CHECK_EQ(len, 4);
    fx_free(f);
}

/* A queue that is not ready yields nothing. */
TEST(not_ready_pops_nothing)
{
    struct fx *f = fx_new(0);
    CHECK(f);
    uint64_t in_gpa;
    CHECK(send_echo(f, "x", 1, false, &in_gpa) >= 0);
    f->vd.vqs[0].s.ready = false;
    CHECK_EQ(virtq_pop(&f->vd.vqs[0], &f->echo.elem), 0);
    fx_free(f);
}

/* Fill the whole ring, then drain it. */
TEST(full_ring)
{
    struct fx *f = fx_new_ex(F_INDIRECT, 16, false);
    CHECK(f);
    uint64_t in[16];
    int heads[16];
    for (int i = 0; i < 16; i++) {
        char msg[32];
        snprintf(msg, sizeof msg, "m%02d", i);
        heads[i] = send_echo(f, msg, 8, true, &in[i]);
        CHECK(heads[i] >= 0);
    }
    uint64_t spare;
    CHECK_EQ(send_echo(f, "full", 8, true, &spare), -ENOSPC);
    CHECK(vdrv_kick(&f->drv, 0));
    CHECK_EQ(f->echo.processed, 16);
    for (int i = 0; i < 16; i++) {
        uint16_t id;
        uint32_t len;
        CHECK_EQ(vdrv_get_used(&f->drv, 0, &id, &len), 1);
        CHECK_EQ(id, heads[i]);
        CHECK_EQ(len, 3);
        char msg[32];
        snprintf(msg, sizeof msg, "m%02d", i);
        CHECK(memcmp(vdrv_ptr(&f->drv, in[i], 3), msg, 3) == 0);
    }
    fx_free(f);
}

/* The 16-bit indices wrap (§2.7.6: idx is free-running modulo 2^16): start
 * at 65530 and go round several times, single requests and full batches,
 * with EVENT_IDX so both sides' need_event arithmetic wraps too. */
TEST(index_wrap_around)
{
    struct fx *f = fx_new_ex(F_INDIRECT | F_EVENT_IDX, 8, false);
    CHECK(f);
    vdrv_set_start_idx(&f->drv, 0, 65530);
    unsigned total = 0, batches = 0;
    uint64_t in[8];
    int heads[8];
    for (int round = 0; round < 30; round++) {
        unsigned n = round % 3 == 0 ? 8 : 1 + round % 5;
        for (unsigned i = 0; i < n; i++) {
            char msg[32];
            snprintf(msg, sizeof msg, "r%dn%u", round, i);
            heads[i] = send_echo(f, msg, 16, true, &in[i]);
            CHECK(heads[i] >= 0);
        }
        CHECK(vdrv_kick(&f->drv, 0));
        batches++;
        CHECK_EQ(f->drv.irqs[0], batches);
        for (unsigned i = 0; i < n; i++) {
            uint16_t id;
            uint32_t len;
            char msg[32];
            int ml = snprintf(msg, sizeof msg, "r%dn%u", round, i);
            CHECK_EQ(vdrv_get_used(&f->drv, 0, &id, &len), 1);
            CHECK_EQ(id, heads[i]);
            CHECK_EQ(len, ml);
            CHECK(memcmp(vdrv_ptr(&f->drv, in[i], (uint64_t)ml), msg, (size_t)ml) == 0);
        }
        total += n;
        f->drv.heap_next = VDRV_HEAP_BASE + (1 << 20);  /* reuse data memory */
    }
    CHECK_EQ(f->drv.q[0].kicks_suppressed, 0);
    CHECK_EQ(f->echo.errors, 0);
    CHECK_EQ(f->vd.vqs[0].s.last_avail_idx, (uint16_t)(65530 + total));
    CHECK_EQ(f->vd.vqs[0].s.used_idx, (uint16_t)(65530 + total));
    CHECK(f->vd.vqs[0].s.last_avail_idx < 65530);  /* it did wrap */
    fx_free(f);
}

/* ---- notification suppression ---- */

/* §2.7.7.2 with EVENT_IDX: interrupt only when used->idx passes used_event. */
TEST(event_idx_interrupt_suppression)
{
    struct fx *f = fx_new(F_EVENT_IDX);
    CHECK(f);
    struct virtq *vq = &f->vd.vqs[0];
    struct virtq_elem *e = &f->echo.elem;
    CHECK(vq->event_idx);
    uint64_t in;
    for (int i = 0; i < 8; i++)
        CHECK(send_echo(f, "z", 1, false, &in) >= 0);
    vdrv_set_used_event(&f->drv, 0, 2);     /* "interrupt me when entry 2 is used" */
    bool expect[4] = { true /* first: nothing signalled yet */, false, true, false };
    for (int i = 0; i < 4; i++) {
        CHECK_EQ(virtq_pop(vq, e), 1);
        CHECK_EQ(virtq_push(vq, e, 0), 0);
        CHECK_EQ(virtq_should_notify(vq), expect[i]);
    }
    /* A batch that jumps over used_event still notifies once. */
    vdrv_set_used_event(&f->drv, 0, 5);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(virtq_pop(vq, e), 1);
        CHECK_EQ(virtq_push(vq, e, 0), 0);
    }
    CHECK(virtq_should_notify(vq));
    CHECK(!virtq_should_notify(vq));        /* nothing new since */
    /* used_event behind: no interrupt until it comes round again. */
    vdrv_set_used_event(&f->drv, 0, 3);
    CHECK_EQ(virtq_pop(vq, e), 1);
    CHECK_EQ(virtq_push(vq, e, 0), 0);
    CHECK(!virtq_should_notify(vq));
    /* avail->flags is ignored with EVENT_IDX. */
    *vdrv_avail_word(&f->drv, 0, 0) = VIRTQ_AVAIL_F_NO_INTERRUPT;
    vdrv_set_used_event(&f->drv, 0, 8);
    CHECK(send_echo(f, "z", 1, false, &in) >= 0);
    CHECK_EQ(virtq_pop(vq, e), 1);
    CHECK_EQ(virtq_push(vq, e, 0), 0);
    CHECK(virtq_should_notify(vq));
    fx_free(f);
}

/* Without EVENT_IDX: avail->flags NO_INTERRUPT (§2.7.7.2). */
TEST(no_interrupt_flag)
{
    struct fx *f = fx_new(0);
    CHECK(f);
    uint64_t in;
    vdrv_disable_cb(&f->drv, 0);
    CHECK(send_echo(f, "a", 1, false, &in) >= 0);
    CHECK(vdrv_kick(&f->drv, 0));
    CHECK_EQ(f->echo.processed, 1);
    CHECK_EQ(f->drv.irqs[0], 0);            /* suppressed */
    CHECK(vdrv_enable_cb(&f->drv, 0));      /* but the work is there */
    uint16_t id;
    uint32_t len;
    CHECK_EQ(vdrv_get_used(&f->drv, 0, &id, &len), 1);
    CHECK(!vdrv_enable_cb(&f->drv, 0));
    CHECK(send_echo(f, "b", 1, false, &in) >= 0);
    CHECK(vdrv_kick(&f->drv, 0));
    CHECK_EQ(f->drv.irqs[0], 1);
    fx_free(f);
}

/* §2.7.10 without EVENT_IDX: used->flags NO_NOTIFY while the device is
 * busy; a buffer added then is found by the re-check on re-enable. */
TEST(notification_race_recheck)
{
    struct fx *f = fx_new(0);
    CHECK(f);
    struct virtq *vq = &f->vd.vqs[0];
    struct virtq_elem *e = &f->echo.elem;
    uint64_t in;
    CHECK(!virtq_set_notification(vq, false));
    CHECK_EQ(*vdrv_used_word(&f->drv, 0, 0), VIRTQ_USED_F_NO_NOTIFY);
    CHECK(send_echo(f, "a", 1, false, &in) >= 0);
    CHECK(!vdrv_kick(&f->drv, 0));          /* the driver skips the kick */
    CHECK_EQ(f->drv.q[0].kicks_suppressed, 1);
    CHECK(virtq_set_notification(vq, true)); /* ...so the device must look */
    CHECK_EQ(*vdrv_used_word(&f->drv, 0, 0), 0);
    CHECK_EQ(virtq_pop(vq, e), 1);
    CHECK_EQ(virtq_push(vq, e, 1), 0);
    CHECK(!virtq_set_notification(vq, true));
    fx_free(f);
}

/* The same race with EVENT_IDX: while disabled avail_event lags, so the
 * driver's kick is suppressed; re-enabling publishes avail_event and
 * reports the pending buffer. */
TEST(notification_race_recheck_event_idx)
{
    struct fx *f = fx_new(F_EVENT_IDX);
    CHECK(f);
    struct virtq *vq = &f->vd.vqs[0];
    struct virtq_elem *e = &f->echo.elem;
    uint64_t in;
    for (int i = 0; i < 3; i++)
        CHECK(send_echo(f, "a", 1, false, &in) >= 0);
    CHECK(vdrv_kick_needed(&f->drv, 0));
    CHECK(!virtq_set_notification(vq, false));
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(virtq_pop(vq, e), 1);
        CHECK_EQ(virtq_push(vq, e, 1), 0);
    }
    CHECK_EQ(virtq_pop(vq, e), 0);
    CHECK_EQ(*vdrv_avail_event(&f->drv, 0), 0);     /* not moved while disabled */
    CHECK(send_echo(f, "b", 1, false, &in) >= 0);
    CHECK(!vdrv_kick(&f->drv, 0));
    CHECK(virtq_set_notification(vq, true));
    CHECK_EQ(*vdrv_avail_event(&f->drv, 0), 3);
    CHECK_EQ(virtq_pop(vq, e), 1);
    CHECK_EQ(virtq_push(vq, e, 1), 0);
    CHECK(!virtq_set_notification(vq, true));
    /* Enabled and idle: the next buffer is kicked. */
    CHECK_EQ(virtq_pop(vq, e), 0);
    CHECK_EQ(*vdrv_avail_event(&f->drv, 0), 4);
    CHECK(send_echo(f, "c", 1, false, &in) >= 0);
    CHECK(vdrv_kick_needed(&f->drv, 0));
    fx_free(f);
}

/* ---- hostile rings ---- */

TEST(hostile_loop)
{
    struct fx *f = fx_new(0);
    CHECK(f);
    uint64_t buf = vdrv_alloc(&f->drv, 64, 16);
    vdrv_desc_write(&f->drv, 0, 3, buf, 8, VIRTQ_DESC_F_NEXT, 7);
    vdrv_desc_write(&f->drv, 0, 7, buf, 8, VIRTQ_DESC_F_NEXT, 3);  /* a -> b -> a */
    vdrv_avail_push_raw(&f->drv, 0, 3);
    EXPECT_BROKEN(f);
    fx_free(f);
}

TEST(hostile_self_loop_writable)
{
    struct fx *f = fx_new(0);
    CHECK(f);
    uint64_t buf = vdrv_alloc(&f->drv, 64, 16);
    vdrv_desc_write(&f->drv, 0, 5, buf, 8, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 5);
    vdrv_avail_push_raw(&f->drv, 0, 5);
    EXPECT_BROKEN(f);
    fx_free(f);
}

TEST(hostile_next_out_of_range)
{
    struct fx *f = fx_new(0);
    CHECK(f);
    uint64_t buf = vdrv_alloc(&f->drv, 64, 16);
    vdrv_desc_write(&f->drv, 0, 0, buf, 8, VIRTQ_DESC_F_NEXT, 256);
    vdrv_avail_push_raw(&f->drv, 0, 0);
    EXPECT_BROKEN(f);
    fx_free(f);
}

TEST(hostile_head_out_of_range)
{
    struct fx *f = fx_new(0);
    CHECK(f);
    vdrv_avail_push_raw(&f->drv, 0, 0xffff);
    EXPECT_BROKEN(f);
    fx_free(f);
}

TEST(hostile_addr_beyond_ram)
{
    struct fx *f = fx_new(0);
    CHECK(f);
    vdrv_desc_write(&f->drv, 0, 0, (8 << 20) - 4, 8, 0, 0);     /* straddles the end */
    vdrv_avail_push_raw(&f->drv, 0, 0);
    EXPECT_BROKEN(f);
    fx_free(f);
}

TEST(hostile_addr_len_overflow)
{
    struct fx *f = fx_new(0);
    CHECK(f);
    vdrv_desc_write(&f->drv, 0, 0, UINT64_MAX - 10, 100, VIRTQ_DESC_F_WRITE, 0);
    vdrv_avail_push_raw(&f->drv, 0, 0);
    EXPECT_BROKEN(f);
    fx_free(f);
}

TEST(hostile_addr_in_pci_hole)
{
    struct fx *f = fx_new_ex(0, 256, true);
    CHECK(f);
    CHECK_EQ(f->mem.n, 2);
    uint64_t buf = vdrv_alloc(&f->drv, 64, 16);
    /* A good request in low RAM and one in high RAM work... */
    vdrv_desc_write(&f->drv, 0, 0, buf, 8, 0, 0);
    vdrv_desc_write(&f->drv, 0, 1, GMEM_HIGH_BASE + 4096, 8, 0, 0);
    vdrv_avail_push_raw(&f->drv, 0, 0);
    vdrv_avail_push_raw(&f->drv, 0, 1);
    struct virtq *vq = &f->vd.vqs[0];
    CHECK_EQ(virtq_pop(vq, &f->echo.elem), 1);
    CHECK_EQ(virtq_pop(vq, &f->echo.elem), 1);
    CHECK_EQ(f->echo.elem.iov[0].iov_base, (uint8_t *)f->mem.regions[1].hva + 4096);
    /* ...a buffer in the hole, or running from low RAM into it, does not. */
    vdrv_desc_write(&f->drv, 0, 2, 0x80000000ULL, 8, 0, 0);
    vdrv_desc_write(&f->drv, 0, 3, (1 << 20) - 4, 8, 0, 0);
    vdrv_desc_write(&f->drv, 0, 4, GMEM_HIGH_BASE - 4, 8, 0, 0);
    uint16_t idx = vq->s.last_avail_idx;
    for (uint16_t d = 2; d <= 4; d++) {
        vdrv_avail_push_raw(&f->drv, 0, d);
        CHECK_EQ(virtq_pop(vq, &f->echo.elem), -EINVAL);
        CHECK_EQ(vq->s.last_avail_idx, idx);
        vdrv_avail_set_idx(&f->drv, 0, idx);            /* withdraw it */
    }
    /* Host memory after region 0 is region 1: a buffer that would run
     * across on the host side must still be refused. */
    vdrv_desc_write(&f->drv, 0, 5, (1 << 20) - 8, 16, VIRTQ_DESC_F_WRITE, 0);
    vdrv_avail_push_raw(&f->drv, 0, 5);
    EXPECT_BROKEN(f);
    fx_free(f);
}

/* A chain longer than VIRTQ_MAX_CHAIN (queue size 2048): 1024 is fine,
 * 1025 is refused. */
TEST(hostile_overlong_chain)
{
    struct fx *f = fx_new_ex(0, 2048, false);
    CHECK(f);
    uint64_t buf = vdrv_alloc(&f->drv, 64, 16);
    for (unsigned i = 0; i < 1025; i++)
        vdrv_desc_write(&f->drv, 0, i, buf, 1, i < 1023 ? VIRTQ_DESC_F_NEXT : 0,
                        (uint16_t)(i + 1));
    vdrv_avail_push_raw(&f->drv, 0, 0);
    struct virtq *vq = &f->vd.vqs[0];
    CHECK_EQ(virtq_pop(vq, &f->echo.elem), 1);
    CHECK_EQ(f->echo.elem.out_num, 1024);
    CHECK_EQ(virtq_push(vq, &f->echo.elem, 0), 0);
    vdrv_desc_write(&f->drv, 0, 1023, buf, 1, VIRTQ_DESC_F_NEXT, 1024);
    vdrv_avail_push_raw(&f->drv, 0, 0);
    EXPECT_BROKEN(f);
    fx_free(f);
}

TEST(hostile_indirect_table_too_big)
{
    struct fx *f = fx_new(F_INDIRECT);
    CHECK(f);
    uint64_t buf = vdrv_alloc(&f->drv, 64, 16);
    uint64_t table = vdrv_alloc(&f->drv, 16 * 1025, 16);
    struct virtq_desc *t = vdrv_ptr(&f->drv, table, 16 * 1025);
    for (unsigned i = 0; i < 1025; i++)
        t[i] = (struct virtq_desc){ buf, 1, i < 1023 ? VIRTQ_DESC_F_NEXT : 0, (uint16_t)(i + 1) };
    struct virtq *vq = &f->vd.vqs[0];
    vdrv_desc_write(&f->drv, 0, 0, table, 16 * 1024, VIRTQ_DESC_F_INDIRECT, 0);
    vdrv_avail_push_raw(&f->drv, 0, 0);
    CHECK_EQ(virtq_pop(vq, &f->echo.elem), 1);          /* 1024 entries: fine */
    CHECK_EQ(f->echo.elem.out_num, 1024);
    CHECK_EQ(virtq_push(vq, &f->echo.elem, 0), 0);
    vdrv_desc_write(&f->drv, 0, 0, table, 16 * 1025, VIRTQ_DESC_F_INDIRECT, 0);
    vdrv_avail_push_raw(&f->drv, 0, 0);
    EXPECT_BROKEN(f);
    fx_free(f);
}

/* Direct descriptors plus an indirect table: more buffers in total than an
 * element holds. */
TEST(hostile_too_many_buffers)
{
    struct fx *f = fx_new(F_INDIRECT);
    CHECK(f);
    uint64_t buf = vdrv_alloc(&f->drv, 64, 16);
    uint64_t table = vdrv_alloc(&f->drv, 16 * 1000, 16);
    struct virtq_desc *t = vdrv_ptr(&f->drv, table, 16 * 1000);
    for (unsigned i = 0; i < 1000; i++)
        t[i] = (struct virtq_desc){ buf, 1, i < 999 ? VIRTQ_DESC_F_NEXT : 0, (uint16_t)(i + 1) };
    for (unsigned i = 0; i < 100; i++)
        vdrv_desc_write(&f->drv, 0, i, buf, 1, VIRTQ_DESC_F_NEXT, (uint16_t)(i + 1));
    vdrv_desc_write(&f->drv, 0, 100, table, 16 * 1000, VIRTQ_DESC_F_INDIRECT, 0);
    vdrv_avail_push_raw(&f->drv, 0, 0);
    EXPECT_BROKEN(f);
    fx_free(f);
}

TEST(hostile_indirect_loop)
{
    struct fx *f = fx_new(F_INDIRECT);
    CHECK(f);
    uint64_t buf = vdrv_alloc(&f->drv, 64, 16), table = vdrv_alloc(&f->drv, 48, 16);
    struct virtq_desc t[3] = {
        { buf, 4, VIRTQ_DESC_F_NEXT, 1 },
        { buf, 4, VIRTQ_DESC_F_NEXT, 2 },
        { buf, 4, VIRTQ_DESC_F_NEXT, 1 },
    };
    memcpy(vdrv_ptr(&f->drv, table, 48), t, 48);
    vdrv_desc_write(&f->drv, 0, 0, table, 48, VIRTQ_DESC_F_INDIRECT, 0);
    vdrv_avail_push_raw(&f->drv, 0, 0);
    EXPECT_BROKEN(f);
    fx_free(f);
}

TEST(hostile_indirect_next_out_of_range)
{
    struct fx *f = fx_new(F_INDIRECT);
    CHECK(f);
    uint64_t buf = vdrv_alloc(&f->drv, 64, 16), table = vdrv_alloc(&f->drv, 32, 16);
    struct virtq_desc t[2] = { { buf, 4, VIRTQ_DESC_F_NEXT, 1 }, { buf, 4, VIRTQ_DESC_F_NEXT, 2 } };
    memcpy(vdrv_ptr(&f->drv, table, 32), t, 32);
    vdrv_desc_write(&f->drv, 0, 0, table, 32, VIRTQ_DESC_F_INDIRECT, 0);
    vdrv_avail_push_raw(&f->drv, 0, 0);
    EXPECT_BROKEN(f);
    fx_free(f);
}

TEST(hostile_nested_indirect)
{
    struct fx *f = fx_new(F_INDIRECT);
    CHECK(f);
    uint64_t buf = vdrv_alloc(&f->drv, 64, 16);
    uint64_t inner = vdrv_alloc(&f->drv, 16, 16), outer = vdrv_alloc(&f->drv, 16, 16);
    struct virtq_desc ti = { buf, 4, 0, 0 }, to = { inner, 16, VIRTQ_DESC_F_INDIRECT, 0 };
    memcpy(vdrv_ptr(&f->drv, inner, 16), &ti, 16);
    memcpy(vdrv_ptr(&f->drv, outer, 16), &to, 16);
    vdrv_desc_write(&f->drv, 0, 0, outer, 16, VIRTQ_DESC_F_INDIRECT, 0);
    vdrv_avail_push_raw(&f->drv, 0, 0);
    EXPECT_BROKEN(f);
    fx_free(f);
}

TEST(hostile_indirect_not_negotiated)
{
    struct fx *f = fx_new(0);
    CHECK(f);
    CHECK(!f->vd.vqs[0].indirect);
    uint64_t buf = vdrv_alloc(&f->drv, 64, 16), table = vdrv_alloc(&f->drv, 16, 16);
    struct virtq_desc t = { buf, 4, 0, 0 };
    memcpy(vdrv_ptr(&f->drv, table, 16), &t, 16);
    vdrv_desc_write(&f->drv, 0, 0, table, 16, VIRTQ_DESC_F_INDIRECT, 0);
    vdrv_avail_push_raw(&f->drv, 0, 0);
    EXPECT_BROKEN(f);
    fx_free(f);
}

/* §2.7.5.3.1: INDIRECT together with NEXT is forbidden. */
TEST(hostile_indirect_with_next)
{
    struct fx *f = fx_new(F_INDIRECT);
    CHECK(f);
    uint64_t buf = vdrv_alloc(&f->drv, 64, 16), table = vdrv_alloc(&f->drv, 16, 16);
    struct virtq_desc t = { buf, 4, 0, 0 };
    memcpy(vdrv_ptr(&f->drv, table, 16), &t, 16);
    vdrv_desc_write(&f->drv, 0, 0, table, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1);
    vdrv_desc_write(&f->drv, 0, 1, buf, 4, VIRTQ_DESC_F_WRITE, 0);
    vdrv_avail_push_raw(&f->drv, 0, 0);
    EXPECT_BROKEN(f);
    fx_free(f);
}

TEST(hostile_indirect_bad_length)
{
    static const uint32_t lens[] = { 0, 8, 24 };
    for (unsigned k = 0; k < 3; k++) {
        struct fx *f = fx_new(F_INDIRECT);
        CHECK(f);
        uint64_t buf = vdrv_alloc(&f->drv, 64, 16), table = vdrv_alloc(&f->drv, 32, 16);
        struct virtq_desc t[2] = { { buf, 4, VIRTQ_DESC_F_NEXT, 1 }, { buf, 4, 0, 0 } };
        memcpy(vdrv_ptr(&f->drv, table, 32), t, 32);
        vdrv_desc_write(&f->drv, 0, 0, table, lens[k], VIRTQ_DESC_F_INDIRECT, 0);
        vdrv_avail_push_raw(&f->drv, 0, 0);
        EXPECT_BROKEN(f);
        fx_free(f);
    }
}

TEST(hostile_indirect_table_outside_ram)
{
    struct fx *f = fx_new(F_INDIRECT);
    CHECK(f);
    vdrv_desc_write(&f->drv, 0, 0, (8 << 20) - 16, 32, VIRTQ_DESC_F_INDIRECT, 0);
    vdrv_avail_push_raw(&f->drv, 0, 0);
    EXPECT_BROKEN(f);
    fx_free(f);
}

TEST(hostile_readable_after_writable)
{
    struct fx *f = fx_new(0);
    CHECK(f);
    uint64_t buf = vdrv_alloc(&f->drv, 64, 16);
    vdrv_desc_write(&f->drv, 0, 0, buf, 4, VIRTQ_DESC_F_NEXT, 1);
    vdrv_desc_write(&f->drv, 0, 1, buf + 8, 4, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
    vdrv_desc_write(&f->drv, 0, 2, buf + 16, 4, 0, 0);
    vdrv_avail_push_raw(&f->drv, 0, 0);
    EXPECT_BROKEN(f);
    fx_free(f);
}

TEST(hostile_readable_after_writable_indirect)
{
    struct fx *f = fx_new(F_INDIRECT);
    CHECK(f);
    uint64_t buf = vdrv_alloc(&f->drv, 64, 16), table = vdrv_alloc(&f->drv, 16, 16);
    struct virtq_desc t = { buf, 4, 0, 0 };
    memcpy(vdrv_ptr(&f->drv, table, 16), &t, 16);
    /* writable direct descriptor, then an indirect table of readable ones */
    vdrv_desc_write(&f->drv, 0, 0, buf + 8, 4, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1);
    vdrv_desc_write(&f->drv, 0, 1, table, 16, VIRTQ_DESC_F_INDIRECT, 0);
    vdrv_avail_push_raw(&f->drv, 0, 0);
    EXPECT_BROKEN(f);
    fx_free(f);
}

TEST(hostile_avail_idx_jump)
{
    struct fx *f = fx_new(0);
    CHECK(f);
    vdrv_avail_set_idx(&f->drv, 0, 257);
    EXPECT_BROKEN(f);
    fx_free(f);
}

/* Ring placement (§2.7 alignment, inside RAM), checked when the queue is
 * made ready and again on every use. */
TEST(ring_config_checks)
{
    struct fx *f = fx_new_ex(0, 256, true);
    CHECK(f);
    struct virtq *vq = &f->vd.vqs[0];
    struct virtq_state good = vq->s;
    CHECK_EQ(virtq_check_config(vq), 0);
    vq->s.desc_gpa += 8;
    CHECK_EQ(virtq_check_config(vq), -EINVAL);
    vq->s = good;
    vq->s.avail_gpa += 1;
    CHECK_EQ(virtq_check_config(vq), -EINVAL);
    vq->s = good;
    vq->s.used_gpa += 2;
    CHECK_EQ(virtq_check_config(vq), -EINVAL);
    vq->s = good;
    vq->s.size = 96;                          /* not a power of 2 */
    CHECK_EQ(virtq_check_config(vq), -EINVAL);
    vq->s = good;
    vq->s.size = 512;                         /* above the device maximum */
    CHECK_EQ(virtq_check_config(vq), -EINVAL);
    vq->s = good;
    vq->s.size = 0;
    CHECK_EQ(virtq_check_config(vq), -EINVAL);
    vq->s = good;
    vq->s.used_gpa = (1 << 20) - 1024;        /* runs into the hole */
    CHECK_EQ(virtq_check_config(vq), -EINVAL);
    vq->s = good;
    vq->s.desc_gpa = GMEM_HIGH_BASE + (1 << 20) - 16 * 128;   /* past the end */
    CHECK_EQ(virtq_check_config(vq), -EINVAL);
    vq->s.desc_gpa = GMEM_HIGH_BASE;          /* high RAM is fine */
    CHECK_EQ(virtq_check_config(vq), 0);
    /* A bad config reached pop / push anyway: refused, no access. */
    vq->s = good;
    vq->s.avail_gpa = 0xfffffffffffffff0ULL;
    CHECK_EQ(virtq_pop(vq, &f->echo.elem), -EINVAL);
    f->echo.elem.head = 0;
    f->echo.elem.in_len = 0;
    CHECK_EQ(virtq_push(vq, &f->echo.elem, 0), -EINVAL);
    CHECK(!virtq_should_notify(vq));
    CHECK(!virtq_set_notification(vq, true));
    fx_free(f);
}

/* After NEEDS_RESET the driver resets and starts over: the queue works. */
TEST(reset_after_broken)
{
    struct fx *f = fx_new(0);
    CHECK(f);
    vdrv_avail_push_raw(&f->drv, 0, 0xffff);
    vdrv_kick_force(&f->drv, 0);
    CHECK(virtio_get_status(&f->vd) & VIRTIO_STATUS_NEEDS_RESET);
    vdrv_destroy(&f->drv);
    CHECK_EQ(vdrv_init(&f->drv, &f->vd, 1ULL << VIRTIO_F_VERSION_1), 0);
    CHECK(!(virtio_get_status(&f->vd) & VIRTIO_STATUS_NEEDS_RESET));
    uint64_t in;
    int head = send_echo(f, "again", 8, false, &in);
    CHECK(head >= 0);
    CHECK(vdrv_kick(&f->drv, 0));
    uint16_t id;
    uint32_t len;
    CHECK_EQ(vdrv_get_used(&f->drv, 0, &id, &len), 1);
    CHECK_EQ(id, head);
    CHECK_EQ(len, 5);
    fx_free(f);
}

int main(void)
{
    log_set_level(LOG_ERROR);
    RUN(round_trip_direct);
    RUN(round_trip_indirect);
    RUN(direct_then_indirect);
    RUN(zero_length_descriptor);
    RUN(unpop_and_push_clamp);
    RUN(not_ready_pops_nothing);
    RUN(full_ring);
    RUN(index_wrap_around);
    RUN(event_idx_interrupt_suppression);
    RUN(no_interrupt_flag);
    RUN(notification_race_recheck);
    RUN(notification_race_recheck_event_idx);
    RUN(hostile_loop);
    RUN(hostile_self_loop_writable);
    RUN(hostile_next_out_of_range);
    RUN(hostile_head_out_of_range);
    RUN(hostile_addr_beyond_ram);
    RUN(hostile_addr_len_overflow);
    RUN(hostile_addr_in_pci_hole);
    RUN(hostile_overlong_chain);
    RUN(hostile_indirect_table_too_big);
    RUN(hostile_too_many_buffers);
    RUN(hostile_indirect_loop);
    RUN(hostile_indirect_next_out_of_range);
    RUN(hostile_nested_indirect);
    RUN(hostile_indirect_not_negotiated);
    RUN(hostile_indirect_with_next);
    RUN(hostile_indirect_bad_length);
    RUN(hostile_indirect_table_outside_ram);
    RUN(hostile_readable_after_writable);
    RUN(hostile_readable_after_writable_indirect);
    RUN(hostile_avail_idx_jump);
    RUN(ring_config_checks);
    RUN(reset_after_broken);
    return test_summary();
}
