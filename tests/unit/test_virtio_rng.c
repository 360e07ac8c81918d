/* virtio-rng (src/hw/virtio/rng.c) driven from the simulated guest driver
 * (virtio_driver.h): buffers filled from getrandom, the written length,
 * the per-request cap, several buffers per chain and per kick, chains
 * without writable space, and hostile chains (NEEDS_RESET, recovery). The
 * device answers inside queue_notify, so everything is synchronous. */
#include "core/log.h"
#include "hw/virtio/rng.h"
#include "test.h"
#include "virtio_driver.h"

#include <stdlib.h>

#define V1 (1ULL << VIRTIO_F_VERSION_1)
#define RNG_CAP 65536           /* rng.c's RNG_MAX_PER_REQUEST */

struct fx {
    struct guest_mem mem;
    struct virtio_dev vd;
    struct vdrv drv;
    struct virtio_rng *rng;
};

static struct fx *fx_new(uint64_t features)
{
    struct fx *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->rng = virtio_rng_new();
    if (!f->rng || gmem_init(&f->mem, 8 << 20) < 0 ||
        virtio_dev_init(&f->vd, virtio_rng_ops(), f->rng, &f->mem) < 0 ||
        vdrv_init(&f->drv, &f->vd, features) < 0) {
        virtio_rng_free(f->rng);
        free(f);
        return NULL;
    }
    return f;
}

static void fx_free(struct fx *f)
{
    if (!f)
        return;
    pthread_mutex_lock(&f->vd.lock);
    virtio_set_status(&f->vd, 0);
    pthread_mutex_unlock(&f->vd.lock);
    vdrv_destroy(&f->drv);
    virtio_dev_destroy(&f->vd);
    gmem_destroy(&f->mem);
    virtio_rng_free(f->rng);
    free(f);
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

TEST(ops_shape)
{
    const struct virtio_device_ops *ops = virtio_rng_ops();
    CHECK_EQ(ops->device_id, 4);
    CHECK_EQ(ops->num_queues, 1);
    CHECK_EQ(ops->config_size, 0);
}

TEST(fills_buffer)
{
    struct fx *f = fx_new(V1);
    CHECK(f);
    uint64_t b = vdrv_alloc(&f->drv, 64, 8);
    struct vdrv_sg in[] = { { b, 64 } };
    int head = vdrv_add_chain(&f->drv, 0, NULL, 0, in, 1);
    CHECK(head >= 0);
    CHECK(vdrv_kick(&f->drv, 0));
    uint16_t id;
    uint32_t len;
    CHECK_EQ(vdrv_get_used(&f->drv, 0, &id, &len), 1);
    CHECK_EQ(id, head);
    CHECK_EQ(len, 64);
    CHECK(!all_zero(vdrv_ptr(&f->drv, b, 64), 64));
    CHECK_EQ(f->drv.irqs[0], 1);
    fx_free(f);
}

TEST(several_buffers_and_requests)
{
    struct fx *f = fx_new(V1 | (1ULL << VIRTIO_F_EVENT_IDX) | (1ULL << VIRTIO_F_INDIRECT_DESC));
    CHECK(f);
    uint64_t a = vdrv_alloc(&f->drv, 100, 1), b = vdrv_alloc(&f->drv, 200, 1),
             c = vdrv_alloc(&f->drv, 50, 1), d = vdrv_alloc(&f->drv, 4096, 1);
    struct vdrv_sg in1[] = { { a, 100 }, { b, 200 }, { c, 50 } };
    struct vdrv_sg in2[] = { { d, 4096 } };
    int h1 = vdrv_add_chain(&f->drv, 0, NULL, 0, in1, 3);
    int h2 = vdrv_add_chain_indirect(&f->drv, 0, NULL, 0, in2, 1);
    CHECK(h1 >= 0 && h2 >= 0);
    vdrv_kick(&f->drv, 0);
    uint16_t id;
    uint32_t len;
    CHECK_EQ(vdrv_get_used(&f->drv, 0, &id, &len), 1);
    CHECK_EQ(id, h1);
    CHECK_EQ(len, 350);
    CHECK_EQ(vdrv_get_used(&f->drv, 0, &id, &len), 1);
    CHECK_EQ(id, h2);
    CHECK_EQ(len, 4096);
    CHECK(!all_zero(vdrv_ptr(&f->drv, a, 100), 100));
    CHECK(!all_zero(vdrv_ptr(&f->drv, b, 200), 200));
    CHECK(!all_zero(vdrv_ptr(&f->drv, c, 50), 50));
    CHECK(!all_zero(vdrv_ptr(&f->drv, d, 4096), 4096));
    /* Two different draws. */
    CHECK(memcmp(vdrv_ptr(&f->drv, a, 50), vdrv_ptr(&f->drv, c, 50), 50) != 0);
    CHECK_EQ(vdrv_get_used(&f->drv, 0, &id, &len), 0);
    /* One interrupt for the batch. */
    CHECK_EQ(f->drv.irqs[0], 1);
    fx_free(f);
}

/* A driver asking for more than the cap gets the cap; the rest of its
 * buffers is untouched. */
TEST(oversize_request_capped)
{
    struct fx *f = fx_new(V1);
    CHECK(f);
    const uint32_t big = 3 * RNG_CAP / 2;
    uint64_t b = vdrv_alloc(&f->drv, big, 8), c = vdrv_alloc(&f->drv, 4096, 8);
    struct vdrv_sg in[] = { { b, big }, { c, 4096 } };
    CHECK(vdrv_add_chain(&f->drv, 0, NULL, 0, in, 2) >= 0);
    vdrv_kick(&f->drv, 0);
    uint16_t id;
    uint32_t len;
    CHECK_EQ(vdrv_get_used(&f->drv, 0, &id, &len), 1);
    CHECK_EQ(len, RNG_CAP);
    uint8_t *p = vdrv_ptr(&f->drv, b, big);
    CHECK(!all_zero(p + RNG_CAP - 64, 64));
    CHECK(all_zero(p + RNG_CAP, big - RNG_CAP));
    CHECK(all_zero(vdrv_ptr(&f->drv, c, 4096), 4096));
    /* Across buffers: 60 KiB then 8 KiB -> 60 KiB + 4 KiB. */
    uint64_t x = vdrv_alloc(&f->drv, 61440, 8), y = vdrv_alloc(&f->drv, 8192, 8);
    struct vdrv_sg in2[] = { { x, 61440 }, { y, 8192 } };
    CHECK(vdrv_add_chain(&f->drv, 0, NULL, 0, in2, 2) >= 0);
    vdrv_kick(&f->drv, 0);
    CHECK_EQ(vdrv_get_used(&f->drv, 0, &id, &len), 1);
    CHECK_EQ(len, RNG_CAP);
    CHECK(!all_zero(vdrv_ptr(&f->drv, y, 64), 64));
    CHECK(all_zero(vdrv_ptr(&f->drv, y + 4096, 4096), 4096));
    fx_free(f);
}

/* Readable-only chains get nothing written (len 0), and no crash. */
TEST(no_writable_buffer)
{
    struct fx *f = fx_new(V1);
    CHECK(f);
    uint64_t b = vdrv_alloc(&f->drv, 32, 8);
    struct vdrv_sg out[] = { { b, 32 } };
    CHECK(vdrv_add_chain(&f->drv, 0, out, 1, NULL, 0) >= 0);
    vdrv_kick(&f->drv, 0);
    uint16_t id;
    uint32_t len;
    CHECK_EQ(vdrv_get_used(&f->drv, 0, &id, &len), 1);
    CHECK_EQ(len, 0);
    CHECK(all_zero(vdrv_ptr(&f->drv, b, 32), 32));
    CHECK(!(virtio_get_status(&f->vd) & VIRTIO_STATUS_NEEDS_RESET));
    fx_free(f);
}

TEST(hostile_then_reset)
{
    struct fx *f = fx_new(V1);
    CHECK(f);
    uint64_t b = vdrv_alloc(&f->drv, 64, 8);
    /* 10 -> 11 -> 10, and a buffer outside RAM. */
    vdrv_desc_write(&f->drv, 0, 10, b, 32, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 11);
    vdrv_desc_write(&f->drv, 0, 11, b + 32, 32, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 10);
    vdrv_avail_push_raw(&f->drv, 0, 10);
    vdrv_kick_force(&f->drv, 0);
    CHECK(virtio_get_status(&f->vd) & VIRTIO_STATUS_NEEDS_RESET);
    CHECK_EQ(f->drv.config_irqs, 1);
    uint16_t id;
    uint32_t len;
    CHECK_EQ(vdrv_get_used(&f->drv, 0, &id, &len), 0);
    vdrv_kick_force(&f->drv, 0);        /* ignored while broken */
    CHECK_EQ(vdrv_reinit(&f->drv, V1), 0);
    vdrv_desc_write(&f->drv, 0, 3, 1ULL << 40, 64, VIRTQ_DESC_F_WRITE, 0);
    vdrv_avail_push_raw(&f->drv, 0, 3);
    vdrv_kick_force(&f->drv, 0);
    CHECK(virtio_get_status(&f->vd) & VIRTIO_STATUS_NEEDS_RESET);
    /* Recovered after a reset. */
    CHECK_EQ(vdrv_reinit(&f->drv, V1), 0);
    struct vdrv_sg in[] = { { b, 64 } };
    memset(vdrv_ptr(&f->drv, b, 64), 0, 64);
    CHECK(vdrv_add_chain(&f->drv, 0, NULL, 0, in, 1) >= 0);
    vdrv_kick(&f->drv, 0);
    CHECK_EQ(vdrv_get_used(&f->drv, 0, &id, &len), 1);
    CHECK_EQ(len, 64);
    CHECK(!all_zero(vdrv_ptr(&f->drv, b, 64), 64));
    fx_free(f);
}

int main(void)
{
    log_set_level(LOG_ERROR);
    RUN(ops_shape);
    RUN(fills_buffer);
    RUN(several_buffers_and_requests);
    RUN(oversize_request_capped);
    RUN(no_writable_buffer);
    RUN(hostile_then_reset);
    return test_summary();
}
