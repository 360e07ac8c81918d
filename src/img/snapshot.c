/* kvmbox-img snapshot: internal qcow2 snapshots (spec "Snapshots"), with
 * the driver's allocation, refcounts and crash-ordered write-back:
 *   -c  every cluster the active L1 references gets one more reference
 *       and loses OFLAG_COPIED; the L1 copy and the new snapshot table are
 *       written; the header switches to the new table last.
 *   -d  the header switches to a table without the entry first; then the
 *       snapshot's references are dropped (after write-back).
 *   -a  if the snapshot's L1 table (or its disk size) needs more entries
 *       than the active table has, the active table is first replaced by
 *       a bigger copy (qmeta_grow_l1, itself crash-ordered); then
 *       references of the snapshot's tables are added, the active L1
 *       becomes a copy of the snapshot's, the disk size the snapshot's,
 *       and the old active references are dropped after the new L1 is
 *       durable.
 * A crash at any point leaks clusters at worst. OFLAG_COPIED is then
 * recomputed for the active tables. */
#include "img/img.h"
#include "img/qmeta.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void img_snapshot_list_print(const struct qsnap *s, uint32_t n);

/* Visit every host cluster an L1 table references (its L2 tables and
 * their clusters): inc (add a reference) or drop (free after write-back).
 * `l1` in host order. */
static int refs_l1(struct qcow2 *s, const uint64_t *l1, uint32_t n, bool inc)
{
    uint64_t cs = s->cluster_size;
    int r = 0;
    for (uint32_t i = 0; i < n && r == 0; i++) {
        uint64_t l2 = l1[i] & QCOW2_OFFSET_MASK;
        if (!l2)
            continue;
        if (l2 & (cs - 1))
            return -EIO;
        struct qcow2_cache_entry *e = qcow2_cache_get(s, &s->l2_cache, l2, false, &r);
        if (!e)
            return r;
        /* Copy: the cache entry may be evicted by refcount updates. */
        uint8_t *t = malloc(cs);
        if (!t)
            return -ENOMEM;
        memcpy(t, e->data, cs);
        for (uint64_t j = 0; j < cs / 8 && r == 0; j++) {
            uint64_t host, clen;
            enum qcow2_ctype ty = qcow2_entry_type(s, qcow2_be64(t + j * 8), &host, &clen);
            uint64_t len = ty == QCOW2_TYPE_COMPRESSED ? clen
                           : (ty == QCOW2_TYPE_NORMAL || ty == QCOW2_TYPE_ZERO_ALLOC) ? cs : 0;
            if (!len)
                continue;
            if (inc) {
                uint64_t first = host >> s->cluster_bits;
                uint64_t last = (host + len - 1) >> s->cluster_bits;
                for (uint64_t c = first; c <= last && r == 0; c++)
                    r = qcow2_inc_refcount(s, c);
            } else {
                r = qcow2_free_later(s, host, len);
            }
        }
        free(t);
        if (r == 0)
            r = inc ? qcow2_inc_refcount(s, l2 >> s->cluster_bits) : qcow2_free_later(s, l2, cs);
    }
    return r;
}

/* OFLAG_COPIED of the active L1/L2 entries: set iff the refcount is 1. */
static int fix_copied(struct qcow2 *s)
{
    uint64_t cs = s->cluster_size;
    int r = 0;
    for (uint32_t i = 0; i < s->l1_size && r == 0; i++) {
        uint64_t l2 = s->l1[i] & QCOW2_OFFSET_MASK, rc;
        if (!l2)
            continue;
        if ((r = qcow2_get_refcount(s, l2 >> s->cluster_bits, &rc)) < 0)
            break;
        uint64_t want = rc == 1 ? s->l1[i] | QCOW2_OFLAG_COPIED : s->l1[i] & ~QCOW2_OFLAG_COPIED;
        if (want != s->l1[i]) {
            s->l1[i] = want;
            s->l1_dirty = true;
        }
        for (uint64_t j = 0; j < cs / 8 && r == 0; j++) {
            struct qcow2_cache_entry *e = qcow2_cache_get(s, &s->l2_cache, l2, false, &r);
            if (!e)
                break;
            uint64_t ent = qcow2_be64(e->data + j * 8), host, clen;
            enum qcow2_ctype ty = qcow2_entry_type(s, ent, &host, &clen);
            if (ty != QCOW2_TYPE_NORMAL && ty != QCOW2_TYPE_ZERO_ALLOC)
                continue;
            if ((r = qcow2_get_refcount(s, host >> s->cluster_bits, &rc)) < 0)
                break;
            /* Refcount lookups may evict: fetch the table again. */
            if (!(e = qcow2_cache_get(s, &s->l2_cache, l2, false, &r)))
                break;
            uint64_t w = rc == 1 ? ent | QCOW2_OFLAG_COPIED : ent & ~QCOW2_OFLAG_COPIED;
            if (w != ent) {
                qcow2_put_be64(e->data + j * 8, w);
                e->dirty = true;
            }
        }
    }
    return r;
}

/* Write a new snapshot table (clusters allocated here) and switch the
 * header to it; the old table is freed after. */
static int write_table(struct qcow2 *s, const struct qsnap *sn, uint32_t n, uint64_t old_off,
                       uint64_t old_bytes)
{
    uint64_t bytes = qsnap_size(sn, n), off = 0;
    int r = 0;
    if (n) {
        uint64_t ncl = (bytes + s->cluster_size - 1) >> s->cluster_bits;
        if (ncl > qcow2_max_alloc(s))
            return -EFBIG;
        uint8_t *buf = calloc(ncl, s->cluster_size);
        if (!buf)
            return -ENOMEM;
        qsnap_serialise(sn, n, buf);
        off = qcow2_alloc_clusters(s, ncl, &r);
        if (off)
            r = blk_file_pwrite(s->file, off, buf, ncl << s->cluster_bits);
        free(buf);
        if (r < 0)
            return r;
    }
    /* Everything the table references (and its own refcounts) first. */
    if ((r = qcow2_meta_writeback(s, true, false)) < 0)
        return r;
    s->nb_snapshots = n;
    s->snapshots_offset = off;
    qcow2_put_be32(s->hdr + 60, n);
    qcow2_put_be64(s->hdr + 64, off);
    if ((r = qcow2_write_header(s)) < 0 || (r = blk_file_flush(s->file)) < 0)
        return r;
    if (old_bytes)
        r = qcow2_free_later(s, old_off, old_bytes);
    return r;
}

static int do_create(struct qcow2 *s, struct qsnap *old, uint32_t n, uint64_t tbytes,
                     const char *name)
{
    if (n >= QCOW2_MAX_SNAPSHOTS)
        return -EFBIG;
    struct qsnap *sn = calloc(n + 1, sizeof *sn);
    if (!sn)
        return -ENOMEM;
    if (n)
        memcpy(sn, old, n * sizeof *sn);
    struct qsnap *e = &sn[n];
    unsigned long maxid = 0;
    for (uint32_t i = 0; i < n; i++) {
        unsigned long v = strtoul(old[i].id, NULL, 10);
        if (v > maxid)
            maxid = v;
    }
    char idbuf[32];
    snprintf(idbuf, sizeof idbuf, "%lu", maxid + 1);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    e->id = idbuf;
    e->name = (char *)name;
    e->date_sec = (uint32_t)ts.tv_sec;
    e->date_nsec = (uint32_t)ts.tv_nsec / 1000 * 1000;
    e->disk_size = s->size;
    e->icount = 0;
    e->extra_len = 24;
    e->l1_size = s->l1_size;
    int r = refs_l1(s, s->l1, s->l1_size, true);
    uint64_t cs = s->cluster_size;
    uint64_t l1b = (uint64_t)s->l1_size * 8, ncl = (l1b + cs - 1) / cs;
    if (r == 0 && ncl > qcow2_max_alloc(s))
        r = -EFBIG;
    if (r == 0 && ncl) {
        uint8_t *buf = calloc(ncl, cs);
        if (!buf)
            r = -ENOMEM;
        else {
            for (uint32_t i = 0; i < s->l1_size; i++)
                qcow2_put_be64(buf + i * 8, s->l1[i] & ~QCOW2_OFLAG_COPIED);
            e->l1_offset = qcow2_alloc_clusters(s, ncl, &r);
            if (e->l1_offset)
                r = blk_file_pwrite(s->file, e->l1_offset, buf, ncl * cs);
            free(buf);
        }
    }
    /* Shared now: the active tables lose OFLAG_COPIED before the new
     * refcounts could be seen without it (same write-back). */
    if (r == 0)
        r = fix_copied(s);
    if (r == 0)
        r = write_table(s, sn, n + 1, s->snapshots_offset, tbytes);
    free(sn);
    return r;
}

static int do_delete(struct qcow2 *s, struct qsnap *sn, uint32_t n, uint64_t tbytes, int idx)
{
    struct qsnap victim = sn[idx];
    memmove(sn + idx, sn + idx + 1, (n - (uint32_t)idx - 1) * sizeof *sn);
    int r = write_table(s, sn, n - 1, s->snapshots_offset, tbytes);
    sn[n - 1] = victim;     /* keep it for freeing */
    if (r < 0)
        return r;
    uint64_t *l1;
    if ((r = qsnap_read_l1(s, &victim, 0, &l1)) < 0)
        return r;
    r = refs_l1(s, l1, victim.l1_size, false);
    if (r == 0 && victim.l1_size)
        r = qcow2_free_later(s, victim.l1_offset, (uint64_t)victim.l1_size * 8);
    free(l1);
    if (r == 0)
        r = qcow2_meta_writeback(s, true, true);
    if (r == 0)
        r = fix_copied(s);
    return r;
}

/* The active state becomes the snapshot's: its L1 table (the active one
 * grown first if the snapshot's is larger or its disk size needs more
 * entries, as after a resize; qemu-img grows it the same way) and its disk
 * size. */
static int do_apply(struct qcow2 *s, const struct qsnap *e)
{
    uint64_t need = qmeta_l1_entries(s, e->disk_size);
    if (need < e->l1_size)
        need = e->l1_size;
    /* A crash after the growth leaves the old state with a bigger table. */
    int r = qmeta_grow_l1(s, need);
    uint64_t *l1 = NULL;
    if (r == 0)
        r = qsnap_read_l1(s, e, s->l1_size, &l1);
    if (r < 0)
        return r;
    for (uint32_t i = 0; i < e->l1_size; i++)
        l1[i] &= ~QCOW2_OFLAG_COPIED;
    /* New references first, then the switch, then the old ones go. */
    if ((r = refs_l1(s, l1, e->l1_size, true)) < 0 ||
        (r = refs_l1(s, s->l1, s->l1_size, false)) < 0)
        goto out;
    memcpy(s->l1, l1, (size_t)s->l1_size * 8);
    s->l1_dirty = true;
    if (e->disk_size != s->size) {
        s->size = e->disk_size;
        qcow2_put_be64(s->hdr + 24, s->size);
        s->header_dirty = true;
    }
    if ((r = qcow2_meta_writeback(s, true, true)) < 0)
        goto out;
    r = fix_copied(s);
out:
    free(l1);
    return r;
}

int img_snapshot(int argc, char **argv)
{
    int action = 0, c;
    const char *name = NULL;
    bool quiet = false;
    static const struct option lo[] = { { "help", no_argument, NULL, 'h' },
                                        { "force-share", no_argument, NULL, 'U' },
                                        { NULL, 0, NULL, 0 } };
    optind = 1;
    while ((c = getopt_long(argc, argv, ":la:c:d:f:hqU", lo, NULL)) != -1) {
        switch (c) {
        case 'l': case 'a': case 'c': case 'd':
            if (action) {
                img_err("Cannot mix '-l', '-a', '-c', '-d'");
                return 1;
            }
            action = c;
            name = c == 'l' ? NULL : optarg;
            break;
        case 'f': break;
        case 'q': quiet = true; break;
        case 'U': img_force_share = true; break;
        case 'h': printf("usage: kvmbox-img snapshot [-l | -a snapshot | -c snapshot | -d "
                         "snapshot] [-q] filename\n"); return 0;
        default: return img_bad_option(c, argv[optind - 1]);
        }
    }
    if (optind != argc - 1) {
        img_err("Expecting one image file name");
        return 1;
    }
    if (!action)
        action = 'l';
    const char *file = argv[optind];
    struct img im;
    bool rw = action != 'l';
    if (img_open(&im, file, NULL, IMG_NO_BACKING | IMG_QUIET) == 0 && !im.q) {
        img_close(&im);
        if (action == 'l')
            return 0;
        img_err("Could not %s snapshot '%s': Operation not supported",
                action == 'c' ? "create" : action == 'a' ? "apply" : "delete", name);
        return 1;
    } else if (im.st) {
        img_close(&im);
    }
    char err[512] = "";
    if (img_open(&im, file, "qcow2", IMG_NO_BACKING | (rw ? IMG_RW : 0)) < 0)
        return 1;
    struct qsnap *sn = NULL;
    uint32_t n = 0;
    uint64_t tbytes = 0;
    int ret = 1, r = 0;
    if (qsnap_read(&im, &sn, &n, &tbytes, err, sizeof err) < 0) {
        img_err("Could not open '%s': %s", file, err);
        goto out;
    }
    struct qcow2 *s = im.q;
    switch (action) {
    case 'l':
        if (n) {
            printf("Snapshot list:\n");
            img_snapshot_list_print(sn, n);
        }
        ret = 0;
        break;
    case 'c':
        if (strlen(name) > 65535) {
            img_err("Could not create snapshot '%s': name too long", name);
            break;
        }
        pthread_mutex_lock(&s->lock);
        r = do_create(s, sn, n, tbytes, name);
        pthread_mutex_unlock(&s->lock);
        if (r < 0)
            img_err("Could not create snapshot '%s': %s", name, strerror(-r));
        else
            ret = 0;
        break;
    case 'a': {
        int i = qsnap_find_id_or_name(sn, n, name);
        if (i < 0) {
            img_err("Could not apply snapshot '%s': Failed to load snapshot: No such file or "
                    "directory", name);
            break;
        }
        pthread_mutex_lock(&s->lock);
        r = do_apply(s, &sn[i]);
        pthread_mutex_unlock(&s->lock);
        if (r < 0)
            img_err("Could not apply snapshot '%s': %s", name, strerror(-r));
        else
            ret = 0;
        break;
    }
    case 'd': {
        int i = qsnap_find(sn, n, NULL, name);
        if (i < 0) {
            img_err("Could not delete snapshot '%s': snapshot not found", name);
            break;
        }
        pthread_mutex_lock(&s->lock);
        r = do_delete(s, sn, n, tbytes, i);
        pthread_mutex_unlock(&s->lock);
        if (r < 0)
            img_err("Could not delete snapshot '%s': %s", name, strerror(-r));
        else
            ret = 0;
        break;
    }
    }
    (void)quiet;
out:
    qsnap_free(sn, n);
    if (img_close(&im) < 0 && ret == 0) {
        img_err("Could not write back '%s'", file);
        ret = 1;
    }
    fflush(stdout);
    return ret;
}
