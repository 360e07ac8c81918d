/* kvmbox-img resize: raw (truncate/fallocate) and qcow2 (header size, a
 * bigger L1 table made durable before the header points to it, shared with
 * snapshot -a: qmeta_grow_l1;
 * shrinking discards the clusters past the new end and drops their L2
 * tables; growing over a longer backing file zeroes the new area, so the
 * backing file's bytes past the old end do not appear, as in qemu-img).
 * qemu-img's syntax: [+|-]size, --shrink, --preallocation. */
#include "img/qmeta.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int img_qcow2_resize(struct img *im, uint64_t size)
{
    struct qcow2 *s = im->q;
    uint64_t cs = s->cluster_size;
    uint64_t need = qmeta_l1_entries(s, size);
    uint64_t old = s->size, zero_end = 0;
    int r = 0;
    if (size > old && s->backing && s->backing->len > old) {
        /* Zero clusters hide the backing file; version 2 has none. */
        if (s->version < 3)
            return -ENOTSUP;
        zero_end = size < s->backing->len ? size : s->backing->len;
    }
    if (size < s->size) {
        uint64_t a = (size + cs - 1) & ~(cs - 1);
        if (a < s->size && (r = im->drv->discard(im->st, a, s->size - a)) < 0)
            return r;
    }
    pthread_mutex_lock(&s->lock);
    r = qcow2_meta_writeback(s, true, true);
    if (r == 0)
        r = qmeta_grow_l1(s, need);
    if (r == 0 && size < s->size) {
        /* L2 tables wholly past the new end: unreferenced first, then freed. */
        for (uint64_t i = need; i < s->l1_size && r == 0; i++) {
            uint64_t l2 = s->l1[i] & QCOW2_OFFSET_MASK;
            if (!l2)
                continue;
            s->l1[i] = 0;
            s->l1_dirty = true;
            r = qcow2_free_later(s, l2, cs);
        }
    }
    if (r == 0) {
        s->size = size;
        qcow2_put_be64(s->hdr + 24, size);
        r = qcow2_write_header(s);
    }
    if (r == 0)
        r = qcow2_meta_writeback(s, true, true);
    pthread_mutex_unlock(&s->lock);
    if (r == 0 && zero_end && (r = im->drv->write_zeroes(im->st, old, zero_end - old)) == 0)
        r = im->drv->flush(im->st);
    return r;
}

static int raw_resize(const char *name, uint64_t size, const char *prealloc)
{
    int fd = open(name, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    int r = 0;
    if (fstat(fd, &st) < 0)
        r = -errno;
    uint64_t old = (uint64_t)st.st_size;
    if (!r && ftruncate(fd, (off_t)size) < 0)
        r = -errno;
    if (!r && size > old && prealloc && strcmp(prealloc, "off")) {
        int e = posix_fallocate(fd, (off_t)old, (off_t)(size - old));
        if (e)
            r = -e;
        if (!r && !strcmp(prealloc, "full")) {
            static const uint8_t z[65536];
            for (uint64_t o = old; o < size && !r;) {
                uint64_t n = size - o < sizeof z ? size - o : sizeof z;
                if (pwrite(fd, z, n, (off_t)o) != (ssize_t)n)
                    r = -EIO;
                o += n;
            }
        }
    }
    if (!r && fsync(fd) < 0)
        r = -errno;
    close(fd);
    return r;
}

int img_resize(int argc, char **argv)
{
    const char *fmt = NULL, *prealloc = NULL;
    bool shrink = false, quiet = false;
    int c;
    static const struct option lo[] = {
        { "help", no_argument, NULL, 'h' }, { "preallocation", required_argument, NULL, 'P' },
        { "shrink", no_argument, NULL, 'S' }, { "image-opts", no_argument, NULL, 'I' },
        { NULL, 0, NULL, 0 } };
    /* The size may be negative: take it off before getopt sees it. */
    if (argc < 3) {
        img_err("Expecting image file name and size");
        return 1;
    }
    const char *sz = argv[--argc];
    optind = 1;
    while ((c = getopt_long(argc, argv, ":f:hqP:S", lo, NULL)) != -1) {
        switch (c) {
        case 'f': fmt = optarg; break;
        case 'q': quiet = true; break;
        case 'P': prealloc = optarg; break;
        case 'S': shrink = true; break;
        case 'h': printf("usage: kvmbox-img resize [-f fmt] [--preallocation=prealloc] [-q] "
                         "[--shrink] filename [+ | -]size\n"); return 0;
        default: return img_bad_option(c, argv[optind - 1]);
        }
    }
    if (optind != argc - 1) {
        img_err("Expecting image file name and size");
        return 1;
    }
    if (prealloc && strcmp(prealloc, "off") && strcmp(prealloc, "falloc") &&
        strcmp(prealloc, "full") && strcmp(prealloc, "metadata")) {
        img_err("Invalid preallocation mode: '%s'", prealloc);
        return 1;
    }
    const char *name = argv[optind];
    int rel = 0;
    if (*sz == '+' || *sz == '-')
        rel = *sz++ == '+' ? 1 : -1;
    uint64_t n;
    if (!img_parse_size(sz, &n)) {
        img_err("Parameter 'size' expects a non-negative number below 2^64");
        fprintf(stderr, "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, "
                "peta-\nand exabytes, respectively.\n");
        return 1;
    }
    struct img im;
    if (img_open(&im, name, fmt, IMG_RW) < 0)    /* backing length: see img_qcow2_resize */
        return 1;
    uint64_t cur = im.size, size = n;
    if (rel > 0)
        size = cur + n < cur ? UINT64_MAX : cur + n;
    else if (rel < 0)
        size = n >= cur ? 0 : cur - n;
    int ret = 1, r = 0;
    if (size == 0 || (rel < 0 && n >= cur)) {
        img_err("New image size must be positive");
        goto out;
    }
    if (size < cur && !shrink) {
        img_err("Use the --shrink option to perform a shrink operation.");
        img_err("warning: Shrinking an image will delete all data beyond the shrunken image's "
                "end. Before performing such an operation, make sure there is no important "
                "data there.");
        goto out;
    }
    if (im.q) {
        if (prealloc && strcmp(prealloc, "off")) {
            img_err("Preallocation for qcow2 resize is not supported by kvmbox-img");
            goto out;
        }
        r = img_qcow2_resize(&im, size);
    } else {
        if (prealloc && !strcmp(prealloc, "metadata")) {
            img_err("Unsupported preallocation mode 'metadata' for raw");
            goto out;
        }
        img_close(&im);
        r = raw_resize(name, size, prealloc);
        if (r < 0) {
            img_err("Error resizing image: %s", strerror(-r));
            return 1;
        }
        if (!quiet)
            printf("Image resized.\n");
        return 0;
    }
    if (r == -ENOTSUP) {
        img_err("Failed to zero out new clusters: Operation not supported");
        goto out;
    }
    if (r < 0) {
        img_err("Error resizing image: %s", strerror(-r));
        goto out;
    }
    ret = 0;
out:
    if (img_close(&im) < 0 && ret == 0) {
        img_err("Error resizing image: write-back failed");
        ret = 1;
    }
    if (ret == 0 && !quiet)
        printf("Image resized.\n");
    return ret;
}
