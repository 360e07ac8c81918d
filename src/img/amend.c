/* kvmbox-img amend: change a qcow2 image's options in place, as qemu-img
 * amend does (same checks, messages and order): compat (0.10 <-> 1.1),
 * refcount_bits, lazy_refcounts, size. Options only creation takes
 * (cluster_size, compression_type, preallocation, ...) are refused, and so
 * is a backing_file/backing_fmt other than the image's (use rebase), as
 * qemu-img does. The metadata work is the driver's
 * (qcow2_amend.c): new structures are durable before the header switches. */
#include "img/img.h"
#include "img/qcow2_opts.h"
#include "img/qmeta.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* QEMU's qcow2 amend options; the encrypt.* ones only apply to LUKS. */
static const char *const amend_keys[] = {
    "encrypt.state", "encrypt.keyslot", "encrypt.old-secret", "encrypt.new-secret",
    "encrypt.iter-time", "size", "compat", "backing_file", "backing_fmt", "data_file",
    "data_file_raw", "lazy_refcounts", "refcount_bits", NULL,
};
/* QEMU's qcow2 creation options (for the "only for creation" hint). */
static const char *const create_keys[] = {
    "encryption", "encrypt.format", "encrypt.key-secret", "encrypt.cipher-alg",
    "encrypt.cipher-mode", "encrypt.ivgen-alg", "encrypt.ivgen-hash-alg", "encrypt.hash-alg",
    "encrypt.iter-time", "cluster_size", "extended_l2", "preallocation", "compression_type",
    "size", "compat", "backing_file", "backing_fmt", "data_file", "data_file_raw",
    "lazy_refcounts", "refcount_bits", NULL,
};

static bool in_list(const char *const *l, const char *k)
{
    for (; *l; l++)
        if (!strcmp(*l, k))
            return true;
    return false;
}

/* One option value as QemuOpts types it; loud: qemu-img's message if bad. */
static bool value_ok(const char *key, const char *val, bool loud)
{
    uint64_t n;
    bool b;
    if (!strcmp(key, "size") || !strcmp(key, "cluster_size")) {
        if (img_parse_size(val, &n))
            return true;
        if (loud) {
            img_err("Parameter '%s' expects a non-negative number below 2^64", key);
            fprintf(stderr, "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, "
                    "tera-, peta-\nand exabytes, respectively.\n");
        }
        return false;
    }
    if (!strcmp(key, "lazy_refcounts") || !strcmp(key, "data_file_raw") ||
        !strcmp(key, "extended_l2") || !strcmp(key, "encryption")) {
        if (img_parse_bool(val, &b))
            return true;
        if (loud)
            img_err("Parameter '%s' expects 'on' or 'off'", key);
        return false;
    }
    if (!strcmp(key, "refcount_bits") || !strcmp(key, "encrypt.iter-time") ||
        !strcmp(key, "encrypt.keyslot"))
        return img_opt_number(loud ? "" : NULL, key, val, &n);
    return true;
}

/* The -o list parsed, in order, as qemu-img amend parses it; on the first
 * bad option its message, and the hint if the list would create an image. */
static bool parse_opts(const struct img_opts *o)
{
    for (unsigned i = 0; i < o->n; i++) {
        if (!in_list(amend_keys, o->key[i])) {
            img_err("Invalid parameter '%s'", o->key[i]);
            bool creatable = true;
            for (unsigned j = 0; j < o->n && creatable; j++)
                creatable = in_list(create_keys, o->key[j]) &&
                            value_ok(o->key[j], o->val[j], false);
            if (creatable)
                fprintf(stderr, "This option is only supported for image creation\n");
            return false;
        }
        if (!value_ok(o->key[i], o->val[i], true))
            return false;
    }
    return true;
}

/* What the options ask for. */
struct amend {
    uint32_t version;       /* target: 2 or 3 */
    bool lazy;              /* lazy refcounts wanted */
    int refcount_bits;
    uint64_t size;          /* 0: unchanged (as QEMU) */
    const char *backing, *backing_fmt;
    bool set_backing;
};

/* QEMU's checks before changing anything, in its order (the order of its
 * option list, not of the -o list). */
static bool check_opts(const struct img_opts *o, const struct qcow2 *q, struct amend *a)
{
    const char *v;
    for (unsigned i = 0; i < o->n; i++)
        if (!strncmp(o->key[i], "encrypt.", 8)) {
            img_err("Can't amend encryption options - encryption not present");
            return false;
        }
    a->version = q->version;
    if ((v = img_opts_get(o, "compat"))) {
        if (!strcmp(v, "0.10") || !strcmp(v, "v2")) {
            a->version = 2;
        } else if (!strcmp(v, "1.1") || !strcmp(v, "v3")) {
            a->version = 3;
        } else {
            img_err("Unknown compatibility level %s", v);
            return false;
        }
    }
    if (img_opts_get(o, "data_file")) {
        img_err("data-file can only be set for images that use an external data file");
        return false;
    }
    bool raw = false;
    if ((v = img_opts_get(o, "data_file_raw")) && img_parse_bool(v, &raw) && raw) {
        img_err("data-file-raw cannot be set on existing images");
        return false;
    }
    a->lazy = q->compat & QCOW2_COMPAT_LAZY_REFCOUNTS;
    if ((v = img_opts_get(o, "lazy_refcounts")))
        img_parse_bool(v, &a->lazy);
    a->refcount_bits = (int)q->refcount_bits;
    uint64_t n;
    if ((v = img_opts_get(o, "refcount_bits")) && img_opt_number(NULL, "", v, &n)) {
        a->refcount_bits = (int)(uint32_t)n;    /* QEMU keeps it in an int */
        if (!img_refcount_bits_ok(a->refcount_bits)) {
            img_err("Refcount width must be a power of two and may not exceed 64 bits");
            return false;
        }
    }
    if ((v = img_opts_get(o, "size")))
        img_parse_size(v, &a->size);
    a->backing = img_opts_get(o, "backing_file");
    a->backing_fmt = img_opts_get(o, "backing_fmt");
    a->set_backing = a->backing || a->backing_fmt;
    return true;
}

/* The snapshots' L1 tables, for the driver (NULL when there are none). */
static struct qcow2_l1_ref *snapshot_l1s(const struct qsnap *sn, uint32_t n)
{
    struct qcow2_l1_ref *l = calloc(n + 1, sizeof *l);
    for (uint32_t i = 0; l && i < n; i++)
        l[i] = (struct qcow2_l1_ref){ sn[i].l1_offset, sn[i].l1_size };
    return l;
}

/* Version 3 wants every snapshot's 64-bit VM state size and disk size
 * (extra data of 16 bytes or more). A table without them is written anew
 * (qsnap_serialise writes both) to new clusters, made durable; the header
 * switches to it with the upgrade. old_bytes: the size of the old table to free
 * after that (0 bytes: none). */
static int snapshots_for_v3(struct qcow2 *q, const struct qsnap *sn, uint32_t n,
                            uint64_t tbytes, uint64_t *old_bytes)
{
    bool need = false;
    for (uint32_t i = 0; i < n; i++)
        need |= sn[i].extra_len < 16;
    *old_bytes = 0;
    if (!need)
        return 0;
    uint64_t bytes = qsnap_size(sn, n), ncl = (bytes + q->cluster_size - 1) >> q->cluster_bits;
    if (ncl > qcow2_max_alloc(q))
        return -EFBIG;
    uint8_t *buf = calloc(ncl, q->cluster_size);
    if (!buf)
        return -ENOMEM;
    qsnap_serialise(sn, n, buf);
    int r = 0;
    pthread_mutex_lock(&q->lock);
    uint64_t off = qcow2_alloc_clusters(q, ncl, &r);
    if (off && (r = blk_file_pwrite(q->file, off, buf, ncl << q->cluster_bits)) == 0) {
        q->snapshots_offset = off;
        *old_bytes = tbytes;
    }
    pthread_mutex_unlock(&q->lock);
    free(buf);
    return r;
}

/* compat=1.1 on a version 2 image. */
static int upgrade(struct img *im, const struct qhdr *h, const char **msg, char *err,
                   unsigned errlen)
{
    struct qcow2 *q = im->q;
    struct qsnap *sn = NULL;
    uint32_t n = 0;
    uint64_t tbytes = 0, old_off = q->snapshots_offset, old_bytes = 0;
    int r = qsnap_read(im, &sn, &n, &tbytes, err, errlen);
    if (r == 0)
        r = snapshots_for_v3(q, sn, n, tbytes, &old_bytes);
    if (r == 0)
        r = qcow2_amend_upgrade(q, h->has_backing ? h->backing : NULL,
                                h->has_backing_fmt ? h->backing_fmt : NULL, err, errlen);
    if (r == 0 && old_bytes) {
        pthread_mutex_lock(&q->lock);
        r = qcow2_free_later(q, old_off, old_bytes);
        pthread_mutex_unlock(&q->lock);
    }
    if (r < 0 && err[0])
        *msg = err;
    qsnap_free(sn, n);
    return r;
}

/* compat=0.10 on a version 3 image (QEMU's snapshot rule first: version 2
 * cannot describe a snapshot of another size or a VM state over 4 GiB). */
static int downgrade(struct img *im, const char **msg, char *err, unsigned errlen)
{
    struct qcow2 *q = im->q;
    struct qhdr h;
    struct qsnap *sn = NULL;
    uint32_t n = 0;
    int r = qhdr_read(im, &h, err, errlen);
    if (r == 0)
        r = qsnap_read(im, &sn, &n, NULL, err, errlen);
    for (uint32_t i = 0; r == 0 && i < n; i++)
        if (sn[i].vm_state_size > UINT32_MAX || sn[i].disk_size != q->size) {
            snprintf(err, errlen, "Internal snapshots prevent downgrade of image");
            r = -ENOTSUP;
        }
    struct qcow2_l1_ref *l1s = r == 0 ? snapshot_l1s(sn, n) : NULL;
    if (r == 0 && !l1s)
        r = -ENOMEM;
    if (r == 0)
        r = qcow2_amend_downgrade(q, l1s, n, h.has_backing, h.has_backing ? h.backing : NULL,
                                  h.has_backing_fmt ? h.backing_fmt : NULL, err, errlen);
    if (r < 0 && err[0])
        *msg = err;
    free(l1s);
    qsnap_free(sn, n);
    return r;
}

/* lazy_refcounts=on|off (compat 1.1). Off: the refcounts are exact after
 * the write-back, so the image is clean without the feature. */
static int set_lazy(struct qcow2 *q, bool on)
{
    pthread_mutex_lock(&q->lock);
    int r = qcow2_meta_writeback(q, true, true);
    if (r == 0) {
        q->compat = on ? q->compat | QCOW2_COMPAT_LAZY_REFCOUNTS
                       : q->compat & ~QCOW2_COMPAT_LAZY_REFCOUNTS;
        qcow2_put_be64(q->hdr + 80, q->compat);
        if (q->lazy_dirty_set) {        /* written back: exact refcounts */
            q->incompat &= ~QCOW2_INCOMPAT_DIRTY;
            q->lazy_dirty_set = false;
        }
        r = qcow2_write_header(q);
    }
    if (r == 0)
        r = qcow2_sync(q);
    pthread_mutex_unlock(&q->lock);
    return r;
}

/* The changes, in QEMU's order: upgrade first (the rest may need 1.1),
 * refcount width, backing name, lazy refcounts, size, downgrade last. *msg
 * is set for failures that have their own message. */
static int apply(struct img *im, const struct amend *a, const char **msg, char *err,
                 unsigned errlen)
{
    struct qcow2 *q = im->q;
    struct qhdr h;
    int r = 0;
    err[0] = 0;
    if (a->version > q->version && ((r = qhdr_read(im, &h, err, errlen)) < 0 ||
                                    (r = upgrade(im, &h, msg, err, errlen)) < 0))
        return r;
    if ((uint32_t)a->refcount_bits != q->refcount_bits) {
        if (a->version < 3 && a->refcount_bits != 16) {
            *msg = "Refcount widths other than 16 bits require compatibility level 1.1 or "
                   "above (use compat=1.1 or greater)";
            return -EINVAL;
        }
        if ((r = qcow2_amend_refcount_bits(q, (uint32_t)a->refcount_bits, err, errlen)) < 0) {
            *msg = err;
            return r;
        }
    }
    if (a->set_backing) {
        /* Only the names the image already has are accepted (a missing
         * option counts as "none", as in qemu-img). */
        if ((r = qhdr_read(im, &h, err, errlen)) < 0)
            return r;
        const char *cur = h.has_backing ? h.backing : NULL;
        const char *cur_fmt = h.has_backing_fmt ? h.backing_fmt : NULL;
        if (!a->backing != !cur || !a->backing_fmt != !cur_fmt ||
            (cur && strcmp(a->backing, cur)) || (cur_fmt && strcmp(a->backing_fmt, cur_fmt))) {
            *msg = "Cannot amend the backing file\nYou can use 'kvmbox-img rebase' instead.";
            return -EINVAL;
        }
    }
    if (a->lazy != !!(q->compat & QCOW2_COMPAT_LAZY_REFCOUNTS)) {
        if (a->lazy && a->version < 3) {
            *msg = "Lazy refcounts only supported with compatibility level 1.1 and above "
                   "(use compat=1.1 or greater)";
            return -EINVAL;
        }
        if ((r = set_lazy(q, a->lazy)) < 0)
            return r;
    }
    if (a->size && a->size != q->size && (r = img_qcow2_resize(im, a->size)) < 0)
        return r;
    if (a->version < q->version)
        r = downgrade(im, msg, err, errlen);
    return r;
}

static int amend_image(const char *name, const char *fmt, const struct img_opts *o,
                       bool progress)
{
    struct img im;
    /* With its backing chain, as qemu-img: size= growth zeroes what a
     * longer backing file would show (img_qcow2_resize). */
    if (img_open(&im, name, fmt, IMG_RW) < 0)
        return 1;
    int ret = 1;
    struct amend a = { 0 };
    if (!im.q) {
        img_err("Format driver '%s' does not support option amendment", im.fmt);
    } else if (parse_opts(o) && check_opts(o, im.q, &a)) {
        char err[512];
        const char *msg = NULL;
        img_progress(progress, 0.0);
        int r = apply(&im, &a, &msg, err, sizeof err);
        img_progress(progress, 100.0);
        img_progress_end(progress);
        if (r < 0 && msg)
            img_err("%s", msg);
        else if (r < 0)
            img_err("Error while amending options: %s", strerror(-r));
        ret = r < 0;
    }
    if (img_close(&im) < 0)
        ret = 1;
    return ret;
}

int img_amend(int argc, char **argv)
{
    const char *fmt = NULL;
    struct img_opts o = { 0 };
    bool progress = false, quiet = false;
    int c, ret = 1;
    static const struct option lo[] = { { "help", no_argument, NULL, 'h' },
                                        { "force", no_argument, NULL, 'F' },
                                        { NULL, 0, NULL, 0 } };
    optind = 1;
    while ((c = getopt_long(argc, argv, ":ho:f:t:pq", lo, NULL)) != -1) {
        switch (c) {
        case 'f': fmt = optarg; break;
        case 'q': quiet = true; break;
        case 'p': progress = true; break;
        case 't': case 'F': break;
        case 'o':
            if (!img_opts_add(&o, optarg)) {
                img_err("Invalid option list: %s", optarg);
                goto out;
            }
            break;
        case 'h': printf("usage: kvmbox-img amend [-f fmt] [-p] [-q] -o options filename\n");
                  ret = 0; goto out;
        default: img_bad_option(c, argv[optind - 1]); goto out;
        }
    }
    if (optind != argc - 1) {
        img_err("Expecting one image file name");
        goto out;
    }
    if (!o.n) {
        img_err("Must specify options (-o)");
        goto out;
    }
    ret = amend_image(argv[optind], fmt, &o, progress && !quiet);
out:
    img_opts_free(&o);
    return ret;
}
