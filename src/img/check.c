/* kvmbox-img check: qemu-img check for qcow2 (spec "Host cluster
 * management"): every reference in the metadata (header, refcount table
 * and blocks, active and snapshot L1/L2 tables, data and compressed
 * clusters, snapshot table) is counted and compared with the stored
 * refcounts; OFLAG_COPIED is checked against them. -r leaks lowers leaked
 * refcounts in place; -r all also raises short ones, rebuilding the
 * refcount structure at the end of the file when a block is missing, and
 * fixes OFLAG_COPIED. Messages and exit codes are qemu-img's. */
#include "img/img.h"
#include "img/qmeta.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { FIX_LEAKS = 1, FIX_ERRORS = 2 };
#define MAX_CHECK_CLUSTERS (1ull << 25)     /* 384 MiB of counters at most */

struct result {
    int64_t corruptions, leaks, check_errors, corruptions_fixed, leaks_fixed;
    uint64_t image_end, total, allocated, fragmented, compressed;
};

struct ck {
    struct img *im;
    struct qcow2 *q;
    int rwfd;                   /* repair: read-write fd, else -1 */
    uint64_t n;                 /* clusters in the file */
    uint32_t *ref;              /* computed references */
    uint64_t *disk;             /* stored refcounts */
    uint8_t *l2;
    struct result *res;
    uint64_t next_contig;
};

static void inc(struct ck *c, uint64_t off, uint64_t len)
{
    if (!len)
        return;
    uint64_t first = off >> c->q->cluster_bits, last = (off + len - 1) >> c->q->cluster_bits;
    if (last >= c->n || last < first) {
        fprintf(stderr, "ERROR: counting reference for region exceeding the end of the file by "
                "one cluster or more: offset 0x%" PRIx64 " size 0x%" PRIx64 "\n", off, len);
        c->res->corruptions++;
        return;
    }
    for (uint64_t i = first; i <= last; i++)
        if (c->ref[i] != UINT32_MAX)
            c->ref[i]++;
}

static int rd(struct ck *c, uint64_t off, void *buf, uint64_t len)
{
    if (off > c->im->file.size || len > c->im->file.size - off) {
        memset(buf, 0, len);
        return -EINVAL;
    }
    return blk_file_pread(&c->im->file, off, buf, len);
}

/* One L1 table: its clusters, its L2 tables, their clusters. */
static int walk_l1(struct ck *c, uint64_t l1_off, uint32_t l1_size, bool active)
{
    struct qcow2 *q = c->q;
    uint64_t cs = q->cluster_size;
    inc(c, l1_off, (uint64_t)l1_size * 8);
    uint8_t *l1 = malloc((size_t)l1_size * 8 + 8);
    if (!l1)
        return -ENOMEM;
    if (rd(c, l1_off, l1, (uint64_t)l1_size * 8) < 0) {
        fprintf(stderr, "ERROR: I/O error reading L1 table at 0x%" PRIx64 "\n", l1_off);
        c->res->corruptions++;
        free(l1);
        return 0;
    }
    for (uint32_t i = 0; i < l1_size; i++) {
        uint64_t l1e = qcow2_be64(l1 + i * 8), l2off = l1e & QCOW2_OFFSET_MASK;
        if (!l2off)
            continue;
        if (l2off & (cs - 1)) {
            fprintf(stderr, "ERROR l2_offset=%" PRIx64 ": Table is not cluster aligned; L1 "
                    "entry corrupted\n", l2off);
            c->res->corruptions++;
            continue;
        }
        inc(c, l2off, cs);
        if (rd(c, l2off, c->l2, cs) < 0)
            continue;       /* reported by inc */
        c->next_contig = 0;     /* fragmentation is counted within one L2 table */
        for (uint64_t j = 0; j < cs / 8; j++) {
            uint64_t e = qcow2_be64(c->l2 + j * 8), host, clen;
            enum qcow2_ctype t = qcow2_entry_type(q, e, &host, &clen);
            switch (t) {
            case QCOW2_TYPE_COMPRESSED:
                if (q->version >= 3 && (e & QCOW2_OFLAG_COPIED)) {
                    fprintf(stderr, "ERROR: coffset=0x%" PRIx64 ": copied flag must never be "
                            "set for compressed clusters\n", host);
                    c->res->corruptions++;
                }
                if (active) {
                    c->res->allocated++;
                    c->res->compressed++;
                    c->res->fragmented++;
                }
                inc(c, host, clen);
                break;
            case QCOW2_TYPE_NORMAL:
            case QCOW2_TYPE_ZERO_ALLOC:
                if (host & (cs - 1)) {
                    fprintf(stderr, "ERROR offset=%" PRIx64 ": Data cluster is not properly "
                            "aligned; L2 entry corrupted.\n", host);
                    c->res->corruptions++;
                    break;
                }
                if (active) {
                    c->res->allocated++;
                    if (c->next_contig && host != c->next_contig)
                        c->res->fragmented++;
                    c->next_contig = host + cs;
                }
                inc(c, host, cs);
                break;
            default:
                break;
            }
        }
    }
    free(l1);
    return 0;
}

static uint64_t rc_get(const struct qcow2 *q, const uint8_t *b, uint64_t i)
{
    uint32_t bits = q->refcount_bits;
    if (bits < 8)
        return (b[i * bits / 8] >> ((i * bits) % 8)) & ((1u << bits) - 1);
    uint64_t v = 0;
    for (unsigned k = 0; k < bits / 8; k++)
        v = (v << 8) | b[i * (bits / 8) + k];
    return v;
}

static void rc_set(const struct qcow2 *q, uint8_t *b, uint64_t i, uint64_t v)
{
    uint32_t bits = q->refcount_bits;
    if (bits < 8) {
        unsigned sh = (unsigned)((i * bits) % 8);
        uint8_t mask = (uint8_t)(((1u << bits) - 1) << sh);
        b[i * bits / 8] = (uint8_t)((b[i * bits / 8] & ~mask) | ((v << sh) & mask));
        return;
    }
    unsigned bytes = bits / 8;
    for (int k = (int)bytes - 1; k >= 0; k--, v >>= 8)
        b[i * bytes + (unsigned)k] = (uint8_t)v;
}

/* Stored refcounts of every cluster in the file; counts the table and
 * blocks themselves. */
static int read_refcounts(struct ck *c)
{
    struct qcow2 *q = c->q;
    uint64_t cs = q->cluster_size, rpb = 1ull << q->rpb_bits;
    inc(c, q->reftable_offset, q->reftable_entries * 8);
    uint8_t *b = malloc(cs);
    if (!b)
        return -ENOMEM;
    for (uint64_t i = 0; i < q->reftable_entries; i++) {
        uint64_t off = q->reftable[i] & QCOW2_REFT_OFFSET_MASK;
        if (!off)
            continue;
        if (off & (cs - 1)) {
            fprintf(stderr, "ERROR refcount block %" PRIu64 " is not cluster aligned; refcount "
                    "table entry corrupted\n", i);
            c->res->corruptions++;
            continue;
        }
        if ((off >> q->cluster_bits) >= c->n) {
            fprintf(stderr, "ERROR refcount block %" PRIu64 " is outside image\n", i);
            c->res->corruptions++;
            continue;
        }
        inc(c, off, cs);
        if (blk_file_pread(&c->im->file, off, b, cs) < 0) {
            c->res->check_errors++;
            continue;
        }
        for (uint64_t k = 0; k < rpb && i * rpb + k < c->n; k++)
            c->disk[i * rpb + k] = rc_get(q, b, k);
    }
    free(b);
    return 0;
}

/* Update stored refcounts in place: cluster i -> v. Returns -ENOENT when
 * no block covers it (a rebuild is needed). */
static int write_refcount(struct ck *c, uint64_t i, uint64_t v)
{
    struct qcow2 *q = c->q;
    uint64_t bi = i >> q->rpb_bits, cs = q->cluster_size;
    uint64_t off = bi < q->reftable_entries ? q->reftable[bi] & QCOW2_REFT_OFFSET_MASK : 0;
    if (!off || (off & (cs - 1)) || (off >> q->cluster_bits) >= c->n)
        return -ENOENT;
    uint8_t *b = malloc(cs);
    if (!b)
        return -ENOMEM;
    int r = -EIO;
    if (pread(c->rwfd, b, cs, (off_t)off) == (ssize_t)cs) {
        rc_set(q, b, i & ((1ull << q->rpb_bits) - 1), v);
        if (pwrite(c->rwfd, b, cs, (off_t)off) == (ssize_t)cs)
            r = 0;
    }
    free(b);
    if (r == 0)
        c->disk[i] = v;
    return r;
}

/* A new refcount table and blocks after the end of the file holding the
 * computed references (qemu's "Rebuilding refcount structure"); the header
 * switches to them last. */
static int rebuild(struct ck *c)
{
    struct qcow2 *q = c->q;
    uint64_t cs = q->cluster_size, rpb = 1ull << q->rpb_bits, N = c->n, M = N, B, T;
    fprintf(stderr, "Rebuilding refcount structure\n");
    for (;;) {
        B = (M + rpb - 1) / rpb;
        T = (B * 8 + cs - 1) / cs;
        if (N + B + T == M)
            break;
        M = N + B + T;
    }
    if (T * cs > QCOW2_MAX_REFTABLE_BYTES)
        return -EFBIG;
    uint8_t *blk = malloc(cs), *tab = calloc(T, cs);
    int r = -ENOMEM;
    if (!blk || !tab)
        goto out;
    r = -EIO;
    for (uint64_t b = 0; b < B; b++) {
        memset(blk, 0, cs);
        for (uint64_t k = 0; k < rpb && b * rpb + k < M; k++) {
            uint64_t ci = b * rpb + k;
            uint64_t v = ci < N ? c->ref[ci] : 1;
            rc_set(q, blk, k, v > q->refcount_max ? q->refcount_max : v);
        }
        uint64_t boff = (N + T + b) * cs;
        qcow2_put_be64(tab + b * 8, boff);
        if (pwrite(c->rwfd, blk, cs, (off_t)boff) != (ssize_t)cs)
            goto out;
    }
    if (pwrite(c->rwfd, tab, T * cs, (off_t)(N * cs)) != (ssize_t)(T * cs) ||
        fdatasync(c->rwfd) < 0)
        goto out;
    uint8_t h[12];
    qcow2_put_be64(h, N * cs);
    qcow2_put_be32(h + 8, (uint32_t)T);
    if (pwrite(c->rwfd, h, 12, 48) != 12 || fdatasync(c->rwfd) < 0)
        goto out;
    r = 0;
out:
    free(blk);
    free(tab);
    return r;
}

/* OFLAG_COPIED of the active tables against the (fixed) refcounts. */
static int check_copied(struct ck *c, unsigned fix)
{
    struct qcow2 *q = c->q;
    uint64_t cs = q->cluster_size;
    for (uint32_t i = 0; i < q->l1_size; i++) {
        uint64_t l1e = q->l1[i], l2off = l1e & QCOW2_OFFSET_MASK;
        if (!l2off || (l2off & (cs - 1)) || (l2off >> q->cluster_bits) >= c->n)
            continue;
        uint64_t rc = c->disk[l2off >> q->cluster_bits];
        if ((rc == 1) != !!(l1e & QCOW2_OFLAG_COPIED)) {
            bool f = fix & FIX_ERRORS;
            fprintf(stderr, "%s OFLAG_COPIED L2 cluster: l1_index=%u l1_entry=%" PRIx64
                    " refcount=%" PRIu64 "\n", f ? "Repairing" : "ERROR", i, l1e, rc);
            if (f) {
                uint8_t e[8];
                qcow2_put_be64(e, rc == 1 ? l1e | QCOW2_OFLAG_COPIED : l1e & ~QCOW2_OFLAG_COPIED);
                if (pwrite(c->rwfd, e, 8, (off_t)(q->l1_offset + i * 8ull)) == 8)
                    c->res->corruptions_fixed++;
                else
                    c->res->check_errors++;
            } else {
                c->res->corruptions++;
            }
        }
        if (rd(c, l2off, c->l2, cs) < 0)
            continue;
        bool dirty = false;
        for (uint64_t j = 0; j < cs / 8; j++) {
            uint64_t e = qcow2_be64(c->l2 + j * 8), host, clen;
            enum qcow2_ctype t = qcow2_entry_type(q, e, &host, &clen);
            if ((t != QCOW2_TYPE_NORMAL && t != QCOW2_TYPE_ZERO_ALLOC) || (host & (cs - 1)) ||
                (host >> q->cluster_bits) >= c->n)
                continue;
            uint64_t rc2 = c->disk[host >> q->cluster_bits];
            if ((rc2 == 1) == !!(e & QCOW2_OFLAG_COPIED))
                continue;
            bool f = fix & FIX_ERRORS;
            fprintf(stderr, "%s OFLAG_COPIED data cluster: l2_entry=%" PRIx64 " refcount=%"
                    PRIu64 "\n", f ? "Repairing" : "ERROR", e, rc2);
            if (f) {
                qcow2_put_be64(c->l2 + j * 8, rc2 == 1 ? e | QCOW2_OFLAG_COPIED
                                                       : e & ~QCOW2_OFLAG_COPIED);
                dirty = true;
                c->res->corruptions_fixed++;
            } else {
                c->res->corruptions++;
            }
        }
        if (dirty && pwrite(c->rwfd, c->l2, cs, (off_t)l2off) != (ssize_t)cs)
            c->res->check_errors++;
    }
    return 0;
}

static void ck_free(struct ck *c)
{
    free(c->ref);
    free(c->disk);
    free(c->l2);
    c->ref = NULL;
    c->disk = NULL;
    c->l2 = NULL;
}

/* Count every reference and read the stored refcounts. */
static int ck_load(struct ck *c, struct img *im, struct result *res)
{
    struct qcow2 *q = im->q;
    memset(c, 0, sizeof *c);
    c->im = im;
    c->q = q;
    c->res = res;
    c->rwfd = -1;
    memset(res, 0, sizeof *res);
    c->n = (im->file.size + q->cluster_size - 1) >> q->cluster_bits;
    if (c->n > MAX_CHECK_CLUSTERS) {
        img_err("Image too large to check (%" PRIu64 " clusters)", c->n);
        return -EFBIG;
    }
    res->total = (q->size + q->cluster_size - 1) >> q->cluster_bits;
    c->ref = calloc(c->n + 1, sizeof *c->ref);
    c->disk = calloc(c->n + 1, sizeof *c->disk);
    c->l2 = malloc(q->cluster_size);
    struct qsnap *sn = NULL;
    uint32_t nsn = 0;
    int r = -ENOMEM;
    if (!c->ref || !c->disk || !c->l2)
        goto out;
    inc(c, 0, q->cluster_size);
    if ((r = walk_l1(c, q->l1_offset, q->l1_size, true)) < 0)
        goto out;
    char err[256] = "";
    uint64_t tbytes = 0;
    if (qsnap_read(im, &sn, &nsn, &tbytes, err, sizeof err) < 0) {
        fprintf(stderr, "ERROR %s\n", err);
        res->corruptions++;
    }
    for (uint32_t i = 0; i < nsn; i++)
        if ((r = walk_l1(c, sn[i].l1_offset, sn[i].l1_size, false)) < 0)
            goto out;
    if (nsn)
        inc(c, q->snapshots_offset, tbytes);
    r = read_refcounts(c);
out:
    qsnap_free(sn, nsn);
    if (r < 0)
        ck_free(c);
    return r;
}

/* qemu's compare_refcounts: report (and with `fix`, repair in place). */
static void compare(struct ck *c, unsigned fix, bool *need_rebuild)
{
    struct result *res = c->res;
    struct qcow2 *q = c->q;
    uint64_t highest = 0;
    for (uint64_t i = 0; i < c->n; i++) {
        uint64_t d = c->disk[i], ref = c->ref[i];
        if (d || ref)
            highest = i + 1;
        if (d == ref)
            continue;
        int64_t *fixed = NULL;
        if (d == 0)
            *need_rebuild = true;
        else if (d > ref && (fix & FIX_LEAKS))
            fixed = &res->leaks_fixed;
        else if (d < ref && (fix & FIX_ERRORS))
            fixed = &res->corruptions_fixed;
        fprintf(stderr, "%s cluster %" PRIu64 " refcount=%" PRIu64 " reference=%" PRIu64 "\n",
                fixed ? "Repairing" : d < ref ? "ERROR" : "Leaked", i, d, ref);
        if (fixed) {
            int w = write_refcount(c, i, ref > q->refcount_max ? q->refcount_max : ref);
            if (w == 0) {
                (*fixed)++;
                continue;
            }
            res->check_errors++;
        }
        if (d < ref)
            res->corruptions++;
        else
            res->leaks++;
    }
    res->image_end = highest * q->cluster_size;
}

/* The whole check (qemu's qcow2_check_refcounts order). 0, or -errno
 * after an error message (qemu-img's "Check failed"). */
static int check_image(const char *name, const char *fmt, unsigned fix, struct result *res)
{
    struct img im;
    struct ck c;
    if (img_open(&im, name, fmt, IMG_NO_BACKING | (fix ? IMG_LOCK_RW : 0)) < 0)
        return -EINVAL;
    if (!im.q) {
        img_close(&im);
        return -ENOTSUP;
    }
    int r = ck_load(&c, &im, res);
    if (r < 0) {
        img_close(&im);
        return r;
    }
    if (fix) {
        c.rwfd = open(name, O_RDWR | O_CLOEXEC);
        if (c.rwfd < 0) {
            r = -errno;
            img_err("Could not open '%s' for writing: %s", name, strerror(errno));
            goto out;
        }
    }
    struct result pre = *res;
    bool rebuild_needed = false;
    compare(&c, 0, &rebuild_needed);
    if (rebuild_needed && (fix & FIX_ERRORS)) {
        if ((r = rebuild(&c)) < 0) {
            img_err("Could not rebuild the refcount structure: %s", strerror(-r));
            goto out;
        }
        /* The old structure is now leaked: fix that quietly (qemu does). */
        close(c.rwfd);
        ck_free(&c);
        img_close(&im);
        struct result saved = *res, tmp;
        if ((r = img_open(&im, name, fmt, IMG_NO_BACKING | IMG_LOCK_RW)) < 0)
            return r;
        if ((r = ck_load(&c, &im, &tmp)) < 0) {
            img_close(&im);
            return r;
        }
        c.rwfd = open(name, O_RDWR | O_CLOEXEC);
        if (c.rwfd < 0) {
            r = -errno;
            goto out;
        }
        bool again = false;
        compare(&c, FIX_LEAKS, &again);
        *res = saved;
        res->image_end = tmp.image_end;
        res->corruptions_fixed += res->corruptions;
        res->leaks_fixed += res->leaks;
        res->corruptions = res->leaks = 0;
        c.res = res;
    } else if (fix && rebuild_needed) {
        fprintf(stderr, "ERROR need to rebuild refcount structures\n");
        res->check_errors++;
        img_err("Check failed: Input/output error");
        r = -EIO;
        goto out;
    } else if (fix && (res->leaks || res->corruptions)) {
        uint64_t end = res->image_end;
        *res = pre;
        compare(&c, fix, &rebuild_needed);
        res->image_end = end;
    }
    check_copied(&c, fix);
    struct qcow2 *q = c.q;
    if (c.rwfd >= 0 && (fix & FIX_ERRORS) && (q->incompat & QCOW2_INCOMPAT_CORRUPT) &&
        !res->corruptions && q->version >= 3) {
        uint8_t f[8];
        qcow2_put_be64(f, q->incompat & ~(QCOW2_INCOMPAT_CORRUPT | QCOW2_INCOMPAT_DIRTY));
        if (pwrite(c.rwfd, f, 8, 72) != 8)
            res->check_errors++;
    }
    if (c.rwfd >= 0 && fdatasync(c.rwfd) < 0)
        res->check_errors++;
    r = 0;
out:
    if (c.rwfd >= 0)
        close(c.rwfd);
    ck_free(&c);
    img_close(&im);
    return r;
}

static void print_human(const struct result *r)
{
    if (!r->corruptions && !r->leaks && !r->check_errors) {
        printf("No errors were found on the image.\n");
    } else {
        if (r->corruptions)
            printf("\n%" PRId64 " errors were found on the image.\nData may be corrupted, or "
                   "further writes to the image may corrupt it.\n", r->corruptions);
        if (r->leaks)
            printf("\n%" PRId64 " leaked clusters were found on the image.\nThis means waste of "
                   "disk space, but no harm to data.\n", r->leaks);
        if (r->check_errors)
            printf("\n%" PRId64 " internal errors have occurred during the check.\n",
                   r->check_errors);
    }
    if (r->total && r->allocated)
        printf("%" PRIu64 "/%" PRIu64 " = %0.2f%% allocated, %0.2f%% fragmented, %0.2f%% "
               "compressed clusters\n", r->allocated, r->total,
               r->allocated * 100.0 / r->total, r->fragmented * 100.0 / r->allocated,
               r->compressed * 100.0 / r->allocated);
    if (r->image_end)
        printf("Image end offset: %" PRIu64 "\n", r->image_end);
}

static void print_json(const char *name, const char *fmt, const struct result *r)
{
    printf("{\n");
    if (r->image_end)
        printf("    \"image-end-offset\": %" PRIu64 ",\n", r->image_end);
    if (r->compressed)
        printf("    \"compressed-clusters\": %" PRIu64 ",\n", r->compressed);
    if (r->total)
        printf("    \"total-clusters\": %" PRIu64 ",\n", r->total);
    if (r->corruptions)
        printf("    \"corruptions\": %" PRId64 ",\n", r->corruptions);
    if (r->corruptions_fixed)
        printf("    \"corruptions-fixed\": %" PRId64 ",\n", r->corruptions_fixed);
    printf("    \"check-errors\": %" PRId64 ",\n", r->check_errors);
    if (r->leaks)
        printf("    \"leaks\": %" PRId64 ",\n", r->leaks);
    if (r->leaks_fixed)
        printf("    \"leaks-fixed\": %" PRId64 ",\n", r->leaks_fixed);
    if (r->allocated)
        printf("    \"allocated-clusters\": %" PRIu64 ",\n", r->allocated);
    printf("    \"filename\": \"%s\",\n    \"format\": \"%s\"%s\n", name, fmt,
           r->fragmented ? "," : "");
    if (r->fragmented)
        printf("    \"fragmented-clusters\": %" PRIu64 "\n", r->fragmented);
    printf("}\n");
}

static int exit_code(const struct result *r)
{
    if (r->check_errors)
        return 1;
    if (r->corruptions)
        return 2;
    if (r->leaks)
        return 3;
    return 0;
}

int img_check(int argc, char **argv)
{
    const char *fmt = NULL, *output = "human";
    unsigned fix = 0;
    bool quiet = false;
    int c;
    static const struct option lo[] = {
        { "help", no_argument, NULL, 'h' }, { "output", required_argument, NULL, 'O' },
        { "repair", required_argument, NULL, 'r' }, { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 } };
    optind = 1;
    while ((c = getopt_long(argc, argv, ":f:hr:T:qU", lo, NULL)) != -1) {
        switch (c) {
        case 'f': fmt = optarg; break;
        case 'O': output = optarg; break;
        case 'q': quiet = true; break;
        case 'U': img_force_share = true; break;
        case 'T': break;
        case 'r':
            if (!strcmp(optarg, "leaks"))
                fix = FIX_LEAKS;
            else if (!strcmp(optarg, "all"))
                fix = FIX_LEAKS | FIX_ERRORS;
            else {
                img_err("Unknown option value for -r (expecting 'leaks' or 'all'): %s", optarg);
                return 1;
            }
            break;
        case 'h': printf("usage: kvmbox-img check [-f fmt] [--output=ofmt] [-r [leaks | all]] "
                         "[-q] filename\n"); return 0;
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
    const char *name = argv[optind];
    struct result res, res2;
    int r = check_image(name, fmt, fix, &res);
    if (r == -ENOTSUP) {
        img_err("This image format does not support checks");
        return 63;
    }
    if (r < 0)
        return 1;
    struct result *fin = &res;
    if (res.corruptions_fixed || res.leaks_fixed) {
        if (!json && !quiet)
            printf("The following inconsistencies were found and repaired:\n\n"
                   "    %" PRId64 " leaked clusters\n    %" PRId64 " corruptions\n\n"
                   "Double checking the fixed image now...\n", res.leaks_fixed,
                   res.corruptions_fixed);
        if (check_image(name, fmt, 0, &res2) < 0)
            return 1;
        res2.leaks_fixed = res.leaks_fixed;
        res2.corruptions_fixed = res.corruptions_fixed;
        fin = &res2;
    }
    if (!quiet) {
        if (json)
            print_json(name, "qcow2", fin);
        else
            print_human(fin);
    }
    fflush(stdout);
    return exit_code(fin);
}
