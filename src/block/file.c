/* The host file under every format: a regular file or a host block device,
 * with O_DIRECT alignment handled here so drivers and engines above can
 * pass any request. See block_int.h. */
#include "block/block_int.h"

#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>


/* ---- open ------------------------------------------------------------- */

/* O_DIRECT alignment of a regular file: statx(STATX_DIOALIGN) where the
 * kernel knows it (6.1+), else probe like QEMU's raw_probe_alignment: the
 * smallest power of two a direct read accepts; 4096 if nothing tells. */
static void file_probe_dio_align(struct blk_file *f)
{
    f->off_align = f->mem_align = 0;
#ifdef STATX_DIOALIGN
    struct statx stx;
    if (statx(f->fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
        (stx.stx_mask & STATX_DIOALIGN) && stx.stx_dio_offset_align) {
        f->off_align = stx.stx_dio_offset_align;
        f->mem_align = stx.stx_dio_mem_align ? stx.stx_dio_mem_align : 1;
    }
#endif
    if (!f->off_align) {
        void *buf = NULL;
        if (posix_memalign(&buf, 4096, 4096) == 0) {
            /* A read at EOF (empty file) may succeed for any size: then
             * nothing is learnt and the safe 4096 stays. */
            for (uint32_t a = 512; a <= 4096 && f->size >= 4096; a <<= 1) {
                if (pread(f->fd, buf, a, 0) >= 0) {
                    f->off_align = a;
                    break;
                }
            }
            free(buf);
        }
        if (!f->off_align)
            f->off_align = 4096;
        f->mem_align = f->off_align;
    }
    /* Bounce buffers are allocated with this; posix_memalign needs at least
     * pointer alignment. */
    if (f->mem_align < sizeof(void *))
        f->mem_align = sizeof(void *);
}

int blk_file_open(struct blk_file *f, const char *filename, unsigned flags,
                  char *err, unsigned errlen)
{
    memset(f, 0, sizeof *f);
    f->fd = -1;
    int oflags = O_CLOEXEC | ((flags & BLK_FILE_RDONLY) ? O_RDONLY : O_RDWR);
    if (flags & BLK_FILE_DIRECT)
        oflags |= O_DIRECT;
    /* Writethrough as O_DSYNC: each write is durable before it completes,
     * which is the guarantee QEMU's write-plus-flush gives, in one syscall
     * and the same way for both engines (io_uring needs no linked fsync). */
    if (flags & BLK_FILE_DSYNC)
        oflags |= O_DSYNC;
    int fd = open(filename, oflags);
    if (fd < 0) {
        int e = errno;
        if (e == EINVAL && (flags & BLK_FILE_DIRECT))
            snprintf(err, errlen, "Could not open '%s': %s (cache=none and cache=directsync "
                     "need O_DIRECT, which this file system refuses; use cache=writeback)",
                     filename, strerror(e));
        else
            snprintf(err, errlen, "Could not open '%s': %s", filename, strerror(e));
        return -e;
    }
    f->fd = fd;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        snprintf(err, errlen, "Could not open '%s': %s", filename, strerror(e));
        close(fd);
        f->fd = -1;
        return -e;
    }
    if (S_ISBLK(st.st_mode)) {
        f->is_blockdev = true;
        uint64_t sz = 0;
        int lbs = 0;
        if (ioctl(fd, BLKGETSIZE64, &sz) < 0 || ioctl(fd, BLKSSZGET, &lbs) < 0 || lbs <= 0) {
            int e = errno ? errno : EIO;
            snprintf(err, errlen, "Could not open '%s': cannot get the device size: %s",
                     filename, strerror(e));
            close(fd);
            f->fd = -1;
            return -e;
        }
        f->size = sz;
        f->lbs = (uint32_t)lbs;
        /* The block layer below accepts lbs-aligned offsets and buffers. */
        f->off_align = f->mem_align = (flags & BLK_FILE_DIRECT) ? f->lbs : 1;
    } else if (S_ISREG(st.st_mode)) {
        f->size = (uint64_t)st.st_size;
        if (flags & BLK_FILE_DIRECT) {
            file_probe_dio_align(f);
            f->lbs = f->off_align < 512 ? 512 : f->off_align;
        } else {
            f->off_align = f->mem_align = 1;
            f->lbs = 512;
        }
    } else {
        snprintf(err, errlen, "Could not open '%s': %s", filename,
                 S_ISDIR(st.st_mode) ? "Is a directory" : "not a regular file or block device");
        close(fd);
        f->fd = -1;
        return S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
    }
    f->direct = flags & BLK_FILE_DIRECT;
    f->read_only = flags & BLK_FILE_RDONLY;
    pthread_mutex_init(&f->rmw_lock, NULL);
    return 0;
}

void blk_file_close(struct blk_file *f)
{
    if (f->fd < 0)
        return;
    close(f->fd);
    f->fd = -1;
    pthread_mutex_destroy(&f->rmw_lock);
}

/* ---- plain transfers ---------------------------------------------------- */

bool blk_file_aligned(const struct blk_file *f, uint64_t off, uint64_t len,
                      const struct iovec *iov, unsigned cnt)
{
    if (!f->direct)
        return true;
    if (off % f->off_align || len % f->off_align)
        return false;
    for (unsigned i = 0; i < cnt; i++)
        if ((uintptr_t)iov[i].iov_base % f->mem_align || iov[i].iov_len % f->off_align)
            return false;
    return true;
}

/* preadv/pwritev until everything moved. The iovec is copied once so it
 * can be advanced after short transfers. Reads stop at EOF and zero the
 * rest. */
static int file_rw_loop(struct blk_file *f, bool write, uint64_t off, const struct iovec *iov,
                        unsigned cnt, uint64_t len)
{
    struct iovec small[16];
    struct iovec *v = cnt <= 16 ? small : malloc(cnt * sizeof *v);
    if (!v)
        return -ENOMEM;
    unsigned n = iov_slice(iov, cnt, 0, len, v, cnt);
    struct iovec *cur = v;
    int ret = 0;
    while (len) {
        unsigned c = n > IOV_MAX ? IOV_MAX : n;
        ssize_t r = write ? pwritev(f->fd, cur, (int)c, (off_t)off)
                          : preadv(f->fd, cur, (int)c, (off_t)off);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            ret = -errno;
            break;
        }
        if (r == 0) {
            if (write) {
                ret = -EIO;     /* a write that makes no progress: full device */
                break;
            }
            iov_memset(cur, n, 0, 0, len);  /* EOF: QEMU pads with zeros */
            break;
        }
        off += (uint64_t)r;
        len -= (uint64_t)r;
        while (r > 0 && n) {
            if ((size_t)r >= cur->iov_len) {
                r -= (ssize_t)cur->iov_len;
                cur++;
                n--;
            } else {
                cur->iov_base = (char *)cur->iov_base + r;
                cur->iov_len -= (size_t)r;
                r = 0;
            }
        }
    }
    if (v != small)
        free(v);
    return ret;
}

static void *file_bounce_alloc(const struct blk_file *f, uint64_t len)
{
    void *p = NULL;
    size_t a = f->mem_align < 4096 ? 4096 : f->mem_align;
    if (len > SIZE_MAX || posix_memalign(&p, a, (size_t)len))
        return NULL;
    return p;
}

int blk_file_preadv(struct blk_file *f, uint64_t off, const struct iovec *iov,
                    unsigned cnt, uint64_t len)
{
    if (blk_file_aligned(f, off, len, iov, cnt))
        return file_rw_loop(f, false, off, iov, cnt, len);
    /* O_DIRECT and something unaligned: read the aligned cover into a
     * bounce buffer and copy the wanted part out. */
    uint64_t a = f->off_align;
    uint64_t start = off / a * a, end = (off + len + a - 1) / a * a;
    char *buf = file_bounce_alloc(f, end - start);
    if (!buf)
        return -ENOMEM;
    struct iovec biov = { buf, (size_t)(end - start) };
    int ret = file_rw_loop(f, false, start, &biov, 1, end - start);
    if (ret == 0)
        iov_from_buf(iov, cnt, 0, buf + (off - start), len);
    free(buf);
    return ret;
}

int blk_file_pwritev(struct blk_file *f, uint64_t off, const struct iovec *iov,
                     unsigned cnt, uint64_t len)
{
    if (blk_file_aligned(f, off, len, iov, cnt))
        return file_rw_loop(f, true, off, iov, cnt, len);
    uint64_t a = f->off_align;
    uint64_t start = off / a * a, end = (off + len + a - 1) / a * a;
    char *buf = file_bounce_alloc(f, end - start);
    if (!buf)
        return -ENOMEM;
    int ret = 0;
    bool rmw = start != off || end != off + len;
    /* Read-modify-write of the partial head/tail blocks. Only unaligned
     * writes take the lock: an aligned write covers whole blocks, so it
     * never shares a block with a concurrent non-overlapping write, while
     * two unaligned writes to one block would lose each other's bytes. */
    if (rmw) {
        pthread_mutex_lock(&f->rmw_lock);
        struct iovec h = { buf, (size_t)a };
        if (start != off)
            ret = file_rw_loop(f, false, start, &h, 1, a);
        if (ret == 0 && end != off + len && (end - a != start || start == off)) {
            struct iovec t = { buf + (end - a - start), (size_t)a };
            ret = file_rw_loop(f, false, end - a, &t, 1, a);
        }
    }
    if (ret == 0) {
        iov_to_buf(iov, cnt, 0, buf + (off - start), len);
        struct iovec biov = { buf, (size_t)(end - start) };
        ret = file_rw_loop(f, true, start, &biov, 1, end - start);
        /* The widened tail must not grow a file whose size is not a
         * multiple of the alignment. */
        if (ret == 0 && !f->is_blockdev && end > f->size && off + len <= f->size)
            if (ftruncate(f->fd, (off_t)f->size) < 0)
                ret = -errno;
    }
    if (rmw)
        pthread_mutex_unlock(&f->rmw_lock);
    free(buf);
    return ret;
}

int blk_file_pread(struct blk_file *f, uint64_t off, void *buf, uint64_t len)
{
    struct iovec v = { buf, (size_t)len };
    return blk_file_preadv(f, off, &v, 1, len);
}

int blk_file_pwrite(struct blk_file *f, uint64_t off, const void *buf, uint64_t len)
{
    struct iovec v = { (void *)buf, (size_t)len };
    return blk_file_pwritev(f, off, &v, 1, len);
}

int blk_file_flush(struct blk_file *f)
{
    /* fdatasync: the guest's flush asks for its data, not for mtime. On a
     * block device it also sends the device a cache flush. */
    while (fdatasync(f->fd) < 0) {
        if (errno != EINTR)
            return -errno;
    }
    return 0;
}

int blk_file_discard(struct blk_file *f, uint64_t off, uint64_t len)
{
    int r;
    if (f->is_blockdev) {
        uint64_t range[2] = { off, len };
        r = ioctl(f->fd, BLKDISCARD, range);
    } else {
        r = fallocate(f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len);
    }
    if (r == 0)
        return 0;
    /* Discard is advisory (QEMU turns -ENOTSUP into success): a file system
     * or device that cannot unmap keeps the data, which is allowed. */
    if (errno == EOPNOTSUPP || errno == ENOTTY || errno == EINVAL)
        return 0;
    return -errno;
}

/* Writes zeros from one zeroed buffer, a chunk at a time. */
static int file_write_zeroes_slow(struct blk_file *f, uint64_t off, uint64_t len)
{
    const uint64_t chunk = 1 << 20;
    char *buf = file_bounce_alloc(f, chunk);
    if (!buf)
        return -ENOMEM;
    memset(buf, 0, chunk);
    int ret = 0;
    while (len && ret == 0) {
        uint64_t n = len < chunk ? len : chunk;
        ret = blk_file_pwrite(f, off, buf, n);
        off += n;
        len -= n;
    }
    free(buf);
    return ret;
}

int blk_file_write_zeroes(struct blk_file *f, uint64_t off, uint64_t len)
{
    int r;
    if (f->is_blockdev) {
        uint64_t range[2] = { off, len };
        /* BLKZEROOUT wants 512-aligned ranges; the device layer sends
         * sector units, the odd caller gets the slow path. */
        r = (off % 512 || len % 512) ? -1 : ioctl(f->fd, BLKZEROOUT, range);
    } else {
        r = fallocate(f->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len);
    }
    if (r == 0)
        return 0;
    /* Not supported here (old file system, device without WRITE SAME):
     * the guest still gets its zeros, written the long way. */
    return file_write_zeroes_slow(f, off, len);
}
