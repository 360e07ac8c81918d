/* kvmbox-img's view of qcow2 metadata beyond what the driver keeps: the
 * backing file name/format from the header cluster, the snapshot table
 * (qcow2 spec "Snapshots"), read with bounds checks (hostile input) and
 * written back (snapshot verb), and growth of the active L1 table (resize,
 * snapshot -a). qmeta.c. */
#ifndef KVMBOX_IMG_QMETA_H
#define KVMBOX_IMG_QMETA_H

#include "img/img.h"

#include <stddef.h>

struct qhdr {
    bool has_backing, has_backing_fmt;
    char backing[1024];
    char backing_fmt[32];
};

/* 0 or -errno with a message in err. */
int qhdr_read(struct img *im, struct qhdr *h, char *err, size_t errlen);

struct qsnap {
    uint64_t l1_offset;
    uint32_t l1_size;
    char *id, *name;
    uint32_t date_sec, date_nsec;
    uint64_t vm_clock_nsec;
    uint64_t vm_state_size;
    uint64_t disk_size;         /* guest size at the snapshot */
    int64_t icount;             /* -1: none */
    uint32_t extra_len;         /* as read (kept on rewrite, at least 24) */
};

/* The image's snapshot table (q->nb_snapshots entries at
 * q->snapshots_offset). *out NULL when there are none. */
int qsnap_read(struct img *im, struct qsnap **out, uint32_t *n, uint64_t *table_bytes,
               char *err, size_t errlen);
void qsnap_free(struct qsnap *s, uint32_t n);
/* Serialised table size / contents (buf of qsnap_size bytes). */
uint64_t qsnap_size(const struct qsnap *s, uint32_t n);
void qsnap_serialise(const struct qsnap *s, uint32_t n, uint8_t *buf);
/* Index of the snapshot with this id and this name (NULL: either matches),
 * or -1. */
int qsnap_find(const struct qsnap *s, uint32_t n, const char *id, const char *name);
/* qemu's "ID or name" lookup: the snapshot with id `key`, else the one
 * named `key`; -1 if neither. */
int qsnap_find_id_or_name(const struct qsnap *s, uint32_t n, const char *key);
/* Snapshot e's L1 table in host order, in a zeroed array of
 * max(entries, e->l1_size) entries (free()). 0 or -errno. */
int qsnap_read_l1(struct qcow2 *q, const struct qsnap *e, uint64_t entries, uint64_t **out);

/* L1 entries that map `size` guest bytes. */
uint64_t qmeta_l1_entries(const struct qcow2 *q, uint64_t size);
/* Under q->lock: replace the active L1 table by a copy with `need` entries
 * (the new ones empty) in newly allocated clusters. Crash-ordered: the new
 * table and its refcounts are synced before the header points to it; the
 * old table is freed after. The whole header copy (q->hdr) is written
 * here: callers change other header fields (size) only afterwards, so a
 * crash never shows them with the old table. 0 or -errno. */
int qmeta_grow_l1(struct qcow2 *q, uint64_t need);

#endif
