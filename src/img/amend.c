/* kvmbox-img amend: change qcow2 creation options in place: size (grow or
 * shrink as resize --shrink), lazy_refcounts, backing_file/backing_fmt
 * (unsafe: the name only). Options that need a rewrite (cluster_size,
 * refcount_bits, compat changes, encryption) are refused as qemu-img does
 * for the ones it cannot change either. */
#include "img/img.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const amend_keys[] = {
    "size", "preallocation", "cluster_size", "backing_file", "backing_fmt", "lazy_refcounts",
    "compat", "refcount_bits", "compression_type", "extended_l2", "encryption",
    "encrypt.format", "data_file", "data_file_raw", NULL,
};

int img_amend(int argc, char **argv)
{
    const char *fmt = NULL;
    struct img_opts o = { 0 };
    bool quiet = false, progress = false;
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
        default: img_err("unrecognized option '%s'", argv[optind - 1]); goto out;
        }
    }
    (void)quiet;
    if (optind != argc - 1) {
        img_err("Expecting one image file name");
        goto out;
    }
    if (!o.n) {
        img_err("Must specify options (-o)");
        goto out;
    }
    const char *name = argv[optind];
    for (unsigned i = 0; i < o.n; i++) {
        bool ok = false;
        for (const char *const *k = amend_keys; *k; k++)
            ok |= !strcmp(*k, o.key[i]);
        if (!ok) {
            img_err("Invalid parameter '%s'", o.key[i]);
            goto out;
        }
    }
    struct img im;
    if (img_open(&im, name, fmt, IMG_RW | IMG_NO_BACKING) < 0)
        goto out;
    if (!im.q) {
        img_err("Format driver '%s' does not support option amendment", im.fmt);
        img_close(&im);
        goto out;
    }
    struct qcow2 *q = im.q;
    const char *v;
    int r = 0;
    if ((v = img_opts_get(&o, "cluster_size"))) {
        uint64_t cs;
        if (!img_parse_size(v, &cs) || cs != q->cluster_size) {
            img_err("Changing the cluster size is not supported");
            goto close;
        }
    }
    if ((v = img_opts_get(&o, "refcount_bits")) && strtoul(v, NULL, 10) != q->refcount_bits) {
        img_err("Changing the refcount width is not supported by kvmbox-img");
        goto close;
    }
    if ((v = img_opts_get(&o, "compat"))) {
        bool v2 = !strcmp(v, "0.10") || !strcmp(v, "v2");
        if (!v2 && strcmp(v, "1.1") && strcmp(v, "v3")) {
            img_err("Invalid compatibility level: '%s'", v);
            goto close;
        }
        if (v2 != (q->version == 2)) {
            img_err("Changing the compatibility level is not supported by kvmbox-img");
            goto close;
        }
    }
    if (img_opts_get(&o, "encryption") || img_opts_get(&o, "encrypt.format") ||
        img_opts_get(&o, "data_file") || img_opts_get(&o, "preallocation")) {
        img_err("Changing the encryption, data file or preallocation is not supported");
        goto close;
    }
    if ((v = img_opts_get(&o, "lazy_refcounts"))) {
        bool on;
        if (!img_parse_bool(v, &on)) {
            img_err("Parameter 'lazy_refcounts' expects 'on' or 'off'");
            goto close;
        }
        if (on && q->version < 3) {
            img_err("Lazy refcounts only supported with compatibility level 1.1 and above "
                    "(use compat=1.1 or greater)");
            goto close;
        }
        if (q->version >= 3) {
            pthread_mutex_lock(&q->lock);
            r = qcow2_meta_writeback(q, true, true);
            if (r == 0) {
                q->compat = on ? q->compat | QCOW2_COMPAT_LAZY_REFCOUNTS
                               : q->compat & ~QCOW2_COMPAT_LAZY_REFCOUNTS;
                qcow2_put_be64(q->hdr + 80, q->compat);
                r = qcow2_write_header(q);
            }
            if (r == 0)
                r = blk_file_flush(q->file);
            pthread_mutex_unlock(&q->lock);
        }
    }
    const char *bf = img_opts_get(&o, "backing_file"), *bfmt = img_opts_get(&o, "backing_fmt");
    if (r == 0 && (bf || bfmt)) {
        if (!bf) {
            img_err("Changing the backing format requires backing_file");
            goto close;
        }
        r = img_qcow2_set_backing(&im, bf, bfmt);
    }
    if (r == 0 && (v = img_opts_get(&o, "size"))) {
        uint64_t size;
        if (!img_parse_size(v, &size)) {
            img_err("Parameter 'size' expects a non-negative number below 2^64");
            goto close;
        }
        if (size != q->size)
            r = img_qcow2_resize(&im, size);
    }
    img_progress(progress, 100.0);
    img_progress_end(progress);
    if (r < 0) {
        img_err("Error while amending options: %s", strerror(-r));
        goto close;
    }
    ret = 0;
close:
    if (img_close(&im) < 0)
        ret = 1;
out:
    img_opts_free(&o);
    return ret;
}
