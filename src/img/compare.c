/* kvmbox-img compare: qemu-img compare's messages and exit codes (0 equal,
 * 1 different, 2 error); mismatches are reported at the first differing
 * 512-byte sector, as qemu-img does. */
#include "img/bstat.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { CMP_CHUNK = 1 << 20 };

/* Offset of the first differing 512-byte sector, or len if equal. */
static uint64_t first_diff(const uint8_t *a, const uint8_t *b, uint64_t len)
{
    for (uint64_t i = 0; i < len; i += 512) {
        uint64_t n = len - i < 512 ? len - i : 512;
        if (memcmp(a + i, b + i, n))
            return i;
    }
    return len;
}

static uint64_t first_nonzero(const uint8_t *a, uint64_t len)
{
    for (uint64_t i = 0; i < len; i++)
        if (a[i])
            return i & ~511ull;
    return len;
}

/* The part of the longer image past the shorter one must read as zeros. */
static int check_tail(struct img *im, uint64_t from, uint8_t *buf, bool *differs, uint64_t *at)
{
    for (uint64_t off = from; off < im->size;) {
        struct bstat b;
        int r = img_block_status(im, off, CMP_CHUNK, &b);
        if (r < 0)
            return r;
        uint64_t n = b.len;
        if (!(b.zero && !b.data)) {
            if ((r = img_read(im, off, buf, n)) < 0)
                return r;
            uint64_t d = first_nonzero(buf, n);
            if (d < n) {
                *differs = true;
                *at = off + d;
                return 0;
            }
        }
        off += n;
    }
    return 0;
}

int img_compare(int argc, char **argv)
{
    const char *fmt1 = NULL, *fmt2 = NULL;
    bool strict = false, progress = false, quiet = false;
    int c;
    static const struct option lo[] = {
        { "help", no_argument, NULL, 'h' }, { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 } };
    optind = 1;
    while ((c = getopt_long(argc, argv, ":hf:F:T:pqsU", lo, NULL)) != -1) {
        switch (c) {
        case 'f': fmt1 = optarg; break;
        case 'F': fmt2 = optarg; break;
        case 'p': progress = true; break;
        case 'q': quiet = true; break;
        case 's': strict = true; break;
        case 'U': img_force_share = true; break;
        case 'T': break;
        case 'h': printf("usage: kvmbox-img compare [-f fmt] [-F fmt] [-p] [-q] [-s] filename1 "
                         "filename2\n"); return 0;
        default: return img_bad_option(c, argv[optind - 1]);
        }
    }
    if (quiet)
        progress = false;
    if (argc - optind != 2) {
        img_err("Expecting two image file names");
        return 2;
    }
    if (!fmt2)
        fmt2 = fmt1;
    struct img a, b;
    if (img_open(&a, argv[optind], fmt1, 0) < 0)
        return 2;
    if (img_open(&b, argv[optind + 1], fmt2, 0) < 0) {
        img_close(&a);
        return 2;
    }
    uint8_t *ba = malloc(CMP_CHUNK), *bb = malloc(CMP_CHUNK);
    int ret = 2, r = 0;
    if (!ba || !bb)
        goto out;
    uint64_t common = a.size < b.size ? a.size : b.size, total = a.size > b.size ? a.size : b.size;
    img_progress(progress, 0.0);
    for (uint64_t off = 0; off < common;) {
        struct bstat sa, sb;
        if ((r = img_block_status(&a, off, common - off, &sa)) < 0 ||
            (r = img_block_status(&b, off, common - off, &sb)) < 0)
            goto ioerr;
        uint64_t n = sa.len < sb.len ? sa.len : sb.len;
        if (n > CMP_CHUNK)
            n = CMP_CHUNK;
        if (strict && (sa.present != sb.present)) {
            if (!quiet)
                printf("Strict mode: Offset %" PRIu64 " block status mismatch!\n", off);
            ret = 1;
            goto out;
        }
        bool za = sa.zero && !sa.data, zb = sb.zero && !sb.data;
        if (!(za && zb)) {
            if ((r = img_read(&a, off, ba, n)) < 0 || (r = img_read(&b, off, bb, n)) < 0)
                goto ioerr;
            uint64_t d = first_diff(ba, bb, n);
            if (d < n) {
                if (!quiet)
                    printf("Content mismatch at offset %" PRIu64 "!\n", off + d);
                ret = 1;
                goto out;
            }
        }
        off += n;
        img_progress(progress, off * 100.0 / total);
    }
    if (a.size != b.size) {
        if (strict) {
            if (!quiet)
                printf("Strict mode: Image size mismatch!\n");
            ret = 1;
            goto out;
        }
        if (!quiet)
            printf("Warning: Image size mismatch!\n");
        bool differs = false;
        uint64_t at = 0;
        if ((r = check_tail(a.size > b.size ? &a : &b, common, ba, &differs, &at)) < 0)
            goto ioerr;
        if (differs) {
            if (!quiet)
                printf("Content mismatch at offset %" PRIu64 "!\n", at);
            ret = 1;
            goto out;
        }
    }
    img_progress_end(progress);
    if (!quiet)
        printf("Images are identical.\n");
    ret = 0;
    goto out;
ioerr:
    img_err("Error while reading: %s", strerror(-r));
    ret = 4;
out:
    fflush(stdout);
    free(ba);
    free(bb);
    img_close(&a);
    img_close(&b);
    return ret;
}
