/* e820 map, see e820.h. */
#include "arch/x86/e820.h"

#include <errno.h>

#include "arch/x86/layout.h"
#include "core/guest_mem.h"

/* The legacy VGA window starts here; below it, past the EBDA, is the
 * conventional-memory top the BIOS data area reports (640 KiB). */
#define E820_VGA_START 0xA0000ULL

_Static_assert(LAYOUT_EBDA_START < E820_VGA_START, "EBDA below VGA");
_Static_assert(LAYOUT_BIOS_START >= E820_VGA_START &&
               LAYOUT_BIOS_START < LAYOUT_HIGH_START, "BIOS area below 1 MiB");
_Static_assert(LAYOUT_ACPI_START >= LAYOUT_BIOS_START &&
               LAYOUT_MPTABLE_START + LAYOUT_MPTABLE_SIZE <= LAYOUT_HIGH_START,
               "firmware tables inside the reserved BIOS range");

static void e820_add(struct e820_entry *out, unsigned *n, uint64_t start,
                     uint64_t end, uint32_t type)
{
    out[*n] = (struct e820_entry){ .addr = start, .size = end - start,
                                   .type = type };
    (*n)++;
}

int e820_build(struct e820_entry *out, unsigned max, uint64_t low_ram_size,
               uint64_t high_ram_size)
{
    /* Low RAM must cover the first MiB: the firmware tables and the boot
     * structures live there. It must end before the 32-bit MMIO hole. */
    if (low_ram_size < LAYOUT_HIGH_START || low_ram_size > GMEM_LOW_LIMIT)
        return -EINVAL;
    if (high_ram_size > UINT64_MAX - GMEM_HIGH_BASE)
        return -EINVAL;
    unsigned need = 3 + (low_ram_size > LAYOUT_HIGH_START) +
                    (high_ram_size > 0);
    if (!out || max < need)
        return -ENOSPC;

    unsigned n = 0;
    e820_add(out, &n, 0, LAYOUT_EBDA_START, E820_RAM);
    e820_add(out, &n, LAYOUT_EBDA_START, E820_VGA_START, E820_RESERVED);
    /* RSDP, ACPI tables and MP table (0xE0000-0xFFFFF). Reserved rather
     * than E820_ACPI: the DSDT's AML is interpreted for as long as the guest
     * runs, so the OS must never reclaim it. */
    e820_add(out, &n, LAYOUT_BIOS_START, LAYOUT_HIGH_START, E820_RESERVED);
    if (low_ram_size > LAYOUT_HIGH_START)
        e820_add(out, &n, LAYOUT_HIGH_START, low_ram_size, E820_RAM);
    if (high_ram_size > 0)
        e820_add(out, &n, GMEM_HIGH_BASE, GMEM_HIGH_BASE + high_ram_size,
                 E820_RAM);
    return (int)n;
}
