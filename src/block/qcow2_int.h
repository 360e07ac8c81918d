/* Inside the qcow2 driver: the open image's state, shared by qcow2.c (open,
 * guest I/O), qcow2_meta.c (table cache, refcounts, allocation, metadata
 * write-back, refcount rebuild) and qcow2_create.c.
 *
 * Locking: `lock` guards every field below it in struct qcow2 (caches, L1,
 * refcount table, header copy, pending frees). Data I/O to clusters that are
 * already allocated runs without it, counted in `inflight` (under the leaf
 * lock `inflight_lock`) so that freed clusters are reused only once no
 * unlocked I/O may still touch them. Lock order: lock -> inflight_lock.
 *
 * Crash consistency (spec: "refcount ... must be updated before" the
 * references): metadata is written back in qcow2_meta_writeback in the
 * order data + refcount blocks -> refcount table -> header -> L2 tables ->
 * L1 table, with an fdatasync between stages that have something to
 * write, and refcount decrements are applied only after the L2/L1 entries
 * that dropped the references are on disk. A crash therefore leaks clusters
 * at worst. */
#ifndef KVMBOX_BLOCK_QCOW2_INT_H
#define KVMBOX_BLOCK_QCOW2_INT_H

#include "block/qcow2.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/* Header (qcow2 spec "Header"), big endian. */
#define QCOW2_MAGIC 0x514649fbu                 /* "QFI\xfb" */
enum {
    QCOW2_HDR_V2_LEN = 72,
    QCOW2_HDR_V3_MIN_LEN = 104,
    QCOW2_HDR_MAX_LEN = 112,                    /* up to compression_type + padding */
};

/* Feature bits (spec: incompatible/compatible/autoclear_features). */
#define QCOW2_INCOMPAT_DIRTY        (1ull << 0)
#define QCOW2_INCOMPAT_CORRUPT      (1ull << 1)
#define QCOW2_INCOMPAT_DATA_FILE    (1ull << 2)
#define QCOW2_INCOMPAT_COMPRESSION  (1ull << 3)
#define QCOW2_INCOMPAT_EXTL2        (1ull << 4)
#define QCOW2_COMPAT_LAZY_REFCOUNTS (1ull << 0)

/* Header extension types (spec "Header extensions"). */
enum {
    QCOW2_EXT_END = 0,
    QCOW2_EXT_BACKING_FORMAT = 0xe2792aca,
    QCOW2_EXT_FEATURE_TABLE = 0x6803f857,
};

/* L1/L2 entry bits (spec "Cluster mapping"). */
#define QCOW2_OFLAG_COPIED      (1ull << 63)
#define QCOW2_OFLAG_COMPRESSED  (1ull << 62)
#define QCOW2_OFLAG_ZERO        1ull
#define QCOW2_OFFSET_MASK       0x00fffffffffffe00ull   /* bits 9-55 */
#define QCOW2_REFT_OFFSET_MASK  0xfffffffffffffe00ull   /* refcount table entry bits 9-63 */

enum {
    QCOW2_MAX_L1_BYTES = 32 * 1024 * 1024,      /* QEMU's QCOW_MAX_L1_SIZE */
    QCOW2_MAX_REFTABLE_BYTES = 8 * 1024 * 1024, /* QEMU's QCOW_MAX_REFTABLE_SIZE */
    QCOW2_MAX_SNAPSHOTS = 65536,
    QCOW2_MAX_DEPTH = 32,                       /* backing chain */
};

/* A bounded LRU cache of cluster-sized tables (L2 tables, refcount blocks),
 * stored as on disk (big endian). */
struct qcow2_cache_entry {
    uint64_t off;               /* host offset; 0: empty slot */
    uint8_t *data;
    uint64_t lru;
    bool dirty;
};

struct qcow2_cache {
    unsigned n;
    uint64_t tick;
    struct qcow2_cache_entry *e;
};

struct qcow2_backing {
    const struct block_driver *drv;
    void *state;
    struct blk_file file;
    uint64_t len;
};

enum qcow2_ctype { QCOW2_TYPE_UNALLOC, QCOW2_TYPE_ZERO, QCOW2_TYPE_ZERO_ALLOC,
                   QCOW2_TYPE_NORMAL, QCOW2_TYPE_COMPRESSED };

struct qcow2 {
    struct blk_file *file;
    bool read_only;
    uint32_t version;
    uint32_t cluster_bits;
    uint64_t cluster_size;
    uint32_t l2_bits;           /* log2(entries per L2 table) */
    uint64_t size;              /* guest bytes */
    uint32_t refcount_order;
    uint32_t refcount_bits;
    uint64_t refcount_max;
    uint32_t rpb_bits;          /* log2(refcounts per refcount block) */
    uint32_t csize_shift;       /* compressed descriptor: bits of the offset field */
    uint64_t csize_mask;
    int compression_type;       /* 0 zlib, 1 zstd */
    uint32_t header_len;        /* bytes of header fields we rewrite (72 or >= 104) */
    uint8_t hdr[QCOW2_HDR_MAX_LEN];     /* the header as read; patched and rewritten */
    uint64_t incompat, compat, autoclear;
    uint32_t nb_snapshots;
    uint64_t snapshots_offset;
    uint64_t l1_offset;
    uint32_t l1_size;
    struct qcow2_backing *backing;
    char *backing_name;         /* resolved path */

    pthread_mutex_t inflight_lock;
    pthread_cond_t inflight_cond;
    uint64_t inflight;          /* unlocked data I/O in progress */

    pthread_mutex_t lock;
    uint64_t *l1;               /* host order */
    bool l1_dirty;
    uint64_t *reftable;         /* host order */
    uint64_t reftable_entries;
    uint64_t reftable_offset;
    bool reftable_dirty;        /* table contents (at reftable_offset) to write */
    bool header_dirty;          /* reftable offset/size or feature bits to write */
    uint64_t reftable_resv_start, reftable_resv_n;  /* being placed (grow) */
    uint64_t alloc_resv_start, alloc_resv_n;        /* being allocated */
    struct qcow2_cache l2_cache, rb_cache;
    uint64_t free_hint;         /* no free cluster below this index */
    uint64_t rt_used;           /* 1 + highest refcount table index in use */
    uint64_t end_cluster;       /* first cluster past the file / allocations */
    bool need_sync;             /* written since the last fdatasync (ordering barrier) */
    bool lazy_dirty_set;        /* lazy refcounts: dirty bit is on disk */
    uint64_t *pending_free;     /* host cluster indices to decrement after write-back */
    size_t npending, pending_cap;
    unsigned alloc_depth;
    uint64_t cbytes_off;
    bool no_sync;               /* cache=unsafe: no fdatasync at all (see qcow2_open_options) */        /* compressed writes: next free byte in a shared cluster; 0: none */
};

static inline uint64_t qcow2_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}
static inline uint32_t qcow2_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline uint16_t qcow2_be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline void qcow2_put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}
static inline void qcow2_put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}
static inline void qcow2_put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v;
}

/* ---- qcow2_meta.c (all under s->lock) ---------------------------------- */

int qcow2_cache_init(struct qcow2_cache *c, unsigned n, uint64_t cluster_size);
void qcow2_cache_free(struct qcow2_cache *c);
/* The table at host offset `off`: read from the file, or zeroed if `fresh`
 * (a newly allocated table; marked dirty). May write back metadata to make
 * room. NULL on error (*ret = -errno). The pointer stays valid until the
 * next qcow2_cache_get on the same cache. */
struct qcow2_cache_entry *qcow2_cache_get(struct qcow2 *s, struct qcow2_cache *c, uint64_t off,
                                          bool fresh, int *ret);

int qcow2_get_refcount(struct qcow2 *s, uint64_t cluster, uint64_t *rc);
/* Allocate n (<= qcow2_max_alloc) contiguous clusters with refcount 1;
 * returns the host offset of the first, or 0 with *ret = -errno. */
uint64_t qcow2_alloc_clusters(struct qcow2 *s, uint64_t n, int *ret);
uint64_t qcow2_max_alloc(const struct qcow2 *s);
/* Drop one reference to each host cluster in [off, off+len) once the
 * metadata that referenced them is on disk. */
int qcow2_free_later(struct qcow2 *s, uint64_t off, uint64_t len);
/* Write back dirty metadata in crash-safe order (see above); `sync`: end
 * with an fdatasync. */
int qcow2_meta_writeback(struct qcow2 *s, bool sync, bool apply_frees);
int qcow2_write_header(struct qcow2 *s);
/* Rebuild every refcount from the metadata (dirty image after a crash with
 * lazy refcounts): a new refcount table and blocks at the end of the file. */
int qcow2_rebuild_refcounts(struct qcow2 *s, char *err, unsigned errlen);
/* fdatasync of the image file, unless opened with no_sync. */
int qcow2_sync(struct qcow2 *s);
/* One more reference to a host cluster that already has one (snapshots). */
int qcow2_inc_refcount(struct qcow2 *s, uint64_t cluster);
/* Byte-granular allocation for compressed clusters (QEMU's
 * qcow2_alloc_bytes): packs into the last partly used cluster, counting one
 * reference per piece. Returns the host byte offset, or 0 with *ret. */
uint64_t qcow2_alloc_bytes(struct qcow2 *s, uint64_t len, int *ret);
/* Before the first refcount change with lazy refcounts: dirty bit on disk. */
int qcow2_mark_dirty(struct qcow2 *s);

/* ---- qcow2_compress.c ------------------------------------------------------ */

/* Decompress into exactly one cluster (cs bytes) from at most inlen bytes:
 * 0, or -EIO if the data does not decompress to a full cluster. */
int qcow2_decompress(int type, const uint8_t *in, uint64_t inlen, uint8_t *out, uint64_t cs);
/* Compress len bytes with the image's compression type: the output size,
 * or 0 if it does not fit in `max` (then stored uncompressed). */
uint64_t qcow2_compress(int type, const uint8_t *in, uint64_t len, uint8_t *out, uint64_t max);

/* ---- qcow2.c ------------------------------------------------------------ */

/* Classify an L2 entry: type, host offset (cluster aligned for NORMAL/
 * ZERO_ALLOC; byte offset for COMPRESSED) and, for COMPRESSED, length. */
enum qcow2_ctype qcow2_entry_type(const struct qcow2 *s, uint64_t entry, uint64_t *host,
                                  uint64_t *clen);

/* ---- qcow2_create.c, qcow2_amend.c: header cluster layout, refcount
 * entries, and the in-place changes of kvmbox-img amend ------------------- */

/* Everything a header cluster says (spec "Header", "Header extensions"). */
struct qcow2_hdr_desc {
    uint32_t version;                       /* 2 or 3 */
    uint32_t cluster_bits;
    uint64_t size;
    uint32_t l1_size;
    uint64_t l1_offset;
    uint64_t reftable_offset;
    uint32_t reftable_clusters;
    uint32_t nb_snapshots;
    uint64_t snapshots_offset;
    uint64_t incompat, compat, autoclear;   /* version 3 only */
    uint32_t refcount_order;                /* version 3 only (version 2: 4) */
    uint32_t compression_type;              /* version 3 only */
    const char *backing_file, *backing_fmt; /* NULL: none */
    const uint8_t *other_ext;               /* more extensions, copied verbatim */
    uint64_t other_ext_len;
};
/* Lay out header cluster h (cs bytes; zeroed first) as QEMU does: header
 * fields, backing format extension, feature name table (version 3, if it
 * fits), other extensions, end marker, backing file name. 0, or -EINVAL
 * with a reason when it does not fit in one cluster. */
int qcow2_header_build(uint8_t *h, uint64_t cs, const struct qcow2_hdr_desc *d, char *err,
                       unsigned errlen);
/* Entry i of a refcount block with `bits`-wide entries := v (spec
 * "Refcount blocks": big endian; narrower than a byte, the least
 * significant bits first). In qcow2_meta.c. */
void qcow2_refblock_put(uint32_t bits, uint8_t *blk, uint64_t i, uint64_t v);

/* A snapshot's L1 table (amend walks snapshots' tables too). */
struct qcow2_l1_ref {
    uint64_t offset;
    uint32_t size;
};
/* Rewrite every refcount at a new width (1..64, a power of two; version 3
 * image): refused with QEMU's message if a refcount does not fit. The new
 * table and blocks are written and synced before the header switches. */
int qcow2_amend_refcount_bits(struct qcow2 *s, uint32_t bits, char *err, unsigned errlen);
/* Version 2 -> 3: the header is rewritten in version 3 layout (zlib, 16-bit
 * refcounts, no features). backing/backing_fmt: as in the header now. */
int qcow2_amend_upgrade(struct qcow2 *s, const char *backing, const char *backing_fmt,
                        char *err, unsigned errlen);
/* Version 3 -> 2 (QEMU's rules): 16-bit refcounts only, no incompatible
 * features but the compression type, zero clusters expanded in the active
 * and the snapshots' tables (has_backing: unallocated zero clusters get a
 * zeroed cluster, else they become unallocated), zstd only without
 * compressed clusters. Data and tables are synced before the header. */
int qcow2_amend_downgrade(struct qcow2 *s, const struct qcow2_l1_ref *snaps, uint32_t nsnaps,
                          bool has_backing, const char *backing, const char *backing_fmt,
                          char *err, unsigned errlen);

#endif
