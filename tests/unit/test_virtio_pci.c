/* The virtio PCI transport (src/hw/virtio/virtio_pci.c) on a test PCI bus
 * (pci_bus_init with vm NULL, as tests/unit/test_pci.c): the vendor
 * capabilities, the common configuration registers, MSI-X vector checks,
 * the ISR (read to clear, INTx deassert), the legacy I/O BAR (features,
 * queue PFN -> rings with 4096 alignment, status, notify) and device
 * config through both interfaces. A fake device model records what the
 * transport asks of it; its queue notifications arrive on the I/O thread's
 * loop, run here on the test thread.
 *
 * vm == NULL: no KVM ioeventfds; the rings live in the fixture's own
 * guest memory, handed to virtio_pci_new. */
#include "arch/x86/layout.h"
#include "core/bus.h"
#include "core/iothread.h"
#include "core/log.h"
#include "core/loop.h"
#include "hw/pci/pci.h"
#include "hw/virtio/virtio_pci.h"
#include "test.h"

#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#define CC_DFSELECT 0x00
#define CC_DF       0x04
#define CC_GFSELECT 0x08
#define CC_GF       0x0c
#define CC_MSIX     0x10
#define CC_NUMQ     0x12
#define CC_STATUS   0x14
#define CC_CFGGEN   0x15
#define CC_Q_SELECT 0x16
#define CC_Q_SIZE   0x18
#define CC_Q_MSIX   0x1a
#define CC_Q_ENABLE 0x1c
#define CC_Q_NOFF   0x1e
#define CC_Q_DESC   0x20
#define CC_Q_AVAIL  0x28
#define CC_Q_USED   0x30

#define L_HOST_FEATURES  0x00
#define L_GUEST_FEATURES 0x04
#define L_QUEUE_PFN      0x08
#define L_QUEUE_NUM      0x0c
#define L_QUEUE_SEL      0x0e
#define L_QUEUE_NOTIFY   0x10
#define L_STATUS         0x12
#define L_ISR            0x13
#define L_CONFIG         0x14   /* without MSI-X */

#define NQ 3
#define QMAX 64
#define CFG_SIZE 8
#define SLOT 4
#define DEVFN (SLOT << 3)

struct fake {
    uint8_t cfg[CFG_SIZE];
    unsigned notifies[NQ], resets, activations;
};

static uint64_t fake_features(struct virtio_dev *vd) { return 1ULL << 3 | 1ULL << 35; }

static void fake_cfg_read(struct virtio_dev *vd, uint32_t off, void *d, unsigned len)
{
    struct fake *f = vd->opaque;
    memcpy(d, f->cfg + off, len);
}

static void fake_cfg_write(struct virtio_dev *vd, uint32_t off, const void *d, unsigned len)
{
    struct fake *f = vd->opaque;
    memcpy(f->cfg + off, d, len);
}

static int fake_activate(struct virtio_dev *vd)
{
    ((struct fake *)vd->opaque)->activations++;
    return 0;
}

static void fake_notify(struct virtio_dev *vd, unsigned q)
{
    struct fake *f = vd->opaque;
    if (q < NQ)
        f->notifies[q]++;
}

static void fake_reset(struct virtio_dev *vd) { ((struct fake *)vd->opaque)->resets++; }

static const struct virtio_device_ops fake_ops = {
    .device_id = 4, .name = "fake-virtio", .num_queues = NQ, .queue_max_size = QMAX,
    .config_size = CFG_SIZE, .features = fake_features, .config_read = fake_cfg_read,
    .config_write = fake_cfg_write, .activate = fake_activate, .queue_notify = fake_notify,
    .reset = fake_reset,
};

struct irq_rec {
    int level[24];
};

static void rec_set_gsi(void *ctx, uint32_t gsi, int level)
{
    struct irq_rec *r = ctx;
    if (gsi < 24)
        r->level[gsi] = level;
}

struct fx {
    struct bus pio, mmio;
    struct pci_bus pb;
    struct irq_rec irq;
    struct iothread *io;
    struct guest_mem mem;
    struct fake dev;
    struct virtio_pci *vp;
    uint64_t modern, msix;      /* BAR addresses */
    uint32_t legacy;
    int tfd;
};

static void fx_free(struct fx *f)
{
    if (!f)
        return;
    virtio_pci_free(f->vp);
    if (f->tfd >= 0) {
        loop_del_fd(iothread_loop(f->io), f->tfd);
        close(f->tfd);
    }
    iothread_free(f->io);
    pci_bus_destroy(&f->pb);
    bus_destroy(&f->pio);
    bus_destroy(&f->mmio);
    if (f->mem.base)
        gmem_destroy(&f->mem);
    free(f);
}

static void fx_tick(void *opaque, int fd, uint32_t events)
{
    struct fx *f = opaque;
    uint64_t n;
    ssize_t r = read(fd, &n, sizeof n);
    (void)r;
    loop_quit(iothread_loop(f->io));
}

static struct fx *fx_new(void)
{
    struct fx *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->tfd = -1;
    bus_init(&f->pio);
    bus_init(&f->mmio);
    struct pci_bus_config cfg = {
        .ecam_base = LAYOUT_PCI_ECAM_BASE,
        .mmio_base = LAYOUT_PCI_MMIO_BASE, .mmio_size = LAYOUT_PCI_MMIO_SIZE,
        .io_base = LAYOUT_PCI_IO_BASE, .io_size = LAYOUT_PCI_IO_SIZE,
        .intx_gsi_base = LAYOUT_PCI_INTX_GSI_BASE,
    };
    if (pci_bus_init(&f->pb, NULL, &f->pio, &f->mmio, &cfg) < 0) {
        free(f);
        return NULL;
    }
    f->pb.set_gsi = rec_set_gsi;
    f->pb.irq_ctx = &f->irq;
    f->io = iothread_new("test-io");
    char err[200];
    if (!f->io || gmem_init(&f->mem, 4 << 20) < 0)
        goto fail;
    f->vp = virtio_pci_new(NULL, &f->mem, &f->pb, DEVFN, "fake-virtio", &fake_ops, &f->dev, f->io, err,
                           sizeof err);
    if (!f->vp) {
        printf("    virtio_pci_new: %s\n", err);
        goto fail;
    }
    if (pci_bus_assign_resources(&f->pb) < 0)
        goto fail;
    struct pci_device *d = virtio_pci_pci(f->vp);
    f->modern = d->bars[VIRTIO_PCI_MODERN_BAR].mapped_at;
    f->msix = d->bars[VIRTIO_PCI_MSIX_BAR].mapped_at;
    f->legacy = (uint32_t)d->bars[VIRTIO_PCI_LEGACY_BAR].mapped_at;
    if (!d->bars[VIRTIO_PCI_MODERN_BAR].mapped || !d->bars[VIRTIO_PCI_LEGACY_BAR].mapped)
        goto fail;
    f->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    struct itimerspec its = { { 0, 1000000 }, { 0, 1000000 } };
    if (f->tfd < 0 || timerfd_settime(f->tfd, 0, &its, NULL) < 0 ||
        loop_add_fd(iothread_loop(f->io), f->tfd, EPOLLIN, fx_tick, f) < 0)
        goto fail;
    return f;
fail:
    fx_free(f);
    return NULL;
}

static uint64_t mrd(struct fx *f, uint64_t off, unsigned len)
{
    uint64_t v = 0;
    bus_access(&f->mmio, f->modern + off, &v, len, false);
    return v;
}

static void mwr(struct fx *f, uint64_t off, uint64_t v, unsigned len)
{
    bus_access(&f->mmio, f->modern + off, &v, len, true);
}

static uint64_t lrd(struct fx *f, uint64_t off, unsigned len)
{
    uint64_t v = 0;
    bus_access(&f->pio, f->legacy + off, &v, len, false);
    return v;
}

static void lwr(struct fx *f, uint64_t off, uint64_t v, unsigned len)
{
    bus_access(&f->pio, f->legacy + off, &v, len, true);
}

static uint32_t cfg_rd(struct fx *f, uint32_t off, unsigned len)
{
    return pci_config_read(&f->pb, DEVFN, off, len);
}

static void run_io(struct fx *f, unsigned slices)
{
    for (unsigned i = 0; i < slices; i++)
        loop_run(iothread_loop(f->io));
}

TEST(ids_and_capabilities)
{
    struct fx *f = fx_new();
    CHECK(f);
    CHECK_EQ(cfg_rd(f, 0x00, 2), 0x1af4);
    CHECK_EQ(cfg_rd(f, 0x02, 2), 0x1005);      /* transitional entropy ID */
    CHECK_EQ(cfg_rd(f, 0x2c, 2), 0x1af4);      /* subsystem vendor */
    CHECK_EQ(cfg_rd(f, 0x2e, 2), 4);           /* subsystem = device type */
    CHECK_EQ(cfg_rd(f, 0x08, 1), 0);           /* revision 0: transitional */
    CHECK_EQ(cfg_rd(f, 0x3d, 1), 1);           /* INTA# */
    CHECK(cfg_rd(f, PCI_STATUS, 2) & 0x10);    /* capability list */
    bool seen[5] = { false };
    bool msix = false;
    unsigned guard = 0;
    for (uint8_t at = (uint8_t)cfg_rd(f, PCI_CAPABILITY_LIST, 1); at && guard < 48; guard++) {
        uint8_t id = (uint8_t)cfg_rd(f, at, 1);
        if (id == PCI_CAP_ID_MSIX) {
            msix = true;
            CHECK_EQ(cfg_rd(f, at + 2, 2) & 0x7ff, NQ);     /* table size - 1 = NQ: NQ+1 vectors */
        } else if (id == PCI_CAP_ID_VNDR) {
            uint8_t len = (uint8_t)cfg_rd(f, at + 2, 1), type = (uint8_t)cfg_rd(f, at + 3, 1);
            uint8_t bar = (uint8_t)cfg_rd(f, at + 4, 1);
            uint32_t off = cfg_rd(f, at + 8, 4), length = cfg_rd(f, at + 12, 4);
            CHECK(type >= 1 && type <= 4);
            CHECK(!seen[type]);
            seen[type] = true;
            CHECK_EQ(bar, VIRTIO_PCI_MODERN_BAR);
            CHECK(length > 0 && off + length <= VIRTIO_PCI_MODERN_SIZE);
            switch (type) {
            case 1: CHECK_EQ(off, VIRTIO_PCI_COMMON_OFF); CHECK(length >= 0x38); CHECK_EQ(len, 16); break;
            case 2:
                CHECK_EQ(off, VIRTIO_PCI_NOTIFY_OFF);
                CHECK_EQ(len, 20);
                CHECK_EQ(cfg_rd(f, at + 16, 4), VIRTIO_PCI_NOTIFY_MULT);
                CHECK(length >= NQ * VIRTIO_PCI_NOTIFY_MULT);
                break;
            case 3: CHECK_EQ(off, VIRTIO_PCI_ISR_OFF); CHECK(length >= 1); break;
            case 4: CHECK_EQ(off, VIRTIO_PCI_DEVICE_OFF); CHECK(length >= CFG_SIZE); break;
            }
        }
        at = (uint8_t)cfg_rd(f, at + 1, 1);
    }
    CHECK(msix);
    CHECK(seen[1] && seen[2] && seen[3] && seen[4]);
    /* BAR types: 0 I/O, 1 MEM32, 4 MEM64. */
    CHECK_EQ(cfg_rd(f, PCI_BASE_ADDRESS_0, 4) & 1, 1);
    CHECK_EQ(cfg_rd(f, PCI_BASE_ADDRESS_0 + 4, 4) & 7, 0);
    CHECK_EQ(cfg_rd(f, PCI_BASE_ADDRESS_0 + 16, 4) & 6, 4);
    fx_free(f);
}

TEST(common_config_features_and_status)
{
    struct fx *f = fx_new();
    CHECK(f);
    struct virtio_dev *vd = virtio_pci_dev(f->vp);
    CHECK_EQ(mrd(f, CC_NUMQ, 2), NQ);
    mwr(f, CC_DFSELECT, 0, 4);
    uint32_t lo = (uint32_t)mrd(f, CC_DF, 4);
    CHECK(lo & (1u << 3));
    CHECK(lo & (1u << VIRTIO_F_INDIRECT_DESC));
    mwr(f, CC_DFSELECT, 1, 4);
    CHECK_EQ(mrd(f, CC_DFSELECT, 4), 1);
    uint32_t hi = (uint32_t)mrd(f, CC_DF, 4);
    CHECK(hi & 1);                      /* VERSION_1 */
    CHECK(hi & (1u << 3));              /* bit 35 */
    mwr(f, CC_DFSELECT, 7, 4);
    CHECK_EQ(mrd(f, CC_DF, 4), 0);      /* beyond 64 bits: 0 */
    /* Driver features through the window. */
    mwr(f, CC_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER, 1);
    mwr(f, CC_GFSELECT, 0, 4);
    mwr(f, CC_GF, 1u << 3, 4);
    mwr(f, CC_GFSELECT, 1, 4);
    mwr(f, CC_GF, 1, 4);
    CHECK_EQ(mrd(f, CC_GF, 4), 1);
    mwr(f, CC_GFSELECT, 0, 4);
    CHECK_EQ(mrd(f, CC_GF, 4), 1u << 3);
    CHECK_EQ(vd->s.driver_features, (1ULL << 32) | (1ULL << 3));
    mwr(f, CC_STATUS, 0x0b, 1);         /* + FEATURES_OK */
    CHECK_EQ(mrd(f, CC_STATUS, 1), 0x0b);
    /* Reset through status 0. */
    unsigned resets = f->dev.resets;
    mwr(f, CC_STATUS, 0, 1);
    CHECK_EQ(mrd(f, CC_STATUS, 1), 0);
    CHECK_EQ(f->dev.resets, resets + 1);
    CHECK_EQ(vd->s.driver_features, 0);
    fx_free(f);
}

TEST(common_config_queues)
{
    struct fx *f = fx_new();
    CHECK(f);
    struct virtio_dev *vd = virtio_pci_dev(f->vp);
    mwr(f, CC_Q_SELECT, 1, 2);
    CHECK_EQ(mrd(f, CC_Q_SELECT, 2), 1);
    CHECK_EQ(mrd(f, CC_Q_SIZE, 2), QMAX);
    CHECK_EQ(mrd(f, CC_Q_NOFF, 2), 1);
    CHECK_EQ(mrd(f, CC_Q_MSIX, 2), VIRTIO_MSI_NO_VECTOR);
    /* Size: a power of 2 up to the maximum, else ignored. */
    mwr(f, CC_Q_SIZE, 16, 2);
    CHECK_EQ(mrd(f, CC_Q_SIZE, 2), 16);
    mwr(f, CC_Q_SIZE, 24, 2);
    CHECK_EQ(mrd(f, CC_Q_SIZE, 2), 16);
    mwr(f, CC_Q_SIZE, 128, 2);
    CHECK_EQ(mrd(f, CC_Q_SIZE, 2), 16);
    /* Addresses, in 32-bit halves. */
    mwr(f, CC_Q_DESC, 0x10000, 4);
    mwr(f, CC_Q_DESC + 4, 0, 4);
    mwr(f, CC_Q_AVAIL, 0x11000, 4);
    mwr(f, CC_Q_USED, 0x12000, 4);
    mwr(f, CC_Q_USED + 4, 0, 4);
    CHECK_EQ(mrd(f, CC_Q_DESC, 4), 0x10000);
    CHECK_EQ(mrd(f, CC_Q_AVAIL, 4), 0x11000);
    CHECK_EQ(mrd(f, CC_Q_USED, 4), 0x12000);
    CHECK_EQ(vd->vqs[1].s.used_gpa, 0x12000);
    mwr(f, CC_Q_ENABLE, 1, 2);
    CHECK_EQ(mrd(f, CC_Q_ENABLE, 2), 1);
    CHECK(vd->vqs[1].s.ready);
    /* Enabled: address and size writes are ignored. */
    mwr(f, CC_Q_DESC, 0x20000, 4);
    mwr(f, CC_Q_SIZE, 8, 2);
    CHECK_EQ(mrd(f, CC_Q_DESC, 4), 0x10000);
    CHECK_EQ(mrd(f, CC_Q_SIZE, 2), 16);
    /* Writing 0 to queue_enable is not allowed: ignored. */
    mwr(f, CC_Q_ENABLE, 0, 2);
    CHECK(vd->vqs[1].s.ready);
    /* A queue beyond num_queues reads as absent. */
    mwr(f, CC_Q_SELECT, NQ, 2);
    CHECK_EQ(mrd(f, CC_Q_SIZE, 2), 0);
    CHECK_EQ(mrd(f, CC_Q_ENABLE, 2), 0);
    mwr(f, CC_Q_ENABLE, 1, 2);          /* harmless */
    /* Enabling rings outside RAM: NEEDS_RESET, the queue stays off. */
    mwr(f, CC_Q_SELECT, 2, 2);
    mwr(f, CC_Q_DESC, 0, 4);
    mwr(f, CC_Q_DESC + 4, 0x100, 4);
    mwr(f, CC_Q_ENABLE, 1, 2);
    CHECK_EQ(mrd(f, CC_Q_ENABLE, 2), 0);
    CHECK(mrd(f, CC_STATUS, 1) & VIRTIO_STATUS_NEEDS_RESET);
    /* Reset clears the queues. */
    mwr(f, CC_STATUS, 0, 1);
    mwr(f, CC_Q_SELECT, 1, 2);
    CHECK_EQ(mrd(f, CC_Q_ENABLE, 2), 0);
    CHECK_EQ(mrd(f, CC_Q_SIZE, 2), QMAX);
    CHECK_EQ(mrd(f, CC_Q_DESC, 4), 0);
    CHECK_EQ(mrd(f, CC_STATUS, 1), 0);
    fx_free(f);
}

/* §4.1.5.1.2: a vector the table does not have reads back NO_VECTOR. */
TEST(msix_vectors_checked)
{
    struct fx *f = fx_new();
    CHECK(f);
    mwr(f, CC_MSIX, 0, 2);
    CHECK_EQ(mrd(f, CC_MSIX, 2), 0);
    mwr(f, CC_MSIX, NQ, 2);             /* NQ + 1 vectors: NQ is the last */
    CHECK_EQ(mrd(f, CC_MSIX, 2), NQ);
    mwr(f, CC_MSIX, NQ + 1, 2);
    CHECK_EQ(mrd(f, CC_MSIX, 2), VIRTIO_MSI_NO_VECTOR);
    mwr(f, CC_Q_SELECT, 2, 2);
    mwr(f, CC_Q_MSIX, 1, 2);
    CHECK_EQ(mrd(f, CC_Q_MSIX, 2), 1);
    mwr(f, CC_Q_MSIX, 0x7fff, 2);
    CHECK_EQ(mrd(f, CC_Q_MSIX, 2), VIRTIO_MSI_NO_VECTOR);
    mwr(f, CC_Q_MSIX, 2, 2);
    mwr(f, CC_Q_MSIX, VIRTIO_MSI_NO_VECTOR, 2);
    CHECK_EQ(mrd(f, CC_Q_MSIX, 2), VIRTIO_MSI_NO_VECTOR);
    /* Reset: back to NO_VECTOR. */
    mwr(f, CC_MSIX, 1, 2);
    mwr(f, CC_Q_MSIX, 1, 2);
    mwr(f, CC_STATUS, 0, 1);
    CHECK_EQ(mrd(f, CC_MSIX, 2), VIRTIO_MSI_NO_VECTOR);
    mwr(f, CC_Q_SELECT, 2, 2);
    CHECK_EQ(mrd(f, CC_Q_MSIX, 2), VIRTIO_MSI_NO_VECTOR);
    fx_free(f);
}

TEST(isr_read_to_clear_and_intx)
{
    struct fx *f = fx_new();
    CHECK(f);
    struct virtio_dev *vd = virtio_pci_dev(f->vp);
    uint32_t gsi = LAYOUT_PCI_INTX_GSI(SLOT, 0);
    /* Bring the device up (INTx: MSI-X off). */
    mwr(f, CC_STATUS, 3, 1);
    mwr(f, CC_GFSELECT, 1, 4);
    mwr(f, CC_GF, 1, 4);
    mwr(f, CC_STATUS, 0x0b, 1);
    mwr(f, CC_STATUS, 0x0f, 1);
    CHECK_EQ(f->dev.activations, 1);
    /* Used-buffer interrupt for queue 0 (the device's call). */
    vd->transport->notify_queue(vd, 0);
    CHECK_EQ(f->irq.level[gsi], 1);
    CHECK(cfg_rd(f, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);
    CHECK_EQ(mrd(f, VIRTIO_PCI_ISR_OFF, 1), 1);
    CHECK_EQ(f->irq.level[gsi], 0);
    CHECK(!(cfg_rd(f, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT));
    CHECK_EQ(mrd(f, VIRTIO_PCI_ISR_OFF, 1), 0);
    /* Config change: bit 1; both bits accumulate until read. */
    virtio_notify_config(vd);
    vd->transport->notify_queue(vd, 1);
    CHECK_EQ(f->irq.level[gsi], 1);
    CHECK_EQ(lrd(f, L_ISR, 1), 3);      /* the legacy ISR is the same register */
    CHECK_EQ(f->irq.level[gsi], 0);
    /* A reset drops a pending INTx. */
    vd->transport->notify_queue(vd, 0);
    CHECK_EQ(f->irq.level[gsi], 1);
    mwr(f, CC_STATUS, 0, 1);
    CHECK_EQ(f->irq.level[gsi], 0);
    CHECK_EQ(mrd(f, VIRTIO_PCI_ISR_OFF, 1), 0);
    fx_free(f);
}

TEST(modern_notify_reaches_device)
{
    struct fx *f = fx_new();
    CHECK(f);
    struct virtio_dev *vd = virtio_pci_dev(f->vp);
    mwr(f, CC_STATUS, 3, 1);
    mwr(f, CC_GFSELECT, 1, 4);
    mwr(f, CC_GF, 1, 4);
    mwr(f, CC_STATUS, 0x0b, 1);
    mwr(f, CC_Q_SELECT, 2, 2);
    mwr(f, CC_Q_DESC, 0x10000, 4);
    mwr(f, CC_Q_AVAIL, 0x11000, 4);
    mwr(f, CC_Q_USED, 0x12000, 4);
    mwr(f, CC_Q_ENABLE, 1, 2);
    mwr(f, CC_STATUS, 0x0f, 1);
    CHECK(!(virtio_get_status(vd) & VIRTIO_STATUS_NEEDS_RESET));
    /* Kicks on the notify area (queue_notify_off * multiplier). */
    mwr(f, VIRTIO_PCI_NOTIFY_OFF + 2 * VIRTIO_PCI_NOTIFY_MULT, 2, 2);
    run_io(f, 3);
    CHECK_EQ(f->dev.notifies[2], 1);
    /* A queue that is not enabled, or does not exist: no call. */
    mwr(f, VIRTIO_PCI_NOTIFY_OFF + 0 * VIRTIO_PCI_NOTIFY_MULT, 0, 2);
    mwr(f, VIRTIO_PCI_NOTIFY_OFF + 40 * VIRTIO_PCI_NOTIFY_MULT, 40, 2);
    mwr(f, VIRTIO_PCI_NOTIFY_OFF + 0xffc, 0, 2);
    run_io(f, 3);
    CHECK_EQ(f->dev.notifies[0], 0);
    CHECK_EQ(f->dev.notifies[2], 1);
    fx_free(f);
}

TEST(device_config_both_interfaces)
{
    struct fx *f = fx_new();
    CHECK(f);
    memcpy(f->dev.cfg, "\x11\x22\x33\x44\x55\x66\x77\x88", 8);
    CHECK_EQ(mrd(f, VIRTIO_PCI_DEVICE_OFF, 4), 0x44332211);
    CHECK_EQ(mrd(f, VIRTIO_PCI_DEVICE_OFF + 6, 2), 0x8877);
    CHECK_EQ(mrd(f, VIRTIO_PCI_DEVICE_OFF + 4, 1), 0x55);
    /* Past the config size: 0, no call. */
    CHECK_EQ(mrd(f, VIRTIO_PCI_DEVICE_OFF + 6, 4), 0);
    CHECK_EQ(mrd(f, VIRTIO_PCI_DEVICE_OFF + 0x800, 4), 0);
    mwr(f, VIRTIO_PCI_DEVICE_OFF + 2, 0xabcd, 2);
    CHECK_EQ(f->dev.cfg[2], 0xcd);
    CHECK_EQ(f->dev.cfg[3], 0xab);
    mwr(f, VIRTIO_PCI_DEVICE_OFF + 7, 0xffff, 2);   /* crosses the end: dropped */
    CHECK_EQ(f->dev.cfg[7], 0x88);
    /* Legacy: config at 0x14 while MSI-X is off. */
    CHECK_EQ(lrd(f, L_CONFIG, 4), 0xabcd2211);
    CHECK_EQ(lrd(f, L_CONFIG + 5, 1), 0x66);
    lwr(f, L_CONFIG + 4, 0x99, 1);
    CHECK_EQ(f->dev.cfg[4], 0x99);
    CHECK_EQ(lrd(f, L_CONFIG + 8, 4), 0);           /* past the end */
    fx_free(f);
}

TEST(legacy_interface)
{
    struct fx *f = fx_new();
    CHECK(f);
    struct virtio_dev *vd = virtio_pci_dev(f->vp);
    uint32_t hf = (uint32_t)lrd(f, L_HOST_FEATURES, 4);
    CHECK(hf & (1u << 3));
    CHECK(hf & (1u << VIRTIO_F_EVENT_IDX));
    lwr(f, L_STATUS, VIRTIO_STATUS_ACKNOWLEDGE, 1);
    lwr(f, L_STATUS, 3, 1);
    CHECK_EQ(lrd(f, L_STATUS, 1), 3);
    CHECK(vd->s.legacy);
    lwr(f, L_GUEST_FEATURES, (1u << 3) | (1u << 30), 4);   /* 30: not offered */
    CHECK_EQ(lrd(f, L_GUEST_FEATURES, 4), (1u << 3) | (1u << 30));
    /* Queue 1: size is fixed (the maximum); PFN -> rings, 4096 aligned. */
    lwr(f, L_QUEUE_SEL, 1, 2);
    CHECK_EQ(lrd(f, L_QUEUE_SEL, 2), 1);
    CHECK_EQ(lrd(f, L_QUEUE_NUM, 2), QMAX);
    lwr(f, L_QUEUE_PFN, 0x20, 4);       /* 0x20000 */
    CHECK_EQ(lrd(f, L_QUEUE_PFN, 4), 0x20);
    struct virtq_state *s = &vd->vqs[1].s;
    CHECK(s->ready);
    CHECK_EQ(s->size, QMAX);
    CHECK_EQ(s->desc_gpa, 0x20000);
    CHECK_EQ(s->avail_gpa, 0x20000 + 16 * QMAX);
    /* used: after avail (6 + 2*size bytes), rounded up to 4096. */
    CHECK_EQ(s->used_gpa, (0x20000 + 16 * QMAX + 6 + 2 * QMAX + 4095) & ~4095ULL);
    /* PFN 0 releases the queue. */
    lwr(f, L_QUEUE_SEL, 2, 2);
    lwr(f, L_QUEUE_PFN, 0x30, 4);
    CHECK(vd->vqs[2].s.ready);
    lwr(f, L_QUEUE_PFN, 0, 4);
    CHECK(!vd->vqs[2].s.ready);
    CHECK_EQ(lrd(f, L_QUEUE_PFN, 4), 0);
    /* DRIVER_OK: features limited to the offered ones; notify works. */
    lwr(f, L_STATUS, 7, 1);
    CHECK_EQ(f->dev.activations, 1);
    CHECK_EQ(vd->s.driver_features, 1ULL << 3);
    lwr(f, L_QUEUE_NOTIFY, 1, 2);
    run_io(f, 3);
    CHECK_EQ(f->dev.notifies[1], 1);
    lwr(f, L_QUEUE_NOTIFY, 2, 2);       /* released queue: nothing */
    lwr(f, L_QUEUE_NOTIFY, 9, 2);       /* no such queue */
    run_io(f, 3);
    CHECK_EQ(f->dev.notifies[2], 0);
    /* A PFN outside RAM: NEEDS_RESET, not ready. */
    lwr(f, L_QUEUE_SEL, 0, 2);
    lwr(f, L_QUEUE_PFN, 0xfffff, 4);
    CHECK(!vd->vqs[0].s.ready);
    CHECK(lrd(f, L_STATUS, 1) & VIRTIO_STATUS_NEEDS_RESET);
    /* Reset via status 0; the legacy choice stays until a bus reset. */
    lwr(f, L_STATUS, 0, 1);
    CHECK_EQ(lrd(f, L_STATUS, 1), 0);
    CHECK(!vd->vqs[1].s.ready);
    CHECK(vd->s.legacy);
    virtio_pci_reset(f->vp);
    CHECK(!vd->s.legacy);
    fx_free(f);
}

/* With MSI-X enabled the legacy config moves to 0x18 (two vector
 * registers come first). */
TEST(legacy_config_offset_with_msix)
{
    struct fx *f = fx_new();
    CHECK(f);
    memcpy(f->dev.cfg, "ABCDEFGH", 8);
    uint8_t at = (uint8_t)cfg_rd(f, PCI_CAPABILITY_LIST, 1);
    while (at && cfg_rd(f, at, 1) != PCI_CAP_ID_MSIX)
        at = (uint8_t)cfg_rd(f, at + 1, 1);
    CHECK(at);
    pci_config_write(&f->pb, DEVFN, at + 2, 0x8000, 2);    /* MSI-X enable */
    CHECK(pci_msix_enabled(virtio_pci_pci(f->vp)));
    CHECK_EQ(lrd(f, 0x18, 4), 0x44434241);
    lwr(f, 0x14, 1, 2);                 /* config vector */
    CHECK_EQ(lrd(f, 0x14, 2), 1);
    lwr(f, 0x16, 5, 2);                 /* queue vector, out of range */
    CHECK_EQ(lrd(f, 0x16, 2), VIRTIO_MSI_NO_VECTOR);
    fx_free(f);
}

int main(void)
{
    log_set_level(LOG_ERROR);
    RUN(ids_and_capabilities);
    RUN(common_config_features_and_status);
    RUN(common_config_queues);
    RUN(msix_vectors_checked);
    RUN(isr_read_to_clear_and_intx);
    RUN(modern_notify_reaches_device);
    RUN(device_config_both_interfaces);
    RUN(legacy_interface);
    RUN(legacy_config_offset_with_msix);
    return test_summary();
}
