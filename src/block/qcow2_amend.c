/* kvmbox-img amend's in-place changes of an open qcow2 image (QEMU's
 * docs/interop/qcow2.txt): the refcount width, and the version (2 <-> 3).
 *
 * Crash consistency: every change first makes the current metadata durable
 * (write-back as at close), then writes the new structures (refcount
 * blocks and table at the end of the file, zeroed data clusters, L2
 * tables) and syncs them, and only then rewrites the header that switches
 * to them. The old structures are then simply unreferenced, so a crash at
 * any point leaves the old or the new image, leaking clusters at worst. */
#include "block/qcow2_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* All cached metadata and pending frees on disk, synced (as at close:
 * applying the frees dirties refcount blocks again). The refcounts are
 * then exact, so a lazy-refcounts dirty bit goes too. */
static int writeback_all(struct qcow2 *s)
{
    int r = qcow2_meta_writeback(s, false, true);
    if (r == 0)
        r = qcow2_meta_writeback(s, true, false);
    if (r == 0 && s->lazy_dirty_set) {
        s->incompat &= ~QCOW2_INCOMPAT_DIRTY;
        if ((r = qcow2_write_header(s)) == 0 && (r = qcow2_sync(s)) == 0)
            s->lazy_dirty_set = false;
    }
    return r;
}

/* ---- header rewrite ------------------------------------------------------ */

/* The extensions of header cluster hc that qcow2_header_build does not
 * write itself (anything but the backing format and the feature table),
 * copied to out; their length. */
static uint64_t other_extensions(const struct qcow2 *s, const uint8_t *hc, uint8_t *out)
{
    uint64_t cs = s->cluster_size, boff = qcow2_be64(hc + 8), n = 0;
    uint64_t hlen = s->version >= 3 ? qcow2_be32(hc + 100) : QCOW2_HDR_V2_LEN;
    uint64_t end = boff && boff >= hlen && boff < cs ? boff : cs;
    for (uint64_t p = hlen; p + 8 <= end;) {
        uint32_t type = qcow2_be32(hc + p), len = qcow2_be32(hc + p + 4);
        uint64_t total = 8 + (((uint64_t)len + 7) & ~7ull);
        if (type == QCOW2_EXT_END || total > end - p)
            break;
        if (type != QCOW2_EXT_BACKING_FORMAT && type != QCOW2_EXT_FEATURE_TABLE) {
            memcpy(out + n, hc + p, total);
            n += total;
        }
        p += total;
    }
    return n;
}

/* Write header cluster 0 anew from the state in s (version, features,
 * tables) in QEMU's layout, and sync. The caller has made everything it
 * points to durable. */
static int rewrite_header(struct qcow2 *s, const char *backing, const char *backing_fmt,
                          char *err, unsigned errlen)
{
    uint64_t cs = s->cluster_size;
    uint8_t *old = malloc(cs), *other = malloc(cs), *h = malloc(cs);
    int r = -ENOMEM;
    if (!old || !other || !h)
        goto out;
    if ((r = blk_file_pread(s->file, 0, old, cs)) < 0)
        goto out;
    /* The old header's layout (version) decides where its extensions are. */
    uint32_t new_version = s->version;
    s->version = qcow2_be32(old + 4);
    uint64_t olen = other_extensions(s, old, other);
    s->version = new_version;
    struct qcow2_hdr_desc d = {
        .version = s->version, .cluster_bits = s->cluster_bits, .size = s->size,
        .l1_size = s->l1_size, .l1_offset = s->l1_offset,
        .reftable_offset = s->reftable_offset,
        .reftable_clusters = (uint32_t)((s->reftable_entries * 8 + cs - 1) >> s->cluster_bits),
        .nb_snapshots = s->nb_snapshots, .snapshots_offset = s->snapshots_offset,
        .incompat = s->incompat, .compat = s->compat, .autoclear = s->autoclear,
        .refcount_order = s->refcount_order, .compression_type = (uint32_t)s->compression_type,
        .backing_file = backing && *backing ? backing : NULL,
        .backing_fmt = backing && *backing ? backing_fmt : NULL,
        .other_ext = other, .other_ext_len = olen,
    };
    if ((r = qcow2_header_build(h, cs, &d, err, errlen)) < 0)
        goto out;
    s->need_sync = true;
    if ((r = blk_file_pwrite(s->file, 0, h, cs)) < 0 || (r = qcow2_sync(s)) < 0)
        goto out;
    s->need_sync = false;
    /* The driver's copy, which later header writes patch and rewrite. */
    s->header_len = s->version >= 3 ? QCOW2_HDR_MAX_LEN : QCOW2_HDR_V2_LEN;
    memcpy(s->hdr, h, QCOW2_HDR_MAX_LEN);
out:
    if (r < 0 && !err[0])
        snprintf(err, errlen, "Failed to update the image header: %s", strerror(-r));
    free(old);
    free(other);
    free(h);
    return r;
}

/* ---- walking the cluster tables ------------------------------------------ */

typedef int (*l2_fn)(struct qcow2 *s, uint64_t l2_off, void *opaque);

/* fn on each L2 table of an L1 table (host order); stops at a non-zero
 * return. */
static int for_each_l2(struct qcow2 *s, const uint64_t *l1, uint32_t n, l2_fn fn, void *opaque)
{
    for (uint32_t i = 0; i < n; i++) {
        uint64_t l2 = l1[i] & QCOW2_OFFSET_MASK;
        if (!l2)
            continue;
        if (l2 & (s->cluster_size - 1))
            return -EIO;        /* corrupt: qemu-img check reports it */
        int r = fn(s, l2, opaque);
        if (r)
            return r;
    }
    return 0;
}

/* fn on each L2 table of the active image and of every snapshot (a table
 * the snapshots share comes up more than once). */
static int for_each_table(struct qcow2 *s, const struct qcow2_l1_ref *snaps, uint32_t nsnaps,
                          l2_fn fn, void *opaque)
{
    int r = for_each_l2(s, s->l1, s->l1_size, fn, opaque);
    for (uint32_t i = 0; i < nsnaps && r == 0; i++) {
        uint32_t n = snaps[i].size;
        if ((uint64_t)n * 8 > QCOW2_MAX_L1_BYTES)
            return -EIO;
        uint8_t *raw = malloc((size_t)n * 8 + 1);
        uint64_t *l1 = malloc((size_t)n * 8 + 1);
        r = raw && l1 ? blk_file_pread(s->file, snaps[i].offset, raw, (uint64_t)n * 8) : -ENOMEM;
        for (uint32_t j = 0; j < n && r == 0; j++)
            l1[j] = qcow2_be64(raw + j * 8);
        if (r == 0)
            r = for_each_l2(s, l1, n, fn, opaque);
        free(raw);
        free(l1);
    }
    return r;
}

/* 1 if the L2 table has a compressed cluster. */
static int l2_has_compressed(struct qcow2 *s, uint64_t l2_off, void *opaque)
{
    (void)opaque;
    int r;
    struct qcow2_cache_entry *e = qcow2_cache_get(s, &s->l2_cache, l2_off, false, &r);
    if (!e)
        return r;
    for (uint64_t j = 0; j < (1ull << s->l2_bits); j++)
        if (qcow2_be64(e->data + j * 8) & QCOW2_OFLAG_COMPRESSED)
            return 1;
    return 0;
}

/* ---- zero cluster expansion (version 2 has no zero flag) ------------------ */

struct expand {
    bool has_backing;
    const uint8_t *zeros;       /* one cluster */
};

/* A new cluster holding zeros for an unallocated zero cluster in front of a
 * backing file, referenced as often as the L2 table that will point to it
 * (a table shared with snapshots counts once per user). */
static uint64_t zeroed_cluster(struct qcow2 *s, const struct expand *x, uint64_t users, int *ret)
{
    uint64_t host = qcow2_alloc_clusters(s, 1, ret);
    for (uint64_t k = 1; host && k < users && *ret == 0; k++)
        *ret = qcow2_inc_refcount(s, host >> s->cluster_bits);
    if (host && *ret == 0) {
        s->need_sync = true;    /* the zeros before the L2 entry (write-back order) */
        *ret = blk_file_pwrite(s->file, host, x->zeros, s->cluster_size);
    }
    return *ret == 0 ? host : 0;
}

/* The version 2 form of zero entry `entry`: 0 (unallocated reads as zeros
 * without a backing file), or a data cluster that holds zeros. */
static int expand_entry(struct qcow2 *s, const struct expand *x, uint64_t entry,
                        uint64_t l2_users, uint64_t *out)
{
    uint64_t host, clen;
    enum qcow2_ctype t = qcow2_entry_type(s, entry, &host, &clen);
    int r = 0;
    if (t == QCOW2_TYPE_ZERO_ALLOC) {
        uint64_t rc;
        if ((r = qcow2_get_refcount(s, host >> s->cluster_bits, &rc)) < 0)
            return r;
        if (rc <= l2_users) {
            /* Only this table uses the cluster: zeros in place. */
            s->need_sync = true;
            r = blk_file_pwrite(s->file, host, x->zeros, s->cluster_size);
            *out = entry & ~QCOW2_OFLAG_ZERO;
            return r;
        }
        /* A snapshot's own table still reads its data there (QEMU 7.2
         * zeroes it in place, corrupting the snapshot): this table lets go
         * of it, once its new entry is on disk, and is expanded as a plain
         * zero cluster. */
        for (uint64_t k = 0; k < l2_users && r == 0; k++)
            r = qcow2_free_later(s, host, s->cluster_size);
        if (r < 0)
            return r;
    }
    if (!x->has_backing) {
        *out = 0;
    } else {
        host = zeroed_cluster(s, x, l2_users, &r);
        *out = host | (l2_users == 1 ? QCOW2_OFLAG_COPIED : 0);
    }
    return r;
}

static int expand_l2(struct qcow2 *s, uint64_t l2_off, void *opaque)
{
    const struct expand *x = opaque;
    uint64_t users;
    int r = qcow2_get_refcount(s, l2_off >> s->cluster_bits, &users);
    if (r < 0)
        return r;
    if (!users)
        return -EIO;            /* an unreferenced table: corrupt */
    struct qcow2_cache_entry *e = qcow2_cache_get(s, &s->l2_cache, l2_off, false, &r);
    for (uint64_t j = 0; e && j < (1ull << s->l2_bits); j++) {
        uint64_t entry = qcow2_be64(e->data + j * 8), host, clen, nent;
        enum qcow2_ctype t = qcow2_entry_type(s, entry, &host, &clen);
        if (t != QCOW2_TYPE_ZERO && t != QCOW2_TYPE_ZERO_ALLOC)
            continue;
        if ((r = expand_entry(s, x, entry, users, &nent)) < 0)
            return r;
        /* Allocation may have written back the cache: fetch it again. */
        if (!(e = qcow2_cache_get(s, &s->l2_cache, l2_off, false, &r)))
            break;
        qcow2_put_be64(e->data + j * 8, nent);
        e->dirty = true;
    }
    return e ? 0 : r;
}

/* ---- the amend operations --------------------------------------------------- */

int qcow2_amend_refcount_bits(struct qcow2 *s, uint32_t bits, char *err, unsigned errlen)
{
    uint32_t order = 0;
    while ((1u << order) < bits)
        order++;
    uint64_t max = bits == 64 ? UINT64_MAX : (1ull << bits) - 1;
    err[0] = 0;
    pthread_mutex_lock(&s->lock);
    int r = writeback_all(s);
    /* Every refcount must fit the new width (QEMU's check and message). */
    for (uint64_t c = 0; r == 0 && c < s->end_cluster; c++) {
        uint64_t rc;
        if ((r = qcow2_get_refcount(s, c, &rc)) == 0 && rc > max) {
            snprintf(err, errlen, "Cannot decrease refcount entry width to %u bits: Cluster "
                     "at offset %#" PRIx64 " has a refcount of %" PRIu64, bits,
                     c << s->cluster_bits, rc);
            r = -EINVAL;
        }
    }
    if (r < 0)
        goto out;
    uint32_t old_order = s->refcount_order;
    unsigned ncache = s->rb_cache.n;
    /* The rebuild writes new blocks at the new width and a table after the
     * end of the file, syncs, then writes the header (with the new order,
     * from s->hdr): the old blocks are left unreferenced, i.e. free. */
    s->refcount_order = order;
    s->refcount_bits = bits;
    s->refcount_max = max;
    s->rpb_bits = s->cluster_bits + 3 - order;
    qcow2_put_be32(s->hdr + 96, order);
    qcow2_cache_free(&s->rb_cache);     /* clean (written back), old width */
    if ((r = qcow2_cache_init(&s->rb_cache, ncache, s->cluster_size)) == 0)
        r = qcow2_rebuild_refcounts(s, err, errlen);
    if (r < 0 && s->reftable_offset == qcow2_be64(s->hdr + 48)) {
        /* Not switched: the old structures are still the image's. */
        s->refcount_order = old_order;
        s->refcount_bits = 1u << old_order;
        s->refcount_max = s->refcount_bits == 64 ? UINT64_MAX : (1ull << s->refcount_bits) - 1;
        s->rpb_bits = s->cluster_bits + 3 - old_order;
        qcow2_put_be32(s->hdr + 96, old_order);
    }
out:
    if (r < 0 && !err[0])
        snprintf(err, errlen, "Failed to change the refcount width: %s", strerror(-r));
    pthread_mutex_unlock(&s->lock);
    return r;
}

int qcow2_amend_upgrade(struct qcow2 *s, const char *backing, const char *backing_fmt,
                        char *err, unsigned errlen)
{
    err[0] = 0;
    pthread_mutex_lock(&s->lock);
    int r = writeback_all(s);
    if (r == 0) {
        /* Version 2 has no feature bits, 16-bit refcounts and zlib. */
        s->version = 3;
        s->incompat = s->compat = s->autoclear = 0;
        s->compression_type = 0;
        if ((r = rewrite_header(s, backing, backing_fmt, err, errlen)) < 0)
            s->version = 2;
    }
    if (r < 0 && !err[0])
        snprintf(err, errlen, "Failed to upgrade the image: %s", strerror(-r));
    pthread_mutex_unlock(&s->lock);
    return r;
}

/* The downgrade's refusals (QEMU's messages), before anything changes. */
static int downgrade_allowed(struct qcow2 *s, const struct qcow2_l1_ref *snaps, uint32_t nsnaps,
                             char *err, unsigned errlen)
{
    uint64_t bad = s->incompat & ~QCOW2_INCOMPAT_COMPRESSION;
    if (bad) {
        snprintf(err, errlen, "Cannot downgrade an image with incompatible features %#" PRIx64
                 " set", bad);
        return -ENOTSUP;
    }
    if (s->compression_type == 0)
        return 0;
    /* Version 2 readers would take zstd clusters for zlib. QEMU looks at the
     * active image only; a snapshot's clusters are just as unreadable. */
    int r = for_each_table(s, snaps, nsnaps, l2_has_compressed, NULL);
    if (r == 1) {
        snprintf(err, errlen, "Cannot downgrade an image with zstd compression type and "
                 "existing compressed clusters");
        return -ENOTSUP;
    }
    return r;
}

int qcow2_amend_downgrade(struct qcow2 *s, const struct qcow2_l1_ref *snaps, uint32_t nsnaps,
                          bool has_backing, const char *backing, const char *backing_fmt,
                          char *err, unsigned errlen)
{
    err[0] = 0;
    if (s->refcount_order != 4) {
        snprintf(err, errlen, "compat=0.10 requires refcount_bits=16");
        return -ENOTSUP;
    }
    uint8_t *zeros = calloc(1, s->cluster_size);
    if (!zeros)
        return -ENOMEM;
    pthread_mutex_lock(&s->lock);
    uint64_t old_compat = s->compat, old_autoclear = s->autoclear, old_incompat = s->incompat;
    int old_ctype = s->compression_type;
    int r = writeback_all(s);
    if (r == 0)
        r = downgrade_allowed(s, snaps, nsnaps, err, errlen);
    if (r < 0)
        goto out;
    /* Version 2 knows no compatible or autoclear features; without lazy
     * refcounts the expansion's allocations need no dirty bit either. */
    s->compat = s->autoclear = 0;
    struct expand x = { .has_backing = has_backing, .zeros = zeros };
    if ((r = for_each_table(s, snaps, nsnaps, expand_l2, &x)) < 0 ||
        (r = writeback_all(s)) < 0) {
        snprintf(err, errlen, "Failed to turn zero into data clusters: %s", strerror(-r));
        goto fail;
    }
    s->version = 2;
    s->incompat = 0;
    s->compression_type = 0;
    if ((r = rewrite_header(s, backing, backing_fmt, err, errlen)) == 0)
        goto out;
    s->version = 3;
    s->incompat = old_incompat;
    s->compression_type = old_ctype;
fail:
    s->compat = old_compat;
    s->autoclear = old_autoclear;
out:
    if (r < 0 && !err[0])
        snprintf(err, errlen, "Failed to downgrade the image: %s", strerror(-r));
    pthread_mutex_unlock(&s->lock);
    free(zeros);
    return r;
}
