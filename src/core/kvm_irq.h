/* KVM interrupt plumbing beyond KVM_IRQ_LINE: the GSI routing table (the
 * fixed PIC/IOAPIC routes plus MSI routes that devices allocate and update
 * as the guest programs MSI-X), irqfds (an eventfd write injects a GSI
 * without a trip through the VMM) and ioeventfds (a guest write to an
 * address signals an eventfd instead of exiting to a vCPU thread).
 *
 * Threads: any. The routing table is guarded by vm->routing_lock; every
 * change is pushed to KVM with KVM_SET_GSI_ROUTING (the whole table, as the
 * API requires). */
#ifndef KVMBOX_KVM_IRQ_H
#define KVMBOX_KVM_IRQ_H

#include <stdbool.h>
#include <stdint.h>

struct vm;

/* GSIs below this are the IOAPIC pins; MSI routes are allocated above. */
#define KVM_IRQ_FIRST_MSI_GSI 24

/* Install the fixed routes (called once at VM creation). 0 or -errno. */
int kvm_irq_routing_init(struct vm *vm);
void kvm_irq_routing_destroy(struct vm *vm);

/* Allocate a GSI routed as the MSI message (addr, data). 0 or -errno
 * (-ENOSPC when the routing table is full). */
int kvm_msi_route_alloc(struct vm *vm, uint64_t addr, uint32_t data, uint32_t *gsi);
int kvm_msi_route_update(struct vm *vm, uint32_t gsi, uint64_t addr, uint32_t data);
void kvm_msi_route_free(struct vm *vm, uint32_t gsi);

/* Attach (assign) or detach an eventfd to a GSI. resample_fd >= 0 makes it
 * a level-triggered irqfd with EOI resampling (INTx): KVM deasserts the
 * line at EOI and signals resample_fd so the device can re-assert if still
 * pending. 0 or -errno. */
int kvm_irqfd(struct vm *vm, int fd, uint32_t gsi, int resample_fd, bool assign);

/* Signal fd when the guest writes (len bytes, optionally only the value
 * data) to a port (pio) or an MMIO address. 0 or -errno. */
int kvm_ioeventfd(struct vm *vm, uint64_t addr, unsigned len, bool pio, bool match_data,
                  uint64_t data, int fd, bool assign);

/* Inject one MSI directly (no route needed). 0, or -errno; 0 also when the
 * guest had the interrupt blocked (KVM returns 0 then). */
int kvm_signal_msi(struct vm *vm, uint64_t addr, uint32_t data);

#endif
