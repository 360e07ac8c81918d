/* Block status for kvmbox-img (map, convert, compare, commit): how a guest
 * range is stored, following the backing chain (qemu's
 * bdrv_block_status_above as qemu-img map reports it). */
#include "img/bstat.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Host file hole check: bytes from `off` that are data (hole=false) or a
 * hole (hole=true), at most max. */
static uint64_t file_extent(int fd, uint64_t off, uint64_t max, bool *hole)
{
    off_t d = lseek(fd, (off_t)off, SEEK_DATA);
    if (d < 0) {
        /* ENXIO: nothing but a hole up to EOF; otherwise: assume data. */
        *hole = errno == ENXIO;
        return max;
    }
    if ((uint64_t)d > off) {
        *hole = true;
        return (uint64_t)d - off < max ? (uint64_t)d - off : max;
    }
    off_t h = lseek(fd, (off_t)off, SEEK_HOLE);
    *hole = false;
    if (h < 0 || (uint64_t)h <= off)
        return max;
    return (uint64_t)h - off < max ? (uint64_t)h - off : max;
}

/* QEMU looks at host file holes only for images that look preallocated
 * (qcow2_detect_metadata_preallocation): more clusters with a refcount than
 * the file has allocated blocks for. Cached per image state. */
static bool looks_preallocated(struct qcow2 *s, struct blk_file *f)
{
    static struct { struct qcow2 *s; bool v; } cache[QCOW2_MAX_DEPTH + 8];
    static unsigned n;
    for (unsigned i = 0; i < n; i++)
        if (cache[i].s == s)
            return cache[i].v;
    struct stat st;
    bool v = false;
    if (fstat(f->fd, &st) == 0) {
        uint64_t real = (uint64_t)st.st_blocks * 512 / s->cluster_size;
        uint64_t threshold = real * 10 / 9 > real + 2 ? real * 10 / 9 : real + 2;
        uint64_t nc = ((uint64_t)st.st_size + s->cluster_size - 1) >> s->cluster_bits, cnt = 0;
        pthread_mutex_lock(&s->lock);
        for (uint64_t c = 0; c < nc && cnt <= threshold; c++) {
            uint64_t rc;
            if (qcow2_get_refcount(s, c, &rc) < 0)
                break;
            cnt += rc > 0;
        }
        pthread_mutex_unlock(&s->lock);
        v = cnt > threshold;
    }
    if (n < sizeof cache / sizeof cache[0]) {
        cache[n].s = s;
        cache[n++].v = v;
    }
    return v;
}

static int q_status(struct qcow2 *s, struct blk_file *f, const char *name, uint64_t off,
                    uint64_t max, unsigned depth, struct bstat *b)
{
    uint64_t cs = s->cluster_size, ci = off >> s->cluster_bits, in = off & (cs - 1);
    uint64_t mask = (1ull << s->l2_bits) - 1;
    if (max > s->size - off)
        max = s->size - off;
    int r = 0;
    pthread_mutex_lock(&s->lock);
    uint64_t l1i = ci >> s->l2_bits;
    uint64_t l2 = l1i < s->l1_size ? s->l1[l1i] & QCOW2_OFFSET_MASK : 0;
    struct qcow2_cache_entry *e = NULL;
    if (l2 && !(l2 & (cs - 1)))
        e = qcow2_cache_get(s, &s->l2_cache, l2, false, &r);
    else if (l2)
        r = -EIO;
    uint64_t entry = e ? qcow2_be64(e->data + (ci & mask) * 8) : 0, host, clen;
    enum qcow2_ctype t = qcow2_entry_type(s, entry, &host, &clen);
    uint64_t len = cs - in;
    /* Extend over following entries of the same kind (host-contiguous). */
    for (uint64_t c = ci + 1; r == 0 && len < max && (c & mask); c++) {
        uint64_t e2 = e ? qcow2_be64(e->data + (c & mask) * 8) : 0, h2, l2b;
        enum qcow2_ctype t2 = qcow2_entry_type(s, e2, &h2, &l2b);
        if (t2 != t || t == QCOW2_TYPE_COMPRESSED)
            break;
        if ((t == QCOW2_TYPE_NORMAL || t == QCOW2_TYPE_ZERO_ALLOC) &&
            h2 != host + ((c - ci) << s->cluster_bits))
            break;
        len += cs;
    }
    if (!e && r == 0) {     /* whole absent L2 table */
        uint64_t rest = ((mask + 1 - (ci & mask)) << s->cluster_bits) - in;
        len = rest;
    }
    pthread_mutex_unlock(&s->lock);
    if (r < 0)
        return r;
    if (len > max)
        len = max;
    memset(b, 0, sizeof *b);
    b->len = len;
    b->depth = depth;
    b->file = name;
    switch (t) {
    case QCOW2_TYPE_NORMAL: {
        bool hole = false;
        if (looks_preallocated(s, f))
            b->len = file_extent(f->fd, host + in, len, &hole);
        b->data = b->present = b->has_offset = true;
        b->zero = hole;
        b->offset = host + in;
        return 0;
    }
    case QCOW2_TYPE_COMPRESSED:
        b->data = b->present = b->compressed = true;
        return 0;
    case QCOW2_TYPE_ZERO_ALLOC:
        b->has_offset = true;
        b->offset = host + in;
        /* fall through */
    case QCOW2_TYPE_ZERO:
        b->zero = b->present = true;
        return 0;
    case QCOW2_TYPE_UNALLOC:
        break;
    }
    struct qcow2_backing *bk = s->backing;
    if (!bk) {
        b->zero = true;
        return 0;
    }
    if (off >= bk->len) {
        b->zero = true;
        b->depth = depth + 1;
        return 0;
    }
    if (len > bk->len - off)
        b->len = len = bk->len - off;
    const char *bn = s->backing_name ? s->backing_name : "";
    if (bk->drv == &blk_driver_qcow2)
        return q_status(bk->state, &bk->file, bn, off, len, depth + 1, b);
    bool hole;
    b->len = file_extent(bk->file.fd, off, len, &hole);
    b->depth = depth + 1;
    b->file = bn;
    b->present = true;
    b->data = !hole;
    b->zero = hole;
    b->has_offset = true;
    b->offset = off;
    return 0;
}

int img_block_status(struct img *im, uint64_t off, uint64_t max, struct bstat *b)
{
    if (off >= im->size || !max)
        return -EINVAL;
    if (max > im->size - off)
        max = im->size - off;
    if (im->q)
        return q_status(im->q, &im->file, im->name, off, max, 0, b);
    bool hole;
    memset(b, 0, sizeof *b);
    b->len = file_extent(im->file.fd, off, max, &hole);
    b->file = im->name;
    b->present = true;
    b->data = !hole;
    b->zero = hole;
    b->has_offset = true;
    b->offset = off;
    return 0;
}
