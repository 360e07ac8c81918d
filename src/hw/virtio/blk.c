/* See blk.h. Request layout (§5.2.6): a 16-byte header the device reads
 * (type, reserved, sector), the data, and one status byte the device
 * writes last. A driver may split or merge these across descriptors in any
 * way, so the request is parsed with the iov helpers, never by descriptor. */
#include "hw/virtio/blk.h"
#include "block/block.h"
#include "core/iov.h"
#include "core/log.h"
#include "core/loop.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Feature bits (§5.2.3). */
#define VIRTIO_BLK_F_SIZE_MAX     1
#define VIRTIO_BLK_F_SEG_MAX      2
#define VIRTIO_BLK_F_GEOMETRY     4
#define VIRTIO_BLK_F_RO           5
#define VIRTIO_BLK_F_BLK_SIZE     6
#define VIRTIO_BLK_F_FLUSH        9
#define VIRTIO_BLK_F_TOPOLOGY     10
#define VIRTIO_BLK_F_CONFIG_WCE   11
#define VIRTIO_BLK_F_MQ           12
#define VIRTIO_BLK_F_DISCARD      13
#define VIRTIO_BLK_F_WRITE_ZEROES 14

/* Request types and status values (§5.2.6). */
#define VIRTIO_BLK_T_IN           0
#define VIRTIO_BLK_T_OUT          1
#define VIRTIO_BLK_T_FLUSH        4
#define VIRTIO_BLK_T_GET_ID       8
#define VIRTIO_BLK_T_DISCARD      11
#define VIRTIO_BLK_T_WRITE_ZEROES 13
#define VIRTIO_BLK_S_OK           0
#define VIRTIO_BLK_S_IOERR        1
#define VIRTIO_BLK_S_UNSUPP       2

#define SECTOR_SHIFT 9
#define BLK_SEG_MAX  (VIRTQ_MAX_CHAIN - 2)   /* data segments besides header and status */
#define BLK_MAX_DISCARD_SECTORS (1u << 22)   /* 2 GiB per request */

/* struct virtio_blk_config (§5.2.4), little-endian on x86. */
struct virtio_blk_config {
    uint64_t capacity;
    uint32_t size_max;
    uint32_t seg_max;
    struct { uint16_t cylinders; uint8_t heads; uint8_t sectors; } geometry;
    uint32_t blk_size;
    uint8_t physical_block_exp;
    uint8_t alignment_offset;
    uint16_t min_io_size;
    uint32_t opt_io_size;
    uint8_t writeback;
    uint8_t unused0;
    uint16_t num_queues;
    uint32_t max_discard_sectors;
    uint32_t max_discard_seg;
    uint32_t discard_sector_alignment;
    uint32_t max_write_zeroes_sectors;
    uint32_t max_write_zeroes_seg;
    uint8_t write_zeroes_may_unmap;
    uint8_t unused1[3];
} __attribute__((packed));
_Static_assert(sizeof(struct virtio_blk_config) == 60, "virtio_blk_config layout");

struct virtio_blk_discard_wz {
    uint64_t sector;
    uint32_t num_sectors;
    uint32_t flags;             /* bit 0: unmap (write-zeroes) */
};

struct virtio_blk {
    struct virtio_device_ops ops;   /* per device: queue count, sizes */
    struct virtio_blk_opts opts;
    char serial[VIRTIO_BLK_ID_BYTES];
    struct block_backend *backend;
    struct loop *io_loop;
    uint64_t capacity;              /* in 512-byte sectors */
    bool read_only;
    bool wce;                       /* the guest-visible write cache flag (__atomic: vCPU writes, I/O thread reads) */
    /* I/O thread only: */
    struct virtio_dev *vd;          /* set at activation */
    struct vblk_req *free_reqs;     /* recycled requests (each ~32 KiB) */
    unsigned nr_free;
    unsigned inflight;
    bool stopped;                   /* reset in progress (__atomic: set by activate on a vCPU) */
};

struct vblk_req {
    struct vblk_req *next_free;
    struct virtio_blk *blk;
    unsigned queue;
    struct blk_req r;
    uint32_t written;               /* bytes written into the in-buffers, status included */
    uint64_t status_off;            /* offset of the status byte in the in-part */
    bool flush_after;               /* WCE off on a cached back end: write then flush */
    struct iovec data[BLK_SEG_MAX];
    struct virtq_elem elem;         /* last: large */
};

/* Requests are big (the element's iovec array) and frequent: keep a few
 * for reuse instead of a malloc/free pair per I/O. */
#define VBLK_POOL_MAX 64

static struct vblk_req *vblk_req_get(struct virtio_blk *b)
{
    struct vblk_req *q = b->free_reqs;
    if (q) {
        b->free_reqs = q->next_free;
        b->nr_free--;
        return q;
    }
    return malloc(sizeof *q);
}

static void vblk_req_put(struct virtio_blk *b, struct vblk_req *q)
{
    if (b->nr_free >= VBLK_POOL_MAX) {
        free(q);
        return;
    }
    q->next_free = b->free_reqs;
    b->free_reqs = q;
    b->nr_free++;
}

static const struct iovec *req_in(const struct vblk_req *q)
{
    return q->elem.iov + q->elem.out_num;
}

static void vblk_finish(struct vblk_req *q, uint8_t status)
{
    struct virtio_blk *b = q->blk;
    iov_from_buf(req_in(q), q->elem.in_num, q->status_off, &status, 1);
    virtio_queue_push(b->vd, q->queue, &q->elem, q->written);
    virtio_notify(b->vd, q->queue);
    b->inflight--;
    vblk_req_put(b, q);
}

static void vblk_done(struct blk_req *r, int ret);

static void vblk_flush_done(struct blk_req *r, int ret)
{
    struct vblk_req *q = r->opaque;
    vblk_finish(q, ret < 0 ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK);
}

static void vblk_done(struct blk_req *r, int ret)
{
    struct vblk_req *q = r->opaque;
    if (ret < 0) {
        vblk_finish(q, VIRTIO_BLK_S_IOERR);
        return;
    }
    if (q->flush_after) {
        q->r = (struct blk_req){ .op = BLK_OP_FLUSH, .done = vblk_flush_done, .opaque = q };
        blk_submit(q->blk->backend, &q->r);
        return;
    }
    vblk_finish(q, VIRTIO_BLK_S_OK);
}

/* Is [sector, sector + bytes/512) inside the disk and block aligned? */
static bool vblk_range_ok(const struct virtio_blk *b, uint64_t sector, uint64_t bytes)
{
    uint32_t lbs = b->opts.logical_block_size;
    if (bytes % lbs || (sector << SECTOR_SHIFT) % lbs)
        return false;
    uint64_t n = bytes >> SECTOR_SHIFT;
    return sector <= b->capacity && n <= b->capacity - sector;
}

/* Returns false when the request is malformed beyond a status answer
 * (the device must then need a reset). */
static bool vblk_handle(struct virtio_blk *b, struct vblk_req *q)
{
    struct virtq_elem *e = &q->elem;
    struct { uint32_t type, reserved; uint64_t sector; } hdr;
    if (e->in_len < 1 || iov_to_buf(e->iov, e->out_num, 0, &hdr, sizeof hdr) != sizeof hdr)
        return false;   /* no header or no status byte: §5.2.6.1 violated */
    q->status_off = e->in_len - 1;
    q->written = 1;
    uint64_t data_out = e->out_len - sizeof hdr;
    uint64_t data_in = e->in_len - 1;
    int n;
    switch (hdr.type) {
    case VIRTIO_BLK_T_IN:
    case VIRTIO_BLK_T_OUT: {
        bool is_read = hdr.type == VIRTIO_BLK_T_IN;
        uint64_t len = is_read ? data_in : data_out;
        if (!is_read && b->read_only) {
            vblk_finish(q, VIRTIO_BLK_S_IOERR);
            return true;
        }
        if (!vblk_range_ok(b, hdr.sector, len)) {
            vblk_finish(q, VIRTIO_BLK_S_IOERR);
            return true;
        }
        n = (int)(is_read ? iov_slice(req_in(q), e->in_num, 0, len, q->data, BLK_SEG_MAX)
                          : iov_slice(e->iov, e->out_num, sizeof hdr, len, q->data, BLK_SEG_MAX));
        if (iov_size(q->data, (unsigned)n) != len) {
            vblk_finish(q, VIRTIO_BLK_S_IOERR);
            return true;
        }
        if (is_read)
            q->written = (uint32_t)(len + 1);
        q->flush_after = !is_read && !__atomic_load_n(&b->wce, __ATOMIC_RELAXED) &&
                         blk_write_cache(b->backend);
        q->r = (struct blk_req){
            .op = is_read ? BLK_OP_READ : BLK_OP_WRITE,
            .offset = hdr.sector << SECTOR_SHIFT, .len = len,
            .iov = q->data, .iovcnt = (unsigned)n, .done = vblk_done, .opaque = q,
        };
        blk_submit(b->backend, &q->r);
        return true;
    }
    case VIRTIO_BLK_T_FLUSH:
        q->r = (struct blk_req){ .op = BLK_OP_FLUSH, .done = vblk_done, .opaque = q };
        blk_submit(b->backend, &q->r);
        return true;
    case VIRTIO_BLK_T_GET_ID: {
        uint64_t len = data_in < VIRTIO_BLK_ID_BYTES ? data_in : VIRTIO_BLK_ID_BYTES;
        iov_from_buf(req_in(q), e->in_num, 0, b->serial, len);
        q->written = (uint32_t)(len + 1);
        vblk_finish(q, VIRTIO_BLK_S_OK);
        return true;
    }
    case VIRTIO_BLK_T_DISCARD:
    case VIRTIO_BLK_T_WRITE_ZEROES: {
        bool discard = hdr.type == VIRTIO_BLK_T_DISCARD;
        struct virtio_blk_discard_wz seg;
        if ((discard && !b->opts.discard) || b->read_only) {
            vblk_finish(q, discard && !b->opts.discard ? VIRTIO_BLK_S_UNSUPP
                                                       : VIRTIO_BLK_S_IOERR);
            return true;
        }
        /* We offer one segment per request (max_*_seg = 1). */
        if (data_out != sizeof seg ||
            iov_to_buf(e->iov, e->out_num, sizeof hdr, &seg, sizeof seg) != sizeof seg ||
            (seg.flags & ~1u) || (discard && seg.flags) ||
            seg.num_sectors > BLK_MAX_DISCARD_SECTORS ||
            !vblk_range_ok(b, seg.sector, (uint64_t)seg.num_sectors << SECTOR_SHIFT)) {
            vblk_finish(q, discard ? VIRTIO_BLK_S_UNSUPP : VIRTIO_BLK_S_IOERR);
            return true;
        }
        q->r = (struct blk_req){
            .op = discard ? BLK_OP_DISCARD : BLK_OP_WRITE_ZEROES,
            .offset = seg.sector << SECTOR_SHIFT,
            .len = (uint64_t)seg.num_sectors << SECTOR_SHIFT,
            .done = vblk_done, .opaque = q,
        };
        blk_submit(b->backend, &q->r);
        return true;
    }
    default:
        vblk_finish(q, VIRTIO_BLK_S_UNSUPP);
        return true;
    }
}

static void vblk_queue_notify(struct virtio_dev *vd, unsigned qi)
{
    struct virtio_blk *b = vd->opaque;
    b->vd = vd;
    if (__atomic_load_n(&b->stopped, __ATOMIC_ACQUIRE))
        return;
    /* Suppress further kicks while we drain, then re-check (§2.7.10). */
    do {
        virtio_queue_set_notification(vd, qi, false);
        for (;;) {
            struct vblk_req *q = vblk_req_get(b);
            if (!q)
                return;         /* retried at the next kick */
            /* Not calloc: the element is 32 KiB of iovecs the pop fills;
             * every other field is set here. */
            q->blk = b;
            q->queue = qi;
            q->flush_after = false;
            q->written = 1;
            q->status_off = 0;
            int r = virtio_queue_pop(vd, qi, &q->elem);
            if (r <= 0) {
                vblk_req_put(b, q);
                if (r < 0)
                    return;     /* NEEDS_RESET (or not running): stop */
                break;
            }
            b->inflight++;
            if (!vblk_handle(b, q)) {
                b->inflight--;
                vblk_req_put(b, q);
                virtio_dev_set_needs_reset(vd, "virtio-blk: request without header or status");
                return;
            }
        }
    } while (virtio_queue_set_notification(vd, qi, true));
}

static uint64_t vblk_features(struct virtio_dev *vd)
{
    struct virtio_blk *b = vd->opaque;
    uint64_t f = (1ULL << VIRTIO_BLK_F_SEG_MAX) | (1ULL << VIRTIO_BLK_F_BLK_SIZE) |
                 (1ULL << VIRTIO_BLK_F_FLUSH) | (1ULL << VIRTIO_BLK_F_TOPOLOGY) |
                 (1ULL << VIRTIO_BLK_F_CONFIG_WCE) | (1ULL << VIRTIO_BLK_F_WRITE_ZEROES) |
                 (1ULL << VIRTIO_BLK_F_GEOMETRY);
    if (b->read_only)
        f |= 1ULL << VIRTIO_BLK_F_RO;
    if (b->opts.num_queues > 1)
        f |= 1ULL << VIRTIO_BLK_F_MQ;
    if (b->opts.discard)
        f |= 1ULL << VIRTIO_BLK_F_DISCARD;
    return f;
}

static unsigned vblk_log2(uint32_t v)
{
    unsigned n = 0;
    while ((1u << (n + 1)) <= v)
        n++;
    return n;
}

static void vblk_fill_config(const struct virtio_blk *b, struct virtio_blk_config *c)
{
    memset(c, 0, sizeof *c);
    c->capacity = b->capacity;
    c->seg_max = BLK_SEG_MAX;
    /* A plausible CHS geometry, as QEMU's defaults (16 heads, 63 sectors). */
    uint64_t cyl = b->capacity / (16 * 63);
    c->geometry.cylinders = (uint16_t)(cyl > 65535 ? 65535 : cyl);
    c->geometry.heads = 16;
    c->geometry.sectors = 63;
    c->blk_size = b->opts.logical_block_size;
    c->physical_block_exp = (uint8_t)vblk_log2(b->opts.physical_block_size / b->opts.logical_block_size);
    c->min_io_size = (uint16_t)(b->opts.physical_block_size / b->opts.logical_block_size);
    c->writeback = __atomic_load_n(&b->wce, __ATOMIC_RELAXED);
    c->num_queues = (uint16_t)b->opts.num_queues;
    c->max_discard_sectors = BLK_MAX_DISCARD_SECTORS;
    c->max_discard_seg = 1;
    c->discard_sector_alignment = b->opts.logical_block_size >> SECTOR_SHIFT;
    c->max_write_zeroes_sectors = BLK_MAX_DISCARD_SECTORS;
    c->max_write_zeroes_seg = 1;
    c->write_zeroes_may_unmap = b->opts.discard;
}

static void vblk_config_read(struct virtio_dev *vd, uint32_t off, void *data, unsigned len)
{
    struct virtio_blk_config c;
    vblk_fill_config(vd->opaque, &c);
    if (off < sizeof c && len <= sizeof c - off)
        memcpy(data, (uint8_t *)&c + off, len);
}

static void vblk_config_write(struct virtio_dev *vd, uint32_t off, const void *data, unsigned len)
{
    struct virtio_blk *b = vd->opaque;
    /* Only the writeback byte is writable (CONFIG_WCE, §5.2.6.3). */
    if (off == offsetof(struct virtio_blk_config, writeback) && len == 1 &&
        virtio_has_feature(vd, VIRTIO_BLK_F_CONFIG_WCE))
        __atomic_store_n(&b->wce, *(const uint8_t *)data != 0, __ATOMIC_RELAXED);
}

static int vblk_activate(struct virtio_dev *vd)
{
    struct virtio_blk *b = vd->opaque;
    b->vd = vd;
    __atomic_store_n(&b->stopped, false, __ATOMIC_RELEASE);
    return 0;
}

static void vblk_quiesce(void *arg)
{
    struct virtio_blk *b = arg;
    /* On the I/O thread: stop taking requests and let the ones in flight
     * complete (their completions run here, inside blk_drain). */
    __atomic_store_n(&b->stopped, true, __ATOMIC_RELEASE);
    blk_drain(b->backend);
}

static void vblk_reset(struct virtio_dev *vd)
{
    struct virtio_blk *b = vd->opaque;
    loop_call_sync(b->io_loop, vblk_quiesce, b);
    __atomic_store_n(&b->wce, blk_write_cache(b->backend), __ATOMIC_RELAXED);
}

struct virtio_blk *virtio_blk_new(struct block_backend *backend, struct loop *io_loop,
                                  const struct virtio_blk_opts *opts)
{
    struct virtio_blk *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->opts = *opts;
    if (!b->opts.num_queues)
        b->opts.num_queues = 1;
    if (!b->opts.queue_size)
        b->opts.queue_size = 256;
    if (!b->opts.logical_block_size)
        b->opts.logical_block_size = 512;
    if (b->opts.physical_block_size < b->opts.logical_block_size)
        b->opts.physical_block_size = b->opts.logical_block_size;
    if (opts->serial)   /* zero-padded, not NUL-terminated when 20 bytes long */
        memcpy(b->serial, opts->serial, strnlen(opts->serial, sizeof b->serial));
    b->opts.serial = NULL;
    b->backend = backend;
    b->io_loop = io_loop;
    b->capacity = blk_length(backend) >> SECTOR_SHIFT;
    b->read_only = blk_read_only(backend);
    b->wce = blk_write_cache(backend);
    b->stopped = true;      /* until the driver sets DRIVER_OK */
    b->ops = (struct virtio_device_ops){
        .device_id = 2, .name = "virtio-blk",
        .num_queues = b->opts.num_queues, .queue_max_size = b->opts.queue_size,
        .config_size = sizeof(struct virtio_blk_config),
        .features = vblk_features, .config_read = vblk_config_read,
        .config_write = vblk_config_write, .activate = vblk_activate,
        .queue_notify = vblk_queue_notify, .reset = vblk_reset,
    };
    return b;
}

void virtio_blk_free(struct virtio_blk *b)
{
    if (!b)
        return;
    while (b->free_reqs) {
        struct vblk_req *q = b->free_reqs;
        b->free_reqs = q->next_free;
        free(q);
    }
    free(b);
}

const struct virtio_device_ops *virtio_blk_ops(const struct virtio_blk *b)
{
    return &b->ops;
}
