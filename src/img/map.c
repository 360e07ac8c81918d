/* kvmbox-img map: qemu-img map's human and JSON output. */
#include "img/bstat.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static bool same(const struct bstat *a, uint64_t astart, const struct bstat *b, uint64_t bstart)
{
    (void)bstart;
    return a->data == b->data && a->zero == b->zero && a->present == b->present &&
           a->has_offset == b->has_offset && a->depth == b->depth &&
           a->compressed == b->compressed && !strcmp(a->file, b->file) &&
           (!a->has_offset || a->offset + a->len == b->offset) && astart + a->len == bstart;
}

static int dump(const struct bstat *e, uint64_t start, bool json, bool first)
{
    if (json) {
        printf("%s{ \"start\": %" PRIu64 ", \"length\": %" PRIu64 ", \"depth\": %u, "
               "\"present\": %s, \"zero\": %s, \"data\": %s", first ? "" : ",\n", start, e->len,
               e->depth, e->present ? "true" : "false", e->zero ? "true" : "false",
               e->data ? "true" : "false");
        if (e->has_offset)
            printf(", \"offset\": %" PRIu64, e->offset);
        printf("}");
        return 0;
    }
    if (e->data && !e->zero && e->has_offset)
        printf("%#-16" PRIx64 "%#-16" PRIx64 "%#-16" PRIx64 "%s\n", start, e->len, e->offset,
               e->file);
    if (e->data && !e->has_offset) {
        img_err("File contains external, encrypted or compressed clusters.");
        return -1;
    }
    return 0;
}

int img_map(int argc, char **argv)
{
    const char *fmt = NULL, *output = "human";
    uint64_t start = 0, maxlen = UINT64_MAX;
    int c;
    static const struct option lo[] = {
        { "help", no_argument, NULL, 'h' }, { "output", required_argument, NULL, 'O' },
        { "start-offset", required_argument, NULL, 's' },
        { "max-length", required_argument, NULL, 'l' },
        { "force-share", no_argument, NULL, 'U' }, { NULL, 0, NULL, 0 } };
    optind = 1;
    while ((c = getopt_long(argc, argv, ":f:hU", lo, NULL)) != -1) {
        switch (c) {
        case 'f': fmt = optarg; break;
        case 'O': output = optarg; break;
        case 'U': img_force_share = true; break;
        case 's':
            if (!img_parse_size(optarg, &start)) {
                img_err("Invalid start offset specified! You may use k, M, G, T, P or E "
                        "suffixes for ");
                return 1;
            }
            break;
        case 'l':
            if (!img_parse_size(optarg, &maxlen)) {
                img_err("Invalid length specified! You may use k, M, G, T, P or E suffixes for ");
                return 1;
            }
            break;
        case 'h': printf("usage: kvmbox-img map [-f fmt] [--output=ofmt] [--start-offset=OFFSET] "
                         "[--max-length=LEN] filename\n"); return 0;
        default: return img_bad_option(c, argv[optind - 1]);
        }
    }
    bool json = !strcmp(output, "json");
    if (!json && strcmp(output, "human")) {
        img_err("--output must be used with human or json as argument.");
        return 1;
    }
    if (optind != argc - 1) {
        img_err("Expecting one image file name");
        return 1;
    }
    struct img im;
    if (img_open(&im, argv[optind], fmt, 0) < 0)
        return 1;
    uint64_t end = im.size;
    if (maxlen < end - (start < end ? start : end))
        end = start + maxlen;
    if (json)
        printf("[");
    else
        printf("%-16s%-16s%-16s%s\n", "Offset", "Length", "Mapped to", "File");
    struct bstat cur = { 0 };
    uint64_t cur_start = start;
    bool have = false, first = true;
    int ret = 0;
    for (uint64_t off = start; off < end;) {
        struct bstat b;
        int r = img_block_status(&im, off, end - off, &b);
        if (r < 0) {
            img_err("Could not read file metadata: %s", strerror(-r));
            ret = 1;
            break;
        }
        if (have && same(&cur, cur_start, &b, off)) {
            cur.len += b.len;
        } else {
            if (have && dump(&cur, cur_start, json, first) < 0) {
                ret = 1;
                have = false;
                break;
            }
            if (have)
                first = false;
            cur = b;
            cur_start = off;
            have = true;
        }
        off += b.len;
    }
    if (have && dump(&cur, cur_start, json, first) < 0)
        ret = 1;
    if (!have && json && ret == 0)
        printf("{ \"start\": %" PRIu64 ", \"length\": 0, \"depth\": 0, \"present\": false, "
               "\"zero\": false, \"data\": false}", start);
    if (json)
        printf("]\n");
    fflush(stdout);
    img_close(&im);
    return ret;
}
