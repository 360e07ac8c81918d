/* qcow2 image creation (QEMU's docs/interop/qcow2.txt). Layout of a new
 * image, all cluster aligned:
 *   cluster 0        header, header extensions, backing file name
 *   reftable         T clusters
 *   refcount blocks  B clusters (cover everything below, themselves too)
 *   L1 table
 *   preallocation=metadata: every L2 table, then every data cluster (the
 *   file is sparse there, so they read as zeros)
 * Every cluster in the image has refcount 1. */
#include "block/qcow2_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int pwrite_all(int fd, const void *buf, uint64_t len, uint64_t off)
{
    const uint8_t *p = buf;
    while (len) {
        ssize_t n = pwrite(fd, p, len > (1u << 30) ? (1u << 30) : (size_t)len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        off += (uint64_t)n;
        len -= (uint64_t)n;
    }
    return 0;
}

/* Spec "Feature name table": what qemu-img info shows for the bits. */
static const struct { uint8_t type, bit; const char *name; } feature_names[] = {
    { 0, 0, "dirty bit" }, { 0, 1, "corrupt bit" }, { 0, 2, "external data file" },
    { 0, 3, "compression type" }, { 0, 4, "extended L2 entries" },
    { 1, 0, "lazy refcounts" }, { 2, 0, "bitmaps" }, { 2, 1, "raw external data" },
};
enum { FEATURE_TABLE_LEN = sizeof feature_names / sizeof feature_names[0] * 48 };

static uint64_t put_ext(uint8_t *h, uint64_t p, uint32_t type, const void *data, uint32_t len)
{
    qcow2_put_be32(h + p, type);
    qcow2_put_be32(h + p + 4, len);
    memcpy(h + p + 8, data, len);
    return p + 8 + ((len + 7u) & ~7u);
}

static void put_header_fields(uint8_t *h, const struct qcow2_hdr_desc *d)
{
    qcow2_put_be32(h, QCOW2_MAGIC);
    qcow2_put_be32(h + 4, d->version);
    qcow2_put_be32(h + 20, d->cluster_bits);
    qcow2_put_be64(h + 24, d->size);
    qcow2_put_be32(h + 36, d->l1_size);
    qcow2_put_be64(h + 40, d->l1_offset);
    qcow2_put_be64(h + 48, d->reftable_offset);
    qcow2_put_be32(h + 56, d->reftable_clusters);
    qcow2_put_be32(h + 60, d->nb_snapshots);
    qcow2_put_be64(h + 64, d->snapshots_offset);
    if (d->version < 3)
        return;
    qcow2_put_be64(h + 72, d->incompat);
    qcow2_put_be64(h + 80, d->compat);
    qcow2_put_be64(h + 88, d->autoclear);
    qcow2_put_be32(h + 96, d->refcount_order);
    qcow2_put_be32(h + 100, QCOW2_HDR_MAX_LEN);
    h[104] = (uint8_t)d->compression_type;     /* 105..111: padding */
}

int qcow2_header_build(uint8_t *h, uint64_t cs, const struct qcow2_hdr_desc *d, char *err,
                       unsigned errlen)
{
    size_t blen = d->backing_file ? strlen(d->backing_file) : 0;
    size_t flen = d->backing_fmt ? strlen(d->backing_fmt) : 0;
    memset(h, 0, cs);
    put_header_fields(h, d);
    uint64_t p = d->version < 3 ? QCOW2_HDR_V2_LEN : QCOW2_HDR_MAX_LEN;
    /* What must fit: extensions, end marker, backing file name. */
    uint64_t need = p + (flen ? 8 + ((flen + 7) & ~7ull) : 0) + d->other_ext_len + 8 + blen;
    if (blen > 1023 || flen > 1023 || need > cs) {
        snprintf(err, errlen, blen > 1023 ? "Backing file name too long"
                 : "Backing file name does not fit in the header cluster");
        return -EINVAL;
    }
    if (flen)
        p = put_ext(h, p, QCOW2_EXT_BACKING_FORMAT, d->backing_fmt, (uint32_t)flen);
    /* Version 2 readers predate the table; QEMU writes it from version 3
     * on, and only if it fits (512-byte clusters). */
    if (d->version >= 3 && need + 8 + FEATURE_TABLE_LEN <= cs) {
        uint8_t ft[FEATURE_TABLE_LEN];
        memset(ft, 0, sizeof ft);
        for (size_t i = 0; i < sizeof feature_names / sizeof feature_names[0]; i++) {
            ft[i * 48] = feature_names[i].type;
            ft[i * 48 + 1] = feature_names[i].bit;
            memcpy(ft + i * 48 + 2, feature_names[i].name, strlen(feature_names[i].name));
        }
        p = put_ext(h, p, QCOW2_EXT_FEATURE_TABLE, ft, (uint32_t)sizeof ft);
    }
    if (d->other_ext_len)
        memcpy(h + p, d->other_ext, d->other_ext_len);
    p += d->other_ext_len + 8;      /* end of extensions (zeros) */
    if (blen) {
        memcpy(h + p, d->backing_file, blen);
        qcow2_put_be64(h + 8, p);
        qcow2_put_be32(h + 16, (uint32_t)blen);
    }
    return 0;
}

/* The options qcow2_create refuses (the messages are QEMU's). */
static int check_options(const struct qcow2_create_options *o, char *err, unsigned errlen)
{
    uint64_t cs = o->cluster_size ? o->cluster_size : 65536;
    uint32_t rb = o->refcount_bits ? o->refcount_bits : 16;
    const char *why = NULL;
    if (cs < 512 || cs > (2u << 20) || (cs & (cs - 1)))
        why = "Cluster size must be a power of two between 512 and 2048k";
    else if (o->backing_fmt && !o->backing_file)
        why = "Backing format cannot be used without backing file";
    else if (o->lazy_refcounts && o->compat_v2)
        why = "Lazy refcounts only supported with compatibility level 1.1 and above "
              "(use version=v3 or greater)";
    else if (rb > 64 || (rb & (rb - 1)))
        why = "Refcount width must be a power of two and may not exceed 64 bits";
    else if (rb != 16 && o->compat_v2)
        why = "Different refcount widths than 16 bits require compatibility level 1.1 or "
              "above (use version=v3 or greater)";
    else if (o->compression != QCOW2_COMPRESSION_ZLIB && o->compat_v2)
        why = "Non-zlib compression type is only supported with compatibility level 1.1 "
              "and above (use version=v3 or greater)";
    else if (o->compression > QCOW2_COMPRESSION_ZSTD)
        why = "Unknown compression type";
    if (!why)
        return 0;
    snprintf(err, errlen, "%s", why);
    return -EINVAL;
}

int qcow2_create(const char *path, const struct qcow2_create_options *o, char *err,
                 unsigned errlen)
{
    int r = check_options(o, err, errlen);
    if (r < 0)
        return r;
    uint64_t cs = o->cluster_size ? o->cluster_size : 65536;
    uint32_t rbits = o->refcount_bits ? o->refcount_bits : 16;
    unsigned cb = 0, order = 0;
    while ((1ull << cb) < cs)
        cb++;
    while ((1u << order) < rbits)
        order++;
    uint64_t l2e = cs / 8, rpb = cs * 8 / rbits;
    uint64_t gcl = (o->size + cs - 1) / cs;
    uint64_t l1_size = (gcl + l2e - 1) / l2e;
    if (l1_size * 8 > QCOW2_MAX_L1_BYTES) {
        snprintf(err, errlen, "Image size too large for the cluster size");
        return -EFBIG;
    }
    uint64_t l1c = (l1_size * 8 + cs - 1) / cs;
    if (!l1c)
        l1c = 1;
    bool meta = o->prealloc == QCOW2_PREALLOC_METADATA;
    uint64_t used = 1 + l1c + (meta ? l1_size + gcl : 0), T = 0, B = 0;
    for (;;) {
        uint64_t nb = (used + T + B + rpb - 1) / rpb;
        uint64_t nt = (nb * 8 + cs - 1) / cs;
        if (nb == B && nt == T)
            break;
        B = nb;
        T = nt;
    }
    if (T * cs > QCOW2_MAX_REFTABLE_BYTES) {
        snprintf(err, errlen, "Image too large for preallocation with this cluster size");
        return -EFBIG;
    }
    uint64_t total = used + T + B;
    uint64_t rt_c = 1, rb_c = 1 + T, l1_c = rb_c + B, l2_c = l1_c + l1c, d_c = l2_c + l1_size;

    uint8_t *h = calloc(1, cs);
    uint8_t *buf = calloc(1, cs);
    uint8_t *l1 = calloc(l1c, cs);
    int fd = -1;
    r = -ENOMEM;
    if (!h || !buf || !l1)
        goto out;
    bool zstd = o->compression == QCOW2_COMPRESSION_ZSTD;
    struct qcow2_hdr_desc d = {
        .version = o->compat_v2 ? 2 : 3, .cluster_bits = cb, .size = o->size,
        .l1_size = (uint32_t)l1_size, .l1_offset = l1_c * cs,
        .reftable_offset = rt_c * cs, .reftable_clusters = (uint32_t)T,
        .incompat = zstd ? QCOW2_INCOMPAT_COMPRESSION : 0,
        .compat = o->lazy_refcounts ? QCOW2_COMPAT_LAZY_REFCOUNTS : 0,
        .refcount_order = order, .compression_type = o->compression,
        .backing_file = o->backing_file && *o->backing_file ? o->backing_file : NULL,
        .backing_fmt = o->backing_fmt,
    };
    if ((r = qcow2_header_build(h, cs, &d, err, errlen)) < 0)
        goto out;

    fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        r = -errno;
        snprintf(err, errlen, "Could not create '%s': %s", path, strerror(errno));
        goto out;
    }
    if ((r = pwrite_all(fd, h, cs, 0)) < 0)
        goto io;
    /* Refcount table and blocks: every cluster below `total` has refcount 1. */
    uint8_t *rt = calloc(T, cs);
    if (!rt) {
        r = -ENOMEM;
        goto out;
    }
    for (uint64_t b = 0; b < B; b++)
        qcow2_put_be64(rt + b * 8, (rb_c + b) * cs);
    r = pwrite_all(fd, rt, T * cs, rt_c * cs);
    free(rt);
    if (r < 0)
        goto io;
    for (uint64_t b = 0; b < B; b++) {
        memset(buf, 0, cs);
        for (uint64_t i = 0; i < rpb && b * rpb + i < total; i++)
            qcow2_refblock_put(rbits, buf, i, 1);
        if ((r = pwrite_all(fd, buf, cs, (rb_c + b) * cs)) < 0)
            goto io;
    }
    if (meta) {
        for (uint64_t i = 0; i < l1_size; i++) {
            qcow2_put_be64(l1 + i * 8, ((l2_c + i) * cs) | QCOW2_OFLAG_COPIED);
            memset(buf, 0, cs);
            for (uint64_t j = 0; j < l2e && i * l2e + j < gcl; j++)
                qcow2_put_be64(buf + j * 8, ((d_c + i * l2e + j) * cs) | QCOW2_OFLAG_COPIED);
            if ((r = pwrite_all(fd, buf, cs, (l2_c + i) * cs)) < 0)
                goto io;
        }
    }
    if ((r = pwrite_all(fd, l1, l1c * cs, l1_c * cs)) < 0)
        goto io;
    if (ftruncate(fd, (off_t)(total * cs)) < 0 || fsync(fd) < 0) {
        r = -errno;
        goto io;
    }
    r = 0;
    goto out;
io:
    snprintf(err, errlen, "Could not write '%s': %s", path, strerror(-r));
out:
    if (r == -ENOMEM)
        snprintf(err, errlen, "'%s': out of memory", path);
    if (fd >= 0)
        close(fd);
    free(h);
    free(buf);
    free(l1);
    return r;
}
