/* Creating the virtio PCI devices the command line asks for (-drive
 * if=virtio, -device virtio-blk-pci / virtio-serial-pci + virtconsole /
 * virtio-rng-pci), their block back ends and the I/O thread that serves
 * them. Main thread, at machine creation. */
#ifndef KVMBOX_VIRTIO_DEVICES_H
#define KVMBOX_VIRTIO_DEVICES_H

#include <stddef.h>

#include "config/config.h"

struct chardev_registry;
struct pci_bus;
struct vm;

/* Everything is registered with vm_add_device (the I/O thread last, so
 * vm_destroy stops it before freeing the devices). 0, or -1 with a one-line
 * message in err (a user error: bad image, missing chardev...). */
int virtio_devices_create(struct vm *vm, const struct vm_config *cfg, struct pci_bus *bus,
                          struct chardev_registry *chardevs, char *err, size_t errlen);

#endif
