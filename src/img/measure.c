/* kvmbox-img measure: the size a new image needs (qemu's qcow2_measure and
 * qcow2_calc_prealloc_size arithmetic, so the numbers match qemu-img). */
#include "img/bstat.h"
#include "img/qcow2_opts.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static uint64_t div_up(uint64_t a, uint64_t b) { return (a + b - 1) / b; }
static uint64_t round_up(uint64_t a, uint64_t b) { return div_up(a, b) * b; }

static uint64_t refcount_meta(uint64_t clusters, uint64_t cs, unsigned order)
{
    uint64_t per_table = cs / 8, per_block = cs * 8 / (1u << order);
    uint64_t table = 0, blocks = 0, n = 0, last;
    do {
        last = n;
        blocks = div_up(clusters + table + blocks, per_block);
        table = div_up(blocks, per_table);
        n = clusters + blocks + table;
    } while (n != last);
    return (blocks + table) * cs;
}

static uint64_t prealloc_size(uint64_t total, uint64_t cs, unsigned order)
{
    uint64_t aligned = round_up(total, cs), meta = cs;
    uint64_t nl2e = round_up(aligned / cs, cs / 8);
    meta += nl2e * 8;
    uint64_t nl1e = round_up(nl2e * 8 / cs, cs / 8);
    meta += nl1e * 8;
    meta += refcount_meta((meta + aligned) / cs, cs, order);
    return meta + aligned;
}

/* refcount_bits=v as qemu-img measure takes it: *order, or false after
 * qemu-img's message. */
static bool refcount_order(const struct img_opts *o, const char *v, unsigned *order)
{
    uint64_t bits;
    if (!img_opt_number("", "refcount_bits", v, &bits)) {
        img_err("Invalid options for file format 'qcow2'");
        return false;
    }
    if (!img_refcount_bits_ok((int64_t)bits)) {
        img_err("Refcount width must be a power of two and may not exceed 64 bits");
        return false;
    }
    const char *compat = img_opts_get(o, "compat");
    if (bits != 16 && compat && (!strcmp(compat, "0.10") || !strcmp(compat, "v2"))) {
        img_err("Different refcount widths than 16 bits require compatibility level 1.1 or "
                "above (use compat=1.1 or greater)");
        return false;
    }
    for (*order = 0; (1ull << *order) < bits; (*order)++)
        ;
    return true;
}

int img_measure(int argc, char **argv)
{
    const char *fmt = NULL, *ofmt = "raw", *output = "human";
    struct img_opts o = { 0 };
    uint64_t size = 0;
    bool have_size = false;
    int c, ret = 1;
    static const struct option lo[] = {
        { "help", no_argument, NULL, 'h' }, { "output", required_argument, NULL, 'J' },
        { "size", required_argument, NULL, 'z' }, { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 } };
    optind = 1;
    while ((c = getopt_long(argc, argv, ":hf:O:o:l:U", lo, NULL)) != -1) {
        switch (c) {
        case 'f': fmt = optarg; break;
        case 'O': ofmt = optarg; break;
        case 'J': output = optarg; break;
        case 'U': img_force_share = true; break;
        case 'l': img_err("snapshots (-l) are not supported by measure"); goto out;
        case 'o':
            if (!img_opts_add(&o, optarg)) {
                img_err("Invalid option list: %s", optarg);
                goto out;
            }
            break;
        case 'z':
            if (!img_parse_size(optarg, &size)) {
                img_err("Invalid image size specified. Must be between 0 and 9223372036854775807.");
                goto out;
            }
            have_size = true;
            break;
        case 'h': printf("usage: kvmbox-img measure [--output=ofmt] [-O output_fmt] [-o options] "
                         "[--size N | [-f fmt] filename]\n"); ret = 0; goto out;
        default: img_bad_option(c, argv[optind - 1]); goto out;
        }
    }
    bool json = !strcmp(output, "json");
    if (!json && strcmp(output, "human")) {
        img_err("--output must be used with human or json as argument.");
        goto out;
    }
    const char *file = optind < argc ? argv[optind] : NULL;
    if (file && have_size) {
        img_err("--size N cannot be used together with a filename.");
        goto out;
    }
    if (!file && !have_size) {
        img_err("Either --size N or one filename must be specified.");
        goto out;
    }
    bool qcow2 = !strcmp(ofmt, "qcow2");
    if (!qcow2 && strcmp(ofmt, "raw")) {
        img_err("Unknown file format '%s'", ofmt);
        goto out;
    }
    static const char *const qkeys[] = { "size", "preallocation", "cluster_size", "backing_file",
                                         "backing_fmt", "lazy_refcounts", "compat",
                                         "refcount_bits", "compression_type", "extended_l2",
                                         NULL };
    for (unsigned i = 0; i < o.n; i++) {
        bool ok = false;
        for (const char *const *k = qkeys; *k; k++)
            ok |= !strcmp(*k, o.key[i]) && (qcow2 || !strcmp(*k, "size") ||
                                            !strcmp(*k, "preallocation"));
        if (!ok) {
            img_err("Invalid parameter '%s'", o.key[i]);
            img_err("Invalid options for file format '%s'", ofmt);
            goto out;
        }
    }
    const char *prealloc = img_opts_get(&o, "preallocation");
    const char *v;
    uint64_t cs = 65536;
    if (qcow2 && (v = img_opts_get(&o, "cluster_size")) &&
        (!img_parse_size(v, &cs) || cs < 512 || cs > (2u << 20) || (cs & (cs - 1)))) {
        img_err("Cluster size must be a power of two between 512 and 2048k");
        goto out;
    }
    unsigned order = 4;     /* log2(refcount_bits) */
    if (qcow2 && (v = img_opts_get(&o, "refcount_bits")) && !refcount_order(&o, v, &order))
        goto out;
    struct img im;
    bool opened = false;
    uint64_t data = 0;
    if (file) {
        if (img_open(&im, file, fmt, 0) < 0)
            goto out;
        opened = true;
        size = im.size;
        if (qcow2) {
            for (uint64_t off = 0; off < size;) {
                struct bstat b;
                int r = img_block_status(&im, off, size - off, &b);
                if (r < 0) {
                    img_err("Unable to get block status: %s", strerror(-r));
                    img_close(&im);
                    goto out;
                }
                uint64_t n = b.len;
                if (!b.zero && b.data && b.present) {
                    n = round_up(off + n, cs) - off;
                    data += off % cs + n;
                }
                off += n;
            }
        }
    }
    uint64_t required, full;
    if (qcow2) {
        uint64_t vsize = round_up(size, cs);
        if (prealloc && (!strcmp(prealloc, "full") || !strcmp(prealloc, "falloc")))
            data = vsize;
        full = prealloc_size(vsize, cs, order);
        required = full - vsize + data;
    } else {
        required = full = round_up(size, 512);
    }
    bool bitmaps = qcow2 && opened && im.q;
    if (opened)
        img_close(&im);
    if (json) {
        printf("{\n");
        if (bitmaps)
            printf("    \"bitmaps\": 0,\n");
        printf("    \"required\": %" PRIu64 ",\n    \"fully-allocated\": %" PRIu64 "\n}\n",
               required, full);
    } else {
        printf("required size: %" PRIu64 "\nfully allocated size: %" PRIu64 "\n", required, full);
        if (bitmaps)
            printf("bitmaps size: 0\n");
    }
    ret = 0;
out:
    fflush(stdout);
    img_opts_free(&o);
    return ret;
}
