/* qcow2 metadata: the table cache, refcounts (spec "Host cluster
 * management"), cluster allocation, crash-ordered write-back and the
 * refcount rebuild that repairs a dirty image. Everything here runs with
 * s->lock held (see qcow2_int.h for the ordering rules). */
#include "block/qcow2_int.h"
#include "core/log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- table cache --------------------------------------------------------- */

int qcow2_cache_init(struct qcow2_cache *c, unsigned n, uint64_t cluster_size)
{
    (void)cluster_size;
    c->n = n;
    c->tick = 0;
    c->e = calloc(n, sizeof *c->e);
    return c->e ? 0 : -ENOMEM;
}

void qcow2_cache_free(struct qcow2_cache *c)
{
    if (!c->e)
        return;
    for (unsigned i = 0; i < c->n; i++)
        free(c->e[i].data);
    free(c->e);
    c->e = NULL;
}

struct qcow2_cache_entry *qcow2_cache_get(struct qcow2 *s, struct qcow2_cache *c, uint64_t off,
                                          bool fresh, int *ret)
{
    c->tick++;
    struct qcow2_cache_entry *victim = NULL;
    for (unsigned i = 0; i < c->n; i++) {
        struct qcow2_cache_entry *e = &c->e[i];
        if (e->off == off && off) {
            e->lru = c->tick;
            if (fresh) {
                memset(e->data, 0, s->cluster_size);
                e->dirty = true;
            }
            return e;
        }
        if (!victim || (victim->off && (!e->off || e->lru < victim->lru)))
            victim = e;
    }
    if (victim->dirty) {
        /* Writing back everything (not just the victim) keeps the stage
         * order of qcow2_meta_writeback; frees wait for a real flush so
         * this never re-enters the refcount cache. */
        int r = qcow2_meta_writeback(s, false, false);
        if (r < 0) {
            *ret = r;
            return NULL;
        }
    }
    if (!victim->data) {
        void *p = NULL;
        if (posix_memalign(&p, 4096, s->cluster_size)) {
            *ret = -ENOMEM;
            return NULL;
        }
        victim->data = p;
    }
    victim->off = 0;
    victim->dirty = false;
    if (fresh) {
        memset(victim->data, 0, s->cluster_size);
        victim->dirty = true;
    } else {
        int r = blk_file_pread(s->file, off, victim->data, s->cluster_size);
        if (r < 0) {
            *ret = r;
            return NULL;
        }
    }
    victim->off = off;
    victim->lru = c->tick;
    return victim;
}

/* ---- refcounts (spec "Host cluster management") ------------------------ */

/* Refcount entry i of a block; sub-byte widths use the least significant
 * bits first (spec: "bit 0 means the least significant bit"). */
static uint64_t rb_get(const struct qcow2 *s, const uint8_t *b, uint64_t i)
{
    uint32_t bits = s->refcount_bits;
    if (bits < 8) {
        unsigned per = 8 / bits;
        return (b[i / per] >> ((i % per) * bits)) & ((1u << bits) - 1);
    }
    unsigned bytes = bits / 8;
    uint64_t v = 0;
    for (unsigned k = 0; k < bytes; k++)
        v = (v << 8) | b[i * bytes + k];
    return v;
}

void qcow2_refblock_put(uint32_t bits, uint8_t *blk, uint64_t i, uint64_t v)
{
    if (bits < 8) {
        unsigned per = 8 / bits, sh = (unsigned)(i % per) * bits;
        uint8_t mask = (uint8_t)(((1u << bits) - 1) << sh);
        blk[i / per] = (uint8_t)((blk[i / per] & ~mask) | ((v << sh) & mask));
        return;
    }
    for (unsigned k = bits / 8; k-- > 0; v >>= 8)
        blk[i * (bits / 8) + k] = (uint8_t)v;
}

static void rb_set(const struct qcow2 *s, uint8_t *b, uint64_t i, uint64_t v)
{
    qcow2_refblock_put(s->refcount_bits, b, i, v);
}

static int rb_offset(struct qcow2 *s, uint64_t cluster, uint64_t *off)
{
    uint64_t bi = cluster >> s->rpb_bits;
    *off = bi < s->reftable_entries ? s->reftable[bi] & QCOW2_REFT_OFFSET_MASK : 0;
    if (*off & (s->cluster_size - 1)) {
        log_err("qcow2: refcount block offset %#" PRIx64 " is not cluster aligned "
                  "(image corrupt; run 'qemu-img check -r all')", *off);
        return -EIO;
    }
    return 0;
}

int qcow2_get_refcount(struct qcow2 *s, uint64_t cluster, uint64_t *rc)
{
    uint64_t off;
    int r = rb_offset(s, cluster, &off);
    if (r < 0)
        return r;
    if (!off) {
        *rc = 0;
        return 0;
    }
    struct qcow2_cache_entry *e = qcow2_cache_get(s, &s->rb_cache, off, false, &r);
    if (!e)
        return r;
    *rc = rb_get(s, e->data, cluster & ((1ull << s->rpb_bits) - 1));
    return 0;
}

static bool in_range(uint64_t x, uint64_t start, uint64_t n) { return x >= start && x - start < n; }

static bool reserved(const struct qcow2 *s, uint64_t c)
{
    return in_range(c, s->alloc_resv_start, s->alloc_resv_n) ||
           in_range(c, s->reftable_resv_start, s->reftable_resv_n);
}

static int set_refcount(struct qcow2 *s, uint64_t cluster, uint64_t v)
{
    uint64_t off;
    int r = rb_offset(s, cluster, &off);
    if (r < 0)
        return r;
    if (!off)
        return -EIO;    /* caller ensured the block; cannot happen */
    struct qcow2_cache_entry *e = qcow2_cache_get(s, &s->rb_cache, off, false, &r);
    if (!e)
        return r;
    rb_set(s, e->data, cluster & ((1ull << s->rpb_bits) - 1), v);
    e->dirty = true;
    return 0;
}

static int ensure_refblock(struct qcow2 *s, uint64_t cluster);

/* The refcount table is too small for block index `need`: place a bigger
 * copy after everything else, give its clusters refcounts, and switch to it
 * in memory. On disk the header switches in write-back stage 2, after the
 * new blocks and table are durable; the old table is freed after that. */
static int grow_reftable(struct qcow2 *s, uint64_t need)
{
    uint64_t per_cluster = s->cluster_size / 8;
    uint64_t n = need + 1 > s->reftable_entries * 2 ? need + 1 : s->reftable_entries * 2;
    uint64_t t0, T;
    for (;;) {
        n = (n + per_cluster - 1) / per_cluster * per_cluster;
        if (n * 8 > QCOW2_MAX_REFTABLE_BYTES) {
            log_err("qcow2: refcount table would exceed %d bytes", QCOW2_MAX_REFTABLE_BYTES);
            return -EFBIG;
        }
        T = n / per_cluster;
        t0 = s->end_cluster;
        if (s->alloc_resv_n && s->alloc_resv_start + s->alloc_resv_n > t0)
            t0 = s->alloc_resv_start + s->alloc_resv_n;
        if (((t0 + 2 * T) >> s->rpb_bits) < n)
            break;
        n *= 2;
    }
    uint64_t *nt = calloc(n, sizeof *nt);
    if (!nt)
        return -ENOMEM;
    memcpy(nt, s->reftable, s->reftable_entries * sizeof *nt);
    uint64_t old_off = s->reftable_offset;
    uint64_t old_bytes = (s->reftable_entries * 8 + s->cluster_size - 1) &
                         ~(s->cluster_size - 1);
    free(s->reftable);
    s->reftable = nt;
    s->reftable_entries = n;
    s->reftable_offset = t0 << s->cluster_bits;
    s->reftable_resv_start = t0;
    s->reftable_resv_n = T;
    if (s->end_cluster < t0 + T)
        s->end_cluster = t0 + T;
    int r = 0;
    for (uint64_t i = 0; i < T && r == 0; i++) {
        r = ensure_refblock(s, t0 + i);
        if (r == 0)
            r = set_refcount(s, t0 + i, 1);
    }
    s->reftable_resv_n = 0;
    s->reftable_dirty = s->header_dirty = true;
    if (r == 0)
        r = qcow2_free_later(s, old_off, old_bytes);
    return r;
}

/* A refcount block covering `cluster` exists (in the table, maybe only in
 * the cache). A new block goes inside the range it covers (all of which is
 * free, or the block would exist), outside any reservation, and counts
 * itself. */
static int ensure_refblock(struct qcow2 *s, uint64_t cluster)
{
    uint64_t bi = cluster >> s->rpb_bits;
    int r;
    if (bi >= s->reftable_entries) {
        if (++s->alloc_depth > 4) {
            s->alloc_depth--;
            return -EIO;
        }
        r = grow_reftable(s, bi);
        s->alloc_depth--;
        if (r < 0)
            return r;
    }
    uint64_t off;
    if ((r = rb_offset(s, cluster, &off)) < 0 || off)
        return r;
    uint64_t start = bi << s->rpb_bits, rpb = 1ull << s->rpb_bits, b;
    for (b = start; b < start + rpb && reserved(s, b); b++)
        ;
    if (b == start + rpb)
        return -EIO;    /* qcow2_max_alloc keeps reservations smaller */
    struct qcow2_cache_entry *e = qcow2_cache_get(s, &s->rb_cache, b << s->cluster_bits, true,
                                                  &r);
    if (!e)
        return r;
    rb_set(s, e->data, b - start, 1);
    s->reftable[bi] = b << s->cluster_bits;
    s->reftable_dirty = true;
    if (bi + 1 > s->rt_used)
        s->rt_used = bi + 1;
    if (s->end_cluster < b + 1)
        s->end_cluster = b + 1;
    return 0;
}

uint64_t qcow2_max_alloc(const struct qcow2 *s)
{
    uint64_t m = (1ull << s->rpb_bits) / 4;
    return m < 1 ? 1 : (m > 256 ? 256 : m);
}

int qcow2_mark_dirty(struct qcow2 *s)
{
    if (!(s->compat & QCOW2_COMPAT_LAZY_REFCOUNTS) || s->lazy_dirty_set)
        return 0;
    /* Spec: lazy refcounts "may" leave refcounts stale; the dirty bit tells
     * the next opener to rebuild them. It must be durable first. */
    s->incompat |= QCOW2_INCOMPAT_DIRTY;
    int r = qcow2_write_header(s);
    if (r == 0)
        r = qcow2_sync(s);
    if (r == 0)
        s->lazy_dirty_set = true;
    return r;
}

/* First run of n free clusters at or after free_hint. Clusters past both
 * the file end and the last refcount block are free without looking. */
static int find_free_run(struct qcow2 *s, uint64_t n, uint64_t *start)
{
    uint64_t limit = s->end_cluster;
    if ((s->rt_used << s->rpb_bits) > limit)
        limit = s->rt_used << s->rpb_bits;
    uint64_t run = 0, c = s->free_hint;
    bool first_free_seen = false;
    for (;; c++) {
        uint64_t rc = 0;
        if (c < limit) {
            int r = qcow2_get_refcount(s, c, &rc);
            if (r < 0)
                return r;
        }
        if (c == 0 || rc || reserved(s, c)) {   /* cluster 0 is the header, always */
            run = 0;
            continue;
        }
        if (!first_free_seen) {
            first_free_seen = true;
            s->free_hint = c;
        }
        if (++run == n) {
            *start = c + 1 - n;
            return 0;
        }
    }
}

uint64_t qcow2_alloc_clusters(struct qcow2 *s, uint64_t n, int *ret)
{
    int r = qcow2_mark_dirty(s);
    uint64_t c = 0;
    if (r == 0 && (n == 0 || n > qcow2_max_alloc(s)))
        r = -EINVAL;
    if (r == 0)
        r = find_free_run(s, n, &c);
    if (r < 0) {
        *ret = r;
        return 0;
    }
    s->alloc_resv_start = c;
    s->alloc_resv_n = n;
    for (uint64_t i = 0; i < n && r == 0; i++)
        r = ensure_refblock(s, c + i);
    for (uint64_t i = 0; i < n && r == 0; i++)
        r = set_refcount(s, c + i, 1);
    s->alloc_resv_n = 0;
    if (r < 0) {
        *ret = r;
        return 0;
    }
    if (s->free_hint == c)
        s->free_hint = c + n;
    if (s->end_cluster < c + n)
        s->end_cluster = c + n;
    return c << s->cluster_bits;
}

int qcow2_inc_refcount(struct qcow2 *s, uint64_t cluster)
{
    uint64_t rc;
    int r = qcow2_mark_dirty(s);
    if (r == 0)
        r = qcow2_get_refcount(s, cluster, &rc);
    if (r < 0)
        return r;
    if (rc == 0 || rc >= s->refcount_max)
        return -EIO;    /* unreferenced (image inconsistent) or saturated */
    return set_refcount(s, cluster, rc + 1);
}

uint64_t qcow2_alloc_bytes(struct qcow2 *s, uint64_t len, int *ret)
{
    uint64_t cs = s->cluster_size, o = s->cbytes_off, in = o & (cs - 1);
    if (o && in && len <= cs - in) {
        uint64_t c = o >> s->cluster_bits, rc;
        int r = qcow2_mark_dirty(s);
        if (r == 0)
            r = qcow2_get_refcount(s, c, &rc);
        if (r < 0) {
            *ret = r;
            return 0;
        }
        if (rc > 0 && rc < s->refcount_max) {
            if ((r = set_refcount(s, c, rc + 1)) < 0) {
                *ret = r;
                return 0;
            }
            s->cbytes_off = o + len;
            return o;
        }
    }
    uint64_t n = (len + cs - 1) / cs;
    uint64_t host = qcow2_alloc_clusters(s, n, ret);
    if (!host)
        return 0;
    s->cbytes_off = host + len;
    return host;
}

int qcow2_free_later(struct qcow2 *s, uint64_t off, uint64_t len)
{
    if (!len)
        return 0;
    uint64_t first = off >> s->cluster_bits, last = (off + len - 1) >> s->cluster_bits;
    for (uint64_t c = first; c <= last; c++) {
        if (s->npending == s->pending_cap) {
            size_t cap = s->pending_cap ? s->pending_cap * 2 : 256;
            uint64_t *p = realloc(s->pending_free, cap * sizeof *p);
            if (!p)
                return -ENOMEM;     /* a leak, not corruption */
            s->pending_free = p;
            s->pending_cap = cap;
        }
        s->pending_free[s->npending++] = c;
    }
    /* Bound the list: a guest discarding terabytes without a flush. */
    if (s->npending > 65536)
        return qcow2_meta_writeback(s, false, true);
    return 0;
}

int qcow2_sync(struct qcow2 *s)
{
    return s->no_sync ? 0 : blk_file_flush(s->file);
}

static int barrier(struct qcow2 *s)
{
    if (!s->need_sync)
        return 0;
    int r = qcow2_sync(s);
    if (r == 0)
        s->need_sync = false;
    return r;
}

static int mwrite(struct qcow2 *s, uint64_t off, const void *buf, uint64_t len)
{
    s->need_sync = true;
    return blk_file_pwrite(s->file, off, buf, len);
}

int qcow2_write_header(struct qcow2 *s)
{
    qcow2_put_be64(s->hdr + 48, s->reftable_offset);
    qcow2_put_be32(s->hdr + 56, (uint32_t)((s->reftable_entries * 8 + s->cluster_size - 1) >>
                                           s->cluster_bits));
    if (s->version >= 3) {
        qcow2_put_be64(s->hdr + 72, s->incompat);
        qcow2_put_be64(s->hdr + 88, s->autoclear);
    }
    return mwrite(s, 0, s->hdr, s->header_len);
}

static bool cache_dirty(const struct qcow2_cache *c)
{
    for (unsigned i = 0; i < c->n; i++)
        if (c->e[i].dirty)
            return true;
    return false;
}

static int cache_write_dirty(struct qcow2 *s, struct qcow2_cache *c)
{
    for (unsigned i = 0; i < c->n; i++) {
        struct qcow2_cache_entry *e = &c->e[i];
        if (!e->dirty)
            continue;
        int r = mwrite(s, e->off, e->data, s->cluster_size);
        if (r < 0)
            return r;
        e->dirty = false;
    }
    return 0;
}

static int apply_frees(struct qcow2 *s)
{
    /* No unlocked data I/O may still target a cluster we are about to make
     * reusable (it got its mapping before the discard). New I/O needs
     * s->lock, which we hold. */
    pthread_mutex_lock(&s->inflight_lock);
    while (s->inflight)
        pthread_cond_wait(&s->inflight_cond, &s->inflight_lock);
    pthread_mutex_unlock(&s->inflight_lock);
    int r = qcow2_mark_dirty(s);
    for (size_t i = 0; i < s->npending && r == 0; i++) {
        uint64_t c = s->pending_free[i], rc;
        r = qcow2_get_refcount(s, c, &rc);
        if (r < 0)
            break;
        if (rc == 0) {
            log_warn("qcow2: freeing cluster %#" PRIx64 " whose refcount is already 0 "
                     "(image inconsistent; run 'qemu-img check -r all')",
                     c << s->cluster_bits);
            continue;
        }
        r = set_refcount(s, c, rc - 1);
        if (r == 0 && rc == 1 && c < s->free_hint)
            s->free_hint = c;
        if (r == 0 && rc == 1 && s->cbytes_off && (s->cbytes_off >> s->cluster_bits) == c)
            s->cbytes_off = 0;      /* never pack into a cluster that is free again */
    }
    s->npending = 0;
    return r;
}

int qcow2_meta_writeback(struct qcow2 *s, bool sync, bool frees)
{
    int r;
    /* Stage 1: refcount blocks. Newly allocated data was written before. */
    if ((r = cache_write_dirty(s, &s->rb_cache)) < 0)
        return r;
    /* Stage 2: the refcount table (may reference the new blocks), then the
     * header (may point to a new table). */
    if (s->reftable_dirty) {
        if ((r = barrier(s)) < 0)
            return r;
        uint64_t bytes = s->reftable_entries * 8;
        uint8_t *buf = malloc(bytes);
        if (!buf)
            return -ENOMEM;
        for (uint64_t i = 0; i < s->reftable_entries; i++)
            qcow2_put_be64(buf + i * 8, s->reftable[i]);
        r = mwrite(s, s->reftable_offset, buf, bytes);
        free(buf);
        if (r < 0)
            return r;
        s->reftable_dirty = false;
    }
    if (s->header_dirty) {
        if ((r = barrier(s)) < 0 || (r = qcow2_write_header(s)) < 0)
            return r;
        s->header_dirty = false;
    }
    /* Stage 3: L2 tables, after the data and refcounts they reference. */
    if (cache_dirty(&s->l2_cache)) {
        if ((r = barrier(s)) < 0 || (r = cache_write_dirty(s, &s->l2_cache)) < 0)
            return r;
    }
    /* Stage 4: the L1 table, after the L2 tables it points to. */
    if (s->l1_dirty) {
        if ((r = barrier(s)) < 0)
            return r;
        uint64_t bytes = (uint64_t)s->l1_size * 8;
        uint8_t *buf = malloc(bytes ? bytes : 1);
        if (!buf)
            return -ENOMEM;
        for (uint64_t i = 0; i < s->l1_size; i++)
            qcow2_put_be64(buf + i * 8, s->l1[i]);
        r = mwrite(s, s->l1_offset, buf, bytes);
        free(buf);
        if (r < 0)
            return r;
        s->l1_dirty = false;
    }
    /* Decrements only once nothing on disk references the clusters. */
    if (frees && s->npending) {
        if ((r = barrier(s)) < 0 || (r = apply_frees(s)) < 0)
            return r;
    }
    if (sync) {
        s->need_sync = true;        /* also covers unlocked data writes */
        return barrier(s);
    }
    return 0;
}

/* ---- refcount rebuild (repair of a dirty image) ----------------------- */

struct rebuild {
    struct qcow2 *s;
    uint32_t *rc;
    uint64_t n;
    char *err;
    unsigned errlen;
};

static int rb_add(struct rebuild *rb, uint64_t off, uint64_t len, const char *what)
{
    if (!len)
        return 0;
    uint64_t first = off >> rb->s->cluster_bits, last = (off + len - 1) >> rb->s->cluster_bits;
    if (last >= rb->n || last < first) {
        snprintf(rb->err, rb->errlen, "%s at %#" PRIx64 " lies beyond the end of the file",
                 what, off);
        return -EINVAL;
    }
    for (uint64_t c = first; c <= last; c++)
        if (rb->rc[c] != UINT32_MAX)
            rb->rc[c]++;
    return 0;
}

static int rb_walk_l1(struct rebuild *rb, uint64_t l1_off, uint32_t l1_size, uint8_t *l2buf)
{
    struct qcow2 *s = rb->s;
    int r = rb_add(rb, l1_off, (uint64_t)l1_size * 8, "an L1 table");
    if (r < 0)
        return r;
    uint8_t *l1 = malloc((size_t)l1_size * 8 + 1);
    if (!l1)
        return -ENOMEM;
    if ((r = blk_file_pread(s->file, l1_off, l1, (uint64_t)l1_size * 8)) < 0)
        goto out;
    for (uint32_t i = 0; i < l1_size; i++) {
        uint64_t l2 = qcow2_be64(l1 + i * 8) & QCOW2_OFFSET_MASK;
        if (!l2)
            continue;
        if ((l2 & (s->cluster_size - 1)) || (r = rb_add(rb, l2, s->cluster_size, "an L2 table")))
            goto bad;
        if ((r = blk_file_pread(s->file, l2, l2buf, s->cluster_size)) < 0)
            goto out;
        for (uint64_t j = 0; j < (1ull << s->l2_bits); j++) {
            uint64_t host, clen;
            enum qcow2_ctype t = qcow2_entry_type(s, qcow2_be64(l2buf + j * 8), &host, &clen);
            if (t == QCOW2_TYPE_NORMAL || t == QCOW2_TYPE_ZERO_ALLOC) {
                if ((host & (s->cluster_size - 1)) ||
                    (r = rb_add(rb, host, s->cluster_size, "a data cluster")))
                    goto bad;
            } else if (t == QCOW2_TYPE_COMPRESSED) {
                if ((r = rb_add(rb, host, clen, "a compressed cluster")))
                    goto bad;
            }
        }
    }
    r = 0;
    goto out;
bad:
    if (!r || !rb->err[0])
        snprintf(rb->err, rb->errlen, "misaligned L2 table or data cluster");
    r = -EINVAL;
out:
    free(l1);
    return r;
}

static int rb_walk_snapshots(struct rebuild *rb, uint8_t *l2buf)
{
    struct qcow2 *s = rb->s;
    uint64_t off = s->snapshots_offset;
    uint8_t h[40];
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        int r = blk_file_pread(s->file, off, h, sizeof h);
        if (r < 0)
            return r;
        uint64_t l1_off = qcow2_be64(h);
        uint32_t l1_size = qcow2_be32(h + 8);
        uint64_t len = 40 + (uint64_t)qcow2_be32(h + 36) + qcow2_be16(h + 12) +
                       qcow2_be16(h + 14);
        len = (len + 7) & ~7ull;
        if ((uint64_t)l1_size * 8 > QCOW2_MAX_L1_BYTES || (l1_off & (s->cluster_size - 1))) {
            snprintf(rb->err, rb->errlen, "snapshot %u has an invalid L1 table", i);
            return -EINVAL;
        }
        if ((r = rb_walk_l1(rb, l1_off, l1_size, l2buf)) < 0)
            return r;
        off += len;
        if (off >> rb->s->cluster_bits >= rb->n) {
            snprintf(rb->err, rb->errlen, "snapshot table runs past the end of the file");
            return -EINVAL;
        }
    }
    if (s->nb_snapshots)
        return rb_add(rb, s->snapshots_offset, off - s->snapshots_offset, "the snapshot table");
    return 0;
}

int qcow2_rebuild_refcounts(struct qcow2 *s, char *err, unsigned errlen)
{
    char why[200] = "";
    struct rebuild rb = { .s = s, .n = s->end_cluster, .err = why, .errlen = sizeof why };
    if (rb.n > (1ull << 26)) {
        snprintf(err, errlen, "image too large to rebuild its refcounts here; run "
                 "'qemu-img check -r all'");
        return -EFBIG;
    }
    uint8_t *l2buf = malloc(s->cluster_size);
    rb.rc = calloc(rb.n + 1, sizeof *rb.rc);
    int r = -ENOMEM;
    uint8_t *blk = NULL, *tab = NULL;
    if (!l2buf || !rb.rc)
        goto out;
    if ((r = rb_add(&rb, 0, s->cluster_size, "the header")) < 0 ||
        (r = rb_walk_l1(&rb, s->l1_offset, s->l1_size, l2buf)) < 0 ||
        (r = rb_walk_snapshots(&rb, l2buf)) < 0)
        goto out;
    /* New table and blocks at the end: iterate until they count themselves. */
    uint64_t rpb = 1ull << s->rpb_bits, N = rb.n, M = N, B, T;
    for (;;) {
        B = (M + rpb - 1) / rpb;
        T = (B * 8 + s->cluster_size - 1) >> s->cluster_bits;
        if (N + B + T == M)
            break;
        M = N + B + T;
    }
    if (T * s->cluster_size > QCOW2_MAX_REFTABLE_BYTES) {
        r = -EFBIG;
        goto out;
    }
    uint32_t *nrc = realloc(rb.rc, M * sizeof *nrc);
    r = -ENOMEM;
    if (!nrc)
        goto out;
    rb.rc = nrc;
    for (uint64_t c = N; c < M; c++)
        rb.rc[c] = 1;
    blk = malloc(s->cluster_size);
    tab = calloc(T, s->cluster_size);
    if (!blk || !tab)
        goto out;
    for (uint64_t b = 0; b < B; b++) {
        memset(blk, 0, s->cluster_size);
        for (uint64_t i = 0; i < rpb && b * rpb + i < M; i++) {
            uint64_t v = rb.rc[b * rpb + i];
            if (v > s->refcount_max) {
                snprintf(why, sizeof why, "a refcount exceeds %u bits", s->refcount_bits);
                r = -EINVAL;
                goto out;
            }
            rb_set(s, blk, i, v);
        }
        uint64_t boff = (N + T + b) << s->cluster_bits;
        qcow2_put_be64(tab + b * 8, boff);
        if ((r = mwrite(s, boff, blk, s->cluster_size)) < 0)
            goto out;
    }
    if ((r = mwrite(s, N << s->cluster_bits, tab, T << s->cluster_bits)) < 0 ||
        (r = barrier(s)) < 0)
        goto out;
    uint64_t *nt = calloc(T * s->cluster_size / 8, sizeof *nt);
    r = -ENOMEM;
    if (!nt)
        goto out;
    for (uint64_t b = 0; b < B; b++)
        nt[b] = (N + T + b) << s->cluster_bits;
    free(s->reftable);
    s->reftable = nt;
    s->reftable_entries = T * s->cluster_size / 8;
    s->reftable_offset = N << s->cluster_bits;
    s->rt_used = B;
    s->end_cluster = M;
    s->free_hint = 1;
    s->incompat &= ~QCOW2_INCOMPAT_DIRTY;
    if ((r = qcow2_write_header(s)) < 0 || (r = barrier(s)) < 0)
        goto out;
    log_info("qcow2: rebuilt the refcounts of a dirty image (%" PRIu64 " clusters)", N);
out:
    if (r < 0)
        snprintf(err, errlen, "the image is dirty and its refcounts could not be rebuilt "
                 "(%s); run 'qemu-img check -r all'", why[0] ? why : strerror(-r));
    free(l2buf);
    free(rb.rc);
    free(blk);
    free(tab);
    return r;
}
