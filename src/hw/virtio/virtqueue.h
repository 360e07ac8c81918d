/* Split virtqueues (virtio 1.2 §2.7): descriptor table, available and used
 * rings in guest memory; indirect descriptors (§2.7.5.3) and
 * VIRTIO_F_EVENT_IDX notification suppression (§2.7.7, §2.7.10).
 *
 * Everything in the rings is guest-controlled: each index, address, length
 * and flag is checked; a violation (loop, out-of-range address or index,
 * over-long chain, bad indirect table) makes virtq_pop() return -EINVAL and
 * the device must go to NEEDS_RESET (virtio_dev_set_needs_reset; the
 * virtio_queue_pop() wrapper in virtio.h does it) — never a crash or a hang,
 * and never a read outside guest RAM. Each descriptor is copied out of guest
 * memory once and only the copy is checked and used (no double fetch).
 *
 * Byte order: the rings are little-endian (modern) or guest-native (legacy);
 * both are the host's order on x86, the only host we build for.
 *
 * Threads: one thread processes a queue at a time (its I/O thread); the
 * configuration (addresses, size, ready) is written by the transport on a
 * vCPU thread only while the queue is not ready or the device is reset. The
 * driver (another CPU) writes the avail ring and reads the used ring while we
 * run: the shared words are accessed with __atomic builtins and the barriers
 * the spec asks for are in virtqueue.c, each with a comment. The state struct
 * is plain data so it can be saved and restored (migration). */
#ifndef KVMBOX_VIRTQUEUE_H
#define KVMBOX_VIRTQUEUE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "core/guest_mem.h"

#define VIRTQ_MAX_SIZE      32768   /* §2.7: queue size is at most 32768 */
#define VIRTQ_MAX_CHAIN     1024    /* longest descriptor chain we follow,
                                     * also the most iovecs one element has */

#define VIRTQ_DESC_F_NEXT     1
#define VIRTQ_DESC_F_WRITE    2
#define VIRTQ_DESC_F_INDIRECT 4

#define VIRTQ_AVAIL_F_NO_INTERRUPT 1   /* §2.7.6 avail->flags */
#define VIRTQ_USED_F_NO_NOTIFY     1   /* §2.7.8 used->flags */

#define VIRTIO_MSI_NO_VECTOR 0xffff

/* Guest-memory layout (§2.7.5, §2.7.6, §2.7.8); sizes include the EVENT_IDX
 * trailing words (used_event after avail->ring, avail_event after
 * used->ring), which are always reserved. */
struct virtq_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};
#define VIRTQ_DESC_BYTES(n)  (16ULL * (n))
#define VIRTQ_AVAIL_BYTES(n) (6ULL + 2ULL * (n))
#define VIRTQ_USED_BYTES(n)  (6ULL + 8ULL * (n))

/* Saveable queue state. */
struct virtq_state {
    uint16_t size;              /* negotiated queue size (power of 2) */
    bool ready;
    uint64_t desc_gpa, avail_gpa, used_gpa;
    uint16_t last_avail_idx;    /* next avail entry to consume */
    uint16_t used_idx;          /* our copy of used->idx */
    uint16_t signalled_used;    /* used_idx at the last interrupt (EVENT_IDX) */
    bool signalled_used_valid;
    bool notify_disabled;       /* virtq_set_notification(false) in effect */
    uint16_t msix_vector;       /* transport's, kept here to be saved together */
};

struct virtq {
    struct virtq_state s;
    struct guest_mem *mem;
    uint16_t max_size;          /* the device's maximum (and reset) size */
    bool event_idx;             /* VIRTIO_F_EVENT_IDX negotiated */
    bool indirect;              /* VIRTIO_F_INDIRECT_DESC negotiated */
    /* Why the last -EINVAL happened (a static string, for the log). */
    const char *error;
};

/* One popped request: its chain mapped to host iovecs. Readable buffers
 * (device reads: driver -> device) come first, writable ones after, as §2.7.4
 * requires; a chain with a readable descriptor after a writable one is
 * rejected. Zero-length descriptors are accepted and contribute no iovec
 * (their address is not looked at). The iovecs point into guest RAM: valid
 * until the device is reset. */
struct virtq_elem {
    uint16_t head;              /* for virtq_push */
    unsigned out_num;           /* readable iovecs: iov[0..out_num) */
    unsigned in_num;            /* writable iovecs: iov[out_num..out_num+in_num) */
    uint64_t out_len, in_len;   /* byte totals */
    struct iovec iov[VIRTQ_MAX_CHAIN];
};

/* max_size: the device's maximum queue size (power of 2, <= VIRTQ_MAX_SIZE);
 * the queue is reset to it. */
void virtq_init(struct virtq *vq, struct guest_mem *mem, uint16_t max_size);
/* Back to the reset state (§2.7 / §4.1.4.3): not ready, size = max_size,
 * addresses 0, indices 0, features off, MSI-X vector NO_VECTOR. */
void virtq_reset(struct virtq *vq);
/* Validate the configured rings: size a power of 2 <= max_size, aligned
 * (§2.7: desc 16, avail 2, used 4), each ring wholly inside one RAM region.
 * 0 or -EINVAL (vq->error says why). Called when the driver sets ready. */
int virtq_check_config(struct virtq *vq);

/* 1: elem filled; 0: no new buffer (or queue not ready); -EINVAL: the driver
 * broke the rules (vq->error says which; the device must enter NEEDS_RESET).
 * On -EINVAL nothing is consumed. */
int virtq_pop(struct virtq *vq, struct virtq_elem *elem);
/* Give back an element with `written` bytes written into its writable
 * buffers (written is clamped to in_len): used element then used->idx
 * (release). 0, or -EINVAL if the used ring is no longer valid. */
int virtq_push(struct virtq *vq, const struct virtq_elem *elem, uint32_t written);
/* Put the last popped element back so the next pop returns it again. */
void virtq_unpop(struct virtq *vq);
/* After pushing: must the driver be interrupted (§2.7.7.2: avail->flags, or
 * used_event with EVENT_IDX)? With EVENT_IDX this records the interrupt as
 * sent when it returns true. */
bool virtq_should_notify(struct virtq *vq);
/* Driver-notification suppression while the device is busy (§2.7.10):
 * enable=false asks the driver not to kick; re-enabling returns whether
 * new buffers arrived meanwhile (the caller must then pop again: a kick the
 * driver skipped while disabled is not coming). Typical loop:
 *     do { virtq_set_notification(vq, false);
 *          while (virtq_pop(...) == 1) ...;
 *     } while (virtq_set_notification(vq, true)); */
bool virtq_set_notification(struct virtq *vq, bool enable);

#endif
