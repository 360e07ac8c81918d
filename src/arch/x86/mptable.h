/* Intel MultiProcessor Specification 1.4 tables: the MP floating pointer
 * structure and the MP configuration table (processors, the ISA bus, the
 * IOAPIC, ISA interrupt routing, LINT0/LINT1). Guests without ACPI (or
 * booted with acpi=off) find their vCPUs and the IOAPIC here.
 *
 * Threads: pure function over a caller buffer; called once at VM setup. */
#ifndef KVMBOX_X86_MPTABLE_H
#define KVMBOX_X86_MPTABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Linux (and the xAPIC) take 8-bit APIC IDs, 0xFF being broadcast. */
#define MPTABLE_MAX_CPUS 255

/* Bytes mptable_build() writes for ncpus processors. */
size_t mptable_size(unsigned ncpus);

/* Build the tables into buf, the host view of guest memory at guest-physical
 * buf_gpa (LAYOUT_MPTABLE_START, size LAYOUT_MPTABLE_SIZE; Linux scans
 * 0xF0000-0xFFFFF for the floating pointer on 16-byte boundaries, MP spec
 * §4). The floating pointer is at offset 0, the configuration table right
 * after it. apic_ids has ncpus entries, [0] the boot processor. The ISA IRQs
 * route to ioapic_id (ISA IRQ0 -> pin 2, IRQ n -> pin n otherwise; IRQ2,
 * the 8259 cascade, is not listed).
 *
 * Returns 0 and sets *used, -EINVAL for ncpus 0 or > MPTABLE_MAX_CPUS, an
 * APIC ID > 254 or repeated, ioapic_id > 255 or equal to a LAPIC ID,
 * ioapic_addr or the buffer not below 4 GiB, buf_gpa not 16-byte aligned;
 * -ENOSPC when buf_size < mptable_size(ncpus). Writes nothing on error;
 * on success bytes past *used are untouched. */
int mptable_build(uint8_t *buf, size_t buf_size, uint64_t buf_gpa,
                  unsigned ncpus, const uint32_t *apic_ids, uint32_t ioapic_id,
                  uint64_t ioapic_addr, size_t *used);

/* The same with options. pci adds a PCI bus (MP bus ID 0 = PCI bus 0; the
 * ISA bus becomes ID 1) and an I/O interrupt entry, level and active low,
 * for every slot (0-31) and pin INTA#-INTD#: source IRQ slot << 2 | pin ->
 * IOAPIC pin LAYOUT_PCI_INTX_GSI(slot, pin), matching the ACPI _PRT, so
 * Linux with acpi=off routes PCI interrupts. mptable_build() is this with
 * pci false. */
struct mptable_config {
    unsigned ncpus;
    const uint32_t *apic_ids;
    uint32_t ioapic_id;
    uint64_t ioapic_addr;
    bool pci;
};
size_t mptable_config_size(const struct mptable_config *c);
int mptable_build_config(uint8_t *buf, size_t buf_size, uint64_t buf_gpa,
                         const struct mptable_config *c, size_t *used);

#endif
