/* The qcow2 format driver (QEMU's docs/interop/qcow2.txt, versions 2 and
 * 3): open and validation, guest reads and writes through the L1/L2
 * tables, zero clusters, discard, compressed clusters (zlib, zstd) and
 * backing chains. Metadata caching, refcounts and the crash-safe write-back
 * order live in qcow2_meta.c; see qcow2_int.h for the locking rules.
 *
 * Clusters and L2 tables shared with internal snapshots (no OFLAG_COPIED
 * in the active tables) are copied on write.
 *
 * Not yet: external data files, extended L2 entries, encryption (refused
 * with a message). Compressed clusters are written only by kvmbox-img
 * convert -c (qcow2_write_compressed); a guest write stores the cluster
 * uncompressed. */
#include "block/qcow2_int.h"
#include "core/log.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Files of the backing chain so far (loop detection). */
struct qcow2_chain {
    unsigned n;
    dev_t dev[QCOW2_MAX_DEPTH + 1];
    ino_t ino[QCOW2_MAX_DEPTH + 1];
};

enum qcow2_ctype qcow2_entry_type(const struct qcow2 *s, uint64_t entry, uint64_t *host,
                                  uint64_t *clen)
{
    if (entry & QCOW2_OFLAG_COMPRESSED) {
        /* Spec "Compressed Clusters Descriptor": bits 0..x-1 host offset,
         * x..61 additional 512-byte sectors after the offset's sector. */
        *host = entry & s->csize_mask & 0x00ffffffffffffffull;
        uint64_t nsect = (entry >> s->csize_shift) & ((1ull << (62 - s->csize_shift)) - 1);
        *clen = (nsect + 1) * 512 - (*host & 511);
        return QCOW2_TYPE_COMPRESSED;
    }
    *host = entry & QCOW2_OFFSET_MASK;
    *clen = 0;
    /* Bit 0 is the zero flag from version 3 on ("reserved" before). */
    if (s->version >= 3 && (entry & QCOW2_OFLAG_ZERO))
        return *host ? QCOW2_TYPE_ZERO_ALLOC : QCOW2_TYPE_ZERO;
    return *host ? QCOW2_TYPE_NORMAL : QCOW2_TYPE_UNALLOC;
}

/* ---- unlocked data I/O accounting ---------------------------------------- */

static void inflight_get(struct qcow2 *s)
{
    pthread_mutex_lock(&s->inflight_lock);
    s->inflight++;
    pthread_mutex_unlock(&s->inflight_lock);
}

static void inflight_put(struct qcow2 *s)
{
    pthread_mutex_lock(&s->inflight_lock);
    if (--s->inflight == 0)
        pthread_cond_broadcast(&s->inflight_cond);
    pthread_mutex_unlock(&s->inflight_lock);
}

/* ---- L2 lookup (s->lock held) ------------------------------------------- */

static int corrupt(const char *what, uint64_t off)
{
    log_err("qcow2: %s %#" PRIx64 " is invalid (image corrupt; run 'qemu-img check')", what,
              off);
    return -EIO;
}

/* Copy-on-write of an L2 table that a snapshot shares (its L1 entry lacks
 * OFLAG_COPIED): the active L1 entry moves to a private copy. The data
 * clusters keep their refcounts (each counts the snapshots and the active
 * image that reach it, not the tables); the old table loses the active
 * image's reference once the new L1 entry is on disk (qcow2_free_later). */
static struct qcow2_cache_entry *l2_cow(struct qcow2 *s, uint64_t l1i, uint64_t old, int *ret)
{
    uint8_t *copy = malloc(s->cluster_size);
    if (!copy) {
        *ret = -ENOMEM;
        return NULL;
    }
    struct qcow2_cache_entry *e = qcow2_cache_get(s, &s->l2_cache, old, false, ret);
    uint64_t l2 = 0;
    if (e) {
        memcpy(copy, e->data, s->cluster_size);
        l2 = qcow2_alloc_clusters(s, 1, ret);
    }
    e = l2 ? qcow2_cache_get(s, &s->l2_cache, l2, true, ret) : NULL;
    if (e) {
        memcpy(e->data, copy, s->cluster_size);
        e->dirty = true;
        s->l1[l1i] = l2 | QCOW2_OFLAG_COPIED;
        s->l1_dirty = true;
        if ((*ret = qcow2_free_later(s, old, s->cluster_size)) < 0)
            e = NULL;
    }
    free(copy);
    return e;
}

/* What the caller of l2_table will do with the table. */
enum l2_use {
    L2_READ,        /* look only: NULL (with *ret 0) if the L1 entry is empty */
    L2_WRITE,       /* change entries: a shared table is copied first, an
                     * empty L1 entry gets a new table */
};

/* The L2 table for guest cluster ci. */
static struct qcow2_cache_entry *l2_table(struct qcow2 *s, uint64_t ci, enum l2_use use,
                                          int *ret)
{
    uint64_t l1i = ci >> s->l2_bits;
    *ret = 0;
    if (l1i >= s->l1_size) {
        *ret = -EIO;
        return NULL;
    }
    uint64_t l2 = s->l1[l1i] & QCOW2_OFFSET_MASK;
    if (l2) {
        if (l2 & (s->cluster_size - 1)) {
            *ret = corrupt("L2 table offset", l2);
            return NULL;
        }
        if (use == L2_WRITE && !(s->l1[l1i] & QCOW2_OFLAG_COPIED))
            return l2_cow(s, l1i, l2, ret);
        return qcow2_cache_get(s, &s->l2_cache, l2, false, ret);
    }
    if (use == L2_READ)
        return NULL;
    /* A new L2 table: its refcount (alloc) and contents (cache, dirty)
     * reach the disk before the L1 entry (write-back stages 1, 3, 4). */
    l2 = qcow2_alloc_clusters(s, 1, ret);
    if (!l2)
        return NULL;
    struct qcow2_cache_entry *e = qcow2_cache_get(s, &s->l2_cache, l2, true, ret);
    if (!e)
        return NULL;
    s->l1[l1i] = l2 | QCOW2_OFLAG_COPIED;
    s->l1_dirty = true;
    return e;
}

static int l2_entry(struct qcow2 *s, uint64_t ci, uint64_t *entry)
{
    int r;
    struct qcow2_cache_entry *e = l2_table(s, ci, L2_READ, &r);
    *entry = e ? qcow2_be64(e->data + (ci & ((1ull << s->l2_bits) - 1)) * 8) : 0;
    return r;
}

/* How many bytes from guest offset g map the same way as its entry:
 * same type, and host-contiguous for allocated clusters; for a write in
 * place (`copied`) also OFLAG_COPIED on each, so no shared cluster is
 * overwritten. Stays within one L2 table. */
static uint64_t run_length(struct qcow2 *s, uint64_t g, uint64_t max, enum qcow2_ctype t,
                           uint64_t host, bool copied)
{
    uint64_t cs = s->cluster_size, ci = g >> s->cluster_bits;
    uint64_t len = cs - (g & (cs - 1));
    if (len >= max || t == QCOW2_TYPE_COMPRESSED)
        return len < max ? len : max;
    int r;
    struct qcow2_cache_entry *e = l2_table(s, ci, L2_READ, &r);
    uint64_t mask = (1ull << s->l2_bits) - 1;
    for (uint64_t c = ci + 1; len < max && (c & mask) != 0; c++) {
        uint64_t entry = e ? qcow2_be64(e->data + (c & mask) * 8) : 0, h2, cl;
        enum qcow2_ctype t2 = qcow2_entry_type(s, entry, &h2, &cl);
        if (t2 != t || (copied && !(entry & QCOW2_OFLAG_COPIED)))
            break;
        if ((t == QCOW2_TYPE_NORMAL || t == QCOW2_TYPE_ZERO_ALLOC) &&
            h2 != host + ((c - ci) << s->cluster_bits))
            break;
        len += cs;
    }
    return len < max ? len : max;
}

/* ---- reading ------------------------------------------------------------ */

static int backing_read(struct qcow2 *s, uint64_t g, const struct iovec *iov, unsigned cnt,
                        uint64_t skip, uint64_t len)
{
    struct qcow2_backing *bk = s->backing;
    uint64_t have = 0;
    if (bk && g < bk->len) {
        have = bk->len - g < len ? bk->len - g : len;
        struct iovec *sub = malloc((cnt + 1) * sizeof *sub);
        if (!sub)
            return -ENOMEM;
        unsigned n = iov_slice(iov, cnt, skip, have, sub, cnt + 1);
        int r = bk->drv->preadv(bk->state, g, sub, n, have);
        free(sub);
        if (r < 0)
            return r;
    }
    if (have < len)
        iov_memset(iov, cnt, skip + have, 0, len - have);
    return 0;
}

static int backing_read_buf(struct qcow2 *s, uint64_t g, uint8_t *buf, uint64_t len)
{
    struct iovec v = { buf, (size_t)len };
    return backing_read(s, g, &v, 1, 0, len);
}

/* Read and decompress the compressed cluster at host (clen bytes) into out
 * (one cluster). Caller holds an inflight reference. */
static int read_compressed(struct qcow2 *s, uint64_t host, uint64_t clen, uint8_t *out)
{
    if (clen > 2 * s->cluster_size)
        return corrupt("compressed cluster length at", host);
    uint8_t *in = malloc(clen);
    if (!in)
        return -ENOMEM;
    int r = blk_file_pread(s->file, host, in, clen);
    if (r == 0)
        r = qcow2_decompress(s->compression_type, in, clen, out, s->cluster_size);
    if (r == -EIO)
        log_err("qcow2: compressed cluster at %#" PRIx64 " does not decompress", host);
    free(in);
    return r;
}

static int qcow2_preadv(void *opaque, uint64_t off, const struct iovec *iov, unsigned cnt,
                        uint64_t len)
{
    struct qcow2 *s = opaque;
    struct iovec *sub = malloc((cnt + 1) * sizeof *sub);
    uint8_t *cbuf = NULL;
    if (!sub)
        return -ENOMEM;
    int r = 0;
    for (uint64_t pos = 0; pos < len && r == 0;) {
        uint64_t g = off + pos, entry, host, clen;
        pthread_mutex_lock(&s->lock);
        r = l2_entry(s, g >> s->cluster_bits, &entry);
        enum qcow2_ctype t = qcow2_entry_type(s, entry, &host, &clen);
        uint64_t n = r ? 0 : run_length(s, g, len - pos, t, host, false);
        if (!r && (t == QCOW2_TYPE_NORMAL || t == QCOW2_TYPE_COMPRESSED))
            inflight_get(s);
        pthread_mutex_unlock(&s->lock);
        if (r)
            break;
        uint64_t in_off = g & (s->cluster_size - 1);
        switch (t) {
        case QCOW2_TYPE_UNALLOC:
            r = backing_read(s, g, iov, cnt, pos, n);
            break;
        case QCOW2_TYPE_ZERO:
        case QCOW2_TYPE_ZERO_ALLOC:
            iov_memset(iov, cnt, pos, 0, n);
            break;
        case QCOW2_TYPE_NORMAL: {
            unsigned k = iov_slice(iov, cnt, pos, n, sub, cnt + 1);
            r = blk_file_preadv(s->file, host + in_off, sub, k, n);
            inflight_put(s);
            break;
        }
        case QCOW2_TYPE_COMPRESSED:
            if (!cbuf && !(cbuf = malloc(s->cluster_size)))
                r = -ENOMEM;
            if (!r)
                r = read_compressed(s, host, clen, cbuf);
            inflight_put(s);
            if (!r)
                iov_from_buf(iov, cnt, pos, cbuf + in_off, n);
            break;
        }
        pos += n;
    }
    free(sub);
    free(cbuf);
    return r;
}

/* ---- writing ------------------------------------------------------------- */

/* The old contents of guest cluster ci (for a partial write): backing data
 * for unallocated clusters, zeros for zero clusters, the decompressed data
 * of compressed ones. */
static int cluster_fill(struct qcow2 *s, uint64_t ci, enum qcow2_ctype t, uint64_t host,
                        uint64_t clen, uint8_t *buf)
{
    switch (t) {
    case QCOW2_TYPE_UNALLOC:
        return backing_read_buf(s, ci << s->cluster_bits, buf, s->cluster_size);
    case QCOW2_TYPE_COMPRESSED:
        return read_compressed(s, host, clen, buf);
    case QCOW2_TYPE_NORMAL:     /* shared with a snapshot: copied on write */
        return blk_file_pread(s->file, host, buf, s->cluster_size);
    default:
        memset(buf, 0, s->cluster_size);
        return 0;
    }
}

/* Write [g, g+max) (as far as one allocation goes) through a newly
 * allocated or reused cluster run, s->lock held. *done: bytes written.
 * Order: data (with its copy-on-write fill) first, then the L2 entries in
 * the cache; write-back makes both durable in that order. A cluster shared
 * with a snapshot (no OFLAG_COPIED) is copied to a new one, and its old
 * host cluster loses the active image's reference after write-back. */
static int write_alloc(struct qcow2 *s, uint64_t g, const struct iovec *iov, unsigned cnt,
                       uint64_t skip, uint64_t max, uint64_t *done)
{
    uint64_t cs = s->cluster_size, ci = g >> s->cluster_bits, in_off = g & (cs - 1);
    uint64_t mask = (1ull << s->l2_bits) - 1;
    int r;
    struct qcow2_cache_entry *e = l2_table(s, ci, L2_WRITE, &r);
    if (!e)
        return r ? r : -EIO;
    uint64_t entry = qcow2_be64(e->data + (ci & mask) * 8), host, clen;
    enum qcow2_ctype t = qcow2_entry_type(s, entry, &host, &clen);
    bool shared = (t == QCOW2_TYPE_NORMAL || t == QCOW2_TYPE_ZERO_ALLOC) &&
                  !(entry & QCOW2_OFLAG_COPIED);
    if (t == QCOW2_TYPE_NORMAL && !shared) {    /* raced with another allocation */
        *done = 0;
        return 0;
    }
    /* How many clusters: a run of unallocated/zero clusters in this table. */
    uint64_t n = 1, bytes = cs - in_off < max ? cs - in_off : max;
    enum qcow2_ctype tail_t = t;
    if (t == QCOW2_TYPE_UNALLOC || t == QCOW2_TYPE_ZERO) {
        while (bytes < max && ((ci + n) & mask) != 0 && n < qcow2_max_alloc(s)) {
            uint64_t e2 = qcow2_be64(e->data + ((ci + n) & mask) * 8), h2, c2;
            enum qcow2_ctype t2 = qcow2_entry_type(s, e2, &h2, &c2);
            if (t2 != QCOW2_TYPE_UNALLOC && t2 != QCOW2_TYPE_ZERO)
                break;
            tail_t = t2;
            bytes += max - bytes < cs ? max - bytes : cs;
            n++;
        }
    }
    uint64_t newhost = host;
    if (t != QCOW2_TYPE_ZERO_ALLOC || shared) {
        newhost = qcow2_alloc_clusters(s, n, &r);
        if (!newhost)
            return r;
        /* The allocation may have written back metadata; e stays valid (the
         * L2 cache is not touched by allocation). */
    }
    uint8_t *head = NULL, *tail = NULL;
    bool head_partial = in_off != 0 || bytes < cs;
    uint64_t end_off = (in_off + bytes) & (cs - 1);     /* 0: ends on a boundary */
    bool tail_partial = n > 1 && end_off != 0;
    struct iovec *v = malloc((cnt + 3) * sizeof *v);
    r = -ENOMEM;
    if (!v || (head_partial && !(head = malloc(cs))) || (tail_partial && !(tail = malloc(cs))))
        goto out;
    unsigned k = 0;
    uint64_t used = 0;      /* guest bytes placed */
    if (head_partial) {
        if ((r = cluster_fill(s, ci, t, host, clen, head)) < 0)
            goto out;
        uint64_t h = cs - in_off < bytes ? cs - in_off : bytes;
        iov_to_buf(iov, cnt, skip, head + in_off, h);
        v[k++] = (struct iovec){ head, (size_t)cs };
        used = h;
    }
    uint64_t mid = bytes - used - (tail_partial ? end_off : 0);
    if (mid)
        k += iov_slice(iov, cnt, skip + used, mid, v + k, cnt + 1);
    used += mid;
    if (tail_partial) {
        if ((r = cluster_fill(s, ci + n - 1, tail_t, 0, 0, tail)) < 0)
            goto out;
        iov_to_buf(iov, cnt, skip + used, tail, end_off);
        v[k++] = (struct iovec){ tail, (size_t)cs };
    }
    /* Whole clusters from the run's start when an end was filled, else
     * exactly the guest bytes (which then start on a cluster boundary). */
    uint64_t woff = newhost, wlen = iov_size(v, k);
    s->need_sync = true;
    if ((r = blk_file_pwritev(s->file, woff, v, k, wlen)) < 0)
        goto out;
    for (uint64_t i = 0; i < n; i++)
        qcow2_put_be64(e->data + ((ci + i) & mask) * 8,
                       (newhost + (i << s->cluster_bits)) | QCOW2_OFLAG_COPIED);
    e->dirty = true;
    if (t == QCOW2_TYPE_COMPRESSED)
        r = qcow2_free_later(s, host, clen);
    else if (shared)
        r = qcow2_free_later(s, host, cs);
    *done = bytes;
out:
    free(v);
    free(head);
    free(tail);
    return r;
}

static int qcow2_pwritev(void *opaque, uint64_t off, const struct iovec *iov, unsigned cnt,
                         uint64_t len)
{
    struct qcow2 *s = opaque;
    struct iovec *sub = malloc((cnt + 1) * sizeof *sub);
    if (!sub)
        return -ENOMEM;
    int r = 0;
    for (uint64_t pos = 0; pos < len && r == 0;) {
        uint64_t g = off + pos, entry, host, clen, n = 0;
        pthread_mutex_lock(&s->lock);
        r = l2_entry(s, g >> s->cluster_bits, &entry);
        enum qcow2_ctype t = qcow2_entry_type(s, entry, &host, &clen);
        if (r == 0 && t == QCOW2_TYPE_NORMAL && (entry & QCOW2_OFLAG_COPIED)) {
            /* Allocated and not shared with a snapshot: the data goes in
             * place, outside the lock. */
            n = run_length(s, g, len - pos, t, host, true);
            inflight_get(s);
            pthread_mutex_unlock(&s->lock);
            unsigned k = iov_slice(iov, cnt, pos, n, sub, cnt + 1);
            r = blk_file_pwritev(s->file, host + (g & (s->cluster_size - 1)), sub, k, n);
            inflight_put(s);
        } else {
            if (r == 0)
                r = write_alloc(s, g, iov, cnt, pos, len - pos, &n);
            pthread_mutex_unlock(&s->lock);
        }
        pos += n;
    }
    free(sub);
    return r;
}

/* Whole clusters [ci, ci+n): zero (v3 zero flag, or unallocated when that
 * reads as zeros) or discard. Returns 1 if a cluster needs literal zeros
 * (version 2 with a backing file). */
static int zero_clusters(struct qcow2 *s, uint64_t ci, uint64_t n, bool discard)
{
    uint64_t mask = (1ull << s->l2_bits) - 1;
    uint64_t newent = s->version >= 3 && s->backing ? QCOW2_OFLAG_ZERO : 0;
    if (!discard && s->version < 3 && s->backing)
        return 1;
    int r = 0;
    pthread_mutex_lock(&s->lock);
    for (uint64_t c = ci; c < ci + n && r == 0; c++) {
        /* Without an L2 table the cluster already reads as zeros (no
         * backing) or as the backing file (fine for discard). */
        bool need_table = newent != 0;
        struct qcow2_cache_entry *e = l2_table(s, c, L2_READ, &r);
        if (!e && !need_table) {
            if (r == 0)
                c |= mask;      /* skip the rest of this (absent) table */
            continue;
        }
        if (r == 0 && e && qcow2_be64(e->data + (c & mask) * 8) == newent)
            continue;
        /* A change: the table is made private (or created) first. */
        if (r == 0)
            e = l2_table(s, c, L2_WRITE, &r);
        if (!e) {
            r = r ? r : -EIO;
            continue;
        }
        uint8_t *p = e->data + (c & mask) * 8;
        uint64_t host, clen;
        enum qcow2_ctype t = qcow2_entry_type(s, qcow2_be64(p), &host, &clen);
        qcow2_put_be64(p, newent);
        e->dirty = true;
        /* The entry change is written back before the decrement. */
        if (t == QCOW2_TYPE_NORMAL || t == QCOW2_TYPE_ZERO_ALLOC)
            r = qcow2_free_later(s, host, s->cluster_size);
        else if (t == QCOW2_TYPE_COMPRESSED)
            r = qcow2_free_later(s, host, clen);
    }
    pthread_mutex_unlock(&s->lock);
    return r;
}

static int write_zero_bytes(struct qcow2 *s, uint64_t off, uint64_t len)
{
    static const uint8_t zeros[65536];
    while (len) {
        uint64_t n = len < sizeof zeros ? len : sizeof zeros;
        struct iovec v = { (void *)zeros, (size_t)n };
        int r = qcow2_pwritev(s, off, &v, 1, n);
        if (r < 0)
            return r;
        off += n;
        len -= n;
    }
    return 0;
}

static int zero_or_discard(struct qcow2 *s, uint64_t off, uint64_t len, bool discard)
{
    uint64_t cs = s->cluster_size;
    uint64_t a = (off + cs - 1) & ~(cs - 1);
    uint64_t b = (off + len) & ~(cs - 1);
    if (off + len == s->size)       /* the image's last, partial cluster counts whole */
        b = (off + len + cs - 1) & ~(cs - 1);
    int r = 0;
    if (a >= b) {       /* inside one cluster */
        return discard ? 0 : write_zero_bytes(s, off, len);
    }
    if (!discard && a > off)
        r = write_zero_bytes(s, off, a - off);
    if (r == 0) {
        uint64_t first = a >> s->cluster_bits, n = (b - a) >> s->cluster_bits;
        while (n && r == 0) {
            uint64_t step = n < 4096 ? n : 4096;    /* let other requests in */
            r = zero_clusters(s, first, step, discard);
            if (r == 1) {
                uint64_t g = first << s->cluster_bits, l = step << s->cluster_bits;
                r = write_zero_bytes(s, g, l < s->size - g ? l : s->size - g);
            }
            first += step;
            n -= step;
        }
    }
    if (r == 0 && !discard && off + len > b && b > a)
        r = write_zero_bytes(s, b, off + len - b);
    return r;
}

static int qcow2_write_zeroes(void *opaque, uint64_t off, uint64_t len)
{
    return zero_or_discard(opaque, off, len, false);
}

/* Discard frees whole clusters (spec: a zero cluster with a backing file,
 * so the backing data does not reappear, else unallocated); partial
 * clusters are left alone (discard is advisory). */
static int qcow2_discard(void *opaque, uint64_t off, uint64_t len)
{
    return zero_or_discard(opaque, off, len, true);
}

int qcow2_write_compressed(void *opaque, uint64_t off, const void *buf, uint64_t len)
{
    struct qcow2 *s = opaque;
    uint64_t cs = s->cluster_size;
    if ((off & (cs - 1)) || off >= s->size || len > cs || (len < cs && off + len != s->size))
        return -EINVAL;
    uint8_t *in = malloc(cs), *out = malloc(cs);
    int r = -ENOMEM;
    if (!in || !out)
        goto out;
    memcpy(in, buf, len);
    memset(in + len, 0, cs - len);
    /* Compressed only if it shrinks (QEMU: output buffer cluster_size - 1). */
    uint64_t clen = qcow2_compress(s->compression_type, in, cs, out, cs - 1);
    if (!clen) {
        struct iovec v = { (void *)buf, (size_t)len };
        r = qcow2_pwritev(s, off, &v, 1, len);
        goto out;
    }
    uint64_t ci = off >> s->cluster_bits, mask = (1ull << s->l2_bits) - 1;
    pthread_mutex_lock(&s->lock);
    struct qcow2_cache_entry *e = l2_table(s, ci, L2_WRITE, &r);
    if (!e) {
        pthread_mutex_unlock(&s->lock);
        r = r ? r : -EIO;
        goto out;
    }
    uint64_t old = qcow2_be64(e->data + (ci & mask) * 8), oh, ol;
    enum qcow2_ctype t = qcow2_entry_type(s, old, &oh, &ol);
    uint64_t host = qcow2_alloc_bytes(s, clen, &r);
    if (host) {
        /* The L2 cache entry may have been evicted by the allocation. */
        e = l2_table(s, ci, L2_WRITE, &r);
    }
    if (!host || !e) {
        pthread_mutex_unlock(&s->lock);
        r = r ? r : -EIO;
        goto out;
    }
    s->need_sync = true;
    if ((r = blk_file_pwrite(s->file, host, out, clen)) == 0) {
        uint64_t nsect = ((host + clen - 1) >> 9) - (host >> 9);
        qcow2_put_be64(e->data + (ci & mask) * 8,
                       QCOW2_OFLAG_COMPRESSED | (nsect << s->csize_shift) | host);
        e->dirty = true;
        if (t == QCOW2_TYPE_NORMAL || t == QCOW2_TYPE_ZERO_ALLOC)
            r = qcow2_free_later(s, oh, cs);
        else if (t == QCOW2_TYPE_COMPRESSED)
            r = qcow2_free_later(s, oh, ol);
    }
    pthread_mutex_unlock(&s->lock);
out:
    free(in);
    free(out);
    return r;
}

static int qcow2_flush(void *opaque)
{
    struct qcow2 *s = opaque;
    if (s->read_only)
        return 0;
    pthread_mutex_lock(&s->lock);
    int r = qcow2_meta_writeback(s, false, true);
    pthread_mutex_unlock(&s->lock);
    /* The final sync covers the metadata and every data write completed
     * before this flush, in place or not. */
    return r < 0 ? r : qcow2_sync(s);
}

static uint64_t qcow2_length(void *opaque) { return ((struct qcow2 *)opaque)->size; }

/* ---- open / close ---------------------------------------------------------- */

static void backing_close(struct qcow2_backing *bk)
{
    if (!bk)
        return;
    if (bk->state)
        bk->drv->close(bk->state);
    if (bk->file.fd >= 0)
        blk_file_close(&bk->file);
    free(bk);
}

static void qcow2_free_state(struct qcow2 *s)
{
    backing_close(s->backing);
    qcow2_cache_free(&s->l2_cache);
    qcow2_cache_free(&s->rb_cache);
    free(s->l1);
    free(s->reftable);
    free(s->pending_free);
    free(s->backing_name);
    pthread_mutex_destroy(&s->lock);
    pthread_mutex_destroy(&s->inflight_lock);
    pthread_cond_destroy(&s->inflight_cond);
    free(s);
}

static void qcow2_close(void *opaque)
{
    struct qcow2 *s = opaque;
    if (!s)
        return;
    if (!s->read_only) {
        pthread_mutex_lock(&s->lock);
        /* Twice: applying frees dirties refcount blocks again. */
        int r = qcow2_meta_writeback(s, false, true);
        if (r == 0)
            r = qcow2_meta_writeback(s, true, false);
        if (r == 0 && s->lazy_dirty_set) {
            /* Refcounts are consistent again: a clean image. */
            s->incompat &= ~QCOW2_INCOMPAT_DIRTY;
            r = qcow2_write_header(s);
            if (r == 0)
                r = qcow2_sync(s);
        }
        if (r < 0)
            log_err("qcow2: writing back metadata at close failed: %s", strerror(-r));
        pthread_mutex_unlock(&s->lock);
    }
    qcow2_free_state(s);
}

static const char *feature_name(const uint8_t *table, uint64_t tlen, int type, int bit,
                                char *buf, size_t buflen)
{
    /* Spec "Feature name table": 48-byte entries: type, bit, 46-byte name. */
    for (uint64_t i = 0; i + 48 <= tlen; i += 48)
        if (table[i] == type && table[i + 1] == bit) {
            snprintf(buf, buflen, "%.46s", (const char *)table + i + 2);
            return buf;
        }
    return NULL;
}

static int image_path(struct blk_file *file, const struct qcow2_open_options *o, char *buf,
                      size_t len)
{
    if (o && o->filename) {
        snprintf(buf, len, "%s", o->filename);
        return 0;
    }
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", file->fd);
    ssize_t n = readlink(link, buf, len - 1);
    if (n < 0) {
        snprintf(buf, len, "(fd %d)", file->fd);
        return -errno;
    }
    buf[n] = 0;
    return 0;
}

static int qcow2_open_chain(void **state, struct blk_file *file, bool read_only,
                            const struct qcow2_open_options *o, struct qcow2_chain *chain,
                            char *err, unsigned errlen);

static int open_backing(struct qcow2 *s, const char *image, const char *name, const char *fmt,
                        const struct qcow2_open_options *o, struct qcow2_chain *chain,
                        char *err, unsigned errlen)
{
    char path[PATH_MAX];
    if (strncmp(name, "json:", 5) == 0 || strstr(name, "://")) {
        snprintf(err, errlen, "'%s': backing file '%s' is not a local file (not supported)",
                 image, name);
        return -ENOTSUP;
    }
    if (name[0] == '/') {
        snprintf(path, sizeof path, "%s", name);
    } else {
        /* Spec: a relative backing file name is relative to the image. */
        const char *slash = strrchr(image, '/');
        if (slash)
            snprintf(path, sizeof path, "%.*s/%s", (int)(slash - image), image, name);
        else
            snprintf(path, sizeof path, "%s", name);
    }
    if (!(s->backing_name = strdup(path)))
        return -ENOMEM;
    unsigned depth = o ? o->depth : 0;
    if (depth + 1 >= QCOW2_MAX_DEPTH) {
        snprintf(err, errlen, "'%s': backing chain deeper than %d images (a loop?)", image,
                 QCOW2_MAX_DEPTH);
        return -ELOOP;
    }
    struct qcow2_backing *bk = calloc(1, sizeof *bk);
    if (!bk)
        return -ENOMEM;
    bk->file.fd = -1;
    s->backing = bk;
    char ferr[256];
    int r = blk_file_open(&bk->file, path, BLK_FILE_RDONLY | (s->file->direct ? BLK_FILE_DIRECT
                                                                              : 0),
                          ferr, sizeof ferr);
    /* A backing file is only read, and shares everything (QEMU's locks). */
    if (r == 0)
        r = blk_file_lock(&bk->file, BLK_PERM_CONSISTENT_READ, 0, path, ferr, sizeof ferr);
    if (r < 0) {
        snprintf(err, errlen, "Could not open backing file: %s", ferr);      /* QEMU's words */
        return r;
    }
    struct stat st;
    if (fstat(bk->file.fd, &st) == 0) {
        for (unsigned i = 0; i < chain->n; i++)
            if (chain->dev[i] == st.st_dev && chain->ino[i] == st.st_ino) {
                snprintf(err, errlen, "'%s': backing chain loops back to '%s'", image, path);
                return -ELOOP;
            }
        chain->dev[chain->n] = st.st_dev;
        chain->ino[chain->n] = st.st_ino;
        chain->n++;
    }
    if (!fmt) {     /* no backing format extension: probe, as QEMU */
        uint8_t head[BLK_PROBE_SIZE];
        if ((r = blk_file_pread(&bk->file, 0, head, sizeof head)) < 0) {
            snprintf(err, errlen, "'%s': cannot read backing file '%s'", image, path);
            return r;
        }
        const char *p = blk_probe_format(head, sizeof head);
        fmt = p ? p : "raw";
    }
    if (strcmp(fmt, "qcow2") == 0) {
        struct qcow2_open_options bo = { .filename = path, .depth = depth + 1 };
        bo.l2_cache_size = o ? o->l2_cache_size : 0;
        char berr[512];
        r = qcow2_open_chain(&bk->state, &bk->file, true, &bo, chain, berr, sizeof berr);
        if (r < 0) {
            snprintf(err, errlen, "Could not open backing file: %s", berr);   /* QEMU nests these */
            bk->state = NULL;
            return r;
        }
        bk->drv = &blk_driver_qcow2;
    } else if (strcmp(fmt, "raw") == 0) {
        r = blk_driver_raw.open(&bk->state, &bk->file, true, NULL, err, errlen);
        if (r < 0)
            return r;
        bk->drv = &blk_driver_raw;
    } else {
        snprintf(err, errlen, "'%s': backing file '%s' has format '%s', which kvmbox does not "
                 "read", image, path, fmt);
        return -ENOTSUP;
    }
    bk->len = bk->drv->length(bk->state);
    return 0;
}

#define FAIL(code, ...) do { snprintf(err, errlen, __VA_ARGS__); r = (code); goto fail; } while (0)

static int qcow2_open_chain(void **state, struct blk_file *file, bool read_only,
                            const struct qcow2_open_options *o, struct qcow2_chain *chain,
                            char *err, unsigned errlen)
{
    char name[PATH_MAX];
    image_path(file, o, name, sizeof name);
    struct qcow2 *s = calloc(1, sizeof *s);
    uint8_t *hc = NULL;
    int r;
    if (!s) {
        snprintf(err, errlen, "'%s': out of memory", name);
        return -ENOMEM;
    }
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutex_init(&s->inflight_lock, NULL);
    pthread_cond_init(&s->inflight_cond, NULL);
    s->file = file;
    s->read_only = read_only;
    s->no_sync = o && o->no_sync;
    struct stat st;
    uint64_t fsize = file->size;
    if (!file->is_blockdev && fstat(file->fd, &st) == 0)
        fsize = (uint64_t)st.st_size;

    uint8_t *h = s->hdr;
    if (fsize < QCOW2_HDR_V2_LEN)
        FAIL(-EINVAL, "'%s' is not a qcow2 image (file too short)", name);
    if ((r = blk_file_pread(file, 0, h, QCOW2_HDR_MAX_LEN)) < 0)
        FAIL(r, "'%s': cannot read the qcow2 header: %s", name, strerror(-r));
    if (qcow2_be32(h) != QCOW2_MAGIC)
        FAIL(-EINVAL, "'%s' is not a qcow2 image (bad magic)", name);
    s->version = qcow2_be32(h + 4);
    if (s->version != 2 && s->version != 3)
        FAIL(-ENOTSUP, "'%s': unsupported qcow2 version %u", name, s->version);
    uint64_t backing_off = qcow2_be64(h + 8);
    uint32_t backing_len = qcow2_be32(h + 16);
    s->cluster_bits = qcow2_be32(h + 20);
    if (s->cluster_bits < 9 || s->cluster_bits > 21)
        FAIL(-EINVAL, "'%s': invalid qcow2 cluster size (cluster_bits %u, expected 9..21)",
             name, s->cluster_bits);
    uint64_t cs = s->cluster_size = 1ull << s->cluster_bits;
    s->l2_bits = s->cluster_bits - 3;
    s->size = qcow2_be64(h + 24);
    uint32_t crypt = qcow2_be32(h + 32);
    s->l1_size = qcow2_be32(h + 36);
    s->l1_offset = qcow2_be64(h + 40);
    s->reftable_offset = qcow2_be64(h + 48);
    uint32_t rt_clusters = qcow2_be32(h + 56);
    s->nb_snapshots = qcow2_be32(h + 60);
    s->snapshots_offset = qcow2_be64(h + 64);
    s->refcount_order = 4;
    s->header_len = QCOW2_HDR_V2_LEN;
    uint32_t hlen = QCOW2_HDR_V2_LEN;
    if (s->version >= 3) {
        s->incompat = qcow2_be64(h + 72);
        s->compat = qcow2_be64(h + 80);
        s->autoclear = qcow2_be64(h + 88);
        s->refcount_order = qcow2_be32(h + 96);
        hlen = qcow2_be32(h + 100);
        if (hlen < QCOW2_HDR_V3_MIN_LEN || hlen > cs || (hlen & 7))
            FAIL(-EINVAL, "'%s': invalid qcow2 header length %u", name, hlen);
        s->header_len = hlen < QCOW2_HDR_MAX_LEN ? hlen : QCOW2_HDR_MAX_LEN;
        /* Spec: compression_type at byte 104 if the header is long enough. */
        s->compression_type = hlen > 104 ? h[104] : 0;
    }
    if (s->refcount_order > 6)
        FAIL(-EINVAL, "'%s': invalid qcow2 refcount order %u", name, s->refcount_order);
    s->refcount_bits = 1u << s->refcount_order;
    s->refcount_max = s->refcount_bits == 64 ? UINT64_MAX : (1ull << s->refcount_bits) - 1;
    s->rpb_bits = s->cluster_bits + 3 - s->refcount_order;
    s->csize_shift = 62 - (s->cluster_bits - 8);
    s->csize_mask = (1ull << s->csize_shift) - 1;

    /* The header cluster: extensions and the backing file name. */
    hc = malloc(cs);
    if (!hc)
        FAIL(-ENOMEM, "'%s': out of memory", name);
    if ((r = blk_file_pread(file, 0, hc, cs)) < 0)
        FAIL(r, "'%s': cannot read the qcow2 header: %s", name, strerror(-r));
    if (backing_off && (backing_off > cs - 1 || backing_len > 1023 ||
                        backing_off + backing_len > cs))
        FAIL(-EINVAL, "'%s': invalid backing file name offset or length in the qcow2 header",
             name);
    uint64_t ext_end = backing_off && backing_off >= hlen ? backing_off : cs;
    const uint8_t *ftable = NULL;
    uint64_t ftable_len = 0;
    char fmtbuf[32] = "";
    bool have_fmt = false;
    for (uint64_t p = hlen; p + 8 <= ext_end;) {
        uint32_t type = qcow2_be32(hc + p), len = qcow2_be32(hc + p + 4);
        p += 8;
        if (type == QCOW2_EXT_END)
            break;
        if (len > ext_end - p)
            FAIL(-EINVAL, "'%s': qcow2 header extension %#x runs past the header", name, type);
        if (type == QCOW2_EXT_BACKING_FORMAT) {
            if (len >= sizeof fmtbuf)
                FAIL(-EINVAL, "'%s': invalid backing format extension", name);
            memcpy(fmtbuf, hc + p, len);
            fmtbuf[len] = 0;
            have_fmt = true;
        } else if (type == QCOW2_EXT_FEATURE_TABLE) {
            ftable = hc + p;
            ftable_len = len;
        }   /* others (bitmaps, crypto header, data file name, ...): ignored */
        p += ((uint64_t)len + 7) & ~7ull;
    }

    /* Incompatible features (spec: "must not be opened if any unknown bit
     * is set"). */
    uint64_t known = QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT | QCOW2_INCOMPAT_COMPRESSION;
    if ((s->incompat & ~known) || crypt) {
        char list[400] = "", nb[64];
        size_t used = 0;
        if (crypt)
            used += (size_t)snprintf(list + used, sizeof list - used, "encryption (%s)",
                                     crypt == 1 ? "AES" : crypt == 2 ? "LUKS" : "unknown");
        for (int bit = 0; bit < 64 && used < sizeof list; bit++) {
            if (!((s->incompat & ~known) & (1ull << bit)))
                continue;
            const char *fn = feature_name(ftable, ftable_len, 0, bit, nb, sizeof nb);
            if (!fn)
                fn = bit == 2 ? "external data file" : bit == 4 ? "extended L2 entries" : NULL;
            if (fn)
                used += (size_t)snprintf(list + used, sizeof list - used, "%s%s",
                                         used ? ", " : "", fn);
            else
                used += (size_t)snprintf(list + used, sizeof list - used,
                                         "%sunknown incompatible feature bit %d",
                                         used ? ", " : "", bit);
        }
        FAIL(-ENOTSUP, "'%s' uses unsupported qcow2 feature(s): %s", name, list);
    }
    if (s->compression_type > 1)
        FAIL(-ENOTSUP, "'%s' uses unsupported qcow2 feature(s): compression type %d", name,
             s->compression_type);
    if (s->compression_type && !(s->incompat & QCOW2_INCOMPAT_COMPRESSION))
        FAIL(-EINVAL, "'%s': compression type %d without the compression type feature bit",
             name, s->compression_type);

    /* Sizes against the file and sane maxima: never trust a table size. */
    uint64_t l2_entries = 1ull << s->l2_bits;
    uint64_t max_size = ((uint64_t)QCOW2_MAX_L1_BYTES / 8) * l2_entries * cs;
    if (s->size > max_size || s->size > (1ull << 62))
        FAIL(-EINVAL, "'%s': image size %" PRIu64 " too large for the cluster size", name,
             s->size);
    uint64_t gclusters = (s->size + cs - 1) >> s->cluster_bits;
    uint64_t l1_needed = (gclusters + l2_entries - 1) / l2_entries;
    if (s->l1_size < l1_needed)
        FAIL(-EINVAL, "'%s': L1 table too small (%u entries) for the image size", name,
             s->l1_size);
    if ((uint64_t)s->l1_size * 8 > QCOW2_MAX_L1_BYTES)
        FAIL(-EFBIG, "'%s': L1 table too large (%u entries)", name, s->l1_size);
    if (s->l1_size && ((s->l1_offset & (cs - 1)) || s->l1_offset < cs ||
                       s->l1_offset > fsize || (uint64_t)s->l1_size * 8 > fsize - s->l1_offset))
        FAIL(-EINVAL, "'%s': L1 table offset %#" PRIx64 " invalid (beyond the end of the file, "
             "misaligned or in the header)", name, s->l1_offset);
    uint64_t rt_bytes = (uint64_t)rt_clusters << s->cluster_bits;
    if (!rt_clusters || rt_bytes > QCOW2_MAX_REFTABLE_BYTES)
        FAIL(-EINVAL, "'%s': invalid refcount table size (%u clusters)", name, rt_clusters);
    if ((s->reftable_offset & (cs - 1)) || s->reftable_offset < cs ||
        s->reftable_offset > fsize || rt_bytes > fsize - s->reftable_offset)
        FAIL(-EINVAL, "'%s': refcount table offset %#" PRIx64 " invalid (beyond the end of the "
             "file, misaligned or in the header)", name, s->reftable_offset);
    if (s->nb_snapshots > QCOW2_MAX_SNAPSHOTS ||
        (s->nb_snapshots && ((s->snapshots_offset & (cs - 1)) || s->snapshots_offset < cs ||
                             s->snapshots_offset >= fsize)))
        FAIL(-EINVAL, "'%s': invalid snapshot table (%u snapshots at %#" PRIx64 ")", name,
             s->nb_snapshots, s->snapshots_offset);

    /* Tables. */
    s->l1 = calloc(s->l1_size ? s->l1_size : 1, sizeof *s->l1);
    s->reftable_entries = rt_bytes / 8;
    s->reftable = calloc(s->reftable_entries, sizeof *s->reftable);
    uint8_t *tb = malloc(rt_bytes > (uint64_t)s->l1_size * 8 ? rt_bytes
                                                             : (uint64_t)s->l1_size * 8 + 1);
    if (!s->l1 || !s->reftable || !tb) {
        free(tb);
        FAIL(-ENOMEM, "'%s': out of memory for the qcow2 tables", name);
    }
    if ((r = blk_file_pread(file, s->l1_offset, tb, (uint64_t)s->l1_size * 8)) == 0) {
        for (uint32_t i = 0; i < s->l1_size; i++)
            s->l1[i] = qcow2_be64(tb + i * 8);
        r = blk_file_pread(file, s->reftable_offset, tb, rt_bytes);
    }
    if (r == 0)
        for (uint64_t i = 0; i < s->reftable_entries; i++)
            if ((s->reftable[i] = qcow2_be64(tb + i * 8)))
                s->rt_used = i + 1;
    free(tb);
    if (r < 0)
        FAIL(r, "'%s': cannot read the qcow2 tables: %s", name, strerror(-r));
    s->end_cluster = (fsize + cs - 1) >> s->cluster_bits;
    s->free_hint = 1;

    /* Caches: by default enough L2 for the whole disk up to 32 MiB. */
    uint64_t l2_bytes = o && o->l2_cache_size ? o->l2_cache_size : l1_needed * cs;
    if (!(o && o->l2_cache_size) && l2_bytes > 32u * 1024 * 1024)
        l2_bytes = 32u * 1024 * 1024;
    uint64_t l2n = l2_bytes / cs;
    if (l2n < 4)
        l2n = 4;
    if (l2n > 65536)
        l2n = 65536;
    uint64_t rbn = l2n / 4 < 4 ? 4 : (l2n / 4 > 64 ? 64 : l2n / 4);
    if (o && o->refcount_cache_size)
        rbn = o->refcount_cache_size / cs < 4 ? 4 : o->refcount_cache_size / cs;
    if (rbn > 65536)
        rbn = 65536;
    if (qcow2_cache_init(&s->l2_cache, (unsigned)l2n, cs) < 0 ||
        qcow2_cache_init(&s->rb_cache, (unsigned)rbn, cs) < 0)
        FAIL(-ENOMEM, "'%s': out of memory for the qcow2 caches", name);

    if (!read_only) {
        if (s->incompat & QCOW2_INCOMPAT_CORRUPT)
            FAIL(-EINVAL, "'%s' is marked corrupt; open it read-only or repair it with "
                 "'qemu-img check -r all'", name);
        if (s->incompat & QCOW2_INCOMPAT_DIRTY) {
            /* Spec: the refcounts of a dirty image may be wrong (lazy
             * refcounts and a crash): rebuild them before allocating. */
            char why[400];
            if ((r = qcow2_rebuild_refcounts(s, why, sizeof why)) < 0)
                FAIL(r, "'%s': %s", name, why);
        }
        if (s->autoclear) {
            /* Spec: autoclear bits must be cleared by software that does
             * not maintain what they describe (e.g. bitmaps). */
            s->autoclear = 0;
            if ((r = qcow2_write_header(s)) < 0 || (r = blk_file_flush(file)) < 0)
                FAIL(r, "'%s': cannot update the qcow2 header: %s", name, strerror(-r));
        }
    }

    if (backing_off && backing_len && !(o && o->no_backing)) {
        char bname[1024];
        memcpy(bname, hc + backing_off, backing_len);
        bname[backing_len] = 0;
        if (strlen(bname) != backing_len || !backing_len)
            FAIL(-EINVAL, "'%s': invalid backing file name", name);
        struct qcow2_chain local = { 0 };
        if (!chain) {
            chain = &local;
            if (fstat(file->fd, &st) == 0) {
                local.dev[0] = st.st_dev;
                local.ino[0] = st.st_ino;
                local.n = 1;
            }
        }
        if ((r = open_backing(s, name, bname, have_fmt ? fmtbuf : NULL, o, chain, err,
                              errlen)) < 0)
            goto fail;
    }
    free(hc);
    *state = s;
    return 0;
fail:
    free(hc);
    qcow2_free_state(s);
    *state = NULL;
    return r;
}

int qcow2_open_ex(void **state, struct blk_file *file, bool read_only,
                  const struct qcow2_open_options *o, char *err, unsigned errlen)
{
    return qcow2_open_chain(state, file, read_only, o, NULL, err, errlen);
}

static int qcow2_open(void **state, struct blk_file *file, bool read_only,
                      const struct blk_format_options *fo, char *err, unsigned errlen)
{
    struct qcow2_open_options o = {
        .l2_cache_size = fo ? fo->l2_cache_size : 0,
        .refcount_cache_size = fo ? fo->refcount_cache_size : 0,
    };
    return qcow2_open_chain(state, file, read_only, &o, NULL, err, errlen);
}

const struct block_driver blk_driver_qcow2 = {
    .format = "qcow2",
    .open = qcow2_open,
    .preadv = qcow2_preadv,
    .pwritev = qcow2_pwritev,
    .flush = qcow2_flush,
    .discard = qcow2_discard,
    .write_zeroes = qcow2_write_zeroes,
    .length = qcow2_length,
    .close = qcow2_close,
    .maps_to_file = false,
};
