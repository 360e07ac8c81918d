/* kvmbox-img create: qemu-img create's syntax, options and messages. */
#include "img/img.h"
#include "img/qcow2_opts.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const qcow2_keys[] = {
    "size", "preallocation", "cluster_size", "backing_file", "backing_fmt", "lazy_refcounts",
    "compat", "refcount_bits", "compression_type", "extended_l2", "encryption", "encrypt.format",
    "data_file", "data_file_raw", NULL,
};
static const char *const raw_keys[] = { "size", "preallocation", NULL };

static bool known_key(const char *const *keys, const char *k)
{
    for (; *keys; keys++)
        if (!strcmp(*keys, k))
            return true;
    return false;
}

/* Write zeros into every hole of [0, end) (preallocation=full). */
static int fill_holes(int fd, uint64_t end)
{
    static const uint8_t zeros[1 << 16];
    off_t pos = 0;
    while ((uint64_t)pos < end) {
        off_t h = lseek(fd, pos, SEEK_HOLE);
        if (h < 0 || (uint64_t)h >= end)
            break;
        off_t d = lseek(fd, h, SEEK_DATA);
        uint64_t stop = d < 0 || (uint64_t)d > end ? end : (uint64_t)d;
        for (uint64_t o = (uint64_t)h; o < stop;) {
            uint64_t n = stop - o < sizeof zeros ? stop - o : sizeof zeros;
            ssize_t w = pwrite(fd, zeros, n, (off_t)o);
            if (w <= 0)
                return -errno;
            o += (uint64_t)w;
        }
        pos = (off_t)stop;
    }
    return 0;
}

static int prealloc_file(const char *name, const char *mode, uint64_t size, bool truncate)
{
    int fd = open(name, O_RDWR | O_CLOEXEC | (truncate ? O_CREAT | O_TRUNC : 0), 0644);
    if (fd < 0)
        return -errno;
    int r = 0;
    if (truncate && ftruncate(fd, (off_t)size) < 0)
        r = -errno;
    if (!r && (!strcmp(mode, "falloc") || !strcmp(mode, "full")) && size) {
        int e = posix_fallocate(fd, 0, (off_t)size);
        if (e && !strcmp(mode, "falloc"))
            r = -e;
    }
    if (!r && !strcmp(mode, "full"))
        r = fill_holes(fd, size);
    if (!r && fsync(fd) < 0)
        r = -errno;
    close(fd);
    return r;
}

/* QEMU converts the options to typed values a second time, as a signed
 * 64-bit integer: a number that parsed as unsigned may still not fit. */
static bool refbits_fit_int64(const char *v)
{
    if (!v)
        return true;
    errno = 0;
    (void)strtoll(v, NULL, 0);
    return errno != ERANGE;
}

static int bad_value(const char *name, const char *key, const char *val)
{
    img_err("%s: Invalid parameter value for '%s': '%s'", name, key, val);
    return 1;
}

int img_create_image(const char *name, const char *fmt, uint64_t size, bool have_size,
                     const struct img_opts *o, const char *backing, const char *backing_fmt,
                     bool quiet)
{
    bool qcow2 = !strcmp(fmt, "qcow2");
    if (!qcow2 && strcmp(fmt, "raw")) {
        img_err("%s: Unknown file format '%s'", name, fmt);
        return 1;
    }
    for (unsigned i = 0; i < o->n; i++)
        if (!known_key(qcow2 ? qcow2_keys : raw_keys, o->key[i])) {
            img_err("%s: Invalid parameter '%s'", name, o->key[i]);
            return 1;
        }
    const char *v;
    if ((v = img_opts_get(o, "size"))) {
        if (!img_parse_size(v, &size)) {
            img_err("%s: Parameter 'size' expects a non-negative number below 2^64", name);
            return 1;
        }
        have_size = true;
    }
    if ((v = img_opts_get(o, "backing_file")))
        backing = v;
    if ((v = img_opts_get(o, "backing_fmt")))
        backing_fmt = v;
    const char *prealloc = img_opts_get(o, "preallocation");
    if (prealloc && strcmp(prealloc, "off") && strcmp(prealloc, "falloc") &&
        strcmp(prealloc, "full") && (!qcow2 || strcmp(prealloc, "metadata"))) {
        img_err("%s: Parameter 'preallocation' does not accept value '%s'", name, prealloc);
        return 1;
    }
    struct qcow2_create_options co = { 0 };
    const char *compat = img_opts_get(o, "compat");
    const char *refbits_str = NULL, *ctype = "zlib";
    uint64_t refbits = 16;
    uint32_t cluster = 65536;
    if (qcow2) {
        if ((v = img_opts_get(o, "cluster_size"))) {
            uint64_t c;
            if (!img_parse_size(v, &c) || c > UINT32_MAX)
                return bad_value(name, "cluster_size", v);
            cluster = (uint32_t)c;
        }
        if (compat) {
            if (!strcmp(compat, "0.10") || !strcmp(compat, "v2"))
                co.compat_v2 = true;
            else if (strcmp(compat, "1.1") && strcmp(compat, "v3")) {
                img_err("%s: Parameter 'compat' does not accept value '%s'", name, compat);
                return 1;
            }
        }
        if ((v = img_opts_get(o, "lazy_refcounts")) && !img_parse_bool(v, &co.lazy_refcounts)) {
            img_err("%s: Parameter 'lazy_refcounts' expects 'on' or 'off'", name);
            return 1;
        }
        if ((refbits_str = img_opts_get(o, "refcount_bits"))) {
            char prefix[4200];
            snprintf(prefix, sizeof prefix, "%s: ", name);
            if (!img_opt_number(prefix, "refcount_bits", refbits_str, &refbits))
                return 1;
        }
        if ((v = img_opts_get(o, "compression_type")))
            ctype = v;
        bool b = false;
        if ((v = img_opts_get(o, "extended_l2")) && (!img_parse_bool(v, &b) || b)) {
            img_err("%s: extended_l2=%s is not supported by kvmbox-img", name, v);
            return 1;
        }
        if (img_opts_get(o, "encryption") || img_opts_get(o, "encrypt.format")) {
            img_err("%s: encrypted images are not supported by kvmbox-img", name);
            return 1;
        }
        if (img_opts_get(o, "data_file")) {
            img_err("%s: external data files are not supported by kvmbox-img", name);
            return 1;
        }
    }
    if (backing && !qcow2) {
        img_err("%s: Backing file not supported for file format '%s'", name, fmt);
        return 1;
    }
    if (backing_fmt && !qcow2) {
        img_err("%s: Backing file format not supported for file format '%s'", name, fmt);
        return 1;
    }
    if (backing && !backing_fmt) {
        img_err("%s: Backing file specified without backing format", name);
        fprintf(stderr, "Detected format of %s.", img_probe(backing) ? img_probe(backing) : "raw");
        return 1;
    }
    if (backing) {
        if (strcmp(backing_fmt, "raw") && strcmp(backing_fmt, "qcow2")) {
            img_err("%s: Unknown backing file format '%s'", name, backing_fmt);
            return 1;
        }
        if (prealloc && strcmp(prealloc, "off")) {
            img_err("%s: Backing file and preallocation can only be used at the same time if "
                    "extended_l2 is on", name);
            return 1;
        }
        /* Relative to the new image's directory, as the driver opens it. */
        char path[4096];
        const char *slash = strrchr(name, '/');
        if (backing[0] != '/' && slash)
            snprintf(path, sizeof path, "%.*s/%s", (int)(slash - name), name, backing);
        else
            snprintf(path, sizeof path, "%s", backing);
        struct img bi;
        if (img_open(&bi, path, backing_fmt, IMG_NO_BACKING | IMG_QUIET) < 0) {
            img_err("%s: Could not open backing file '%s'", name, path);
            return 1;
        }
        if (!have_size) {
            size = bi.size;
            have_size = true;
        }
        img_close(&bi);
    }
    if (!have_size) {
        img_err("%s: Image creation needs a size parameter", name);
        return 1;
    }
    if (!quiet) {
        if (qcow2) {
            printf("Formatting '%s', fmt=qcow2 cluster_size=%u extended_l2=off", name, cluster);
            if (prealloc)
                printf(" preallocation=%s", prealloc);
            printf(" compression_type=%s size=%" PRIu64, ctype, size);
            if (compat)
                printf(" compat=%s", compat);
            if (backing)
                printf(" backing_file=%s", backing);
            if (backing_fmt)
                printf(" backing_fmt=%s", backing_fmt);
            /* QEMU prints the number parsed as unsigned, as signed. */
            printf(" lazy_refcounts=%s refcount_bits=%" PRId64 "\n",
                   co.lazy_refcounts ? "on" : "off", (int64_t)refbits);
        } else {
            printf("Formatting '%s', fmt=raw size=%" PRIu64, name, size);
            if (prealloc)
                printf(" preallocation=%s", prealloc);
            printf("\n");
        }
        fflush(stdout);
    }
    /* qemu-img checks the rest after printing the line: first the typed
     * conversion of the options, then the driver (qcow2_create). */
    if (qcow2 && !refbits_fit_int64(refbits_str)) {
        img_err("%s: Parameter 'refcount-bits' expects integer", name);
        return 1;
    }
    if (qcow2 && img_compression_type(ctype) < 0) {
        img_err("%s: Parameter 'compression-type' does not accept value '%s'", name, ctype);
        return 1;
    }
    int r;
    if (!qcow2) {
        r = prealloc_file(name, prealloc ? prealloc : "off", (size + 511) & ~511ull, true);
        if (r < 0) {
            img_err("%s: Could not create '%s': %s", name, name, strerror(-r));
            return 1;
        }
        return 0;
    }
    co.size = (size + 511) & ~511ull;     /* qemu rounds up to a sector */
    co.cluster_size = cluster;
    co.prealloc = prealloc && strcmp(prealloc, "off") ? QCOW2_PREALLOC_METADATA : QCOW2_PREALLOC_OFF;
    co.backing_file = backing;
    co.backing_fmt = backing_fmt;
    /* Out of range: qcow2_create refuses it with QEMU's message. */
    co.refcount_bits = img_refcount_bits_ok((int64_t)refbits) ? (uint32_t)refbits : 3;
    co.compression = (enum qcow2_compression)img_compression_type(ctype);
    char err[512];
    if ((r = qcow2_create(name, &co, err, sizeof err)) < 0) {
        img_err("%s: %s", name, err);
        return 1;
    }
    if (prealloc && (!strcmp(prealloc, "falloc") || !strcmp(prealloc, "full"))) {
        int fd = open(name, O_RDONLY | O_CLOEXEC);
        off_t end = fd >= 0 ? lseek(fd, 0, SEEK_END) : -1;
        if (fd >= 0)
            close(fd);
        r = end < 0 ? -errno : prealloc_file(name, prealloc, (uint64_t)end, false);
        if (r < 0) {
            img_err("%s: Could not preallocate: %s", name, strerror(-r));
            return 1;
        }
    }
    return 0;
}

int img_create(int argc, char **argv)
{
    const char *fmt = "raw", *backing = NULL, *backing_fmt = NULL;
    struct img_opts o = { 0 };
    bool quiet = false;
    int c, ret = 1;
    static const struct option lo[] = { { "help", no_argument, NULL, 'h' },
                                        { "object", required_argument, NULL, 'O' },
                                        { NULL, 0, NULL, 0 } };
    optind = 1;
    while ((c = getopt_long(argc, argv, ":F:b:f:ho:qu", lo, NULL)) != -1) {
        switch (c) {
        case 'f': fmt = optarg; break;
        case 'b': backing = optarg; break;
        case 'F': backing_fmt = optarg; break;
        case 'q': quiet = true; break;
        case 'u': break;
        case 'o':
            if (!img_opts_add(&o, optarg)) {
                img_err("Invalid option list: %s", optarg);
                goto out;
            }
            break;
        case 'h':
            printf("usage: kvmbox-img create [-q] [-f fmt] [-b backing_file [-F backing_fmt]] "
                   "[-u] [-o options] filename [size]\n");
            ret = 0;
            goto out;
        default:
            img_bad_option(c, argv[optind - 1]);
            goto out;
        }
    }
    if (optind >= argc) {
        img_err("Expecting image file name");
        goto out;
    }
    const char *name = argv[optind++];
    uint64_t size = 0;
    bool have_size = false;
    if (optind < argc) {
        if (!img_parse_size(argv[optind], &size)) {
            img_err_size();
            goto out;
        }
        have_size = true;
        optind++;
    }
    if (optind != argc) {
        img_err("Unexpected argument: %s", argv[optind]);
        goto out;
    }
    ret = img_create_image(name, fmt, size, have_size, &o, backing, backing_fmt, quiet);
out:
    img_opts_free(&o);
    return ret;
}
