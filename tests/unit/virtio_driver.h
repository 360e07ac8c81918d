/* A simulated virtio guest driver for unit tests (like QEMU's qtest
 * libqos): it lives in "guest" memory (a struct guest_mem), negotiates
 * features through the virtio core, lays out split rings (virtio 1.2 §2.7),
 * adds buffer chains (direct or through an indirect table), kicks the device
 * by calling its ops->queue_notify directly (the I/O thread's job in the
 * VMM), and harvests used entries. It plays the transport too: interrupts
 * the device raises are counted in drv->irqs[q] / drv->config_irqs.
 *
 * Header-only (static inline): a device test just includes it.
 *
 *     struct guest_mem mem;  gmem_init(&mem, 4 << 20);
 *     struct virtio_dev vd;  virtio_dev_init(&vd, &my_ops, my_dev, &mem);
 *     struct vdrv drv;       vdrv_init(&drv, &vd, 1ULL << VIRTIO_F_VERSION_1);
 *     uint64_t req = vdrv_alloc_copy(&drv, &hdr, sizeof hdr);
 *     uint64_t st  = vdrv_alloc(&drv, 1, 1);
 *     struct vdrv_sg out[] = {{req, sizeof hdr}}, in[] = {{st, 1}};
 *     int head = vdrv_add_chain(&drv, 0, out, 1, in, 1);
 *     vdrv_kick(&drv, 0);
 *     uint16_t id; uint32_t len;
 *     vdrv_get_used(&drv, 0, &id, &len) == 1 && id == head;
 *     uint8_t *status = vdrv_ptr(&drv, st, 1);
 *     ...
 *     vdrv_destroy(&drv); virtio_dev_destroy(&vd); gmem_destroy(&mem);
 *
 * Memory: a bump allocator from VDRV_HEAP_BASE to the end of the first RAM
 * region; the low 64 KiB are left for tests that place things by hand.
 * Devices with their own I/O threads: use vdrv_wait_used. The driver itself
 * is single-threaded (one test thread). */
#ifndef KVMBOX_TEST_VIRTIO_DRIVER_H
#define KVMBOX_TEST_VIRTIO_DRIVER_H

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hw/virtio/virtio.h"

#define VDRV_HEAP_BASE    0x10000ULL
#define VDRV_MAX_INDIRECT 64        /* descriptors per indirect table */

_Static_assert(sizeof(struct virtq_desc) == 16, "virtq_desc layout");

struct vdrv_sg {
    uint64_t gpa;
    uint32_t len;
};

struct vdrv_queue {
    bool set_up;
    bool cb_disabled;               /* vdrv_disable_cb in effect */
    uint16_t size;
    uint64_t desc_gpa, avail_gpa, used_gpa, indirect_gpa;
    uint16_t avail_idx;             /* our avail->idx */
    uint16_t kicked_idx;            /* avail_idx at the last kick decision */
    uint16_t last_used_idx;         /* next used entry to harvest */
    uint16_t num_free, free_head;
    uint16_t *next;                 /* free list and chain links (host side) */
    uint16_t *chain_len;            /* per head: descriptors, 0 = not in flight */
    unsigned kicks, kicks_suppressed;
};

struct vdrv {
    struct virtio_dev *vd;
    struct guest_mem *mem;
    uint64_t features;              /* what we wrote (accepted if FEATURES_OK stuck) */
    uint64_t heap_next, heap_end;
    struct vdrv_queue q[VIRTIO_MAX_QUEUES];
    unsigned irqs[VIRTIO_MAX_QUEUES];   /* used-buffer notifications received */
    unsigned config_irqs;               /* configuration change notifications */
};

/* ---- the transport side: count interrupts ---- */

static inline void vdrv_transport_notify_queue(struct virtio_dev *vd, unsigned q)
{
    struct vdrv *drv = vd->transport_opaque;
    if (q < VIRTIO_MAX_QUEUES)
        drv->irqs[q]++;
}

static inline void vdrv_transport_notify_config(struct virtio_dev *vd)
{
    struct vdrv *drv = vd->transport_opaque;
    drv->config_irqs++;
}

static inline const struct virtio_transport_ops *vdrv_transport_ops(void)
{
    static const struct virtio_transport_ops ops = {
        .notify_queue = vdrv_transport_notify_queue,
        .notify_config = vdrv_transport_notify_config,
    };
    return &ops;
}

/* ---- guest memory ---- */

/* size bytes aligned to align (a power of 2), zeroed; 0 when out of memory. */
static inline uint64_t vdrv_alloc(struct vdrv *drv, uint64_t size, uint64_t align)
{
    uint64_t a = (drv->heap_next + align - 1) & ~(align - 1);
    if (a < drv->heap_next || a > drv->heap_end || size > drv->heap_end - a)
        return 0;
    drv->heap_next = a + size;
    void *p = gmem_ptr(drv->mem, a, size);
    if (!p)
        return 0;
    memset(p, 0, size);
    return a;
}

static inline void *vdrv_ptr(struct vdrv *drv, uint64_t gpa, uint64_t len)
{
    return gmem_ptr(drv->mem, gpa, len);
}

/* A guest buffer holding a copy of data; 0 when out of memory. */
static inline uint64_t vdrv_alloc_copy(struct vdrv *drv, const void *data, uint64_t len)
{
    uint64_t gpa = vdrv_alloc(drv, len ? len : 1, 8);
    if (gpa && len)
        memcpy(vdrv_ptr(drv, gpa, len), data, len);
    return gpa;
}

/* ---- ring words ---- */

static inline uint16_t *vdrv_avail_word(struct vdrv *drv, unsigned q, unsigned off)
{
    return vdrv_ptr(drv, drv->q[q].avail_gpa + off, 2);
}

static inline uint16_t *vdrv_used_word(struct vdrv *drv, unsigned q, unsigned off)
{
    return vdrv_ptr(drv, drv->q[q].used_gpa + off, 2);
}

/* used_event: after avail->ring[size]; avail_event: after used->ring[size]. */
static inline uint16_t *vdrv_used_event(struct vdrv *drv, unsigned q)
{
    return vdrv_avail_word(drv, q, 4 + 2u * drv->q[q].size);
}

static inline uint16_t *vdrv_avail_event(struct vdrv *drv, unsigned q)
{
    return vdrv_used_word(drv, q, 4 + 8u * drv->q[q].size);
}

/* Raw descriptor access for hostile tests. */
static inline void vdrv_desc_write(struct vdrv *drv, unsigned q, unsigned i, uint64_t addr,
                                   uint32_t len, uint16_t flags, uint16_t next)
{
    struct virtq_desc d = { addr, len, flags, next };
    memcpy(vdrv_ptr(drv, drv->q[q].desc_gpa + 16ULL * i, 16), &d, 16);
}

/* Publish a raw head in the avail ring (no descriptor bookkeeping). */
static inline void vdrv_avail_push_raw(struct vdrv *drv, unsigned q, uint16_t head)
{
    struct vdrv_queue *vq = &drv->q[q];
    *vdrv_avail_word(drv, q, 4 + 2u * (vq->avail_idx & (vq->size - 1u))) = head;
    vq->avail_idx++;
    /* Release: the ring entry (and the descriptors) before the index. */
    __atomic_store_n(vdrv_avail_word(drv, q, 2), vq->avail_idx, __ATOMIC_RELEASE);
}

/* Set avail->idx to anything (hostile: jump by more than the size). */
static inline void vdrv_avail_set_idx(struct vdrv *drv, unsigned q, uint16_t idx)
{
    drv->q[q].avail_idx = idx;
    __atomic_store_n(vdrv_avail_word(drv, q, 2), idx, __ATOMIC_RELEASE);
}

/* ---- initialization (§3.1.1) ---- */

static inline void vdrv_status_or(struct vdrv *drv, uint8_t bits)
{
    struct virtio_dev *vd = drv->vd;
    pthread_mutex_lock(&vd->lock);
    virtio_set_status(vd, virtio_get_status(vd) | bits);
    pthread_mutex_unlock(&vd->lock);
}

/* Attach to vd (already virtio_dev_init'ed) as driver and transport. */
static inline void vdrv_attach(struct vdrv *drv, struct virtio_dev *vd)
{
    memset(drv, 0, sizeof *drv);
    drv->vd = vd;
    drv->mem = vd->mem;
    drv->heap_next = VDRV_HEAP_BASE;
    drv->heap_end = vd->mem->regions[0].gpa + vd->mem->regions[0].size;
    vd->transport = vdrv_transport_ops();
    vd->transport_opaque = drv;
}

/* Reset, ACKNOWLEDGE, DRIVER, write features, FEATURES_OK and read it back.
 * 0, or -EIO when the device refused the features (FEATURES_OK did not
 * stick). */
static inline int vdrv_negotiate(struct vdrv *drv, uint64_t features)
{
    struct virtio_dev *vd = drv->vd;
    pthread_mutex_lock(&vd->lock);
    virtio_set_status(vd, 0);
    pthread_mutex_unlock(&vd->lock);
    vdrv_status_or(drv, VIRTIO_STATUS_ACKNOWLEDGE);
    vdrv_status_or(drv, VIRTIO_STATUS_DRIVER);
    pthread_mutex_lock(&vd->lock);
    virtio_set_driver_features(vd, 0, (uint32_t)features);
    virtio_set_driver_features(vd, 1, (uint32_t)(features >> 32));
    pthread_mutex_unlock(&vd->lock);
    drv->features = features;
    vdrv_status_or(drv, VIRTIO_STATUS_FEATURES_OK);
    return (virtio_get_status(vd) & VIRTIO_STATUS_FEATURES_OK) ? 0 : -EIO;
}

/* Allocate queue q's rings (size entries, 0 = the device maximum) and an
 * indirect-table area, program them the way a transport would and set the
 * queue ready. 0 or -errno. */
static inline int vdrv_setup_queue(struct vdrv *drv, unsigned q, uint16_t size)
{
    struct virtio_dev *vd = drv->vd;
    if (q >= vd->num_queues)
        return -EINVAL;
    struct virtq *vvq = &vd->vqs[q];
    if (size == 0)
        size = vvq->max_size;
    struct vdrv_queue *vq = &drv->q[q];
    free(vq->next);
    free(vq->chain_len);
    memset(vq, 0, sizeof *vq);
    vq->size = size;
    vq->desc_gpa = vdrv_alloc(drv, VIRTQ_DESC_BYTES(size), 16);
    vq->avail_gpa = vdrv_alloc(drv, VIRTQ_AVAIL_BYTES(size), 2);
    vq->used_gpa = vdrv_alloc(drv, VIRTQ_USED_BYTES(size), 4096);
    vq->indirect_gpa = vdrv_alloc(drv, (uint64_t)size * 16 * VDRV_MAX_INDIRECT, 16);
    vq->next = calloc(size, sizeof *vq->next);
    vq->chain_len = calloc(size, sizeof *vq->chain_len);
    if (!vq->desc_gpa || !vq->avail_gpa || !vq->used_gpa || !vq->indirect_gpa || !vq->next ||
        !vq->chain_len)
        return -ENOMEM;
    for (unsigned i = 0; i < size; i++)
        vq->next[i] = (uint16_t)(i + 1);
    vq->num_free = size;
    pthread_mutex_lock(&vd->lock);
    vvq->s.size = size;
    vvq->s.desc_gpa = vq->desc_gpa;
    vvq->s.avail_gpa = vq->avail_gpa;
    vvq->s.used_gpa = vq->used_gpa;
    int rc = virtq_check_config(vvq);
    if (rc == 0)
        vvq->s.ready = true;
    pthread_mutex_unlock(&vd->lock);
    vq->set_up = rc == 0;
    return rc;
}

/* Start queue q at index idx (as if restored after many requests): both
 * sides' avail/used indices. Before DRIVER_OK or while the device idles. */
static inline void vdrv_set_start_idx(struct vdrv *drv, unsigned q, uint16_t idx)
{
    struct vdrv_queue *vq = &drv->q[q];
    vq->avail_idx = vq->kicked_idx = vq->last_used_idx = idx;
    *vdrv_avail_word(drv, q, 2) = idx;
    *vdrv_used_word(drv, q, 2) = idx;
    *vdrv_used_event(drv, q) = idx;
    *vdrv_avail_event(drv, q) = idx;
    struct virtq_state *s = &drv->vd->vqs[q].s;
    s->last_avail_idx = s->used_idx = idx;
}

/* DRIVER_OK; 0, or -EIO if the device is not running afterwards. */
static inline int vdrv_driver_ok(struct vdrv *drv)
{
    vdrv_status_or(drv, VIRTIO_STATUS_DRIVER_OK);
    uint8_t st = virtio_get_status(drv->vd);
    return (st & VIRTIO_STATUS_DRIVER_OK) && !(st & VIRTIO_STATUS_NEEDS_RESET) ? 0 : -EIO;
}

/* The whole §3.1.1 sequence with every queue at its maximum size. */
static inline int vdrv_init(struct vdrv *drv, struct virtio_dev *vd, uint64_t features)
{
    vdrv_attach(drv, vd);
    int rc = vdrv_negotiate(drv, features);
    for (unsigned q = 0; rc == 0 && q < vd->num_queues; q++)
        rc = vdrv_setup_queue(drv, q, 0);
    if (rc == 0)
        rc = vdrv_driver_ok(drv);
    return rc;
}

static inline void vdrv_destroy(struct vdrv *drv)
{
    for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++) {
        free(drv->q[q].next);
        free(drv->q[q].chain_len);
        drv->q[q].next = drv->q[q].chain_len = NULL;
    }
}

/* ---- requests ---- */

/* Add a chain: out (device-readable) buffers then in (device-writable) ones,
 * directly in the descriptor table or, with indirect, through one indirect
 * table (at most VDRV_MAX_INDIRECT buffers). The chain is published
 * (avail->idx moves) but not kicked. Returns the head (the id the used
 * entry will carry) or -ENOSPC / -EINVAL. */
static inline int vdrv_add_chain_ex(struct vdrv *drv, unsigned q, const struct vdrv_sg *out,
                                    unsigned out_n, const struct vdrv_sg *in, unsigned in_n,
                                    bool indirect)
{
    struct vdrv_queue *vq = &drv->q[q];
    unsigned n = out_n + in_n;
    if (!vq->set_up || n == 0 || (indirect && n > VDRV_MAX_INDIRECT))
        return -EINVAL;
    unsigned need = indirect ? 1 : n;
    if (need > vq->num_free)
        return -ENOSPC;
    uint16_t head = vq->free_head, i = head;
    if (indirect) {
        uint64_t table = vq->indirect_gpa + (uint64_t)head * 16 * VDRV_MAX_INDIRECT;
        for (unsigned k = 0; k < n; k++) {
            const struct vdrv_sg *sg = k < out_n ? &out[k] : &in[k - out_n];
            struct virtq_desc d = {
                sg->gpa, sg->len,
                (uint16_t)((k >= out_n ? VIRTQ_DESC_F_WRITE : 0) |
                           (k + 1 < n ? VIRTQ_DESC_F_NEXT : 0)),
                (uint16_t)(k + 1 < n ? k + 1 : 0),
            };
            memcpy(vdrv_ptr(drv, table + 16ULL * k, 16), &d, 16);
        }
        vdrv_desc_write(drv, q, head, table, 16 * n, VIRTQ_DESC_F_INDIRECT, 0);
        i = vq->next[head];
    } else {
        for (unsigned k = 0; k < n; k++) {
            const struct vdrv_sg *sg = k < out_n ? &out[k] : &in[k - out_n];
            bool more = k + 1 < n;
            vdrv_desc_write(drv, q, i, sg->gpa, sg->len,
                            (uint16_t)((k >= out_n ? VIRTQ_DESC_F_WRITE : 0) |
                                       (more ? VIRTQ_DESC_F_NEXT : 0)),
                            more ? vq->next[i] : 0);
            i = vq->next[i];
        }
    }
    vq->free_head = i;
    vq->num_free = (uint16_t)(vq->num_free - need);
    vq->chain_len[head] = (uint16_t)need;
    vdrv_avail_push_raw(drv, q, head);
    return head;
}

static inline int vdrv_add_chain(struct vdrv *drv, unsigned q, const struct vdrv_sg *out,
                                 unsigned out_n, const struct vdrv_sg *in, unsigned in_n)
{
    return vdrv_add_chain_ex(drv, q, out, out_n, in, in_n, false);
}

static inline int vdrv_add_chain_indirect(struct vdrv *drv, unsigned q,
                                          const struct vdrv_sg *out, unsigned out_n,
                                          const struct vdrv_sg *in, unsigned in_n)
{
    return vdrv_add_chain_ex(drv, q, out, out_n, in, in_n, true);
}

/* §2.7.10 from the driver's side: does the device want a kick for what was
 * added since the last decision? */
static inline bool vdrv_kick_needed(struct vdrv *drv, unsigned q)
{
    struct vdrv_queue *vq = &drv->q[q];
    /* Full fence: our avail->idx store before the load of the device's
     * suppression word (the device does store word / fence / load idx). */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    uint16_t old = vq->kicked_idx, now = vq->avail_idx;
    vq->kicked_idx = now;
    if (drv->features & (1ULL << VIRTIO_F_EVENT_IDX)) {
        uint16_t ev = __atomic_load_n(vdrv_avail_event(drv, q), __ATOMIC_RELAXED);
        return (uint16_t)(now - ev - 1) < (uint16_t)(now - old);
    }
    return !(__atomic_load_n(vdrv_used_word(drv, q, 0), __ATOMIC_RELAXED) &
             VIRTQ_USED_F_NO_NOTIFY);
}

/* Kick if the device wants it (then ops->queue_notify runs the device, here,
 * synchronously). Returns whether it kicked. */
static inline bool vdrv_kick(struct vdrv *drv, unsigned q)
{
    if (!vdrv_kick_needed(drv, q)) {
        drv->q[q].kicks_suppressed++;
        return false;
    }
    drv->q[q].kicks++;
    if (drv->vd->ops->queue_notify)
        drv->vd->ops->queue_notify(drv->vd, q);
    return true;
}

/* Kick whatever the device asked for. */
static inline void vdrv_kick_force(struct vdrv *drv, unsigned q)
{
    drv->q[q].kicked_idx = drv->q[q].avail_idx;
    drv->q[q].kicks++;
    if (drv->vd->ops->queue_notify)
        drv->vd->ops->queue_notify(drv->vd, q);
}

/* Harvest one used entry: 1 (id, len set, the chain's descriptors freed),
 * 0 (none), -EPROTO (the device returned an id that is not in flight). */
static inline int vdrv_get_used(struct vdrv *drv, unsigned q, uint16_t *id, uint32_t *len)
{
    struct vdrv_queue *vq = &drv->q[q];
    /* Acquire: the device wrote the element before the index (release). */
    uint16_t used_idx = __atomic_load_n(vdrv_used_word(drv, q, 2), __ATOMIC_ACQUIRE);
    if (used_idx == vq->last_used_idx)
        return 0;
    unsigned slot = vq->last_used_idx & (vq->size - 1u);
    uint32_t e[2];
    memcpy(e, vdrv_ptr(drv, vq->used_gpa + 4 + 8ULL * slot, 8), 8);
    vq->last_used_idx++;
    if (e[0] >= vq->size || vq->chain_len[e[0]] == 0)
        return -EPROTO;
    uint16_t head = (uint16_t)e[0], i = head;
    for (unsigned k = 1; k < vq->chain_len[head]; k++)
        i = vq->next[i];
    vq->next[i] = vq->free_head;
    vq->free_head = head;
    vq->num_free = (uint16_t)(vq->num_free + vq->chain_len[head]);
    vq->chain_len[head] = 0;
    /* With EVENT_IDX, ask for an interrupt at the next used entry unless
     * callbacks are disabled (what Linux's virtqueue_get_buf does). */
    if ((drv->features & (1ULL << VIRTIO_F_EVENT_IDX)) && !vq->cb_disabled)
        __atomic_store_n(vdrv_used_event(drv, q), vq->last_used_idx, __ATOMIC_RELAXED);
    *id = head;
    *len = e[1];
    return 1;
}

/* vdrv_get_used, polling up to timeout_ms for devices with I/O threads. */
static inline int vdrv_wait_used(struct vdrv *drv, unsigned q, uint16_t *id, uint32_t *len,
                                 unsigned timeout_ms)
{
    for (unsigned waited = 0;; waited++) {
        int rc = vdrv_get_used(drv, q, id, len);
        if (rc != 0 || waited >= timeout_ms)
            return rc;
        struct timespec ts = { 0, 1000000 };
        nanosleep(&ts, NULL);
    }
}

/* Used-buffer notification suppression from the driver's side (§2.7.7). */
static inline void vdrv_set_used_event(struct vdrv *drv, unsigned q, uint16_t idx)
{
    __atomic_store_n(vdrv_used_event(drv, q), idx, __ATOMIC_RELAXED);
}

static inline void vdrv_disable_cb(struct vdrv *drv, unsigned q)
{
    drv->q[q].cb_disabled = true;
    if (!(drv->features & (1ULL << VIRTIO_F_EVENT_IDX)))
        __atomic_store_n(vdrv_avail_word(drv, q, 0), (uint16_t)VIRTQ_AVAIL_F_NO_INTERRUPT,
                         __ATOMIC_RELAXED);
}

/* Re-enable; returns true if used entries are already pending (harvest them:
 * their interrupt may have been suppressed). */
static inline bool vdrv_enable_cb(struct vdrv *drv, unsigned q)
{
    struct vdrv_queue *vq = &drv->q[q];
    vq->cb_disabled = false;
    if (drv->features & (1ULL << VIRTIO_F_EVENT_IDX))
        vdrv_set_used_event(drv, q, vq->last_used_idx);
    else
        __atomic_store_n(vdrv_avail_word(drv, q, 0), (uint16_t)0, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    return __atomic_load_n(vdrv_used_word(drv, q, 2), __ATOMIC_ACQUIRE) != vq->last_used_idx;
}

/* Reset and run the §3.1.1 sequence again on the same device (a driver
 * recovering from NEEDS_RESET, or re-probing): like vdrv_init, but the
 * queues' host-side bookkeeping is freed first (vdrv_init would leak it)
 * and the guest heap keeps going (buffers allocated before stay valid and
 * are not overlapped by the new rings). */
static inline int vdrv_reinit(struct vdrv *drv, uint64_t features)
{
    struct virtio_dev *vd = drv->vd;
    uint64_t heap_next = drv->heap_next;
    vdrv_destroy(drv);
    vdrv_attach(drv, vd);
    drv->heap_next = heap_next;
    int rc = vdrv_negotiate(drv, features);
    for (unsigned q = 0; rc == 0 && q < vd->num_queues; q++)
        rc = vdrv_setup_queue(drv, q, 0);
    if (rc == 0)
        rc = vdrv_driver_ok(drv);
    return rc;
}

#endif
