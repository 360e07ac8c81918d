/* virtio-console (virtio 1.2 §5.3), one console port without MULTIPORT:
 * what `-device virtio-serial-pci -device virtconsole,chardev=ID` gives a
 * guest that uses console=hvc0. Queue 0 (receiveq) carries host input to
 * the guest, queue 1 (transmitq) guest output to the chardev.
 *
 * Threads: transmitq is processed on the I/O thread; receiveq is filled on
 * the main thread, where chardev input arrives (the I/O thread only passes
 * the driver's kick on, via chardev_input_ready). */
#ifndef KVMBOX_VIRTIO_CONSOLE_H
#define KVMBOX_VIRTIO_CONSOLE_H

#include "hw/virtio/virtio.h"

struct chardev;
struct virtio_console;

/* chr may be NULL: output is dropped, no input. */
struct virtio_console *virtio_console_new(struct chardev *chr);
void virtio_console_free(struct virtio_console *c);
const struct virtio_device_ops *virtio_console_ops(void);
/* Hook the chardev's input to the device (after the transport exists). */
void virtio_console_attach(struct virtio_console *c, struct virtio_dev *vd);

#endif
