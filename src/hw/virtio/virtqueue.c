/* Split virtqueues, the device side (virtio 1.2 §2.7). See virtqueue.h.
 *
 * Memory ordering with the driver (another CPU writing the same guest RAM):
 *  - avail: the driver writes ring[] then avail->idx (§2.7.13.2). We load
 *    avail->idx with acquire before reading ring[] and the descriptors, so
 *    we never see an index before the entries it covers.
 *  - used: we write the used element, then used->idx with release
 *    (§2.7.14), so the driver never sees the index before the element.
 *  - suppression (§2.7.7, §2.7.10): each side stores (its idx / our
 *    flags-or-event word) and then loads the other side's word. A store
 *    followed by a load to a different address may be reordered even on
 *    x86, so a full (seq_cst) fence sits between them on our side; the
 *    driver has its own. Without it an interrupt or a kick can be lost.
 * Shared words are accessed with __atomic builtins (relaxed unless stated);
 * descriptors are copied out with one memcpy each and only the copy is
 * used, so a driver rewriting a descriptor under us cannot make a checked
 * value differ from the used one. */
#include "hw/virtio/virtqueue.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

/* Ring word offsets (§2.7.6, §2.7.8). */
#define AVAIL_FLAGS 0
#define AVAIL_IDX   2
#define AVAIL_RING  4
#define USED_FLAGS  0
#define USED_IDX    2
#define USED_RING   4

struct rings {
    uint8_t *desc;      /* 16 * size bytes, 16-aligned */
    uint8_t *avail;     /* 6 + 2 * size, 2-aligned */
    uint8_t *used;      /* 6 + 8 * size, 4-aligned */
};

static inline uint16_t *avail_word(const struct rings *r, unsigned off)
{
    return (uint16_t *)(void *)(r->avail + off);
}

static inline uint16_t *used_word(const struct rings *r, unsigned off)
{
    return (uint16_t *)(void *)(r->used + off);
}

/* used_event: the word after avail->ring[size] (§2.7.6). */
static inline uint16_t *used_event_word(const struct virtq *vq, const struct rings *r)
{
    return avail_word(r, AVAIL_RING + 2u * vq->s.size);
}

/* avail_event: the word after used->ring[size] (§2.7.8). */
static inline uint16_t *avail_event_word(const struct virtq *vq, const struct rings *r)
{
    return used_word(r, USED_RING + 8u * vq->s.size);
}

static int fail(struct virtq *vq, const char *why)
{
    vq->error = why;
    return -EINVAL;
}

static bool size_ok(const struct virtq *vq, uint16_t size)
{
    /* Split rings: a power of 2 (§2.7), at most what the device offered. */
    return size != 0 && (size & (size - 1)) == 0 && size <= vq->max_size;
}

/* Resolve the three rings to host pointers, checking everything: a restored
 * or racing configuration is re-validated on every use (gmem_ptr is a loop
 * over two regions: cheap). Host alignment follows guest alignment because
 * RAM regions are page aligned on the host. */
static int rings_get(struct virtq *vq, struct rings *r)
{
    const struct virtq_state *s = &vq->s;
    if (!size_ok(vq, s->size))
        return fail(vq, "queue size not a power of 2 or above the maximum");
    if (s->desc_gpa % 16 || s->avail_gpa % 2 || s->used_gpa % 4)
        return fail(vq, "misaligned ring address (§2.7: desc 16, avail 2, used 4)");
    r->desc = gmem_ptr(vq->mem, s->desc_gpa, VIRTQ_DESC_BYTES(s->size));
    r->avail = gmem_ptr(vq->mem, s->avail_gpa, VIRTQ_AVAIL_BYTES(s->size));
    r->used = gmem_ptr(vq->mem, s->used_gpa, VIRTQ_USED_BYTES(s->size));
    if (!r->desc || !r->avail || !r->used)
        return fail(vq, "ring outside guest RAM");
    if ((uintptr_t)r->desc % 8 || (uintptr_t)r->avail % 2 || (uintptr_t)r->used % 4)
        return fail(vq, "ring misaligned on the host");
    return 0;
}

void virtq_init(struct virtq *vq, struct guest_mem *mem, uint16_t max_size)
{
    memset(vq, 0, sizeof *vq);
    vq->mem = mem;
    vq->max_size = max_size;
    virtq_reset(vq);
}

void virtq_reset(struct virtq *vq)
{
    memset(&vq->s, 0, sizeof vq->s);
    vq->s.size = vq->max_size;
    vq->s.msix_vector = VIRTIO_MSI_NO_VECTOR;
    vq->event_idx = false;
    vq->indirect = false;
    vq->error = NULL;
}

int virtq_check_config(struct virtq *vq)
{
    struct rings r;
    return rings_get(vq, &r);
}

static void desc_read(struct virtq_desc *d, const uint8_t *table, unsigned i)
{
    /* One copy; the driver may be scribbling on the table (it must not, but
     * it is hostile): everything below looks only at *d. */
    memcpy(d, table + 16u * i, sizeof *d);
}

/* Add one (non-indirect) descriptor's buffer to elem. */
static int elem_add(struct virtq *vq, struct virtq_elem *elem, const struct virtq_desc *d,
                    bool *seen_write)
{
    bool write = d->flags & VIRTQ_DESC_F_WRITE;
    /* §2.7.4.2: the driver MUST place device-writable descriptors after
     * the device-readable ones. */
    if (!write && *seen_write)
        return fail(vq, "readable descriptor after a writable one");
    if (write)
        *seen_write = true;
    if (d->len == 0)
        return 0;       /* nothing to transfer: no iovec, address unused */
    if (elem->out_num + elem->in_num >= VIRTQ_MAX_CHAIN)
        return fail(vq, "descriptor chain has too many buffers");
    /* gmem_ptr refuses overflow, ranges past RAM, in the PCI hole and
     * spanning two regions (not contiguous on the guest side anyway). */
    void *p = gmem_ptr(vq->mem, d->addr, d->len);
    if (!p)
        return fail(vq, "descriptor buffer outside guest RAM");
    struct iovec *iov = &elem->iov[elem->out_num + elem->in_num];
    iov->iov_base = p;
    iov->iov_len = d->len;
    if (write) {
        elem->in_num++;
        elem->in_len += d->len;
    } else {
        elem->out_num++;
        elem->out_len += d->len;
    }
    return 0;
}

/* Walk an indirect table (§2.7.5.3): d is the descriptor that refers to it. */
static int walk_indirect(struct virtq *vq, struct virtq_elem *elem, const struct virtq_desc *d,
                         bool *seen_write)
{
    /* §2.7.5.3.1: only when negotiated; not combined with NEXT. The WRITE
     * flag of the referring descriptor is ignored (device requirement). */
    if (!vq->indirect)
        return fail(vq, "indirect descriptor without VIRTIO_F_INDIRECT_DESC");
    if (d->flags & VIRTQ_DESC_F_NEXT)
        return fail(vq, "indirect descriptor with NEXT set");
    if (d->len == 0 || d->len % 16 || d->len > VIRTQ_DESC_BYTES(VIRTQ_MAX_CHAIN))
        return fail(vq, "indirect table length not a non-zero multiple of 16 within limits");
    const uint8_t *table = gmem_ptr(vq->mem, d->addr, d->len);
    if (!table)
        return fail(vq, "indirect table outside guest RAM");
    unsigned n = d->len / 16, i = 0, count = 0;
    for (;;) {
        /* More steps than entries means a loop. */
        if (++count > n)
            return fail(vq, "loop in indirect descriptor table");
        struct virtq_desc e;
        desc_read(&e, table, i);
        if (e.flags & VIRTQ_DESC_F_INDIRECT)
            return fail(vq, "nested indirect descriptor");
        int rc = elem_add(vq, elem, &e, seen_write);
        if (rc < 0)
            return rc;
        if (!(e.flags & VIRTQ_DESC_F_NEXT))
            return 0;
        if (e.next >= n)
            return fail(vq, "indirect next index out of range");
        i = e.next;
    }
}

int virtq_pop(struct virtq *vq, struct virtq_elem *elem)
{
    struct virtq_state *s = &vq->s;
    if (!s->ready)
        return 0;
    struct rings r;
    int rc = rings_get(vq, &r);
    if (rc < 0)
        return rc;

    if (vq->event_idx && !s->notify_disabled) {
        /* §2.7.10: tell the driver which entry should make it kick next.
         * Store avail_event, full fence, then load avail->idx: paired with
         * the driver's store idx / fence / load avail_event, either we see
         * its new entry now or it sees our avail_event and kicks. */
        __atomic_store_n(avail_event_word(vq, &r), s->last_avail_idx, __ATOMIC_RELAXED);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
    }

    /* Acquire: the ring entries and descriptors the index covers are
     * visible once we see the index (§2.7.13). */
    uint16_t avail_idx = __atomic_load_n(avail_word(&r, AVAIL_IDX), __ATOMIC_ACQUIRE);
    uint16_t pending = (uint16_t)(avail_idx - s->last_avail_idx);
    if (pending == 0)
        return 0;
    if (pending > s->size)
        return fail(vq, "avail->idx moved by more than the queue size");

    unsigned slot = s->last_avail_idx & (s->size - 1u);
    uint16_t head = __atomic_load_n(avail_word(&r, AVAIL_RING + 2u * slot), __ATOMIC_RELAXED);
    if (head >= s->size)
        return fail(vq, "avail ring head index out of range");

    elem->head = head;
    elem->out_num = elem->in_num = 0;
    elem->out_len = elem->in_len = 0;

    /* §2.7.5.2: a chain is at most the queue size long; longer means a
     * loop (a->b->a) or a broken driver. */
    unsigned max = s->size < VIRTQ_MAX_CHAIN ? s->size : VIRTQ_MAX_CHAIN;
    unsigned i = head, count = 0;
    bool seen_write = false;
    for (;;) {
        if (++count > max)
            return fail(vq, "descriptor chain too long or looping");
        struct virtq_desc d;
        desc_read(&d, r.desc, i);
        if (d.flags & VIRTQ_DESC_F_INDIRECT) {
            /* Zero or more direct descriptors then one indirect one, which
             * ends the chain (it may not have NEXT). */
            rc = walk_indirect(vq, elem, &d, &seen_write);
            if (rc < 0)
                return rc;
            break;
        }
        rc = elem_add(vq, elem, &d, &seen_write);
        if (rc < 0)
            return rc;
        if (!(d.flags & VIRTQ_DESC_F_NEXT))
            break;
        if (d.next >= s->size)
            return fail(vq, "descriptor next index out of range");
        i = d.next;
    }
    s->last_avail_idx++;
    return 1;
}

void virtq_unpop(struct virtq *vq)
{
    vq->s.last_avail_idx--;
}

int virtq_push(struct virtq *vq, const struct virtq_elem *elem, uint32_t written)
{
    struct virtq_state *s = &vq->s;
    struct rings r;
    int rc = rings_get(vq, &r);
    if (rc < 0)
        return rc;
    if (elem->head >= s->size)
        return fail(vq, "pushed element head out of range");
    if (written > elem->in_len)
        written = (uint32_t)elem->in_len;
    unsigned slot = s->used_idx & (s->size - 1u);
    uint8_t *ue = r.used + USED_RING + 8u * slot;
    /* §2.7.8: id is the head of the chain, len the bytes written. */
    __atomic_store_n((uint32_t *)(void *)ue, (uint32_t)elem->head, __ATOMIC_RELAXED);
    __atomic_store_n((uint32_t *)(void *)(ue + 4), written, __ATOMIC_RELAXED);
    s->used_idx++;
    /* Release: the element is visible before the index (§2.7.14). */
    __atomic_store_n(used_word(&r, USED_IDX), s->used_idx, __ATOMIC_RELEASE);
    return 0;
}

/* §2.7.7.2 / the classic vring_need_event: interrupt if event_idx lies in
 * [old, new) modulo 2^16, i.e. the driver asked to hear about one of the
 * entries just published. */
static bool need_event(uint16_t event_idx, uint16_t new_idx, uint16_t old_idx)
{
    return (uint16_t)(new_idx - event_idx - 1) < (uint16_t)(new_idx - old_idx);
}

bool virtq_should_notify(struct virtq *vq)
{
    struct virtq_state *s = &vq->s;
    struct rings r;
    if (!s->ready || rings_get(vq, &r) < 0)
        return false;
    /* Full fence: our used->idx store (virtq_push) must be globally visible
     * before we read the driver's suppression word; the driver updates
     * that word, fences, then re-reads used->idx. Store->load ordering
     * needs more than release/acquire. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (!vq->event_idx) {
        uint16_t flags = __atomic_load_n(avail_word(&r, AVAIL_FLAGS), __ATOMIC_RELAXED);
        return !(flags & VIRTQ_AVAIL_F_NO_INTERRUPT);
    }
    /* §2.7.7.2 with EVENT_IDX: avail->flags is ignored. */
    uint16_t old = s->signalled_used, now = s->used_idx;
    bool valid = s->signalled_used_valid;
    uint16_t event = __atomic_load_n(used_event_word(vq, &r), __ATOMIC_RELAXED);
    bool notify = !valid || need_event(event, now, old);
    if (notify) {
        s->signalled_used = now;
        s->signalled_used_valid = true;
    }
    /* Not notifying keeps signalled_used where the last interrupt was, so
     * the window [old, now) keeps growing until it covers used_event. */
    return notify;
}

bool virtq_set_notification(struct virtq *vq, bool enable)
{
    struct virtq_state *s = &vq->s;
    struct rings r;
    s->notify_disabled = !enable;
    if (!s->ready || rings_get(vq, &r) < 0)
        return false;
    if (vq->event_idx) {
        /* §2.7.10: with EVENT_IDX the driver ignores used->flags; it kicks
         * when its idx passes avail_event. Disabling just stops moving
         * avail_event (virtq_pop moves it while enabled), which leaves it
         * behind the driver: no kicks until it wraps, a hint anyway. */
        if (enable)
            __atomic_store_n(avail_event_word(vq, &r), s->last_avail_idx, __ATOMIC_RELAXED);
    } else {
        __atomic_store_n(used_word(&r, USED_FLAGS),
                         (uint16_t)(enable ? 0 : VIRTQ_USED_F_NO_NOTIFY), __ATOMIC_RELAXED);
    }
    if (!enable)
        return false;
    /* The race: the driver may have added a buffer and read our old
     * "don't kick" word before the store above landed. Full fence between
     * our store and the re-read of avail->idx (the driver does store idx /
     * fence / load flags), then look: work that arrived is ours to poll. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    uint16_t avail_idx = __atomic_load_n(avail_word(&r, AVAIL_IDX), __ATOMIC_ACQUIRE);
    return avail_idx != s->last_avail_idx;
}
