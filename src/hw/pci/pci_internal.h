/* Shared between pci.c and pci_msix.c; not for device models. */
#ifndef KVMBOX_PCI_INTERNAL_H
#define KVMBOX_PCI_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

struct pci_device;

/* True when a config write of [off, off+len) touched the MSI-X message
 * control word; pci_msix_config_changed then re-reads enable/function mask
 * (pci_bus.lock held). */
bool pci_msix_config_hit(const struct pci_device *d, uint32_t off, unsigned len);
void pci_msix_config_changed(struct pci_device *d);

#endif
