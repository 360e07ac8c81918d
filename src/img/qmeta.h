/* kvmbox-img's view of qcow2 metadata beyond what the driver keeps: the
 * backing file name/format from the header cluster, and the snapshot
 * table (qcow2 spec "Snapshots"), read with bounds checks (hostile input)
 * and written back (snapshot verb). qmeta.c. */
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

#endif
