/* Inside the block layer: the host file (file.c), the format driver table
 * (raw.c, qcow2 later), the snapshot overlay (snapshot.c), the engines
 * (thread_pool.c, io_uring.c) and their glue (block.c). Not for devices. */
#ifndef KVMBOX_BLOCK_INT_H
#define KVMBOX_BLOCK_INT_H

#include "block/block.h"
#include "core/iov.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* ---- host file (file.c) ---------------------------------------------- */

/* A regular file or a host block device. All calls are thread-safe and run
 * on pool workers: plain pread/pwrite on one fd, plus a mutex that
 * serialises the read-modify-writes O_DIRECT needs for unaligned writes. */
struct blk_file {
    int fd;
    bool is_blockdev;
    bool direct;                /* opened with O_DIRECT */
    bool read_only;
    uint64_t size;              /* at open: BLKGETSIZE64 or st_size */
    uint32_t lbs;               /* logical block size (BLKSSZGET / O_DIRECT offset alignment / 512) */
    uint32_t mem_align;         /* O_DIRECT buffer alignment (1 without O_DIRECT) */
    uint32_t off_align;         /* O_DIRECT offset/length alignment (1 without O_DIRECT) */
    pthread_mutex_t rmw_lock;
};

enum { BLK_FILE_RDONLY = 1, BLK_FILE_DIRECT = 2, BLK_FILE_DSYNC = 4 };

/* 0 or -errno with QEMU's "Could not open 'X': reason" in err. */
int blk_file_open(struct blk_file *f, const char *filename, unsigned flags,
                  char *err, unsigned errlen);
void blk_file_close(struct blk_file *f);
/* Whole transfers: 0 or -errno. Reads past EOF read zeros (QEMU pads short
 * reads). Any alignment is accepted: with O_DIRECT, unaligned requests are
 * bounced (reads widened, writes read-modify-written under rmw_lock). */
int blk_file_preadv(struct blk_file *f, uint64_t off, const struct iovec *iov,
                    unsigned cnt, uint64_t len);
int blk_file_pwritev(struct blk_file *f, uint64_t off, const struct iovec *iov,
                     unsigned cnt, uint64_t len);
int blk_file_pread(struct blk_file *f, uint64_t off, void *buf, uint64_t len);
int blk_file_pwrite(struct blk_file *f, uint64_t off, const void *buf, uint64_t len);
int blk_file_flush(struct blk_file *f);
int blk_file_discard(struct blk_file *f, uint64_t off, uint64_t len);
int blk_file_write_zeroes(struct blk_file *f, uint64_t off, uint64_t len);
/* Image locks, QEMU's (lock.c): what this user does with the image and
 * what it does not let others do. */
enum blk_perm {
    BLK_PERM_CONSISTENT_READ = 1,
    BLK_PERM_WRITE = 2,
    BLK_PERM_WRITE_UNCHANGED = 4,
    BLK_PERM_RESIZE = 8,
};
/* Lock f for `perm`, denying `deny` to others. 0; -EAGAIN when another
 * user conflicts, with QEMU's two-line message ("Failed to get \"write\"
 * lock" / "Is another process using the image [name]?") in err; another
 * -errno with a reason. No-op where the file system has no OFD locks. */
int blk_file_lock(struct blk_file *f, unsigned perm, unsigned deny, const char *name,
                  char *err, unsigned errlen);
/* The locks a format's user takes (QEMU's): qcow2 keeps its metadata
 * consistent only without other writers or resizers; on a raw image only
 * `raw_exclusive` users (a guest's disk, a convert source) deny writing,
 * other tools share it. */
void blk_perms_for(const char *format, bool write, bool raw_exclusive, unsigned *perm,
                   unsigned *deny);

/* Can this request go to the kernel as is (O_DIRECT alignment)? */
bool blk_file_aligned(const struct blk_file *f, uint64_t off, uint64_t len,
                      const struct iovec *iov, unsigned cnt);

/* ---- format drivers ---------------------------------------------------- */

/* Synchronous operations, run on pool workers (several at once). Each
 * returns 0 or -errno and transfers everything it was asked to. */
struct block_driver {
    const char *format;
    /* The driver reads its image from `file` (owned by the caller, which
     * closes it after close()). `fo`: format options (NULL: defaults); a
     * driver refuses the ones it does not have, as QEMU does. */
    int (*open)(void **state, struct blk_file *file, bool read_only,
                const struct blk_format_options *fo, char *err, unsigned errlen);
    int (*preadv)(void *s, uint64_t off, const struct iovec *iov, unsigned cnt, uint64_t len);
    int (*pwritev)(void *s, uint64_t off, const struct iovec *iov, unsigned cnt, uint64_t len);
    int (*flush)(void *s);
    int (*discard)(void *s, uint64_t off, uint64_t len);
    int (*write_zeroes)(void *s, uint64_t off, uint64_t len);
    uint64_t (*length)(void *s);
    void (*close)(void *s);
    /* Guest offsets are host file offsets (raw): io_uring may bypass the
     * driver and issue the request on the file directly. */
    bool maps_to_file;
};

extern const struct block_driver blk_driver_raw;
/* The table formats are looked up in (format=NAME). NULL-terminated. */
const struct block_driver *blk_driver_find(const char *format);

/* ---- snapshot=on overlay (snapshot.c) --------------------------------- */

struct blk_snapshot;
/* Over a driver state (opened read-only): writes go to a sparse unlinked
 * temp file in $TMPDIR (else /var/tmp), clusters tracked in a bitmap. */
struct blk_snapshot *blk_snapshot_new(const struct block_driver *drv, void *drv_state,
                                      uint64_t length, char *err, unsigned errlen);
void blk_snapshot_free(struct blk_snapshot *s);
int blk_snapshot_preadv(struct blk_snapshot *s, uint64_t off, const struct iovec *iov,
                        unsigned cnt, uint64_t len);
int blk_snapshot_pwritev(struct blk_snapshot *s, uint64_t off, const struct iovec *iov,
                         unsigned cnt, uint64_t len);
int blk_snapshot_write_zeroes(struct blk_snapshot *s, uint64_t off, uint64_t len);

/* ---- worker pool (thread_pool.c) --------------------------------------- */

struct blk_pool;
/* `nthreads` workers each call work(opaque, r) for queued requests, in
 * submission order of pick-up (completion order is the work function's). */
struct blk_pool *blk_pool_new(unsigned nthreads, const char *name,
                              void (*work)(void *opaque, struct blk_req *r), void *opaque);
void blk_pool_submit(struct blk_pool *p, struct blk_req *r);
/* Joins the workers; the queue must be empty (the backend drained). */
void blk_pool_free(struct blk_pool *p);

/* ---- io_uring engine (io_uring.c) ---------------------------------------- */

struct blk_uring;
/* Completion readiness is signalled on `efd` (the backend's completion
 * eventfd). NULL with "aio=io_uring: io_uring is not available (...)". */
struct blk_uring *blk_uring_new(struct blk_file *f, int efd, char *err, unsigned errlen);
void blk_uring_free(struct blk_uring *u);
/* READ/WRITE/FLUSH on the file. Completed requests are passed to
 * complete(opaque, r, ret); a short transfer's remainder goes to
 * resubmit(opaque, r) (the worker pool) with r->priv.done_bytes set. */
void blk_uring_submit(struct blk_uring *u, struct blk_req *r);
void blk_uring_reap(struct blk_uring *u, void (*complete)(void *, struct blk_req *, int),
                    void (*resubmit)(void *, struct blk_req *), void *opaque);
unsigned blk_uring_in_flight(const struct blk_uring *u);

/* ---- probing (probe.c) ------------------------------------------------- */

enum { BLK_PROBE_SIZE = 512 };
/* The name of the image format whose magic starts `buf` (BLK_PROBE_SIZE
 * bytes), or NULL for none, i.e. raw. */
const char *blk_probe_format(const uint8_t *buf, size_t len);
/* QEMU's warning (a printf format taking the file name) when a raw image
 * opened for writing had its format probed; block 0 is then guarded. */
extern const char blk_probed_raw_warning[];

#endif
