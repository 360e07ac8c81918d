/* The transport-independent virtio device core (virtio 1.2 §2.1 status,
 * §2.2 feature bits, §3.1 device initialization). See virtio.h.
 *
 * Concurrency: the status byte is written by the transport (vCPU thread,
 * vd->lock held) and by virtio_dev_set_needs_reset (any thread, no lock:
 * the I/O thread must never wait for vd->lock, since ops->reset runs under
 * it and waits for the I/O thread). So every access to s.status is an
 * __atomic operation, and driver writes only OR bits in, never a
 * read-modify-store that could lose a concurrent NEEDS_RESET. */
#include "hw/virtio/virtio.h"

#include <errno.h>
#include <string.h>

#define DRIVER_STATUS_BITS (VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | \
                            VIRTIO_STATUS_DRIVER_OK | VIRTIO_STATUS_FEATURES_OK | \
                            VIRTIO_STATUS_FAILED)

static inline uint64_t bit64(unsigned bit)
{
    return bit < 64 ? 1ULL << bit : 0;
}

uint8_t virtio_get_status(const struct virtio_dev *vd)
{
    return __atomic_load_n(&vd->s.status, __ATOMIC_ACQUIRE);
}

static void status_or(struct virtio_dev *vd, uint8_t bits)
{
    __atomic_fetch_or(&vd->s.status, bits, __ATOMIC_ACQ_REL);
}

int virtio_dev_init(struct virtio_dev *vd, const struct virtio_device_ops *ops, void *opaque,
                    struct guest_mem *mem)
{
    memset(vd, 0, sizeof *vd);
    uint16_t max = ops->queue_max_size;
    if (ops->num_queues > VIRTIO_MAX_QUEUES || max == 0 || (max & (max - 1)) != 0 ||
        max > VIRTQ_MAX_SIZE)
        return -EINVAL;
    vd->ops = ops;
    vd->opaque = opaque;
    vd->mem = mem;
    vd->num_queues = ops->num_queues;
    /* Ring features are implemented here, VERSION_1 by every modern device
     * (§6.1); the legacy interface simply cannot see bit 32. */
    uint64_t dev = ops->features ? ops->features(vd) : 0;
    vd->device_features = dev | bit64(VIRTIO_F_VERSION_1) | bit64(VIRTIO_F_INDIRECT_DESC) |
                          bit64(VIRTIO_F_EVENT_IDX);
    for (unsigned i = 0; i < vd->num_queues; i++)
        virtq_init(&vd->vqs[i], mem, max);
    vd->s.config_msix_vector = VIRTIO_MSI_NO_VECTOR;
    vd->rl = (struct log_ratelimit)LOG_RATELIMIT_INIT;
    vd->rl_broken = (struct log_ratelimit)LOG_RATELIMIT_INIT;
    int rc = pthread_mutex_init(&vd->lock, NULL);
    if (rc != 0)
        return -rc;
    return 0;
}

void virtio_dev_destroy(struct virtio_dev *vd)
{
    if (vd->ops)
        pthread_mutex_destroy(&vd->lock);
    vd->ops = NULL;
}

bool virtio_has_feature(const struct virtio_dev *vd, unsigned bit)
{
    return (vd->s.driver_features & vd->device_features & bit64(bit)) != 0;
}

void virtio_set_driver_features(struct virtio_dev *vd, unsigned word, uint32_t value)
{
    /* §3.1.1: features are fixed once FEATURES_OK is set. */
    if (virtio_get_status(vd) & VIRTIO_STATUS_FEATURES_OK)
        return;
    if (word > 1)
        return;
    unsigned shift = 32 * word;
    vd->s.driver_features = (vd->s.driver_features & ~(0xffffffffULL << shift)) |
                            ((uint64_t)value << shift);
}

void virtio_reset(struct virtio_dev *vd)
{
    /* Stop the device first: its I/O thread must be idle before the queues
     * it walks are cleared under it. */
    if (vd->ops->reset)
        vd->ops->reset(vd);
    for (unsigned i = 0; i < vd->num_queues; i++)
        virtq_reset(&vd->vqs[i]);
    /* `legacy` belongs to the transport (which interface the driver uses)
     * and survives; config_generation keeps counting so a driver never sees
     * an old generation value again. */
    bool legacy = vd->s.legacy;
    uint32_t gen = __atomic_load_n(&vd->s.config_generation, __ATOMIC_RELAXED);
    memset(&vd->s, 0, sizeof vd->s);
    vd->s.legacy = legacy;
    vd->s.config_generation = gen;
    vd->s.config_msix_vector = VIRTIO_MSI_NO_VECTOR;
    __atomic_store_n(&vd->s.status, 0, __ATOMIC_RELEASE);
}

void virtio_dev_set_needs_reset(struct virtio_dev *vd, const char *why)
{
    uint8_t old = __atomic_fetch_or(&vd->s.status, VIRTIO_STATUS_NEEDS_RESET, __ATOMIC_ACQ_REL);
    if (old & VIRTIO_STATUS_NEEDS_RESET)
        return;     /* already broken: one message, one notification */
    /* Only the caller that set the bit gets here, and reset (which clears
     * it) first stops the I/O thread: rl_broken has one user at a time. */
    log_ratelimited(&vd->rl_broken, LOG_WARN, "%s: device needs reset: %s",
                    vd->ops->name ? vd->ops->name : "virtio", why ? why : "device error");
    /* §2.1.2: after DRIVER_OK, NEEDS_RESET comes with a configuration
     * change notification. */
    if (old & VIRTIO_STATUS_DRIVER_OK)
        virtio_notify_config(vd);
}

/* FEATURES_OK (§3.1.1 step 5, §2.2.1): accept only a subset of what we
 * offered; a modern driver must accept VERSION_1 (§6.1). */
static bool features_acceptable(const struct virtio_dev *vd)
{
    uint64_t f = vd->s.driver_features;
    if (f & ~vd->device_features)
        return false;
    if (!vd->s.legacy && !(f & bit64(VIRTIO_F_VERSION_1)))
        return false;
    return true;
}

static void driver_ok(struct virtio_dev *vd)
{
    if (vd->s.legacy) {
        /* Legacy drivers have no FEATURES_OK step: the features in effect
         * are what they wrote, limited to what we offered. */
        vd->s.driver_features &= vd->device_features;
    }
    bool ev = virtio_has_feature(vd, VIRTIO_F_EVENT_IDX);
    bool ind = virtio_has_feature(vd, VIRTIO_F_INDIRECT_DESC);
    for (unsigned i = 0; i < vd->num_queues; i++) {
        struct virtq *vq = &vd->vqs[i];
        vq->event_idx = ev;
        vq->indirect = ind;
        if (vq->s.ready && virtq_check_config(vq) < 0) {
            status_or(vd, VIRTIO_STATUS_DRIVER_OK);
            virtio_dev_set_needs_reset(vd, vq->error);
            return;
        }
    }
    /* Set DRIVER_OK before activate: the device may start using the queues
     * (and notifying) from inside activate or right after. */
    status_or(vd, VIRTIO_STATUS_DRIVER_OK);
    if (vd->ops->activate) {
        int rc = vd->ops->activate(vd);
        if (rc < 0)
            virtio_dev_set_needs_reset(vd, "activation failed");
    }
}

void virtio_set_status(struct virtio_dev *vd, uint8_t status)
{
    if (status == 0) {
        virtio_reset(vd);
        return;
    }
    uint8_t old = virtio_get_status(vd);
    uint8_t old_drv = old & DRIVER_STATUS_BITS;
    uint8_t want = status & DRIVER_STATUS_BITS;   /* NEEDS_RESET is ours, not the driver's */
    const char *name = vd->ops->name ? vd->ops->name : "virtio";
    if (old_drv & ~want) {
        /* §2.1.1: the driver MUST NOT clear a status bit (only reset). */
        log_ratelimited(&vd->rl, LOG_WARN, "%s: driver cleared status bits 0x%x -> 0x%x; ignored",
                        name, old_drv, want);
        return;
    }
    uint8_t add = want & ~old_drv;

    if (add & VIRTIO_STATUS_FEATURES_OK) {
        if (!(want & VIRTIO_STATUS_DRIVER) || !features_acceptable(vd)) {
            /* §3.1.1 step 6: refused by not keeping the bit; the driver
             * re-reads the status and gives up. */
            log_ratelimited(&vd->rl, LOG_INFO,
                            "%s: FEATURES_OK refused (driver features 0x%llx, offered 0x%llx%s)",
                            name, (unsigned long long)vd->s.driver_features,
                            (unsigned long long)vd->device_features,
                            vd->s.legacy ? ", legacy" : "");
            add &= (uint8_t)~(VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
        }
    }
    bool features_ok = (old_drv | add) & VIRTIO_STATUS_FEATURES_OK;
    if ((add & VIRTIO_STATUS_DRIVER_OK) && !vd->s.legacy && !features_ok) {
        log_ratelimited(&vd->rl, LOG_WARN, "%s: DRIVER_OK without FEATURES_OK; ignored", name);
        add &= (uint8_t)~VIRTIO_STATUS_DRIVER_OK;
    }
    uint8_t do_driver_ok = add & VIRTIO_STATUS_DRIVER_OK;
    status_or(vd, add & (uint8_t)~VIRTIO_STATUS_DRIVER_OK);
    /* FAILED (§2.1): the driver gave up; recorded, nothing else to do. */
    if (do_driver_ok && !(old & VIRTIO_STATUS_NEEDS_RESET))
        driver_ok(vd);
    else if (do_driver_ok)
        status_or(vd, VIRTIO_STATUS_DRIVER_OK);   /* broken already: no activate */
}

static bool running(const struct virtio_dev *vd)
{
    uint8_t st = virtio_get_status(vd);
    return (st & VIRTIO_STATUS_DRIVER_OK) && !(st & VIRTIO_STATUS_NEEDS_RESET);
}

int virtio_queue_pop(struct virtio_dev *vd, unsigned q, struct virtq_elem *elem)
{
    /* Not 0 here: a device loop that re-enables notifications and sees
     * buffers pending would pop again, forever. */
    if (q >= vd->num_queues || !running(vd))
        return -EIO;
    int rc = virtq_pop(&vd->vqs[q], elem);
    if (rc < 0)
        virtio_dev_set_needs_reset(vd, vd->vqs[q].error);
    return rc;
}

bool virtio_queue_set_notification(struct virtio_dev *vd, unsigned q, bool enable)
{
    if (q >= vd->num_queues)
        return false;
    bool pending = virtq_set_notification(&vd->vqs[q], enable);
    return pending && running(vd);
}

int virtio_queue_push(struct virtio_dev *vd, unsigned q, const struct virtq_elem *elem,
                      uint32_t written)
{
    if (q >= vd->num_queues)
        return -EINVAL;
    int rc = virtq_push(&vd->vqs[q], elem, written);
    if (rc < 0)
        virtio_dev_set_needs_reset(vd, vd->vqs[q].error);
    return rc;
}

void virtio_notify(struct virtio_dev *vd, unsigned q)
{
    /* §2.1.2 / §3.1: no used-buffer notifications before DRIVER_OK. */
    if (q >= vd->num_queues || !(virtio_get_status(vd) & VIRTIO_STATUS_DRIVER_OK))
        return;
    if (virtq_should_notify(&vd->vqs[q]) && vd->transport && vd->transport->notify_queue)
        vd->transport->notify_queue(vd, q);
}

void virtio_notify_config(struct virtio_dev *vd)
{
    /* §4.1.4.3: config_generation changes whenever the config may have;
     * the driver re-reads until it is stable. */
    __atomic_fetch_add(&vd->s.config_generation, 1, __ATOMIC_ACQ_REL);
    if ((virtio_get_status(vd) & VIRTIO_STATUS_DRIVER_OK) && vd->transport &&
        vd->transport->notify_config)
        vd->transport->notify_config(vd);
}
