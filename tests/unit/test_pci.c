/* Unit tests for the PCI bus (no KVM: bus->vm NULL): the host bridge,
 * configuration mechanism #1 and ECAM at every width, BAR sizing and
 * relocation on the test's own buses, INTx, capabilities, reset and
 * firmware-style resource assignment. */
#include "arch/x86/layout.h"
#include "core/bus.h"
#include "hw/pci/pci.h"
#include "test.h"

#include <errno.h>
#include <stdlib.h>

/* --- a fake device: BAR0 4 KiB MEM32, BAR1 32-byte I/O, BAR2/3 16 KiB
 * MEM64 prefetchable --- */
struct fake_region {
    uint8_t regs[0x4000];
    unsigned reads, writes;
    uint64_t last_off;
};

struct fake {
    struct pci_device pci;
    struct fake_region mem, io, mem64;
    unsigned config_writes;
};

static void region_read(void *opaque, uint64_t off, void *data, unsigned len)
{
    struct fake_region *r = opaque;
    r->reads++;
    r->last_off = off;
    memcpy(data, r->regs + off, len);
}

static void region_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
    struct fake_region *r = opaque;
    r->writes++;
    r->last_off = off;
    memcpy(r->regs + off, data, len);
}

static const struct bus_ops region_ops = { region_read, region_write };

static void fake_config_write(struct pci_device *d, uint32_t off, uint32_t val, unsigned len)
{
    struct fake *f = d->opaque;
    f->config_writes++;
}

static const struct pci_device_ops fake_ops = { .config_write = fake_config_write };

/* --- an INTx recorder --- */
struct irq_rec {
    int level[24];
    unsigned calls;
};

static void rec_set_gsi(void *ctx, uint32_t gsi, int level)
{
    struct irq_rec *r = ctx;
    if (gsi < 24)
        r->level[gsi] = level;
    r->calls++;
}

struct cf9_rec {
    uint8_t val;
    unsigned writes, reads;
};

static void cf9_read(void *opaque, uint64_t off, void *data, unsigned len)
{
    struct cf9_rec *c = opaque;
    c->reads++;
    *(uint8_t *)data = c->val;
}

static void cf9_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
    struct cf9_rec *c = opaque;
    c->writes++;
    c->val = *(const uint8_t *)data;
}

static const struct bus_ops cf9_ops = { cf9_read, cf9_write };

struct env {
    struct bus pio, mmio;
    struct pci_bus pb;
    struct irq_rec irq;
    struct cf9_rec cf9;
    struct fake *f;
};

#define SLOT 3
#define DEVFN (SLOT << 3)

static int fake_add(struct env *e, struct fake *f, int devfn)
{
    memset(f, 0, sizeof *f);
    f->pci.ops = &fake_ops;
    f->pci.opaque = f;
    f->pci.name = "fake";
    int r = pci_device_register(&e->pb, &f->pci, devfn, 0x1af4, 0x1234, 0x018000, 1, 0x1af4, 7);
    if (r < 0)
        return r;
    if ((r = pci_register_bar(&f->pci, 0, PCI_BAR_MEM32, 0x1000, false, &region_ops, &f->mem)) < 0 ||
        (r = pci_register_bar(&f->pci, 1, PCI_BAR_IO, 32, false, &region_ops, &f->io)) < 0 ||
        (r = pci_register_bar(&f->pci, 2, PCI_BAR_MEM64, 0x4000, true, &region_ops, &f->mem64)) < 0)
        return r;
    return 0;
}

static struct env *env_new(void)
{
    struct env *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    bus_init(&e->pio);
    bus_init(&e->mmio);
    struct pci_bus_config cfg = {
        .ecam_base = LAYOUT_PCI_ECAM_BASE,
        .mmio_base = LAYOUT_PCI_MMIO_BASE, .mmio_size = LAYOUT_PCI_MMIO_SIZE,
        .io_base = LAYOUT_PCI_IO_BASE, .io_size = LAYOUT_PCI_IO_SIZE,
        .intx_gsi_base = LAYOUT_PCI_INTX_GSI_BASE,
        .cf9_ops = &cf9_ops, .cf9_opaque = &e->cf9,
    };
    e->f = calloc(1, sizeof *e->f);
    if (!e->f || pci_bus_init(&e->pb, NULL, &e->pio, &e->mmio, &cfg) < 0) {
        free(e->f);
        free(e);
        return NULL;
    }
    e->pb.set_gsi = rec_set_gsi;
    e->pb.irq_ctx = &e->irq;
    if (fake_add(e, e->f, DEVFN) < 0) {
        pci_bus_destroy(&e->pb);
        free(e->f);
        free(e);
        return NULL;
    }
    return e;
}

static void env_free(struct env *e)
{
    pci_device_unregister(&e->f->pci);
    pci_bus_destroy(&e->pb);
    bus_destroy(&e->pio);
    bus_destroy(&e->mmio);
    free(e->f);
    free(e);
}

/* Mechanism #1 helpers: the guest's view through the test's PIO bus. */
static void cf8(struct env *e, uint32_t v)
{
    bus_access(&e->pio, 0xCF8, &v, 4, true);
}

static uint32_t addr1(unsigned devfn, unsigned reg)
{
    return 0x80000000u | devfn << 8 | (reg & 0xFC);
}

static uint32_t cfg_rd(struct env *e, unsigned devfn, unsigned reg, unsigned len)
{
    uint32_t v = 0;
    cf8(e, addr1(devfn, reg));
    bus_access(&e->pio, 0xCFC + (reg & 3), &v, len, false);
    return v;
}

static void cfg_wr(struct env *e, unsigned devfn, unsigned reg, uint32_t v, unsigned len)
{
    cf8(e, addr1(devfn, reg));
    bus_access(&e->pio, 0xCFC + (reg & 3), &v, len, true);
}

static uint32_t ecam_rd(struct env *e, unsigned devfn, unsigned reg, unsigned len)
{
    uint32_t v = 0;
    bus_access(&e->mmio, LAYOUT_PCI_ECAM_BASE + ((uint64_t)devfn << 12) + reg, &v, len, false);
    return v;
}

static void ecam_wr(struct env *e, unsigned devfn, unsigned reg, uint32_t v, unsigned len)
{
    bus_access(&e->mmio, LAYOUT_PCI_ECAM_BASE + ((uint64_t)devfn << 12) + reg, &v, len, true);
}

TEST(test_host_bridge)
{
    struct env *e = env_new();
    CHECK(e);
    /* Linux's pci_check_type1: 0x80000000 reads back; byte writes to
     * 0xCFB do not touch the latch. */
    cf8(e, 0x80000000u);
    uint8_t one = 1;
    bus_access(&e->pio, 0xCFB, &one, 1, true);
    uint32_t latch = 0;
    bus_access(&e->pio, 0xCF8, &latch, 4, false);
    /* reserved bits 30:24 and 1:0 read 0 */
    cf8(e, 0xFFFFFFFFu);
    uint32_t latch2 = 0;
    bus_access(&e->pio, 0xCF8, &latch2, 4, false);
    uint32_t id = cfg_rd(e, 0, 0, 4);
    uint32_t class = cfg_rd(e, 0, 8, 4) >> 8;
    cfg_wr(e, 0, 0, 0, 4);                      /* ids are read-only */
    uint32_t id2 = cfg_rd(e, 0, 0, 4);
    cfg_wr(e, 0, PCI_INTERRUPT_LINE, 0x55, 1);  /* read-only on the bridge */
    uint32_t line = cfg_rd(e, 0, PCI_INTERRUPT_LINE, 1);
    cfg_wr(e, 0, PCI_COMMAND, 0xFFFF, 2);       /* command is writable */
    uint32_t cmd = cfg_rd(e, 0, PCI_COMMAND, 2);
    uint32_t absent = cfg_rd(e, 5 << 3, 0, 4);
    uint32_t fn1 = cfg_rd(e, DEVFN | 1, 0, 4);
    uint32_t bus1;
    cf8(e, 0x80010000u);
    bus_access(&e->pio, 0xCFC, &bus1, 4, false);
    uint32_t disabled;
    cf8(e, 0x00000000u);
    bus_access(&e->pio, 0xCFC, &disabled, 4, false);
    /* 0xCF9 shares the dword: byte accesses go to the reset control */
    uint8_t six = 6, back = 0;
    bus_access(&e->pio, 0xCF9, &six, 1, true);
    bus_access(&e->pio, 0xCF9, &back, 1, false);
    unsigned cf9w = e->cf9.writes;
    env_free(e);
    CHECK_EQ(latch, 0x80000000u);
    CHECK_EQ(latch2, 0x80FFFFFCu);
    CHECK_EQ(id, PCI_HOST_DEVICE_ID << 16 | PCI_HOST_VENDOR_ID);
    CHECK_EQ(id2, id);
    CHECK_EQ(class, PCI_HOST_CLASS);
    CHECK_EQ(line, 0);
    CHECK_EQ(cmd, PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_PARITY |
                  PCI_COMMAND_SERR | PCI_COMMAND_INTX_DISABLE);
    CHECK_EQ(absent, 0xFFFFFFFFu);
    CHECK_EQ(fn1, 0xFFFFFFFFu);
    CHECK_EQ(bus1, 0xFFFFFFFFu);
    CHECK_EQ(disabled, 0xFFFFFFFFu);
    CHECK_EQ(cf9w, 1);
    CHECK_EQ(back, 6);
}

TEST(test_cfc_every_width)
{
    struct env *e = env_new();
    CHECK(e);
    int bad = 0;
    for (unsigned reg = 0; reg < 0x40; reg += 4) {
        uint32_t d = cfg_rd(e, DEVFN, reg, 4);
        uint32_t w = cfg_rd(e, DEVFN, reg, 2) | cfg_rd(e, DEVFN, reg + 2, 2) << 16;
        uint32_t b = 0;
        for (unsigned i = 0; i < 4; i++)
            b |= cfg_rd(e, DEVFN, reg + i, 1) << (8 * i);
        /* ECAM sees the same bytes */
        uint32_t m = ecam_rd(e, DEVFN, reg, 4);
        uint32_t mw = ecam_rd(e, DEVFN, reg + 2, 2);
        uint32_t mb = ecam_rd(e, DEVFN, reg + 3, 1);
        if (d != w || d != b || d != m || mw != d >> 16 || mb != d >> 24)
            bad = __LINE__;
    }
    uint32_t vendor = cfg_rd(e, DEVFN, 0, 2), device = cfg_rd(e, DEVFN, 2, 2);
    uint32_t class = cfg_rd(e, DEVFN, 8, 4) >> 8, pin = cfg_rd(e, DEVFN, PCI_INTERRUPT_PIN, 1);
    uint32_t subsys = cfg_rd(e, DEVFN, PCI_SUBSYSTEM_VENDOR_ID, 4);
    /* byte writes at the right offsets: latency timer (0x0D) through 0xCFD */
    cfg_wr(e, DEVFN, PCI_LATENCY_TIMER, 0x40, 1);
    uint32_t lat = cfg_rd(e, DEVFN, PCI_CACHE_LINE_SIZE, 4);
    /* word write at 0xCFE: status is RW1C only, interrupt status RO */
    cfg_wr(e, DEVFN, PCI_STATUS, 0xFFFF, 2);
    uint32_t status = cfg_rd(e, DEVFN, PCI_STATUS, 2);
    /* ECAM: crossing a dword, 8 bytes, or a function we do not have */
    uint32_t cross = ecam_rd(e, DEVFN, 3, 2);
    uint32_t f1 = ecam_rd(e, DEVFN | 1, 0, 4);
    uint32_t ext = ecam_rd(e, DEVFN, 0x100, 4);  /* no extended capabilities */
    ecam_wr(e, DEVFN, PCI_INTERRUPT_LINE, 0x0B, 1);
    uint32_t il = cfg_rd(e, DEVFN, PCI_INTERRUPT_LINE, 1);
    ecam_wr(e, DEVFN, PCI_INTERRUPT_LINE - 1, 0x0C0000, 4); /* crossing ignored */
    uint32_t il2 = cfg_rd(e, DEVFN, PCI_INTERRUPT_LINE, 1);
    env_free(e);
    CHECK_EQ(bad, 0);
    CHECK_EQ(vendor, 0x1af4);
    CHECK_EQ(device, 0x1234);
    CHECK_EQ(class, 0x018000);
    CHECK_EQ(pin, 1);
    CHECK_EQ(subsys, 7u << 16 | 0x1af4);
    CHECK_EQ(lat, 0x4000);
    CHECK_EQ(status, 0);
    CHECK_EQ(cross, 0xFFFF);
    CHECK_EQ(f1, 0xFFFFFFFFu);
    CHECK_EQ(ext, 0);
    CHECK_EQ(il, 0x0B);
    CHECK_EQ(il2, 0x0B);              /* unchanged */
}

TEST(test_bar_sizing)
{
    struct env *e = env_new();
    CHECK(e);
    uint32_t got[6], orig[6];
    for (unsigned i = 0; i < 6; i++) {
        unsigned reg = PCI_BASE_ADDRESS_0 + 4 * i;
        orig[i] = cfg_rd(e, DEVFN, reg, 4);
        cfg_wr(e, DEVFN, reg, 0xFFFFFFFFu, 4);
        got[i] = cfg_rd(e, DEVFN, reg, 4);
        cfg_wr(e, DEVFN, reg, orig[i], 4);
    }
    /* expansion ROM not implemented: sizing reads 0 */
    cfg_wr(e, DEVFN, PCI_ROM_ADDRESS, 0xFFFFF800u, 4);
    uint32_t rom = cfg_rd(e, DEVFN, PCI_ROM_ADDRESS, 4);
    uint32_t back = cfg_rd(e, DEVFN, PCI_BASE_ADDRESS_0, 4);
    env_free(e);
    CHECK_EQ(orig[0], 0);
    CHECK_EQ(orig[1], 1);                       /* I/O space indicator */
    CHECK_EQ(orig[2], 0xC);                     /* 64-bit, prefetchable */
    CHECK_EQ(got[0], 0xFFFFF000u);
    CHECK_EQ(got[1], 0xFFFFFFE1u);
    CHECK_EQ(got[2], 0xFFFFC00Cu);
    CHECK_EQ(got[3], 0xFFFFFFFFu);
    CHECK_EQ(got[4], 0);
    CHECK_EQ(got[5], 0);
    CHECK_EQ(rom, 0);
    CHECK_EQ(back, 0);
}

/* Program the BARs and enable decoding. */
static void place(struct env *e, uint32_t mem, uint32_t io, uint64_t mem64)
{
    cfg_wr(e, DEVFN, PCI_BASE_ADDRESS_0, mem, 4);
    cfg_wr(e, DEVFN, PCI_BASE_ADDRESS_0 + 4, io, 4);
    cfg_wr(e, DEVFN, PCI_BASE_ADDRESS_0 + 8, (uint32_t)mem64, 4);
    cfg_wr(e, DEVFN, PCI_BASE_ADDRESS_0 + 12, (uint32_t)(mem64 >> 32), 4);
}

static uint32_t mmio_rd(struct env *e, uint64_t a)
{
    uint32_t v = 0;
    bus_access(&e->mmio, a, &v, 4, false);
    return v;
}

TEST(test_bar_relocation)
{
    struct env *e = env_new();
    CHECK(e);
    struct fake *f = e->f;
    const uint64_t M = LAYOUT_PCI_MMIO_BASE;
    memcpy(f->mem.regs + 4, "\x11\x22\x33\x44", 4);
    memcpy(f->mem64.regs + 8, "\x55\x66\x77\x88", 4);
    f->io.regs[2] = 0x99;
    place(e, (uint32_t)M + 0x10000, 0xC000, M + 0x20000);

    /* decoding off: nothing answers */
    unsigned r0 = f->mem.reads;
    uint32_t off_v = mmio_rd(e, M + 0x10004);
    unsigned r1 = f->mem.reads;

    cfg_wr(e, DEVFN, PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_IO, 2);
    uint32_t v0 = mmio_rd(e, M + 0x10004);
    uint64_t last0 = f->mem.last_off;
    uint32_t v64 = mmio_rd(e, M + 0x20008);
    uint8_t iob = 0;
    bus_access(&e->pio, 0xC002, &iob, 1, false);

    /* move BAR0: the old address goes dead, the new one reaches it */
    cfg_wr(e, DEVFN, PCI_BASE_ADDRESS_0, (uint32_t)M + 0x30000, 4);
    unsigned before = f->mem.reads;
    uint32_t old_v = mmio_rd(e, M + 0x10004);
    unsigned after_old = f->mem.reads;
    uint32_t new_v = mmio_rd(e, M + 0x30004);
    unsigned after_new = f->mem.reads;
    uint32_t w = 0xA5A5A5A5u;
    bus_access(&e->mmio, M + 0x30010, &w, 4, true);
    uint32_t stored;
    memcpy(&stored, f->mem.regs + 0x10, 4);

    /* move the I/O BAR through 0xCFC (the case that must not deadlock) */
    cfg_wr(e, DEVFN, PCI_BASE_ADDRESS_0 + 4, 0xD000, 4);
    uint8_t io_old = 0, io_new = 0;
    bus_access(&e->pio, 0xC002, &io_old, 1, false);
    bus_access(&e->pio, 0xD002, &io_new, 1, false);

    /* move the 64-bit BAR through ECAM (likewise) */
    ecam_wr(e, DEVFN, PCI_BASE_ADDRESS_0 + 8, ((uint32_t)M + 0x40000) | 0xC, 4);
    uint32_t v64_new = mmio_rd(e, M + 0x40008);

    /* an overlapping BAR stays unmapped; BAR0 keeps working */
    cfg_wr(e, DEVFN, PCI_BASE_ADDRESS_0 + 8, (uint32_t)M + 0x30000, 4);
    unsigned m64_reads = f->mem64.reads;
    uint32_t ov = mmio_rd(e, M + 0x30004);
    bool overlap_ok = ov == 0x44332211u && f->mem64.reads == m64_reads;

    /* sizing with decoding on maps nothing at all-ones */
    cfg_wr(e, DEVFN, PCI_BASE_ADDRESS_0, 0xFFFFFFFFu, 4);
    uint32_t gone = mmio_rd(e, M + 0x30004);
    /* outside the window: unmapped */
    cfg_wr(e, DEVFN, PCI_BASE_ADDRESS_0, 0x10000000u, 4);
    bool outside_hit = bus_access(&e->mmio, 0x10000004u, &gone, 4, false);
    /* back inside, then memory decoding off */
    cfg_wr(e, DEVFN, PCI_BASE_ADDRESS_0, (uint32_t)M + 0x50000, 4);
    uint32_t back_v = mmio_rd(e, M + 0x50004);
    cfg_wr(e, DEVFN, PCI_COMMAND, PCI_COMMAND_IO, 2);
    uint32_t disabled_v = mmio_rd(e, M + 0x50004);
    unsigned cw = f->config_writes;
    env_free(e);

    CHECK_EQ(off_v, 0xFFFFFFFFu);
    CHECK_EQ(r1, r0);
    CHECK_EQ(v0, 0x44332211u);
    CHECK_EQ(last0, 4);
    CHECK_EQ(v64, 0x88776655u);
    CHECK_EQ(iob, 0x99);
    CHECK_EQ(old_v, 0xFFFFFFFFu);
    CHECK_EQ(after_old, before);
    CHECK_EQ(new_v, 0x44332211u);
    CHECK_EQ(after_new, before + 1);
    CHECK_EQ(stored, 0xA5A5A5A5u);
    CHECK_EQ(io_old, 0xFF);
    CHECK_EQ(io_new, 0x99);
    CHECK_EQ(v64_new, 0x88776655u);
    CHECK(overlap_ok);
    CHECK_EQ(gone, 0xFFFFFFFFu);
    CHECK(!outside_hit);
    CHECK_EQ(back_v, 0x44332211u);
    CHECK_EQ(disabled_v, 0xFFFFFFFFu);
    CHECK(cw > 0);                              /* the device hook ran */
}

TEST(test_intx)
{
    struct env *e = env_new();
    CHECK(e);
    struct fake *g = calloc(1, sizeof *g);
    CHECK(g);
    int r = fake_add(e, g, 7 << 3);             /* slot 7 shares GSI 19 with slot 3 */
    unsigned gsi = LAYOUT_PCI_INTX_GSI(SLOT, 0);
    pci_set_irq(&e->f->pci, 1);
    int l1 = e->irq.level[gsi];
    uint32_t st1 = cfg_rd(e, DEVFN, PCI_STATUS, 2);
    cfg_wr(e, DEVFN, PCI_COMMAND, PCI_COMMAND_INTX_DISABLE, 2);
    int l2 = e->irq.level[gsi];
    uint32_t st2 = cfg_rd(e, DEVFN, PCI_STATUS, 2);   /* status still says pending */
    cfg_wr(e, DEVFN, PCI_COMMAND, 0, 2);
    int l3 = e->irq.level[gsi];
    pci_set_irq(&g->pci, 1);
    pci_set_irq(&e->f->pci, 0);
    int l4 = e->irq.level[gsi];                 /* slot 7 still asserts */
    uint32_t st4 = cfg_rd(e, DEVFN, PCI_STATUS, 2);
    pci_set_irq(&g->pci, 0);
    int l5 = e->irq.level[gsi];
    /* disable while deasserted, assert: nothing reaches the GSI */
    cfg_wr(e, DEVFN, PCI_COMMAND, PCI_COMMAND_INTX_DISABLE, 2);
    unsigned calls = e->irq.calls;
    pci_set_irq(&e->f->pci, 1);
    unsigned calls2 = e->irq.calls;
    pci_device_unregister(&g->pci);
    free(g);
    env_free(e);
    CHECK_EQ(r, 0);
    CHECK_EQ(gsi, 19);
    CHECK_EQ(l1, 1);
    CHECK(st1 & PCI_STATUS_INTERRUPT);
    CHECK_EQ(l2, 0);
    CHECK(st2 & PCI_STATUS_INTERRUPT);
    CHECK_EQ(l3, 1);
    CHECK_EQ(l4, 1);
    CHECK(!(st4 & PCI_STATUS_INTERRUPT));
    CHECK_EQ(l5, 0);
    CHECK_EQ(calls2, calls);
}

TEST(test_intx_mapping_matches_tables)
{
    struct env *e = env_new();
    CHECK(e);
    int bad = 0;
    for (unsigned s = 0; s < 32; s++)
        for (unsigned p = 0; p < 4; p++)
            if (pci_intx_gsi(&e->pb, s, p) != (uint32_t)LAYOUT_PCI_INTX_GSI(s, p) ||
                pci_intx_gsi(&e->pb, s, p) < 16 || pci_intx_gsi(&e->pb, s, p) > 23)
                bad = 1;
    uint32_t gsi = e->f->pci.intx_gsi;
    env_free(e);
    CHECK_EQ(bad, 0);
    CHECK_EQ(gsi, LAYOUT_PCI_INTX_GSI(SLOT, 0));
}

TEST(test_capability_list)
{
    struct env *e = env_new();
    CHECK(e);
    struct pci_device *d = &e->f->pci;
    uint32_t st0 = cfg_rd(e, DEVFN, PCI_STATUS, 2);
    int c1 = pci_add_capability(d, PCI_CAP_ID_VNDR, 5);
    int c2 = pci_add_capability(d, PCI_CAP_ID_VNDR, 16);
    int c3 = pci_add_capability(d, 0x05, 10);
    uint32_t st = cfg_rd(e, DEVFN, PCI_STATUS, 2);
    /* walk it like a driver */
    uint8_t ids[8], offs[8];
    unsigned n = 0;
    uint32_t p = cfg_rd(e, DEVFN, PCI_CAPABILITY_LIST, 1);
    while (p && n < 8) {
        offs[n] = (uint8_t)p;
        ids[n++] = (uint8_t)ecam_rd(e, DEVFN, p, 1);
        p = cfg_rd(e, DEVFN, p + 1, 1);
    }
    /* the guest cannot rewrite the links */
    cfg_wr(e, DEVFN, (unsigned)c1 + 1, 0, 1);
    uint32_t link = cfg_rd(e, DEVFN, (unsigned)c1 + 1, 1);
    /* fill the legacy space, then ENOSPC */
    int last = 0, r;
    while ((r = pci_add_capability(d, PCI_CAP_ID_VNDR, 16)) > 0)
        last = r;
    int bad_len = pci_add_capability(d, PCI_CAP_ID_VNDR, 1);
    env_free(e);
    CHECK(!(st0 & PCI_STATUS_CAP_LIST));
    CHECK(st & PCI_STATUS_CAP_LIST);
    CHECK_EQ(c1, 0x40);
    CHECK_EQ(c2, 0x48);
    CHECK_EQ(c3, 0x58);
    CHECK_EQ(n, 3);
    CHECK_EQ(offs[0], 0x40);
    CHECK_EQ(offs[1], 0x48);
    CHECK_EQ(offs[2], 0x58);
    CHECK_EQ(ids[0], PCI_CAP_ID_VNDR);
    CHECK_EQ(ids[2], 0x05);
    CHECK_EQ(link, 0x48);
    CHECK(last > 0 && last + 16 <= 256);
    CHECK_EQ(r, -ENOSPC);
    CHECK_EQ(bad_len, -EINVAL);
}

TEST(test_reset_and_assign)
{
    struct env *e = env_new();
    CHECK(e);
    struct fake *f = e->f;
    place(e, (uint32_t)LAYOUT_PCI_MMIO_BASE, 0x2000, LAYOUT_PCI_MMIO_BASE + 0x100000);
    cfg_wr(e, DEVFN, PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_IO, 2);
    pci_set_irq(&f->pci, 1);
    pci_bus_reset(&e->pb);
    uint32_t cmd = cfg_rd(e, DEVFN, PCI_COMMAND, 2);
    uint32_t bar0 = cfg_rd(e, DEVFN, PCI_BASE_ADDRESS_0, 4);
    uint32_t bar1 = cfg_rd(e, DEVFN, PCI_BASE_ADDRESS_0 + 4, 4);
    bool mapped = f->pci.bars[0].mapped || f->pci.bars[1].mapped || f->pci.bars[2].mapped;
    int lvl = e->irq.level[LAYOUT_PCI_INTX_GSI(SLOT, 0)];
    uint32_t vendor = cfg_rd(e, DEVFN, 0, 2);

    int ar = pci_bus_assign_resources(&e->pb);
    uint32_t a0 = cfg_rd(e, DEVFN, PCI_BASE_ADDRESS_0, 4);
    uint32_t a1 = cfg_rd(e, DEVFN, PCI_BASE_ADDRESS_0 + 4, 4);
    uint64_t a2 = cfg_rd(e, DEVFN, PCI_BASE_ADDRESS_0 + 8, 4) |
                  (uint64_t)cfg_rd(e, DEVFN, PCI_BASE_ADDRESS_0 + 12, 4) << 32;
    uint32_t cmd2 = cfg_rd(e, DEVFN, PCI_COMMAND, 2);
    uint32_t line = cfg_rd(e, DEVFN, PCI_INTERRUPT_LINE, 1);
    f->mem64.regs[0] = 0x5A;
    uint32_t v = mmio_rd(e, a2 & ~0xFull);
    env_free(e);
    CHECK_EQ(cmd, 0);
    CHECK_EQ(bar0, 0);
    CHECK_EQ(bar1, 1);
    CHECK(!mapped);
    CHECK_EQ(lvl, 0);
    CHECK_EQ(vendor, 0x1af4);
    CHECK_EQ(ar, 0);
    CHECK(a0 >= LAYOUT_PCI_MMIO_BASE && a0 % 0x1000 == 0);
    CHECK((a1 & ~3u) >= LAYOUT_PCI_IO_BASE && (a1 & 1) && (a1 & ~3u) % 32 == 0);
    CHECK((a2 & 0xF) == 0xC && (a2 & ~0xFull) % 0x4000 == 0);
    CHECK((a2 & ~0xFull) + 0x4000 <= LAYOUT_PCI_MMIO_BASE + LAYOUT_PCI_MMIO_SIZE);
    CHECK_EQ(cmd2, PCI_COMMAND_MEMORY | PCI_COMMAND_IO);
    CHECK_EQ(line, LAYOUT_PCI_INTX_GSI(SLOT, 0));
    CHECK_EQ(v & 0xFF, 0x5A);
}

static const struct bus_ops dummy_ops = { region_read, region_write };

TEST(test_registration_errors)
{
    struct env *e = env_new();
    CHECK(e);
    struct fake *g = calloc(1, sizeof *g);
    CHECK(g);
    g->pci.name = "g";
    int dup = pci_device_register(&e->pb, &g->pci, DEVFN, 1, 2, 0, 0, 0, 0);
    int fn = pci_device_register(&e->pb, &g->pci, (9 << 3) | 2, 1, 2, 0, 0, 0, 0);
    int anyslot = pci_device_register(&e->pb, &g->pci, -1, 1, 2, 0, 0, 0, 0);
    uint8_t slot = g->pci.devfn >> 3;
    int io_big = pci_register_bar(&g->pci, 0, PCI_BAR_IO, 512, false, &dummy_ops, NULL);
    int io_pref = pci_register_bar(&g->pci, 0, PCI_BAR_IO, 16, true, &dummy_ops, NULL);
    int npot = pci_register_bar(&g->pci, 0, PCI_BAR_MEM32, 0x3000, false, &dummy_ops, NULL);
    int small = pci_register_bar(&g->pci, 0, PCI_BAR_MEM32, 8, false, &dummy_ops, NULL);
    int m64_last = pci_register_bar(&g->pci, 5, PCI_BAR_MEM64, 0x1000, false, &dummy_ops, NULL);
    int ok64 = pci_register_bar(&g->pci, 4, PCI_BAR_MEM64, 0x1000, false, &dummy_ops, NULL);
    int upper = pci_register_bar(&g->pci, 5, PCI_BAR_MEM32, 0x1000, false, &dummy_ops, NULL);
    pci_device_unregister(&g->pci);
    free(g);
    env_free(e);
    CHECK_EQ(dup, -EEXIST);
    CHECK_EQ(fn, -EINVAL);
    CHECK_EQ(anyslot, 0);
    CHECK_EQ(slot, 1);
    CHECK_EQ(io_big, -EINVAL);
    CHECK_EQ(io_pref, -EINVAL);
    CHECK_EQ(npot, -EINVAL);
    CHECK_EQ(small, -EINVAL);
    CHECK_EQ(m64_last, -EINVAL);
    CHECK_EQ(ok64, 0);
    CHECK_EQ(upper, -EBUSY);
}

TEST(test_bus_init_conflict)
{
    struct bus pio, mmio;
    bus_init(&pio);
    bus_init(&mmio);
    /* the reset control registered at 0xCF9 on its own collides with the
     * 0xCF8 dword: it must be passed as cf9_ops instead */
    bus_register(&pio, 0xCF9, 1, "reset", &dummy_ops, NULL);
    struct pci_bus_config cfg = {
        .ecam_base = LAYOUT_PCI_ECAM_BASE,
        .mmio_base = LAYOUT_PCI_MMIO_BASE, .mmio_size = LAYOUT_PCI_MMIO_SIZE,
        .io_base = LAYOUT_PCI_IO_BASE, .io_size = LAYOUT_PCI_IO_SIZE,
        .intx_gsi_base = 16,
    };
    struct pci_bus *pb = calloc(1, sizeof *pb);
    CHECK(pb);
    int r = pci_bus_init(pb, NULL, &pio, &mmio, &cfg);
    size_t npio = pio.n, nmmio = mmio.n;
    bus_unregister(&pio, 0xCF9);
    /* a window that hides the config ports is refused */
    struct pci_bus_config bad = cfg;
    bad.io_base = 0xC00;
    int r2 = pci_bus_init(pb, NULL, &pio, &mmio, &bad);
    /* a later-registered mmio range collides: everything rolled back */
    bus_register(&mmio, LAYOUT_PCI_MMIO_BASE, 0x1000, "x", &dummy_ops, NULL);
    int r3 = pci_bus_init(pb, NULL, &pio, &mmio, &cfg);
    size_t npio3 = pio.n, nmmio3 = mmio.n;
    free(pb);
    bus_destroy(&pio);
    bus_destroy(&mmio);
    CHECK_EQ(r, -EEXIST);
    CHECK_EQ(npio, 1);
    CHECK_EQ(nmmio, 0);
    CHECK_EQ(r2, -EINVAL);
    CHECK_EQ(r3, -EEXIST);
    CHECK_EQ(npio3, 0);
    CHECK_EQ(nmmio3, 1);
}

int main(void)
{
    RUN(test_host_bridge);
    RUN(test_cfc_every_width);
    RUN(test_bar_sizing);
    RUN(test_bar_relocation);
    RUN(test_intx);
    RUN(test_intx_mapping_matches_tables);
    RUN(test_capability_list);
    RUN(test_reset_and_assign);
    RUN(test_registration_errors);
    RUN(test_bus_init_conflict);
    return test_summary();
}
