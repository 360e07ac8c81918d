/* The e820 memory map the VMM reports to the guest (Linux boot protocol,
 * Documentation/arch/x86/zero-page.rst: boot_params.e820_table at 0x2d0,
 * up to 128 entries of 20 bytes; also the PVH/multiboot memory maps). It
 * tells the guest which guest-physical ranges are RAM and which hold the
 * firmware tables (ACPI, MP) it must not overwrite.
 *
 * Threads: pure function; called at VM setup. */
#ifndef KVMBOX_X86_E820_H
#define KVMBOX_X86_E820_H

#include <stdint.h>

/* Boot protocol layout of one entry (struct boot_e820_entry). */
struct e820_entry {
    uint64_t addr;
    uint64_t size;
    uint32_t type;
} __attribute__((packed));
_Static_assert(sizeof(struct e820_entry) == 20, "e820 entries are 20 bytes");

/* ACPI 6.5 §15 Table 15.1 address range types, as e820 reports them. */
#define E820_RAM        1
#define E820_RESERVED   2
#define E820_ACPI       3   /* ACPI reclaimable; not used by e820_build */

/* Most entries e820_build() returns. */
#define E820_MAX_BUILT  5

/* Fill out[] (room for max entries, E820_MAX_BUILT always suffices) with
 * the map of a machine that has low_ram_size bytes of RAM at guest-physical
 * 0 and high_ram_size bytes at 4 GiB (GMEM_HIGH_BASE), in ascending order:
 *   [0, LAYOUT_EBDA_START)                 RAM
 *   [LAYOUT_EBDA_START, 0xA0000)           reserved (EBDA)
 *   [LAYOUT_BIOS_START, 1 MiB)             reserved (ACPI and MP tables)
 *   [1 MiB, low_ram_size)                  RAM, when low_ram_size > 1 MiB
 *   [4 GiB, 4 GiB + high_ram_size)         RAM, when high_ram_size > 0
 * The LAPIC/IOAPIC MMIO pages are not listed: the guest learns them from
 * the MADT / MP table.
 *
 * Returns the number of entries, -EINVAL when low_ram_size is below 1 MiB
 * or above GMEM_LOW_LIMIT (it would run into the 32-bit MMIO hole) or the
 * high range overflows, -ENOSPC when max is too small. */
int e820_build(struct e820_entry *out, unsigned max, uint64_t low_ram_size,
               uint64_t high_ram_size);

#endif
