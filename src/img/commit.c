/* kvmbox-img commit: copy what a qcow2 overlay stores into its backing
 * file, then (without -d) empty the overlay. With -b BASE, everything the
 * top and the intermediate images hold goes into BASE, deeper in the
 * chain; as qemu-img, no image above BASE is changed (-b implies -d). */
#include "img/bstat.h"
#include "img/qmeta.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { COMMIT_CHUNK = 2 << 20 };

int img_qcow2_make_empty(struct img *im)
{
    struct qcow2 *s = im->q;
    uint64_t cs = s->cluster_size;
    int r = 0;
    uint8_t *t = malloc(cs);
    if (!t)
        return -ENOMEM;
    pthread_mutex_lock(&s->lock);
    for (uint32_t i = 0; i < s->l1_size && r == 0; i++) {
        uint64_t l2 = s->l1[i] & QCOW2_OFFSET_MASK;
        if (!l2)
            continue;
        struct qcow2_cache_entry *e = qcow2_cache_get(s, &s->l2_cache, l2, false, &r);
        if (!e)
            break;
        memcpy(t, e->data, cs);
        for (uint64_t j = 0; j < cs / 8 && r == 0; j++) {
            uint64_t host, clen;
            enum qcow2_ctype ty = qcow2_entry_type(s, qcow2_be64(t + j * 8), &host, &clen);
            if (ty == QCOW2_TYPE_NORMAL || ty == QCOW2_TYPE_ZERO_ALLOC)
                r = qcow2_free_later(s, host, cs);
            else if (ty == QCOW2_TYPE_COMPRESSED)
                r = qcow2_free_later(s, host, clen);
        }
        if (r == 0) {
            s->l1[i] = 0;
            s->l1_dirty = true;
            r = qcow2_free_later(s, l2, cs);
        }
    }
    if (r == 0)
        r = qcow2_meta_writeback(s, true, true);
    pthread_mutex_unlock(&s->lock);
    free(t);
    return r;
}

/* A backing file name as the driver resolves it: relative to the
 * directory of the image that names it. */
static void resolve(const char *image, const char *name, char *out, size_t len)
{
    const char *slash = strrchr(image, '/');
    if (name[0] != '/' && slash)
        snprintf(out, len, "%.*s/%s", (int)(slash - image), image, name);
    else
        snprintf(out, len, "%s", name);
}

/* Depth in top's backing chain (1: its backing file) of the image that
 * `base` names, 0 if none. qemu-img's rule: at each level, `base` taken
 * relative to that image's directory and the image's backing file must be
 * the same file after realpath. *path and *fmt: the match's (driver's
 * strings, valid while top is open). */
static unsigned find_base(const struct img *top, const char *base, const char **path,
                          const char **fmt)
{
    const char *image = top->name;
    const struct qcow2 *s = top->q;
    for (unsigned depth = 1; s && s->backing && s->backing_name; depth++) {
        char want[4096], a[PATH_MAX], b[PATH_MAX];
        resolve(image, base, want, sizeof want);
        if (realpath(want, a) && realpath(s->backing_name, b) && !strcmp(a, b)) {
            *path = s->backing_name;
            *fmt = s->backing->drv->format;
            return depth;
        }
        image = s->backing_name;
        s = s->backing->drv == &blk_driver_qcow2 ? s->backing->state : NULL;
    }
    return 0;
}

/* Copy what the images above depth `base_depth` of top's chain hold into
 * base. Ranges allocated deeper are already there. Past the end of a
 * shorter intermediate image the top reads zeros, so base gets zeros. */
static int copy_down(struct img *top, struct img *base, unsigned base_depth, bool progress)
{
    uint8_t *buf = malloc(COMMIT_CHUNK);
    int r = buf ? 0 : -ENOMEM;
    img_progress(progress, 0.0);
    for (uint64_t off = 0; r == 0 && off < top->size;) {
        struct bstat b;
        uint64_t want = top->size - off < COMMIT_CHUNK ? top->size - off : COMMIT_CHUNK;
        if ((r = img_block_status(top, off, want, &b)) < 0)
            break;
        bool above = b.depth < base_depth;
        bool short_zeros = !b.present && b.zero && b.depth > 0 && above;
        if (short_zeros || (b.present && above && b.zero && !b.data))
            r = base->drv->write_zeroes(base->st, off, b.len);
        else if (b.present && above && (r = img_read(top, off, buf, b.len)) == 0)
            r = img_write(base, off, buf, b.len);
        if (r < 0)
            break;
        off += b.len;
        img_progress(progress, off * 100.0 / top->size);
    }
    free(buf);
    if (r == 0)
        r = base->drv->flush(base->st);
    return r;
}

int img_commit(int argc, char **argv)
{
    const char *fmt = NULL, *base_name = NULL;
    bool progress = false, quiet = false, drop = false;
    int c;
    static const struct option lo[] = { { "help", no_argument, NULL, 'h' },
                                        { NULL, 0, NULL, 0 } };
    optind = 1;
    while ((c = getopt_long(argc, argv, ":f:ht:b:dpqr:", lo, NULL)) != -1) {
        switch (c) {
        case 'f': fmt = optarg; break;
        case 'p': progress = true; break;
        case 'q': quiet = true; break;
        case 'd': drop = true; break;
        case 't': case 'r': break;
        case 'b':
            /* -b implies -d (qemu-img): the images above the base keep
             * their data, so the top still reads the same afterwards. */
            base_name = optarg;
            drop = true;
            break;
        case 'h': printf("usage: kvmbox-img commit [-f fmt] [-t cache] [-b base] [-p] [-q] "
                         "[-d] filename\n"); return 0;
        default: return img_bad_option(c, argv[optind - 1]);
        }
    }
    if (quiet)
        progress = false;
    if (optind != argc - 1) {
        img_err("Expecting one image file name");
        return 1;
    }
    const char *name = argv[optind];
    struct img top, base;
    /* With -b the top's chain is read down to the base; without, only
     * the top image itself is copied into its backing file. */
    if (img_open(&top, name, fmt, IMG_RW | (base_name ? 0 : IMG_NO_BACKING)) < 0)
        return 1;
    char path[4096];
    struct qhdr h;          /* base_fmt may point into it */
    const char *base_fmt = NULL;
    unsigned depth = 1;
    if (base_name) {
        const char *p = NULL;
        if (!(depth = find_base(&top, base_name, &p, &base_fmt))) {
            img_err("Did not find '%s' in the backing chain of '%s'", base_name, name);
            img_close(&top);
            return 1;
        }
        snprintf(path, sizeof path, "%s", p);
    } else {
        char err[256] = "";
        if (!top.q || qhdr_read(&top, &h, err, sizeof err) < 0 || !h.has_backing) {
            img_err("Image does not have a backing file");
            img_close(&top);
            return 1;
        }
        resolve(name, h.backing, path, sizeof path);
        base_fmt = h.has_backing_fmt ? h.backing_fmt : NULL;
    }
    if (img_open(&base, path, base_fmt, IMG_RW) < 0) {
        img_close(&top);
        return 1;
    }
    int ret = 1, r = 0;
    if (base.size < top.size) {
        r = base.q ? img_qcow2_resize(&base, top.size) : -ENOTSUP;
        if (r < 0) {
            img_err("Could not resize the backing file '%s' to %" PRIu64 " bytes: %s", path,
                    top.size, strerror(-r));
            goto out;
        }
    }
    if ((r = copy_down(&top, &base, depth, progress)) < 0) {
        img_err("Commit failed: %s", strerror(-r));
        goto out;
    }
    if (!drop && (r = img_qcow2_make_empty(&top)) < 0) {
        img_err("Could not empty %s: %s", name, strerror(-r));
        goto out;
    }
    img_progress_end(progress);
    if (!quiet)
        printf("Image committed.\n");
    ret = 0;
out:
    if (img_close(&base) < 0)
        ret = 1;
    if (img_close(&top) < 0)
        ret = 1;
    fflush(stdout);
    return ret;
}
