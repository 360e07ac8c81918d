/* Unit tests for the ACPI tables: build, then parse back with the spec's
 * byte offsets (ACPI 6.5 §5.2), independent of acpi.c's structs. */
#include "arch/x86/acpi.h"
#include "arch/x86/layout.h"
#include "test.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) { return rd16(p) | (uint32_t)rd16(p + 2) << 16; }
static uint64_t rd64(const uint8_t *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }

static uint8_t sum8(const uint8_t *p, size_t n)
{
    uint8_t s = 0;
    for (size_t i = 0; i < n; i++)
        s = (uint8_t)(s + p[i]);
    return s;
}

#define GPA LAYOUT_ACPI_START

struct parsed {
    uint8_t *buf;
    size_t used;
    const uint8_t *rsdt, *xsdt, *fadt, *madt, *dsdt, *facs, *mcfg;
};

/* Host pointer for a table at gpa, or NULL if [gpa, gpa+len) is not inside
 * the used part of the buffer. */
static const uint8_t *at(const struct parsed *p, uint64_t gpa, uint64_t len)
{
    if (gpa < GPA || gpa - GPA > p->used || len > p->used - (gpa - GPA))
        return NULL;
    return p->buf + (gpa - GPA);
}

/* A table at gpa whose length fits and whose checksum is zero. */
static const uint8_t *table_at(const struct parsed *p, uint64_t gpa)
{
    const uint8_t *t = at(p, gpa, 36);
    if (!t)
        return NULL;
    uint32_t len = rd32(t + 4);
    if (len < 36 || !at(p, gpa, len) || sum8(t, len) != 0)
        return NULL;
    return t;
}

/* Checks everything common to all builds; 0 on success, else the line. */
static int parse(struct parsed *p)
{
    const uint8_t *r = p->buf;
    if (GPA % 16 || memcmp(r, "RSD PTR ", 8) != 0)
        return __LINE__;
    if (sum8(r, 20) != 0 || r[15] != 2 || rd32(r + 20) != 36 ||
        sum8(r, 36) != 0)
        return __LINE__;
    p->rsdt = table_at(p, rd32(r + 16));
    p->xsdt = table_at(p, rd64(r + 24));
    if (!p->rsdt || !p->xsdt || memcmp(p->rsdt, "RSDT", 4) ||
        memcmp(p->xsdt, "XSDT", 4))
        return __LINE__;
    uint32_t nx = (rd32(p->xsdt + 4) - 36) / 8;
    uint32_t nr = (rd32(p->rsdt + 4) - 36) / 4;
    if (nx != nr || nx < 2 || rd32(p->xsdt + 4) != 36 + 8 * nx)
        return __LINE__;
    for (uint32_t i = 0; i < nx; i++) {
        uint64_t a = rd64(p->xsdt + 36 + 8 * i);
        if (a != rd32(p->rsdt + 36 + 4 * i))
            return __LINE__;
        const uint8_t *t = table_at(p, a);
        if (!t)
            return __LINE__;
        if (!memcmp(t, "FACP", 4))
            p->fadt = t;
        else if (!memcmp(t, "APIC", 4))
            p->madt = t;
        else if (!memcmp(t, "MCFG", 4) && !p->mcfg)
            p->mcfg = t;
        else
            return __LINE__;
    }
    if (!p->fadt || !p->madt)
        return __LINE__;
    /* DSDT via both FADT pointers, FACS via FIRMWARE_CTRL */
    if (rd32(p->fadt + 40) != rd64(p->fadt + 140))
        return __LINE__;
    p->dsdt = table_at(p, rd64(p->fadt + 140));
    if (!p->dsdt || memcmp(p->dsdt, "DSDT", 4))
        return __LINE__;
    uint32_t facs = rd32(p->fadt + 36);
    p->facs = at(p, facs, 64);
    if (!p->facs || facs % 64 || memcmp(p->facs, "FACS", 4) ||
        rd32(p->facs + 4) != 64 || rd64(p->fadt + 132) != 0)
        return __LINE__;
    return 0;
}

static int build(struct parsed *p, const struct acpi_config *cfg)
{
    memset(p, 0, sizeof *p);
    p->buf = malloc(LAYOUT_ACPI_SIZE);
    if (!p->buf)
        return -ENOMEM;
    memset(p->buf, 0xAA, LAYOUT_ACPI_SIZE);
    int ret = acpi_build(p->buf, LAYOUT_ACPI_SIZE, GPA, cfg, &p->used);
    if (ret == 0 && p->used > LAYOUT_ACPI_SIZE)
        ret = -EOVERFLOW;
    return ret;
}

static void apic_ids_linear(uint32_t *ids, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        ids[i] = i;
}

TEST(test_rsdp_and_tables)
{
    uint32_t ids[1] = { 0 };
    struct acpi_config cfg = { .ncpus = 1, .apic_ids = ids,
                               .ioapic_addr = LAYOUT_IOAPIC_BASE,
                               .ioapic_id = 1 };
    struct parsed p;
    CHECK_EQ(build(&p, &cfg), 0);
    int line = parse(&p);
    free(p.buf);
    CHECK_EQ(line, 0);
}

TEST(test_fadt_fields)
{
    uint32_t ids[2] = { 0, 1 };
    struct acpi_config cfg = { .ncpus = 2, .apic_ids = ids,
                               .ioapic_addr = LAYOUT_IOAPIC_BASE,
                               .ioapic_id = 2 };
    struct parsed p;
    CHECK_EQ(build(&p, &cfg), 0);
    int line = parse(&p);
    uint8_t f[276];
    memcpy(f, p.fadt, sizeof f);
    uint32_t fadt_len = rd32(p.fadt + 4);
    free(p.buf);
    CHECK_EQ(line, 0);

    CHECK_EQ(fadt_len, 276);
    CHECK_EQ(f[8], 6);                          /* revision */
    CHECK_EQ(f[131], 5);                        /* minor revision */
    CHECK_EQ(rd16(f + 46), ACPI_SCI_IRQ);
    CHECK_EQ(rd32(f + 48), 0);                  /* SMI_CMD */
    CHECK_EQ(rd32(f + 56), 0x600);              /* PM1a_EVT_BLK */
    CHECK_EQ(rd32(f + 60), 0);                  /* PM1b_EVT_BLK */
    CHECK_EQ(rd32(f + 64), 0x604);              /* PM1a_CNT_BLK */
    CHECK_EQ(rd32(f + 76), 0x608);              /* PM_TMR_BLK */
    CHECK_EQ(rd32(f + 80), 0);                  /* GPE0_BLK */
    CHECK_EQ(f[88], 4);                         /* PM1_EVT_LEN */
    CHECK_EQ(f[89], 2);                         /* PM1_CNT_LEN */
    CHECK_EQ(f[91], 4);                         /* PM_TMR_LEN */
    CHECK(rd16(f + 96) > 100);                  /* no C2 */
    CHECK(rd16(f + 98) > 1000);                 /* no C3 */
    CHECK_EQ(rd16(f + 109), 0);                 /* IAPC_BOOT_ARCH */
    uint32_t flags = rd32(f + 112);
    CHECK(flags & (1u << 0));                   /* WBINVD */
    CHECK(flags & (1u << 2));                   /* PROC_C1 */
    CHECK(!(flags & (1u << 4)));                /* fixed power button */
    CHECK(flags & (1u << 5));                   /* no sleep button */
    CHECK(!(flags & (1u << 8)));                /* 24-bit timer */
    CHECK(flags & (1u << 10));                  /* RESET_REG_SUP */
    CHECK(!(flags & (1u << 20)));               /* not HW-reduced */
    /* RESET_REG: system I/O, 8 bits, byte access, 0xCF9; value 6 */
    CHECK_EQ(f[116], 1);
    CHECK_EQ(f[117], 8);
    CHECK_EQ(f[118], 0);
    CHECK_EQ(f[119], 1);
    CHECK_EQ(rd64(f + 120), 0xCF9);
    CHECK_EQ(f[128], ACPI_RESET_VALUE);
    /* X_ blocks agree with the 32-bit ones, widths = 8 * LEN */
    CHECK_EQ(f[148], 1);
    CHECK_EQ(f[149], 32);
    CHECK_EQ(rd64(f + 152), 0x600);
    CHECK_EQ(f[172], 1);
    CHECK_EQ(f[173], 16);
    CHECK_EQ(rd64(f + 176), 0x604);
    CHECK_EQ(f[208], 1);
    CHECK_EQ(f[209], 32);
    CHECK_EQ(rd64(f + 212), 0x608);
    CHECK_EQ(rd64(f + 160 + 4), 0);             /* no X_PM1b_EVT */
    CHECK_EQ(rd64(f + 220 + 4), 0);             /* no X_GPE0 */
    CHECK_EQ(rd64(f + 244 + 4), 0);             /* no sleep control reg */
}

TEST(test_fadt_i8042)
{
    uint32_t ids[1] = { 0 };
    struct acpi_config cfg = { .ncpus = 1, .apic_ids = ids,
                               .ioapic_addr = LAYOUT_IOAPIC_BASE,
                               .ioapic_id = 1, .has_i8042 = true };
    struct parsed p;
    CHECK_EQ(build(&p, &cfg), 0);
    int line = parse(&p);
    uint16_t arch = line ? 0 : rd16(p.fadt + 109);
    free(p.buf);
    CHECK_EQ(line, 0);
    CHECK_EQ(arch, 0x3);                        /* LEGACY_DEVICES | 8042 */
}

struct madt_summary {
    unsigned nlapic, nx2apic, nioapic, niso, nnmi, nx2nmi, nonline_capable;
    int line;                                   /* first problem, or 0 */
};

/* Walk the MADT; check each entry against cfg. */
static struct madt_summary walk_madt(const uint8_t *m,
                                     const struct acpi_config *cfg)
{
    struct madt_summary s = {0};
    uint32_t len = rd32(m + 4);
    if (m[8] < 5 || rd32(m + 36) != 0xFEE00000u || rd32(m + 40) != 1) {
        s.line = __LINE__;
        return s;
    }
    unsigned cpu = 0;
    uint32_t off = 44;
    while (off < len) {
        const uint8_t *e = m + off;
        if (len - off < 2 || e[1] < 2 || e[1] > len - off) {
            s.line = __LINE__;
            return s;
        }
        uint32_t want_flags = cpu < cfg->ncpus ? 1 : 2;
        switch (e[0]) {
        case 0:
            if (e[1] != 8 || e[2] != cpu || e[3] != cfg->apic_ids[cpu] ||
                rd32(e + 4) != want_flags)
                s.line = __LINE__;
            s.nlapic++;
            s.nonline_capable += want_flags == 2;
            cpu++;
            break;
        case 9:
            if (e[1] != 16 || rd32(e + 4) != cfg->apic_ids[cpu] ||
                rd32(e + 8) != want_flags || rd32(e + 12) != cpu)
                s.line = __LINE__;
            s.nx2apic++;
            s.nonline_capable += want_flags == 2;
            cpu++;
            break;
        case 1:
            if (e[1] != 12 || e[2] != cfg->ioapic_id ||
                rd32(e + 4) != cfg->ioapic_addr || rd32(e + 8) != 0)
                s.line = __LINE__;
            s.nioapic++;
            break;
        case 2:
            if (e[1] != 10 || e[2] != 0)
                s.line = __LINE__;
            else if (e[3] == 0 && (rd32(e + 4) != 2 || rd16(e + 8) != 0x5))
                s.line = __LINE__;
            else if (e[3] == 9 && (rd32(e + 4) != 9 || rd16(e + 8) != 0xD))
                s.line = __LINE__;
            else if (e[3] != 0 && e[3] != 9)
                s.line = __LINE__;
            s.niso++;
            break;
        case 4:
            if (e[1] != 6 || e[2] != 0xFF || e[5] != 1)
                s.line = __LINE__;
            s.nnmi++;
            break;
        case 10:
            if (e[1] != 12 || rd32(e + 4) != 0xFFFFFFFFu || e[8] != 1)
                s.line = __LINE__;
            s.nx2nmi++;
            break;
        default:
            s.line = __LINE__;
        }
        if (s.line)
            return s;
        off += e[1];
    }
    if (off != len)
        s.line = __LINE__;
    return s;
}

static void check_madt_for(unsigned ncpus, int *fail_line)
{
    uint32_t ids[255];
    apic_ids_linear(ids, ncpus);
    struct acpi_config cfg = { .ncpus = ncpus, .apic_ids = ids,
                               .ioapic_addr = LAYOUT_IOAPIC_BASE,
                               .ioapic_id = ncpus };
    struct parsed p;
    *fail_line = 0;
    if (build(&p, &cfg) != 0) {
        *fail_line = __LINE__;
        free(p.buf);
        return;
    }
    int line = parse(&p);
    struct madt_summary s = {0};
    if (!line)
        s = walk_madt(p.madt, &cfg);
    free(p.buf);
    if (line || s.line)
        *fail_line = line ? line : s.line;
    else if (s.nlapic != ncpus || s.nx2apic || s.nioapic != 1 ||
             s.niso != 2 || s.nnmi != 1 || s.nx2nmi || s.nonline_capable)
        *fail_line = __LINE__;
}

TEST(test_madt_ncpus)
{
    static const unsigned counts[] = { 1, 2, 4, 64, 255 };
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        int line;
        check_madt_for(counts[i], &line);
        if (line)
            printf("    ncpus=%u: problem at line %d\n", counts[i], line);
        CHECK_EQ(line, 0);
    }
}

TEST(test_madt_sparse_ids_and_max_cpus)
{
    /* 2 sockets x 2 cores with a gap in the IDs, 4 present of 6 */
    uint32_t ids[6] = { 0, 1, 4, 5, 8, 9 };
    struct acpi_config cfg = { .ncpus = 4, .max_cpus = 6, .apic_ids = ids,
                               .ioapic_addr = LAYOUT_IOAPIC_BASE,
                               .ioapic_id = 2 };
    struct parsed p;
    CHECK_EQ(build(&p, &cfg), 0);
    int line = parse(&p);
    struct madt_summary s = {0};
    if (!line)
        s = walk_madt(p.madt, &cfg);
    free(p.buf);
    CHECK_EQ(line, 0);
    CHECK_EQ(s.line, 0);
    CHECK_EQ(s.nlapic, 6);
    CHECK_EQ(s.nonline_capable, 2);
}

TEST(test_madt_x2apic)
{
    uint32_t ids[4] = { 0, 1, 300, 1000 };
    struct acpi_config cfg = { .ncpus = 4, .apic_ids = ids,
                               .ioapic_addr = LAYOUT_IOAPIC_BASE,
                               .ioapic_id = 2 };
    struct parsed p;
    CHECK_EQ(build(&p, &cfg), 0);
    int line = parse(&p);
    struct madt_summary s = {0};
    if (!line)
        s = walk_madt(p.madt, &cfg);
    free(p.buf);
    CHECK_EQ(line, 0);
    CHECK_EQ(s.line, 0);
    CHECK_EQ(s.nlapic, 2);
    CHECK_EQ(s.nx2apic, 2);
    CHECK_EQ(s.nnmi, 1);
    CHECK_EQ(s.nx2nmi, 1);
}

TEST(test_dsdt_contents)
{
    uint32_t ids[1] = { 0 };
    struct acpi_config cfg = { .ncpus = 1, .apic_ids = ids,
                               .ioapic_addr = LAYOUT_IOAPIC_BASE,
                               .ioapic_id = 1 };
    struct parsed p;
    CHECK_EQ(build(&p, &cfg), 0);
    int line = parse(&p);
    if (line) {
        free(p.buf);
        CHECK_EQ(line, 0);
    }
    /* Name(\_S5, Package(4){5, 5, 0, 0}) */
    static const uint8_t s5[] = { 0x08, 0x5C, '_', 'S', '5', '_', 0x12, 0x08,
                                  0x04, 0x0A, ACPI_S5_SLP_TYP, 0x0A,
                                  ACPI_S5_SLP_TYP, 0x00, 0x00 };
    /* Name(_HID, EisaId("PNP0501")) and the COM1 _CRS descriptors */
    static const uint8_t hid[] = { 0x08, '_', 'H', 'I', 'D',
                                   0x0C, 0x41, 0xD0, 0x05, 0x01 };
    static const uint8_t crs[] = { 0x47, 0x01, 0xF8, 0x03, 0xF8, 0x03, 0x00,
                                   0x08, 0x22, 0x10, 0x00, 0x79 };
    uint32_t len = rd32(p.dsdt + 4);
    int found_s5 = 0, found_hid = 0, found_crs = 0;
    for (uint32_t i = 36; i < len; i++) {
        if (len - i >= sizeof s5 && !memcmp(p.dsdt + i, s5, sizeof s5))
            found_s5 = 1;
        if (len - i >= sizeof hid && !memcmp(p.dsdt + i, hid, sizeof hid))
            found_hid = 1;
        if (len - i >= sizeof crs && !memcmp(p.dsdt + i, crs, sizeof crs))
            found_crs = 1;
    }
    uint8_t rev = p.dsdt[8];
    uint8_t first = p.dsdt[36];
    free(p.buf);
    CHECK_EQ(rev, 2);
    CHECK_EQ(first, 0x08);                       /* AML starts with \_S5 */
    CHECK(found_s5);
    CHECK(found_hid);
    CHECK(found_crs);
}

static int find(const uint8_t *t, uint32_t len, const void *pat, size_t n)
{
    for (uint32_t i = 36; i + n <= len; i++)
        if (!memcmp(t + i, pat, n))
            return (int)i;
    return -1;
}

TEST(test_mcfg)
{
    uint32_t ids[1] = { 0 };
    struct acpi_config cfg = { .ncpus = 1, .apic_ids = ids,
                               .ioapic_addr = LAYOUT_IOAPIC_BASE,
                               .ioapic_id = 1, .pci = true };
    struct parsed p;
    CHECK_EQ(build(&p, &cfg), 0);
    int line = parse(&p);
    uint8_t m[60] = {0};
    uint32_t mlen = 0, nroot = 0;
    if (!line && p.mcfg) {
        mlen = rd32(p.mcfg + 4);
        memcpy(m, p.mcfg, mlen <= sizeof m ? mlen : sizeof m);
        nroot = (rd32(p.xsdt + 4) - 36) / 8;
    }
    free(p.buf);
    CHECK_EQ(line, 0);
    CHECK_EQ(nroot, 3);
    /* PCI Firmware Spec 3.0 Table 4-2/4-3: header, 8 reserved, one entry */
    CHECK_EQ(mlen, 60);
    CHECK_EQ(sum8(m, 60), 0);
    CHECK_EQ(m[8], 1);
    CHECK_EQ(rd64(m + 36), 0);
    CHECK_EQ(rd64(m + 44), LAYOUT_PCI_ECAM_BASE);
    CHECK_EQ(rd16(m + 52), 0);                  /* segment */
    CHECK_EQ(m[54], 0);                         /* start bus */
    CHECK_EQ(m[55], 0);                         /* end bus: 1 MiB of ECAM */
    CHECK_EQ(rd32(m + 56), 0);

    /* without PCI: no MCFG, no PCI0 */
    cfg.pci = false;
    CHECK_EQ(build(&p, &cfg), 0);
    line = parse(&p);
    const uint8_t *mc = p.mcfg;
    int pci0 = line ? 0 : find(p.dsdt, rd32(p.dsdt + 4), "PCI0", 4);
    free(p.buf);
    CHECK_EQ(line, 0);
    CHECK(mc == NULL);
    CHECK_EQ(pci0, -1);
}

TEST(test_dsdt_pci0)
{
    uint32_t ids[1] = { 0 };
    struct acpi_config cfg = { .ncpus = 1, .apic_ids = ids,
                               .ioapic_addr = LAYOUT_IOAPIC_BASE,
                               .ioapic_id = 1, .pci = true };
    struct parsed p;
    CHECK_EQ(build(&p, &cfg), 0);
    int line = parse(&p);
    if (line) {
        free(p.buf);
        CHECK_EQ(line, 0);
    }
    uint32_t len = rd32(p.dsdt + 4);
    /* Device(PCI0) inside \_SB with _HID PNP0A08, _CID PNP0A03 */
    static const uint8_t hid[] = { 0x08, '_', 'H', 'I', 'D', 0x0C, 0x41, 0xD0, 0x0A, 0x08 };
    static const uint8_t cid[] = { 0x08, '_', 'C', 'I', 'D', 0x0C, 0x41, 0xD0, 0x0A, 0x03 };
    static const uint8_t mres[] = { 0x08, '_', 'H', 'I', 'D', 0x0C, 0x41, 0xD0, 0x0C, 0x02 };
    /* _CRS pieces: bus 0..0, config ports, I/O 0-0xCF7, 0xD00-0xFFFF,
     * memory window */
    static const uint8_t bus[] = { 0x88, 0x0D, 0x00, 0x02, 0x0C, 0x00, 0, 0, 0, 0, 0, 0,
                                   0, 0, 0x01, 0x00 };
    static const uint8_t io1[] = { 0x88, 0x0D, 0x00, 0x01, 0x0C, 0x03, 0, 0, 0x00, 0x00,
                                   0xF7, 0x0C, 0, 0, 0xF8, 0x0C };
    static const uint8_t io2[] = { 0x88, 0x0D, 0x00, 0x01, 0x0C, 0x03, 0, 0, 0x00, 0x0D,
                                   0xFF, 0xFF, 0, 0, 0x00, 0xF3 };
    static const uint8_t cfgio[] = { 0x47, 0x01, 0xF8, 0x0C, 0xF8, 0x0C, 0x01, 0x08 };
    uint8_t mem[26] = { 0x87, 0x17, 0x00, 0x00, 0x0C, 0x01 };
    uint32_t lo = (uint32_t)LAYOUT_PCI_MMIO_BASE;
    uint32_t hi = (uint32_t)(LAYOUT_PCI_MMIO_BASE + LAYOUT_PCI_MMIO_SIZE - 1);
    uint32_t sz = (uint32_t)LAYOUT_PCI_MMIO_SIZE;
    memcpy(mem + 10, &lo, 4);
    memcpy(mem + 14, &hi, 4);
    memcpy(mem + 22, &sz, 4);
    uint8_t ecam[12] = { 0x86, 0x09, 0x00, 0x01 };
    uint32_t eb = (uint32_t)LAYOUT_PCI_ECAM_BASE, es = (uint32_t)LAYOUT_PCI_ECAM_SIZE;
    memcpy(ecam + 4, &eb, 4);
    memcpy(ecam + 8, &es, 4);
    /* a _PRT entry: slot 3 pin B -> GSI 16 + (3 + 1) % 4 = 16:
     * Package(4){0x0003FFFF, One, Zero, 0x10} */
    static const uint8_t prt3b[] = { 0x12, 0x0B, 0x04, 0x0C, 0xFF, 0xFF, 0x03, 0x00,
                                     0x01, 0x00, 0x0A, 0x10 };
    static const uint8_t prt_name[] = { 0x08, '_', 'P', 'R', 'T', 0x12 };
    int dev = find(p.dsdt, len, "\x5B\x82", 2);
    int pci0 = find(p.dsdt, len, "PCI0", 4);
    int f_hid = find(p.dsdt, len, hid, sizeof hid), f_cid = find(p.dsdt, len, cid, sizeof cid);
    int f_bus = find(p.dsdt, len, bus, sizeof bus), f_io1 = find(p.dsdt, len, io1, sizeof io1);
    int f_io2 = find(p.dsdt, len, io2, sizeof io2), f_mem = find(p.dsdt, len, mem, sizeof mem);
    int f_cfg = find(p.dsdt, len, cfgio, sizeof cfgio);
    int f_prt = find(p.dsdt, len, prt_name, sizeof prt_name);
    int f_3b = find(p.dsdt, len, prt3b, sizeof prt3b);
    int f_mres = find(p.dsdt, len, mres, sizeof mres);
    int f_ecam = find(p.dsdt, len, ecam, sizeof ecam);
    free(p.buf);
    CHECK(dev > 0);
    CHECK(pci0 > 0);
    CHECK(f_hid > pci0 && f_cid > f_hid);
    CHECK(f_bus > 0 && f_cfg > f_bus && f_io1 > f_cfg && f_io2 > f_io1 && f_mem > f_io2);
    CHECK(f_prt > f_mem);
    CHECK(f_3b > f_prt);
    CHECK(f_mres > f_prt);
    CHECK(f_ecam > f_mres);
}

TEST(test_config_errors)
{
    uint32_t ids[4] = { 0, 1, 2, 3 };
    uint8_t *buf = malloc(LAYOUT_ACPI_SIZE);
    size_t used = 0;
    CHECK(buf);
    struct acpi_config good = { .ncpus = 4, .apic_ids = ids,
                                .ioapic_addr = LAYOUT_IOAPIC_BASE,
                                .ioapic_id = 4 };
    struct acpi_config c;
    int r[10];
    c = good; c.ncpus = 0;
    r[0] = acpi_build(buf, LAYOUT_ACPI_SIZE, GPA, &c, &used);
    c = good; c.apic_ids = NULL;
    r[1] = acpi_build(buf, LAYOUT_ACPI_SIZE, GPA, &c, &used);
    c = good; c.ioapic_id = 3;                  /* collides with a LAPIC */
    r[2] = acpi_build(buf, LAYOUT_ACPI_SIZE, GPA, &c, &used);
    c = good; c.ioapic_id = 256;
    r[3] = acpi_build(buf, LAYOUT_ACPI_SIZE, GPA, &c, &used);
    c = good; c.ioapic_addr = 0x100000000ULL;
    r[4] = acpi_build(buf, LAYOUT_ACPI_SIZE, GPA, &c, &used);
    c = good; c.pci = true;                     /* supported now */
    r[5] = acpi_build(buf, LAYOUT_ACPI_SIZE, GPA, &c, &used);
    r[6] = acpi_build(buf, LAYOUT_ACPI_SIZE, GPA + 8, &good, &used);
    r[7] = acpi_build(buf, LAYOUT_ACPI_SIZE, 0xFFFFFF00ULL, &good, &used);
    uint32_t dup[4] = { 0, 1, 1, 3 };
    c = good; c.apic_ids = dup;
    r[8] = acpi_build(buf, LAYOUT_ACPI_SIZE, GPA, &c, &used);
    r[9] = acpi_build(buf, LAYOUT_ACPI_SIZE, GPA, &good, &used);
    free(buf);
    for (int i = 0; i < 9; i++)
        if (i != 5)
            CHECK_EQ(r[i], -EINVAL);
    CHECK_EQ(r[5], 0);
    CHECK_EQ(r[9], 0);
}

TEST(test_enospc_every_size)
{
    /* Every buffer shorter than what a 4-CPU build uses (with and without
     * PCI) fails cleanly, with an exactly-sized heap buffer so ASan sees any
     * overrun. */
    uint32_t ids[4] = { 0, 1, 2, 3 };
    for (int pci = 0; pci < 2; pci++) {
        struct acpi_config cfg = { .ncpus = 4, .apic_ids = ids,
                                   .ioapic_addr = LAYOUT_IOAPIC_BASE,
                                   .ioapic_id = 4, .pci = pci };
        uint8_t *full = malloc(LAYOUT_ACPI_SIZE);
        size_t need = 0;
        CHECK(full);
        int ret = acpi_build(full, LAYOUT_ACPI_SIZE, GPA, &cfg, &need);
        free(full);
        CHECK_EQ(ret, 0);
        for (size_t size = 0; size <= need; size++) {
            uint8_t *b = malloc(size ? size : 1);
            size_t used = 0;
            CHECK(b);
            ret = acpi_build(b, size, GPA, &cfg, &used);
            free(b);
            if (size < need)
                CHECK_EQ(ret, -ENOSPC);
            else
                CHECK_EQ(ret, 0);
        }
    }
}

TEST(test_too_many_cpus_enospc)
{
    /* 8000 x2APIC entries (16 bytes each) cannot fit in 64 KiB */
    enum { N = 8000 };
    uint32_t *ids = malloc(N * sizeof *ids);
    uint8_t *buf = malloc(LAYOUT_ACPI_SIZE);
    CHECK(ids && buf);
    for (unsigned i = 0; i < N; i++)
        ids[i] = 1000 + i;
    struct acpi_config cfg = { .ncpus = N, .apic_ids = ids,
                               .ioapic_addr = LAYOUT_IOAPIC_BASE,
                               .ioapic_id = 0 };
    size_t used = 0;
    int ret = acpi_build(buf, LAYOUT_ACPI_SIZE, GPA, &cfg, &used);
    free(ids);
    free(buf);
    CHECK_EQ(ret, -ENOSPC);
}

static int write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = fwrite(p, 1, n, f);
    return (fclose(f) == 0 && w == n) ? 0 : -1;
}

/* Write the DSDT, FADT, MADT, FACS and MCFG of a 2-CPU build with an i8042
 * and PCI to files in a new temporary directory (dir:
 * "/tmp/kvmbox-acpi-XXXXXX"). 0 or the failing line. */
static int dump_tables(char *dir)
{
    uint32_t ids[2] = { 0, 1 };
    struct acpi_config cfg = { .ncpus = 2, .apic_ids = ids,
                               .ioapic_addr = LAYOUT_IOAPIC_BASE,
                               .ioapic_id = 2, .has_i8042 = true, .pci = true };
    struct parsed p;
    int line = build(&p, &cfg) ? __LINE__ : parse(&p);
    if (!line && !p.mcfg)
        line = __LINE__;
    if (!line && !mkdtemp(dir))
        line = __LINE__;
    const uint8_t *tables[5] = { p.dsdt, p.fadt, p.madt, p.facs, p.mcfg };
    const char *names[5] = { "dsdt", "facp", "apic", "facs", "mcfg" };
    char path[128];
    for (int i = 0; !line && i < 5; i++) {
        snprintf(path, sizeof path, "%s/%s.dat", dir, names[i]);
        if (write_file(path, tables[i], rd32(tables[i] + 4)) != 0)
            line = __LINE__;
    }
    free(p.buf);
    return line;
}

static void remove_dir(const char *dir)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        printf("    could not remove %s\n", dir);
}

TEST(test_iasl_disassembles)
{
    if (system("command -v iasl >/dev/null 2>&1") != 0)
        SKIP("iasl not installed (Debian package acpica-tools)");
    char dir[] = "/tmp/kvmbox-acpi-XXXXXX";
    int line = dump_tables(dir);
    static const char *const names[4] = { "dsdt", "facp", "apic", "mcfg" };
    int rc[4] = { -1, -1, -1, -1 };
    char cmd[512];
    for (int i = 0; !line && i < 4; i++) {
        /* iasl -d exits non-zero when the AML or the table does not parse */
        snprintf(cmd, sizeof cmd, "cd '%s' && iasl -d %s.dat >%s.log 2>&1",
                 dir, names[i], names[i]);
        rc[i] = system(cmd);
        if (rc[i] != 0) {
            snprintf(cmd, sizeof cmd, "cat '%s/%s.log'", dir, names[i]);
            if (system(cmd) != 0)
                printf("    (no log)\n");
        }
    }
    if (!line)
        remove_dir(dir);
    CHECK_EQ(line, 0);
    CHECK_EQ(rc[0], 0);
    CHECK_EQ(rc[1], 0);
    CHECK_EQ(rc[2], 0);
    CHECK_EQ(rc[3], 0);
}

TEST(test_acpiexec_evaluates)
{
    /* ACPICA's own interpreter (the one Linux uses) loads the tables and
     * evaluates \_S5 and COM1's _CRS. */
    if (system("command -v acpiexec >/dev/null 2>&1") != 0)
        SKIP("acpiexec not installed (Debian package acpica-tools)");
    char dir[] = "/tmp/kvmbox-acpi-XXXXXX";
    int line = dump_tables(dir);
    char cmd[512];
    int rc = -1, s5 = -1, crs = -1, err = -1, prt = -1, pcrs = -1;
    if (!line) {
        snprintf(cmd, sizeof cmd,
                 "cd '%s' && timeout 60 acpiexec -b "
                 "'evaluate \\_S5; evaluate \\_SB.COM1._CRS; "
                 "evaluate \\_SB.PCI0._CRS; evaluate \\_SB.PCI0._PRT; "
                 "evaluate \\_SB.MRES._CRS' "
                 "dsdt.dat facp.dat apic.dat facs.dat mcfg.dat >out.log 2>&1", dir);
        rc = system(cmd);
        snprintf(cmd, sizeof cmd,
                 "grep -A5 'Package\\] Contains 4 Elements' '%s/out.log' | "
                 "grep -c 'Integer\\] = 0000000000000005' | grep -qx 2", dir);
        s5 = system(cmd);
        snprintf(cmd, sizeof cmd,
                 "grep -q '47 01 F8 03 F8 03 00 08 22 10 00 79' '%s/out.log'",
                 dir);
        crs = system(cmd);
        /* _PRT: 128 entries; PCI0 _CRS: the bus-number descriptor first */
        snprintf(cmd, sizeof cmd,
                 "grep -q 'Package\\] Contains 128 Elements' '%s/out.log'", dir);
        prt = system(cmd);
        snprintf(cmd, sizeof cmd,
                 "grep -q '88 0D 00 02 0C 00 00 00 00 00 00 00 00 00 01 00' '%s/out.log'",
                 dir);
        pcrs = system(cmd);
        /* the GPE noise comes from acpiexec's own self-tests (aetests) */
        snprintf(cmd, sizeof cmd,
                 "grep -i 'ACPI Error\\|ACPI Warning\\|Exception' '%s/out.log' "
                 "| grep -v aetests", dir);
        err = system(cmd);
        if (rc || s5 || crs || prt || pcrs || !err) {
            snprintf(cmd, sizeof cmd, "cat '%s/out.log'", dir);
            if (system(cmd) != 0)
                printf("    (no log)\n");
        }
        remove_dir(dir);
    }
    CHECK_EQ(line, 0);
    CHECK_EQ(rc, 0);
    CHECK_EQ(s5, 0);
    CHECK_EQ(crs, 0);
    CHECK_EQ(prt, 0);
    CHECK_EQ(pcrs, 0);
    CHECK(err != 0);                             /* grep found nothing */
}

int main(void)
{
    RUN(test_rsdp_and_tables);
    RUN(test_fadt_fields);
    RUN(test_fadt_i8042);
    RUN(test_madt_ncpus);
    RUN(test_madt_sparse_ids_and_max_cpus);
    RUN(test_madt_x2apic);
    RUN(test_dsdt_contents);
    RUN(test_mcfg);
    RUN(test_dsdt_pci0);
    RUN(test_config_errors);
    RUN(test_enospc_every_size);
    RUN(test_too_many_cpus_enospc);
    RUN(test_iasl_disassembles);
    RUN(test_acpiexec_evaluates);
    return test_summary();
}
