/* The block back end (src/block): data integrity per engine and cache mode
 * against an in-memory oracle, flush ordering, O_DIRECT bouncing,
 * readonly=on, snapshot=on, format probing and the block-0 guard, error
 * paths, queue depth 64 and drain. Runs a real event loop (core/loop.h) on
 * the test thread: completions are delivered there, as on an I/O thread.
 *
 * Reads past the image end: the device layer (virtio-blk) checks sector
 * ranges against the capacity, and the block layer refuses any request not
 * inside [0, length) with -EIO (QEMU's blk_check_byte_request) rather than
 * returning zeros; the test below pins that. */
#include "block/block.h"
#include "core/log.h"
#include "core/loop.h"
#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- fixture ---------------------------------------------------------- */

static char tdir[512];          /* temp dir for images (page-cache modes) */
static char ddir[512];          /* a dir whose file system takes O_DIRECT, or "" */

struct tctx {
    struct loop *loop;
    unsigned done, want;
    unsigned order_next;        /* completion order stamps */
};

struct treq {
    struct blk_req r;
    struct tctx *c;
    int ret;
    unsigned calls;
    unsigned order;
    struct iovec iov[4];
};

static void t_done(struct blk_req *r, int ret)
{
    struct treq *t = r->opaque;
    t->ret = ret;
    t->calls++;
    t->order = t->c->order_next++;
    t->c->done++;
    if (t->c->done >= t->c->want)
        loop_quit(t->c->loop);
}

/* Run the loop until `n` completions (in total) have arrived. */
static void t_wait(struct tctx *c, unsigned n)
{
    c->want = n;
    if (c->done < n)
        loop_run(c->loop);
}

static void t_prep(struct treq *t, struct tctx *c, enum blk_op op, uint64_t off, void *buf,
                   uint64_t len)
{
    memset(t, 0, sizeof *t);
    t->c = c;
    t->ret = 1;     /* "not completed" */
    t->r.op = op;
    t->r.offset = off;
    t->r.len = len;
    t->r.done = t_done;
    t->r.opaque = t;
    if (buf) {
        t->iov[0] = (struct iovec){ buf, (size_t)len };
        t->r.iov = t->iov;
        t->r.iovcnt = 1;
    }
}

/* Submit one request and wait for it; returns its result. */
static int t_sync(struct block_backend *b, struct tctx *c, enum blk_op op, uint64_t off,
                  void *buf, uint64_t len)
{
    struct treq t;
    t_prep(&t, c, op, off, buf, len);
    unsigned target = c->done + 1;
    blk_submit(b, &t.r);
    t_wait(c, target);
    return t.calls == 1 ? t.ret : -9999;
}

static void path_in(char *out, size_t n, const char *dir, const char *name)
{
    snprintf(out, n, "%s/%s", dir, name);
}

/* A file of `size` bytes filled with a pattern derived from `seed`. */
static int make_image(const char *path, size_t size, unsigned seed, uint8_t *copy)
{
    int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
    if (fd < 0)
        return -errno;
    uint8_t *buf = malloc(size);
    for (size_t i = 0; i < size; i++)
        buf[i] = (uint8_t)((i * 7 + seed) ^ (i >> 9));
    ssize_t w = write(fd, buf, size);
    close(fd);
    if (copy)
        memcpy(copy, buf, size);
    free(buf);
    return w == (ssize_t)size ? 0 : -EIO;
}

static int read_file(const char *path, uint8_t *buf, size_t size)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -errno;
    ssize_t r = pread(fd, buf, size, 0);
    close(fd);
    return r == (ssize_t)size ? 0 : -EIO;
}

static struct loop *t_loop(struct tctx *c)
{
    memset(c, 0, sizeof *c);
    c->loop = loop_new(NULL, NULL);
    return c->loop;
}

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static const char *const cache_names[] = { "writeback", "none", "writethrough", "directsync",
                                           "unsafe" };

static bool cache_direct(enum blk_cache_mode m)
{
    return m == BLK_CACHE_NONE || m == BLK_CACHE_DIRECTSYNC;
}

/* ---- integrity ---------------------------------------------------------- */

enum { IMG = 4 << 20 };

/* Rounds of up to 16 non-overlapping concurrent writes (random offsets,
 * lengths, iovec splits, buffer misalignment), each followed by reads of
 * random ranges compared with the oracle; then close, and the file itself
 * must equal the oracle. */
static void integrity(enum blk_aio aio, enum blk_cache_mode cache)
{
    const char *dir = cache_direct(cache) ? ddir : tdir;
    if (!*dir)
        SKIP("no file system here accepts O_DIRECT (tried $TMPDIR and build/)");
    char path[600];
    path_in(path, sizeof path, dir, "integrity.img");
    uint8_t *oracle = malloc(IMG);
    CHECK(make_image(path, IMG, 1, oracle) == 0);

    struct tctx c;
    CHECK(t_loop(&c));
    char err[256] = "";
    struct blk_options o = { .filename = path, .format = "raw", .cache = cache, .aio = aio };
    struct block_backend *b = blk_open(&o, c.loop, err, sizeof err);
    if (!b && aio == BLK_AIO_IO_URING && strstr(err, "io_uring is not available")) {
        loop_free(c.loop);
        free(oracle);
        SKIP("%s", err);
    }
    if (!b)
        printf("    blk_open: %s\n", err);
    CHECK(b);
    CHECK_EQ(blk_length(b), IMG);
    CHECK_EQ(blk_write_cache(b), cache != BLK_CACHE_WRITETHROUGH && cache != BLK_CACHE_DIRECTSYNC);

    uint64_t seed = 0x9e3779b97f4a7c15ull ^ (aio * 31 + cache);
    enum { N = 16, MAXLEN = 96 * 1024 };
    uint8_t *bufs = malloc((size_t)N * (MAXLEN + 64));
    struct treq *t = calloc(N, sizeof *t);
    for (int round = 0; round < 24; round++) {
        uint64_t offs[N], lens[N];
        unsigned n = 0;
        for (unsigned tries = 0; n < N && tries < 200; tries++) {
            /* 512-aligned mostly; byte-granular sometimes (RMW path). */
            uint64_t len = 1 + rng_next(&seed) % MAXLEN;
            uint64_t off = rng_next(&seed) % (IMG - len);
            if (rng_next(&seed) % 4) {
                off &= ~511ull;
                len = (len + 511) & ~511ull;
            }
            bool clash = false;
            /* No two concurrent writes share a 4 KiB block: byte-granular
             * O_DIRECT writes are read-modify-written in whole blocks. */
            for (unsigned k = 0; k < n; k++)
                if (off / 4096 <= (offs[k] + lens[k]) / 4096 &&
                    offs[k] / 4096 <= (off + len) / 4096)
                    clash = true;
            if (clash)
                continue;
            offs[n] = off;
            lens[n] = len;
            n++;
        }
        unsigned base = c.done;
        for (unsigned k = 0; k < n; k++) {
            uint8_t *p = bufs + (size_t)k * (MAXLEN + 64) + (rng_next(&seed) % 3 == 0 ? 1 : 0);
            for (uint64_t i = 0; i < lens[k]; i++)
                p[i] = (uint8_t)rng_next(&seed);
            memcpy(oracle + offs[k], p, lens[k]);
            t_prep(&t[k], &c, BLK_OP_WRITE, offs[k], p, lens[k]);
            /* Split into up to 3 iovecs at random points. */
            if (lens[k] > 2 && rng_next(&seed) % 2) {
                uint64_t a = 1 + rng_next(&seed) % (lens[k] - 1);
                uint64_t bb = a + rng_next(&seed) % (lens[k] - a);
                t[k].iov[0] = (struct iovec){ p, a };
                t[k].iov[1] = (struct iovec){ p + a, bb - a };
                t[k].iov[2] = (struct iovec){ p + bb, lens[k] - bb };
                t[k].r.iovcnt = 3;
            }
            blk_submit(b, &t[k].r);
        }
        t_wait(&c, base + n);
        for (unsigned k = 0; k < n; k++) {
            CHECK_EQ(t[k].calls, 1);
            CHECK_EQ(t[k].ret, 0);
        }
        /* Reads, also concurrent. */
        base = c.done;
        for (unsigned k = 0; k < N; k++) {
            uint64_t len = 1 + rng_next(&seed) % MAXLEN;
            uint64_t off = rng_next(&seed) % (IMG - len);
            if (rng_next(&seed) % 4) {
                off &= ~511ull;
                len = (len + 511) & ~511ull;
            }
            uint8_t *p = bufs + (size_t)k * (MAXLEN + 64) + (k % 3 == 0 ? 3 : 0);
            memset(p, 0xAA, len);
            t_prep(&t[k], &c, BLK_OP_READ, off, p, len);
            blk_submit(b, &t[k].r);
        }
        t_wait(&c, base + N);
        for (unsigned k = 0; k < N; k++) {
            CHECK_EQ(t[k].calls, 1);
            CHECK_EQ(t[k].ret, 0);
            CHECK(memcmp(t[k].iov[0].iov_base, oracle + t[k].r.offset, t[k].r.len) == 0);
        }
    }
    CHECK_EQ(t_sync(b, &c, BLK_OP_FLUSH, 0, NULL, 0), 0);
    blk_close(b);
    uint8_t *file = malloc(IMG);
    CHECK(read_file(path, file, IMG) == 0);
    CHECK(memcmp(file, oracle, IMG) == 0);
    free(file);
    free(t);
    free(bufs);
    free(oracle);
    loop_free(c.loop);
    unlink(path);
}

#define INTEGRITY(aio, cache, name)                                                          \
    TEST(integrity_##name) { integrity(aio, cache); }
INTEGRITY(BLK_AIO_THREADS, BLK_CACHE_WRITEBACK, threads_writeback)
INTEGRITY(BLK_AIO_THREADS, BLK_CACHE_NONE, threads_none)
INTEGRITY(BLK_AIO_THREADS, BLK_CACHE_WRITETHROUGH, threads_writethrough)
INTEGRITY(BLK_AIO_THREADS, BLK_CACHE_DIRECTSYNC, threads_directsync)
INTEGRITY(BLK_AIO_THREADS, BLK_CACHE_UNSAFE, threads_unsafe)
INTEGRITY(BLK_AIO_IO_URING, BLK_CACHE_WRITEBACK, io_uring_writeback)
INTEGRITY(BLK_AIO_IO_URING, BLK_CACHE_NONE, io_uring_none)
INTEGRITY(BLK_AIO_IO_URING, BLK_CACHE_WRITETHROUGH, io_uring_writethrough)
INTEGRITY(BLK_AIO_IO_URING, BLK_CACHE_DIRECTSYNC, io_uring_directsync)
INTEGRITY(BLK_AIO_IO_URING, BLK_CACHE_UNSAFE, io_uring_unsafe)

/* ---- ordering, depth, drain ------------------------------------------- */

static struct block_backend *open_simple(struct tctx *c, const char *path, enum blk_aio aio,
                                         enum blk_cache_mode cache)
{
    char err[256];
    struct blk_options o = { .filename = path, .format = "raw", .cache = cache, .aio = aio };
    struct block_backend *b = blk_open(&o, c->loop, err, sizeof err);
    if (!b)
        printf("    blk_open(%s): %s\n", path, err);
    return b;
}

/* A flush submitted after writes completes after all of them. With
 * cache=unsafe the flush itself is a no-op, so only the ordering rule keeps
 * it from overtaking the writes: that variant fails if the rule breaks. */
static void flush_order(enum blk_aio aio, enum blk_cache_mode cache)
{
    char path[600];
    path_in(path, sizeof path, tdir, "flush.img");
    CHECK(make_image(path, 16 << 20, 2, NULL) == 0);
    struct tctx c;
    CHECK(t_loop(&c));
    struct block_backend *b = open_simple(&c, path, aio, cache);
    CHECK(b);
    enum { W = 12, WLEN = 1 << 20 };
    uint8_t *buf = malloc(WLEN);
    memset(buf, 0x5a, WLEN);
    struct treq t[W + 2];
    for (unsigned k = 0; k < W; k++) {
        t_prep(&t[k], &c, BLK_OP_WRITE, (uint64_t)k * WLEN, buf, WLEN);
        blk_submit(b, &t[k].r);
    }
    t_prep(&t[W], &c, BLK_OP_FLUSH, 0, NULL, 0);
    blk_submit(b, &t[W].r);
    /* A write after the flush is not waited for by it. */
    t_prep(&t[W + 1], &c, BLK_OP_WRITE, (uint64_t)W * WLEN, buf, WLEN);
    blk_submit(b, &t[W + 1].r);
    t_wait(&c, W + 2);
    for (unsigned k = 0; k < W + 2; k++) {
        CHECK_EQ(t[k].calls, 1);
        CHECK_EQ(t[k].ret, 0);
    }
    for (unsigned k = 0; k < W; k++)
        CHECK(t[k].order < t[W].order);
    blk_close(b);
    free(buf);
    loop_free(c.loop);
    unlink(path);
}

TEST(flush_after_earlier_writes_threads) { flush_order(BLK_AIO_THREADS, BLK_CACHE_WRITEBACK); }
TEST(flush_after_earlier_writes_io_uring) { flush_order(BLK_AIO_IO_URING, BLK_CACHE_WRITEBACK); }
TEST(flush_after_earlier_writes_threads_unsafe) { flush_order(BLK_AIO_THREADS, BLK_CACHE_UNSAFE); }
TEST(flush_after_earlier_writes_io_uring_unsafe) { flush_order(BLK_AIO_IO_URING, BLK_CACHE_UNSAFE); }

/* 64 requests in flight at once (and 200 for io_uring's waiting queue). */
static void queue_depth(enum blk_aio aio, enum blk_cache_mode cache, unsigned qd)
{
    const char *dir = cache_direct(cache) ? ddir : tdir;
    if (!*dir)
        SKIP("no file system here accepts O_DIRECT");
    char path[600];
    path_in(path, sizeof path, dir, "qd.img");
    CHECK(make_image(path, (size_t)qd * 8192, 3, NULL) == 0);
    struct tctx c;
    CHECK(t_loop(&c));
    struct block_backend *b = open_simple(&c, path, aio, cache);
    CHECK(b);
    uint8_t *buf = aligned_alloc(4096, (size_t)qd * 8192);
    struct treq *t = calloc(qd, sizeof *t);
    for (unsigned k = 0; k < qd; k++) {
        memset(buf + (size_t)k * 8192, (int)k, 8192);
        t_prep(&t[k], &c, BLK_OP_WRITE, (uint64_t)k * 8192, buf + (size_t)k * 8192, 8192);
        blk_submit(b, &t[k].r);
    }
    CHECK(blk_in_flight(b) == qd);
    t_wait(&c, qd);
    for (unsigned k = 0; k < qd; k++)
        CHECK(t[k].calls == 1 && t[k].ret == 0);
    memset(buf, 0, (size_t)qd * 8192);
    for (unsigned k = 0; k < qd; k++) {
        t_prep(&t[k], &c, BLK_OP_READ, (uint64_t)k * 8192, buf + (size_t)k * 8192, 8192);
        blk_submit(b, &t[k].r);
    }
    t_wait(&c, 2 * qd);
    for (unsigned k = 0; k < qd; k++) {
        CHECK(t[k].calls == 1 && t[k].ret == 0);
        for (unsigned i = 0; i < 8192; i += 511)
            CHECK_EQ(buf[(size_t)k * 8192 + i], (uint8_t)k);
    }
    blk_close(b);
    free(t);
    free(buf);
    loop_free(c.loop);
    unlink(path);
}

TEST(queue_depth_64_threads) { queue_depth(BLK_AIO_THREADS, BLK_CACHE_WRITEBACK, 64); }
TEST(queue_depth_64_io_uring) { queue_depth(BLK_AIO_IO_URING, BLK_CACHE_WRITEBACK, 64); }
TEST(queue_depth_64_io_uring_none) { queue_depth(BLK_AIO_IO_URING, BLK_CACHE_NONE, 64); }
TEST(queue_depth_300_io_uring) { queue_depth(BLK_AIO_IO_URING, BLK_CACHE_WRITEBACK, 300); }

/* blk_drain with requests in flight, without running the loop: every
 * callback runs exactly once, on the caller. */
static void drain_in_flight(enum blk_aio aio)
{
    char path[600];
    path_in(path, sizeof path, tdir, "drain.img");
    CHECK(make_image(path, 8 << 20, 4, NULL) == 0);
    struct tctx c;
    CHECK(t_loop(&c));
    struct block_backend *b = open_simple(&c, path, aio, BLK_CACHE_WRITETHROUGH);
    CHECK(b);
    enum { N = 32 };
    uint8_t *buf = malloc(256 * 1024);
    memset(buf, 7, 256 * 1024);
    struct treq t[N + 1];
    for (unsigned k = 0; k < N; k++) {
        t_prep(&t[k], &c, k % 2 ? BLK_OP_WRITE : BLK_OP_READ, (uint64_t)k * 256 * 1024, buf,
               256 * 1024);
        if (k % 2 == 0) {   /* reads into their own buffers */
            t[k].iov[0].iov_base = malloc(256 * 1024);
        }
        blk_submit(b, &t[k].r);
    }
    t_prep(&t[N], &c, BLK_OP_FLUSH, 0, NULL, 0);
    blk_submit(b, &t[N].r);
    blk_drain(b);
    CHECK_EQ(blk_in_flight(b), 0);
    CHECK_EQ(c.done, N + 1);
    for (unsigned k = 0; k <= N; k++) {
        CHECK_EQ(t[k].calls, 1);
        CHECK_EQ(t[k].ret, 0);
    }
    blk_drain(b);   /* nothing in flight: returns at once */
    for (unsigned k = 0; k < N; k += 2)
        free(t[k].iov[0].iov_base);
    blk_close(b);
    free(buf);
    loop_free(c.loop);
    unlink(path);
}

TEST(drain_in_flight_threads) { drain_in_flight(BLK_AIO_THREADS); }
TEST(drain_in_flight_io_uring) { drain_in_flight(BLK_AIO_IO_URING); }

/* A done callback that drains (a device reset on the I/O thread). */
struct drain_cb_ctx {
    struct treq t;
    struct block_backend *b;
    unsigned in_flight_after;
};

static void drain_cb_done(struct blk_req *r, int ret)
{
    struct drain_cb_ctx *d = (struct drain_cb_ctx *)((char *)r - offsetof(struct drain_cb_ctx, t.r));
    t_done(r, ret);
    blk_drain(d->b);
    d->in_flight_after = blk_in_flight(d->b);
}

TEST(drain_from_completion_callback)
{
    char path[600];
    path_in(path, sizeof path, tdir, "drain2.img");
    CHECK(make_image(path, 8 << 20, 5, NULL) == 0);
    struct tctx c;
    CHECK(t_loop(&c));
    struct block_backend *b = open_simple(&c, path, BLK_AIO_THREADS, BLK_CACHE_WRITEBACK);
    CHECK(b);
    uint8_t *buf = malloc(1 << 20);
    memset(buf, 1, 1 << 20);
    struct drain_cb_ctx d = { .b = b, .in_flight_after = 99 };
    t_prep(&d.t, &c, BLK_OP_READ, 0, buf, 512);
    d.t.r.done = drain_cb_done;
    enum { N = 16 };
    struct treq t[N];
    blk_submit(b, &d.t.r);
    for (unsigned k = 0; k < N; k++) {
        t_prep(&t[k], &c, BLK_OP_WRITE, (uint64_t)(k + 1) * 65536 * 4, buf, 1 << 18);
        blk_submit(b, &t[k].r);
    }
    t_wait(&c, N + 1);
    CHECK_EQ(d.t.calls, 1);
    CHECK_EQ(d.in_flight_after, 0);
    for (unsigned k = 0; k < N; k++)
        CHECK_EQ(t[k].calls, 1);
    blk_close(b);
    free(buf);
    loop_free(c.loop);
    unlink(path);
}

/* ---- O_DIRECT ----------------------------------------------------------- */

TEST(direct_unaligned_buffers_and_offsets)
{
    if (!*ddir)
        SKIP("no file system here accepts O_DIRECT");
    char path[600];
    path_in(path, sizeof path, ddir, "direct.img");
    enum { SZ = 1 << 20 };
    uint8_t *oracle = malloc(SZ);
    CHECK(make_image(path, SZ, 6, oracle) == 0);
    for (int aio = 0; aio < 2; aio++) {
        struct tctx c;
        CHECK(t_loop(&c));
        struct block_backend *b = open_simple(&c, path, aio, BLK_CACHE_NONE);
        CHECK(b);
        CHECK(blk_logical_block_size(b) >= 512);
        uint8_t *raw = malloc(70000);
        /* Buffer at an odd address; offsets 512-aligned, then byte-odd. */
        static const uint64_t offs[] = { 0, 512, 4096 + 512, 100, 65537, SZ - 3 };
        static const uint64_t lens[] = { 4096, 1536, 8192, 1000, 60000, 3 };
        for (unsigned k = 0; k < 6; k++) {
            uint8_t *p = raw + 1 + k;
            for (uint64_t i = 0; i < lens[k]; i++)
                p[i] = (uint8_t)(k * 13 + i);
            memcpy(oracle + offs[k], p, lens[k]);
            CHECK_EQ(t_sync(b, &c, BLK_OP_WRITE, offs[k], p, lens[k]), 0);
            memset(p, 0, lens[k]);
            CHECK_EQ(t_sync(b, &c, BLK_OP_READ, offs[k], p, lens[k]), 0);
            CHECK(memcmp(p, oracle + offs[k], lens[k]) == 0);
        }
        /* Neighbours of the byte-granular writes were preserved (RMW). */
        uint8_t *all = malloc(SZ);
        CHECK_EQ(t_sync(b, &c, BLK_OP_READ, 0, all, SZ), 0);
        CHECK(memcmp(all, oracle, SZ) == 0);
        free(all);
        free(raw);
        blk_close(b);
        loop_free(c.loop);
    }
    struct stat st;
    CHECK(stat(path, &st) == 0);
    CHECK_EQ(st.st_size, SZ);   /* the widened tail write did not grow the file */
    free(oracle);
    unlink(path);
}

/* QEMU: "Could not open 'X': Invalid argument" where O_DIRECT is refused.
 * tmpfs takes O_DIRECT since Linux 6.6, so this often has nothing to test. */
TEST(direct_refused_message)
{
    const char *shm = "/dev/shm";
    char path[600];
    snprintf(path, sizeof path, "%s/kvmbox-blk-%d.img", shm, (int)getpid());
    if (make_image(path, 65536, 7, NULL) < 0)
        SKIP("%s not writable", shm);
    int fd = open(path, O_RDWR | O_DIRECT);
    if (fd >= 0) {
        close(fd);
        unlink(path);
        SKIP("%s accepts O_DIRECT on this kernel: no refusing file system to test", shm);
    }
    struct tctx c;
    CHECK(t_loop(&c));
    char err[512] = "";
    struct blk_options o = { .filename = path, .format = "raw", .cache = BLK_CACHE_NONE };
    CHECK(!blk_open(&o, c.loop, err, sizeof err));
    char want[1400];
    snprintf(want, sizeof want, "Could not open '%s': Invalid argument", path);
    CHECK(strncmp(err, want, strlen(want)) == 0);
    loop_free(c.loop);
    unlink(path);
}

/* ---- cache semantics ------------------------------------------------------ */

TEST(write_cache_flag_per_mode)
{
    char path[600];
    path_in(path, sizeof path, tdir, "wce.img");
    CHECK(make_image(path, 65536, 8, NULL) == 0);
    static const bool wce[] = { true, true, false, false, true };
    for (int m = 0; m <= BLK_CACHE_UNSAFE; m++) {
        if (cache_direct(m) && strcmp(ddir, tdir) != 0)
            continue;   /* tdir refuses O_DIRECT */
        struct tctx c;
        CHECK(t_loop(&c));
        struct block_backend *b = open_simple(&c, path, BLK_AIO_THREADS, m);
        if (!b)
            printf("    mode %s\n", cache_names[m]);
        CHECK(b);
        CHECK_EQ(blk_write_cache(b), wce[m]);
        CHECK(!blk_read_only(b));
        /* Flushes succeed in every mode (unsafe: as no-ops). */
        CHECK_EQ(t_sync(b, &c, BLK_OP_FLUSH, 0, NULL, 0), 0);
        blk_close(b);
        loop_free(c.loop);
    }
    unlink(path);
}

TEST(discard_and_write_zeroes)
{
    char path[600];
    path_in(path, sizeof path, tdir, "dz.img");
    enum { SZ = 1 << 20 };
    CHECK(make_image(path, SZ, 9, NULL) == 0);
    for (int aio = 0; aio < 2; aio++) {
        struct tctx c;
        CHECK(t_loop(&c));
        char err[256];
        struct blk_options o = { .filename = path, .format = "raw", .aio = aio,
                                 .discard = true };
        struct block_backend *b = blk_open(&o, c.loop, err, sizeof err);
        CHECK(b);
        uint8_t *buf = malloc(SZ);
        CHECK_EQ(t_sync(b, &c, BLK_OP_WRITE_ZEROES, 4096, NULL, 8192 + 100), 0);
        CHECK_EQ(t_sync(b, &c, BLK_OP_READ, 0, buf, SZ), 0);
        for (unsigned i = 4096; i < 4096 + 8192 + 100; i++)
            CHECK_EQ(buf[i], 0);
        CHECK(buf[4095] != 0 || buf[4094] != 0);
        CHECK_EQ(t_sync(b, &c, BLK_OP_DISCARD, 65536, NULL, 65536), 0);
        CHECK_EQ(t_sync(b, &c, BLK_OP_DISCARD, SZ - 512, NULL, 1024), -EIO);
        free(buf);
        blk_close(b);
        loop_free(c.loop);
    }
    unlink(path);
}

/* ---- readonly / snapshot ---------------------------------------------------- */

TEST(readonly_refuses_writes)
{
    char path[600];
    path_in(path, sizeof path, tdir, "ro.img");
    enum { SZ = 256 * 1024 };
    uint8_t *orig = malloc(SZ), *now = malloc(SZ);
    CHECK(make_image(path, SZ, 10, orig) == 0);
    CHECK(chmod(path, 0444) == 0);      /* O_RDONLY must be enough */
    struct tctx c;
    CHECK(t_loop(&c));
    char err[256];
    struct blk_options o = { .filename = path, .format = "raw", .read_only = true,
                             .discard = true };
    struct block_backend *b = blk_open(&o, c.loop, err, sizeof err);
    CHECK(b);
    CHECK(blk_read_only(b));
    uint8_t buf[4096];
    memset(buf, 0xee, sizeof buf);
    CHECK_EQ(t_sync(b, &c, BLK_OP_WRITE, 0, buf, sizeof buf), -EROFS);
    CHECK_EQ(t_sync(b, &c, BLK_OP_WRITE_ZEROES, 0, NULL, 4096), -EROFS);
    CHECK_EQ(t_sync(b, &c, BLK_OP_DISCARD, 0, NULL, 4096), -EROFS);
    CHECK_EQ(t_sync(b, &c, BLK_OP_FLUSH, 0, NULL, 0), 0);
    CHECK_EQ(t_sync(b, &c, BLK_OP_READ, 4096, buf, sizeof buf), 0);
    CHECK(memcmp(buf, orig + 4096, sizeof buf) == 0);
    blk_close(b);
    CHECK(read_file(path, now, SZ) == 0);
    CHECK(memcmp(now, orig, SZ) == 0);
    loop_free(c.loop);
    chmod(path, 0644);
    unlink(path);
    free(orig);
    free(now);
}

static unsigned count_dir_entries(const char *dir)
{
    char cmd[700];
    snprintf(cmd, sizeof cmd, "ls -A '%s' | wc -l", dir);
    FILE *p = popen(cmd, "r");
    unsigned n = 0;
    if (p) {
        if (fscanf(p, "%u", &n) != 1)
            n = 0;
        pclose(p);
    }
    return n;
}

static void snapshot_mode(enum blk_aio aio, enum blk_cache_mode cache)
{
    const char *dir = cache_direct(cache) ? ddir : tdir;
    if (!*dir)
        SKIP("no file system here accepts O_DIRECT");
    char path[600];
    path_in(path, sizeof path, dir, "snap.img");
    enum { SZ = (1 << 20) + 12345 };     /* last cluster partial, size odd */
    uint8_t *orig = malloc(SZ), *oracle = malloc(SZ), *buf = malloc(SZ);
    CHECK(make_image(path, SZ, 11, orig) == 0);
    CHECK(chmod(path, 0444) == 0);      /* the base is opened read-only */
    memcpy(oracle, orig, SZ);
    unsigned entries = count_dir_entries(tdir);
    struct tctx c;
    CHECK(t_loop(&c));
    char err[256];
    struct blk_options o = { .filename = path, .format = "raw", .cache = cache, .aio = aio,
                             .snapshot = true };
    struct block_backend *b = blk_open(&o, c.loop, err, sizeof err);
    if (!b)
        printf("    %s\n", err);
    CHECK(b);
    CHECK(!blk_read_only(b));
    CHECK_EQ(blk_length(b), SZ);
    uint64_t seed = 77;
    struct treq t[8];
    for (int round = 0; round < 40; round++) {
        unsigned base = c.done;
        uint64_t used_lo[8], used_hi[8];
        unsigned n = 0;
        for (unsigned tries = 0; n < 8 && tries < 100; tries++) {
            uint64_t len = 1 + rng_next(&seed) % 150000;
            uint64_t off = rng_next(&seed) % (SZ - len);
            bool clash = false;
            for (unsigned k = 0; k < n; k++)
                if (off < used_hi[k] && used_lo[k] < off + len)
                    clash = true;
            if (clash)
                continue;
            used_lo[n] = off;
            used_hi[n] = off + len;
            uint8_t *p = malloc(len);
            for (uint64_t i = 0; i < len; i++)
                p[i] = (uint8_t)rng_next(&seed);
            memcpy(oracle + off, p, len);
            t_prep(&t[n], &c, round % 5 == 4 && n == 0 ? BLK_OP_WRITE_ZEROES : BLK_OP_WRITE,
                   off, p, len);
            if (t[n].r.op == BLK_OP_WRITE_ZEROES) {
                memset(oracle + off, 0, len);
                t[n].r.iov = NULL;
                t[n].r.iovcnt = 0;
            }
            blk_submit(b, &t[n].r);
            n++;
        }
        t_wait(&c, base + n);
        for (unsigned k = 0; k < n; k++) {
            CHECK_EQ(t[k].ret, 0);
            free(t[k].iov[0].iov_base);
        }
        CHECK_EQ(t_sync(b, &c, BLK_OP_READ, 0, buf, SZ), 0);
        CHECK(memcmp(buf, oracle, SZ) == 0);
    }
    CHECK_EQ(t_sync(b, &c, BLK_OP_FLUSH, 0, NULL, 0), 0);
    CHECK_EQ(t_sync(b, &c, BLK_OP_DISCARD, 0, NULL, 65536), 0);
    CHECK(count_dir_entries(tdir) == entries);  /* the overlay has no name */
    blk_close(b);
    CHECK(read_file(path, buf, SZ) == 0);
    CHECK(memcmp(buf, orig, SZ) == 0);
    loop_free(c.loop);
    chmod(path, 0644);
    unlink(path);
    free(orig);
    free(oracle);
    free(buf);
}

TEST(snapshot_threads) { snapshot_mode(BLK_AIO_THREADS, BLK_CACHE_WRITEBACK); }
TEST(snapshot_io_uring_none) { snapshot_mode(BLK_AIO_IO_URING, BLK_CACHE_NONE); }

/* ---- probing ------------------------------------------------------------------ */

static int capture_log_start(char *path, size_t n)
{
    snprintf(path, n, "%s/log.txt", tdir);
    int fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0644);
    if (fd >= 0)
        log_set_fd(fd);
    return fd;
}

static void capture_log_end(int fd, char *out, size_t n)
{
    log_set_fd(2);
    ssize_t r = pread(fd, out, n - 1, 0);
    out[r > 0 ? r : 0] = 0;
    close(fd);
}

TEST(probe_qcow2_detected)
{
    char path[600];
    path_in(path, sizeof path, tdir, "q.img");
    CHECK(make_image(path, 65536, 12, NULL) == 0);
    int fd = open(path, O_WRONLY);
    CHECK(pwrite(fd, "QFI\xfb\0\0\0\3", 8, 0) == 8);
    close(fd);
    struct tctx c;
    CHECK(t_loop(&c));
    char err[512] = "";
    struct blk_options o = { .filename = path };
    /* Probed as qcow2 (a format with a header is detected), whose header
     * here is garbage: refused by the qcow2 driver with its reason. */
    CHECK(!blk_open(&o, c.loop, err, sizeof err));
    CHECK(strstr(err, "qcow2") != NULL || strstr(err, path) != NULL);
    /* format=raw: the bytes are a raw disk, magic and all. */
    o.format = "raw";
    struct block_backend *b = blk_open(&o, c.loop, err, sizeof err);
    CHECK(b);
    blk_close(b);
    o.format = "qcow2";
    CHECK(!blk_open(&o, c.loop, err, sizeof err));
    CHECK(strstr(err, "qcow2") != NULL);
    o.format = "vmdk";
    CHECK(!blk_open(&o, c.loop, err, sizeof err));
    CHECK_STR(err, "'vmdk' invalid format (kvmbox knows: raw, qcow2)");
    loop_free(c.loop);
    unlink(path);
}

TEST(probe_raw_warns_and_guards_block0)
{
    char path[600], logpath[600], log[4096];
    path_in(path, sizeof path, tdir, "p.img");
    enum { SZ = 65536 };
    CHECK(make_image(path, SZ, 13, NULL) == 0);
    struct tctx c;
    CHECK(t_loop(&c));
    char err[512];
    struct blk_options o = { .filename = path };
    int lfd = capture_log_start(logpath, sizeof logpath);
    CHECK(lfd >= 0);
    struct block_backend *b = blk_open(&o, c.loop, err, sizeof err);
    uint8_t sec[1024];
    memset(sec, 0x11, sizeof sec);
    memcpy(sec, "QFI\xfb", 4);
    int r_magic = b ? t_sync(b, &c, BLK_OP_WRITE, 0, sec, 1024) : -1;
    memcpy(sec, "conectix", 8);
    int r_vpc = b ? t_sync(b, &c, BLK_OP_WRITE, 0, sec, 512) : -1;
    int r_partial = b ? t_sync(b, &c, BLK_OP_WRITE, 8, sec + 100, 16) : -1;
    capture_log_end(lfd, log, sizeof log);
    unlink(logpath);
    CHECK(b);
    char want[1400];
    snprintf(want, sizeof want, "Image format was not specified for '%s' and probing guessed "
             "raw.", path);
    CHECK(strstr(log, want) != NULL);
    CHECK(strstr(log, "write operations on block 0 will be restricted") != NULL);
    CHECK(strstr(log, "Specify the 'raw' format explicitly to remove the restrictions.") != NULL);
    CHECK_EQ(r_magic, -EPERM);
    CHECK_EQ(r_vpc, -EPERM);
    CHECK_EQ(r_partial, -EPERM);
    /* Harmless block-0 data and everything past block 0 are fine. */
    memset(sec, 0x22, sizeof sec);
    CHECK_EQ(t_sync(b, &c, BLK_OP_WRITE, 0, sec, 1024), 0);
    memcpy(sec, "QFI\xfb", 4);
    CHECK_EQ(t_sync(b, &c, BLK_OP_WRITE, 512, sec, 512), 0);
    blk_close(b);
    uint8_t back[1024];
    CHECK(read_file(path, back, sizeof back) == 0);
    CHECK_EQ(back[0], 0x22);
    CHECK(memcmp(back + 512, "QFI\xfb", 4) == 0);

    /* Explicit format=raw: no warning, no guard. */
    lfd = capture_log_start(logpath, sizeof logpath);
    o.format = "raw";
    b = blk_open(&o, c.loop, err, sizeof err);
    int r_raw = b ? t_sync(b, &c, BLK_OP_WRITE, 0, sec, 512) : -1;
    capture_log_end(lfd, log, sizeof log);
    unlink(logpath);
    CHECK(b);
    CHECK(strstr(log, "probing guessed raw") == NULL);
    CHECK_EQ(r_raw, 0);
    blk_close(b);
    loop_free(c.loop);
    unlink(path);
}

/* ---- errors --------------------------------------------------------------------- */

TEST(open_errors)
{
    struct tctx c;
    CHECK(t_loop(&c));
    char err[512], path[600], want[1400];
    path_in(path, sizeof path, tdir, "does-not-exist.img");
    struct blk_options o = { .filename = path, .format = "raw" };
    CHECK(!blk_open(&o, c.loop, err, sizeof err));
    snprintf(want, sizeof want, "Could not open '%s': No such file or directory", path);
    CHECK_STR(err, want);
    o.filename = tdir;
    CHECK(!blk_open(&o, c.loop, err, sizeof err));
    snprintf(want, sizeof want, "Could not open '%s': Is a directory", tdir);
    CHECK_STR(err, want);
    o.read_only = true;     /* a directory opens O_RDONLY: fstat catches it */
    CHECK(!blk_open(&o, c.loop, err, sizeof err));
    CHECK_STR(err, want);
    o.filename = "/dev/null";
    CHECK(!blk_open(&o, c.loop, err, sizeof err));
    CHECK_STR(err, "Could not open '/dev/null': not a regular file or block device");
    o.filename = "";
    CHECK(!blk_open(&o, c.loop, err, sizeof err));
    /* qcow2's options on a raw image: QEMU's refusal. */
    path_in(path, sizeof path, tdir, "opt.img");
    CHECK(make_image(path, 65536, 3, NULL) == 0);
    o = (struct blk_options){ .filename = path, .format = "raw",
                              .fmt = { .l2_cache_size = 1 << 20 } };
    CHECK(!blk_open(&o, c.loop, err, sizeof err));
    CHECK_STR(err, "Block format 'raw' does not support the option 'l2-cache-size'");
    loop_free(c.loop);
}

TEST(request_errors)
{
    char path[600];
    path_in(path, sizeof path, tdir, "e.img");
    enum { SZ = 65536 };
    CHECK(make_image(path, SZ, 14, NULL) == 0);
    for (int aio = 0; aio < 2; aio++) {
        struct tctx c;
        CHECK(t_loop(&c));
        struct block_backend *b = open_simple(&c, path, aio, BLK_CACHE_WRITEBACK);
        CHECK(b);
        uint8_t buf[8192];
        CHECK_EQ(t_sync(b, &c, BLK_OP_READ, SZ - 512, buf, 1024), -EIO);  /* crosses the end */
        CHECK_EQ(t_sync(b, &c, BLK_OP_READ, SZ, buf, 512), -EIO);         /* past the end */
        CHECK_EQ(t_sync(b, &c, BLK_OP_WRITE, UINT64_MAX - 511, buf, 512), -EIO); /* overflow */
        CHECK_EQ(t_sync(b, &c, BLK_OP_WRITE_ZEROES, SZ - 512, NULL, 1024), -EIO);
        CHECK_EQ(t_sync(b, &c, BLK_OP_READ, SZ - 512, buf, 512), 0);     /* the last sector */
        CHECK_EQ(t_sync(b, &c, BLK_OP_READ, 0, buf, 0), 0);              /* empty */
        struct treq t;
        t_prep(&t, &c, BLK_OP_READ, 0, buf, 4096);
        t.r.len = 8192;     /* iov says 4096 */
        blk_submit(b, &t.r);
        t_wait(&c, c.done + 1);
        CHECK_EQ(t.ret, -EINVAL);
        t_prep(&t, &c, (enum blk_op)42, 0, NULL, 0);
        blk_submit(b, &t.r);
        t_wait(&c, c.done + 1);
        CHECK_EQ(t.ret, -EINVAL);
        CHECK_EQ(t.calls, 1);
        blk_close(b);
        loop_free(c.loop);
    }
    unlink(path);
}

/* Completions never run inside blk_submit, even for immediate errors. */
TEST(no_completion_inside_submit)
{
    char path[600];
    path_in(path, sizeof path, tdir, "n.img");
    CHECK(make_image(path, 4096, 15, NULL) == 0);
    struct tctx c;
    CHECK(t_loop(&c));
    struct block_backend *b = open_simple(&c, path, BLK_AIO_THREADS, BLK_CACHE_WRITEBACK);
    CHECK(b);
    uint8_t buf[512];
    struct treq t;
    t_prep(&t, &c, BLK_OP_READ, 1 << 20, buf, 512);
    blk_submit(b, &t.r);
    CHECK_EQ(t.calls, 0);
    t_wait(&c, 1);
    CHECK_EQ(t.calls, 1);
    CHECK_EQ(t.ret, -EIO);
    blk_close(b);
    loop_free(c.loop);
    unlink(path);
}

/* A host block device: only with KVMBOX_TEST_BLOCKDEV=/dev/XXX naming a
 * scratch device whose contents may be destroyed (e.g. a loop device). */
TEST(host_block_device)
{
    const char *dev = getenv("KVMBOX_TEST_BLOCKDEV");
    if (!dev || !*dev)
        SKIP("set KVMBOX_TEST_BLOCKDEV to a scratch block device to run");
    int fd = open(dev, O_RDONLY);
    if (fd < 0)
        SKIP("cannot open %s: %s", dev, strerror(errno));
    uint64_t size = 0;
    int lbs = 0;
    CHECK(ioctl(fd, BLKGETSIZE64, &size) == 0);
    CHECK(ioctl(fd, BLKSSZGET, &lbs) == 0);
    close(fd);
    CHECK(size >= (1 << 20));
    for (int m = 0; m < 2; m++) {
        for (int aio = 0; aio < 2; aio++) {
            struct tctx c;
            CHECK(t_loop(&c));
            char err[512];
            struct blk_options o = { .filename = dev, .format = "raw", .aio = aio,
                                     .cache = m ? BLK_CACHE_NONE : BLK_CACHE_WRITEBACK,
                                     .discard = true };
            struct block_backend *b = blk_open(&o, c.loop, err, sizeof err);
            if (!b)
                printf("    %s\n", err);
            CHECK(b);
            CHECK_EQ(blk_length(b), size);
            CHECK_EQ(blk_logical_block_size(b), lbs);
            uint8_t *w = malloc(65536 + 1), *r = malloc(65536 + 1);
            for (unsigned i = 0; i < 65536; i++)
                w[i + 1] = (uint8_t)(i * 31 + m + aio);
            uint64_t off = size - 65536 - 512;
            CHECK_EQ(t_sync(b, &c, BLK_OP_WRITE, off, w + 1, 65536), 0);
            CHECK_EQ(t_sync(b, &c, BLK_OP_FLUSH, 0, NULL, 0), 0);
            CHECK_EQ(t_sync(b, &c, BLK_OP_READ, off, r + 1, 65536), 0);
            CHECK(memcmp(w + 1, r + 1, 65536) == 0);
            CHECK_EQ(t_sync(b, &c, BLK_OP_WRITE_ZEROES, off, NULL, 8192), 0);
            CHECK_EQ(t_sync(b, &c, BLK_OP_READ, off, r + 1, 65536), 0);
            for (unsigned i = 0; i < 8192; i++)
                CHECK_EQ(r[i + 1], 0);
            CHECK(memcmp(w + 1 + 8192, r + 1 + 8192, 65536 - 8192) == 0);
            CHECK_EQ(t_sync(b, &c, BLK_OP_DISCARD, 0, NULL, 1 << 20), 0);
            CHECK_EQ(t_sync(b, &c, BLK_OP_READ, size - 512, r, 1024), -EIO);
            free(w);
            free(r);
            blk_close(b);
            loop_free(c.loop);
        }
    }
}

/* ---- main ------------------------------------------------------------------------ */

static bool dir_takes_direct(const char *dir)
{
    char path[600];
    path_in(path, sizeof path, dir, "probe-direct");
    int fd = open(path, O_CREAT | O_RDWR | O_DIRECT, 0644);
    if (fd >= 0)
        close(fd);
    unlink(path);
    return fd >= 0;
}

int main(void)
{
    alarm(120);     /* a lost completion must fail the suite, not hang it */
    const char *tmp = getenv("TMPDIR");
    snprintf(tdir, sizeof tdir, "%s/kvmbox-blk-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(tdir)) {
        perror("mkdtemp");
        return 1;
    }
    if (dir_takes_direct(tdir)) {
        snprintf(ddir, sizeof ddir, "%s", tdir);
    } else {
        printf("note: %s refuses O_DIRECT; trying build/\n", tdir);
        mkdir("build", 0755);
        snprintf(ddir, sizeof ddir, "build/blktest-XXXXXX");
        if (!mkdtemp(ddir) || !dir_takes_direct(ddir)) {
            if (ddir[0] && strstr(ddir, "XXXXXX") == NULL)
                rmdir(ddir);
            ddir[0] = 0;
        }
    }
    /* The snapshot overlay goes to $TMPDIR: keep it in our directory. */
    setenv("TMPDIR", tdir, 1);

    RUN(integrity_threads_writeback);
    RUN(integrity_threads_none);
    RUN(integrity_threads_writethrough);
    RUN(integrity_threads_directsync);
    RUN(integrity_threads_unsafe);
    RUN(integrity_io_uring_writeback);
    RUN(integrity_io_uring_none);
    RUN(integrity_io_uring_writethrough);
    RUN(integrity_io_uring_directsync);
    RUN(integrity_io_uring_unsafe);
    RUN(flush_after_earlier_writes_threads);
    RUN(flush_after_earlier_writes_io_uring);
    RUN(flush_after_earlier_writes_threads_unsafe);
    RUN(flush_after_earlier_writes_io_uring_unsafe);
    RUN(queue_depth_64_threads);
    RUN(queue_depth_64_io_uring);
    RUN(queue_depth_64_io_uring_none);
    RUN(queue_depth_300_io_uring);
    RUN(drain_in_flight_threads);
    RUN(drain_in_flight_io_uring);
    RUN(drain_from_completion_callback);
    RUN(direct_unaligned_buffers_and_offsets);
    RUN(direct_refused_message);
    RUN(write_cache_flag_per_mode);
    RUN(discard_and_write_zeroes);
    RUN(readonly_refuses_writes);
    RUN(snapshot_threads);
    RUN(snapshot_io_uring_none);
    RUN(probe_qcow2_detected);
    RUN(probe_raw_warns_and_guards_block0);
    RUN(open_errors);
    RUN(request_errors);
    RUN(no_completion_inside_submit);
    RUN(host_block_device);

    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'%s%s%s", tdir, ddir[0] && strcmp(ddir, tdir) ? " '" : "",
             ddir[0] && strcmp(ddir, tdir) ? ddir : "", ddir[0] && strcmp(ddir, tdir) ? "'" : "");
    if (system(cmd) != 0)
        printf("note: could not remove %s\n", tdir);
    return test_summary();
}
