/* Unit tests for MSI-X (PCI 3.0 §6.8.2) without KVM: delivery through
 * bus->send_msi, masking and pending bits, the function mask, validation
 * of guest table accesses. */
#include "arch/x86/layout.h"
#include "core/bus.h"
#include "hw/pci/pci.h"
#include "test.h"

#include <errno.h>
#include <stdlib.h>

#define NVEC 4
#define SLOT 2
#define DEVFN (SLOT << 3)
#define PBA_OFF 0x800
#define BAR_ADDR (LAYOUT_PCI_MMIO_BASE + 0x1000)

struct msi_rec {
    unsigned n;
    uint64_t addr[16];
    uint32_t data[16];
};

static void rec_msi(void *ctx, uint64_t addr, uint32_t data)
{
    struct msi_rec *r = ctx;
    if (r->n < 16) {
        r->addr[r->n] = addr;
        r->data[r->n] = data;
    }
    r->n++;
}

static void rec_gsi(void *ctx, uint32_t gsi, int level)
{
}

struct env {
    struct bus pio, mmio;
    struct pci_bus pb;
    struct pci_device d;
    struct msi_rec msi;
    int cap;
};

static int find_cap(struct env *e, uint8_t id)
{
    unsigned p = pci_config_read(&e->pb, DEVFN, PCI_CAPABILITY_LIST, 1);
    for (int guard = 0; p && guard < 48; guard++) {
        if (pci_config_read(&e->pb, DEVFN, p, 1) == id)
            return (int)p;
        p = pci_config_read(&e->pb, DEVFN, p + 1, 1);
    }
    return -1;
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
    };
    if (pci_bus_init(&e->pb, NULL, &e->pio, &e->mmio, &cfg) < 0) {
        free(e);
        return NULL;
    }
    e->pb.send_msi = rec_msi;
    e->pb.set_gsi = rec_gsi;
    e->pb.irq_ctx = &e->msi;
    e->d.name = "msix-dev";
    if (pci_device_register(&e->pb, &e->d, DEVFN, 0x1af4, 0x1041, 0x010000, 1, 0x1af4, 1) < 0 ||
        pci_register_bar(&e->d, 1, PCI_BAR_MEM32, 0x1000, false, &pci_msix_bar_ops, &e->d) < 0 ||
        pci_msix_init(&e->d, NVEC, 1, 0, PBA_OFF) < 0) {
        pci_bus_destroy(&e->pb);
        free(e);
        return NULL;
    }
    e->cap = find_cap(e, PCI_CAP_ID_MSIX);
    /* place the BAR and enable memory decoding through config space */
    pci_config_write(&e->pb, DEVFN, PCI_BASE_ADDRESS_0 + 4, (uint32_t)BAR_ADDR, 4);
    pci_config_write(&e->pb, DEVFN, PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER, 2);
    return e;
}

static void env_free(struct env *e)
{
    pci_device_unregister(&e->d);
    pci_bus_destroy(&e->pb);
    bus_destroy(&e->pio);
    bus_destroy(&e->mmio);
    free(e);
}

static void msix_ctrl(struct env *e, uint16_t v)
{
    pci_config_write(&e->pb, DEVFN, (uint32_t)e->cap + 2, v, 2);
}

static void wr32(struct env *e, uint64_t off, uint32_t v)
{
    bus_access(&e->mmio, BAR_ADDR + off, &v, 4, true);
}

static uint32_t rd32(struct env *e, uint64_t off)
{
    uint32_t v = 0;
    bus_access(&e->mmio, BAR_ADDR + off, &v, 4, false);
    return v;
}

/* Program vector v: LAPIC address, data, unmasked or not. */
static void vec(struct env *e, unsigned v, uint32_t data, bool masked)
{
    wr32(e, v * 16 + 0, 0xFEE00000u);
    wr32(e, v * 16 + 4, 0);
    wr32(e, v * 16 + 8, data);
    wr32(e, v * 16 + 12, masked ? 1 : 0);
}

TEST(test_capability)
{
    struct env *e = env_new();
    CHECK(e);
    int cap = e->cap;
    uint32_t ctl = pci_config_read(&e->pb, DEVFN, (uint32_t)cap + 2, 2);
    uint32_t table = pci_config_read(&e->pb, DEVFN, (uint32_t)cap + 4, 4);
    uint32_t pba = pci_config_read(&e->pb, DEVFN, (uint32_t)cap + 8, 4);
    /* the table size and BIRs are read-only; only bits 14/15 are writable */
    pci_config_write(&e->pb, DEVFN, (uint32_t)cap + 2, 0x3FFF, 2);
    pci_config_write(&e->pb, DEVFN, (uint32_t)cap + 4, 0x12345678, 4);
    uint32_t ctl2 = pci_config_read(&e->pb, DEVFN, (uint32_t)cap + 2, 2);
    uint32_t table2 = pci_config_read(&e->pb, DEVFN, (uint32_t)cap + 4, 4);
    /* vectors start masked, PBA clear */
    uint32_t vc = rd32(e, 12), pb = rd32(e, PBA_OFF);
    bool en = pci_msix_enabled(&e->d);
    msix_ctrl(e, 0x8000);
    bool en2 = pci_msix_enabled(&e->d);
    uint32_t ctl3 = pci_config_read(&e->pb, DEVFN, (uint32_t)cap + 2, 2);
    env_free(e);
    CHECK(cap >= 0x40);
    CHECK_EQ(ctl, NVEC - 1);
    CHECK_EQ(table, 1);                 /* offset 0, BIR 1 */
    CHECK_EQ(pba, PBA_OFF | 1);
    CHECK_EQ(ctl2, NVEC - 1);
    CHECK_EQ(table2, 1);
    CHECK_EQ(vc, 1);
    CHECK_EQ(pb, 0);
    CHECK(!en);
    CHECK(en2);
    CHECK_EQ(ctl3, 0x8000 | (NVEC - 1));
}

TEST(test_enable_and_deliver)
{
    struct env *e = env_new();
    CHECK(e);
    vec(e, 0, 0x41, false);
    vec(e, 3, 0x44, false);
    pci_msix_notify(&e->d, 0);              /* MSI-X off: dropped */
    unsigned n0 = e->msi.n;
    uint32_t pba0 = rd32(e, PBA_OFF);
    msix_ctrl(e, 0x8000);
    pci_msix_notify(&e->d, 0);
    pci_msix_notify(&e->d, 3);
    pci_msix_notify(&e->d, NVEC);           /* out of range: ignored */
    unsigned n1 = e->msi.n;
    uint64_t a0 = e->msi.addr[0];
    uint32_t d0 = e->msi.data[0], d1 = e->msi.data[1];
    /* a table write updates the message */
    wr32(e, 8, 0x51);
    pci_msix_notify(&e->d, 0);
    uint32_t d2 = e->msi.data[2];
    /* qword access to the address */
    uint64_t q = 0xFEE01000u, qr = 0;
    bus_access(&e->mmio, BAR_ADDR + 0, &q, 8, true);
    bus_access(&e->mmio, BAR_ADDR + 0, &qr, 8, false);
    pci_msix_notify(&e->d, 0);
    uint64_t a3 = e->msi.addr[3];
    int fd = pci_msix_vector_fd(&e->d, 0);  /* no VM: no eventfd */
    env_free(e);
    CHECK_EQ(n0, 0);
    CHECK_EQ(pba0, 0);
    CHECK_EQ(n1, 2);
    CHECK_EQ(a0, 0xFEE00000u);
    CHECK_EQ(d0, 0x41);
    CHECK_EQ(d1, 0x44);
    CHECK_EQ(d2, 0x51);
    CHECK_EQ(qr, 0xFEE01000u);
    CHECK_EQ(a3, 0xFEE01000u);
    CHECK_EQ(fd, -1);
}

TEST(test_mask_pending)
{
    struct env *e = env_new();
    CHECK(e);
    msix_ctrl(e, 0x8000);
    vec(e, 1, 0x61, true);
    pci_msix_notify(&e->d, 1);
    unsigned n0 = e->msi.n;
    uint32_t pba = rd32(e, PBA_OFF);
    uint64_t pba64 = 0;
    bus_access(&e->mmio, BAR_ADDR + PBA_OFF, &pba64, 8, false);
    /* PBA is read-only */
    wr32(e, PBA_OFF, 0);
    uint32_t pba2 = rd32(e, PBA_OFF);
    wr32(e, 16 + 12, 0);                    /* unmask: the pending message fires */
    unsigned n1 = e->msi.n;
    uint32_t d = e->msi.data[0];
    uint32_t pba3 = rd32(e, PBA_OFF);
    /* re-mask: no delivery, unmask with nothing pending: no delivery */
    wr32(e, 16 + 12, 1);
    wr32(e, 16 + 12, 0);
    unsigned n2 = e->msi.n;
    env_free(e);
    CHECK_EQ(n0, 0);
    CHECK_EQ(pba, 2);
    CHECK_EQ(pba64, 2);
    CHECK_EQ(pba2, 2);
    CHECK_EQ(n1, 1);
    CHECK_EQ(d, 0x61);
    CHECK_EQ(pba3, 0);
    CHECK_EQ(n2, 1);
}

TEST(test_function_mask)
{
    struct env *e = env_new();
    CHECK(e);
    vec(e, 0, 0x71, false);
    vec(e, 2, 0x73, false);
    msix_ctrl(e, 0x8000 | 0x4000);
    pci_msix_notify(&e->d, 0);
    pci_msix_notify(&e->d, 2);
    unsigned n0 = e->msi.n;
    uint32_t pba = rd32(e, PBA_OFF);
    uint32_t vc = rd32(e, 12);              /* vector mask bit untouched */
    msix_ctrl(e, 0x8000);
    unsigned n1 = e->msi.n;
    uint32_t pba2 = rd32(e, PBA_OFF);
    /* INTx is off while MSI-X is enabled (§6.8.2.3) */
    bool masked = e->d.intx_masked;
    msix_ctrl(e, 0);
    bool masked2 = e->d.intx_masked;
    env_free(e);
    CHECK_EQ(n0, 0);
    CHECK_EQ(pba, 0x5);
    CHECK_EQ(vc, 0);
    CHECK_EQ(n1, 2);
    CHECK_EQ(pba2, 0);
    CHECK(masked);
    CHECK(!masked2);
}

TEST(test_bad_accesses_ignored)
{
    struct env *e = env_new();
    CHECK(e);
    msix_ctrl(e, 0x8000);
    vec(e, 0, 0x81, false);
    /* past the table (vector NVEC), between table and PBA, past the PBA */
    wr32(e, NVEC * 16 + 8, 0xDEAD);
    uint32_t past = rd32(e, NVEC * 16 + 8);
    uint32_t past_pba = rd32(e, PBA_OFF + 8);
    /* byte, word and misaligned accesses */
    uint8_t b = 0x99;
    bus_access(&e->mmio, BAR_ADDR + 8, &b, 1, true);
    uint16_t w = 0x9999;
    bus_access(&e->mmio, BAR_ADDR + 8, &w, 2, true);
    uint32_t mis = 0x9999;
    bus_access(&e->mmio, BAR_ADDR + 10, &mis, 4, true);
    uint64_t q = ~0ull;
    bus_access(&e->mmio, BAR_ADDR + 4, &q, 8, true);      /* qword not 8-aligned */
    uint8_t rb = 0;
    bus_access(&e->mmio, BAR_ADDR + 8, &rb, 1, false);
    uint32_t data = rd32(e, 8);
    uint32_t hi = rd32(e, 4);
    /* reserved bits: address bits 1:0 and vector control 31:1 read 0 */
    wr32(e, 0, 0xFEE00003u);
    uint32_t lo = rd32(e, 0);
    wr32(e, 12, 0xFFFFFFFEu);
    uint32_t vc = rd32(e, 12);
    /* an address outside the LAPIC window is not delivered */
    wr32(e, 16 + 0, 0x12345678u);
    wr32(e, 16 + 12, 0);
    unsigned n0 = e->msi.n;
    pci_msix_notify(&e->d, 1);
    unsigned n1 = e->msi.n;
    pci_msix_notify(&e->d, 0);
    unsigned n2 = e->msi.n;
    /* direct calls with hostile offsets */
    uint32_t x = 0;
    pci_msix_table_access(&e->d, ~0ull - 3, &x, 4, false);
    pci_msix_pba_access(&e->d, 1ull << 40, &x, 4, false);
    pci_msix_table_access(&e->d, ~0ull - 3, &x, 4, true);
    env_free(e);
    CHECK_EQ(past, 0xFFFFFFFFu);
    CHECK_EQ(past_pba, 0xFFFFFFFFu);
    CHECK_EQ(rb, 0xFF);
    CHECK_EQ(data, 0x81);
    CHECK_EQ(hi, 0);
    CHECK_EQ(lo, 0xFEE00000u);
    CHECK_EQ(vc, 0);
    CHECK_EQ(n1, n0);
    CHECK_EQ(n2, n0 + 1);
    CHECK_EQ(x, 0xFFFFFFFFu);
}

TEST(test_init_validation_and_reset)
{
    struct env *e = env_new();
    CHECK(e);
    struct pci_device d2 = { .name = "d2" };
    int r = pci_device_register(&e->pb, &d2, 5 << 3, 1, 2, 0, 0, 0, 0);
    pci_register_bar(&d2, 0, PCI_BAR_MEM32, 0x1000, false, &pci_msix_bar_ops, &d2);
    pci_register_bar(&d2, 1, PCI_BAR_IO, 16, false, &pci_msix_bar_ops, &d2);
    int no_bar = pci_msix_init(&d2, 4, 2, 0, 0x800);
    int io_bar = pci_msix_init(&d2, 4, 1, 0, 0x800);
    int zero = pci_msix_init(&d2, 0, 0, 0, 0x800);
    int too_many = pci_msix_init(&d2, 2049, 0, 0, 0x800);
    int overlap = pci_msix_init(&d2, 4, 0, 0, 0x20);
    int unaligned = pci_msix_init(&d2, 4, 0, 4, 0x800);
    int too_big = pci_msix_init(&d2, 256, 0, 0, 0x800);  /* 4 KiB table in a 4 KiB BAR */
    int ok = pci_msix_init(&d2, 8, 0, 0, 0x800);
    int again = pci_msix_init(&d2, 8, 0, 0, 0x800);
    pci_device_unregister(&d2);

    msix_ctrl(e, 0x8000);
    vec(e, 0, 0x91, false);
    pci_bus_reset(&e->pb);
    bool en = pci_msix_enabled(&e->d);
    uint32_t vc = 0, data = 1;
    pci_config_write(&e->pb, DEVFN, PCI_BASE_ADDRESS_0 + 4, (uint32_t)BAR_ADDR, 4);
    pci_config_write(&e->pb, DEVFN, PCI_COMMAND, PCI_COMMAND_MEMORY, 2);
    vc = rd32(e, 12);
    data = rd32(e, 8);
    uint32_t ctl = pci_config_read(&e->pb, DEVFN, (uint32_t)e->cap + 2, 2);
    env_free(e);
    CHECK_EQ(r, 0);
    CHECK_EQ(no_bar, -EINVAL);
    CHECK_EQ(io_bar, -EINVAL);
    CHECK_EQ(zero, -EINVAL);
    CHECK_EQ(too_many, -EINVAL);
    CHECK_EQ(overlap, -EINVAL);
    CHECK_EQ(unaligned, -EINVAL);
    CHECK_EQ(too_big, -EINVAL);
    CHECK_EQ(ok, 0);
    CHECK_EQ(again, -EINVAL);
    CHECK(!en);
    CHECK_EQ(vc, 1);
    CHECK_EQ(data, 0);
    CHECK_EQ(ctl, NVEC - 1);
}

int main(void)
{
    RUN(test_capability);
    RUN(test_enable_and_deliver);
    RUN(test_mask_pending);
    RUN(test_function_mask);
    RUN(test_bad_accesses_ignored);
    RUN(test_init_validation_and_reset);
    return test_summary();
}
