/* Unit tests for the MP tables: build, then parse back with the byte
 * offsets of the MP spec 1.4 (§4), independent of mptable.c's structs. */
#include "arch/x86/layout.h"
#include "arch/x86/mptable.h"
#include "test.h"

#include <errno.h>
#include <stdlib.h>

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) { return rd16(p) | (uint32_t)rd16(p + 2) << 16; }

static uint8_t sum8(const uint8_t *p, size_t n)
{
    uint8_t s = 0;
    for (size_t i = 0; i < n; i++)
        s = (uint8_t)(s + p[i]);
    return s;
}

#define GPA LAYOUT_MPTABLE_START
#define IOAPIC_ID(n) ((n) < 255 ? (n) : 255)

struct mp_summary {
    unsigned ncpu, nbsp, nbus, nioapic, nirq, nlint;
    int line;                                   /* first problem, or 0 */
};

static struct mp_summary parse(const uint8_t *buf, size_t used,
                               unsigned ncpus, const uint32_t *ids,
                               uint32_t ioapic_id)
{
    struct mp_summary s = {0};
#define FAIL() do { s.line = __LINE__; return s; } while (0)
    /* Floating pointer, Table 4-1 */
    if (GPA % 16 || used < 16 || memcmp(buf, "_MP_", 4) != 0)
        FAIL();
    if (buf[8] != 1 || buf[9] != 4 || sum8(buf, 16) != 0 || buf[11] != 0)
        FAIL();
    uint32_t cfg_gpa = rd32(buf + 4);
    if (cfg_gpa < GPA || cfg_gpa - GPA + 44 > used)
        FAIL();
    const uint8_t *c = buf + (cfg_gpa - GPA);
    /* Configuration table header, Table 4-2 */
    uint16_t len = rd16(c + 4);
    if (memcmp(c, "PCMP", 4) != 0 || c[6] != 4 || cfg_gpa - GPA + len > used)
        FAIL();
    if (sum8(c, len) != 0 || rd32(c + 36) != 0xFEE00000u || rd16(c + 40) != 0)
        FAIL();
    if (cfg_gpa - GPA + len != used)
        FAIL();
    unsigned count = rd16(c + 34);
    uint32_t off = 44;
    unsigned last_type = 0;
    int irq_seen[16] = {0};
    for (unsigned i = 0; i < count; i++) {
        if (off >= len)
            FAIL();
        const uint8_t *e = c + off;
        if (e[0] < last_type)
            FAIL();                             /* ascending type order */
        last_type = e[0];
        switch (e[0]) {
        case 0:                                 /* processor, Table 4-4 */
            if (s.ncpu >= ncpus || len - off < 20 || e[1] != ids[s.ncpu] ||
                !(e[3] & 1))
                FAIL();
            if ((e[3] & 2) != (s.ncpu == 0 ? 2 : 0))
                FAIL();
            if (e[2] < 0x10 || ((rd32(e + 4) >> 8) & 0xF) == 0 ||
                !(rd32(e + 8) & (1u << 9)))
                FAIL();
            s.nbsp += (e[3] & 2) != 0;
            s.ncpu++;
            off += 20;
            break;
        case 1:                                 /* bus, Table 4-7 */
            if (e[1] != 0 || memcmp(e + 2, "ISA   ", 6) != 0)
                FAIL();
            s.nbus++;
            off += 8;
            break;
        case 2:                                 /* I/O APIC, Table 4-9 */
            if (e[1] != ioapic_id || !(e[3] & 1) ||
                rd32(e + 4) != LAYOUT_IOAPIC_BASE)
                FAIL();
            s.nioapic++;
            off += 8;
            break;
        case 3:                                 /* I/O interrupt, 4-10 */
            if (e[1] != 0 || rd16(e + 2) != 0 || e[4] != 0 || e[5] > 15 ||
                e[6] != ioapic_id)
                FAIL();
            if (e[7] != (e[5] == 0 ? 2 : e[5]) || e[5] == 2 || irq_seen[e[5]])
                FAIL();
            irq_seen[e[5]] = 1;
            s.nirq++;
            off += 8;
            break;
        case 4:                                 /* local interrupt, 4-12 */
            if (e[6] != 0xFF)
                FAIL();
            if (!((e[1] == 3 && e[7] == 0) || (e[1] == 1 && e[7] == 1)))
                FAIL();
            s.nlint++;
            off += 8;
            break;
        default:
            FAIL();
        }
    }
    if (off != len)
        FAIL();
#undef FAIL
    return s;
}

static void check_ncpus(unsigned ncpus, int *fail_line)
{
    uint32_t ids[255];
    for (unsigned i = 0; i < ncpus; i++)
        ids[i] = i;
    *fail_line = 0;
    uint8_t *buf = malloc(LAYOUT_MPTABLE_SIZE);
    if (!buf) {
        *fail_line = __LINE__;
        return;
    }
    memset(buf, 0xAA, LAYOUT_MPTABLE_SIZE);
    size_t used = 0;
    int ret = mptable_build(buf, LAYOUT_MPTABLE_SIZE, GPA, ncpus, ids,
                            IOAPIC_ID(ncpus), LAYOUT_IOAPIC_BASE, &used);
    struct mp_summary s = {0};
    if (ret != 0 || used != mptable_size(ncpus))
        *fail_line = __LINE__;
    else if ((s = parse(buf, used, ncpus, ids, IOAPIC_ID(ncpus))).line)
        *fail_line = s.line;
    else if (s.ncpu != ncpus || s.nbsp != 1 || s.nbus != 1 ||
             s.nioapic != 1 || s.nirq != 15 || s.nlint != 2)
        *fail_line = __LINE__;
    else if (buf[used] != 0xAA)                 /* nothing written past */
        *fail_line = __LINE__;
    free(buf);
}

TEST(test_ncpus)
{
    static const unsigned counts[] = { 1, 2, 8, 64, 255 };
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        int line;
        check_ncpus(counts[i], &line);
        if (line)
            printf("    ncpus=%u: problem at line %d\n", counts[i], line);
        CHECK_EQ(line, 0);
    }
}

TEST(test_sparse_ids)
{
    uint32_t ids[4] = { 0, 2, 4, 6 };
    uint8_t buf[1024];
    size_t used = 0;
    CHECK_EQ(mptable_build(buf, sizeof buf, GPA, 4, ids, 1,
                           LAYOUT_IOAPIC_BASE, &used), 0);
    struct mp_summary s = parse(buf, used, 4, ids, 1);
    CHECK_EQ(s.line, 0);
    CHECK_EQ(s.ncpu, 4);
}

TEST(test_enospc)
{
    uint32_t ids[8] = { 0, 1, 2, 3, 4, 5, 6, 7 };
    size_t need = mptable_size(8);
    for (size_t size = 0; size < need; size++) {
        uint8_t *b = malloc(size ? size : 1);
        size_t used = 0;
        CHECK(b);
        int ret = mptable_build(b, size, GPA, 8, ids, 8, LAYOUT_IOAPIC_BASE,
                                &used);
        free(b);
        CHECK_EQ(ret, -ENOSPC);
    }
    uint8_t *b = malloc(need);
    size_t used = 0;
    CHECK(b);
    int ret = mptable_build(b, need, GPA, 8, ids, 8, LAYOUT_IOAPIC_BASE, &used);
    free(b);
    CHECK_EQ(ret, 0);
    CHECK_EQ(used, need);
}

TEST(test_einval)
{
    uint32_t ids[256];
    for (unsigned i = 0; i < 256; i++)
        ids[i] = i;
    uint8_t *buf = malloc(LAYOUT_MPTABLE_SIZE);
    size_t used = 0;
    CHECK(buf);
    int r[8];
    r[0] = mptable_build(buf, LAYOUT_MPTABLE_SIZE, GPA, 256, ids, 0,
                         LAYOUT_IOAPIC_BASE, &used);     /* > 255 CPUs */
    r[1] = mptable_build(buf, LAYOUT_MPTABLE_SIZE, GPA, 0, ids, 0,
                         LAYOUT_IOAPIC_BASE, &used);
    r[2] = mptable_build(buf, LAYOUT_MPTABLE_SIZE, GPA, 4, ids, 2,
                         LAYOUT_IOAPIC_BASE, &used);     /* collision */
    r[3] = mptable_build(buf, LAYOUT_MPTABLE_SIZE, GPA, 4, ids, 4,
                         0x100000000ULL, &used);         /* above 4 GiB */
    r[4] = mptable_build(buf, LAYOUT_MPTABLE_SIZE, GPA + 4, 4, ids, 4,
                         LAYOUT_IOAPIC_BASE, &used);     /* misaligned */
    uint32_t bad[2] = { 0, 255 };                        /* broadcast ID */
    r[5] = mptable_build(buf, LAYOUT_MPTABLE_SIZE, GPA, 2, bad, 4,
                         LAYOUT_IOAPIC_BASE, &used);
    uint32_t dup[2] = { 3, 3 };
    r[6] = mptable_build(buf, LAYOUT_MPTABLE_SIZE, GPA, 2, dup, 4,
                         LAYOUT_IOAPIC_BASE, &used);
    r[7] = mptable_build(buf, LAYOUT_MPTABLE_SIZE, GPA, 2, NULL, 4,
                         LAYOUT_IOAPIC_BASE, &used);
    free(buf);
    for (int i = 0; i < 8; i++) {
        if (r[i] != -EINVAL)
            printf("    case %d returned %d\n", i, r[i]);
        CHECK_EQ(r[i], -EINVAL);
    }
}

/* With PCI (MP spec §4.3.2, §4.3.4 and Appendix D): a PCI bus with MP bus
 * ID 0 (= PCI bus 0, as Linux matches them), ISA as bus 1, and a level,
 * active-low I/O interrupt entry for every slot and pin routed with the
 * same swizzle as the ACPI _PRT and the PCI model. */
TEST(test_pci_entries)
{
    uint32_t ids[255];
    for (unsigned i = 0; i < 255; i++)
        ids[i] = i;
    int line = 0;
    for (unsigned ncpus = 1; ncpus <= 255 && !line; ncpus += 127) {
        struct mptable_config mc = { .ncpus = ncpus, .apic_ids = ids,
                                     .ioapic_id = IOAPIC_ID(ncpus),
                                     .ioapic_addr = LAYOUT_IOAPIC_BASE, .pci = true };
        uint8_t *buf = malloc(LAYOUT_MPTABLE_SIZE);
        CHECK(buf);
        memset(buf, 0xAA, LAYOUT_MPTABLE_SIZE);
        size_t used = 0;
        int ret = mptable_build_config(buf, LAYOUT_MPTABLE_SIZE, GPA, &mc, &used);
        unsigned pci_bus = 0, isa_bus = 0, isa_irqs = 0, pci_irqs = 0, lints = 0;
        unsigned seen[32][4] = {{0}};
        const uint8_t *c = buf + 16;
        uint16_t len = rd16(c + 4);
        if (ret != 0 || used != mptable_config_size(&mc) || used > LAYOUT_MPTABLE_SIZE ||
            sum8(buf, 16) != 0 || sum8(c, len) != 0 || 16u + len != used || buf[used] != 0xAA)
            line = __LINE__;
        unsigned count = rd16(c + 34), last_type = 0;
        uint32_t off = 44;
        for (unsigned i = 0; !line && i < count; i++) {
            const uint8_t *e = c + off;
            if (off >= len || e[0] < last_type) {
                line = __LINE__;
                break;
            }
            last_type = e[0];
            switch (e[0]) {
            case 0:
                off += 20;
                break;
            case 1:
                if (e[1] == 0 && !memcmp(e + 2, "PCI   ", 6))
                    pci_bus++;
                else if (e[1] == 1 && !memcmp(e + 2, "ISA   ", 6))
                    isa_bus++;
                else
                    line = __LINE__;
                off += 8;
                break;
            case 2:
                off += 8;
                break;
            case 3:
                if (e[4] == 1) {                /* ISA: conforming flags */
                    if (rd16(e + 2) != 0 || e[5] > 15 || e[6] != mc.ioapic_id)
                        line = __LINE__;
                    isa_irqs++;
                } else if (e[4] == 0) {         /* PCI */
                    unsigned slot = (e[5] >> 2) & 0x1F, pin = e[5] & 3;
                    if (e[1] != 0 || rd16(e + 2) != 0x0F || e[6] != mc.ioapic_id ||
                        e[7] != LAYOUT_PCI_INTX_GSI(slot, pin) || e[5] > 0x7F ||
                        seen[slot][pin]++)
                        line = __LINE__;
                    pci_irqs++;
                } else {
                    line = __LINE__;
                }
                off += 8;
                break;
            case 4:
                if (e[4] != 1)                  /* LINTs name the ISA bus */
                    line = __LINE__;
                lints++;
                off += 8;
                break;
            default:
                line = __LINE__;
            }
        }
        if (!line && (off != len || pci_bus != 1 || isa_bus != 1 || isa_irqs != 15 ||
                      pci_irqs != 128 || lints != 2))
            line = __LINE__;
        /* every short buffer fails cleanly */
        for (size_t size = 0; !line && size < used; size += 7) {
            size_t u = 0;
            if (mptable_build_config(buf, size, GPA, &mc, &u) != -ENOSPC)
                line = __LINE__;
        }
        free(buf);
    }
    CHECK_EQ(line, 0);
}

int main(void)
{
    RUN(test_ncpus);
    RUN(test_sparse_ids);
    RUN(test_enospc);
    RUN(test_einval);
    RUN(test_pci_entries);
    return test_summary();
}
