/* Block back ends: an image format driver (raw today, qcow2 later) under an
 * I/O engine (aio=threads: a worker pool running the driver's synchronous
 * calls; aio=io_uring: liburing for drivers that map requests straight to
 * file offsets, i.e. raw), with QEMU's cache modes and snapshot=on.
 *
 * Threads: blk_open, blk_submit, blk_drain and blk_close run on the thread
 * of the completion loop given at open (the device's I/O thread), or while
 * that loop is not running (set-up, tear-down, tests). Completions (the
 * requests' done callbacks) run on that same thread, never on a worker and
 * never inside blk_submit itself, so a device may hold its own lock while
 * submitting. Drivers' sync calls run on workers, several at once: a driver
 * serialises what it must itself (qcow2 metadata).
 *
 * Ordering: requests complete in any order, except that a FLUSH completes
 * only after every WRITE/WRITE_ZEROES/DISCARD submitted before it has
 * completed (and is then durable, cache mode permitting).
 *
 * Range: every request must lie inside [0, blk_length()); one that does not
 * completes with -EIO (QEMU's blk_check_byte_request). Reads of a host file
 * shorter than the image length (a file shrunk under us) read zeros. */
#ifndef KVMBOX_BLOCK_H
#define KVMBOX_BLOCK_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

struct loop;
struct block_backend;

enum blk_cache_mode {
    BLK_CACHE_WRITEBACK,        /* default: page cache, flush on guest flush; WCE=1 */
    BLK_CACHE_NONE,             /* O_DIRECT, flush on guest flush; WCE=1 */
    BLK_CACHE_WRITETHROUGH,     /* page cache, every write durable before it completes; WCE=0 */
    BLK_CACHE_DIRECTSYNC,       /* O_DIRECT + writethrough; WCE=0 */
    BLK_CACHE_UNSAFE,           /* page cache, flushes ignored; WCE=1 */
};

enum blk_aio { BLK_AIO_THREADS, BLK_AIO_IO_URING };

/* -drive options that belong to one image format (QEMU's names). */
struct blk_format_options {
    uint64_t l2_cache_size;         /* qcow2 l2-cache-size= bytes; 0: default */
    uint64_t refcount_cache_size;   /* qcow2 refcount-cache-size= bytes; 0: default */
};

struct blk_options {
    const char *filename;
    const char *format;         /* "raw"; NULL: probe (a raw image is never guessed as another format) */
    enum blk_cache_mode cache;
    enum blk_aio aio;
    bool read_only;
    bool snapshot;              /* writes go to a temporary overlay dropped at exit */
    bool discard;               /* discard=unmap: pass discards down (else they succeed as no-ops) */
    bool no_locking;            /* file.locking=off: no image locks (lock.c) */
    struct blk_format_options fmt;
};

enum blk_op { BLK_OP_READ, BLK_OP_WRITE, BLK_OP_FLUSH, BLK_OP_DISCARD, BLK_OP_WRITE_ZEROES };

struct blk_req {
    enum blk_op op;
    uint64_t offset, len;       /* bytes; len for READ/WRITE = iov total */
    struct iovec *iov;
    unsigned iovcnt;
    /* Called once on the completion loop: ret 0 or -errno. */
    void (*done)(struct blk_req *r, int ret);
    void *opaque;

    /* Owned by the block layer from blk_submit until done is called; the
     * caller neither reads nor initialises it. Embedding it saves an
     * allocation per request (and with it an error path that could not
     * report through done). */
    struct {
        struct blk_req *next;           /* engine queue, deferred flushes, done list */
        struct blk_req *wnext, *wprev;  /* writes in flight, in submission order */
        int ret;
        uint64_t seq;                   /* writes: submission number; flushes: last write before */
        const struct iovec *iov;        /* what the engines transfer: caller's or bounce */
        unsigned iovcnt;
        void *bounce;                   /* aligned copy (O_DIRECT, probed-raw block 0 guard) */
        struct iovec bounce_iov;
        uint64_t done_bytes;            /* io_uring: transferred before a short completion */
        uint64_t start_ns;              /* accounting: submission time; 0: counted as invalid */
    } priv;
};

/* Open with the options; completions run on `completion_loop` (its fd is
 * registered from this call: call it on that loop's thread or before the
 * loop runs). NULL with a one-line reason in err (naming the file and what
 * is wrong). A probed raw image logs QEMU's warning. */
struct block_backend *blk_open(const struct blk_options *o, struct loop *completion_loop,
                               char *err, unsigned errlen);
void blk_close(struct block_backend *b);   /* drains in-flight requests first */
uint64_t blk_length(const struct block_backend *b);
bool blk_read_only(const struct block_backend *b);
/* Does the guest see a volatile write cache (virtio-blk WCE)? */
bool blk_write_cache(const struct block_backend *b);
/* The host's logical block size (BLKSSZGET for block devices, the O_DIRECT
 * offset alignment for files with cache=none/directsync, else 512). Requests
 * need not be aligned to it; unaligned ones cost a read-modify-write. */
uint32_t blk_logical_block_size(const struct block_backend *b);
/* Queue a request; its done callback always runs exactly once, later, on the
 * completion loop (also on error). */
void blk_submit(struct block_backend *b, struct blk_req *r);
/* Drain: wait until every submitted request has completed, running their
 * done callbacks on the calling thread (the completion loop's: reset paths
 * call this from inside a loop callback, which is why it does not wait for
 * the loop). */
void blk_drain(struct block_backend *b);
/* Requests submitted and not yet completed (tests, debugging). */
unsigned blk_in_flight(const struct block_backend *b);
/* The format driver in use ("raw", "qcow2"), also when it was probed. */
const char *blk_format(const struct block_backend *b);

/* I/O accounting for query-blockstats, with QEMU's BlockAcctStats meaning
 * (account_invalid=on, account_failed=on): a request is counted when it
 * completes, successfully (ops, bytes) or not (failed_ops), both adding its
 * latency to total_time_ns; one refused at submission as malformed (out of
 * range, iovec/length mismatch) counts in invalid_ops only. WRITE_ZEROES
 * counts as a write, DISCARD as an unmap (also with discard=ignore). Updated
 * on the completion loop; blk_get_stats may be called from any thread and
 * returns a consistent snapshot. */
enum blk_acct_type { BLK_ACCT_READ, BLK_ACCT_WRITE, BLK_ACCT_FLUSH, BLK_ACCT_UNMAP,
                     BLK_ACCT_NR };
struct blk_stats {
    uint64_t bytes[BLK_ACCT_NR];
    uint64_t ops[BLK_ACCT_NR];
    uint64_t failed_ops[BLK_ACCT_NR];
    uint64_t invalid_ops[BLK_ACCT_NR];
    uint64_t total_time_ns[BLK_ACCT_NR];
    uint64_t wr_highest_offset;     /* end of the furthest successful write-type request */
    uint64_t last_access_ns;        /* CLOCK_MONOTONIC of the last accounted event; 0: none */
};
void blk_get_stats(struct block_backend *b, struct blk_stats *out);

#endif
