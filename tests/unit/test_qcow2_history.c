/* qcow2 under a random history: guest writes, zero writes and discards
 * interleaved with internal snapshots (create, apply, delete) and resizes
 * (grow and shrink), each step checked against an in-memory oracle of the
 * active image and of every snapshot. The snapshot and resize steps run
 * kvmbox-img's own verbs in process; with Debian's qemu-img installed,
 * `qemu-img check` must find the image clean after every step, and each
 * snapshot's contents are read back by qemu-img too (up to the active
 * image's size: qemu-img convert -l reads no further). */
#include "img/img.h"
#include "test.h"

#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tdir[256];
static bool have_qemu;

static uint64_t rnd(uint64_t *st)
{
    *st ^= *st << 13;
    *st ^= *st >> 7;
    *st ^= *st << 17;
    return *st;
}

/* A verb of kvmbox-img, in process: its stdout ("Image resized.") is
 * dropped, its stderr kept in verb.err (shown when a step goes wrong:
 * some steps expect an error). */
static int verb(int (*fn)(int, char **), const char *a0, ...)
{
    char *argv[16];
    int argc = 0;
    va_list ap;
    va_start(ap, a0);
    for (const char *a = a0; a && argc < 15; a = va_arg(ap, const char *))
        argv[argc++] = (char *)a;
    va_end(ap);
    argv[argc] = NULL;
    optind = 0;         /* getopt starts afresh for every verb */
    char errpath[300];
    snprintf(errpath, sizeof errpath, "%s/verb.err", tdir);
    int saved[2];
    test_redirect(saved, NULL, errpath);
    int r = fn(argc, argv);
    test_restore(saved);
    return r;
}

struct image_state {
    uint8_t *data;      /* guest-visible bytes */
    uint64_t size;
};

struct snap {
    char name[16];
    struct image_state st;
};

enum { MAX_SIZE = 12 << 20, MAX_SNAPS = 4 };

/* The whole image equals the oracle (size and bytes). */
static bool image_matches(const char *path, const struct image_state *o, const char *what)
{
    struct img im;
    if (img_open(&im, path, "qcow2", 0) < 0)
        return false;
    bool ok = im.size == o->size;
    if (!ok)
        printf("    %s: size %llu, expected %llu\n", what, (unsigned long long)im.size,
               (unsigned long long)o->size);
    uint8_t *buf = malloc(o->size ? o->size : 1);
    if (ok && (img_read(&im, 0, buf, o->size) < 0 || memcmp(buf, o->data, o->size))) {
        uint64_t i = 0;
        while (i < o->size && buf[i] == o->data[i])
            i++;
        printf("    %s: differs at byte %#llx (size %#llx): %02x, expected %02x\n", what, (unsigned long long)i, (unsigned long long)o->size, buf[i], o->data[i]);
        ok = false;
    }
    free(buf);
    img_close(&im);
    return ok;
}

static bool read_range(const char *path, uint64_t off, uint64_t len, uint8_t *out)
{
    struct img im;
    if (img_open(&im, path, "qcow2", 0) < 0)
        return false;
    bool ok = img_read(&im, off, out, len) == 0;
    img_close(&im);
    return ok;
}

/* A burst of guest I/O through the driver, mirrored in the oracle. */
static bool guest_io(const char *path, struct image_state *o, uint64_t *st, uint32_t cs)
{
    struct img im;
    if (img_open(&im, path, "qcow2", IMG_RW) < 0)
        return false;
    uint8_t *buf = malloc(256 * 1024);
    bool ok = true;
    unsigned nops = 5 + (unsigned)(rnd(st) % 20);
    for (unsigned i = 0; i < nops && ok && o->size; i++) {
        uint64_t off, len, kind = rnd(st) % 10;
        if (rnd(st) % 2) {
            off = (rnd(st) % ((o->size + cs - 1) / cs)) * cs;
            len = cs * (1 + rnd(st) % 3);
        } else {
            off = rnd(st) % o->size;
            len = 1 + rnd(st) % (128 * 1024);
        }
        if (len > o->size - off)
            len = o->size - off;
        if (len > 256 * 1024)
            len = 256 * 1024;
        int r;
        if (kind < 6) {
            for (uint64_t j = 0; j < len; j++)
                buf[j] = (uint8_t)(rnd(st) | 1);
            r = img_write(&im, off, buf, len);
            memcpy(o->data + off, buf, len);
        } else if (kind < 8) {
            r = im.drv->write_zeroes(im.st, off, len);
            memset(o->data + off, 0, len);
        } else {
            /* Discarded bytes are undefined: the oracle takes what the
             * image reads afterwards (checked to stay stable). */
            r = im.drv->discard(im.st, off, len);
            if (r == 0)
                r = img_read(&im, off, o->data + off, len);
        }
        if (r < 0) {
            printf("    I/O kind %llu at %#llx+%#llx failed: %d\n", (unsigned long long)kind,
                   (unsigned long long)off, (unsigned long long)len, r);
            ok = false;
        }
    }
    free(buf);
    if (img_close(&im) < 0)
        ok = false;
    return ok;
}

static bool qemu_clean(const char *path)
{
    if (!have_qemu)
        return true;
    if (test_sh("qemu-img check -q %s >/dev/null 2>&1", path) == 0)
        return true;
    test_sh("qemu-img check %s 2>&1 | head -8", path);
    return false;
}

static void state_copy(struct image_state *dst, const struct image_state *src)
{
    dst->data = malloc(MAX_SIZE);
    memcpy(dst->data, src->data, src->size);
    dst->size = src->size;
}

/* Each snapshot, applied to a copy of the image (kvmbox-img), reads as the
 * oracle says; qemu-img reads the same from the original. */
static bool snapshots_match(const char *path, struct snap *sn, unsigned n)
{
    char copy[600], raw[600], what[64];
    snprintf(copy, sizeof copy, "%s/copy.qcow2", tdir);
    snprintf(raw, sizeof raw, "%s/snap.raw", tdir);
    bool ok = true;
    for (unsigned i = 0; i < n && ok; i++) {
        snprintf(what, sizeof what, "snapshot %s", sn[i].name);
        ok = test_sh("cp %s %s", path, copy) == 0 &&
             verb(img_snapshot, "snapshot", "-a", sn[i].name, copy, NULL) == 0 &&
             image_matches(copy, &sn[i].st, what);
        if (ok && have_qemu) {
            ok = test_sh("qemu-img convert -O raw -l snapshot.name=%s %s %s", sn[i].name, path, raw) == 0;
            /* qemu-img convert -l reads the snapshot's tables at the
             * active image's size: the common part must agree. */
            int fd = open(raw, O_RDONLY);
            uint8_t *b = malloc(sn[i].st.size + 1);
            ssize_t got = fd >= 0 ? read(fd, b, sn[i].st.size) : -1;
            ok = ok && got >= 0 && memcmp(b, sn[i].st.data, (size_t)got) == 0;
            if (!ok) {
                uint64_t at = 0;
                while (got > 0 && at < (uint64_t)got && at < sn[i].st.size && b[at] == sn[i].st.data[at])
                    at++;
                printf("    qemu-img reads %s differently: %zd bytes (expected %llu), "
                       "first difference at %#llx\n", what, got,
                       (unsigned long long)sn[i].st.size, (unsigned long long)at);
            }
            free(b);
            if (fd >= 0)
                close(fd);
        }
    }
    return ok;
}

struct cfg {
    uint32_t cs;
    const char *opts;       /* kvmbox-img create -o */
    bool v2;                /* opts has compat=0.10 */
    bool backing;           /* over a raw backing file with a pattern */
};

enum { BACKING_SIZE = 4 << 20 };

/* Steps done, by kind (printed: the histories must exercise each). */
static const char *const kind_names[] = { "guest I/O", "snapshot -c", "snapshot -a",
                                          "snapshot -d", "resize (grow)", "resize (shrink)" };
static unsigned kind_count[6];

/* One random history of `steps` steps on a fresh image. */
static bool history(const struct cfg *c, uint64_t seed, unsigned steps)
{
    char path[600], base[600], sizearg[32], opts[200];
    snprintf(path, sizeof path, "%s/h.qcow2", tdir);
    snprintf(base, sizeof base, "%s/base.raw", tdir);
    uint64_t st = seed;
    struct image_state cur = { malloc(MAX_SIZE), BACKING_SIZE };
    memset(cur.data, 0, MAX_SIZE);
    snprintf(opts, sizeof opts, "cluster_size=%u%s%s", c->cs, c->opts[0] ? "," : "", c->opts);
    snprintf(sizearg, sizeof sizearg, "%llu", (unsigned long long)cur.size);
    unlink(path);
    if (c->backing) {
        /* The backing file is as large as the image: growing past it must
         * read zeros, also where an earlier shrink cut the image. */
        int fd = open(base, O_CREAT | O_TRUNC | O_WRONLY, 0644);
        for (uint64_t i = 0; i < cur.size; i++)
            cur.data[i] = (uint8_t)(i * 7 + (i >> 12));
        bool w = fd >= 0 && write(fd, cur.data, cur.size) == (ssize_t)cur.size;
        if (fd >= 0)
            close(fd);
        if (!w || verb(img_create, "create", "-q", "-f", "qcow2", "-o", opts, "-b", "base.raw",
                       "-F", "raw", path, NULL) != 0) {
            free(cur.data);
            return false;
        }
    } else if (verb(img_create, "create", "-q", "-f", "qcow2", "-o", opts, path, sizearg,
                    NULL) != 0) {
        free(cur.data);
        return false;
    }
    struct snap sn[MAX_SNAPS];
    unsigned nsnap = 0, made = 0;
    bool ok = true;
    for (unsigned step = 0; step < steps && ok; step++) {
        uint64_t k = rnd(&st) % 20;
        unsigned kind = 0;
        char arg[32];
        if (k < 9) {
            ok = guest_io(path, &cur, &st, c->cs);
        } else if (k < 12 && nsnap < MAX_SNAPS) {
            kind = 1;
            snprintf(sn[nsnap].name, sizeof sn[nsnap].name, "s%u", made++);
            ok = verb(img_snapshot, "snapshot", "-c", sn[nsnap].name, path, NULL) == 0;
            state_copy(&sn[nsnap++].st, &cur);
        } else if (k < 14 && nsnap) {
            kind = 2;
            struct snap *s = &sn[rnd(&st) % nsnap];
            ok = verb(img_snapshot, "snapshot", "-a", s->name, path, NULL) == 0;
            memcpy(cur.data, s->st.data, s->st.size);
            cur.size = s->st.size;
        } else if (k < 15 && nsnap) {
            kind = 3;
            unsigned i = (unsigned)(rnd(&st) % nsnap);
            ok = verb(img_snapshot, "snapshot", "-d", sn[i].name, path, NULL) == 0;
            free(sn[i].st.data);
            sn[i] = sn[--nsnap];
        } else if (k < 17) {
            kind = 4;
            uint64_t add = (1 + rnd(&st) % 4096) * 512;
            if (cur.size + add > MAX_SIZE)
                continue;
            snprintf(arg, sizeof arg, "+%llu", (unsigned long long)add);
            /* qemu-img's rules: where the backing file is longer than the
             * image, the new area is zeroed (zero clusters; a version 2
             * image cannot have them, so the resize fails and changes
             * nothing). Elsewhere the rest of a cluster that an earlier
             * shrink cut keeps its old bytes (undefined: the oracle takes
             * what the image reads); whole clusters past it read zeros. */
            bool covers = c->backing && BACKING_SIZE > cur.size;
            int r = verb(img_resize, "resize", path, arg, NULL);
            if (covers && c->v2) {
                ok = r != 0;
            } else {
                uint64_t tail = covers ? cur.size : (cur.size + c->cs - 1) / c->cs * c->cs;
                if (tail > cur.size + add)
                    tail = cur.size + add;
                memset(cur.data + tail, 0, cur.size + add - tail);
                ok = r == 0 && read_range(path, cur.size, tail - cur.size, cur.data + cur.size);
                cur.size += add;
            }
        } else {
            kind = 5;
            uint64_t sub = (1 + rnd(&st) % 4096) * 512;
            if (sub + (1 << 20) > cur.size)
                continue;
            snprintf(arg, sizeof arg, "-%llu", (unsigned long long)sub);
            ok = verb(img_resize, "resize", "--shrink", path, arg, NULL) == 0;
            cur.size -= sub;
        }
        kind_count[kind]++;
        if (ok)
            ok = image_matches(path, &cur, "active image");
        if (ok)
            ok = qemu_clean(path);
        if (!ok) {
            printf("    step %u (%s) went wrong, seed %llu; the verb's stderr:\n", step,
                   kind_names[kind], (unsigned long long)seed);
            test_sh("sed 's/^/      /' %s/verb.err", tdir);
        }
    }
    if (ok)
        ok = snapshots_match(path, sn, nsnap);
    for (unsigned i = 0; i < nsnap; i++)
        free(sn[i].st.data);
    free(cur.data);
    return ok;
}

TEST(random_history)
{
    static const struct cfg cfgs[] = {
        { 65536, "", false, false },
        { 4096, "lazy_refcounts=on", false, false },
        { 512, "compat=0.10", true, false },
        { 65536, "", false, true },
        { 2048, "compat=0.10", true, true },
    };
    for (unsigned i = 0; i < 3 * sizeof cfgs / sizeof cfgs[0]; i++) {
        const struct cfg *c = &cfgs[i % (sizeof cfgs / sizeof cfgs[0])];
        bool ok = history(c, 0x9e3779b97f4a7c15ull * (i + 1), 50);
        if (!ok)
            printf("    history %u: cluster_size=%u %s%s\n", i, c->cs, c->opts,
                   c->backing ? " with a backing file" : "");
        CHECK(ok);
    }
    printf("    steps:");
    for (unsigned k = 0; k < 6; k++)
        printf(" %s %u%s", kind_names[k], kind_count[k], k < 5 ? "," : "\n");
}

int main(void)
{
    snprintf(tdir, sizeof tdir, "/tmp/kvmbox-qcow2-history.XXXXXX");
    if (!mkdtemp(tdir))
        return 1;
    have_qemu = test_sh("qemu-img --version >/dev/null 2>&1") == 0;
    if (!have_qemu)
        printf("# qemu-img not installed (Debian qemu-utils): only kvmbox checks the images\n");
    RUN(random_history);
    test_sh("rm -rf %s", tdir);
    return test_summary();
}
