/* The transport-independent part of a virtio device (virtio 1.2 §2, §3):
 * feature negotiation, the status state machine, the queues, config space
 * and the device's ops table. The transport (virtio_pci.c) maps registers
 * to these calls; device models (blk.c, console.c, rng.c) fill the ops.
 *
 * Threads: transport register accesses run on vCPU threads under vd->lock;
 * queue_notify runs on the device's I/O thread (woken by an ioeventfd, or
 * called directly in unit tests); virtio_notify (used-buffer interrupt) and
 * virtio_notify_config from any thread. */
#ifndef KVMBOX_VIRTIO_H
#define KVMBOX_VIRTIO_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/log.h"
#include "hw/virtio/virtqueue.h"

/* Device status bits (§2.1). */
#define VIRTIO_STATUS_ACKNOWLEDGE        1
#define VIRTIO_STATUS_DRIVER             2
#define VIRTIO_STATUS_DRIVER_OK          4
#define VIRTIO_STATUS_FEATURES_OK        8
#define VIRTIO_STATUS_NEEDS_RESET        0x40
#define VIRTIO_STATUS_FAILED             0x80

/* Transport/ring feature bits (§6). */
#define VIRTIO_F_INDIRECT_DESC   28
#define VIRTIO_F_EVENT_IDX       29
#define VIRTIO_F_VERSION_1       32
#define VIRTIO_F_ACCESS_PLATFORM 33

#define VIRTIO_MAX_QUEUES 64

struct virtio_dev;

struct virtio_device_ops {
    uint32_t device_id;             /* §5: 2 = block, 3 = console, 4 = entropy */
    const char *name;
    unsigned num_queues;            /* queues the device offers */
    uint16_t queue_max_size;
    uint32_t config_size;           /* bytes of device config space */
    uint64_t (*features)(struct virtio_dev *vd);           /* offered device bits */
    void (*config_read)(struct virtio_dev *vd, uint32_t off, void *data, unsigned len);
    void (*config_write)(struct virtio_dev *vd, uint32_t off, const void *data, unsigned len);
    /* DRIVER_OK set: start processing. 0 or -errno (then NEEDS_RESET). */
    int (*activate)(struct virtio_dev *vd);
    /* The driver kicked queue q (I/O thread). */
    void (*queue_notify)(struct virtio_dev *vd, unsigned q);
    /* Status written 0 or VM reset: stop, drop in-flight state. Called
     * with vd->lock held; must wait for its I/O thread work to stop. */
    void (*reset)(struct virtio_dev *vd);
};

/* What the transport provides to the core. */
struct virtio_transport_ops {
    /* Raise the queue's interrupt (MSI-X vector or INTx + ISR bit 0). */
    void (*notify_queue)(struct virtio_dev *vd, unsigned q);
    /* Config changed (ISR bit 1 / config vector). */
    void (*notify_config)(struct virtio_dev *vd);
};

/* Saveable device state (with the queues' virtq_state). */
struct virtio_dev_state {
    uint8_t status;                 /* __atomic access: see virtio.c */
    bool legacy;                    /* the transport's legacy interface is in use */
    uint64_t driver_features;
    uint32_t device_feature_select, driver_feature_select;
    uint16_t queue_select;
    uint8_t isr;
    uint16_t config_msix_vector;
    uint32_t config_generation;
};

/* Lifetime: virtio_dev_init() first (it zeroes the struct), then the
 * transport fills transport / transport_opaque (and s.legacy when a legacy
 * driver shows up, before it writes the status). */
struct virtio_dev {
    const struct virtio_device_ops *ops;
    void *opaque;                   /* the device model */
    const struct virtio_transport_ops *transport;
    void *transport_opaque;
    struct guest_mem *mem;
    pthread_mutex_t lock;
    uint64_t device_features;       /* offered: ops->features() | transport bits */
    struct virtio_dev_state s;
    unsigned num_queues;
    struct virtq vqs[VIRTIO_MAX_QUEUES];
    struct log_ratelimit rl;        /* status-write complaints (vCPU, lock held) */
    struct log_ratelimit rl_broken; /* NEEDS_RESET reasons (any thread, once per breakage) */
};

/* device_features = ops->features() | VERSION_1 | INDIRECT_DESC | EVENT_IDX;
 * ops->num_queues queues of ops->queue_max_size (power of 2, <= 32768).
 * 0 or -EINVAL (bad ops). */
int virtio_dev_init(struct virtio_dev *vd, const struct virtio_device_ops *ops, void *opaque,
                    struct guest_mem *mem);
void virtio_dev_destroy(struct virtio_dev *vd);
/* The status register (§2.1, §3.1.1), lock held. Writing 0 resets. Driver
 * writes may only add bits (§2.1.1: the driver never clears one); a write
 * that clears one is ignored. FEATURES_OK is refused (bit not kept) when the
 * driver accepted features we did not offer or lacks VERSION_1 on the modern
 * interface; DRIVER_OK (modern: only after FEATURES_OK) validates the ready
 * queues, enables the negotiated EVENT_IDX/INDIRECT on them and calls
 * ops->activate (a failure -> NEEDS_RESET); FAILED is just recorded. */
void virtio_set_status(struct virtio_dev *vd, uint8_t status);
uint8_t virtio_get_status(const struct virtio_dev *vd);
/* The driver writes 32 bits of its features (word 0: bits 0-31, word 1:
 * 32-63). Ignored once FEATURES_OK is set (§3.1.1 step 5). Lock held. */
void virtio_set_driver_features(struct virtio_dev *vd, unsigned word, uint32_t value);
/* ops->reset (stops the device's I/O), every queue reset, state cleared
 * (status 0, features 0, config_generation kept moving). Lock held. */
void virtio_reset(struct virtio_dev *vd);
/* A broken driver (§2.1.2): set NEEDS_RESET, log `why` (rate-limited), and
 * if DRIVER_OK is set send a configuration change notification. Any thread;
 * does not take vd->lock (the I/O thread calls it while a vCPU may hold the
 * lock waiting in ops->reset for that I/O thread). */
void virtio_dev_set_needs_reset(struct virtio_dev *vd, const char *why);
/* Negotiated (offered and accepted). */
bool virtio_has_feature(const struct virtio_dev *vd, unsigned bit);
/* For device models (I/O thread): pop from queue q. 1: elem filled; 0: queue
 * empty; -EINVAL: the driver broke the rules, the device is now in
 * NEEDS_RESET (with the queue's reason); -EIO: the device is not running
 * (no DRIVER_OK, or NEEDS_RESET already). Any negative: stop processing.
 * The canonical loop:
 *     do {
 *         virtio_queue_set_notification(vd, q, false);
 *         while ((rc = virtio_queue_pop(vd, q, elem)) == 1) { ...push... }
 *         if (rc < 0) return;
 *     } while (virtio_queue_set_notification(vd, q, true));
 *     virtio_notify(vd, q); */
int virtio_queue_pop(struct virtio_dev *vd, unsigned q, struct virtq_elem *elem);
/* virtq_set_notification; false as well when the device is not running. */
bool virtio_queue_set_notification(struct virtio_dev *vd, unsigned q, bool enable);
/* virtq_push, NEEDS_RESET on failure. 0 or -EINVAL. */
int virtio_queue_push(struct virtio_dev *vd, unsigned q, const struct virtq_elem *elem,
                      uint32_t written);
/* Used buffers were added to queue q: interrupt the driver if it wants it
 * (virtq_should_notify -> transport->notify_queue). Only after DRIVER_OK. */
void virtio_notify(struct virtio_dev *vd, unsigned q);
/* config_generation++ and, after DRIVER_OK, transport->notify_config. */
void virtio_notify_config(struct virtio_dev *vd);

#endif
