/* kvmbox-img convert: copy one or more images (concatenated) into a new
 * raw or qcow2 image (qemu-img convert's options), skipping unallocated
 * and zero ranges so the target stays sparse; -c writes zlib-compressed
 * qcow2 clusters; -l copies an internal snapshot of a qcow2 source. */
#include "img/bstat.h"
#include "img/snapsel.h"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Chunks of 2 MiB (a multiple of every cluster size) are copied by
 * CONV_THREADS threads at once, as qemu-img's parallel coroutines do: the
 * drivers are thread-safe and the copies through the page cache then use
 * several CPUs. */
enum { CHUNK = 2 << 20, ZGRAN = 4096, CONV_THREADS = 4 };

static bool all_zero(const uint8_t *p, uint64_t n)
{
    const uint64_t *w = (const uint64_t *)p;
    uint64_t i = 0;
    for (; i + 8 <= n; i += 8)
        if (w[i / 8])
            return false;
    for (; i < n; i++)
        if (p[i])
            return false;
    return true;
}

struct conv {
    struct img *src;
    unsigned nsrc;
    struct img dst;
    bool compress, progress, no_create, target_zeroed;
    bool fresh_qcow2;           /* qcow2 target created here without a backing file */
    uint64_t total, sparse;
    atomic_uint_fast64_t done;
    /* The source being copied by the workers. */
    struct img *cur;
    uint64_t base;
    atomic_uint_fast64_t next_chunk;
    atomic_int err;
    pthread_mutex_t progress_lock;
};

/* Write buf (guest bytes [off, off+len) of the target), leaving out
 * all-zero pieces of `sparse` granularity when the target reads zeros. */
static int write_sparse(struct conv *cv, uint64_t off, const uint8_t *buf, uint64_t len)
{
    uint64_t g = cv->sparse ? cv->sparse : len;
    uint64_t i = 0;
    while (i < len) {
        uint64_t n = g - ((off + i) % g);
        if (n > len - i)
            n = len - i;
        bool z = cv->sparse && all_zero(buf + i, n);
        uint64_t j = i + n;
        while (j < len) {       /* extend over pieces of the same kind */
            uint64_t m = g < len - j ? g : len - j;
            if ((cv->sparse && all_zero(buf + j, m)) != z)
                break;
            j += m;
        }
        int r;
        if (!z)
            r = img_write(&cv->dst, off + i, buf + i, j - i);
        else if (!cv->target_zeroed)
            r = cv->dst.drv->write_zeroes(cv->dst.st, off + i, j - i);
        else
            r = 0;
        if (r < 0)
            return r;
        i = j;
    }
    return 0;
}

/* Fresh qcow2 target (nothing to copy on write, nothing shared): clusters
 * are allocated under the driver's lock, the data is written outside it
 * (so the worker threads write in parallel), then the L2 entries are
 * published. Same order as the driver's own allocating writes: data before
 * the metadata that references it (write-back barriers on need_sync).
 * off is cluster aligned; len whole clusters or up to the image end. */
static int fast_write(struct conv *cv, uint64_t off, const uint8_t *buf, uint64_t len)
{
    struct qcow2 *s = cv->dst.q;
    uint64_t cs = s->cluster_size, mask = (1ull << s->l2_bits) - 1;
    uint8_t *pad = NULL;
    int r = 0;
    while (len && r == 0) {
        uint64_t ci = off >> s->cluster_bits;
        uint64_t n = (len + cs - 1) / cs;
        if (n > qcow2_max_alloc(s))
            n = qcow2_max_alloc(s);
        if (n > mask + 1 - (ci & mask))
            n = mask + 1 - (ci & mask);
        uint64_t bytes = n * cs < len ? n * cs : len;
        pthread_mutex_lock(&s->lock);
        uint64_t host = qcow2_alloc_clusters(s, n, &r);
        pthread_mutex_unlock(&s->lock);
        if (!host)
            break;
        uint64_t whole = bytes & ~(cs - 1);
        if (whole && (r = blk_file_pwrite(s->file, host, buf, whole)) < 0)
            break;
        if (bytes > whole) {    /* last partial cluster: zero-filled (clusters may be reused) */
            if (!pad && !(pad = calloc(1, cs))) {
                r = -ENOMEM;
                break;
            }
            memset(pad, 0, cs);
            memcpy(pad, buf + whole, bytes - whole);
            if ((r = blk_file_pwrite(s->file, host + whole, pad, cs)) < 0)
                break;
        }
        pthread_mutex_lock(&s->lock);
        s->need_sync = true;
        uint64_t l1i = ci >> s->l2_bits, l2 = s->l1[l1i] & QCOW2_OFFSET_MASK;
        struct qcow2_cache_entry *e = NULL;
        if (!l2) {
            l2 = qcow2_alloc_clusters(s, 1, &r);
            if (l2 && (e = qcow2_cache_get(s, &s->l2_cache, l2, true, &r))) {
                s->l1[l1i] = l2 | QCOW2_OFLAG_COPIED;
                s->l1_dirty = true;
            }
        } else {
            e = qcow2_cache_get(s, &s->l2_cache, l2, false, &r);
        }
        if (e) {
            for (uint64_t i = 0; i < n; i++)
                qcow2_put_be64(e->data + ((ci + i) & mask) * 8,
                               (host + i * cs) | QCOW2_OFLAG_COPIED);
            e->dirty = true;
        } else if (r == 0) {
            r = -EIO;
        }
        pthread_mutex_unlock(&s->lock);
        off += bytes;
        buf += bytes;
        len -= bytes;
    }
    free(pad);
    return r;
}

/* Fresh qcow2 target: non-zero clusters through fast_write. */
static int write_fresh(struct conv *cv, uint64_t off, const uint8_t *buf, uint64_t len)
{
    uint64_t cs = cv->dst.q->cluster_size;
    for (uint64_t i = 0; i < len;) {
        uint64_t n = len - i < cs ? len - i : cs;
        if (cv->sparse && all_zero(buf + i, n)) {
            i += n;
            continue;
        }
        uint64_t j = i + n;
        while (j < len) {
            uint64_t m = len - j < cs ? len - j : cs;
            if (cv->sparse && all_zero(buf + j, m))
                break;
            j += m;
        }
        int r = fast_write(cv, off + i, buf + i, j - i);
        if (r < 0)
            return r;
        i = j;
    }
    return 0;
}

static int write_compressed(struct conv *cv, uint64_t off, const uint8_t *buf, uint64_t len)
{
    uint64_t cs = cv->dst.q->cluster_size;
    for (uint64_t i = 0; i < len;) {
        uint64_t n = cs - ((off + i) & (cs - 1));
        if (n > len - i)
            n = len - i;
        if (all_zero(buf + i, n)) {
            if (!cv->target_zeroed) {
                int r = cv->dst.drv->write_zeroes(cv->dst.st, off + i, n);
                if (r < 0)
                    return r;
            }
        } else {
            int r = qcow2_write_compressed(cv->dst.st, off + i, buf + i, n);
            if (r < 0)
                return r;
        }
        i += n;
    }
    return 0;
}

/* Copy [start, end) of source s (at target offset base) through buf. */
static int copy_range(struct conv *cv, struct img *s, uint64_t base, uint64_t start,
                      uint64_t end, uint8_t *buf)
{
    uint64_t cs = cv->compress ? cv->dst.q->cluster_size : 0;
    for (uint64_t off = start; off < end;) {
        struct bstat b;
        int r = img_block_status(s, off, end - off, &b);
        if (r < 0) {
            img_err("error while reading block status at offset %" PRIu64 ": %s", off,
                    strerror(-r));
            return r;
        }
        uint64_t n = b.len;
        if (cs) {
            /* Whole target clusters: widen to the cluster end. */
            uint64_t e = ((base + off + n + cs - 1) & ~(cs - 1)) - base;
            if (e > end)
                e = end;
            n = e - off;
            b.zero = b.zero && n == b.len;
        }
        if (b.zero && !b.data) {
            if (!cv->target_zeroed &&
                (r = cv->dst.drv->write_zeroes(cv->dst.st, base + off, n)) < 0) {
                img_err("error while writing at byte %" PRIu64 ": %s", base + off, strerror(-r));
                return r;
            }
        } else {
            if ((r = img_read(s, off, buf, n)) < 0) {
                img_err("error while reading at byte %" PRIu64 ": %s", off, strerror(-r));
                return r;
            }
            if (cs)
                r = write_compressed(cv, base + off, buf, n);
            else if (cv->fresh_qcow2 && !((base + off) & (cv->dst.q->cluster_size - 1)) &&
                     (!(n & (cv->dst.q->cluster_size - 1)) || base + off + n == cv->dst.size))
                r = write_fresh(cv, base + off, buf, n);
            else
                r = write_sparse(cv, base + off, buf, n);
            if (r < 0) {
                img_err("error while writing at byte %" PRIu64 ": %s", base + off, strerror(-r));
                return r;
            }
        }
        off += n;
        uint64_t done = atomic_fetch_add(&cv->done, n) + n;
        if (cv->progress) {
            pthread_mutex_lock(&cv->progress_lock);
            img_progress(true, cv->total ? done * 100.0 / cv->total : 100.0);
            pthread_mutex_unlock(&cv->progress_lock);
        }
    }
    return 0;
}

static void *copy_worker(void *opaque)
{
    struct conv *cv = opaque;
    uint8_t *buf = malloc(CHUNK);
    if (!buf) {
        atomic_store(&cv->err, -ENOMEM);
        return NULL;
    }
    struct img *s = cv->cur;
    for (;;) {
        uint64_t i = atomic_fetch_add(&cv->next_chunk, 1);
        uint64_t start = i * CHUNK;
        if (start >= s->size || atomic_load(&cv->err))
            break;
        uint64_t end = s->size - start < CHUNK ? s->size : start + CHUNK;
        int r = copy_range(cv, s, cv->base, start, end, buf);
        if (r < 0) {
            atomic_store(&cv->err, r);
            break;
        }
    }
    free(buf);
    return NULL;
}

/* Copy source s (at target offset base) with the worker threads. */
static int copy_one(struct conv *cv, struct img *s, uint64_t base)
{
    cv->cur = s;
    cv->base = base;
    atomic_store(&cv->next_chunk, 0);
    pthread_t th[CONV_THREADS];
    unsigned n = 0;
    for (; n < CONV_THREADS; n++)
        if (pthread_create(&th[n], NULL, copy_worker, cv))
            break;
    if (n == 0)
        copy_worker(cv);
    for (unsigned i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    return atomic_load(&cv->err);
}

int img_convert(int argc, char **argv)
{
    const char *fmt = NULL, *ofmt = "raw", *out_backing = NULL, *out_backing_fmt = NULL;
    struct img_opts o = { 0 };
    struct snapsel snap = { 0 };
    struct conv cv = { .sparse = ZGRAN };
    atomic_init(&cv.done, 0);
    atomic_init(&cv.next_chunk, 0);
    atomic_init(&cv.err, 0);
    pthread_mutex_init(&cv.progress_lock, NULL);
    bool quiet = false, unsafe = true;
    int c, ret = 1;
    static const struct option lo[] = {
        { "help", no_argument, NULL, 'h' }, { "force-share", no_argument, NULL, 'U' },
        { "target-is-zero", no_argument, NULL, 'Z' }, { "salvage", no_argument, NULL, 'X' },
        { NULL, 0, NULL, 0 } };
    optind = 1;
    while ((c = getopt_long(argc, argv, ":hf:O:B:CcF:o:l:S:pt:T:qnm:WrU", lo, NULL)) != -1) {
        switch (c) {
        case 'f': fmt = optarg; break;
        case 'O': ofmt = optarg; break;
        case 'B': out_backing = optarg; break;
        case 'F': out_backing_fmt = optarg; break;
        case 'c': cv.compress = true; break;
        case 'p': cv.progress = true; break;
        case 'q': quiet = true; break;
        case 'n': cv.no_create = true; break;
        case 't':
            /* qemu-img convert's default target cache mode is unsafe. */
            if (!strcmp(optarg, "unsafe"))
                unsafe = true;
            else if (!strcmp(optarg, "writeback") || !strcmp(optarg, "writethrough") ||
                     !strcmp(optarg, "none") || !strcmp(optarg, "directsync"))
                unsafe = false;
            else {
                img_err("Invalid cache option: %s", optarg);
                goto out;
            }
            break;
        case 'U': img_force_share = true; break;
        case 'W': case 'C': case 'r': case 'T': case 'm': case 'X': break;
        case 'Z': cv.target_zeroed = true; break;
        case 'S':
            if (!img_parse_size(optarg, &cv.sparse) || (cv.sparse && cv.sparse % 512)) {
                img_err("Invalid buffer size for sparse output specified. Valid sizes are "
                        "multiples of 512 up to 16MB.");
                goto out;
            }
            break;
        case 'o':
            if (!img_opts_add(&o, optarg)) {
                img_err("Invalid option list: %s", optarg);
                goto out;
            }
            break;
        case 'l':
            if (!snapsel_parse(&snap, optarg))
                goto out;
            break;
        case 'h':
            printf("usage: kvmbox-img convert [-c] [-p] [-q] [-n] [-f fmt] [-O output_fmt] "
                   "[-o options] [-l snapshot_param] [-W] filename [filename2 [...]] output_filename\n");
            ret = 0;
            goto out;
        default: img_bad_option(c, argv[optind - 1]); goto out;
        }
    }
    if (quiet)
        cv.progress = false;
    if (argc - optind < 2) {
        img_err("Must specify image file name");
        goto out;
    }
    const char *outname = argv[argc - 1];
    cv.nsrc = (unsigned)(argc - 1 - optind);
    cv.src = calloc(cv.nsrc, sizeof *cv.src);
    if (!cv.src) {
        img_err("out of memory");
        goto out;
    }
    unsigned opened = 0;
    for (; opened < cv.nsrc; opened++) {
        if (img_open(&cv.src[opened], argv[optind + opened], fmt, IMG_CONSISTENT) < 0)
            goto close_src;
        cv.total += cv.src[opened].size;
    }
    /* Same order of checks as qemu-img: sources, snapshot, target format. */
    if (snapsel_given(&snap) && cv.nsrc > 1) {
        img_err("No support for concatenating multiple snapshot");
        goto close_src;
    }
    if (snapsel_given(&snap) && snapsel_load(&cv.src[0], &snap) < 0)
        goto close_src;
    if (cv.compress && strcmp(ofmt, "qcow2")) {
        img_err("Compression not supported for this file format");
        goto close_src;
    }
    if (!cv.no_create) {
        if (img_create_image(outname, ofmt, cv.total, true, &o, out_backing, out_backing_fmt,
                             true) != 0)
            goto close_src;
        cv.target_zeroed = !out_backing;
    } else if (o.n) {
        img_err("-o cannot be used with -n");
        goto close_src;
    }
    if (img_open(&cv.dst, outname, cv.no_create ? NULL : ofmt,
                 IMG_RW | (unsafe ? IMG_UNSAFE : 0)) < 0)
        goto close_src;
    if (cv.no_create && strcmp(cv.dst.fmt, ofmt) && strcmp(ofmt, "raw"))
        ofmt = cv.dst.fmt;
    if (cv.compress && !cv.dst.q) {
        img_err("Compression not supported for this file format");
        goto close_dst;
    }
    const char *pa = img_opts_get(&o, "preallocation");
    cv.fresh_qcow2 = cv.dst.q && !cv.no_create && !out_backing && (!pa || !strcmp(pa, "off"));
    if (cv.dst.size < cv.total) {
        img_err("Error: Target image is too small (%" PRIu64 " bytes, needs %" PRIu64 ")",
                cv.dst.size, cv.total);
        goto close_dst;
    }
    img_progress(cv.progress, 0.0);
    uint64_t base = 0;
    int r = 0;
    for (unsigned i = 0; i < cv.nsrc && r == 0; i++) {
        r = copy_one(&cv, &cv.src[i], base);
        base += cv.src[i].size;
    }
    if (r == 0 && !unsafe && !cv.dst.q && (r = cv.dst.drv->flush(cv.dst.st)) < 0)
        img_err("error while flushing the target: %s", strerror(-r));
    if (r == 0) {
        img_progress_end(cv.progress);
        ret = 0;
    }
close_dst:
    if (img_close(&cv.dst) < 0 && ret == 0) {
        img_err("error while writing the target image");
        ret = 1;
    }
close_src:
    for (unsigned i = 0; i < opened; i++)
        img_close(&cv.src[i]);
out:
    free(cv.src);
    snapsel_free(&snap);
    pthread_mutex_destroy(&cv.progress_lock);
    img_opts_free(&o);
    return ret;
}
