/* kvmbox-img commit: copy what a qcow2 overlay stores into its backing
 * file, then (without -d) empty the overlay. */
#include "img/bstat.h"
#include "img/qmeta.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
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

int img_commit(int argc, char **argv)
{
    const char *fmt = NULL;
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
        case 'b': img_err("-b (commit into a deeper base) is not supported by kvmbox-img"); return 1;
        case 'h': printf("usage: kvmbox-img commit [-f fmt] [-t cache] [-p] [-q] [-d] "
                         "filename\n"); return 0;
        default: img_err("unrecognized option '%s'", argv[optind - 1]); return 1;
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
    if (img_open(&top, name, fmt, IMG_RW | IMG_NO_BACKING) < 0)
        return 1;
    struct qhdr h;
    char err[256] = "";
    if (!top.q || qhdr_read(&top, &h, err, sizeof err) < 0 || !h.has_backing) {
        img_err("Image does not have a backing file");
        img_close(&top);
        return 1;
    }
    char path[4096];
    const char *slash = strrchr(name, '/');
    if (h.backing[0] != '/' && slash)
        snprintf(path, sizeof path, "%.*s/%s", (int)(slash - name), name, h.backing);
    else
        snprintf(path, sizeof path, "%s", h.backing);
    if (img_open(&base, path, h.has_backing_fmt ? h.backing_fmt : NULL, IMG_RW) < 0) {
        img_close(&top);
        return 1;
    }
    int ret = 1, r = 0;
    uint8_t *buf = malloc(COMMIT_CHUNK);
    if (!buf)
        goto out;
    if (base.size < top.size) {
        r = base.q ? img_qcow2_resize(&base, top.size) : -ENOTSUP;
        if (r < 0) {
            img_err("Could not resize the backing file '%s' to %" PRIu64 " bytes: %s", path,
                    top.size, strerror(-r));
            goto out;
        }
    }
    img_progress(progress, 0.0);
    for (uint64_t off = 0; off < top.size;) {
        struct bstat b;
        uint64_t want = top.size - off < COMMIT_CHUNK ? top.size - off : COMMIT_CHUNK;
        if ((r = img_block_status(&top, off, want, &b)) < 0)
            break;
        if (b.present && b.zero && !b.data)
            r = base.drv->write_zeroes(base.st, off, b.len);
        else if (b.present && (r = img_read(&top, off, buf, b.len)) == 0)
            r = img_write(&base, off, buf, b.len);
        if (r < 0)
            break;
        off += b.len;
        img_progress(progress, off * 100.0 / top.size);
    }
    if (r == 0)
        r = base.drv->flush(base.st);
    if (r < 0) {
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
    free(buf);
    if (img_close(&base) < 0)
        ret = 1;
    if (img_close(&top) < 0)
        ret = 1;
    fflush(stdout);
    return ret;
}
