/* virtio-rng (virtio 1.2 §5.4): one request queue; every writable buffer
 * the driver posts is filled from the host's getrandom(). Runs on the
 * device's I/O thread. */
#ifndef KVMBOX_VIRTIO_RNG_H
#define KVMBOX_VIRTIO_RNG_H

#include "hw/virtio/virtio.h"

struct virtio_rng;

struct virtio_rng *virtio_rng_new(void);
void virtio_rng_free(struct virtio_rng *r);
const struct virtio_device_ops *virtio_rng_ops(void);

#endif
