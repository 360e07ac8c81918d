/* Block status of guest ranges (bstat.c). */
#ifndef KVMBOX_IMG_BSTAT_H
#define KVMBOX_IMG_BSTAT_H

#include "img/img.h"

struct bstat {
    uint64_t len;           /* bytes from the offset with this status (> 0) */
    bool data;              /* stored data (may still read as zeros) */
    bool zero;              /* reads as zeros */
    bool present;           /* allocated in some image of the chain */
    bool compressed;
    bool has_offset;
    uint64_t offset;        /* host offset in `file` */
    unsigned depth;         /* 0: the image itself, 1: its backing file, ... */
    const char *file;       /* file holding the data */
};

/* Status of [off, off+max) from off on; 0 or -errno. */
int img_block_status(struct img *im, uint64_t off, uint64_t max, struct bstat *b);

#endif
