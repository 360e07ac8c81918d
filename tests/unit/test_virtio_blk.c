/* virtio-blk (src/hw/virtio/blk.c) driven from the simulated guest driver
 * (virtio_driver.h) on a real block back end (blk_open on a temp raw file):
 * data integrity against the host file, odd descriptor layouts, indirect
 * chains, flush ordering, GET_ID, DISCARD / WRITE_ZEROES, the error
 * statuses, config space and WCE, several queues, reset with requests in
 * flight (on the test thread and with a real I/O thread), and hostile
 * chains (NEEDS_RESET, recovery by reset). Everything runs for aio=threads
 * and aio=io_uring.
 *
 * Threads: the device's queue_notify and the back end's completions run on
 * the test thread, which also runs the completion loop (core/loop.h) in
 * short slices (a 1 ms timerfd ends each slice) until the expected used
 * entries appear. The reset_inflight_iothread test uses a real I/O thread
 * instead, as the VMM does. */
#include "block/block.h"
#include "core/iothread.h"
#include "core/log.h"
#include "core/loop.h"
#include "hw/virtio/blk.h"
#include "test.h"
#include "virtio_driver.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <unistd.h>

/* virtio 1.2 §5.2.3 / §5.2.6 (the device's private copies are in blk.c). */
#define F_SEG_MAX      2
#define F_RO           5
#define F_BLK_SIZE     6
#define F_FLUSH        9
#define F_TOPOLOGY     10
#define F_CONFIG_WCE   11
#define F_MQ           12
#define F_DISCARD      13
#define F_WRITE_ZEROES 14

#define T_IN           0
#define T_OUT          1
#define T_FLUSH        4
#define T_GET_ID       8
#define T_DISCARD      11
#define T_WRITE_ZEROES 13
#define S_OK           0
#define S_IOERR        1
#define S_UNSUPP       2

/* struct virtio_blk_config offsets (§5.2.4). */
#define CFG_CAPACITY     0
#define CFG_SEG_MAX      12
#define CFG_BLK_SIZE     20
#define CFG_PHYS_EXP     24
#define CFG_MIN_IO       26
#define CFG_WRITEBACK    32
#define CFG_NUM_QUEUES   34
#define CFG_MAX_DISCARD  36
#define CFG_WZ_MAY_UNMAP 56

#define BIT(n) (1ULL << (n))
#define V1 BIT(VIRTIO_F_VERSION_1)

#define IMG_SIZE (1u << 20)     /* 2048 sectors */
#define RAM_SIZE (16u << 20)

struct blk_hdr {
    uint32_t type, reserved;
    uint64_t sector;
};

struct dwz_seg {
    uint64_t sector;
    uint32_t num_sectors, flags;
};

static char tdir[256];

struct fx {
    char path[300];
    uint8_t *init;              /* the file's initial contents */
    struct loop *loop;
    int tfd;                    /* 1 ms periodic timer: ends a loop slice */
    struct block_backend *be;
    struct virtio_blk *blk;
    struct guest_mem mem;
    struct virtio_dev vd;
    struct vdrv drv;
    bool vd_ok;
};

static void fx_tick(void *opaque, int fd, uint32_t events)
{
    struct fx *f = opaque;
    uint64_t n;
    ssize_t r = read(fd, &n, sizeof n);
    (void)r;
    loop_quit(f->loop);
}

struct fx_opts {
    enum blk_aio aio;
    bool read_only;
    bool discard;               /* both the back end's discard=unmap and the device's */
    unsigned num_queues;
    uint32_t lbs;
    const char *serial;
    enum blk_cache_mode cache;
};

static void fx_free(struct fx *f)
{
    if (!f)
        return;
    if (f->vd_ok) {
        pthread_mutex_lock(&f->vd.lock);
        virtio_set_status(&f->vd, 0);       /* drains the device */
        pthread_mutex_unlock(&f->vd.lock);
        virtio_dev_destroy(&f->vd);
    }
    vdrv_destroy(&f->drv);
    virtio_blk_free(f->blk);
    if (f->be)
        blk_close(f->be);
    if (f->tfd >= 0) {
        if (f->loop)
            loop_del_fd(f->loop, f->tfd);
        close(f->tfd);
    }
    loop_free(f->loop);
    if (f->mem.base)
        gmem_destroy(&f->mem);
    if (f->path[0])
        unlink(f->path);
    free(f->init);
    free(f);
}

static unsigned fx_serial;

/* A fresh image with a pattern, its back end, the device, guest RAM; the
 * driver is attached but not initialised (fx_start does that). */
static struct fx *fx_new(const struct fx_opts *o)
{
    struct fx *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->tfd = -1;
    snprintf(f->path, sizeof f->path, "%s/img%u.raw", tdir, fx_serial++);
    f->init = malloc(IMG_SIZE);
    int fd = open(f->path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
    if (!f->init || fd < 0)
        goto fail;
    for (size_t i = 0; i < IMG_SIZE; i++)
        f->init[i] = (uint8_t)(i * 13 + (i >> 9) + 1);
    ssize_t w = write(fd, f->init, IMG_SIZE);
    close(fd);
    if (w != (ssize_t)IMG_SIZE)
        goto fail;
    f->loop = loop_new(NULL, NULL);
    if (!f->loop)
        goto fail;
    f->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    struct itimerspec its = { { 0, 1000000 }, { 0, 1000000 } };
    if (f->tfd < 0 || timerfd_settime(f->tfd, 0, &its, NULL) < 0 ||
        loop_add_fd(f->loop, f->tfd, EPOLLIN, fx_tick, f) < 0)
        goto fail;
    struct blk_options bo = {
        .filename = f->path, .format = "raw", .cache = o->cache, .aio = o->aio,
        .read_only = o->read_only, .discard = o->discard,
    };
    char err[400];
    f->be = blk_open(&bo, f->loop, err, sizeof err);
    if (!f->be) {
        printf("    blk_open: %s\n", err);
        goto fail;
    }
    struct virtio_blk_opts vo = {
        .serial = o->serial, .num_queues = o->num_queues, .queue_size = 128,
        .logical_block_size = o->lbs, .discard = o->discard,
    };
    f->blk = virtio_blk_new(f->be, f->loop, &vo);
    if (!f->blk || gmem_init(&f->mem, RAM_SIZE) < 0)
        goto fail;
    if (virtio_dev_init(&f->vd, virtio_blk_ops(f->blk), f->blk, &f->mem) < 0)
        goto fail;
    f->vd_ok = true;
    vdrv_attach(&f->drv, &f->vd);
    return f;
fail:
    fx_free(f);
    return NULL;
}

static struct fx *fx_new_aio(enum blk_aio aio)
{
    struct fx_opts o = { .aio = aio };
    return fx_new(&o);
}

#define BASE_FEATURES (V1 | BIT(F_FLUSH) | BIT(F_BLK_SIZE) | BIT(F_SEG_MAX))

/* Reset and initialise the driver again, keeping earlier guest buffers. */
static int fx_start(struct fx *f, uint64_t features)
{
    return vdrv_reinit(&f->drv, features);
}

/* Run the completion loop until queue q has a used entry (or 5 s pass). */
static int fx_wait_used(struct fx *f, unsigned q, uint16_t *id, uint32_t *len)
{
    for (unsigned slice = 0; slice < 5000; slice++) {
        int rc = vdrv_get_used(&f->drv, q, id, len);
        if (rc != 0)
            return rc;
        loop_run(f->loop);
    }
    return 0;
}

/* Let the loop run a few slices (to show that nothing more arrives). */
static void fx_idle(struct fx *f, unsigned slices)
{
    for (unsigned i = 0; i < slices; i++)
        loop_run(f->loop);
}

static uint8_t fx_status(struct fx *f, uint64_t st_gpa)
{
    return *(uint8_t *)vdrv_ptr(&f->drv, st_gpa, 1);
}

static int file_read(struct fx *f, uint64_t off, void *buf, size_t len)
{
    int fd = open(f->path, O_RDONLY);
    if (fd < 0)
        return -errno;
    ssize_t r = pread(fd, buf, len, (off_t)off);
    close(fd);
    return r == (ssize_t)len ? 0 : -EIO;
}

static uint64_t hdr_new(struct fx *f, uint32_t type, uint64_t sector)
{
    struct blk_hdr h = { type, 0, sector };
    return vdrv_alloc_copy(&f->drv, &h, sizeof h);
}

/* A status byte preset to 0xee (so "not written" is visible). */
static uint64_t status_new(struct fx *f)
{
    uint64_t st = vdrv_alloc(&f->drv, 1, 1);
    if (st)
        *(uint8_t *)vdrv_ptr(&f->drv, st, 1) = 0xee;
    return st;
}

static void fill_pattern(uint8_t *p, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(seed + i * 7 + (i >> 8));
}

/* One simple request (header | data | status, three descriptors), kicked
 * and waited for. Returns the status byte, or -1 if no used entry came, and
 * the used length in *used_len. */
static int simple_req(struct fx *f, unsigned q, uint32_t type, uint64_t sector, uint64_t data_gpa,
                      uint32_t data_len, uint32_t *used_len)
{
    uint64_t h = hdr_new(f, type, sector), st = status_new(f);
    bool dev_writes = type == T_IN || type == T_GET_ID;
    struct vdrv_sg out[2] = { { h, sizeof(struct blk_hdr) }, { data_gpa, data_len } };
    struct vdrv_sg in[2] = { { data_gpa, data_len }, { st, 1 } };
    int head;
    if (!data_len)
        head = vdrv_add_chain(&f->drv, q, out, 1, in + 1, 1);
    else if (dev_writes)
        head = vdrv_add_chain(&f->drv, q, out, 1, in, 2);
    else
        head = vdrv_add_chain(&f->drv, q, out, 2, in + 1, 1);
    if (head < 0)
        return -1;
    vdrv_kick(&f->drv, q);
    uint16_t id;
    uint32_t len;
    if (fx_wait_used(f, q, &id, &len) != 1 || id != head)
        return -1;
    if (used_len)
        *used_len = len;
    return fx_status(f, st);
}

/* ---- data integrity ---------------------------------------------------- */

static void roundtrip(enum blk_aio aio)
{
    struct fx *f = fx_new_aio(aio);
    CHECK(f);
    CHECK_EQ(fx_start(f, BASE_FEATURES | BIT(VIRTIO_F_EVENT_IDX)), 0);
    const uint32_t len = 8192;
    uint64_t buf = vdrv_alloc(&f->drv, len, 512);
    uint8_t *p = vdrv_ptr(&f->drv, buf, len);
    fill_pattern(p, len, 3);
    uint8_t want[8192];
    memcpy(want, p, len);
    uint32_t used = 99;
    CHECK_EQ(simple_req(f, 0, T_OUT, 5, buf, len, &used), S_OK);
    CHECK_EQ(used, 1);                  /* only the status byte was written */
    uint8_t got[8192];
    CHECK_EQ(file_read(f, 5 * 512, got, len), 0);
    CHECK(memcmp(got, want, len) == 0);
    /* The sectors around it are untouched. */
    CHECK_EQ(file_read(f, 4 * 512, got, 512), 0);
    CHECK(memcmp(got, f->init + 4 * 512, 512) == 0);
    CHECK_EQ(file_read(f, 5 * 512 + len, got, 512), 0);
    CHECK(memcmp(got, f->init + 5 * 512 + len, 512) == 0);
    /* Read back into a fresh buffer, and read initial data elsewhere. */
    uint64_t rbuf = vdrv_alloc(&f->drv, len, 512);
    CHECK_EQ(simple_req(f, 0, T_IN, 5, rbuf, len, &used), S_OK);
    CHECK_EQ(used, len + 1);
    CHECK(memcmp(vdrv_ptr(&f->drv, rbuf, len), want, len) == 0);
    CHECK_EQ(simple_req(f, 0, T_IN, 1000, rbuf, 4096, &used), S_OK);
    CHECK(memcmp(vdrv_ptr(&f->drv, rbuf, 4096), f->init + 1000 * 512, 4096) == 0);
    /* The last sector of the disk. */
    CHECK_EQ(simple_req(f, 0, T_IN, IMG_SIZE / 512 - 1, rbuf, 512, &used), S_OK);
    CHECK(memcmp(vdrv_ptr(&f->drv, rbuf, 512), f->init + IMG_SIZE - 512, 512) == 0);
    CHECK(f->drv.irqs[0] > 0);
    fx_free(f);
}

TEST(roundtrip_threads) { roundtrip(BLK_AIO_THREADS); }
TEST(roundtrip_io_uring) { roundtrip(BLK_AIO_IO_URING); }

/* §5.2.6: the driver may split or merge header, data and status across
 * descriptors any way it likes (the device must not assume a layout). */
static void odd_layouts(enum blk_aio aio, bool indirect)
{
    struct fx *f = fx_new_aio(aio);
    CHECK(f);
    uint64_t feats = BASE_FEATURES | (indirect ? BIT(VIRTIO_F_INDIRECT_DESC) : 0);
    CHECK_EQ(fx_start(f, feats), 0);
    int (*add)(struct vdrv *, unsigned, const struct vdrv_sg *, unsigned,
               const struct vdrv_sg *, unsigned) =
        indirect ? vdrv_add_chain_indirect : vdrv_add_chain;

    /* 1. Write: header split 5+7+4, data in pieces 100/412/1024/2560 with
     *    the header's tail merged into the first data descriptor. */
    const uint32_t len = 4096;
    uint8_t data[4096];
    fill_pattern(data, len, 77);
    uint64_t blob = vdrv_alloc(&f->drv, 16 + len, 8);
    struct blk_hdr h = { T_OUT, 0, 40 };
    uint8_t *bp = vdrv_ptr(&f->drv, blob, 16 + len);
    memcpy(bp, &h, 16);
    memcpy(bp + 16, data, len);
    uint64_t st = status_new(f);
    struct vdrv_sg out1[] = {
        { blob, 5 }, { blob + 5, 7 }, { blob + 12, 4 + 100 }, { blob + 116, 412 },
        { blob + 528, 0 } /* zero-length: ignored */, { blob + 528, 1024 },
        { blob + 1552, 2560 },
    };
    struct vdrv_sg in1[] = { { st, 1 } };
    int head = add(&f->drv, 0, out1, 7, in1, 1);
    CHECK(head >= 0);
    vdrv_kick(&f->drv, 0);
    uint16_t id;
    uint32_t ulen;
    CHECK_EQ(fx_wait_used(f, 0, &id, &ulen), 1);
    CHECK_EQ(id, head);
    CHECK_EQ(fx_status(f, st), S_OK);
    uint8_t got[4096];
    CHECK_EQ(file_read(f, 40 * 512, got, len), 0);
    CHECK(memcmp(got, data, len) == 0);

    /* 2. Read: header in one descriptor, data split 1000 + 3000, the last
     *    96 data bytes and the status byte merged in one descriptor. */
    uint64_t hd = hdr_new(f, T_IN, 40);
    uint64_t rb = vdrv_alloc(&f->drv, len + 1, 8);
    memset(vdrv_ptr(&f->drv, rb, len + 1), 0xee, len + 1);
    struct vdrv_sg out2[] = { { hd, 16 } };
    struct vdrv_sg in2[] = { { rb, 1000 }, { rb + 1000, 3000 }, { rb + 4000, 97 } };
    head = add(&f->drv, 0, out2, 1, in2, 3);
    CHECK(head >= 0);
    vdrv_kick(&f->drv, 0);
    CHECK_EQ(fx_wait_used(f, 0, &id, &ulen), 1);
    CHECK_EQ(id, head);
    CHECK_EQ(ulen, len + 1);
    uint8_t *rp = vdrv_ptr(&f->drv, rb, len + 1);
    CHECK_EQ(rp[len], S_OK);
    CHECK(memcmp(rp, data, len) == 0);

    /* 3. Read where header, and status each come in one-byte pieces. */
    uint64_t hb = hdr_new(f, T_IN, 41);
    struct vdrv_sg out3[16];
    for (unsigned i = 0; i < 16; i++)
        out3[i] = (struct vdrv_sg){ hb + i, 1 };
    uint64_t rb3 = vdrv_alloc(&f->drv, 512 + 1, 8);
    struct vdrv_sg in3[] = { { rb3, 511 }, { rb3 + 511, 1 }, { rb3 + 512, 1 } };
    head = add(&f->drv, 0, out3, 16, in3, 3);
    CHECK(head >= 0);
    vdrv_kick(&f->drv, 0);
    CHECK_EQ(fx_wait_used(f, 0, &id, &ulen), 1);
    CHECK_EQ(id, head);
    CHECK_EQ(ulen, 513);
    CHECK_EQ(*(uint8_t *)vdrv_ptr(&f->drv, rb3 + 512, 1), S_OK);
    CHECK(memcmp(vdrv_ptr(&f->drv, rb3, 512), data + 512, 512) == 0);

    /* 4. Write with header + all data + (readable) nothing else in ONE
     *    descriptor, status alone. */
    fill_pattern(data, 1024, 5);
    uint64_t one = vdrv_alloc(&f->drv, 16 + 1024, 8);
    struct blk_hdr h4 = { T_OUT, 0, 2000 };
    memcpy(vdrv_ptr(&f->drv, one, 16), &h4, 16);
    memcpy(vdrv_ptr(&f->drv, one + 16, 1024), data, 1024);
    uint64_t st4 = status_new(f);
    struct vdrv_sg out4[] = { { one, 16 + 1024 } }, in4[] = { { st4, 1 } };
    head = add(&f->drv, 0, out4, 1, in4, 1);
    CHECK(head >= 0);
    vdrv_kick(&f->drv, 0);
    CHECK_EQ(fx_wait_used(f, 0, &id, &ulen), 1);
    CHECK_EQ(fx_status(f, st4), S_OK);
    CHECK_EQ(file_read(f, 2000 * 512, got, 1024), 0);
    CHECK(memcmp(got, data, 1024) == 0);
    fx_free(f);
}

TEST(odd_layouts_threads) { odd_layouts(BLK_AIO_THREADS, false); }
TEST(odd_layouts_io_uring) { odd_layouts(BLK_AIO_IO_URING, false); }
TEST(indirect_threads) { odd_layouts(BLK_AIO_THREADS, true); }
TEST(indirect_io_uring) { odd_layouts(BLK_AIO_IO_URING, true); }

/* Mixed direct and indirect: direct descriptors then an indirect table
 * (§2.7.5.3 allows a chain to end in one). */
TEST(direct_then_indirect)
{
    struct fx *f = fx_new_aio(BLK_AIO_THREADS);
    CHECK(f);
    CHECK_EQ(fx_start(f, BASE_FEATURES | BIT(VIRTIO_F_INDIRECT_DESC)), 0);
    uint64_t h = hdr_new(f, T_IN, 7), buf = vdrv_alloc(&f->drv, 1024, 8), st = status_new(f);
    uint64_t table = vdrv_alloc(&f->drv, 32, 16);
    struct virtq_desc t[2] = {
        { buf, 1024, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1 },
        { st, 1, VIRTQ_DESC_F_WRITE, 0 },
    };
    memcpy(vdrv_ptr(&f->drv, table, 32), t, 32);
    /* Descriptors 100 and 101 by hand (the free list starts at 0). */
    vdrv_desc_write(&f->drv, 0, 100, h, 16, VIRTQ_DESC_F_NEXT, 101);
    vdrv_desc_write(&f->drv, 0, 101, table, 32, VIRTQ_DESC_F_INDIRECT, 0);
    vdrv_avail_push_raw(&f->drv, 0, 100);
    f->drv.q[0].chain_len[100] = 2;     /* so vdrv_get_used accepts the id */
    vdrv_kick(&f->drv, 0);
    uint16_t id;
    uint32_t len;
    CHECK_EQ(fx_wait_used(f, 0, &id, &len), 1);
    CHECK_EQ(id, 100);
    CHECK_EQ(len, 1025);
    CHECK_EQ(fx_status(f, st), S_OK);
    CHECK(memcmp(vdrv_ptr(&f->drv, buf, 1024), f->init + 7 * 512, 1024) == 0);
    fx_free(f);
}

/* ---- flush ----------------------------------------------------------------- */

/* A flush's completion comes after those of every write queued before it
 * (block.h's ordering rule, as the guest sees it through the used ring). */
static void flush_order(enum blk_aio aio)
{
    struct fx *f = fx_new_aio(aio);
    CHECK(f);
    CHECK_EQ(fx_start(f, BASE_FEATURES), 0);
    enum { NW = 24, WLEN = 16384 };
    int heads[NW + 1];
    uint64_t sts[NW + 1];
    for (unsigned i = 0; i < NW; i++) {
        uint64_t h = hdr_new(f, T_OUT, (uint64_t)i * (WLEN / 512));
        uint64_t d = vdrv_alloc(&f->drv, WLEN, 512);
        fill_pattern(vdrv_ptr(&f->drv, d, WLEN), WLEN, i);
        sts[i] = status_new(f);
        struct vdrv_sg out[] = { { h, 16 }, { d, WLEN } }, in[] = { { sts[i], 1 } };
        heads[i] = vdrv_add_chain(&f->drv, 0, out, 2, in, 1);
        CHECK(heads[i] >= 0);
    }
    uint64_t fh = hdr_new(f, T_FLUSH, 0);
    sts[NW] = status_new(f);
    struct vdrv_sg fout[] = { { fh, 16 } }, fin[] = { { sts[NW], 1 } };
    heads[NW] = vdrv_add_chain(&f->drv, 0, fout, 1, fin, 1);
    CHECK(heads[NW] >= 0);
    vdrv_kick(&f->drv, 0);
    unsigned seen = 0;
    bool flush_seen = false;
    while (seen < NW + 1) {
        uint16_t id;
        uint32_t len;
        CHECK_EQ(fx_wait_used(f, 0, &id, &len), 1);
        CHECK(!flush_seen);             /* nothing after the flush here */
        if (id == heads[NW]) {
            CHECK_EQ(seen, NW);         /* every write completed before it */
            flush_seen = true;
        }
        seen++;
    }
    for (unsigned i = 0; i <= NW; i++)
        CHECK_EQ(fx_status(f, sts[i]), S_OK);
    uint8_t *got = malloc(WLEN), *want = malloc(WLEN);
    CHECK(got && want);
    for (unsigned i = 0; i < NW; i++) {
        fill_pattern(want, WLEN, i);
        CHECK_EQ(file_read(f, (uint64_t)i * WLEN, got, WLEN), 0);
        CHECK(memcmp(got, want, WLEN) == 0);
    }
    free(got);
    free(want);
    /* A lone flush. */
    CHECK_EQ(simple_req(f, 0, T_FLUSH, 0, 0, 0, NULL), S_OK);
    fx_free(f);
}

TEST(flush_order_threads) { flush_order(BLK_AIO_THREADS); }
TEST(flush_order_io_uring) { flush_order(BLK_AIO_IO_URING); }

/* ---- GET_ID ------------------------------------------------------------------ */

TEST(get_id)
{
    struct fx_opts o = { .serial = "kvmbox-disk-0" };
    struct fx *f = fx_new(&o);
    CHECK(f);
    CHECK_EQ(fx_start(f, BASE_FEATURES), 0);
    uint64_t buf = vdrv_alloc(&f->drv, 20, 1);
    memset(vdrv_ptr(&f->drv, buf, 20), 0xaa, 20);
    uint32_t used;
    CHECK_EQ(simple_req(f, 0, T_GET_ID, 0, buf, 20, &used), S_OK);
    CHECK_EQ(used, 21);
    uint8_t want[20] = "kvmbox-disk-0";     /* zero-padded */
    CHECK(memcmp(vdrv_ptr(&f->drv, buf, 20), want, 20) == 0);
    /* A smaller buffer gets a prefix. */
    uint64_t small = vdrv_alloc(&f->drv, 6, 1);
    CHECK_EQ(simple_req(f, 0, T_GET_ID, 0, small, 6, &used), S_OK);
    CHECK_EQ(used, 7);
    CHECK(memcmp(vdrv_ptr(&f->drv, small, 6), "kvmbox", 6) == 0);
    /* A bigger one: 20 bytes, the rest untouched. */
    uint64_t big = vdrv_alloc(&f->drv, 64, 1);
    memset(vdrv_ptr(&f->drv, big, 64), 0xaa, 64);
    CHECK_EQ(simple_req(f, 0, T_GET_ID, 0, big, 64, &used), S_OK);
    CHECK_EQ(used, 21);
    CHECK(memcmp(vdrv_ptr(&f->drv, big, 20), want, 20) == 0);
    CHECK_EQ(*(uint8_t *)vdrv_ptr(&f->drv, big + 20, 1), 0xaa);
    fx_free(f);
}

TEST(get_id_truncated_to_20_bytes)
{
    struct fx_opts o = { .serial = "0123456789abcdefghijKLMNOP" };
    struct fx *f = fx_new(&o);
    CHECK(f);
    CHECK_EQ(fx_start(f, BASE_FEATURES), 0);
    uint64_t buf = vdrv_alloc(&f->drv, 32, 1);
    memset(vdrv_ptr(&f->drv, buf, 32), 0xaa, 32);
    uint32_t used;
    CHECK_EQ(simple_req(f, 0, T_GET_ID, 0, buf, 32, &used), S_OK);
    CHECK_EQ(used, 21);
    /* Exactly 20 bytes, no NUL terminator (§5.2.6: not terminated when
     * the string is 20 bytes long). */
    CHECK(memcmp(vdrv_ptr(&f->drv, buf, 20), "0123456789abcdefghij", 20) == 0);
    CHECK_EQ(*(uint8_t *)vdrv_ptr(&f->drv, buf + 20, 1), 0xaa);
    fx_free(f);
}

TEST(get_id_no_serial)
{
    struct fx *f = fx_new_aio(BLK_AIO_THREADS);
    CHECK(f);
    CHECK_EQ(fx_start(f, BASE_FEATURES), 0);
    uint64_t buf = vdrv_alloc(&f->drv, 20, 1);
    memset(vdrv_ptr(&f->drv, buf, 20), 0xaa, 20);
    CHECK_EQ(simple_req(f, 0, T_GET_ID, 0, buf, 20, NULL), S_OK);
    uint8_t zero[20] = { 0 };
    CHECK(memcmp(vdrv_ptr(&f->drv, buf, 20), zero, 20) == 0);
    fx_free(f);
}

/* ---- DISCARD / WRITE_ZEROES --------------------------------------------- */

static int dwz_req(struct fx *f, uint32_t type, uint64_t sector, uint32_t n, uint32_t flags)
{
    struct dwz_seg s = { sector, n, flags };
    uint64_t seg = vdrv_alloc_copy(&f->drv, &s, sizeof s);
    return simple_req(f, 0, type, 0, seg, sizeof s, NULL);
}

static bool file_is_zero(struct fx *f, uint64_t off, size_t len)
{
    uint8_t *b = malloc(len);
    bool z = b && file_read(f, off, b, len) == 0;
    for (size_t i = 0; z && i < len; i++)
        z = b[i] == 0;
    free(b);
    return z;
}

static bool file_is_init(struct fx *f, uint64_t off, size_t len)
{
    uint8_t *b = malloc(len);
    bool ok = b && file_read(f, off, b, len) == 0 && memcmp(b, f->init + off, len) == 0;
    free(b);
    return ok;
}

static void discard_wz(enum blk_aio aio)
{
    struct fx_opts o = { .aio = aio, .discard = true };
    struct fx *f = fx_new(&o);
    CHECK(f);
    CHECK(f->vd.device_features & BIT(F_DISCARD));
    CHECK(f->vd.device_features & BIT(F_WRITE_ZEROES));
    CHECK_EQ(fx_start(f, BASE_FEATURES | BIT(F_DISCARD) | BIT(F_WRITE_ZEROES)), 0);
    uint8_t unmap;
    f->vd.ops->config_read(&f->vd, CFG_WZ_MAY_UNMAP, &unmap, 1);
    CHECK_EQ(unmap, 1);
    /* Discard 64 KiB at 64 KiB: the file reads zeros there (hole punched). */
    CHECK_EQ(dwz_req(f, T_DISCARD, 128, 128, 0), S_OK);
    CHECK(file_is_zero(f, 128 * 512, 65536));
    CHECK(file_is_init(f, 127 * 512, 512));
    CHECK(file_is_init(f, 256 * 512, 512));
    /* Write zeroes (an odd, unaligned-to-4k range), with and without unmap. */
    CHECK_EQ(dwz_req(f, T_WRITE_ZEROES, 301, 3, 0), S_OK);
    CHECK(file_is_zero(f, 301 * 512, 3 * 512));
    CHECK(file_is_init(f, 300 * 512, 512));
    CHECK(file_is_init(f, 304 * 512, 512));
    CHECK_EQ(dwz_req(f, T_WRITE_ZEROES, 1024, 200, 1), S_OK);
    CHECK(file_is_zero(f, 1024 * 512, 200 * 512));
    /* Out of range: IOERR for write-zeroes, UNSUPP for discard (§5.2.6.2). */
    CHECK_EQ(dwz_req(f, T_WRITE_ZEROES, IMG_SIZE / 512 - 1, 2, 0), S_IOERR);
    CHECK(file_is_init(f, IMG_SIZE - 512, 512));
    CHECK_EQ(dwz_req(f, T_DISCARD, IMG_SIZE / 512, 1, 0), S_UNSUPP);
    /* Discard with the unmap flag (only write-zeroes has it) / unknown flags. */
    CHECK_EQ(dwz_req(f, T_DISCARD, 0, 1, 1), S_UNSUPP);
    CHECK_EQ(dwz_req(f, T_WRITE_ZEROES, 0, 1, 2), S_IOERR);
    CHECK(file_is_init(f, 0, 512));
    /* Two segments (max_*_seg is 1): refused. */
    struct dwz_seg two[2] = { { 0, 1, 0 }, { 8, 1, 0 } };
    uint64_t seg = vdrv_alloc_copy(&f->drv, two, sizeof two);
    CHECK_EQ(simple_req(f, 0, T_WRITE_ZEROES, 0, seg, sizeof two, NULL), S_IOERR);
    CHECK(file_is_init(f, 0, 512));
    fx_free(f);
}

TEST(discard_write_zeroes_threads) { discard_wz(BLK_AIO_THREADS); }
TEST(discard_write_zeroes_io_uring) { discard_wz(BLK_AIO_IO_URING); }

TEST(discard_not_offered)
{
    struct fx *f = fx_new_aio(BLK_AIO_THREADS);
    CHECK(f);
    CHECK(!(f->vd.device_features & BIT(F_DISCARD)));
    CHECK_EQ(vdrv_negotiate(&f->drv, BASE_FEATURES | BIT(F_DISCARD)), -EIO);
    CHECK_EQ(fx_start(f, BASE_FEATURES | BIT(F_WRITE_ZEROES)), 0);
    CHECK_EQ(dwz_req(f, T_DISCARD, 0, 8, 0), S_UNSUPP);
    CHECK(file_is_init(f, 0, 4096));
    uint8_t unmap = 9;
    f->vd.ops->config_read(&f->vd, CFG_WZ_MAY_UNMAP, &unmap, 1);
    CHECK_EQ(unmap, 0);
    /* Write-zeroes still works (without unmapping). */
    CHECK_EQ(dwz_req(f, T_WRITE_ZEROES, 8, 8, 0), S_OK);
    CHECK(file_is_zero(f, 8 * 512, 4096));
    fx_free(f);
}

/* ---- error statuses ----------------------------------------------------- */

static void errors(enum blk_aio aio)
{
    struct fx *f = fx_new_aio(aio);
    CHECK(f);
    CHECK_EQ(fx_start(f, BASE_FEATURES), 0);
    uint64_t buf = vdrv_alloc(&f->drv, 8192, 512);
    fill_pattern(vdrv_ptr(&f->drv, buf, 8192), 8192, 1);
    uint64_t cap = IMG_SIZE / 512;
    uint32_t used;
    /* Out of range: past the end, straddling the end, absurd sectors. */
    CHECK_EQ(simple_req(f, 0, T_OUT, cap, buf, 512, &used), S_IOERR);
    CHECK_EQ(used, 1);
    CHECK_EQ(simple_req(f, 0, T_OUT, cap - 1, buf, 1024, NULL), S_IOERR);
    CHECK(file_is_init(f, IMG_SIZE - 512, 512));
    CHECK_EQ(simple_req(f, 0, T_IN, cap - 1, buf, 1024, NULL), S_IOERR);
    CHECK_EQ(simple_req(f, 0, T_IN, UINT64_MAX, buf, 512, NULL), S_IOERR);
    CHECK_EQ(simple_req(f, 0, T_IN, 1ULL << 55, buf, 512, NULL), S_IOERR);
    CHECK_EQ(simple_req(f, 0, T_OUT, (UINT64_MAX >> 9) + 1, buf, 512, NULL), S_IOERR);
    /* Unaligned lengths. */
    CHECK_EQ(simple_req(f, 0, T_OUT, 0, buf, 100, NULL), S_IOERR);
    CHECK_EQ(simple_req(f, 0, T_IN, 0, buf, 513, NULL), S_IOERR);
    CHECK(file_is_init(f, 0, 1024));
    /* Unknown type. */
    CHECK_EQ(simple_req(f, 0, 77, 0, 0, 0, &used), S_UNSUPP);
    CHECK_EQ(used, 1);
    CHECK_EQ(simple_req(f, 0, 0x80000000u, 0, buf, 512, NULL), S_UNSUPP);
    /* Zero-length read and write at a valid sector: nothing to do, OK. */
    CHECK_EQ(simple_req(f, 0, T_IN, 3, 0, 0, NULL), S_OK);
    /* The device still works after all that. */
    CHECK(!(virtio_get_status(&f->vd) & VIRTIO_STATUS_NEEDS_RESET));
    CHECK_EQ(simple_req(f, 0, T_IN, 2, buf, 512, NULL), S_OK);
    CHECK(memcmp(vdrv_ptr(&f->drv, buf, 512), f->init + 1024, 512) == 0);
    fx_free(f);
}

TEST(errors_threads) { errors(BLK_AIO_THREADS); }
TEST(errors_io_uring) { errors(BLK_AIO_IO_URING); }

TEST(logical_block_size_4k)
{
    struct fx_opts o = { .lbs = 4096 };
    struct fx *f = fx_new(&o);
    CHECK(f);
    CHECK_EQ(fx_start(f, BASE_FEATURES), 0);
    uint32_t bs = 0;
    f->vd.ops->config_read(&f->vd, CFG_BLK_SIZE, &bs, 4);
    CHECK_EQ(bs, 4096);
    uint64_t buf = vdrv_alloc(&f->drv, 8192, 4096);
    CHECK_EQ(simple_req(f, 0, T_IN, 8, buf, 4096, NULL), S_OK);
    CHECK(memcmp(vdrv_ptr(&f->drv, buf, 4096), f->init + 4096, 4096) == 0);
    /* Sector (in 512-byte units) not 4k aligned, or length not a multiple. */
    CHECK_EQ(simple_req(f, 0, T_IN, 1, buf, 4096, NULL), S_IOERR);
    CHECK_EQ(simple_req(f, 0, T_OUT, 8, buf, 512, NULL), S_IOERR);
    CHECK(file_is_init(f, 4096, 4096));
    fx_free(f);
}

static void read_only(enum blk_aio aio)
{
    struct fx_opts o = { .aio = aio, .read_only = true };
    struct fx *f = fx_new(&o);
    CHECK(f);
    CHECK(f->vd.device_features & BIT(F_RO));
    CHECK_EQ(fx_start(f, BASE_FEATURES | BIT(F_RO) | BIT(F_WRITE_ZEROES)), 0);
    uint64_t buf = vdrv_alloc(&f->drv, 4096, 512);
    fill_pattern(vdrv_ptr(&f->drv, buf, 4096), 4096, 9);
    CHECK_EQ(simple_req(f, 0, T_OUT, 0, buf, 4096, NULL), S_IOERR);
    CHECK_EQ(dwz_req(f, T_WRITE_ZEROES, 0, 8, 0), S_IOERR);
    CHECK(file_is_init(f, 0, 4096));
    CHECK_EQ(simple_req(f, 0, T_IN, 0, buf, 4096, NULL), S_OK);
    CHECK(memcmp(vdrv_ptr(&f->drv, buf, 4096), f->init, 4096) == 0);
    /* Flushing a read-only disk is harmless. */
    CHECK_EQ(simple_req(f, 0, T_FLUSH, 0, 0, 0, NULL), S_OK);
    fx_free(f);
}

TEST(read_only_threads) { read_only(BLK_AIO_THREADS); }
TEST(read_only_io_uring) { read_only(BLK_AIO_IO_URING); }

/* §5.2.6.1: a request without a header or a status byte cannot be answered;
 * the device needs a reset, the VMM goes on, and a reset recovers it. */
TEST(no_status_or_header_needs_reset)
{
    struct fx *f = fx_new_aio(BLK_AIO_THREADS);
    CHECK(f);
    CHECK_EQ(fx_start(f, BASE_FEATURES), 0);
    /* No writable byte at all. */
    uint64_t h = hdr_new(f, T_IN, 0), buf = vdrv_alloc(&f->drv, 512, 8);
    struct vdrv_sg out[] = { { h, 16 }, { buf, 512 } };
    CHECK(vdrv_add_chain(&f->drv, 0, out, 2, NULL, 0) >= 0);
    vdrv_kick(&f->drv, 0);
    fx_idle(f, 3);
    CHECK(virtio_get_status(&f->vd) & VIRTIO_STATUS_NEEDS_RESET);
    CHECK_EQ(f->drv.config_irqs, 1);
    uint16_t id;
    uint32_t len;
    CHECK_EQ(vdrv_get_used(&f->drv, 0, &id, &len), 0);
    CHECK(file_is_init(f, 0, 512));

    /* Reset, start again: a short header (8 bytes) does the same. */
    CHECK_EQ(fx_start(f, BASE_FEATURES), 0);
    uint64_t st = status_new(f);
    struct vdrv_sg sh[] = { { h, 8 } }, in[] = { { st, 1 } };
    CHECK(vdrv_add_chain(&f->drv, 0, sh, 1, in, 1) >= 0);
    vdrv_kick(&f->drv, 0);
    fx_idle(f, 3);
    CHECK(virtio_get_status(&f->vd) & VIRTIO_STATUS_NEEDS_RESET);
    CHECK_EQ(fx_status(f, st), 0xee);

    /* No readable part at all (only a writable buffer). */
    CHECK_EQ(fx_start(f, BASE_FEATURES), 0);
    CHECK(vdrv_add_chain(&f->drv, 0, NULL, 0, in, 1) >= 0);
    vdrv_kick(&f->drv, 0);
    fx_idle(f, 3);
    CHECK(virtio_get_status(&f->vd) & VIRTIO_STATUS_NEEDS_RESET);

    /* Recovered. */
    CHECK_EQ(fx_start(f, BASE_FEATURES), 0);
    CHECK_EQ(simple_req(f, 0, T_IN, 1, buf, 512, NULL), S_OK);
    CHECK(memcmp(vdrv_ptr(&f->drv, buf, 512), f->init + 512, 512) == 0);
    fx_free(f);
}

/* ---- config space ------------------------------------------------------- */

TEST(config_space)
{
    struct fx_opts o = { .num_queues = 3 };
    struct fx *f = fx_new(&o);
    CHECK(f);
    const struct virtio_device_ops *ops = f->vd.ops;
    CHECK_EQ(ops->device_id, 2);
    CHECK_EQ(ops->config_size, 60);
    uint64_t df = f->vd.device_features;
    CHECK(df & BIT(F_SEG_MAX));
    CHECK(df & BIT(F_BLK_SIZE));
    CHECK(df & BIT(F_FLUSH));
    CHECK(df & BIT(F_CONFIG_WCE));
    CHECK(df & BIT(F_MQ));
    CHECK(df & BIT(F_WRITE_ZEROES));
    CHECK(!(df & BIT(F_RO)));
    uint64_t cap = 0;
    ops->config_read(&f->vd, CFG_CAPACITY, &cap, 8);
    CHECK_EQ(cap, IMG_SIZE / 512);
    uint32_t cap_lo = 0, cap_hi = 1;    /* 32-bit halves, as a driver reads them */
    ops->config_read(&f->vd, CFG_CAPACITY, &cap_lo, 4);
    ops->config_read(&f->vd, CFG_CAPACITY + 4, &cap_hi, 4);
    CHECK_EQ(cap_lo, IMG_SIZE / 512);
    CHECK_EQ(cap_hi, 0);
    uint32_t v32 = 0;
    ops->config_read(&f->vd, CFG_BLK_SIZE, &v32, 4);
    CHECK_EQ(v32, 512);
    ops->config_read(&f->vd, CFG_SEG_MAX, &v32, 4);
    CHECK(v32 >= 1 && v32 <= VIRTQ_MAX_CHAIN - 2);
    uint16_t nq = 0;
    ops->config_read(&f->vd, CFG_NUM_QUEUES, &nq, 2);
    CHECK_EQ(nq, 3);
    uint8_t wb = 0;
    ops->config_read(&f->vd, CFG_WRITEBACK, &wb, 1);
    CHECK_EQ(wb, 1);                    /* cache=writeback: a volatile cache */
    /* Out-of-range reads leave the buffer alone (and do not crash). */
    uint32_t junk = 0x5a5a5a5a;
    ops->config_read(&f->vd, 58, &junk, 4);
    ops->config_read(&f->vd, 0xffffffffu, &junk, 4);
    CHECK_EQ(junk, 0x5a5a5a5a);

    /* WCE: writable only when CONFIG_WCE is negotiated. */
    CHECK_EQ(fx_start(f, BASE_FEATURES), 0);
    uint8_t zero = 0;
    ops->config_write(&f->vd, CFG_WRITEBACK, &zero, 1);
    ops->config_read(&f->vd, CFG_WRITEBACK, &wb, 1);
    CHECK_EQ(wb, 1);
    CHECK_EQ(fx_start(f, BASE_FEATURES | BIT(F_CONFIG_WCE)), 0);
    ops->config_write(&f->vd, CFG_WRITEBACK, &zero, 1);
    ops->config_read(&f->vd, CFG_WRITEBACK, &wb, 1);
    CHECK_EQ(wb, 0);
    /* Writethrough now: writes still land (each followed by a flush). */
    uint64_t buf = vdrv_alloc(&f->drv, 4096, 512);
    fill_pattern(vdrv_ptr(&f->drv, buf, 4096), 4096, 42);
    CHECK_EQ(simple_req(f, 0, T_OUT, 16, buf, 4096, NULL), S_OK);
    uint8_t got[4096];
    CHECK_EQ(file_read(f, 16 * 512, got, 4096), 0);
    CHECK(memcmp(got, vdrv_ptr(&f->drv, buf, 4096), 4096) == 0);
    /* Other fields are read-only. */
    uint64_t big = 1;
    ops->config_write(&f->vd, CFG_CAPACITY, &big, 8);
    ops->config_read(&f->vd, CFG_CAPACITY, &cap, 8);
    CHECK_EQ(cap, IMG_SIZE / 512);
    /* A reset restores the back end's cache mode. */
    CHECK_EQ(fx_start(f, BASE_FEATURES | BIT(F_CONFIG_WCE)), 0);
    ops->config_read(&f->vd, CFG_WRITEBACK, &wb, 1);
    CHECK_EQ(wb, 1);
    fx_free(f);
}

TEST(config_writethrough_cache_mode)
{
    struct fx_opts o = { .cache = BLK_CACHE_WRITETHROUGH };
    struct fx *f = fx_new(&o);
    CHECK(f);
    uint8_t wb = 9;
    f->vd.ops->config_read(&f->vd, CFG_WRITEBACK, &wb, 1);
    CHECK_EQ(wb, 0);
    CHECK(!(f->vd.device_features & BIT(F_MQ)));
    uint16_t nq = 0;
    f->vd.ops->config_read(&f->vd, CFG_NUM_QUEUES, &nq, 2);
    CHECK_EQ(nq, 1);
    fx_free(f);
}

/* ---- several queues ------------------------------------------------------ */

static void multiqueue(enum blk_aio aio)
{
    struct fx_opts o = { .aio = aio, .num_queues = 4 };
    struct fx *f = fx_new(&o);
    CHECK(f);
    CHECK_EQ(f->vd.num_queues, 4);
    CHECK_EQ(fx_start(f, BASE_FEATURES | BIT(F_MQ) | BIT(VIRTIO_F_EVENT_IDX)), 0);
    /* Four writes per queue, all queued before any kick. */
    int heads[4][4];
    uint64_t sts[4][4];
    for (unsigned q = 0; q < 4; q++) {
        for (unsigned i = 0; i < 4; i++) {
            uint64_t sector = (q * 4 + i) * 8;
            uint64_t h = hdr_new(f, T_OUT, sector), d = vdrv_alloc(&f->drv, 4096, 512);
            fill_pattern(vdrv_ptr(&f->drv, d, 4096), 4096, q * 4 + i);
            sts[q][i] = status_new(f);
            struct vdrv_sg out[] = { { h, 16 }, { d, 4096 } }, in[] = { { sts[q][i], 1 } };
            heads[q][i] = vdrv_add_chain(&f->drv, q, out, 2, in, 1);
            CHECK(heads[q][i] >= 0);
        }
    }
    for (unsigned q = 0; q < 4; q++)
        vdrv_kick(&f->drv, q);
    for (unsigned q = 0; q < 4; q++) {
        unsigned got = 0;
        while (got < 4) {
            uint16_t id;
            uint32_t len;
            CHECK_EQ(fx_wait_used(f, q, &id, &len), 1);
            got++;
        }
        CHECK(f->drv.irqs[q] > 0);
        for (unsigned i = 0; i < 4; i++)
            CHECK_EQ(fx_status(f, sts[q][i]), S_OK);
    }
    uint8_t want[4096], got[4096];
    for (unsigned k = 0; k < 16; k++) {
        fill_pattern(want, 4096, k);
        CHECK_EQ(file_read(f, (uint64_t)k * 4096, got, 4096), 0);
        CHECK(memcmp(got, want, 4096) == 0);
    }
    /* Queue 3 reads what queue 0 wrote. */
    uint64_t rb = vdrv_alloc(&f->drv, 4096, 512);
    CHECK_EQ(simple_req(f, 3, T_IN, 0, rb, 4096, NULL), S_OK);
    fill_pattern(want, 4096, 0);
    CHECK(memcmp(vdrv_ptr(&f->drv, rb, 4096), want, 4096) == 0);
    fx_free(f);
}

TEST(multiqueue_threads) { multiqueue(BLK_AIO_THREADS); }
TEST(multiqueue_io_uring) { multiqueue(BLK_AIO_IO_URING); }

/* ---- reset with requests in flight ----------------------------------------- */

/* Queue `N` 16 KiB writes and reads without running the loop (so they are
 * all in flight in the back end), then reset: the reset must wait for them
 * (ASan sees any use of a freed request or a ring after the reset). */
static void reset_inflight(enum blk_aio aio)
{
    struct fx *f = fx_new_aio(aio);
    CHECK(f);
    CHECK_EQ(fx_start(f, BASE_FEATURES), 0);
    enum { N = 40, LEN = 16384 };   /* 3 descriptors each: 120 of 128 */
    for (unsigned i = 0; i < N; i++) {
        uint32_t type = i % 2 ? T_IN : T_OUT;
        uint64_t h = hdr_new(f, type, (uint64_t)i * (LEN / 512));
        uint64_t d = vdrv_alloc(&f->drv, LEN, 512), st = status_new(f);
        fill_pattern(vdrv_ptr(&f->drv, d, LEN), LEN, i);
        struct vdrv_sg out[] = { { h, 16 }, { d, LEN } }, in[] = { { d, LEN }, { st, 1 } };
        int head = type == T_OUT ? vdrv_add_chain(&f->drv, 0, out, 2, in + 1, 1)
                                 : vdrv_add_chain(&f->drv, 0, out, 1, in, 2);
        CHECK(head >= 0);
    }
    vdrv_kick(&f->drv, 0);
    CHECK(blk_in_flight(f->be) > 0);
    pthread_mutex_lock(&f->vd.lock);
    virtio_set_status(&f->vd, 0);
    pthread_mutex_unlock(&f->vd.lock);
    CHECK_EQ(blk_in_flight(f->be), 0);
    CHECK_EQ(virtio_get_status(&f->vd), 0);
    CHECK(!f->vd.vqs[0].s.ready);
    /* Every request was answered before the queue went away. */
    CHECK_EQ(*vdrv_used_word(&f->drv, 0, 2), N);
    /* The writes landed. */
    uint8_t *want = malloc(LEN), *got = malloc(LEN);
    CHECK(want && got);
    for (unsigned i = 0; i < N; i += 2) {
        fill_pattern(want, LEN, i);
        CHECK_EQ(file_read(f, (uint64_t)i * LEN, got, LEN), 0);
        CHECK(memcmp(got, want, LEN) == 0);
    }
    free(want);
    free(got);
    /* Nothing late arrives; the device works again after re-init. */
    fx_idle(f, 3);
    CHECK_EQ(fx_start(f, BASE_FEATURES), 0);
    uint64_t rb = vdrv_alloc(&f->drv, 512, 512);
    CHECK_EQ(simple_req(f, 0, T_IN, 1500, rb, 512, NULL), S_OK);   /* past the writes */
    CHECK(memcmp(vdrv_ptr(&f->drv, rb, 512), f->init + 1500 * 512, 512) == 0);
    fx_free(f);
}

TEST(reset_inflight_threads) { reset_inflight(BLK_AIO_THREADS); }
TEST(reset_inflight_io_uring) { reset_inflight(BLK_AIO_IO_URING); }

/* The VMM's shape: the back end's completions and queue_notify on a real
 * I/O thread; the reset from another thread (a vCPU's) while requests are
 * in flight. */
struct io_fx {
    struct iothread *io;
    struct block_backend *be;
    struct virtio_blk *blk;
    struct guest_mem mem;
    struct virtio_dev vd;
    struct vdrv drv;
    char path[300];
};

static void io_kick(void *arg)
{
    struct io_fx *x = arg;
    vdrv_kick_force(&x->drv, 0);
}

static void reset_inflight_iothread(enum blk_aio aio)
{
    struct io_fx *x = calloc(1, sizeof *x);
    CHECK(x);
    snprintf(x->path, sizeof x->path, "%s/io%u.raw", tdir, fx_serial++);
    int fd = open(x->path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
    CHECK(fd >= 0);
    CHECK_EQ(ftruncate(fd, IMG_SIZE), 0);
    close(fd);
    x->io = iothread_new("test-io");
    CHECK(x->io);
    struct blk_options bo = { .filename = x->path, .format = "raw", .aio = aio };
    char err[400];
    x->be = blk_open(&bo, iothread_loop(x->io), err, sizeof err);
    CHECK(x->be);
    struct virtio_blk_opts vo = { .queue_size = 256 };
    x->blk = virtio_blk_new(x->be, iothread_loop(x->io), &vo);
    CHECK(x->blk);
    CHECK_EQ(gmem_init(&x->mem, RAM_SIZE), 0);
    CHECK_EQ(virtio_dev_init(&x->vd, virtio_blk_ops(x->blk), x->blk, &x->mem), 0);
    CHECK_EQ(vdrv_init(&x->drv, &x->vd, BASE_FEATURES), 0);
    CHECK_EQ(iothread_start(x->io), 0);
    enum { LEN = 8192 };
    uint64_t h[128], st[128], d = vdrv_alloc(&x->drv, LEN, 512);
    for (unsigned i = 0; i < 128; i++) {
        h[i] = vdrv_alloc(&x->drv, 16, 8);
        st[i] = vdrv_alloc(&x->drv, 1, 1);
    }
    for (unsigned round = 0; round < 20; round++) {
        unsigned n = 8 + round * 4;    /* <= 84 chains of 3: fits 256 */
        for (unsigned i = 0; i < n; i++) {
            struct blk_hdr hd = { i % 3 ? T_OUT : T_IN, 0, (uint64_t)(i % 64) * (LEN / 512) };
            memcpy(vdrv_ptr(&x->drv, h[i], 16), &hd, 16);
            struct vdrv_sg out[] = { { h[i], 16 }, { d, LEN } };
            struct vdrv_sg in[] = { { d, LEN }, { st[i], 1 } };
            int head = hd.type == T_OUT ? vdrv_add_chain(&x->drv, 0, out, 2, in + 1, 1)
                                        : vdrv_add_chain(&x->drv, 0, out, 1, in, 2);
            CHECK(head >= 0);
        }
        loop_call_sync(iothread_loop(x->io), io_kick, x);
        if (round % 2) {        /* let some complete first */
            struct timespec ts = { 0, 200000 };
            nanosleep(&ts, NULL);
        }
        pthread_mutex_lock(&x->vd.lock);
        virtio_set_status(&x->vd, 0);
        pthread_mutex_unlock(&x->vd.lock);
        CHECK_EQ(blk_in_flight(x->be), 0);
        CHECK_EQ(__atomic_load_n(vdrv_used_word(&x->drv, 0, 2), __ATOMIC_ACQUIRE), n);
        CHECK_EQ(vdrv_reinit(&x->drv, BASE_FEATURES), 0);
    }
    iothread_stop(x->io);
    pthread_mutex_lock(&x->vd.lock);
    virtio_set_status(&x->vd, 0);
    pthread_mutex_unlock(&x->vd.lock);
    virtio_dev_destroy(&x->vd);
    vdrv_destroy(&x->drv);
    virtio_blk_free(x->blk);
    blk_close(x->be);
    iothread_free(x->io);
    gmem_destroy(&x->mem);
    unlink(x->path);
    free(x);
}

TEST(reset_inflight_iothread_threads) { reset_inflight_iothread(BLK_AIO_THREADS); }
TEST(reset_inflight_iothread_io_uring) { reset_inflight_iothread(BLK_AIO_IO_URING); }

/* ---- hostile drivers ---------------------------------------------------- */

/* A broken chain: NEEDS_RESET + config interrupt, nothing written, no used
 * entry, the test (the VMM) goes on; a reset brings the device back. */
static void hostile_case(enum blk_aio aio, unsigned which)
{
    struct fx *f = fx_new_aio(aio);
    CHECK(f);
    CHECK_EQ(fx_start(f, BASE_FEATURES | BIT(VIRTIO_F_INDIRECT_DESC)), 0);
    struct vdrv *drv = &f->drv;
    uint64_t h = hdr_new(f, T_OUT, 0), d = vdrv_alloc(drv, 512, 512), st = status_new(f);
    fill_pattern(vdrv_ptr(drv, d, 512), 512, 0x33);
    /* A good request first, in the same kick: it must complete normally. */
    struct vdrv_sg gout[] = { { h, 16 }, { d, 512 } }, gin[] = { { st, 1 } };
    uint64_t h2 = hdr_new(f, T_OUT, 8);
    struct vdrv_sg gout2[] = { { h2, 16 }, { d, 512 } };
    int good = vdrv_add_chain(drv, 0, gout, 2, gin, 1);
    CHECK(good >= 0);
    unsigned bad = 120;     /* descriptors well away from the free list's */
    switch (which) {
    case 0: /* a loop: 120 -> 121 -> 120 */
        vdrv_desc_write(drv, 0, bad, h2, 16, VIRTQ_DESC_F_NEXT, bad + 1);
        vdrv_desc_write(drv, 0, bad + 1, d, 512, VIRTQ_DESC_F_NEXT, bad);
        break;
    case 1: /* data outside RAM */
        vdrv_desc_write(drv, 0, bad, h2, 16, VIRTQ_DESC_F_NEXT, bad + 1);
        vdrv_desc_write(drv, 0, bad + 1, RAM_SIZE - 256, 512, VIRTQ_DESC_F_NEXT, bad + 2);
        vdrv_desc_write(drv, 0, bad + 2, st, 1, VIRTQ_DESC_F_WRITE, 0);
        break;
    case 2: /* address that overflows */
        vdrv_desc_write(drv, 0, bad, h2, 16, VIRTQ_DESC_F_NEXT, bad + 1);
        vdrv_desc_write(drv, 0, bad + 1, UINT64_MAX - 100, 512, VIRTQ_DESC_F_NEXT, bad + 2);
        vdrv_desc_write(drv, 0, bad + 2, st, 1, VIRTQ_DESC_F_WRITE, 0);
        break;
    case 3: /* next index out of range */
        vdrv_desc_write(drv, 0, bad, h2, 16, VIRTQ_DESC_F_NEXT, 5000);
        break;
    case 4: { /* indirect table looping on itself */
        uint64_t t = vdrv_alloc(drv, 32, 16);
        struct virtq_desc td[2] = { { h2, 16, VIRTQ_DESC_F_NEXT, 1 },
                                    { d, 512, VIRTQ_DESC_F_NEXT, 0 } };
        memcpy(vdrv_ptr(drv, t, 32), td, 32);
        vdrv_desc_write(drv, 0, bad, t, 32, VIRTQ_DESC_F_INDIRECT, 0);
        break;
    }
    case 5: /* indirect table outside RAM */
        vdrv_desc_write(drv, 0, bad, 1ULL << 40, 64, VIRTQ_DESC_F_INDIRECT, 0);
        break;
    case 6: /* head index out of range */
        bad = 4000;
        break;
    case 7: /* avail->idx jumps by more than the queue size */
        break;
    case 8: /* readable after writable */
        vdrv_desc_write(drv, 0, bad, st, 1, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, bad + 1);
        vdrv_desc_write(drv, 0, bad + 1, h2, 16, 0, 0);
        break;
    }
    (void)gout2;
    if (which == 7)
        vdrv_avail_set_idx(drv, 0, (uint16_t)(drv->q[0].avail_idx + 1000));
    else
        vdrv_avail_push_raw(drv, 0, (uint16_t)bad);
    vdrv_kick(drv, 0);
    uint16_t id;
    uint32_t len;
    if (which == 7) {
        /* Nothing is consumed on a bad avail->idx, not even the good one. */
        fx_idle(f, 3);
    } else {
        CHECK_EQ(fx_wait_used(f, 0, &id, &len), 1);
        CHECK_EQ(id, good);
        CHECK_EQ(fx_status(f, st), S_OK);
    }
    CHECK(virtio_get_status(&f->vd) & VIRTIO_STATUS_NEEDS_RESET);
    CHECK_EQ(f->drv.config_irqs, 1);
    /* Further kicks do nothing. */
    vdrv_kick_force(drv, 0);
    fx_idle(f, 2);
    CHECK_EQ(vdrv_get_used(drv, 0, &id, &len), 0);
    CHECK(file_is_init(f, 8 * 512, 512));
    /* A reset recovers it. */
    CHECK_EQ(fx_start(f, BASE_FEATURES | BIT(VIRTIO_F_INDIRECT_DESC)), 0);
    uint64_t rb = vdrv_alloc(drv, 512, 512);
    CHECK_EQ(simple_req(f, 0, T_IN, 16, rb, 512, NULL), S_OK);
    CHECK(memcmp(vdrv_ptr(drv, rb, 512), f->init + 16 * 512, 512) == 0);
    fx_free(f);
}

static void hostile(enum blk_aio aio)
{
    for (unsigned which = 0; which < 9; which++) {
        hostile_case(aio, which);
        if (test_failed_flag) {
            printf("    (hostile case %u)\n", which);
            return;
        }
    }
}

TEST(hostile_threads) { hostile(BLK_AIO_THREADS); }
TEST(hostile_io_uring) { hostile(BLK_AIO_IO_URING); }

/* Rings placed outside RAM when the queue is set up: DRIVER_OK fails into
 * NEEDS_RESET, and a reset recovers. */
TEST(rings_outside_ram)
{
    struct fx *f = fx_new_aio(BLK_AIO_THREADS);
    CHECK(f);
    CHECK_EQ(vdrv_negotiate(&f->drv, BASE_FEATURES), 0);
    CHECK_EQ(vdrv_setup_queue(&f->drv, 0, 0), 0);
    f->vd.vqs[0].s.desc_gpa = RAM_SIZE - 16;
    CHECK_EQ(vdrv_driver_ok(&f->drv), -EIO);
    CHECK(virtio_get_status(&f->vd) & VIRTIO_STATUS_NEEDS_RESET);
    vdrv_kick_force(&f->drv, 0);        /* harmless */
    CHECK_EQ(fx_start(f, BASE_FEATURES), 0);
    uint64_t rb = vdrv_alloc(&f->drv, 512, 512);
    CHECK_EQ(simple_req(f, 0, T_IN, 0, rb, 512, NULL), S_OK);
    fx_free(f);
}

/* A chain longer than the descriptor limit of one element via indirect
 * tables is refused; a kick before DRIVER_OK does nothing. */
TEST(kick_before_driver_ok)
{
    struct fx *f = fx_new_aio(BLK_AIO_THREADS);
    CHECK(f);
    CHECK_EQ(vdrv_negotiate(&f->drv, BASE_FEATURES), 0);
    CHECK_EQ(vdrv_setup_queue(&f->drv, 0, 0), 0);
    uint64_t h = hdr_new(f, T_IN, 0), d = vdrv_alloc(&f->drv, 512, 8), st = status_new(f);
    struct vdrv_sg out[] = { { h, 16 } }, in[] = { { d, 512 }, { st, 1 } };
    int head = vdrv_add_chain(&f->drv, 0, out, 1, in, 2);
    CHECK(head >= 0);
    vdrv_kick_force(&f->drv, 0);
    fx_idle(f, 2);
    uint16_t id;
    uint32_t len;
    CHECK_EQ(vdrv_get_used(&f->drv, 0, &id, &len), 0);
    CHECK_EQ(fx_status(f, st), 0xee);
    /* DRIVER_OK, then a kick picks it up. */
    CHECK_EQ(vdrv_driver_ok(&f->drv), 0);
    vdrv_kick_force(&f->drv, 0);
    CHECK_EQ(fx_wait_used(f, 0, &id, &len), 1);
    CHECK_EQ(id, head);
    CHECK_EQ(fx_status(f, st), S_OK);
    fx_free(f);
}

/* Queue depth: fill a whole 128-entry queue with reads in one kick. */
static void full_queue(enum blk_aio aio)
{
    struct fx *f = fx_new_aio(aio);
    CHECK(f);
    CHECK_EQ(fx_start(f, BASE_FEATURES | BIT(VIRTIO_F_EVENT_IDX)), 0);
    enum { N = 42 };    /* 3 descriptors each: 126 of 128 */
    uint64_t bufs[N], sts[N];
    for (unsigned i = 0; i < N; i++) {
        uint64_t h = hdr_new(f, T_IN, (uint64_t)i * 8);
        bufs[i] = vdrv_alloc(&f->drv, 4096, 512);
        sts[i] = status_new(f);
        struct vdrv_sg out[] = { { h, 16 } }, in[] = { { bufs[i], 4096 }, { sts[i], 1 } };
        CHECK(vdrv_add_chain(&f->drv, 0, out, 1, in, 2) >= 0);
    }
    vdrv_kick(&f->drv, 0);
    for (unsigned i = 0; i < N; i++) {
        uint16_t id;
        uint32_t len;
        CHECK_EQ(fx_wait_used(f, 0, &id, &len), 1);
        CHECK_EQ(len, 4097);
    }
    for (unsigned i = 0; i < N; i++) {
        CHECK_EQ(fx_status(f, sts[i]), S_OK);
        CHECK(memcmp(vdrv_ptr(&f->drv, bufs[i], 4096), f->init + i * 4096, 4096) == 0);
    }
    fx_free(f);
}

TEST(full_queue_threads) { full_queue(BLK_AIO_THREADS); }
TEST(full_queue_io_uring) { full_queue(BLK_AIO_IO_URING); }

int main(void)
{
    log_set_level(LOG_ERROR);
    const char *base = getenv("TMPDIR");
    snprintf(tdir, sizeof tdir, "%s/kvmbox-vblk-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tdir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(roundtrip_threads);
    RUN(roundtrip_io_uring);
    RUN(odd_layouts_threads);
    RUN(odd_layouts_io_uring);
    RUN(indirect_threads);
    RUN(indirect_io_uring);
    RUN(direct_then_indirect);
    RUN(flush_order_threads);
    RUN(flush_order_io_uring);
    RUN(get_id);
    RUN(get_id_truncated_to_20_bytes);
    RUN(get_id_no_serial);
    RUN(discard_write_zeroes_threads);
    RUN(discard_write_zeroes_io_uring);
    RUN(discard_not_offered);
    RUN(errors_threads);
    RUN(errors_io_uring);
    RUN(logical_block_size_4k);
    RUN(read_only_threads);
    RUN(read_only_io_uring);
    RUN(no_status_or_header_needs_reset);
    RUN(config_space);
    RUN(config_writethrough_cache_mode);
    RUN(multiqueue_threads);
    RUN(multiqueue_io_uring);
    RUN(reset_inflight_threads);
    RUN(reset_inflight_io_uring);
    RUN(reset_inflight_iothread_threads);
    RUN(reset_inflight_iothread_io_uring);
    RUN(hostile_threads);
    RUN(hostile_io_uring);
    RUN(rings_outside_ram);
    RUN(kick_before_driver_ok);
    RUN(full_queue_threads);
    RUN(full_queue_io_uring);
    rmdir(tdir);
    return test_summary();
}
