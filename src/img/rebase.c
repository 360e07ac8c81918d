/* kvmbox-img rebase: change a qcow2 image's backing file. Safe mode copies
 * into the image every unallocated range where the old and new backing
 * files differ, so the guest-visible content stays the same; -u only
 * rewrites the name. */
#include "img/bstat.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { REBASE_CHUNK = 1 << 20 };

static void rel_path(const char *image, const char *name, char *out, size_t len)
{
    const char *slash = strrchr(image, '/');
    if (name[0] != '/' && slash)
        snprintf(out, len, "%.*s/%s", (int)(slash - image), image, name);
    else
        snprintf(out, len, "%s", name);
}

int img_rebase(int argc, char **argv)
{
    const char *fmt = NULL, *nb = NULL, *nbfmt = NULL;
    bool unsafe = false, progress = false, quiet = false;
    int c;
    static const struct option lo[] = { { "help", no_argument, NULL, 'h' },
                                        { "force-share", no_argument, NULL, 'U' },
                                        { NULL, 0, NULL, 0 } };
    optind = 1;
    while ((c = getopt_long(argc, argv, ":hf:F:b:upt:T:qU", lo, NULL)) != -1) {
        switch (c) {
        case 'f': fmt = optarg; break;
        case 'b': nb = optarg; break;
        case 'F': nbfmt = optarg; break;
        case 'u': unsafe = true; break;
        case 'p': progress = true; break;
        case 'q': quiet = true; break;
        case 'U': img_force_share = true; break;
        case 't': case 'T': break;
        case 'h': printf("usage: kvmbox-img rebase [-f fmt] [-p] [-q] [-u] -b backing_file "
                         "[-F backing_fmt] filename\n"); return 0;
        default: return img_bad_option(c, argv[optind - 1]);
        }
    }
    if (quiet)
        progress = false;
    if (optind != argc - 1) {
        img_err("Expecting one image file name");
        return 1;
    }
    if (!nb) {
        img_err("Must specify backing file (-b) or use unsafe mode (-u)");
        return 1;
    }
    if (!*nb)
        nb = NULL;
    if (nb && !nbfmt) {
        const char *p;
        char path[4096];
        rel_path(argv[optind], nb, path, sizeof path);
        if (!unsafe && !(p = img_probe(path)))
            return 1;
        nbfmt = unsafe ? NULL : p;
    }
    if (nbfmt && strcmp(nbfmt, "raw") && strcmp(nbfmt, "qcow2")) {
        img_err("Unknown file format '%s'", nbfmt);
        return 1;
    }
    const char *name = argv[optind];
    struct img im;
    if (img_open(&im, name, fmt, IMG_RW | (unsafe ? IMG_NO_BACKING : 0)) < 0)
        return 1;
    int ret = 1, r = 0;
    if (!im.q) {
        img_err("Backing files are not supported by file format '%s'", im.fmt);
        goto out;
    }
    if (!unsafe) {
        struct img newb;
        bool have_new = false;
        uint8_t *a = malloc(REBASE_CHUNK), *b = malloc(REBASE_CHUNK);
        struct qcow2 *q = im.q;
        struct qcow2_backing *old = q->backing;
        if (!a || !b) {
            r = -ENOMEM;
        } else if (nb) {
            char path[4096];
            rel_path(name, nb, path, sizeof path);
            if (img_open(&newb, path, nbfmt, 0) < 0)
                r = -EINVAL;
            else
                have_new = true;
        }
        img_progress(progress && r == 0, 0.0);
        for (uint64_t off = 0; r == 0 && off < im.size;) {
            struct bstat st;
            uint64_t want = im.size - off < REBASE_CHUNK ? im.size - off : REBASE_CHUNK;
            /* Only what this image does not store itself. */
            pthread_mutex_lock(&q->lock);
            struct qcow2_backing *saved = q->backing;
            q->backing = NULL;
            pthread_mutex_unlock(&q->lock);
            r = img_block_status(&im, off, want, &st);
            pthread_mutex_lock(&q->lock);
            q->backing = saved;
            pthread_mutex_unlock(&q->lock);
            if (r < 0)
                break;
            uint64_t n = st.len;
            if (!st.present) {
                struct iovec v = { a, (size_t)n };
                memset(a, 0, n);
                memset(b, 0, n);
                if (old && off < old->len)
                    r = old->drv->preadv(old->state, off, &v, 1,
                                         n < old->len - off ? n : old->len - off);
                if (r == 0 && have_new && off < newb.size)
                    r = img_read(&newb, off, b, n < newb.size - off ? n : newb.size - off);
                if (r == 0 && memcmp(a, b, n)) {
                    /* Keep the old backing content here. */
                    for (uint64_t i = 0; i < n && r == 0; i += 65536) {
                        uint64_t m = n - i < 65536 ? n - i : 65536;
                        if (memcmp(a + i, b + i, m))
                            r = img_write(&im, off + i, a + i, m);
                    }
                }
            }
            off += n;
            img_progress(progress, off * 100.0 / im.size);
        }
        if (have_new)
            img_close(&newb);
        free(a);
        free(b);
        if (r < 0) {
            img_err("Could not rebase '%s': %s", name, strerror(-r));
            goto out;
        }
        if ((r = im.drv->flush(im.st)) < 0) {
            img_err("Could not rebase '%s': %s", name, strerror(-r));
            goto out;
        }
        img_progress_end(progress);
    }
    if ((r = img_qcow2_set_backing(&im, nb, nbfmt)) < 0) {
        img_err("Could not change the backing file to '%s': %s", nb ? nb : "", strerror(-r));
        goto out;
    }
    ret = 0;
out:
    if (img_close(&im) < 0)
        ret = 1;
    return ret;
}
