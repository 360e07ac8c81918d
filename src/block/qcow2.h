/* The qcow2 image format (QEMU's docs/interop/qcow2.txt, versions 2 and 3):
 * the block driver `blk_driver_qcow2` for the driver table, an open call
 * with options for callers that need them (tests, fuzzers, kvmbox-img), and
 * image creation.
 *
 * Threads: the driver's I/O calls run on block workers, several at once;
 * the driver serialises its metadata with one mutex (see qcow2_int.h).
 * qcow2_create runs on whatever thread calls it (it touches only its file). */
#ifndef KVMBOX_BLOCK_QCOW2_H
#define KVMBOX_BLOCK_QCOW2_H

#include "block/block_int.h"

#include <stdbool.h>
#include <stdint.h>

extern const struct block_driver blk_driver_qcow2;

struct qcow2_open_options {
    /* Bytes of L2 tables cached (QEMU's l2-cache-size); 0: enough for the
     * whole disk, at most 32 MiB (QEMU's default since 3.1). */
    uint64_t l2_cache_size;
    /* Bytes of refcount blocks cached (QEMU's refcount-cache-size); 0: a
     * quarter of the L2 cache's tables, 4 to 64. */
    uint64_t refcount_cache_size;
    /* Path of the image, to resolve a relative backing file name against;
     * NULL: taken from /proc/self/fd. */
    const char *filename;
    /* Do not open backing files: unallocated clusters read as zeros
     * (fuzzing, where the image is hostile and names host files). */
    bool no_backing;
    /* cache=unsafe (kvmbox-img convert's default, as qemu-img's): never
     * fdatasync, not even as a write-back ordering barrier, so a crash
     * may leave anything; for images that are thrown away on failure. */
    bool no_sync;
    /* Backing chain depth so far (internal: loop/depth limit). */
    unsigned depth;
};

/* Open `file` as qcow2 (the driver table's open with options). 0 or -errno
 * with a one-line reason in err. */
int qcow2_open_ex(void **state, struct blk_file *file, bool read_only,
                  const struct qcow2_open_options *o, char *err, unsigned errlen);

/* Write one whole guest cluster at cluster-aligned `off` compressed with
 * the image's compression type, zlib or zstd (QEMU's -c; the image's last
 * cluster may be short: len is then the rest of the image). Stored
 * uncompressed when it does not shrink. For kvmbox-img convert -c. */
int qcow2_write_compressed(void *state, uint64_t off, const void *buf, uint64_t len);

enum qcow2_prealloc { QCOW2_PREALLOC_OFF, QCOW2_PREALLOC_METADATA };

struct qcow2_create_options {
    uint64_t size;                  /* guest bytes */
    uint32_t cluster_size;          /* 0: 64 KiB; a power of two, 512 B .. 2 MiB */
    enum qcow2_prealloc prealloc;
    const char *backing_file;       /* stored as given (relative to the image's directory) */
    const char *backing_fmt;        /* "raw", "qcow2" or NULL */
    bool lazy_refcounts;            /* compat 1.1 only */
    bool compat_v2;                 /* compat=0.10 (version 2); default 1.1 (version 3) */
    /* Refcount entry width: 0 means 16; a power of two 1..64 (spec
     * "refcount_order"); anything but 16 needs compat 1.1. */
    uint32_t refcount_bits;
    /* Spec "compression_type" (header byte 104): compressed clusters use
     * zlib (default) or zstd; zstd needs compat 1.1 and sets incompatible
     * feature bit 3 so that older readers refuse the image. */
    enum qcow2_compression { QCOW2_COMPRESSION_ZLIB = 0, QCOW2_COMPRESSION_ZSTD = 1 } compression;
};

/* Create (or truncate) `path` as an empty qcow2 image. 0 or -errno with a
 * reason in err. */
int qcow2_create(const char *path, const struct qcow2_create_options *o, char *err,
                 unsigned errlen);

#endif
