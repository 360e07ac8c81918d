/* kvmbox-img bench: qemu-img bench's options and output. Requests go to
 * the format driver from `depth` threads at once (the driver is
 * thread-safe); request i uses offset (start + i * step) % image size,
 * as qemu-img bench does. */
#include "img/img.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct bench {
    struct img *im;
    uint64_t count, offset, step, bufsize, size, flush_interval;
    bool write;
    int pattern;
    atomic_uint_fast64_t next;
    atomic_int err;
};

static void *worker(void *opaque)
{
    struct bench *b = opaque;
    void *buf = NULL;
    if (posix_memalign(&buf, 4096, b->bufsize)) {
        atomic_store(&b->err, -ENOMEM);
        return NULL;
    }
    memset(buf, b->pattern, b->bufsize);
    for (;;) {
        uint64_t i = atomic_fetch_add(&b->next, 1);
        if (i >= b->count || atomic_load(&b->err))
            break;
        uint64_t off = b->size ? (b->offset + i * b->step) % b->size : 0;
        uint64_t len = b->bufsize;
        if (off + len > b->size)
            len = b->size - off;
        int r = len ? (b->write ? img_write(b->im, off, buf, len) : img_read(b->im, off, buf, len))
                    : 0;
        if (r == 0 && b->write && b->flush_interval && (i + 1) % b->flush_interval == 0)
            r = b->im->drv->flush(b->im->st);
        if (r < 0) {
            atomic_store(&b->err, r);
            break;
        }
    }
    free(buf);
    return NULL;
}

static bool parse_u64(const char *s, uint64_t *v)
{
    char *e;
    errno = 0;
    unsigned long long x = strtoull(s, &e, 0);
    if (errno || e == s || *e || *s == '-')
        return false;
    *v = x;
    return true;
}

int img_bench(int argc, char **argv)
{
    const char *fmt = NULL;
    uint64_t count = 75000, depth = 64, offset = 0, bufsize = 4096, step = 0, flush = 0;
    bool write = false, nocache = false, quiet = false;
    int pattern = 0, c;
    static const struct option lo[] = {
        { "help", no_argument, NULL, 'h' }, { "flush-interval", required_argument, NULL, 'F' },
        { "no-drain", no_argument, NULL, 'D' }, { "pattern", required_argument, NULL, 'P' },
        { "force-share", no_argument, NULL, 'U' }, { NULL, 0, NULL, 0 } };
    optind = 1;
    while ((c = getopt_long(argc, argv, ":hc:d:f:ni:o:qs:S:t:wU", lo, NULL)) != -1) {
        switch (c) {
        case 'c':
            if (!parse_u64(optarg, &count) || count > INT32_MAX) {
                img_err("Invalid request count specified");
                return 1;
            }
            break;
        case 'd':
            if (!parse_u64(optarg, &depth) || !depth || depth > 4096) {
                img_err("Invalid queue depth specified");
                return 1;
            }
            break;
        case 'f': fmt = optarg; break;
        case 'n': nocache = true; break;
        case 'i': break;
        case 'o':
            if (!img_parse_size(optarg, &offset)) {
                img_err("Invalid offset specified");
                return 1;
            }
            break;
        case 'q': quiet = true; break;
        case 's':
            if (!img_parse_size(optarg, &bufsize) || !bufsize || bufsize > INT32_MAX) {
                img_err("Invalid buffer size specified");
                return 1;
            }
            break;
        case 'S':
            if (!img_parse_size(optarg, &step) || step > INT32_MAX) {
                img_err("Invalid step size specified");
                return 1;
            }
            break;
        case 't':
            if (!strcmp(optarg, "none") || !strcmp(optarg, "directsync"))
                nocache = true;
            else if (strcmp(optarg, "writeback") && strcmp(optarg, "unsafe") &&
                     strcmp(optarg, "writethrough")) {
                img_err("Invalid cache mode");
                return 1;
            }
            break;
        case 'w': write = true; break;
        case 'U': img_force_share = true; break;
        case 'D': break;
        case 'F':
            if (!parse_u64(optarg, &flush) || flush > INT32_MAX) {
                img_err("Invalid flush interval specified");
                return 1;
            }
            break;
        case 'P':
            {
                uint64_t p;
                if (!parse_u64(optarg, &p) || p > 0xff) {
                    img_err("Invalid pattern byte specified");
                    return 1;
                }
                pattern = (int)p;
            }
            break;
        case 'h': printf("usage: kvmbox-img bench [-c count] [-d depth] [-f fmt] "
                         "[--flush-interval=flush_interval] [-n] [-o offset] [--pattern=pattern] "
                         "[-q] [-s buffer_size] [-S step_size] [-t cache] [-w] filename\n");
                  return 0;
        default: return img_bad_option(c, argv[optind - 1]);
        }
    }
    if (optind != argc - 1) {
        img_err("Expecting one image file name");
        return 1;
    }
    if (flush && flush < depth) {
        img_err("Flush interval can't be smaller than depth");
        return 1;
    }
    if (flush && !write) {
        img_err("--flush-interval is only available in write tests");
        return 1;
    }
    struct img im;
    if (img_open(&im, argv[optind], fmt, (write ? IMG_RW : 0) | (nocache ? IMG_NOCACHE : 0)) < 0)
        return 1;
    struct bench b = { .im = &im, .count = count, .offset = offset,
                       .step = step ? step : bufsize, .bufsize = bufsize, .size = im.size,
                       .flush_interval = flush, .write = write, .pattern = pattern };
    atomic_init(&b.next, 0);
    atomic_init(&b.err, 0);
    if (!quiet) {
        printf("Sending %" PRIu64 " %s requests, %" PRIu64 " bytes each, %" PRIu64
               " in parallel (starting at offset %" PRIu64 ", step size %" PRIu64 ")\n", count,
               write ? "write" : "read", bufsize, depth, offset, b.step);
        if (flush)
            printf("Sending flush every %" PRIu64 " requests\n", flush);
        fflush(stdout);
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    unsigned n = (unsigned)(depth < count ? depth : count);
    pthread_t *th = calloc(n ? n : 1, sizeof *th);
    unsigned started = 0;
    for (; th && started < n; started++)
        if (pthread_create(&th[started], NULL, worker, &b))
            break;
    if (started == 0 && n)
        worker(&b);
    for (unsigned i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    free(th);
    /* Timed like qemu-img bench: until the last request completes (the
     * write-back at close is not counted, as qemu's is not). */
    clock_gettime(CLOCK_MONOTONIC, &t1);
    int r = atomic_load(&b.err);
    if (r == 0 && write)
        r = im.drv->flush(im.st);
    int cr = img_close(&im);
    if (r < 0 || cr < 0) {
        img_err("Failed request: %s", strerror(r < 0 ? -r : -cr));
        return 1;
    }
    if (!quiet)
        printf("Run completed in %3.3f seconds.\n",
               (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
    return 0;
}
