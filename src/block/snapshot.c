/* snapshot=on: the image is opened read-only and every write goes to a
 * sparse, already-unlinked temporary file of the same size, so the writes
 * vanish when kvmbox exits, however it exits. A bitmap with one bit per
 * 64 KiB cluster says which clusters live in the overlay.
 *
 * Concurrency (several workers at once): bits only ever go 0 -> 1, and a
 * bit is set only after its cluster's data is in the overlay, so a reader
 * that sees 1 reads the overlay and one that sees 0 reads the untouched
 * base. First writes to a cluster (copy the base cluster, merge, write,
 * set the bit) are serialised by alloc_lock so two partial writes to one
 * cluster do not lose each other's bytes; writes to allocated clusters go
 * straight to the overlay.
 *
 * Why not a qcow2 overlay as QEMU: qcow2 arrives in the next issue; this
 * keeps snapshot=on independent of it. The overlay uses the page cache and
 * is never fsynced: its data is thrown away anyway. */
#include "block/block_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { SNAP_CLUSTER = 64 * 1024 };

struct blk_snapshot {
    const struct block_driver *drv;
    void *drv_state;
    uint64_t length;
    struct blk_file overlay;
    pthread_mutex_t alloc_lock;
    _Atomic uint64_t *bitmap;
};

static int snap_tmpfile(char *err, unsigned errlen)
{
    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir)
        dir = "/var/tmp";   /* QEMU's default: large images do not fit a tmpfs /tmp */
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0)
        return fd;
    /* File systems without O_TMPFILE: create and unlink at once. */
    char path[4096];
    snprintf(path, sizeof path, "%s/kvmbox-snapshot-XXXXXX", dir);
    fd = mkostemp(path, O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "snapshot=on: cannot create a temporary overlay in '%s': %s "
                 "(set TMPDIR to a writable directory)", dir, strerror(e));
        return -e;
    }
    unlink(path);
    return fd;
}

struct blk_snapshot *blk_snapshot_new(const struct block_driver *drv, void *drv_state,
                                      uint64_t length, char *err, unsigned errlen)
{
    struct blk_snapshot *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "snapshot=on: out of memory");
        return NULL;
    }
    uint64_t nclusters = (length + SNAP_CLUSTER - 1) / SNAP_CLUSTER;
    s->bitmap = calloc((nclusters + 63) / 64 + 1, sizeof *s->bitmap);
    int fd = s->bitmap ? snap_tmpfile(err, errlen) : -ENOMEM;
    if (fd < 0) {
        if (fd == -ENOMEM)
            snprintf(err, errlen, "snapshot=on: out of memory");
        free(s->bitmap);
        free(s);
        return NULL;
    }
    if (ftruncate(fd, (off_t)length) < 0) {
        snprintf(err, errlen, "snapshot=on: cannot size the temporary overlay: %s",
                 strerror(errno));
        close(fd);
        free(s->bitmap);
        free(s);
        return NULL;
    }
    s->overlay = (struct blk_file){ .fd = fd, .size = length, .lbs = 512,
                                    .mem_align = 1, .off_align = 1 };
    pthread_mutex_init(&s->overlay.rmw_lock, NULL);
    pthread_mutex_init(&s->alloc_lock, NULL);
    s->drv = drv;
    s->drv_state = drv_state;
    s->length = length;
    return s;
}

void blk_snapshot_free(struct blk_snapshot *s)
{
    if (!s)
        return;
    blk_file_close(&s->overlay);
    pthread_mutex_destroy(&s->alloc_lock);
    free(s->bitmap);
    free(s);
}

static bool snap_allocated(struct blk_snapshot *s, uint64_t cluster)
{
    return atomic_load(&s->bitmap[cluster / 64]) & (1ull << (cluster % 64));
}

static void snap_set_allocated(struct blk_snapshot *s, uint64_t cluster)
{
    atomic_fetch_or(&s->bitmap[cluster / 64], 1ull << (cluster % 64));
}

int blk_snapshot_preadv(struct blk_snapshot *s, uint64_t off, const struct iovec *iov,
                        unsigned cnt, uint64_t len)
{
    struct iovec *sub = malloc((cnt ? cnt : 1) * sizeof *sub);
    if (!sub)
        return -ENOMEM;
    int ret = 0;
    uint64_t done = 0;
    /* One read per run of clusters with the same home. */
    while (done < len && ret == 0) {
        uint64_t pos = off + done;
        bool in_overlay = snap_allocated(s, pos / SNAP_CLUSTER);
        uint64_t end = (pos / SNAP_CLUSTER + 1) * SNAP_CLUSTER;
        while (end < off + len && snap_allocated(s, end / SNAP_CLUSTER) == in_overlay)
            end += SNAP_CLUSTER;
        if (end > off + len)
            end = off + len;
        unsigned n = iov_slice(iov, cnt, done, end - pos, sub, cnt);
        ret = in_overlay ? blk_file_preadv(&s->overlay, pos, sub, n, end - pos)
                         : s->drv->preadv(s->drv_state, pos, sub, n, end - pos);
        done += end - pos;
    }
    free(sub);
    return ret;
}

/* First write to a cluster: base contents + the new bytes, written whole. */
static int snap_alloc_write(struct blk_snapshot *s, uint64_t cluster, uint64_t pos,
                            const struct iovec *iov, unsigned cnt, uint64_t skip, uint64_t n)
{
    uint64_t cstart = cluster * SNAP_CLUSTER;
    uint64_t clen = s->length - cstart < SNAP_CLUSTER ? s->length - cstart : SNAP_CLUSTER;
    char *buf = malloc(SNAP_CLUSTER);
    if (!buf)
        return -ENOMEM;
    int ret = 0;
    pthread_mutex_lock(&s->alloc_lock);
    if (snap_allocated(s, cluster)) {
        /* Another worker got here first: the cluster is ours to write. */
        pthread_mutex_unlock(&s->alloc_lock);
        free(buf);
        struct iovec *sub = malloc((cnt ? cnt : 1) * sizeof *sub);
        if (!sub)
            return -ENOMEM;
        unsigned k = iov_slice(iov, cnt, skip, n, sub, cnt);
        ret = blk_file_pwritev(&s->overlay, pos, sub, k, n);
        free(sub);
        return ret;
    }
    if (pos != cstart || n != clen)
        ret = s->drv->preadv(s->drv_state, cstart,
                             &(struct iovec){ buf, (size_t)clen }, 1, clen);
    if (ret == 0) {
        iov_to_buf(iov, cnt, skip, buf + (pos - cstart), n);
        ret = blk_file_pwrite(&s->overlay, cstart, buf, clen);
    }
    if (ret == 0)
        snap_set_allocated(s, cluster);
    pthread_mutex_unlock(&s->alloc_lock);
    free(buf);
    return ret;
}

int blk_snapshot_pwritev(struct blk_snapshot *s, uint64_t off, const struct iovec *iov,
                         unsigned cnt, uint64_t len)
{
    struct iovec *sub = malloc((cnt ? cnt : 1) * sizeof *sub);
    if (!sub)
        return -ENOMEM;
    int ret = 0;
    uint64_t done = 0;
    while (done < len && ret == 0) {
        uint64_t pos = off + done;
        uint64_t cluster = pos / SNAP_CLUSTER;
        uint64_t end = (cluster + 1) * SNAP_CLUSTER;
        if (end > off + len)
            end = off + len;
        if (snap_allocated(s, cluster)) {
            unsigned n = iov_slice(iov, cnt, done, end - pos, sub, cnt);
            ret = blk_file_pwritev(&s->overlay, pos, sub, n, end - pos);
        } else {
            ret = snap_alloc_write(s, cluster, pos, iov, cnt, done, end - pos);
        }
        done += end - pos;
    }
    free(sub);
    return ret;
}

int blk_snapshot_write_zeroes(struct blk_snapshot *s, uint64_t off, uint64_t len)
{
    char *zeros = calloc(1, SNAP_CLUSTER);
    if (!zeros)
        return -ENOMEM;
    int ret = 0;
    while (len && ret == 0) {
        uint64_t n = SNAP_CLUSTER - off % SNAP_CLUSTER;
        if (n > len)
            n = len;
        struct iovec v = { zeros, (size_t)n };
        ret = blk_snapshot_pwritev(s, off, &v, 1, n);
        off += n;
        len -= n;
    }
    free(zeros);
    return ret;
}
