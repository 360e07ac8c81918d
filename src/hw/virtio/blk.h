/* virtio-blk (virtio 1.2 §5.2): read, write, flush, get-id, discard and
 * write-zeroes over a block back end, several request queues.
 *
 * Threads: requests are popped and completed on the device's I/O thread
 * (queue_notify and the back end's completions both run there); config
 * space is read on vCPU threads under the virtio device lock. */
#ifndef KVMBOX_VIRTIO_BLK_H
#define KVMBOX_VIRTIO_BLK_H

#include <stdbool.h>
#include <stdint.h>

#include "hw/virtio/virtio.h"

struct block_backend;
struct loop;

#define VIRTIO_BLK_ID_BYTES 20

struct virtio_blk_opts {
    const char *serial;             /* get-id answer (at most 20 bytes used) */
    unsigned num_queues;            /* 1.. */
    uint16_t queue_size;            /* max queue size offered (256 default) */
    uint32_t logical_block_size;    /* 512 default */
    uint32_t physical_block_size;   /* >= logical */
    bool discard;                   /* offer DISCARD (and unmapping write-zeroes) */
};

struct virtio_blk;

/* The device model; the transport (virtio_pci_new) takes
 * virtio_blk_ops() and the returned pointer as its opaque. The back end
 * must deliver completions on io_loop. */
struct virtio_blk *virtio_blk_new(struct block_backend *backend, struct loop *io_loop,
                                  const struct virtio_blk_opts *opts);
void virtio_blk_free(struct virtio_blk *b);
const struct virtio_device_ops *virtio_blk_ops(const struct virtio_blk *b);

#endif
