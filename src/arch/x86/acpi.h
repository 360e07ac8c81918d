/* ACPI firmware tables for the x86 machine (ACPI 6.5): RSDP, RSDT, XSDT,
 * FADT, FACS, MADT, a DSDT and, with PCI, an MCFG, written into guest
 * memory before boot so that Linux finds every vCPU, the IOAPIC and the
 * ISA interrupt overrides, can power off (\_S5 + PM1a control) and reboot
 * (FADT RESET_REG), and finds the PCI host bridge.
 *
 * The machine is a full (not hardware-reduced) ACPI platform that is always
 * in ACPI mode (SMI_CMD = 0): the PM block at PORT_ACPI_PM_BASE, the SCI on
 * ACPI_SCI_IRQ (level, active high), the reset register at
 * PORT_RESET_CONTROL. Addresses and ports come from layout.h.
 *
 * Threads: pure function over a caller buffer; called once at VM setup. */
#ifndef KVMBOX_X86_ACPI_H
#define KVMBOX_X86_ACPI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct acpi_config {
    /* Present vCPUs (>= 1): listed enabled in the MADT. */
    unsigned ncpus;
    /* 0 or <= ncpus: no more. Above ncpus: the extra vCPUs are listed
     * disabled but "online capable" (ACPI 6.3+ MADT flag) so the OS sizes
     * for them; hot-adding them needs more than these tables. */
    unsigned max_cpus;
    /* APIC IDs, max(ncpus, max_cpus) entries, [0] is the boot CPU; unique.
     * IDs below 255 get a Processor Local APIC entry, others a Processor
     * Local x2APIC entry (ACPI 6.5 §5.2.12.2, §5.2.12.12). The ACPI
     * processor UID of CPU i is i. */
    const uint32_t *apic_ids;
    /* The IOAPIC: MMIO base (below 4 GiB) and its 8-bit ID, which must not
     * equal any LAPIC ID in apic_ids. */
    uint64_t ioapic_addr;
    uint32_t ioapic_id;
    /* An i8042 keyboard controller at 0x60/0x64: sets LEGACY_DEVICES and
     * 8042 in the FADT IAPC_BOOT_ARCH (Linux only probes the i8042 when
     * the firmware says one is there). */
    bool has_i8042;
    /* PCI host bridge (src/hw/pci) at the fixed addresses of layout.h: an
     * MCFG table (ECAM at LAYOUT_PCI_ECAM_BASE, segment 0, bus 0), and in
     * the DSDT \_SB.PCI0 (PNP0A08/PNP0A03, _SEG/_BBN/_UID 0, _CRS with bus
     * 0, I/O 0-0xCF7 and 0xD00-0xFFFF, the LAYOUT_PCI_MMIO window; _PRT
     * with the LAYOUT_PCI_INTX_GSI swizzle for all 32 slots) plus
     * \_SB.MRES (PNP0C02) reserving the ECAM range. */
    bool pci;
};

/* Build every table into buf, the host view of guest memory that starts at
 * guest-physical buf_gpa (LAYOUT_ACPI_START, size LAYOUT_ACPI_SIZE). The
 * RSDP is at offset 0 (buf_gpa must be 16-byte aligned: Linux scans
 * 0xE0000-0xFFFFF on 16-byte boundaries, ACPI 6.5 §5.2.5.1), the other
 * tables follow. All of buf_size is overwritten (zeros after *used).
 * The whole buffer must lie below 4 GiB (the RSDT holds 32-bit pointers).
 *
 * Returns 0 and sets *used (bytes written from buf's start), -EINVAL for a
 * bad config (no CPUs, duplicate APIC IDs, IOAPIC ID collision or > 255,
 * IOAPIC above 4 GiB, misaligned or too-high buf_gpa), or -ENOSPC when the
 * tables do not fit in buf_size. */
int acpi_build(uint8_t *buf, size_t buf_size, uint64_t buf_gpa,
               const struct acpi_config *cfg, size_t *used);

#endif
