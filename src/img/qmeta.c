/* qcow2 header extras and the snapshot table for kvmbox-img (see qmeta.h). */
#include "img/qmeta.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int qhdr_read(struct img *im, struct qhdr *h, char *err, size_t errlen)
{
    struct qcow2 *q = im->q;
    memset(h, 0, sizeof *h);
    uint64_t cs = q->cluster_size;
    uint8_t *hc = malloc(cs);
    if (!hc)
        return -ENOMEM;
    int r = blk_file_pread(&im->file, 0, hc, cs);
    if (r < 0) {
        snprintf(err, errlen, "cannot read the header: %s", strerror(-r));
        free(hc);
        return r;
    }
    uint64_t boff = qcow2_be64(hc + 8);
    uint32_t blen = qcow2_be32(hc + 16);
    if (boff && blen && boff < cs && blen < sizeof h->backing && boff + blen <= cs) {
        memcpy(h->backing, hc + boff, blen);
        h->backing[blen] = 0;
        h->has_backing = true;
    }
    uint32_t hlen = q->version >= 3 ? qcow2_be32(hc + 100) : QCOW2_HDR_V2_LEN;
    uint64_t end = boff && boff >= hlen && boff < cs ? boff : cs;
    for (uint64_t p = hlen; p + 8 <= end;) {
        uint32_t type = qcow2_be32(hc + p), len = qcow2_be32(hc + p + 4);
        p += 8;
        if (type == QCOW2_EXT_END || len > end - p)
            break;
        if (type == QCOW2_EXT_BACKING_FORMAT && len < sizeof h->backing_fmt) {
            memcpy(h->backing_fmt, hc + p, len);
            h->backing_fmt[len] = 0;
            h->has_backing_fmt = true;
        }
        p += ((uint64_t)len + 7) & ~7ull;
    }
    free(hc);
    return 0;
}

void qsnap_free(struct qsnap *s, uint32_t n)
{
    if (!s)
        return;
    for (uint32_t i = 0; i < n; i++) {
        free(s[i].id);
        free(s[i].name);
    }
    free(s);
}

static char *strndup_safe(const uint8_t *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, p, n);
        s[n] = 0;
    }
    return s;
}

int qsnap_read(struct img *im, struct qsnap **out, uint32_t *n, uint64_t *table_bytes,
               char *err, size_t errlen)
{
    struct qcow2 *q = im->q;
    *out = NULL;
    *n = 0;
    if (table_bytes)
        *table_bytes = 0;
    if (!q || !q->nb_snapshots)
        return 0;
    uint32_t cnt = q->nb_snapshots;
    struct qsnap *s = calloc(cnt, sizeof *s);
    if (!s)
        return -ENOMEM;
    uint64_t off = q->snapshots_offset, fsize = im->file.size;
    uint8_t h[40];
    int r = 0;
    for (uint32_t i = 0; i < cnt; i++) {
        if (off + 40 > fsize || off + 40 < off) {
            snprintf(err, errlen, "snapshot table runs past the end of the file");
            r = -EINVAL;
            break;
        }
        if ((r = blk_file_pread(&im->file, off, h, sizeof h)) < 0)
            break;
        struct qsnap *e = &s[i];
        e->l1_offset = qcow2_be64(h);
        e->l1_size = qcow2_be32(h + 8);
        uint16_t idl = qcow2_be16(h + 12), nl = qcow2_be16(h + 14);
        e->date_sec = qcow2_be32(h + 16);
        e->date_nsec = qcow2_be32(h + 20);
        e->vm_clock_nsec = qcow2_be64(h + 24);
        e->vm_state_size = qcow2_be32(h + 32);
        e->extra_len = qcow2_be32(h + 36);
        e->icount = -1;
        e->disk_size = q->size;
        if (e->extra_len > 1024) {
            snprintf(err, errlen, "snapshot %u: extra data too large (%u bytes)", i,
                     e->extra_len);
            r = -EINVAL;
            break;
        }
        uint64_t len = 40 + (uint64_t)e->extra_len + idl + nl;
        if (off + len > fsize) {
            snprintf(err, errlen, "snapshot table runs past the end of the file");
            r = -EINVAL;
            break;
        }
        uint8_t *b = malloc(len);
        if (!b) {
            r = -ENOMEM;
            break;
        }
        if ((r = blk_file_pread(&im->file, off, b, len)) < 0) {
            free(b);
            break;
        }
        const uint8_t *x = b + 40;
        if (e->extra_len >= 8 && qcow2_be64(x))
            e->vm_state_size = qcow2_be64(x);
        if (e->extra_len >= 16)
            e->disk_size = qcow2_be64(x + 8);
        if (e->extra_len >= 24)
            e->icount = (int64_t)qcow2_be64(x + 16);
        e->id = strndup_safe(b + 40 + e->extra_len, idl);
        e->name = strndup_safe(b + 40 + e->extra_len + idl, nl);
        free(b);
        if (!e->id || !e->name) {
            r = -ENOMEM;
            break;
        }
        if ((uint64_t)e->l1_size * 8 > QCOW2_MAX_L1_BYTES ||
            (e->l1_offset & (q->cluster_size - 1)) ||
            e->l1_offset + (uint64_t)e->l1_size * 8 > fsize) {
            snprintf(err, errlen, "snapshot %s has an invalid L1 table", e->id);
            r = -EINVAL;
            i++;
            *n = i;
            break;
        }
        off += (len + 7) & ~7ull;
        *n = i + 1;
    }
    if (r < 0) {
        if (!err[0])
            snprintf(err, errlen, "cannot read the snapshot table: %s", strerror(-r));
        qsnap_free(s, cnt);
        *n = 0;
        return r;
    }
    if (table_bytes)
        *table_bytes = off - q->snapshots_offset;
    *out = s;
    return 0;
}

static uint64_t entry_len(const struct qsnap *e)
{
    uint32_t extra = e->extra_len < 24 ? 24 : e->extra_len;
    return (40 + extra + strlen(e->id) + strlen(e->name) + 7) & ~7ull;
}

uint64_t qsnap_size(const struct qsnap *s, uint32_t n)
{
    uint64_t t = 0;
    for (uint32_t i = 0; i < n; i++)
        t += entry_len(&s[i]);
    return t;
}

void qsnap_serialise(const struct qsnap *s, uint32_t n, uint8_t *buf)
{
    uint8_t *p = buf;
    for (uint32_t i = 0; i < n; i++) {
        const struct qsnap *e = &s[i];
        uint64_t len = entry_len(e);
        uint32_t extra = e->extra_len < 24 ? 24 : e->extra_len;
        memset(p, 0, len);
        qcow2_put_be64(p, e->l1_offset);
        qcow2_put_be32(p + 8, e->l1_size);
        qcow2_put_be16(p + 12, (uint16_t)strlen(e->id));
        qcow2_put_be16(p + 14, (uint16_t)strlen(e->name));
        qcow2_put_be32(p + 16, e->date_sec);
        qcow2_put_be32(p + 20, e->date_nsec);
        qcow2_put_be64(p + 24, e->vm_clock_nsec);
        qcow2_put_be32(p + 32, e->vm_state_size > UINT32_MAX ? 0 : (uint32_t)e->vm_state_size);
        qcow2_put_be32(p + 36, extra);
        qcow2_put_be64(p + 40, e->vm_state_size);
        qcow2_put_be64(p + 48, e->disk_size);
        qcow2_put_be64(p + 56, (uint64_t)e->icount);
        memcpy(p + 40 + extra, e->id, strlen(e->id));
        memcpy(p + 40 + extra + strlen(e->id), e->name, strlen(e->name));
        p += len;
    }
}

int img_qcow2_set_backing(struct img *im, const char *name, const char *fmt)
{
    struct qcow2 *q = im->q;
    uint64_t cs = q->cluster_size;
    size_t nlen = name ? strlen(name) : 0;
    if (nlen > 1023)
        return -ENAMETOOLONG;
    uint8_t *hc = malloc(cs), *nh = calloc(1, cs);
    int r = -ENOMEM;
    if (!hc || !nh)
        goto out;
    if ((r = blk_file_pread(&im->file, 0, hc, cs)) < 0)
        goto out;
    uint32_t hlen = q->version >= 3 ? qcow2_be32(hc + 100) : QCOW2_HDR_V2_LEN;
    uint64_t boff = qcow2_be64(hc + 8);
    uint64_t end = boff && boff >= hlen && boff < cs ? boff : cs;
    memcpy(nh, hc, hlen);
    uint64_t p = hlen;
    if (nlen && fmt && *fmt) {
        uint32_t fl = (uint32_t)strlen(fmt);
        qcow2_put_be32(nh + p, QCOW2_EXT_BACKING_FORMAT);
        qcow2_put_be32(nh + p + 4, fl);
        memcpy(nh + p + 8, fmt, fl);
        p += 8 + ((fl + 7u) & ~7u);
    }
    /* Keep every other extension. */
    for (uint64_t x = hlen; x + 8 <= end;) {
        uint32_t type = qcow2_be32(hc + x), len = qcow2_be32(hc + x + 4);
        if (type == QCOW2_EXT_END || len > end - x - 8)
            break;
        uint64_t total = 8 + (((uint64_t)len + 7) & ~7ull);
        if (type != QCOW2_EXT_BACKING_FORMAT) {
            if (p + total + 8 + nlen > cs) {
                r = -ENOSPC;
                goto out;
            }
            memcpy(nh + p, hc + x, total);
            p += total;
        }
        x += total;
    }
    p += 8;     /* end of extensions */
    if (p + nlen > cs) {
        r = -ENOSPC;
        goto out;
    }
    memcpy(nh + p, name ? name : "", nlen);
    qcow2_put_be64(nh + 8, nlen ? p : 0);
    qcow2_put_be32(nh + 16, (uint32_t)nlen);
    if ((r = blk_file_pwrite(&im->file, 0, nh, cs)) == 0)
        r = blk_file_flush(&im->file);
    /* The driver rewrites its header copy later: keep it in step. */
    memcpy(q->hdr + 8, nh + 8, 12);
out:
    free(hc);
    free(nh);
    return r;
}

int qsnap_find(const struct qsnap *s, uint32_t n, const char *id, const char *name)
{
    for (uint32_t i = 0; i < n; i++)
        if ((!id || !strcmp(s[i].id, id)) && (!name || !strcmp(s[i].name, name)))
            return (int)i;
    return -1;
}

int qsnap_find_id_or_name(const struct qsnap *s, uint32_t n, const char *key)
{
    int i = qsnap_find(s, n, key, NULL);
    return i >= 0 ? i : qsnap_find(s, n, NULL, key);
}

int qsnap_read_l1(struct qcow2 *q, const struct qsnap *e, uint64_t entries, uint64_t **out)
{
    uint64_t n = entries > e->l1_size ? entries : e->l1_size;
    uint64_t bytes = (uint64_t)e->l1_size * 8;
    uint64_t *l1 = calloc(n + 1, sizeof *l1);
    uint8_t *raw = malloc(bytes + 8);
    int r = -ENOMEM;
    if (l1 && raw)
        r = blk_file_pread(q->file, e->l1_offset, raw, bytes);
    for (uint32_t i = 0; r == 0 && i < e->l1_size; i++)
        l1[i] = qcow2_be64(raw + (uint64_t)i * 8);
    free(raw);
    if (r < 0) {
        free(l1);
        l1 = NULL;
    }
    *out = l1;
    return r;
}

uint64_t qmeta_l1_entries(const struct qcow2 *q, uint64_t size)
{
    uint64_t clusters = (size + q->cluster_size - 1) >> q->cluster_bits;
    uint64_t per_l2 = 1ull << q->l2_bits;
    return (clusters + per_l2 - 1) / per_l2;
}

int qmeta_grow_l1(struct qcow2 *s, uint64_t need)
{
    uint64_t cs = s->cluster_size;
    uint64_t nclusters = (need * 8 + cs - 1) / cs;
    if (need <= s->l1_size)
        return 0;
    if (need * 8 > QCOW2_MAX_L1_BYTES || nclusters > qcow2_max_alloc(s))
        return -EFBIG;
    uint64_t *nl1 = calloc(need, sizeof *nl1);
    uint8_t *buf = calloc(nclusters, cs);
    if (!nl1 || !buf) {
        free(nl1);
        free(buf);
        return -ENOMEM;
    }
    memcpy(nl1, s->l1, (size_t)s->l1_size * 8);
    for (uint64_t i = 0; i < need; i++)
        qcow2_put_be64(buf + i * 8, nl1[i]);
    int r = 0;
    uint64_t off = qcow2_alloc_clusters(s, nclusters, &r);
    /* New table and its refcounts durable, then the header switch. */
    if (off)
        r = blk_file_pwrite(s->file, off, buf, nclusters * cs);
    free(buf);
    if (off && r == 0)
        r = qcow2_meta_writeback(s, true, false);
    if (r < 0) {
        free(nl1);
        return r;
    }
    uint64_t old_off = s->l1_offset, old_bytes = (uint64_t)s->l1_size * 8;
    free(s->l1);
    s->l1 = nl1;
    s->l1_offset = off;
    s->l1_size = (uint32_t)need;
    qcow2_put_be32(s->hdr + 36, s->l1_size);
    qcow2_put_be64(s->hdr + 40, s->l1_offset);
    if ((r = qcow2_write_header(s)) < 0 || (r = blk_file_flush(s->file)) < 0)
        return r;
    if (old_bytes)
        r = qcow2_free_later(s, old_off, old_bytes);
    return r;
}
