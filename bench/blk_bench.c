/* blk_bench: the device-side virtio-blk benchmark (issue 3). It measures
 * what the device model costs over the I/O engine beneath it, with no
 * guest and no KVM: in one process, for each workload it runs
 *
 *   raw  plain pread/pwrite (aio=threads: as many threads as the block
 *        layer's worker pool, min(QD, 4), each doing synchronous I/O) or
 *        liburing directly (aio=io_uring: one ring, QD requests in flight,
 *        readv/writev as the engine issues them) on the same file, opened
 *        the same way (O_DIRECT for cache=none);
 *   blk  the block layer (blk_open/blk_submit on an event loop, no device);
 *   dev  virtio-blk (virtio_blk_new) driven through its virtqueue by the
 *        simulated guest driver of the unit tests (tests/unit/
 *        virtio_driver.h): header / data / status chains, EVENT_IDX, the
 *        driver harvesting used entries and refilling the queue when the
 *        device's interrupt (the transport's notify_queue) arrives;
 *
 * and prints IOPS, MB/s and the ratios dev/raw (the target is >= 0.90) and
 * dev/blk (the device model alone). The driver runs on the thread of the
 * completion loop (the I/O thread's role in the VMM), so "dev" includes
 * the queue processing and completion path, not a vCPU exit.
 *
 * Usage: blk_bench [-d DIR] [-s SIZE_MIB] [-t SECONDS] [-f FILTER] [-k]
 *   -d  directory for the test file (default $BENCH_DIR, else /var/tmp):
 *       use a real disk (not tmpfs: cache=none needs O_DIRECT)
 *   -s  file size in MiB (default 1024)
 *   -t  seconds per measurement (default 1.0; three per row)
 *   -f  only rows whose name contains FILTER (e.g. "io_uring", "qd32")
 *   -k  keep the file (reused by the next run if the size matches) */
#include "block/block.h"
#include "core/guest_mem.h"
#include "core/log.h"
#include "core/loop.h"
#include "hw/virtio/blk.h"
#include "virtio_driver.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define POOL_THREADS 4          /* block.c's BLK_POOL_THREADS */
#define MAX_QD 32
#define T_IN 0
#define T_OUT 1

struct workload {
    const char *name;
    uint32_t bs;
    bool write, random;
};

static const struct workload workloads[] = {
    { "4k-randread", 4096, false, true },
    { "4k-randwrite", 4096, true, true },
    { "64k-seqread", 65536, false, false },
    { "64k-seqwrite", 65536, true, false },
};

struct row {
    const struct workload *w;
    unsigned qd;
    enum blk_aio aio;
    enum blk_cache_mode cache;
};

struct result {
    uint64_t ops;
    double secs;
};

static const char *path;
static uint64_t file_size;
static double run_secs = 0.5;    /* per measurement; each runs twice */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Offsets: random block-aligned, or one sequential stream shared by all
 * requests in flight (wrapping at the end of the file). */
struct offgen {
    const struct workload *w;
    uint64_t seed;
    atomic_uint_fast64_t next;
};

static uint64_t off_next(struct offgen *g, uint64_t *seed)
{
    uint64_t blocks = file_size / g->w->bs;
    if (g->w->random)
        return (xorshift(seed) % blocks) * g->w->bs;
    return (atomic_fetch_add(&g->next, 1) % blocks) * g->w->bs;
}

static int open_file(enum blk_cache_mode cache, bool write)
{
    int flags = (write ? O_RDWR : O_RDONLY) | O_CLOEXEC;
    if (cache == BLK_CACHE_NONE)
        flags |= O_DIRECT;
    return open(path, flags);
}

/* ---- raw: threads ---------------------------------------------------- */

struct raw_thread {
    pthread_t th;
    int fd;
    struct offgen *g;
    uint64_t seed;
    void *buf;
    volatile bool *stop;
    uint64_t ops;
    int err;
};

static void *raw_worker(void *arg)
{
    struct raw_thread *t = arg;
    uint32_t bs = t->g->w->bs;
    while (!*t->stop) {
        uint64_t off = off_next(t->g, &t->seed);
        ssize_t r = t->g->w->write ? pwrite(t->fd, t->buf, bs, (off_t)off)
                                   : pread(t->fd, t->buf, bs, (off_t)off);
        if (r != (ssize_t)bs) {
            t->err = r < 0 ? errno : EIO;
            break;
        }
        t->ops++;
    }
    return NULL;
}

static int raw_threads(const struct row *rw, struct result *res)
{
    int fd = open_file(rw->cache, rw->w->write);
    if (fd < 0)
        return -errno;
    unsigned n = rw->qd < POOL_THREADS ? rw->qd : POOL_THREADS;
    struct raw_thread t[POOL_THREADS];
    struct offgen g = { .w = rw->w };
    volatile bool stop = false;
    memset(t, 0, sizeof t);
    for (unsigned i = 0; i < n; i++) {
        t[i] = (struct raw_thread){ .fd = fd, .g = &g, .seed = 0x9e3779b97f4a7c15ULL * (i + 1),
                                    .stop = &stop };
        if (posix_memalign(&t[i].buf, 4096, rw->w->bs))
            return -ENOMEM;
        memset(t[i].buf, 0x5a, rw->w->bs);
    }
    double t0 = now_s();
    for (unsigned i = 0; i < n; i++)
        pthread_create(&t[i].th, NULL, raw_worker, &t[i]);
    struct timespec ts = { (time_t)run_secs, (long)((run_secs - (time_t)run_secs) * 1e9) };
    nanosleep(&ts, NULL);
    stop = true;
    res->ops = 0;
    int err = 0;
    for (unsigned i = 0; i < n; i++) {
        pthread_join(t[i].th, NULL);
        res->ops += t[i].ops;
        if (t[i].err)
            err = -t[i].err;
        free(t[i].buf);
    }
    res->secs = now_s() - t0;
    close(fd);
    return err;
}

/* ---- raw: io_uring -------------------------------------------------- */

static int raw_uring(const struct row *rw, struct result *res)
{
    int fd = open_file(rw->cache, rw->w->write);
    if (fd < 0)
        return -errno;
    struct io_uring ring;
    int rc = io_uring_queue_init(64, &ring, 0);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    struct offgen g = { .w = rw->w };
    uint64_t seed = 0x1234567;
    void *bufs[MAX_QD];
    struct iovec iov[MAX_QD];
    for (unsigned i = 0; i < rw->qd; i++) {
        if (posix_memalign(&bufs[i], 4096, rw->w->bs))
            return -ENOMEM;
        memset(bufs[i], 0x5a, rw->w->bs);
        iov[i] = (struct iovec){ bufs[i], rw->w->bs };
    }
    uint64_t ops = 0;
    unsigned inflight = 0;
    double t0 = now_s(), end = t0 + run_secs;
    bool stopping = false;
    for (unsigned i = 0; i < rw->qd; i++) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
        uint64_t off = off_next(&g, &seed);
        if (rw->w->write)
            io_uring_prep_writev(sqe, fd, &iov[i], 1, off);
        else
            io_uring_prep_readv(sqe, fd, &iov[i], 1, off);
        io_uring_sqe_set_data64(sqe, i);
        inflight++;
    }
    double stop_at = 0;
    while (inflight) {
        io_uring_submit_and_wait(&ring, 1);
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&ring, head, cqe) {
            seen++;
            inflight--;
            if (cqe->res != (int)rw->w->bs) {
                rc = cqe->res < 0 ? cqe->res : -EIO;
                stopping = true;
            }
            if (stopping)
                continue;
            ops++;
            unsigned i = (unsigned)io_uring_cqe_get_data64(cqe);
            struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
            uint64_t off = off_next(&g, &seed);
            if (rw->w->write)
                io_uring_prep_writev(sqe, fd, &iov[i], 1, off);
            else
                io_uring_prep_readv(sqe, fd, &iov[i], 1, off);
            io_uring_sqe_set_data64(sqe, i);
            inflight++;
        }
        io_uring_cq_advance(&ring, seen);
        if (!stopping && now_s() >= end) {
            stopping = true;
            stop_at = now_s();
        }
    }
    res->ops = ops;
    res->secs = (stop_at ? stop_at : now_s()) - t0;
    io_uring_queue_exit(&ring);
    for (unsigned i = 0; i < rw->qd; i++)
        free(bufs[i]);
    close(fd);
    return rc < 0 ? rc : 0;
}

/* ---- the block layer alone ---------------------------------------------- */

struct blk_ctx {
    struct loop *loop;
    struct block_backend *be;
    struct offgen g;
    uint64_t seed;
    bool stopping;
    unsigned inflight;
    uint64_t ops;
    int err;
};

struct blk_slot {
    struct blk_req r;
    struct blk_ctx *c;
    struct iovec iov;
};

static void blk_slot_submit(struct blk_slot *s)
{
    struct blk_ctx *c = s->c;
    s->r = (struct blk_req){
        .op = c->g.w->write ? BLK_OP_WRITE : BLK_OP_READ, .offset = off_next(&c->g, &c->seed),
        .len = c->g.w->bs, .iov = &s->iov, .iovcnt = 1, .opaque = s,
        .done = s->r.done,
    };
    c->inflight++;
    blk_submit(c->be, &s->r);
}

static void blk_slot_done(struct blk_req *r, int ret)
{
    struct blk_slot *s = r->opaque;
    struct blk_ctx *c = s->c;
    c->inflight--;
    if (ret < 0) {
        c->err = ret;
        c->stopping = true;
    }
    if (c->stopping) {
        if (!c->inflight)
            loop_quit(c->loop);
        return;
    }
    c->ops++;
    blk_slot_submit(s);
}

/* A timer on the loop: records that it fired and ends loop_run. */
struct loop_timer {
    struct loop *loop;
    bool fired;
};

static void loop_timer_fired(void *opaque, int fd, uint32_t events)
{
    struct loop_timer *t = opaque;
    uint64_t n;
    ssize_t r = read(fd, &n, sizeof n);
    (void)r;
    t->fired = true;
    loop_quit(t->loop);
}

/* One-shot after secs, or periodic when periodic is set. */
static int arm_timer(struct loop_timer *t, double secs, bool periodic)
{
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    struct timespec v = { (time_t)secs, (long)((secs - (time_t)secs) * 1e9) };
    struct itimerspec its = { periodic ? v : (struct timespec){ 0, 0 }, v };
    if (tfd < 0 || timerfd_settime(tfd, 0, &its, NULL) < 0 ||
        loop_add_fd(t->loop, tfd, EPOLLIN, loop_timer_fired, t) < 0) {
        if (tfd >= 0)
            close(tfd);
        return -1;
    }
    return tfd;
}

static struct block_backend *open_backend(const struct row *rw, struct loop *l)
{
    struct blk_options o = { .filename = path, .format = "raw", .cache = rw->cache,
                             .aio = rw->aio };
    char err[400];
    struct block_backend *be = blk_open(&o, l, err, sizeof err);
    if (!be)
        fprintf(stderr, "blk_open: %s\n", err);
    return be;
}

struct blk_stop {
    struct blk_ctx *c;
    bool fired;
    double at;
};

static void blk_deadline(void *opaque, int fd, uint32_t events)
{
    struct blk_stop *st = opaque;
    uint64_t n;
    ssize_t r = read(fd, &n, sizeof n);
    (void)r;
    st->fired = true;
    st->at = now_s();
    st->c->stopping = true;
    if (!st->c->inflight)
        loop_quit(st->c->loop);
}

static int run_blk(const struct row *rw, struct result *res)
{
    struct blk_ctx c = { .g = { .w = rw->w }, .seed = 0x1234567 };
    c.loop = loop_new(NULL, NULL);
    c.be = open_backend(rw, c.loop);
    if (!c.be)
        return -EIO;
    struct blk_slot *slots = calloc(rw->qd, sizeof *slots);
    void *bufs = NULL;
    if (!slots || posix_memalign(&bufs, 4096, (size_t)rw->qd * rw->w->bs))
        return -ENOMEM;
    memset(bufs, 0x5a, (size_t)rw->qd * rw->w->bs);
    struct blk_stop st = { .c = &c };
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    struct itimerspec its = { { 0, 0 },
                              { (time_t)run_secs, (long)((run_secs - (time_t)run_secs) * 1e9) } };
    double t0 = now_s();
    if (tfd < 0 || timerfd_settime(tfd, 0, &its, NULL) < 0 ||
        loop_add_fd(c.loop, tfd, EPOLLIN, blk_deadline, &st) < 0)
        return -EIO;
    for (unsigned i = 0; i < rw->qd; i++) {
        slots[i].c = &c;
        slots[i].iov = (struct iovec){ (char *)bufs + (size_t)i * rw->w->bs, rw->w->bs };
        slots[i].r.done = blk_slot_done;
        blk_slot_submit(&slots[i]);
    }
    loop_run(c.loop);
    res->ops = c.ops;
    res->secs = (st.fired ? st.at : now_s()) - t0;
    loop_del_fd(c.loop, tfd);
    close(tfd);
    blk_close(c.be);
    loop_free(c.loop);
    free(slots);
    free(bufs);
    return c.err;
}

/* ---- virtio-blk through the simulated driver ------------------------------ */

struct dev_ctx {
    struct vdrv drv;
    struct loop *loop;
    bool irq;
};

/* The transport: the device's used-buffer interrupt ends loop_run so the
 * driver (this thread) harvests. */
static void dev_notify_queue(struct virtio_dev *vd, unsigned q)
{
    struct dev_ctx *c = vd->transport_opaque;
    c->irq = true;
    loop_quit(c->loop);
}

static void dev_notify_config(struct virtio_dev *vd)
{
    struct dev_ctx *c = vd->transport_opaque;
    loop_quit(c->loop);
}

static const struct virtio_transport_ops dev_transport = {
    .notify_queue = dev_notify_queue,
    .notify_config = dev_notify_config,
};

struct dev_req {
    uint64_t hdr, data, status;
};

static int dev_add(struct dev_ctx *c, const struct dev_req *r, const struct workload *w,
                   uint64_t off)
{
    struct { uint32_t type, reserved; uint64_t sector; } h = {
        w->write ? T_OUT : T_IN, 0, off >> 9 };
    memcpy(vdrv_ptr(&c->drv, r->hdr, 16), &h, 16);
    struct vdrv_sg out[2] = { { r->hdr, 16 }, { r->data, w->bs } };
    struct vdrv_sg in[2] = { { r->data, w->bs }, { r->status, 1 } };
    return w->write ? vdrv_add_chain(&c->drv, 0, out, 2, in + 1, 1)
                    : vdrv_add_chain(&c->drv, 0, out, 1, in, 2);
}

static int run_dev(const struct row *rw, struct result *res)
{
    struct dev_ctx *c = calloc(1, sizeof *c);
    struct guest_mem *mem = calloc(1, sizeof *mem);
    struct virtio_dev *vd = calloc(1, sizeof *vd);
    if (!c || !mem || !vd)
        return -ENOMEM;
    c->loop = loop_new(NULL, NULL);
    struct block_backend *be = open_backend(rw, c->loop);
    if (!be)
        return -EIO;
    struct virtio_blk_opts vo = { .queue_size = 256 };
    struct virtio_blk *blk = virtio_blk_new(be, c->loop, &vo);
    if (!blk || gmem_init(mem, 64 << 20) < 0 ||
        virtio_dev_init(vd, virtio_blk_ops(blk), blk, mem) < 0)
        return -ENOMEM;
    /* What Linux negotiates for a disk: VERSION_1, EVENT_IDX, INDIRECT,
     * FLUSH, SEG_MAX, BLK_SIZE. */
    uint64_t feats = (1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_F_EVENT_IDX) |
                     (1ULL << VIRTIO_F_INDIRECT_DESC) | (1ULL << 9) | (1ULL << 2) | (1ULL << 6);
    if (vdrv_init(&c->drv, vd, feats) < 0)
        return -EIO;
    vd->transport = &dev_transport;
    vd->transport_opaque = c;

    struct dev_req reqs[MAX_QD];
    int slot_of_head[256];
    for (unsigned i = 0; i < 256; i++)
        slot_of_head[i] = -1;
    for (unsigned i = 0; i < rw->qd; i++) {
        reqs[i].hdr = vdrv_alloc(&c->drv, 16, 16);
        reqs[i].data = vdrv_alloc(&c->drv, rw->w->bs, 4096);
        reqs[i].status = vdrv_alloc(&c->drv, 1, 1);
        if (!reqs[i].data)
            return -ENOMEM;
        memset(vdrv_ptr(&c->drv, reqs[i].data, rw->w->bs), 0x5a, rw->w->bs);
    }
    struct loop_timer deadline = { .loop = c->loop }, tick = { .loop = c->loop };
    int tfd = arm_timer(&deadline, run_secs, false);
    /* A safety tick so a lost interrupt shows up as a slow run, not a hang. */
    int sfd = arm_timer(&tick, 0.1, true);
    if (tfd < 0 || sfd < 0)
        return -EIO;

    struct offgen g = { .w = rw->w };
    uint64_t seed = 0x1234567, ops = 0;
    unsigned inflight = 0;
    int err = 0;
    double t0 = now_s(), stop_at = 0;
    for (unsigned i = 0; i < rw->qd; i++) {
        int head = dev_add(c, &reqs[i], rw->w, off_next(&g, &seed));
        if (head < 0)
            return head;
        slot_of_head[head] = (int)i;
        inflight++;
    }
    vdrv_kick(&c->drv, 0);
    bool stopping = false;
    while (inflight) {
        unsigned added = 0, harvested = 0;
        uint16_t id;
        uint32_t len;
        int rc;
        while ((rc = vdrv_get_used(&c->drv, 0, &id, &len)) == 1) {
            harvested++;
            inflight--;
            int s = slot_of_head[id];
            slot_of_head[id] = -1;
            if (s < 0 || *(uint8_t *)vdrv_ptr(&c->drv, reqs[s].status, 1) != 0) {
                err = -EIO;
                stopping = true;
            }
            if (stopping)
                continue;
            ops++;
            int head = dev_add(c, &reqs[s], rw->w, off_next(&g, &seed));
            if (head < 0) {
                err = head;
                stopping = true;
                continue;
            }
            slot_of_head[head] = s;
            inflight++;
            added++;
        }
        if (rc < 0 || (virtio_get_status(vd) & VIRTIO_STATUS_NEEDS_RESET)) {
            err = -EPROTO;
            break;
        }
        if (added)
            vdrv_kick(&c->drv, 0);
        if (!stopping && deadline.fired) {
            stopping = true;
            stop_at = now_s();
        }
        if (!harvested && inflight) {
            c->irq = false;
            loop_run(c->loop);      /* until the interrupt (or a timer) */
        }
    }
    res->ops = ops;
    res->secs = (stop_at ? stop_at : now_s()) - t0;
    loop_del_fd(c->loop, tfd);
    loop_del_fd(c->loop, sfd);
    close(tfd);
    close(sfd);
    pthread_mutex_lock(&vd->lock);
    virtio_set_status(vd, 0);
    pthread_mutex_unlock(&vd->lock);
    virtio_dev_destroy(vd);
    vdrv_destroy(&c->drv);
    virtio_blk_free(blk);
    blk_close(be);
    loop_free(c->loop);
    gmem_destroy(mem);
    free(mem);
    free(vd);
    free(c);
    return err;
}

/* ---- the file --------------------------------------------------------- */

static int make_file(bool keep)
{
    struct stat st;
    if (keep && stat(path, &st) == 0 && (uint64_t)st.st_size == file_size)
        return 0;
    int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    enum { CHUNK = 1 << 20 };
    uint8_t *buf = malloc(CHUNK);
    if (!buf)
        return -ENOMEM;
    uint64_t seed = 42;
    /* Real data (not a sparse or fallocated file, whose reads cost no I/O). */
    for (uint64_t off = 0; off < file_size; off += CHUNK) {
        for (size_t i = 0; i < CHUNK; i += 8) {
            uint64_t v = xorshift(&seed);
            memcpy(buf + i, &v, 8);
        }
        if (pwrite(fd, buf, CHUNK, (off_t)off) != CHUNK) {
            free(buf);
            close(fd);
            return -EIO;
        }
    }
    free(buf);
    fsync(fd);
    close(fd);
    return 0;
}

static const char *aio_name(enum blk_aio a) { return a == BLK_AIO_IO_URING ? "io_uring" : "threads"; }
static const char *cache_name(enum blk_cache_mode m) { return m == BLK_CACHE_NONE ? "none" : "writeback"; }

static void print_result(const char *what, const struct result *r, uint32_t bs, double *iops)
{
    *iops = r->secs > 0 ? r->ops / r->secs : 0;
    printf(" %9.0f %8.1f", *iops, *iops * bs / 1e6);
    (void)what;
}

int main(int argc, char **argv)
{
    const char *dir = getenv("BENCH_DIR");
    const char *filter = NULL;
    unsigned size_mib = 1024;
    bool keep = false;
    int opt;
    while ((opt = getopt(argc, argv, "d:s:t:f:kh")) != -1) {
        switch (opt) {
        case 'd': dir = optarg; break;
        case 's': size_mib = (unsigned)strtoul(optarg, NULL, 0); break;
        case 't': run_secs = strtod(optarg, NULL); break;
        case 'f': filter = optarg; break;
        case 'k': keep = true; break;
        default:
            fprintf(stderr, "usage: %s [-d DIR] [-s SIZE_MIB] [-t SECONDS] [-f FILTER] [-k]\n",
                    argv[0]);
            return opt == 'h' ? 0 : 2;
        }
    }
    if (!dir || !*dir)
        dir = "/var/tmp";
    if (size_mib < 16 || run_secs <= 0 || run_secs > 60) {
        fprintf(stderr, "blk_bench: -s must be >= 16 (MiB), -t in (0, 60]\n");
        return 2;
    }
    log_set_level(LOG_ERROR);
    file_size = (uint64_t)size_mib << 20;
    static char pbuf[4096];
    snprintf(pbuf, sizeof pbuf, "%s/kvmbox-blk-bench.img", dir);
    path = pbuf;
    fprintf(stderr, "blk_bench: preparing %s (%u MiB)...\n", path, size_mib);
    int rc = make_file(keep);
    if (rc < 0) {
        fprintf(stderr, "blk_bench: cannot create %s: %s\n", path, strerror(-rc));
        return 1;
    }
    /* cache=none needs O_DIRECT: tmpfs refuses it. */
    int dfd = open(path, O_RDONLY | O_DIRECT);
    bool direct_ok = dfd >= 0;
    if (dfd >= 0)
        close(dfd);
    else
        fprintf(stderr, "blk_bench: %s refuses O_DIRECT (tmpfs?): cache=none rows skipped\n", dir);

    printf("virtio-blk device vs raw I/O, file %s (%u MiB), %.1f s per measurement\n", path,
           size_mib, run_secs);
    printf("raw = plain pread/pwrite (threads: min(QD,%d) threads) or liburing directly; "
           "blk = block layer alone; dev = virtio-blk via the simulated driver\n", POOL_THREADS);
    printf("%-9s %-9s %-13s %3s | %9s %8s | %9s %8s | %9s %8s | %7s %7s\n", "aio", "cache",
           "workload", "qd", "raw IOPS", "raw MB/s", "blk IOPS", "blk MB/s", "dev IOPS",
           "dev MB/s", "dev/raw", "dev/blk");
    static const enum blk_aio aios[] = { BLK_AIO_THREADS, BLK_AIO_IO_URING };
    static const enum blk_cache_mode caches[] = { BLK_CACHE_NONE, BLK_CACHE_WRITEBACK };
    static const unsigned qds[] = { 1, 32 };
    unsigned below = 0, rows = 0;
    for (unsigned a = 0; a < 2; a++) {
        for (unsigned cm = 0; cm < 2; cm++) {
            if (caches[cm] == BLK_CACHE_NONE && !direct_ok)
                continue;
            for (unsigned wi = 0; wi < sizeof workloads / sizeof workloads[0]; wi++) {
                for (unsigned qi = 0; qi < 2; qi++) {
                    struct row rw = { &workloads[wi], qds[qi], aios[a], caches[cm] };
                    char name[128];
                    snprintf(name, sizeof name, "%s %s %s qd%u", aio_name(rw.aio),
                             cache_name(rw.cache), rw.w->name, rw.qd);
                    if (filter && !strstr(name, filter))
                        continue;
                    printf("%-9s %-9s %-13s %3u |", aio_name(rw.aio), cache_name(rw.cache),
                           rw.w->name, rw.qd);
                    fflush(stdout);
                    /* A-B-C-C-B-A: each engine runs once early and once
                     * late, so warm-up (page cache, device) and drift
                     * weigh on all three alike; ops and time are summed. */
                    struct result rr = { 0 }, br = { 0 }, dr = { 0 };
                    struct result r1 = { 0 }, b1 = { 0 }, d1 = { 0 };
                    struct result r2 = { 0 }, b2 = { 0 }, d2 = { 0 };
                    int e1 = rw.aio == BLK_AIO_IO_URING ? raw_uring(&rw, &r1) : raw_threads(&rw, &r1);
                    int e2 = run_blk(&rw, &b1);
                    int e3 = run_dev(&rw, &d1);
                    e3 = e3 ? e3 : run_dev(&rw, &d2);
                    e2 = e2 ? e2 : run_blk(&rw, &b2);
                    e1 = e1 ? e1 : (rw.aio == BLK_AIO_IO_URING ? raw_uring(&rw, &r2) : raw_threads(&rw, &r2));
                    rr = (struct result){ r1.ops + r2.ops, r1.secs + r2.secs };
                    br = (struct result){ b1.ops + b2.ops, b1.secs + b2.secs };
                    dr = (struct result){ d1.ops + d2.ops, d1.secs + d2.secs };
                    double ri, bi, di;
                    print_result("raw", &rr, rw.w->bs, &ri);
                    printf(" |");
                    print_result("blk", &br, rw.w->bs, &bi);
                    printf(" |");
                    print_result("dev", &dr, rw.w->bs, &di);
                    printf(" | %7.2f %7.2f", ri > 0 ? di / ri : 0, bi > 0 ? di / bi : 0);
                    if (e1 || e2 || e3)
                        printf("  error: raw %s, blk %s, dev %s", strerror(-e1), strerror(-e2),
                               strerror(-e3));
                    printf("%s\n", ri > 0 && di / ri < 0.9 ? "  < 0.90" : "");
                    rows++;
                    below += ri > 0 && di / ri < 0.9;
                    fflush(stdout);
                }
            }
        }
    }
    printf("%u rows, %u below the 0.90 target (dev/raw)\n", rows, below);
    if (!keep)
        unlink(path);
    return 0;
}
