/* kvmbox-img shared helpers: opening images through the block drivers,
 * qemu-img's size syntax and messages, -o option lists, progress. */
#include "img/img.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

bool img_force_share;

int img_bad_option(int c, const char *opt)
{
    img_err("%s '%s'", c == ':' ? "missing argument for option" : "unrecognized option", opt);
    fprintf(stderr, "Try 'kvmbox-img --help' for more information\n");
    return 1;
}

void img_err(const char *fmt, ...)
{
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fflush(stdout);
    fprintf(stderr, "kvmbox-img: %s\n", buf);
}

const char *img_probe(const char *name)
{
    struct blk_file f;
    char err[512];
    if (blk_file_open(&f, name, BLK_FILE_RDONLY, err, sizeof err) < 0) {
        img_err("Could not open '%s': %s", name, err);
        return NULL;
    }
    uint8_t head[BLK_PROBE_SIZE];
    int r = blk_file_pread(&f, 0, head, sizeof head);
    blk_file_close(&f);
    if (r < 0) {
        img_err("Could not open '%s': %s", name, strerror(-r));
        return NULL;
    }
    const char *p = blk_probe_format(head, sizeof head);
    if (p && strcmp(p, "qcow2") != 0) {
        img_err("Could not open '%s': image format '%s' is not supported by kvmbox-img", name,
                p);
        return NULL;
    }
    return p ? "qcow2" : "raw";
}

int img_open(struct img *im, const char *name, const char *fmt, unsigned flags)
{
    memset(im, 0, sizeof *im);
    im->file.fd = -1;
    bool quiet = flags & IMG_QUIET, probed = !fmt;
    if (!fmt) {
        if (quiet) {
            struct blk_file f;
            char e[512];
            uint8_t head[BLK_PROBE_SIZE];
            if (blk_file_open(&f, name, BLK_FILE_RDONLY, e, sizeof e) < 0)
                return -ENOENT;
            int r = blk_file_pread(&f, 0, head, sizeof head);
            blk_file_close(&f);
            if (r < 0)
                return r;
            const char *p = blk_probe_format(head, sizeof head);
            fmt = p ? p : "raw";
        } else if (!(fmt = img_probe(name))) {
            return -EINVAL;
        }
    }
    if (strcmp(fmt, "raw") && strcmp(fmt, "qcow2")) {
        if (!quiet)
            img_err("Unknown file format '%s'", fmt);
        return -EINVAL;
    }
    im->fmt = strcmp(fmt, "raw") == 0 ? "raw" : "qcow2";
    im->probed_raw = probed && (flags & IMG_RW) && !strcmp(im->fmt, "raw");
    if (im->probed_raw && !quiet) {
        fprintf(stderr, "WARNING: ");
        fprintf(stderr, blk_probed_raw_warning, name);
        fprintf(stderr, "\n");
    }
    im->drv = blk_driver_find(im->fmt);
    im->name = strdup(name);
    if (!im->name || !im->drv)
        return -ENOMEM;
    char err[1024], ferr[512];
    unsigned ff = (flags & IMG_RW ? 0 : BLK_FILE_RDONLY) | (flags & IMG_NOCACHE ? BLK_FILE_DIRECT : 0);
    int r = blk_file_open(&im->file, name, ff, ferr, sizeof ferr);
    if (r < 0) {
        if (!quiet)
            img_err("Could not open '%s': %s", name, ferr);
        free(im->name);
        im->name = NULL;
        return r;
    }
    im->file_open = true;
    /* QEMU's image locks (-U: none, as qemu-img's force-share). */
    unsigned perm, deny;
    blk_perms_for(im->fmt, flags & (IMG_RW | IMG_LOCK_RW), flags & IMG_CONSISTENT, &perm, &deny);
    if (!img_force_share &&
        (r = blk_file_lock(&im->file, perm, deny, name, err, sizeof err)) < 0)
        goto fail;
    if (im->drv == &blk_driver_qcow2) {
        struct qcow2_open_options o = { .filename = name, .no_backing = flags & IMG_NO_BACKING,
                                        .no_sync = flags & IMG_UNSAFE };
        r = qcow2_open_ex(&im->st, &im->file, !(flags & IMG_RW), &o, err, sizeof err);
        if (r == 0)
            im->q = im->st;
    } else {
        r = im->drv->open(&im->st, &im->file, !(flags & IMG_RW), NULL, err, sizeof err);
    }
    if (r < 0)
        goto fail;
    im->size = im->drv->length(im->st);
    if (!im->q)     /* qemu sees a raw file's size rounded up to a sector; the rest reads zeros */
        im->size = (im->size + 511) & ~511ull;
    return 0;
fail:
    if (!quiet)
        img_err("Could not open '%s': %s", name, err);
    blk_file_close(&im->file);
    im->file_open = false;
    free(im->name);
    im->name = NULL;
    return r;
}

int img_close(struct img *im)
{
    int r = 0;
    if (im->st) {
        if (im->q && !im->q->read_only) {
            r = im->drv->flush(im->st);
        }
        im->drv->close(im->st);
        im->st = NULL;
        im->q = NULL;
    }
    if (im->file_open)
        blk_file_close(&im->file);
    im->file_open = false;
    free(im->name);
    im->name = NULL;
    return r;
}

int img_read(struct img *im, uint64_t off, void *buf, uint64_t len)
{
    struct iovec v = { buf, (size_t)len };
    return im->drv->preadv(im->st, off, &v, 1, len);
}

int img_write(struct img *im, uint64_t off, const void *buf, uint64_t len)
{
    /* A probed raw image must not turn into another format (as QEMU). */
    if (im->probed_raw && off < BLK_PROBE_SIZE && len &&
        (off != 0 || len < BLK_PROBE_SIZE || blk_probe_format(buf, BLK_PROBE_SIZE)))
        return -EPERM;
    struct iovec v = { (void *)buf, (size_t)len };
    return im->drv->pwritev(im->st, off, &v, 1, len);
}

bool img_parse_size(const char *s, uint64_t *out)
{
    if (!s || !*s || *s == '-' || *s == '+')
        return false;
    char *end;
    errno = 0;
    double d = strtod(s, &end);
    if (errno || end == s || d < 0 || d != d)
        return false;
    /* Integers are taken exactly (no double rounding). */
    char *iend;
    unsigned long long iv = strtoull(s, &iend, 10);
    bool integer = iend == end;
    uint64_t mul = 1;
    switch (*end) {
    case 0: break;
    case 'b': case 'B': mul = 1; end++; break;
    case 'k': case 'K': mul = 1ull << 10; end++; break;
    case 'm': case 'M': mul = 1ull << 20; end++; break;
    case 'g': case 'G': mul = 1ull << 30; end++; break;
    case 't': case 'T': mul = 1ull << 40; end++; break;
    case 'p': case 'P': mul = 1ull << 50; end++; break;
    case 'e': case 'E': mul = 1ull << 60; end++; break;
    default: return false;
    }
    if (*end)
        return false;
    if (integer) {
        if (iv > UINT64_MAX / mul || (errno == ERANGE))
            return false;
        *out = (uint64_t)iv * mul;
        return true;
    }
    double v = d * (double)mul;
    if (v >= 18446744073709551615.0)
        return false;
    *out = (uint64_t)v;
    return true;
}

void img_err_size(void)
{
    img_err("Invalid image size specified. You may use k, M, G, T, P or E suffixes for");
    img_err("kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
}

void img_human_size(uint64_t v, char *buf, unsigned len)
{
    static const char *suf[] = { "", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei" };
    /* frexp(v / (1000/1024)): e with 2^(e-1) <= v*1.024 < 2^e. */
    double x = (double)v * 1.024;
    int e = 0;
    while (e < 80 && x >= 1.0) {
        x /= 2;
        e++;
    }
    int i = e > 0 ? (e - 1) / 10 : 0;
    if (i > 6)
        i = 6;
    double div = (double)(1ull << (i * 10));
    snprintf(buf, len, "%0.3g %sB", (double)v / div, suf[i]);
}

bool img_opts_add(struct img_opts *o, const char *list)
{
    const char *p = list;
    while (*p) {
        const char *e = p;
        /* ",," escapes a comma inside a value (qemu's syntax). */
        char tmp[1024];
        size_t n = 0;
        while (*e) {
            if (*e == ',' && e[1] == ',') {
                if (n < sizeof tmp - 1)
                    tmp[n++] = ',';
                e += 2;
                continue;
            }
            if (*e == ',')
                break;
            if (n < sizeof tmp - 1)
                tmp[n++] = *e;
            e++;
        }
        tmp[n] = 0;
        if (n) {
            if (o->n == sizeof o->key / sizeof o->key[0])
                return false;
            char *eq = strchr(tmp, '=');
            if (eq)
                *eq = 0;
            o->key[o->n] = strdup(tmp);
            o->val[o->n] = strdup(eq ? eq + 1 : "on");
            if (!o->key[o->n] || !o->val[o->n])
                return false;
            o->n++;
        }
        p = *e ? e + 1 : e;
    }
    return true;
}

const char *img_opts_get(const struct img_opts *o, const char *key)
{
    const char *v = NULL;
    for (unsigned i = 0; i < o->n; i++)
        if (strcmp(o->key[i], key) == 0)
            v = o->val[i];      /* the last one wins */
    return v;
}

void img_opts_free(struct img_opts *o)
{
    for (unsigned i = 0; i < o->n; i++) {
        free(o->key[i]);
        free(o->val[i]);
    }
    o->n = 0;
}

bool img_parse_bool(const char *s, bool *out)
{
    if (!strcmp(s, "on") || !strcmp(s, "yes") || !strcmp(s, "true")) {
        *out = true;
        return true;
    }
    if (!strcmp(s, "off") || !strcmp(s, "no") || !strcmp(s, "false")) {
        *out = false;
        return true;
    }
    return false;
}

void img_progress(bool on, double pct)
{
    if (!on)
        return;
    printf("    (%3.2f/100%%)\r", pct);
    fflush(stdout);
}

void img_progress_end(bool on)
{
    if (!on)
        return;
    printf("    (100.00/100%%)\r\n");
    fflush(stdout);
}

uint64_t img_disk_usage(const char *name)
{
    struct stat st;
    if (stat(name, &st) < 0)
        return 0;
    return (uint64_t)st.st_blocks * 512;
}
