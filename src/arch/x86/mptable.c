/* MP tables, see mptable.h. Section and table numbers are the Intel
 * MultiProcessor Specification, version 1.4 (May 1997). */
#include "arch/x86/mptable.h"

#include <errno.h>
#include <string.h>

#include "arch/x86/layout.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "MP tables are little-endian");

/* §4.1, Table 4-1 MP Floating Pointer Structure. */
struct mpf_intel {
    char signature[4];          /* "_MP_" */
    uint32_t physptr;           /* MP configuration table address */
    uint8_t length;             /* in 16-byte units: 1 */
    uint8_t spec_rev;           /* 4 = version 1.4 */
    uint8_t checksum;           /* all 16 bytes sum to 0 */
    uint8_t feature1;           /* 0: a configuration table is present */
    uint8_t feature2;           /* bit 7 IMCRP: 0 = virtual wire mode */
    uint8_t feature3[3];
} __attribute__((packed));
_Static_assert(sizeof(struct mpf_intel) == 16, "MP floating pointer is 16 bytes");

/* §4.2, Table 4-2 MP Configuration Table Header. */
struct mpc_table {
    char signature[4];          /* "PCMP" */
    uint16_t length;            /* base table length, header included */
    uint8_t spec_rev;           /* 4 */
    uint8_t checksum;           /* base table sums to 0 */
    char oem_id[8];
    char product_id[12];
    uint32_t oem_ptr;
    uint16_t oem_size;
    uint16_t entry_count;
    uint32_t lapic_addr;
    uint16_t ext_length;        /* 0: no extended entries */
    uint8_t ext_checksum;
    uint8_t reserved;
} __attribute__((packed));
_Static_assert(sizeof(struct mpc_table) == 44, "MP config header is 44 bytes");

/* §4.3.1, Table 4-4 Processor Entry. */
struct mpc_cpu {
    uint8_t type;               /* 0 */
    uint8_t apic_id;
    uint8_t apic_version;
    uint8_t cpu_flags;          /* bit 0 EN, bit 1 BP */
    uint32_t cpu_signature;     /* CPUID.1 EAX: stepping, model, family */
    uint32_t feature_flags;     /* CPUID.1 EDX */
    uint32_t reserved[2];
} __attribute__((packed));
_Static_assert(sizeof(struct mpc_cpu) == 20, "MP processor entry is 20 bytes");

/* §4.3.2, Table 4-7 Bus Entry. */
struct mpc_bus {
    uint8_t type;               /* 1 */
    uint8_t bus_id;
    char bus_type[6];           /* "ISA   ", Table 4-8 */
} __attribute__((packed));
_Static_assert(sizeof(struct mpc_bus) == 8, "MP bus entry is 8 bytes");

/* §4.3.3, Table 4-9 I/O APIC Entry. */
struct mpc_ioapic {
    uint8_t type;               /* 2 */
    uint8_t apic_id;
    uint8_t apic_version;
    uint8_t flags;              /* bit 0 EN */
    uint32_t apic_addr;
} __attribute__((packed));
_Static_assert(sizeof(struct mpc_ioapic) == 8, "MP IOAPIC entry is 8 bytes");

/* §4.3.4 Table 4-10 I/O Interrupt Entry and §4.3.5 Table 4-12 Local
 * Interrupt Entry share one layout; dst_apic is the IOAPIC ID and pin, or
 * the local APIC ID (0xFF = all) and LINTIN#. */
struct mpc_intsrc {
    uint8_t type;               /* 3 I/O, 4 local */
    uint8_t irq_type;           /* Table 4-11 */
    uint16_t irq_flags;         /* PO bits 0-1, EL bits 2-3; 0 = conforms */
    uint8_t src_bus_id;
    uint8_t src_bus_irq;
    uint8_t dst_apic;
    uint8_t dst_pin;
} __attribute__((packed));
_Static_assert(sizeof(struct mpc_intsrc) == 8, "MP interrupt entry is 8 bytes");

enum { MP_PROCESSOR = 0, MP_BUS = 1, MP_IOAPIC = 2, MP_INTSRC = 3,
       MP_LINTSRC = 4 };
/* Table 4-11 Interrupt Type Values. */
enum { MP_INT = 0, MP_NMI = 1, MP_SMI = 2, MP_EXTINT = 3 };

#define MP_SPEC_REV         4
#define MP_CPU_ENABLED      0x01
#define MP_CPU_BSP          0x02
#define MP_IOAPIC_ENABLED   0x01
#define MP_LAPIC_VERSION    0x14       /* integrated xAPIC */
#define MP_IOAPIC_VERSION   0x11       /* as KVM's in-kernel IOAPIC reports */
/* A family 6 processor with an FPU and an APIC (CPUID.1 EDX bits 0, 9):
 * plausible only; guests read the real CPUID. */
#define MP_CPU_SIGNATURE    0x00000600u
#define MP_CPU_FEATURES     ((1u << 0) | (1u << 9))
#define MP_ISA_BUS_ID       0          /* without PCI */
#define MP_PCI_BUS_ID       0          /* = the PCI bus number (Linux matches them) */
#define MP_ISA_BUS_ID_PCI   1          /* with PCI: after the PCI bus, as SeaBIOS */
#define MP_ISA_IRQS         16
#define MP_PCI_SLOTS        LAYOUT_PCI_SLOTS
#define MP_PCI_PINS         4
#define MP_NUM_PCI_IRQ_ENTRIES (MP_PCI_SLOTS * MP_PCI_PINS)
/* Table 4-10 I/O interrupt flags: PO bits 1:0 (3 = active low), EL bits
 * 3:2 (3 = level). PCI INTx# are level-triggered, active low (PCI 3.0
 * §2.2.6). */
#define MP_IRQ_ACTIVE_LOW   0x3
#define MP_IRQ_LEVEL        (0x3 << 2)
#define MP_ALL_LAPICS       0xFF
#define MP_MAX_APIC_ID      254

/* IRQ0 .. IRQ15 less IRQ2 (the 8259 cascade has no IOAPIC pin of its own:
 * pin 2 is the PIT's). */
#define MP_NUM_IRQ_ENTRIES  (MP_ISA_IRQS - 1)
#define MP_NUM_LINT_ENTRIES 2

size_t mptable_config_size(const struct mptable_config *c)
{
    size_t n = sizeof(struct mpf_intel) + sizeof(struct mpc_table) +
               (size_t)c->ncpus * sizeof(struct mpc_cpu) + sizeof(struct mpc_bus) +
               sizeof(struct mpc_ioapic) +
               (MP_NUM_IRQ_ENTRIES + MP_NUM_LINT_ENTRIES) * sizeof(struct mpc_intsrc);
    if (c->pci)
        n += sizeof(struct mpc_bus) + MP_NUM_PCI_IRQ_ENTRIES * sizeof(struct mpc_intsrc);
    return n;
}

size_t mptable_size(unsigned ncpus)
{
    struct mptable_config c = { .ncpus = ncpus };
    return mptable_config_size(&c);
}

static uint8_t mp_checksum(const uint8_t *p, size_t n)
{
    uint8_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum = (uint8_t)(sum + p[i]);
    return (uint8_t)(0x100 - sum);
}

static int mp_check_args(uint64_t buf_gpa, size_t buf_size, unsigned ncpus,
                         const uint32_t *apic_ids, uint32_t ioapic_id,
                         uint64_t ioapic_addr)
{
    if (!apic_ids || ncpus == 0 || ncpus > MPTABLE_MAX_CPUS)
        return -EINVAL;
    /* The IOAPIC ID only has to differ from the LAPIC IDs (32-bit Linux
     * renumbers a colliding one); with 255 CPUs only 0xFF is left. */
    if (ioapic_id > 0xFF || ioapic_addr > UINT32_MAX - 0xFFF)
        return -EINVAL;
    /* The floating pointer must be 16-byte aligned (§4.1) and every pointer
     * is 32-bit. */
    if (buf_gpa & 0xF || buf_gpa > 0x100000000ULL ||
        buf_size > 0x100000000ULL - buf_gpa)
        return -EINVAL;
    for (unsigned i = 0; i < ncpus; i++) {
        if (apic_ids[i] > MP_MAX_APIC_ID || apic_ids[i] == ioapic_id)
            return -EINVAL;
        for (unsigned j = 0; j < i; j++)
            if (apic_ids[j] == apic_ids[i])
                return -EINVAL;
    }
    return 0;
}

int mptable_build(uint8_t *buf, size_t buf_size, uint64_t buf_gpa,
                  unsigned ncpus, const uint32_t *apic_ids, uint32_t ioapic_id,
                  uint64_t ioapic_addr, size_t *used)
{
    struct mptable_config c = {
        .ncpus = ncpus, .apic_ids = apic_ids, .ioapic_id = ioapic_id,
        .ioapic_addr = ioapic_addr, .pci = false,
    };
    return mptable_build_config(buf, buf_size, buf_gpa, &c, used);
}

int mptable_build_config(uint8_t *buf, size_t buf_size, uint64_t buf_gpa,
                         const struct mptable_config *mc, size_t *used)
{
    if (!buf || !used || !mc)
        return -EINVAL;
    unsigned ncpus = mc->ncpus;
    const uint32_t *apic_ids = mc->apic_ids;
    uint32_t ioapic_id = mc->ioapic_id;
    uint64_t ioapic_addr = mc->ioapic_addr;
    int ret = mp_check_args(buf_gpa, buf_size, ncpus, apic_ids, ioapic_id,
                            ioapic_addr);
    if (ret < 0)
        return ret;
    uint8_t isa_bus = mc->pci ? MP_ISA_BUS_ID_PCI : MP_ISA_BUS_ID;
    size_t total = mptable_config_size(mc);
    if (buf_size < total)
        return -ENOSPC;

    uint8_t *cfg = buf + sizeof(struct mpf_intel);
    size_t off = sizeof(struct mpc_table);
    unsigned count = 0;

    /* Entries in ascending type order (§4.3). Processors first, the boot
     * processor flagged BP. */
    for (unsigned i = 0; i < ncpus; i++) {
        struct mpc_cpu c = {
            .type = MP_PROCESSOR, .apic_id = (uint8_t)apic_ids[i],
            .apic_version = MP_LAPIC_VERSION,
            .cpu_flags = (uint8_t)(MP_CPU_ENABLED | (i == 0 ? MP_CPU_BSP : 0)),
            .cpu_signature = MP_CPU_SIGNATURE,
            .feature_flags = MP_CPU_FEATURES,
        };
        memcpy(cfg + off, &c, sizeof c);
        off += sizeof c;
        count++;
    }

    /* Bus entries (Table 4-8 bus type strings). Linux looks PCI interrupt
     * entries up by the PCI bus number, so the PCI bus gets ID 0. */
    if (mc->pci) {
        struct mpc_bus pbus = { .type = MP_BUS, .bus_id = MP_PCI_BUS_ID };
        memcpy(pbus.bus_type, "PCI   ", 6);
        memcpy(cfg + off, &pbus, sizeof pbus);
        off += sizeof pbus;
        count++;
    }
    struct mpc_bus bus = { .type = MP_BUS, .bus_id = isa_bus };
    memcpy(bus.bus_type, "ISA   ", 6);
    memcpy(cfg + off, &bus, sizeof bus);
    off += sizeof bus;
    count++;

    struct mpc_ioapic io = {
        .type = MP_IOAPIC, .apic_id = (uint8_t)ioapic_id,
        .apic_version = MP_IOAPIC_VERSION, .flags = MP_IOAPIC_ENABLED,
        .apic_addr = (uint32_t)ioapic_addr,
    };
    memcpy(cfg + off, &io, sizeof io);
    off += sizeof io;
    count++;

    /* ISA IRQs to IOAPIC pins with the bus's own polarity and trigger
     * (flags 0 = "conforms", i.e. ISA: edge, active high; §4.3.4). IRQ0,
     * the PIT, is on pin 2, like the ACPI interrupt source override. */
    for (unsigned irq = 0; irq < MP_ISA_IRQS; irq++) {
        if (irq == 2)
            continue;
        struct mpc_intsrc s = {
            .type = MP_INTSRC, .irq_type = MP_INT, .irq_flags = 0,
            .src_bus_id = isa_bus, .src_bus_irq = (uint8_t)irq,
            .dst_apic = (uint8_t)ioapic_id,
            .dst_pin = (uint8_t)(irq == 0 ? 2 : irq),
        };
        memcpy(cfg + off, &s, sizeof s);
        off += sizeof s;
        count++;
    }

    /* PCI INTx (§D.3, Table D-1): source bus IRQ = slot << 2 | pin (0 =
     * INTA#), to the IOAPIC pin of the LAYOUT_PCI_INTX_GSI swizzle, level,
     * active low. Every slot and pin, as the ACPI _PRT. */
    for (unsigned slot = 0; mc->pci && slot < MP_PCI_SLOTS; slot++) {
        for (unsigned pin = 0; pin < MP_PCI_PINS; pin++) {
            struct mpc_intsrc s = {
                .type = MP_INTSRC, .irq_type = MP_INT,
                .irq_flags = MP_IRQ_ACTIVE_LOW | MP_IRQ_LEVEL,
                .src_bus_id = MP_PCI_BUS_ID,
                .src_bus_irq = (uint8_t)(slot << 2 | pin),
                .dst_apic = (uint8_t)ioapic_id,
                .dst_pin = (uint8_t)LAYOUT_PCI_INTX_GSI(slot, pin),
            };
            memcpy(cfg + off, &s, sizeof s);
            off += sizeof s;
            count++;
        }
    }

    /* Virtual wire (§3.6.2.2, §5.1): the 8259's INTR on every LAPIC's
     * LINT0 as ExtINT, NMI on LINT1. */
    static const struct { uint8_t irq_type, pin; } lints[MP_NUM_LINT_ENTRIES] = {
        { MP_EXTINT, 0 }, { MP_NMI, 1 },
    };
    for (unsigned i = 0; i < MP_NUM_LINT_ENTRIES; i++) {
        struct mpc_intsrc s = {
            .type = MP_LINTSRC, .irq_type = lints[i].irq_type,
            .irq_flags = 0, .src_bus_id = isa_bus, .src_bus_irq = 0,
            .dst_apic = MP_ALL_LAPICS, .dst_pin = lints[i].pin,
        };
        memcpy(cfg + off, &s, sizeof s);
        off += sizeof s;
        count++;
    }

    struct mpc_table t;
    memset(&t, 0, sizeof t);
    memcpy(t.signature, "PCMP", 4);
    t.length = (uint16_t)off;
    t.spec_rev = MP_SPEC_REV;
    memcpy(t.oem_id, "KVMBOX  ", 8);
    memcpy(t.product_id, "KVMBOX VM   ", 12);
    t.entry_count = (uint16_t)count;
    t.lapic_addr = (uint32_t)LAYOUT_LAPIC_BASE;
    t.ext_length = 0;
    memcpy(cfg, &t, sizeof t);
    cfg[offsetof(struct mpc_table, checksum)] = mp_checksum(cfg, off);

    struct mpf_intel mpf;
    memset(&mpf, 0, sizeof mpf);
    memcpy(mpf.signature, "_MP_", 4);
    mpf.physptr = (uint32_t)(buf_gpa + sizeof mpf);
    mpf.length = 1;
    mpf.spec_rev = MP_SPEC_REV;
    mpf.feature1 = 0;
    mpf.feature2 = 0;
    memcpy(buf, &mpf, sizeof mpf);
    buf[offsetof(struct mpf_intel, checksum)] = mp_checksum(buf, sizeof mpf);

    *used = sizeof mpf + off;
    return 0;
}
