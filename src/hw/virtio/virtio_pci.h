/* The virtio PCI transport (virtio 1.2 §4.1): a transitional device — the
 * modern interface (common/notify/ISR/device configuration capabilities in
 * a 64-bit memory BAR) plus the legacy I/O BAR for pre-1.0 drivers (the
 * RHEL 6 era guests of the seeds), MSI-X with one vector per queue, INTx
 * with the ISR register otherwise.
 *
 * Queue notifications: the guest's write to a queue's notify address is
 * turned into an eventfd signal (a KVM ioeventfd where possible, else from
 * the trapping vCPU thread), and the device's I/O thread runs
 * ops->queue_notify. No request processing on vCPU threads.
 *
 * Threads: register access on vCPU threads under vd.lock; queue processing
 * on the I/O thread; interrupts from the I/O thread (MSI-X eventfd or the
 * INTx line). */
#ifndef KVMBOX_VIRTIO_PCI_H
#define KVMBOX_VIRTIO_PCI_H

#include "hw/pci/pci.h"
#include "hw/virtio/virtio.h"

struct iothread;
struct vm;

/* BAR layout (QEMU's, so guests see the familiar shape). */
#define VIRTIO_PCI_LEGACY_BAR   0       /* I/O, legacy registers */
#define VIRTIO_PCI_MSIX_BAR     1       /* 32-bit memory: table @0, PBA @0x800 */
#define VIRTIO_PCI_MODERN_BAR   4       /* 64-bit memory, 16 KiB */
#define VIRTIO_PCI_COMMON_OFF   0x0000
#define VIRTIO_PCI_ISR_OFF      0x1000
#define VIRTIO_PCI_DEVICE_OFF   0x2000
#define VIRTIO_PCI_NOTIFY_OFF   0x3000
#define VIRTIO_PCI_NOTIFY_MULT  4       /* bytes between queue notify addresses */
#define VIRTIO_PCI_MODERN_SIZE  0x4000

struct virtio_pci;

/* Create a transitional virtio PCI device for ops on the bus (devfn < 0:
 * first free slot) served by the I/O thread io, its rings in mem. vm may be
 * NULL (unit tests): no KVM ioeventfds then, kicks go through the trap. The device model is opaque,
 * reachable as virtio_pci_dev(vp)->opaque. NULL with a message in err. */
struct virtio_pci *virtio_pci_new(struct vm *vm, struct guest_mem *mem, struct pci_bus *bus,
                                  int devfn,
                                  const char *name, const struct virtio_device_ops *ops,
                                  void *opaque, struct iothread *io,
                                  char *err, unsigned errlen);
void virtio_pci_free(struct virtio_pci *vp);
void virtio_pci_reset(struct virtio_pci *vp);
struct virtio_dev *virtio_pci_dev(struct virtio_pci *vp);
struct pci_device *virtio_pci_pci(struct virtio_pci *vp);

#endif
