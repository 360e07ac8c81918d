/* ACPI tables, see acpi.h. Section and table numbers are ACPI 6.5. */
#include "arch/x86/acpi.h"

#include <errno.h>
#include <string.h>

#include "arch/x86/aml.h"
#include "arch/x86/layout.h"

/* The tables are written in host byte order; kvmbox runs on x86 only. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "ACPI tables are little-endian");

#define ACPI_OEM_ID        "KVMBOX"       /* 6 bytes */
#define ACPI_OEM_TABLE_ID  "KVMBOXVM"     /* 8 bytes */
#define ACPI_OEM_REVISION  1
#define ACPI_CREATOR_ID    "KVMB"         /* 4 bytes */
#define ACPI_CREATOR_REV   1

/* §5.2.5.3 Root System Description Pointer, revision 2 (ACPI 2.0+). */
struct acpi_rsdp {
    char signature[8];          /* "RSD PTR " */
    uint8_t checksum;           /* over the first 20 bytes */
    char oem_id[6];
    uint8_t revision;           /* 2 */
    uint32_t rsdt_address;
    uint32_t length;            /* 36 */
    uint64_t xsdt_address;
    uint8_t extended_checksum;  /* over all 36 bytes */
    uint8_t reserved[3];
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_rsdp) == 36, "RSDP is 36 bytes");
#define ACPI_RSDP_V1_LEN 20

/* §5.2.6 System Description Table Header. */
struct acpi_sdt_header {
    char signature[4];
    uint32_t length;            /* whole table, header included */
    uint8_t revision;
    uint8_t checksum;           /* whole table sums to 0 */
    char oem_id[6];
    char oem_table_id[8];
    uint32_t oem_revision;
    char creator_id[4];
    uint32_t creator_revision;
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_sdt_header) == 36, "SDT header is 36 bytes");

/* §5.2.3.2 Generic Address Structure. */
struct acpi_gas {
    uint8_t space_id;           /* 1 = System I/O */
    uint8_t bit_width;
    uint8_t bit_offset;
    uint8_t access_size;        /* 1 byte, 2 word, 3 dword, 4 qword */
    uint64_t address;
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_gas) == 12, "GAS is 12 bytes");
#define ACPI_GAS_SYSTEM_IO   1
#define ACPI_GAS_ACCESS_BYTE 1
#define ACPI_GAS_ACCESS_WORD 2
#define ACPI_GAS_ACCESS_DWORD 3

/* §5.2.9 Fixed ACPI Description Table, Table 5.9; offsets in comments. */
struct acpi_fadt {
    struct acpi_sdt_header header;   /*   0 "FACP" */
    uint32_t firmware_ctrl;          /*  36 FACS */
    uint32_t dsdt;                   /*  40 */
    uint8_t reserved0;               /*  44 (ACPI 1.0 INT_MODEL) */
    uint8_t preferred_pm_profile;    /*  45 */
    uint16_t sci_int;                /*  46 */
    uint32_t smi_cmd;                /*  48 */
    uint8_t acpi_enable;             /*  52 */
    uint8_t acpi_disable;            /*  53 */
    uint8_t s4bios_req;              /*  54 */
    uint8_t pstate_cnt;              /*  55 */
    uint32_t pm1a_evt_blk;           /*  56 */
    uint32_t pm1b_evt_blk;           /*  60 */
    uint32_t pm1a_cnt_blk;           /*  64 */
    uint32_t pm1b_cnt_blk;           /*  68 */
    uint32_t pm2_cnt_blk;            /*  72 */
    uint32_t pm_tmr_blk;             /*  76 */
    uint32_t gpe0_blk;               /*  80 */
    uint32_t gpe1_blk;               /*  84 */
    uint8_t pm1_evt_len;             /*  88 */
    uint8_t pm1_cnt_len;             /*  89 */
    uint8_t pm2_cnt_len;             /*  90 */
    uint8_t pm_tmr_len;              /*  91 */
    uint8_t gpe0_blk_len;            /*  92 */
    uint8_t gpe1_blk_len;            /*  93 */
    uint8_t gpe1_base;               /*  94 */
    uint8_t cst_cnt;                 /*  95 */
    uint16_t p_lvl2_lat;             /*  96 */
    uint16_t p_lvl3_lat;             /*  98 */
    uint16_t flush_size;             /* 100 */
    uint16_t flush_stride;           /* 102 */
    uint8_t duty_offset;             /* 104 */
    uint8_t duty_width;              /* 105 */
    uint8_t day_alrm;                /* 106 */
    uint8_t mon_alrm;                /* 107 */
    uint8_t century;                 /* 108 */
    uint16_t iapc_boot_arch;         /* 109 */
    uint8_t reserved1;               /* 111 */
    uint32_t flags;                  /* 112 */
    struct acpi_gas reset_reg;       /* 116 */
    uint8_t reset_value;             /* 128 */
    uint16_t arm_boot_arch;          /* 129 */
    uint8_t fadt_minor_version;      /* 131 */
    uint64_t x_firmware_ctrl;        /* 132 */
    uint64_t x_dsdt;                 /* 140 */
    struct acpi_gas x_pm1a_evt_blk;  /* 148 */
    struct acpi_gas x_pm1b_evt_blk;  /* 160 */
    struct acpi_gas x_pm1a_cnt_blk;  /* 172 */
    struct acpi_gas x_pm1b_cnt_blk;  /* 184 */
    struct acpi_gas x_pm2_cnt_blk;   /* 196 */
    struct acpi_gas x_pm_tmr_blk;    /* 208 */
    struct acpi_gas x_gpe0_blk;      /* 220 */
    struct acpi_gas x_gpe1_blk;      /* 232 */
    struct acpi_gas sleep_control_reg; /* 244 */
    struct acpi_gas sleep_status_reg;  /* 256 */
    uint64_t hypervisor_vendor_id;   /* 268 */
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_fadt) == 276, "FADT rev 6 is 276 bytes");
_Static_assert(offsetof(struct acpi_fadt, flags) == 112, "FADT Flags offset");
_Static_assert(offsetof(struct acpi_fadt, x_dsdt) == 140, "FADT X_DSDT offset");
_Static_assert(offsetof(struct acpi_fadt, x_pm_tmr_blk) == 208,
               "FADT X_PM_TMR_BLK offset");

/* Table 5.10 Fixed ACPI Description Table Fixed Feature Flags. */
#define FADT_F_WBINVD         (1u << 0)
#define FADT_F_PROC_C1        (1u << 2)
#define FADT_F_PWR_BUTTON     (1u << 4)   /* set = control-method button */
#define FADT_F_SLP_BUTTON     (1u << 5)   /* set = no fixed sleep button */
#define FADT_F_TMR_VAL_EXT    (1u << 8)   /* set = 32-bit PM timer */
#define FADT_F_RESET_REG_SUP  (1u << 10)
#define FADT_F_HW_REDUCED     (1u << 20)
/* Table 5.11 IA-PC Boot Architecture Flags. */
#define FADT_BOOT_LEGACY_DEVICES (1u << 0)
#define FADT_BOOT_8042           (1u << 1)
/* §5.2.9: a P_LVL2_LAT above 100 / P_LVL3_LAT above 1000 means "no C2/C3". */
#define FADT_NO_C2_LATENCY    101
#define FADT_NO_C3_LATENCY    1001
/* FADT revision 6, minor 5: ACPI 6.5. Linux reads MADT "online capable"
 * flags only from FADT 6.3 on. */
#define FADT_REVISION         6
#define FADT_MINOR_REVISION   5

/* §5.2.10 Firmware ACPI Control Structure, Table 5.14: no checksum, 64-byte
 * aligned, required when the platform is not hardware-reduced. */
struct acpi_facs {
    char signature[4];               /* "FACS" */
    uint32_t length;                 /* 64 */
    uint32_t hardware_signature;
    uint32_t firmware_waking_vector;
    uint32_t global_lock;
    uint32_t flags;
    uint64_t x_firmware_waking_vector;
    uint8_t version;                 /* 2 */
    uint8_t reserved0[3];
    uint32_t ospm_flags;
    uint8_t reserved1[24];
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_facs) == 64, "FACS is 64 bytes");
#define FACS_ALIGN 64
#define FACS_VERSION 2

/* §5.2.12 Multiple APIC Description Table, Table 5.19. */
struct acpi_madt {
    struct acpi_sdt_header header;   /* "APIC" */
    uint32_t local_apic_address;
    uint32_t flags;
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_madt) == 44, "MADT header is 44 bytes");
#define MADT_REVISION       5
#define MADT_PCAT_COMPAT    (1u << 0)    /* Table 5.20: 8259 pair present */

/* §5.2.12.2 Processor Local APIC Structure, Table 5.22/5.23. */
struct madt_lapic {
    uint8_t type;                    /* 0 */
    uint8_t length;                  /* 8 */
    uint8_t acpi_processor_uid;
    uint8_t apic_id;
    uint32_t flags;
} __attribute__((packed));
_Static_assert(sizeof(struct madt_lapic) == 8, "MADT LAPIC is 8 bytes");
#define MADT_LAPIC_ENABLED         (1u << 0)
#define MADT_LAPIC_ONLINE_CAPABLE  (1u << 1)

/* §5.2.12.3 I/O APIC Structure, Table 5.24. */
struct madt_ioapic {
    uint8_t type;                    /* 1 */
    uint8_t length;                  /* 12 */
    uint8_t ioapic_id;
    uint8_t reserved;
    uint32_t ioapic_address;
    uint32_t gsi_base;
} __attribute__((packed));
_Static_assert(sizeof(struct madt_ioapic) == 12, "MADT IOAPIC is 12 bytes");

/* §5.2.12.5 Interrupt Source Override Structure, Table 5.26. */
struct madt_iso {
    uint8_t type;                    /* 2 */
    uint8_t length;                  /* 10 */
    uint8_t bus;                     /* 0 = ISA */
    uint8_t source;                  /* ISA IRQ */
    uint32_t gsi;
    uint16_t flags;                  /* MPS INTI flags, Table 5.27 */
} __attribute__((packed));
_Static_assert(sizeof(struct madt_iso) == 10, "MADT ISO is 10 bytes");
/* Table 5.27 MPS INTI Flags: polarity bits 0-1, trigger mode bits 2-3. */
#define MPS_INTI_POLARITY_HIGH  0x1
#define MPS_INTI_TRIGGER_EDGE   (0x1 << 2)
#define MPS_INTI_TRIGGER_LEVEL  (0x3 << 2)

/* §5.2.12.7 Local APIC NMI Structure, Table 5.30. */
struct madt_lapic_nmi {
    uint8_t type;                    /* 4 */
    uint8_t length;                  /* 6 */
    uint8_t acpi_processor_uid;      /* 0xFF: all processors */
    uint16_t flags;
    uint8_t lint;
} __attribute__((packed));
_Static_assert(sizeof(struct madt_lapic_nmi) == 6, "MADT LAPIC NMI is 6 bytes");

/* §5.2.12.12 Processor Local x2APIC Structure, Table 5.36. */
struct madt_x2apic {
    uint8_t type;                    /* 9 */
    uint8_t length;                  /* 16 */
    uint16_t reserved;
    uint32_t x2apic_id;
    uint32_t flags;                  /* as madt_lapic */
    uint32_t acpi_processor_uid;
} __attribute__((packed));
_Static_assert(sizeof(struct madt_x2apic) == 16, "MADT x2APIC is 16 bytes");

/* §5.2.12.13 Local x2APIC NMI Structure, Table 5.37. */
struct madt_x2apic_nmi {
    uint8_t type;                    /* 0x0A */
    uint8_t length;                  /* 12 */
    uint16_t flags;
    uint32_t acpi_processor_uid;     /* 0xFFFFFFFF: all processors */
    uint8_t lint;
    uint8_t reserved[3];
} __attribute__((packed));
_Static_assert(sizeof(struct madt_x2apic_nmi) == 12,
               "MADT x2APIC NMI is 12 bytes");

enum {
    MADT_TYPE_LAPIC = 0,
    MADT_TYPE_IOAPIC = 1,
    MADT_TYPE_ISO = 2,
    MADT_TYPE_LAPIC_NMI = 4,
    MADT_TYPE_X2APIC = 9,
    MADT_TYPE_X2APIC_NMI = 10,
};

/* APIC IDs from 255 up need x2APIC entries; 0xFF is the xAPIC broadcast. */
#define XAPIC_MAX_ID 254

#define DSDT_REVISION 2          /* 2+: AML integers are 64-bit (§5.2.11.1) */

/* Tables listed in the RSDT/XSDT: FADT, MADT and, with PCI, MCFG. */
#define ACPI_MAX_ROOT_ENTRIES 4

/* PCI Firmware Specification 3.0 §4.1.2 MCFG: the header, 8 reserved bytes,
 * then one allocation per ECAM range (Table 4-3). */
struct acpi_mcfg_alloc {
    uint64_t base_address;
    uint16_t segment;
    uint8_t start_bus;
    uint8_t end_bus;
    uint32_t reserved;
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_mcfg_alloc) == 16, "MCFG allocation is 16 bytes");
#define MCFG_SIZE (sizeof(struct acpi_sdt_header) + 8 + sizeof(struct acpi_mcfg_alloc))
#define MCFG_REVISION 1
_Static_assert(LAYOUT_PCI_ECAM_SIZE == 32 * 8 * 4096, "ECAM covers exactly bus 0");
_Static_assert(LAYOUT_PCI_ECAM_BASE % (1 << 20) == 0, "ECAM is 1 MiB aligned");
_Static_assert(LAYOUT_PCI_ECAM_BASE >= LAYOUT_PCI_MMIO_BASE + LAYOUT_PCI_MMIO_SIZE ||
               LAYOUT_PCI_ECAM_BASE + LAYOUT_PCI_ECAM_SIZE <= LAYOUT_PCI_MMIO_BASE,
               "ECAM is outside the PCI memory window");
_Static_assert(LAYOUT_PCI_MMIO_BASE + LAYOUT_PCI_MMIO_SIZE <= LAYOUT_TESTDEV_MMIO,
               "the PCI memory window stays below the fixed MMIO devices");

static uint8_t acpi_checksum(const uint8_t *p, size_t n)
{
    uint8_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum = (uint8_t)(sum + p[i]);
    return (uint8_t)(0x100 - sum);
}

/* The checksum byte sits at offset 9 of every SDT header (§5.2.6). */
static void acpi_table_finish(uint8_t *table)
{
    struct acpi_sdt_header h;
    memcpy(&h, table, sizeof h);
    table[offsetof(struct acpi_sdt_header, checksum)] = 0;
    table[offsetof(struct acpi_sdt_header, checksum)] =
        acpi_checksum(table, h.length);
}

static void acpi_header_init(struct acpi_sdt_header *h, const char sig[4],
                             uint32_t length, uint8_t revision)
{
    memset(h, 0, sizeof *h);
    memcpy(h->signature, sig, 4);
    h->length = length;
    h->revision = revision;
    memcpy(h->oem_id, ACPI_OEM_ID, 6);
    memcpy(h->oem_table_id, ACPI_OEM_TABLE_ID, 8);
    h->oem_revision = ACPI_OEM_REVISION;
    memcpy(h->creator_id, ACPI_CREATOR_ID, 4);
    h->creator_revision = ACPI_CREATOR_REV;
}

/* Place size bytes at the next align-aligned offset; -ENOSPC past cap. */
static int acpi_alloc(size_t *cursor, size_t cap, size_t size, size_t align,
                      size_t *off)
{
    size_t start = (*cursor + align - 1) & ~(align - 1);
    if (start < *cursor || start > cap || size > cap - start)
        return -ENOSPC;
    *off = start;
    *cursor = start + size;
    return 0;
}

static unsigned acpi_cpu_slots(const struct acpi_config *cfg)
{
    return cfg->max_cpus > cfg->ncpus ? cfg->max_cpus : cfg->ncpus;
}

static int acpi_check_config(const struct acpi_config *cfg, uint64_t buf_gpa,
                             size_t buf_size)
{
    if (!cfg->ncpus || !cfg->apic_ids)
        return -EINVAL;
    if (cfg->ioapic_id > 0xFF || cfg->ioapic_addr > UINT32_MAX - 0xFFF)
        return -EINVAL;
    /* The RSDP must sit on a 16-byte boundary and all tables below 4 GiB
     * (RSDT entries and FIRMWARE_CTRL are 32-bit). */
    if (buf_gpa & 0xF || buf_gpa > 0x100000000ULL ||
        buf_size > 0x100000000ULL - buf_gpa)
        return -EINVAL;
    return 0;
}

static int acpi_check_apic_ids(const struct acpi_config *cfg)
{
    unsigned n = acpi_cpu_slots(cfg);
    for (unsigned i = 0; i < n; i++) {
        uint32_t id = cfg->apic_ids[i];
        if (id == cfg->ioapic_id)
            return -EINVAL;
        /* xAPIC entries carry an 8-bit UID; 0xFF means "all" in the NMI
         * entry, so such a CPU's UID must stay below it. */
        if (id <= XAPIC_MAX_ID && i > 0xFE)
            return -EINVAL;
        if (id == UINT32_MAX)         /* x2APIC broadcast */
            return -EINVAL;
        for (unsigned j = 0; j < i; j++)
            if (cfg->apic_ids[j] == id)
                return -EINVAL;
    }
    return 0;
}

static size_t acpi_madt_size(const struct acpi_config *cfg, bool *need_x2nmi)
{
    unsigned n = acpi_cpu_slots(cfg);
    size_t size = sizeof(struct acpi_madt);
    *need_x2nmi = false;
    for (unsigned i = 0; i < n; i++) {
        if (cfg->apic_ids[i] <= XAPIC_MAX_ID) {
            size += sizeof(struct madt_lapic);
        } else {
            size += sizeof(struct madt_x2apic);
            *need_x2nmi = true;
        }
    }
    size += sizeof(struct madt_ioapic) + 2 * sizeof(struct madt_iso) +
            sizeof(struct madt_lapic_nmi);
    if (*need_x2nmi)
        size += sizeof(struct madt_x2apic_nmi);
    return size;
}

static void acpi_build_madt(uint8_t *t, size_t size, bool need_x2nmi,
                            const struct acpi_config *cfg)
{
    struct acpi_madt madt;
    acpi_header_init(&madt.header, "APIC", (uint32_t)size, MADT_REVISION);
    madt.local_apic_address = (uint32_t)LAYOUT_LAPIC_BASE;
    madt.flags = MADT_PCAT_COMPAT;
    memcpy(t, &madt, sizeof madt);
    size_t off = sizeof madt;

    /* One entry per vCPU, boot CPU first: Linux numbers CPUs in MADT order.
     * Present CPUs are enabled; the rest up to max_cpus are online capable
     * (Table 5.23). */
    unsigned n = acpi_cpu_slots(cfg);
    for (unsigned i = 0; i < n; i++) {
        uint32_t flags = i < cfg->ncpus ? MADT_LAPIC_ENABLED
                                        : MADT_LAPIC_ONLINE_CAPABLE;
        uint32_t id = cfg->apic_ids[i];
        if (id <= XAPIC_MAX_ID) {
            struct madt_lapic e = {
                .type = MADT_TYPE_LAPIC, .length = sizeof e,
                .acpi_processor_uid = (uint8_t)i, .apic_id = (uint8_t)id,
                .flags = flags,
            };
            memcpy(t + off, &e, sizeof e);
            off += sizeof e;
        } else {
            struct madt_x2apic e = {
                .type = MADT_TYPE_X2APIC, .length = sizeof e,
                .x2apic_id = id, .flags = flags, .acpi_processor_uid = i,
            };
            memcpy(t + off, &e, sizeof e);
            off += sizeof e;
        }
    }

    /* The one IOAPIC takes GSIs 0-23 (§5.2.13 global system interrupts). */
    struct madt_ioapic io = {
        .type = MADT_TYPE_IOAPIC, .length = sizeof io,
        .ioapic_id = (uint8_t)cfg->ioapic_id,
        .ioapic_address = (uint32_t)cfg->ioapic_addr, .gsi_base = 0,
    };
    memcpy(t + off, &io, sizeof io);
    off += sizeof io;

    /* ISA IRQs are identity-mapped to GSIs except these (§5.2.12.5): the
     * PIT's IRQ0 is wired to IOAPIC pin 2, and the SCI is level-triggered,
     * active high, unlike the ISA default (edge). */
    struct madt_iso isos[2] = {
        { .type = MADT_TYPE_ISO, .length = sizeof(struct madt_iso),
          .bus = 0, .source = 0, .gsi = 2,
          .flags = MPS_INTI_POLARITY_HIGH | MPS_INTI_TRIGGER_EDGE },
        { .type = MADT_TYPE_ISO, .length = sizeof(struct madt_iso),
          .bus = 0, .source = ACPI_SCI_IRQ, .gsi = ACPI_SCI_IRQ,
          .flags = MPS_INTI_POLARITY_HIGH | MPS_INTI_TRIGGER_LEVEL },
    };
    memcpy(t + off, isos, sizeof isos);
    off += sizeof isos;

    /* NMI arrives on LINT1 of every processor (§5.2.12.7, UID 0xFF = all),
     * as on PC hardware; the flags say "conforms to the bus". */
    struct madt_lapic_nmi nmi = {
        .type = MADT_TYPE_LAPIC_NMI, .length = sizeof nmi,
        .acpi_processor_uid = 0xFF, .flags = 0, .lint = 1,
    };
    memcpy(t + off, &nmi, sizeof nmi);
    off += sizeof nmi;
    if (need_x2nmi) {
        struct madt_x2apic_nmi x2nmi = {
            .type = MADT_TYPE_X2APIC_NMI, .length = sizeof x2nmi,
            .flags = 0, .acpi_processor_uid = UINT32_MAX, .lint = 1,
        };
        memcpy(t + off, &x2nmi, sizeof x2nmi);
        off += sizeof x2nmi;
    }
    (void)off;   /* == size, checked by the caller's sizing */
    acpi_table_finish(t);
}

static void acpi_build_fadt(uint8_t *t, uint64_t facs_gpa, uint64_t dsdt_gpa,
                            const struct acpi_config *cfg)
{
    struct acpi_fadt f;
    memset(&f, 0, sizeof f);
    acpi_header_init(&f.header, "FACP", sizeof f, FADT_REVISION);
    f.fadt_minor_version = FADT_MINOR_REVISION;

    /* FIRMWARE_CTRL and X_FIRMWARE_CTRL are exclusive (§5.2.9: one of them
     * must be zero); the FACS is below 4 GiB, so the 32-bit field. The DSDT
     * goes in both: X_DSDT wins for ACPI 2.0+ OSes, older ones read DSDT. */
    f.firmware_ctrl = (uint32_t)facs_gpa;
    f.x_firmware_ctrl = 0;
    f.dsdt = (uint32_t)dsdt_gpa;
    f.x_dsdt = dsdt_gpa;

    f.preferred_pm_profile = 0;              /* unspecified */
    f.sci_int = ACPI_SCI_IRQ;
    /* SMI_CMD = 0: no SMM, the platform is always in ACPI mode (§5.2.9,
     * §4.8.2.1: SCI_EN reads as 1). ACPI_ENABLE/DISABLE are then unused. */
    f.smi_cmd = 0;

    /* PM1a event (status+enable, 2x16 bits), PM1a control (16 bits) and
     * the 24-bit PM timer, as I/O ports (§4.8.3). No PM1b, PM2 or GPE
     * blocks. */
    f.pm1a_evt_blk = PORT_ACPI_PM1A_EVT;
    f.pm1_evt_len = 4;
    f.pm1a_cnt_blk = PORT_ACPI_PM1A_CNT;
    f.pm1_cnt_len = 2;
    f.pm_tmr_blk = PORT_ACPI_PM_TMR;
    f.pm_tmr_len = 4;
    f.x_pm1a_evt_blk = (struct acpi_gas){ ACPI_GAS_SYSTEM_IO, 32, 0,
                                          ACPI_GAS_ACCESS_WORD,
                                          PORT_ACPI_PM1A_EVT };
    f.x_pm1a_cnt_blk = (struct acpi_gas){ ACPI_GAS_SYSTEM_IO, 16, 0,
                                          ACPI_GAS_ACCESS_WORD,
                                          PORT_ACPI_PM1A_CNT };
    f.x_pm_tmr_blk = (struct acpi_gas){ ACPI_GAS_SYSTEM_IO, 32, 0,
                                        ACPI_GAS_ACCESS_DWORD,
                                        PORT_ACPI_PM_TMR };

    f.p_lvl2_lat = FADT_NO_C2_LATENCY;
    f.p_lvl3_lat = FADT_NO_C3_LATENCY;
    f.century = 0;                           /* no CMOS century register */

    f.iapc_boot_arch = cfg->has_i8042
        ? (uint16_t)(FADT_BOOT_LEGACY_DEVICES | FADT_BOOT_8042) : 0;

    /* PWR_BUTTON clear: the power button is the fixed-feature one in PM1.
     * SLP_BUTTON set: there is no sleep button. TMR_VAL_EXT clear: 24-bit
     * timer. HW_REDUCED_ACPI clear. */
    f.flags = FADT_F_WBINVD | FADT_F_PROC_C1 | FADT_F_SLP_BUTTON |
              FADT_F_RESET_REG_SUP;

    /* §4.8.3.6 Reset Register: one byte write of RESET_VALUE to 0xCF9. */
    f.reset_reg = (struct acpi_gas){ ACPI_GAS_SYSTEM_IO, 8, 0,
                                     ACPI_GAS_ACCESS_BYTE,
                                     PORT_RESET_CONTROL };
    f.reset_value = ACPI_RESET_VALUE;

    memcpy(t, &f, sizeof f);
    acpi_table_finish(t);
}

static void acpi_dsdt_add_com1(struct aml_buf *b)
{
    /* Device(COM1): a 16550 (PNP0501) at 0x3F8, IRQ 4, always present.
     * _STA 0x0F: present, enabled, shown in UI, functioning (§6.3.7). */
    uint8_t res[32];
    struct aml_buf r;
    aml_buf_init(&r, res, sizeof res);
    aml_res_io(&r, PORT_COM1, PORT_COM1, 0x00, 8);
    aml_res_irq(&r, IRQ_COM1);
    aml_res_end_tag(&r);
    if (aml_buf_error(&r)) {
        b->err = b->err ? b->err : aml_buf_error(&r);
        return;
    }

    size_t dev = aml_device_begin(b, "COM1");
    aml_emit_name(b, "_HID");
    aml_emit_eisaid(b, "PNP0501");
    aml_emit_name(b, "_UID");
    aml_emit_integer(b, 1);
    aml_emit_name(b, "_STA");
    aml_emit_integer(b, 0x0F);
    aml_emit_name(b, "_CRS");
    aml_emit_buffer(b, res, r.len);
    aml_end(b, dev);
}

/* §6.4.3.5 Address Space Descriptors for a bridge window: ResourceProducer
 * (general flags bit 0 clear), positive decode, _MIF and _MAF set (bits 2
 * and 3: the window is fixed), granularity and translation 0. */
#define ACPI_RES_ADDR_PRODUCER_FIXED 0x0C
enum { ACPI_RES_TYPE_MEM = 0, ACPI_RES_TYPE_IO = 1, ACPI_RES_TYPE_BUS = 2 };

static void acpi_res_le(struct aml_buf *r, uint64_t v, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        aml_emit_byte(r, (uint8_t)(v >> (8 * i)));
}

/* §6.4.3.5.3 Word Address Space Descriptor (type 0x88, 13 data bytes). */
static void acpi_res_word(struct aml_buf *r, uint8_t type, uint8_t tflags, uint16_t min,
                          uint16_t max)
{
    aml_emit_byte(r, 0x88);
    acpi_res_le(r, 0x0D, 2);
    aml_emit_byte(r, type);
    aml_emit_byte(r, ACPI_RES_ADDR_PRODUCER_FIXED);
    aml_emit_byte(r, tflags);
    acpi_res_le(r, 0, 2);                           /* granularity */
    acpi_res_le(r, min, 2);
    acpi_res_le(r, max, 2);
    acpi_res_le(r, 0, 2);                           /* translation */
    acpi_res_le(r, (uint32_t)max - min + 1, 2);
}

/* §6.4.3.5.2 DWord Address Space Descriptor (type 0x87, 23 data bytes):
 * memory, read-write, non-cacheable (type-specific flags 0x01, Table 6.50). */
static void acpi_res_dword_mem(struct aml_buf *r, uint32_t min, uint32_t max)
{
    aml_emit_byte(r, 0x87);
    acpi_res_le(r, 0x17, 2);
    aml_emit_byte(r, ACPI_RES_TYPE_MEM);
    aml_emit_byte(r, ACPI_RES_ADDR_PRODUCER_FIXED);
    aml_emit_byte(r, 0x01);
    acpi_res_le(r, 0, 4);                           /* granularity */
    acpi_res_le(r, min, 4);
    acpi_res_le(r, max, 4);
    acpi_res_le(r, 0, 4);                           /* translation */
    acpi_res_le(r, (uint64_t)max - min + 1, 4);
}

/* §6.4.3.4 32-Bit Fixed Memory Range Descriptor (type 0x86), read-write. */
static void acpi_res_mem32_fixed(struct aml_buf *r, uint32_t base, uint32_t len)
{
    aml_emit_byte(r, 0x86);
    acpi_res_le(r, 0x09, 2);
    aml_emit_byte(r, 0x01);
    acpi_res_le(r, base, 4);
    acpi_res_le(r, len, 4);
}

static void acpi_emit_crs(struct aml_buf *b, const struct aml_buf *r)
{
    if (aml_buf_error(r)) {
        b->err = b->err ? b->err : aml_buf_error(r);
        return;
    }
    aml_emit_name(b, "_CRS");
    aml_emit_buffer(b, r->data, r->len);
}

/* \_SB.PCI0: the PCI Express root bridge of segment 0, bus 0 (ACPI 6.5
 * §6.1.1 _HID PNP0A08 with the conventional PNP0A03 as _CID so pre-PCIe
 * OSes bind too; PCI Firmware Spec 3.0 §4.1.5). Its _CRS lists what it
 * forwards: bus 0, the config ports, the I/O ranges around them (as QEMU's
 * pc) and the 32-bit memory window; _PRT routes INTx straight to IOAPIC
 * GSIs (§6.2.13: Source 0, SourceIndex = GSI, implying level/active-low)
 * with the slot swizzle of LAYOUT_PCI_INTX_GSI. */
static void acpi_dsdt_add_pci0(struct aml_buf *b)
{
    uint8_t res[128];
    struct aml_buf r;
    aml_buf_init(&r, res, sizeof res);
    acpi_res_word(&r, ACPI_RES_TYPE_BUS, 0, 0, 0);
    aml_res_io(&r, PORT_PCI_CONFIG_ADDRESS, PORT_PCI_CONFIG_ADDRESS, 0x01, 0x08);
    acpi_res_word(&r, ACPI_RES_TYPE_IO, 0x03, 0x0000, PORT_PCI_CONFIG_ADDRESS - 1);
    acpi_res_word(&r, ACPI_RES_TYPE_IO, 0x03, PORT_PCI_CONFIG_ADDRESS + 8, 0xFFFF);
    acpi_res_dword_mem(&r, (uint32_t)LAYOUT_PCI_MMIO_BASE,
                       (uint32_t)(LAYOUT_PCI_MMIO_BASE + LAYOUT_PCI_MMIO_SIZE - 1));
    aml_res_end_tag(&r);

    size_t dev = aml_device_begin(b, "PCI0");
    aml_emit_name(b, "_HID");
    aml_emit_eisaid(b, "PNP0A08");
    aml_emit_name(b, "_CID");
    aml_emit_eisaid(b, "PNP0A03");
    /* no _ADR: a device has _HID or _ADR, not both (§6.1) */
    aml_emit_name(b, "_SEG");
    aml_emit_integer(b, 0);
    aml_emit_name(b, "_BBN");
    aml_emit_integer(b, 0);
    aml_emit_name(b, "_UID");
    aml_emit_integer(b, 0);
    acpi_emit_crs(b, &r);

    aml_emit_name(b, "_PRT");
    size_t prt = aml_package_begin(b, LAYOUT_PCI_SLOTS * 4);
    for (unsigned slot = 0; slot < LAYOUT_PCI_SLOTS; slot++) {
        for (unsigned pin = 0; pin < 4; pin++) {
            size_t e = aml_package_begin(b, 4);
            aml_emit_integer(b, (uint64_t)slot << 16 | 0xFFFF);  /* any function */
            aml_emit_integer(b, pin);
            aml_emit_integer(b, 0);
            aml_emit_integer(b, LAYOUT_PCI_INTX_GSI(slot, pin));
            aml_end(b, e);
        }
    }
    aml_end(b, prt);
    aml_end(b, dev);
}

/* The ECAM range must be a reserved motherboard resource or Linux refuses
 * MMCONFIG (arch/x86/pci/mmconfig-shared.c checks PNP0C01/PNP0C02 _CRS
 * before falling back to e820; PCI Firmware Spec 3.0 §4.1.2 note). */
static void acpi_dsdt_add_ecam_reservation(struct aml_buf *b)
{
    uint8_t res[16];
    struct aml_buf r;
    aml_buf_init(&r, res, sizeof res);
    acpi_res_mem32_fixed(&r, (uint32_t)LAYOUT_PCI_ECAM_BASE, (uint32_t)LAYOUT_PCI_ECAM_SIZE);
    aml_res_end_tag(&r);

    size_t dev = aml_device_begin(b, "MRES");
    aml_emit_name(b, "_HID");
    aml_emit_eisaid(b, "PNP0C02");
    aml_emit_name(b, "_UID");
    aml_emit_integer(b, 1);
    acpi_emit_crs(b, &r);
    aml_end(b, dev);
}

static void acpi_build_mcfg(uint8_t *t)
{
    struct acpi_sdt_header h;
    acpi_header_init(&h, "MCFG", MCFG_SIZE, MCFG_REVISION);
    memcpy(t, &h, sizeof h);
    memset(t + sizeof h, 0, 8);
    struct acpi_mcfg_alloc a = {
        .base_address = LAYOUT_PCI_ECAM_BASE, .segment = 0, .start_bus = 0, .end_bus = 0,
    };
    memcpy(t + sizeof h + 8, &a, sizeof a);
    acpi_table_finish(t);
}

static void acpi_dsdt_body(struct aml_buf *b, const struct acpi_config *cfg)
{
    /* \_S5 (§7.4.2.5): Package {PM1a_CNT.SLP_TYP, PM1b_CNT.SLP_TYP,
     * reserved, reserved}. OSPM writes SLP_TYP | SLP_EN to PM1a control to
     * power off. */
    aml_emit_name(b, "\\_S5");
    size_t pkg = aml_package_begin(b, 4);
    aml_emit_integer(b, ACPI_S5_SLP_TYP);
    aml_emit_integer(b, ACPI_S5_SLP_TYP);
    aml_emit_integer(b, 0);
    aml_emit_integer(b, 0);
    aml_end(b, pkg);

    size_t sb = aml_scope_begin(b, "\\_SB");
    acpi_dsdt_add_com1(b);
    if (cfg->pci) {
        acpi_dsdt_add_pci0(b);
        acpi_dsdt_add_ecam_reservation(b);
    }
    aml_end(b, sb);
}

int acpi_build(uint8_t *buf, size_t buf_size, uint64_t buf_gpa,
               const struct acpi_config *cfg, size_t *used)
{
    if (!buf || !cfg || !used)
        return -EINVAL;
    int ret = acpi_check_config(cfg, buf_gpa, buf_size);
    if (ret < 0)
        return ret;

    bool need_x2nmi;
    size_t madt_size = acpi_madt_size(cfg, &need_x2nmi);
    /* Size before the O(n^2) ID check so a huge ncpus fails fast. */
    if (madt_size > buf_size || madt_size > UINT32_MAX)
        return -ENOSPC;
    ret = acpi_check_apic_ids(cfg);
    if (ret < 0)
        return ret;

    /* Layout: RSDP at 0, then RSDT, XSDT, FADT, FACS (64-aligned), MADT,
     * DSDT. Tables are 16-byte aligned (not required, tidy for dumps). */
    unsigned nroot = cfg->pci ? 3 : 2;        /* FADT, MADT[, MCFG] */
    size_t cur = 0, rsdp_off, rsdt_off, xsdt_off, fadt_off, facs_off,
           madt_off, mcfg_off = 0, dsdt_off;
    size_t rsdt_size = sizeof(struct acpi_sdt_header) + 4 * nroot;
    size_t xsdt_size = sizeof(struct acpi_sdt_header) + 8 * nroot;
    if (acpi_alloc(&cur, buf_size, sizeof(struct acpi_rsdp), 16, &rsdp_off) ||
        acpi_alloc(&cur, buf_size, rsdt_size, 16, &rsdt_off) ||
        acpi_alloc(&cur, buf_size, xsdt_size, 16, &xsdt_off) ||
        acpi_alloc(&cur, buf_size, sizeof(struct acpi_fadt), 16, &fadt_off) ||
        acpi_alloc(&cur, buf_size, sizeof(struct acpi_facs), FACS_ALIGN,
                   &facs_off) ||
        acpi_alloc(&cur, buf_size, madt_size, 16, &madt_off) ||
        (cfg->pci && acpi_alloc(&cur, buf_size, MCFG_SIZE, 16, &mcfg_off)) ||
        acpi_alloc(&cur, buf_size, sizeof(struct acpi_sdt_header), 16,
                   &dsdt_off))
        return -ENOSPC;

    memset(buf, 0, buf_size);

    /* DSDT: header, then AML up to the end of the buffer. */
    struct aml_buf aml;
    uint8_t *dsdt = buf + dsdt_off;
    aml_buf_init(&aml, dsdt + sizeof(struct acpi_sdt_header),
                 buf_size - cur);
    acpi_dsdt_body(&aml, cfg);
    if (aml_buf_error(&aml))
        return aml_buf_error(&aml) == -ENOSPC ? -ENOSPC : -EINVAL;
    size_t dsdt_size = sizeof(struct acpi_sdt_header) + aml.len;
    struct acpi_sdt_header h;
    acpi_header_init(&h, "DSDT", (uint32_t)dsdt_size, DSDT_REVISION);
    memcpy(dsdt, &h, sizeof h);
    acpi_table_finish(dsdt);
    cur += aml.len;

    /* FACS (§5.2.10): version 2, no global lock, no S4BIOS, no 64-bit wake. */
    struct acpi_facs facs;
    memset(&facs, 0, sizeof facs);
    memcpy(facs.signature, "FACS", 4);
    facs.length = sizeof facs;
    facs.version = FACS_VERSION;
    memcpy(buf + facs_off, &facs, sizeof facs);

    acpi_build_fadt(buf + fadt_off, buf_gpa + facs_off, buf_gpa + dsdt_off,
                    cfg);
    acpi_build_madt(buf + madt_off, madt_size, need_x2nmi, cfg);
    if (cfg->pci)
        acpi_build_mcfg(buf + mcfg_off);

    /* RSDT (§5.2.7, 32-bit entries) and XSDT (§5.2.8, 64-bit entries). The
     * DSDT and FACS are reached through the FADT, not listed here. */
    uint64_t entries[ACPI_MAX_ROOT_ENTRIES] = {
        buf_gpa + fadt_off, buf_gpa + madt_off, buf_gpa + mcfg_off,
    };
    _Static_assert(ACPI_MAX_ROOT_ENTRIES >= 3, "room for FADT, MADT and MCFG");
    acpi_header_init(&h, "RSDT", (uint32_t)rsdt_size, 1);
    memcpy(buf + rsdt_off, &h, sizeof h);
    acpi_header_init(&h, "XSDT", (uint32_t)xsdt_size, 1);
    memcpy(buf + xsdt_off, &h, sizeof h);
    for (unsigned i = 0; i < nroot; i++) {
        uint32_t e32 = (uint32_t)entries[i];
        memcpy(buf + rsdt_off + sizeof h + 4 * i, &e32, 4);
        memcpy(buf + xsdt_off + sizeof h + 8 * i, &entries[i], 8);
    }
    acpi_table_finish(buf + rsdt_off);
    acpi_table_finish(buf + xsdt_off);

    /* RSDP (§5.2.5.3): revision 2, both checksums. */
    struct acpi_rsdp rsdp;
    memset(&rsdp, 0, sizeof rsdp);
    memcpy(rsdp.signature, "RSD PTR ", 8);
    memcpy(rsdp.oem_id, ACPI_OEM_ID, 6);
    rsdp.revision = 2;
    rsdp.rsdt_address = (uint32_t)(buf_gpa + rsdt_off);
    rsdp.length = sizeof rsdp;
    rsdp.xsdt_address = buf_gpa + xsdt_off;
    memcpy(buf + rsdp_off, &rsdp, sizeof rsdp);
    buf[rsdp_off + offsetof(struct acpi_rsdp, checksum)] =
        acpi_checksum(buf + rsdp_off, ACPI_RSDP_V1_LEN);
    buf[rsdp_off + offsetof(struct acpi_rsdp, extended_checksum)] =
        acpi_checksum(buf + rsdp_off, sizeof rsdp);

    *used = cur;
    return 0;
}
