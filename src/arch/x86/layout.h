/* The guest-physical and I/O-port layout of kvmbox's x86 machine: one place
 * for every fixed address, so the boot code, the firmware tables and the
 * devices agree. Values follow QEMU's pc/q35 machines where a guest could
 * notice (COM ports, ACPI PM block at 0x600 like ICH9, fw_cfg at 0x510). */
#ifndef KVMBOX_X86_LAYOUT_H
#define KVMBOX_X86_LAYOUT_H

/* --- guest physical memory below 1 MiB --- */
#define LAYOUT_BOOT_GDT        0x0500ULL   /* flat boot GDT */
#define LAYOUT_BOOT_IDT        0x0520ULL   /* empty IDT (limit 0) */
#define LAYOUT_PVH_START_INFO  0x6000ULL   /* hvm_start_info + memmap */
#define LAYOUT_MULTIBOOT_INFO  0x6000ULL   /* multiboot info (same page, a kernel is booted one way) */
#define LAYOUT_ZERO_PAGE       0x7000ULL   /* Linux boot_params */
#define LAYOUT_PML4            0x9000ULL   /* boot page tables: identity map */
#define LAYOUT_PDPT            0xA000ULL
#define LAYOUT_PD              0xB000ULL   /* 4 pages: 4 GiB of 2 MiB pages */
#define LAYOUT_CMDLINE         0x20000ULL
#define LAYOUT_CMDLINE_MAX     0x10000ULL  /* 64 KiB incl. the NUL */
#define LAYOUT_EBDA_START      0x9FC00ULL  /* RAM below this is usable */
#define LAYOUT_BIOS_START      0xE0000ULL  /* reserved: firmware tables */
#define LAYOUT_ACPI_START      0xE0000ULL  /* RSDP (16-byte aligned, scanned by Linux) then tables */
#define LAYOUT_ACPI_SIZE       0x10000ULL
#define LAYOUT_MPTABLE_START   0xF0000ULL  /* MP floating pointer + config table */
#define LAYOUT_MPTABLE_SIZE    0x10000ULL
#define LAYOUT_HIGH_START      0x100000ULL /* kernels load at 1 MiB and up */

/* --- MMIO --- */
#define LAYOUT_IOAPIC_BASE     0xFEC00000ULL
#define LAYOUT_LAPIC_BASE      0xFEE00000ULL
#define LAYOUT_TESTDEV_MMIO    0xFEBF0000ULL  /* kvmbox test device scratch window */
#define LAYOUT_TESTDEV_MMIO_SIZE 0x1000ULL

/* --- PCI (src/hw/pci) ---
 * The 32-bit BAR window starts where low RAM must end (GMEM_LOW_LIMIT) and
 * stops below ECAM; ECAM covers bus 0 only (PCIe 4.0 §7.2.2: 1 MiB = 32
 * devices x 8 functions x 4 KiB). Both are declared in ACPI (PCI0 _CRS,
 * MCFG, a PNP0C02 reservation for ECAM) and the window is all PCI decodes:
 * BARs outside it stay unmapped. I/O BARs go in 0x1000-0xFFFF (Linux never
 * allocates PCI I/O below 0x1000, PCIBIOS_MIN_IO). */
#define LAYOUT_PCI_MMIO_BASE   0xC0000000ULL
#define LAYOUT_PCI_MMIO_SIZE   0x30000000ULL  /* up to 0xEFFFFFFF */
#define LAYOUT_PCI_ECAM_BASE   0xF0000000ULL
#define LAYOUT_PCI_ECAM_SIZE   0x100000ULL
#define LAYOUT_PCI_IO_BASE     0x1000
#define LAYOUT_PCI_IO_SIZE     0xF000
/* INTx: slot s, pin p (0 = INTA#) -> IOAPIC pin 16 + (s + p) % 4, level,
 * active low. The same swizzle is in pci_intx_gsi(), the ACPI _PRT and the
 * MP table. */
#define LAYOUT_PCI_INTX_GSI_BASE 16
#define LAYOUT_PCI_INTX_GSI(slot, pin) (LAYOUT_PCI_INTX_GSI_BASE + ((slot) + (pin)) % 4)
#define LAYOUT_PCI_SLOTS       32

/* --- I/O ports --- */
#define PORT_PIT_SPEAKER       0x61
#define PORT_I8042_DATA        0x60
#define PORT_I8042_CMD         0x64
#define PORT_RTC               0x70        /* 0x70 index, 0x71 data */
#define PORT_POST              0x80
#define PORT_COM1              0x3F8
#define PORT_COM2              0x2F8
#define PORT_COM3              0x3E8
#define PORT_COM4              0x2E8
#define PORT_TESTDEV           0x440       /* 8 bytes: boot timer, scratch */
#define PORT_FW_CFG            0x510       /* 0x510 selector, 0x511 data */
#define PORT_ACPI_PM_BASE      0x600       /* ICH9-style PMBASE */
#define PORT_ACPI_PM1A_EVT     0x600       /* 4 bytes: PM1 status, enable */
#define PORT_ACPI_PM1A_CNT     0x604       /* 2 bytes: PM1 control */
#define PORT_ACPI_PM_TMR       0x608       /* 4 bytes: 3.579545 MHz timer */
#define PORT_PCI_CONFIG_ADDRESS 0xCF8      /* 4 bytes; 0xCF9 inside it is reset control */
#define PORT_RESET_CONTROL     0xCF9       /* reset control register, also the FADT RESET_REG */
#define PORT_PCI_CONFIG_DATA   0xCFC       /* 4 bytes */

/* --- ACPI values --- */
#define ACPI_SCI_IRQ           9
#define ACPI_S5_SLP_TYP        5           /* \_S5 package value; PM1 control SLP_TYP for power-off */
#define ACPI_RESET_VALUE       0x06        /* written to PORT_RESET_CONTROL */

/* --- ISA interrupts (GSI numbers on the IOAPIC; IRQ0 is routed to pin 2) --- */
#define IRQ_COM1               4
#define IRQ_COM2               3
#define IRQ_RTC                8
#define IRQ_KBD                1

#endif
