/* kvmbox-img info: qemu-img info's human and JSON output. */
#include "img/img.h"
#include "img/qmeta.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* JSON string with escapes. */
static void jstr(const char *s)
{
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20)
            printf("\\u%04x", *p);
        else
            putchar(*p);
    }
    putchar('"');
}

static void snap_line(const struct qsnap *e)
{
    char size[32], date[64], clk[64], ic[32] = "";
    img_human_size(e->vm_state_size, size, sizeof size);
    time_t t = (time_t)e->date_sec;
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S", &tm);
    uint64_t secs = e->vm_clock_nsec / 1000000000ull;
    snprintf(clk, sizeof clk, "%02d:%02d:%02d.%03d", (int)(secs / 3600), (int)((secs / 60) % 60),
             (int)(secs % 60), (int)((e->vm_clock_nsec / 1000000) % 1000));
    if (e->icount != -1)
        snprintf(ic, sizeof ic, "%" PRIu64, (uint64_t)e->icount);
    printf("%-9s %-16s %8s%20s%13s%11s\n", e->id, e->name, size, date, clk, ic);
}

void img_snapshot_list_print(const struct qsnap *s, uint32_t n);
void img_snapshot_list_print(const struct qsnap *s, uint32_t n)
{
    printf("%-10s%-17s%8s%20s%13s%11s\n", "ID", "TAG", "VM SIZE", "DATE", "VM CLOCK", "ICOUNT");
    for (uint32_t i = 0; i < n; i++)
        snap_line(&s[i]);
}

struct info {
    char fmt[8];
    uint64_t vsize, actual, cluster;
    bool qcow2, v3, lazy, corrupt, dirty;
    unsigned refbits;
    int ctype;
    struct qhdr h;
    char full_backing[4096];
    struct qsnap *snaps;
    uint32_t nsnaps;
};

static int gather(const char *name, const char *fmt, struct info *in)
{
    struct img im;
    memset(in, 0, sizeof *in);
    if (img_open(&im, name, fmt, IMG_NO_BACKING) < 0)
        return -1;
    snprintf(in->fmt, sizeof in->fmt, "%s", im.fmt);
    in->vsize = im.size;
    in->actual = img_disk_usage(name);
    if (im.q) {
        struct qcow2 *q = im.q;
        char err[256] = "";
        in->qcow2 = true;
        in->cluster = q->cluster_size;
        in->v3 = q->version >= 3;
        in->lazy = q->compat & QCOW2_COMPAT_LAZY_REFCOUNTS;
        in->corrupt = q->incompat & QCOW2_INCOMPAT_CORRUPT;
        in->dirty = q->incompat & QCOW2_INCOMPAT_DIRTY;
        in->refbits = q->refcount_bits;
        in->ctype = q->compression_type;
        if (qhdr_read(&im, &in->h, err, sizeof err) < 0 ||
            qsnap_read(&im, &in->snaps, &in->nsnaps, NULL, err, sizeof err) < 0) {
            img_err("Could not open '%s': %s", name, err);
            img_close(&im);
            return -1;
        }
        if (in->h.has_backing) {
            const char *slash = strrchr(name, '/');
            if (in->h.backing[0] != '/' && slash)
                snprintf(in->full_backing, sizeof in->full_backing, "%.*s/%s",
                         (int)(slash - name), name, in->h.backing);
            else
                snprintf(in->full_backing, sizeof in->full_backing, "%s", in->h.backing);
        }
    }
    img_close(&im);
    return 0;
}

static void print_human(const char *name, const struct info *in)
{
    char vs[32], ds[32];
    img_human_size(in->vsize, vs, sizeof vs);
    img_human_size(in->actual, ds, sizeof ds);
    printf("image: %s\nfile format: %s\nvirtual size: %s (%" PRIu64 " bytes)\ndisk size: %s\n",
           name, in->fmt, vs, in->vsize, ds);
    if (!in->qcow2)
        return;
    printf("cluster_size: %" PRIu64 "\n", in->cluster);
    if (in->h.has_backing) {
        printf("backing file: %s", in->h.backing);
        if (strcmp(in->full_backing, in->h.backing))
            printf(" (actual path: %s)", in->full_backing);
        printf("\n");
        if (in->h.has_backing_fmt)
            printf("backing file format: %s\n", in->h.backing_fmt);
    }
    if (in->nsnaps) {
        printf("Snapshot list:\n");
        img_snapshot_list_print(in->snaps, in->nsnaps);
    }
    printf("Format specific information:\n    compat: %s\n    compression type: %s\n",
           in->v3 ? "1.1" : "0.10", in->ctype ? "zstd" : "zlib");
    if (in->v3)
        printf("    lazy refcounts: %s\n", in->lazy ? "true" : "false");
    printf("    refcount bits: %u\n", in->refbits);
    if (in->v3)
        printf("    corrupt: %s\n    extended l2: false\n", in->corrupt ? "true" : "false");
}

static void print_json(const char *name, const struct info *in, const char *ind)
{
    printf("%s{\n", ind);
    if (in->h.has_backing_fmt) {
        printf("%s    \"backing-filename-format\": ", ind);
        jstr(in->h.backing_fmt);
        printf(",\n");
    }
    if (in->nsnaps) {
        printf("%s    \"snapshots\": [\n", ind);
        for (uint32_t i = 0; i < in->nsnaps; i++) {
            const struct qsnap *e = &in->snaps[i];
            printf("%s        {\n", ind);
            if (e->icount != -1)
                printf("%s            \"icount\": %" PRIu64 ",\n", ind, (uint64_t)e->icount);
            printf("%s            \"vm-clock-nsec\": %" PRIu64 ",\n", ind,
                   (uint64_t)(e->vm_clock_nsec % 1000000000u));
            printf("%s            \"name\": ", ind);
            jstr(e->name);
            printf(",\n%s            \"date-sec\": %u,\n", ind, e->date_sec);
            printf("%s            \"date-nsec\": %u,\n", ind, e->date_nsec);
            printf("%s            \"vm-clock-sec\": %" PRIu64 ",\n", ind,
                   (uint64_t)(e->vm_clock_nsec / 1000000000u));
            printf("%s            \"id\": ", ind);
            jstr(e->id);
            printf(",\n%s            \"vm-state-size\": %" PRIu64 "\n", ind, e->vm_state_size);
            printf("%s        }%s\n", ind, i + 1 < in->nsnaps ? "," : "");
        }
        printf("%s    ],\n", ind);
    }
    printf("%s    \"virtual-size\": %" PRIu64 ",\n%s    \"filename\": ", ind, in->vsize, ind);
    jstr(name);
    printf(",\n");
    if (in->qcow2)
        printf("%s    \"cluster-size\": %" PRIu64 ",\n", ind, in->cluster);
    printf("%s    \"format\": \"%s\",\n%s    \"actual-size\": %" PRIu64 ",\n", ind, in->fmt, ind,
           in->actual);
    if (in->qcow2) {
        printf("%s    \"format-specific\": {\n%s        \"type\": \"qcow2\",\n"
               "%s        \"data\": {\n", ind, ind, ind);
        printf("%s            \"compat\": \"%s\",\n%s            \"compression-type\": \"%s\",\n",
               ind, in->v3 ? "1.1" : "0.10", ind, in->ctype ? "zstd" : "zlib");
        if (in->v3)
            printf("%s            \"lazy-refcounts\": %s,\n", ind, in->lazy ? "true" : "false");
        printf("%s            \"refcount-bits\": %u%s\n", ind, in->refbits, in->v3 ? "," : "");
        if (in->v3)
            printf("%s            \"corrupt\": %s,\n%s            \"extended-l2\": false\n", ind,
                   in->corrupt ? "true" : "false", ind);
        printf("%s        }\n%s    },\n", ind, ind);
    }
    if (in->h.has_backing) {
        printf("%s    \"full-backing-filename\": ", ind);
        jstr(in->full_backing);
        printf(",\n%s    \"backing-filename\": ", ind);
        jstr(in->h.backing);
        printf(",\n");
    }
    printf("%s    \"dirty-flag\": %s\n%s}", ind, in->dirty ? "true" : "false", ind);
}

int img_info(int argc, char **argv)
{
    const char *fmt = NULL, *output = "human";
    bool chain = false;
    int c;
    static const struct option lo[] = {
        { "help", no_argument, NULL, 'h' }, { "output", required_argument, NULL, 'O' },
        { "backing-chain", no_argument, NULL, 'B' }, { "force-share", no_argument, NULL, 'U' },
        { "image-opts", no_argument, NULL, 'I' }, { NULL, 0, NULL, 0 } };
    optind = 1;
    while ((c = getopt_long(argc, argv, ":f:hU", lo, NULL)) != -1) {
        switch (c) {
        case 'f': fmt = optarg; break;
        case 'O': output = optarg; break;
        case 'B': chain = true; break;
        case 'U': img_force_share = true; break;
        case 'h': printf("usage: kvmbox-img info [-f fmt] [--output=ofmt] [--backing-chain] "
                         "filename\n"); return 0;
        case 'I': img_err("--image-opts is not supported"); return 1;
        default: return img_bad_option(c, argv[optind - 1]);
        }
    }
    bool json = !strcmp(output, "json");
    if (!json && strcmp(output, "human")) {
        img_err("--output must be used with human or json as argument.");
        return 1;
    }
    if (optind != argc - 1) {
        img_err(optind >= argc ? "Expecting one image file name" : "Expecting one image file name");
        return 1;
    }
    char name[4096];
    snprintf(name, sizeof name, "%s", argv[optind]);
    const char *f = fmt;
    if (json && chain)
        printf("[\n");
    for (unsigned depth = 0;; depth++) {
        struct info in;
        if (depth > QCOW2_MAX_DEPTH) {
            img_err("Backing file chain too long (a loop?)");
            return 1;
        }
        if (gather(name, f, &in) < 0)
            return 1;
        if (json) {
            print_json(name, &in, chain ? "    " : "");
        } else {
            if (depth)
                printf("\n");
            print_human(name, &in);
        }
        qsnap_free(in.snaps, in.nsnaps);
        if (!chain || !in.h.has_backing) {
            if (json)
                printf(chain ? "\n]\n" : "\n");
            break;
        }
        if (json)
            printf(",\n");
        snprintf(name, sizeof name, "%s", in.full_backing);
        f = in.h.has_backing_fmt ? (strcmp(in.h.backing_fmt, "raw") ? "qcow2" : "raw") : NULL;
    }
    fflush(stdout);
    return 0;
}
