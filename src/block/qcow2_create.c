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

static uint64_t put_ext(uint8_t *h, uint64_t p, uint32_t type, const void *data, uint32_t len)
{
    qcow2_put_be32(h + p, type);
    qcow2_put_be32(h + p + 4, len);
    memcpy(h + p + 8, data, len);
    return p + 8 + ((len + 7u) & ~7u);
}

int qcow2_create(const char *path, const struct qcow2_create_options *o, char *err,
                 unsigned errlen)
{
    uint64_t cs = o->cluster_size ? o->cluster_size : 65536;
    if (cs < 512 || cs > (2u << 20) || (cs & (cs - 1))) {
        snprintf(err, errlen, "Cluster size must be a power of two between 512 and 2048k");
        return -EINVAL;
    }
    if (o->lazy_refcounts && o->compat_v2) {
        snprintf(err, errlen, "Lazy refcounts only supported with compatibility level 1.1 "
                 "and above (use compat=1.1 or greater)");
        return -EINVAL;
    }
    if (o->backing_fmt && !o->backing_file) {
        snprintf(err, errlen, "Backing format cannot be used without backing file");
        return -EINVAL;
    }
    size_t blen = o->backing_file ? strlen(o->backing_file) : 0;
    if (blen > 1023) {
        snprintf(err, errlen, "Backing file name too long");
        return -EINVAL;
    }
    unsigned cb = 0;
    while ((1ull << cb) < cs)
        cb++;
    uint64_t l2e = cs / 8, rpb = cs * 8 / 16;     /* 16-bit refcounts */
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

    /* Header (spec "Header"). */
    uint8_t *h = calloc(1, cs);
    uint8_t *buf = calloc(1, cs);
    uint8_t *l1 = calloc(l1c, cs);
    int fd = -1, r = -ENOMEM;
    if (!h || !buf || !l1)
        goto out;
    uint32_t hlen = o->compat_v2 ? QCOW2_HDR_V2_LEN : QCOW2_HDR_MAX_LEN;
    qcow2_put_be32(h, QCOW2_MAGIC);
    qcow2_put_be32(h + 4, o->compat_v2 ? 2 : 3);
    qcow2_put_be32(h + 20, cb);
    qcow2_put_be64(h + 24, o->size);
    qcow2_put_be32(h + 36, (uint32_t)l1_size);
    qcow2_put_be64(h + 40, l1_c * cs);
    qcow2_put_be64(h + 48, rt_c * cs);
    qcow2_put_be32(h + 56, (uint32_t)T);
    if (!o->compat_v2) {
        qcow2_put_be64(h + 80, o->lazy_refcounts ? QCOW2_COMPAT_LAZY_REFCOUNTS : 0);
        qcow2_put_be32(h + 96, 4);      /* refcount_order: 16 bits */
        qcow2_put_be32(h + 100, hlen);  /* compression_type (104) 0: zlib */
    }
    uint64_t p = hlen;
    if (o->backing_fmt)
        p = put_ext(h, p, QCOW2_EXT_BACKING_FORMAT, o->backing_fmt,
                    (uint32_t)strlen(o->backing_fmt));
    uint64_t nf = sizeof feature_names / sizeof feature_names[0];
    if (p + 8 + nf * 48 + 8 + blen <= cs) {
        uint8_t ft[sizeof feature_names / sizeof feature_names[0] * 48];
        memset(ft, 0, sizeof ft);
        for (uint64_t i = 0; i < nf; i++) {
            ft[i * 48] = feature_names[i].type;
            ft[i * 48 + 1] = feature_names[i].bit;
            memcpy(ft + i * 48 + 2, feature_names[i].name, strlen(feature_names[i].name));
        }
        p = put_ext(h, p, QCOW2_EXT_FEATURE_TABLE, ft, (uint32_t)sizeof ft);
    }
    p += 8;     /* end of extensions */
    if (blen) {
        if (p + blen > cs) {
            snprintf(err, errlen, "Backing file name does not fit in the header cluster");
            r = -EINVAL;
            goto out;
        }
        memcpy(h + p, o->backing_file, blen);
        qcow2_put_be64(h + 8, p);
        qcow2_put_be32(h + 16, (uint32_t)blen);
    }

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
            qcow2_put_be16(buf + i * 2, 1);
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
