/* The block back end: options -> host file -> format driver (-> snapshot
 * overlay) -> engine, and the completion path back to the device's loop.
 * See block.h for the thread and ordering contract.
 *
 * Completion path: workers (and immediate errors) push finished requests
 * on done_list under done_lock and bump the eventfd `efd`; io_uring posts
 * its completions to the same eventfd (io_uring_register_eventfd). The loop
 * (or blk_drain) reads the eventfd, reaps the ring, then pops done_list one
 * request at a time and calls the done callbacks. Everything except
 * done_list is touched only on the completion loop's thread. */
#include "block/block_int.h"
#include "core/log.h"
#include "core/loop.h"

#include <errno.h>
#include <limits.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

enum { BLK_POOL_THREADS = 4 };

struct block_backend {
    char *filename;
    struct loop *loop;
    const struct block_driver *drv;
    void *drv_state;
    struct blk_file file;
    struct blk_snapshot *snap;
    struct blk_pool *pool;
    struct blk_uring *uring;
    int efd;
    enum blk_cache_mode cache;
    bool read_only;             /* readonly=on (snapshot=on is writable for the guest) */
    bool discard;
    bool probed_raw;            /* format guessed: block 0 is guarded */
    bool dsync;                 /* writethrough/directsync */
    uint64_t length;

    pthread_mutex_t done_lock;
    struct blk_req *done_head, *done_tail;

    /* Loop thread only. */
    unsigned in_flight;
    uint64_t write_seq;
    struct blk_req *writes_head, *writes_tail;  /* in flight, by submission */
    struct blk_req *flush_head, *flush_tail;    /* waiting for earlier writes */
    struct log_ratelimit rl;

    /* Written on the loop thread, read by blk_get_stats from any thread. */
    pthread_mutex_t stats_lock;
    struct blk_stats stats;
};

/* ---- accounting ------------------------------------------------------- */

static uint64_t blk_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static enum blk_acct_type blk_acct_type(enum blk_op op)
{
    switch (op) {
    case BLK_OP_READ: return BLK_ACCT_READ;
    case BLK_OP_FLUSH: return BLK_ACCT_FLUSH;
    case BLK_OP_DISCARD: return BLK_ACCT_UNMAP;
    default: return BLK_ACCT_WRITE;
    }
}

/* Loop thread: r completed with ret (r->priv.start_ns != 0). */
static void blk_account_done(struct block_backend *b, const struct blk_req *r, int ret)
{
    enum blk_acct_type t = blk_acct_type(r->op);
    uint64_t now = blk_now_ns();
    pthread_mutex_lock(&b->stats_lock);
    struct blk_stats *s = &b->stats;
    if (ret) {
        s->failed_ops[t]++;
    } else {
        s->ops[t]++;
        if (t != BLK_ACCT_FLUSH)
            s->bytes[t] += r->len;
        if (t != BLK_ACCT_READ && t != BLK_ACCT_FLUSH && r->offset + r->len > s->wr_highest_offset)
            s->wr_highest_offset = r->offset + r->len;
    }
    s->total_time_ns[t] += now > r->priv.start_ns ? now - r->priv.start_ns : 0;
    s->last_access_ns = now;
    pthread_mutex_unlock(&b->stats_lock);
}

static void blk_account_invalid(struct block_backend *b, enum blk_op op)
{
    uint64_t now = blk_now_ns();
    pthread_mutex_lock(&b->stats_lock);
    b->stats.invalid_ops[blk_acct_type(op)]++;
    b->stats.last_access_ns = now;
    pthread_mutex_unlock(&b->stats_lock);
}

void blk_get_stats(struct block_backend *b, struct blk_stats *out)
{
    pthread_mutex_lock(&b->stats_lock);
    *out = b->stats;
    pthread_mutex_unlock(&b->stats_lock);
}

/* ---- completion ------------------------------------------------------- */

static void blk_push_done(struct block_backend *b, struct blk_req *r, int ret)
{
    r->priv.ret = ret;
    r->priv.next = NULL;
    pthread_mutex_lock(&b->done_lock);
    if (b->done_tail)
        b->done_tail->priv.next = r;
    else
        b->done_head = r;
    b->done_tail = r;
    pthread_mutex_unlock(&b->done_lock);
}

static void blk_kick(struct block_backend *b)
{
    uint64_t one = 1;
    ssize_t n = write(b->efd, &one, sizeof one);
    (void)n;    /* EAGAIN: counter saturated, a wake-up is pending anyway */
}

/* From any thread: r is finished; its callback runs on the loop. */
static void blk_complete_later(struct block_backend *b, struct blk_req *r, int ret)
{
    blk_push_done(b, r, ret);
    blk_kick(b);
}

static struct blk_req *blk_pop_done(struct block_backend *b)
{
    pthread_mutex_lock(&b->done_lock);
    struct blk_req *r = b->done_head;
    if (r) {
        b->done_head = r->priv.next;
        if (!b->done_head)
            b->done_tail = NULL;
    }
    pthread_mutex_unlock(&b->done_lock);
    return r;
}

static bool blk_is_write(const struct blk_req *r)
{
    return r->op == BLK_OP_WRITE || r->op == BLK_OP_WRITE_ZEROES || r->op == BLK_OP_DISCARD;
}

static void blk_dispatch(struct block_backend *b, struct blk_req *r);

static void blk_writes_unlink(struct block_backend *b, struct blk_req *r)
{
    if (r->priv.wprev)
        r->priv.wprev->priv.wnext = r->priv.wnext;
    else
        b->writes_head = r->priv.wnext;
    if (r->priv.wnext)
        r->priv.wnext->priv.wprev = r->priv.wprev;
    else
        b->writes_tail = r->priv.wprev;
    r->priv.wnext = r->priv.wprev = NULL;
}

/* Flushes whose earlier writes have all completed may go now. */
static void blk_release_flushes(struct block_backend *b)
{
    while (b->flush_head &&
           (!b->writes_head || b->writes_head->priv.seq > b->flush_head->priv.seq)) {
        struct blk_req *f = b->flush_head;
        b->flush_head = f->priv.next;
        if (!b->flush_head)
            b->flush_tail = NULL;
        blk_dispatch(b, f);
    }
}

static void blk_finish(struct block_backend *b, struct blk_req *r)
{
    if (r->priv.bounce) {
        if (r->op == BLK_OP_READ && r->priv.ret == 0)
            iov_from_buf(r->iov, r->iovcnt, 0, r->priv.bounce, r->len);
        free(r->priv.bounce);
        r->priv.bounce = NULL;
    }
    if (blk_is_write(r) && r->priv.seq) {
        blk_writes_unlink(b, r);
        blk_release_flushes(b);
    }
    b->in_flight--;
    if (r->priv.start_ns)
        blk_account_done(b, r, r->priv.ret);
    /* Last touch of r: the callback may free or resubmit it. */
    r->done(r, r->priv.ret);
}

static void blk_uring_complete_cb(void *opaque, struct blk_req *r, int ret)
{
    blk_push_done(opaque, r, ret);
}

static void blk_work(void *opaque, struct blk_req *r);

static void blk_uring_resubmit_cb(void *opaque, struct blk_req *r)
{
    struct block_backend *b = opaque;
    blk_pool_submit(b->pool, r);
}

/* Loop thread: collect and run whatever has finished. */
static void blk_process(struct block_backend *b)
{
    uint64_t v;
    /* Read the counter first: anything finishing after this bumps it again,
     * so the next epoll_wait/poll does not miss it. */
    ssize_t n = read(b->efd, &v, sizeof v);
    (void)n;
    if (b->uring)
        blk_uring_reap(b->uring, blk_uring_complete_cb, blk_uring_resubmit_cb, b);
    struct blk_req *r;
    /* One at a time, not a detached batch: a callback that drains (device
     * reset) must find the remaining completions on the list. */
    while ((r = blk_pop_done(b)))
        blk_finish(b, r);
}

static void blk_on_event(void *opaque, int fd, uint32_t events)
{
    blk_process(opaque);
}

/* ---- execution -------------------------------------------------------- */

/* Worker: the synchronous part of a request. */
static int blk_exec(struct block_backend *b, struct blk_req *r)
{
    switch (r->op) {
    case BLK_OP_READ:
    case BLK_OP_WRITE: {
        const struct iovec *iov = r->priv.iov;
        unsigned cnt = r->priv.iovcnt;
        uint64_t skip = r->priv.done_bytes;
        struct iovec *sub = NULL;
        if (skip) {     /* the rest of a short io_uring transfer */
            sub = malloc(cnt * sizeof *sub);
            if (!sub)
                return -ENOMEM;
            cnt = iov_slice(iov, cnt, skip, r->len - skip, sub, cnt);
            iov = sub;
        }
        uint64_t off = r->offset + skip, len = r->len - skip;
        int ret;
        if (r->op == BLK_OP_READ)
            ret = b->snap ? blk_snapshot_preadv(b->snap, off, iov, cnt, len)
                          : b->drv->preadv(b->drv_state, off, iov, cnt, len);
        else
            ret = b->snap ? blk_snapshot_pwritev(b->snap, off, iov, cnt, len)
                          : b->drv->pwritev(b->drv_state, off, iov, cnt, len);
        free(sub);
        return ret;
    }
    case BLK_OP_FLUSH:
        return b->drv->flush(b->drv_state);
    case BLK_OP_DISCARD:
    case BLK_OP_WRITE_ZEROES: {
        int ret;
        if (b->snap)    /* discard is advisory: the overlay keeps the data */
            return r->op == BLK_OP_DISCARD
                       ? 0 : blk_snapshot_write_zeroes(b->snap, r->offset, r->len);
        ret = r->op == BLK_OP_DISCARD ? b->drv->discard(b->drv_state, r->offset, r->len)
                                      : b->drv->write_zeroes(b->drv_state, r->offset, r->len);
        /* O_DSYNC covers write(2), not fallocate/ioctl: writethrough needs
         * its flush here. */
        if (ret == 0 && b->dsync)
            ret = b->drv->flush(b->drv_state);
        return ret;
    }
    }
    return -EINVAL;
}

static void blk_work(void *opaque, struct blk_req *r)
{
    struct block_backend *b = opaque;
    blk_complete_later(b, r, blk_exec(b, r));
}

/* Loop thread: hand a validated request to an engine. */
static void blk_dispatch(struct block_backend *b, struct blk_req *r)
{
    if (r->op == BLK_OP_FLUSH && (b->cache == BLK_CACHE_UNSAFE || b->read_only || b->snap)) {
        /* unsafe: QEMU ignores flushes; read-only and snapshot overlays
         * have nothing worth persisting. */
        blk_complete_later(b, r, 0);
        return;
    }
    bool ring_ok = b->uring &&
                   (r->op == BLK_OP_FLUSH ||
                    ((r->op == BLK_OP_READ || r->op == BLK_OP_WRITE) &&
                     r->priv.iovcnt <= IOV_MAX &&
                     blk_file_aligned(&b->file, r->offset, r->len, r->priv.iov, r->priv.iovcnt)));
    if (ring_ok)
        blk_uring_submit(b->uring, r);
    else
        blk_pool_submit(b->pool, r);   /* incl. unaligned O_DIRECT: file.c bounces */
}

/* A probed raw image must not become another format through a guest write
 * to block 0 (QEMU raw_co_pwritev): check a private copy of the new block
 * 0 (the guest could change its buffer after the check) and write that. */
static int blk_guard_block0(struct block_backend *b, struct blk_req *r)
{
    if (r->offset != 0 || r->len < BLK_PROBE_SIZE) {
        /* QEMU requires 512-byte aligned writes here for the same reason:
         * a partial write cannot be checked without a racy read. */
        log_ratelimited(&b->rl, LOG_WARN, "'%s': unaligned write to block 0 of a probed raw "
                        "image refused; specify format=raw", b->filename);
        return -EPERM;
    }
    void *buf = NULL;
    if (r->len > SIZE_MAX || posix_memalign(&buf, 4096, (size_t)r->len))
        return -ENOMEM;
    iov_to_buf(r->iov, r->iovcnt, 0, buf, r->len);
    const char *fmt = blk_probe_format(buf, BLK_PROBE_SIZE);
    if (fmt) {
        log_ratelimited(&b->rl, LOG_WARN, "'%s': guest write of a %s header to block 0 of a "
                        "probed raw image refused; specify format=raw to allow it",
                        b->filename, fmt);
        free(buf);
        return -EPERM;
    }
    r->priv.bounce = buf;
    r->priv.bounce_iov = (struct iovec){ buf, (size_t)r->len };
    r->priv.iov = &r->priv.bounce_iov;
    r->priv.iovcnt = 1;
    return 0;
}

void blk_submit(struct block_backend *b, struct blk_req *r)
{
    memset(&r->priv, 0, sizeof r->priv);
    r->priv.iov = r->iov;
    r->priv.iovcnt = r->iovcnt;
    b->in_flight++;

    int ret = 0;
    switch (r->op) {
    case BLK_OP_READ:
    case BLK_OP_WRITE:
        if (iov_size(r->iov, r->iovcnt) != r->len)
            ret = -EINVAL;
        /* fall through */
    case BLK_OP_DISCARD:
    case BLK_OP_WRITE_ZEROES:
        if (!ret && (r->offset > b->length || r->len > b->length - r->offset))
            ret = -EIO;
        break;
    case BLK_OP_FLUSH:
        break;
    default:
        ret = -EINVAL;
        break;
    }
    /* Malformed requests are "invalid" in the statistics (QEMU's
     * block_acct_invalid); everything else is timed until it completes. */
    if (ret)
        blk_account_invalid(b, r->op);
    else
        r->priv.start_ns = blk_now_ns();
    if (!ret && r->op != BLK_OP_READ && r->op != BLK_OP_FLUSH && b->read_only)
        ret = -EROFS;
    if (!ret && r->op == BLK_OP_WRITE && b->probed_raw && r->offset < BLK_PROBE_SIZE && r->len)
        ret = blk_guard_block0(b, r);
    if (ret || ((r->op != BLK_OP_FLUSH) && r->len == 0) ||
        (r->op == BLK_OP_DISCARD && !b->discard)) {
        /* Errors, empty requests and discard=ignore complete at once, but
         * through the loop like everything else. */
        blk_complete_later(b, r, ret);
        return;
    }

    if (blk_is_write(r)) {
        r->priv.seq = ++b->write_seq;
        r->priv.wprev = b->writes_tail;
        if (b->writes_tail)
            b->writes_tail->priv.wnext = r;
        else
            b->writes_head = r;
        b->writes_tail = r;
    } else if (r->op == BLK_OP_FLUSH && b->writes_head) {
        /* Wait for the writes submitted before it: a guest that submitted a
         * write and then a flush expects the flush to cover the write even
         * if it has not completed yet (QEMU gets this from draining its
         * tracked requests in bdrv_co_flush). */
        r->priv.seq = b->write_seq;
        if (b->flush_tail)
            b->flush_tail->priv.next = r;
        else
            b->flush_head = r;
        b->flush_tail = r;
        return;
    }
    blk_dispatch(b, r);
}

void blk_drain(struct block_backend *b)
{
    for (;;) {
        blk_process(b);
        if (!b->in_flight)
            return;
        /* The timeout only matters if io_uring_submit once failed with
         * EAGAIN while nothing else was in the kernel: the next
         * blk_process retries the submission. */
        struct pollfd p = { .fd = b->efd, .events = POLLIN };
        if (poll(&p, 1, 1000) < 0 && errno != EINTR)
            return;     /* cannot happen with a valid fd; do not spin */
    }
}

unsigned blk_in_flight(const struct block_backend *b) { return b->in_flight; }

/* ---- open/close -------------------------------------------------------- */

static const char *blk_cache_name(enum blk_cache_mode c)
{
    static const char *const names[] = { "writeback", "none", "writethrough", "directsync",
                                         "unsafe" };
    return (unsigned)c < 5 ? names[c] : "?";
}

struct block_backend *blk_open(const struct blk_options *o, struct loop *completion_loop,
                               char *err, unsigned errlen)
{
    if (!o->filename || !*o->filename) {
        snprintf(err, errlen, "a drive needs a file name (file=)");
        return NULL;
    }
    if ((unsigned)o->cache > BLK_CACHE_UNSAFE || (unsigned)o->aio > BLK_AIO_IO_URING) {
        snprintf(err, errlen, "'%s': invalid cache or aio mode", o->filename);
        return NULL;
    }
    const struct block_driver *drv = &blk_driver_raw;
    if (o->format) {
        drv = blk_driver_find(o->format);
        if (!drv) {
            snprintf(err, errlen, "'%s' invalid format (kvmbox knows: raw, qcow2)", o->format);
            return NULL;
        }
    }

    struct block_backend *b = calloc(1, sizeof *b);
    if (!b || !(b->filename = strdup(o->filename))) {
        snprintf(err, errlen, "'%s': out of memory", o->filename);
        free(b);
        return NULL;
    }
    b->efd = -1;
    b->file.fd = -1;
    b->loop = completion_loop;
    b->drv = drv;
    b->cache = o->cache;
    b->read_only = o->read_only;
    b->discard = o->discard;
    b->rl = (struct log_ratelimit)LOG_RATELIMIT_INIT;
    pthread_mutex_init(&b->done_lock, NULL);
    pthread_mutex_init(&b->stats_lock, NULL);
    bool loop_added = false;

    bool direct = o->cache == BLK_CACHE_NONE || o->cache == BLK_CACHE_DIRECTSYNC;
    b->dsync = (o->cache == BLK_CACHE_WRITETHROUGH || o->cache == BLK_CACHE_DIRECTSYNC);
    unsigned flags = (direct ? BLK_FILE_DIRECT : 0) |
                     /* snapshot=on never writes the image (QEMU opens the
                      * base of its temporary overlay read-only too) */
                     ((o->read_only || o->snapshot) ? BLK_FILE_RDONLY : 0) |
                     (b->dsync && !o->read_only && !o->snapshot ? BLK_FILE_DSYNC : 0);
    if (blk_file_open(&b->file, o->filename, flags, err, errlen) < 0)
        goto fail;

    if (!o->format) {
        uint8_t head[BLK_PROBE_SIZE];
        int r = blk_file_pread(&b->file, 0, head, sizeof head);
        if (r < 0) {
            snprintf(err, errlen, "Could not read '%s' to probe its format: %s", o->filename,
                     strerror(-r));
            goto fail;
        }
        const char *fmt = blk_probe_format(head, sizeof head);
        const struct block_driver *probed = fmt ? blk_driver_find(fmt) : NULL;
        if (probed) {
            /* A format with a header (qcow2) is safe to detect; only raw
             * is never guessed for something else. */
            drv = b->drv = probed;
        } else if (fmt) {
            snprintf(err, errlen, "'%s' is a %s image, which kvmbox does not read — or pass "
                     "format=raw to use the bytes as a raw disk", o->filename, fmt);
            goto fail;
        } else {
            /* QEMU's words, so users and scripts recognise them. */
            log_warn(blk_probed_raw_warning, o->filename);
            b->probed_raw = !o->read_only;
        }
    }

    /* QEMU's image locks: a guest device's; snapshot=on reads the image
     * only as the base of its overlay, as a backing file (sharing all). */
    unsigned perm, deny;
    blk_perms_for(drv->format, !(o->read_only || o->snapshot), true, &perm, &deny);
    if (o->snapshot)
        deny = 0;
    char lerr[600];
    if (!o->no_locking && blk_file_lock(&b->file, perm, deny, o->filename, lerr, sizeof lerr) < 0) {
        /* QEMU's two lines as one: "...lock: Is another process using ..." */
        char *nl = strchr(lerr, '\n');
        if (nl)
            *nl = 0;
        snprintf(err, errlen, "%s%s%s", lerr, nl ? ": " : "", nl ? nl + 1 : "");
        goto fail;
    }
    if (drv->open(&b->drv_state, &b->file, o->read_only || o->snapshot, &o->fmt, err, errlen) < 0)
        goto fail;
    b->length = drv->length(b->drv_state);

    if (o->snapshot) {
        b->snap = blk_snapshot_new(drv, b->drv_state, b->length, err, errlen);
        if (!b->snap)
            goto fail_drv;
    }

    b->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (b->efd < 0) {
        snprintf(err, errlen, "'%s': eventfd: %s", o->filename, strerror(errno));
        goto fail_drv;
    }
    int r = loop_add_fd(completion_loop, b->efd, EPOLLIN, blk_on_event, b);
    if (r < 0) {
        snprintf(err, errlen, "'%s': cannot watch completions: %s", o->filename, strerror(-r));
        goto fail_drv;
    }
    loop_added = true;
    b->pool = blk_pool_new(BLK_POOL_THREADS, "blk-worker", blk_work, b);
    if (!b->pool) {
        snprintf(err, errlen, "'%s': cannot start I/O worker threads", o->filename);
        goto fail_drv;
    }
    if (o->aio == BLK_AIO_IO_URING) {
        if (drv->maps_to_file && !o->snapshot) {
            b->uring = blk_uring_new(&b->file, b->efd, err, errlen);
            if (!b->uring)
                goto fail_drv;
        } else {
            /* The ring carries requests that map 1:1 onto the file; the
             * overlay's read-modify-writes are synchronous code. */
            log_info("'%s': aio=io_uring with snapshot=on or format=%s uses the worker "
                     "threads", o->filename, drv->format);
        }
    }
    log_debug("'%s': %s, cache=%s%s, %" PRIu64 " bytes, block size %u, %s%s%s", o->filename,
              drv->format, blk_cache_name(o->cache), direct ? " (O_DIRECT)" : "", b->length,
              b->file.lbs, b->uring ? "io_uring" : "threads", o->read_only ? ", read-only" : "",
              o->snapshot ? ", snapshot" : "");
    return b;

fail_drv:
    blk_pool_free(b->pool);
    if (loop_added)
        loop_del_fd(completion_loop, b->efd);
    if (b->efd >= 0)
        close(b->efd);
    blk_snapshot_free(b->snap);
    drv->close(b->drv_state);
fail:
    blk_file_close(&b->file);
    pthread_mutex_destroy(&b->done_lock);
    pthread_mutex_destroy(&b->stats_lock);
    free(b->filename);
    free(b);
    return NULL;
}

void blk_close(struct block_backend *b)
{
    if (!b)
        return;
    blk_drain(b);
    loop_del_fd(b->loop, b->efd);
    blk_pool_free(b->pool);
    blk_uring_free(b->uring);
    close(b->efd);
    blk_snapshot_free(b->snap);     /* closing the unlinked overlay frees its blocks */
    b->drv->close(b->drv_state);
    blk_file_close(&b->file);
    pthread_mutex_destroy(&b->done_lock);
    pthread_mutex_destroy(&b->stats_lock);
    free(b->filename);
    free(b);
}

uint64_t blk_length(const struct block_backend *b) { return b->length; }
const char *blk_format(const struct block_backend *b) { return b->drv->format; }
bool blk_read_only(const struct block_backend *b) { return b->read_only; }

bool blk_write_cache(const struct block_backend *b)
{
    return b->cache != BLK_CACHE_WRITETHROUGH && b->cache != BLK_CACHE_DIRECTSYNC;
}

uint32_t blk_logical_block_size(const struct block_backend *b) { return b->file.lbs; }
