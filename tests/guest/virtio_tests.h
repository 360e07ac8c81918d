/* kvmbox test guest: a small virtio 1.x PCI driver and the tests that use
 * it. Included by main.c (it uses main.c's fail(), IOAPIC/LAPIC helpers and
 * TSC calibration), so it is not a separate object.
 *
 *   test=virtio-blk         the transitional block device (1af4:1001) over
 *                           MSI-X: writes a pattern to sectors 0..63 (one
 *                           plain request, one with its data split over 3
 *                           descriptors, one indirect, two in one notify),
 *                           flush, read back and compare, GET_ID, a read
 *                           beyond the capacity (IOERR). "virtio-blk: ok".
 *   test=virtio-blk-intx    the same over INTx (IOAPIC pin = the device's
 *                           INTERRUPT_LINE, level-triggered; the ISR
 *                           register read acknowledges). Add "intx-low" for
 *                           an active-low redirection entry.
 *   test=virtio-blk-hostile a descriptor loop, a buffer beyond RAM, an avail
 *                           index more than the queue size ahead: the device
 *                           must set NEEDS_RESET (0x40) each time (kvmbox
 *                           keeps running); then reset and one good request.
 *   test=virtio-rng         the entropy device (1af4:1005): one 64-byte
 *                           buffer, filled, not all zeros.
 *
 * Command-line words: "blkserial=S" (GET_ID must return S), "ro" (the drive
 * is readonly=on: RO offered, every write and write-type request gets
 * IOERR, reads work; the pattern is not expected to be on the disk).
 *
 * The disk pattern (tests/kvm/virtio.sh checks it on the host): the byte at
 * disk offset o (0 <= o < 32 KiB) is (o/512 * 29 + (o%512) * 3 + 0xA5) & 0xFF.
 *
 * Everything is bounded: each wait for the device ends after 5 s (a LAPIC
 * timer wakes the hlt loop) with a FAIL. */

#define FC_VIRTIO       12

#define PCI_VENDOR_VIRTIO 0x1af4
#define PCI_DEV_BLK_TRANS 0x1001
#define PCI_DEV_RNG_TRANS 0x1005

/* Status bits (virtio 1.2 §2.1). */
#define VS_ACK          0x01
#define VS_DRIVER       0x02
#define VS_DRIVER_OK    0x04
#define VS_FEATURES_OK  0x08
#define VS_NEEDS_RESET  0x40
#define VS_FAILED       0x80

#define VF_INDIRECT     28
#define VF_VERSION_1    32
#define VBLK_F_RO       5
#define VBLK_F_FLUSH    9

#define VBLK_T_IN       0
#define VBLK_T_OUT      1
#define VBLK_T_FLUSH    4
#define VBLK_T_GET_ID   8
#define VBLK_S_OK       0
#define VBLK_S_IOERR    1
#define VBLK_S_UNSUPP   2

#define VRING_DESC_F_NEXT     1
#define VRING_DESC_F_WRITE    2
#define VRING_DESC_F_INDIRECT 4

/* Common configuration (§4.1.4.3). */
#define CC_DFSELECT     0x00
#define CC_DF           0x04
#define CC_GFSELECT     0x08
#define CC_GF           0x0C
#define CC_MSIX         0x10
#define CC_NUMQ         0x12
#define CC_STATUS       0x14
#define CC_Q_SELECT     0x16
#define CC_Q_SIZE       0x18
#define CC_Q_MSIX       0x1A
#define CC_Q_ENABLE     0x1C
#define CC_Q_NOFF       0x1E
#define CC_Q_DESC       0x20
#define CC_Q_AVAIL      0x28
#define CC_Q_USED       0x30

#define VQ_MAX          16
#define NO_VECTOR       0xFFFF

/* ---------------- PCI configuration mechanism #1 ---------------- */

static u32 pci_addr(u32 dev, u32 fn, u32 off)
{
    return 0x80000000u | (dev << 11) | (fn << 8) | (off & 0xFC);
}
static u32 pci_read32(u32 dev, u32 off) { outl(0xCF8, pci_addr(dev, 0, off)); return inl(0xCFC); }
static u16 pci_read16(u32 dev, u32 off) { outl(0xCF8, pci_addr(dev, 0, off)); return inw((u16)(0xCFC + (off & 2))); }
static u8 pci_read8(u32 dev, u32 off) { outl(0xCF8, pci_addr(dev, 0, off)); return inb((u16)(0xCFC + (off & 3))); }
static void pci_write16(u32 dev, u32 off, u16 v) { outl(0xCF8, pci_addr(dev, 0, off)); outw((u16)(0xCFC + (off & 2)), v); }

/* ---------------- the device ---------------- */

struct vring_desc { u64 addr; u32 len; u16 flags, next; };
struct vring_used_elem { u32 id, len; };

static struct vring_desc vq_desc[VQ_MAX] __attribute__((aligned(16)));
static struct { u16 flags, idx, ring[VQ_MAX], used_event; } vq_avail __attribute__((aligned(2)));
static struct { u16 flags, idx; struct vring_used_elem ring[VQ_MAX]; u16 avail_event; }
    vq_used __attribute__((aligned(4)));
static struct vring_desc vq_indirect[4] __attribute__((aligned(16)));

static struct vdev {
    u32 slot;
    u64 bar4;               /* modern BAR (64-bit) */
    u32 bar1;               /* MSI-X table BAR */
    unsigned long common, isr, device, notify;
    u32 notify_mult;
    u8 msix_cap;
    u16 msix_size;
    u32 msix_table_off;
    u8 irq_line, irq_pin;
    int intx;               /* 0: MSI-X, 1: INTx */
    u64 features;           /* negotiated */
    u16 qsize;
    u16 avail_idx, used_seen;
    unsigned long notify_addr;
} vdev;

static volatile u32 virtio_irqs, virtio_isr_reads, virtio_spurious_intx;

static inline u8 mmio_read8(unsigned long a) { return *(volatile u8 *)a; }
static inline u16 mmio_read16(unsigned long a) { return *(volatile u16 *)a; }
static inline void mmio_write8(unsigned long a, u8 v) { *(volatile u8 *)a = v; }
static inline void mmio_write16(unsigned long a, u16 v) { *(volatile u16 *)a = v; }
static inline void mmio_write64(unsigned long a, u64 v)
{
    mmio_write32(a, (u32)v);
    mmio_write32(a + 4, (u32)(v >> 32));
}

static void virtio_isr(void)
{
    virtio_irqs++;
    if (vdev.intx) {
        u8 isr = mmio_read8(vdev.isr);      /* read-to-clear: lowers the line */
        virtio_isr_reads++;
        if (!(isr & 3))
            virtio_spurious_intx++;
    }
}

static u8 vstatus(void) { return mmio_read8(vdev.common + CC_STATUS); }

static void vreset(void)
{
    mmio_write8(vdev.common + CC_STATUS, 0);
    for (unsigned i = 0; vstatus() != 0; i++) {
        if (i > 1000000)
            fail(FC_VIRTIO, "virtio: status 0x%x does not read 0 after reset", vstatus());
        cpu_relax();
    }
}

/* Find vendor:device on bus 0 (function 0 of every slot). */
static int pci_find(u16 vendor, u16 device)
{
    for (u32 slot = 0; slot < 32; slot++) {
        u32 id = pci_read32(slot, 0);
        if ((id & 0xFFFF) == 0xFFFF)
            continue;
        kprintf("pci: 00:%02x.0 %04x:%04x class %06x\n", slot, id & 0xFFFF, id >> 16,
                pci_read32(slot, 8) >> 8);
        if ((id & 0xFFFF) == vendor && (id >> 16) == device)
            return (int)slot;
    }
    return -1;
}

/* Map the device: BARs as kvmbox assigned them, the capability list. */
static void vdev_probe(u16 devid, int intx)
{
    for (unsigned i = 0; i < sizeof(vdev); i++)
        ((u8 *)&vdev)[i] = 0;
    vdev.intx = intx;
    int slot = pci_find(PCI_VENDOR_VIRTIO, devid);
    if (slot < 0)
        fail(FC_VIRTIO, "virtio: no %04x:%04x on PCI bus 0", PCI_VENDOR_VIRTIO, devid);
    vdev.slot = (u32)slot;
    u32 b4 = pci_read32(vdev.slot, 0x20), b5 = pci_read32(vdev.slot, 0x24);
    if ((b4 & 0x7) != 0x4)
        fail(FC_VIRTIO, "virtio: BAR4 0x%x is not a 64-bit memory BAR", b4);
    vdev.bar4 = (b4 & ~0xFULL) | ((u64)b5 << 32);
    vdev.bar1 = pci_read32(vdev.slot, 0x14) & ~0xFu;
    vdev.irq_line = pci_read8(vdev.slot, 0x3C);
    vdev.irq_pin = pci_read8(vdev.slot, 0x3D);
    kprintf("virtio: slot %u BAR0 0x%x BAR1 0x%x BAR4 0x%llx irq line %u pin %u\n",
            vdev.slot, pci_read32(vdev.slot, 0x10), vdev.bar1, ULL(vdev.bar4),
            vdev.irq_line, vdev.irq_pin);
    if (!vdev.bar4 || vdev.bar4 >= 0x100000000ULL)
        fail(FC_VIRTIO, "virtio: BAR4 0x%llx unassigned or above 4 GiB (not mapped here)",
             ULL(vdev.bar4));
    /* Memory + I/O decode, bus master. */
    pci_write16(vdev.slot, 0x04, 0x0007);
    if (!(pci_read16(vdev.slot, 0x06) & 0x10))
        fail(FC_VIRTIO, "virtio: no capability list");
    int found = 0;
    u8 ptr = pci_read8(vdev.slot, 0x34) & 0xFC;
    for (unsigned n = 0; ptr && n < 48; n++) {
        u8 id = pci_read8(vdev.slot, ptr);
        if (id == 0x09) {
            u8 type = pci_read8(vdev.slot, ptr + 3), bar = pci_read8(vdev.slot, ptr + 4);
            u32 off = pci_read32(vdev.slot, ptr + 8), len = pci_read32(vdev.slot, ptr + 12);
            kprintf("virtio: cap @0x%x type %u bar %u off 0x%x len 0x%x\n", ptr, type, bar, off, len);
            if (bar == 4 && type >= 1 && type <= 4) {
                unsigned long a = (unsigned long)vdev.bar4 + off;
                if (type == 1) vdev.common = a;
                if (type == 2) {
                    vdev.notify = a;
                    vdev.notify_mult = pci_read32(vdev.slot, ptr + 16);
                }
                if (type == 3) vdev.isr = a;
                if (type == 4) vdev.device = a;
                found |= 1 << type;
            }
        } else if (id == 0x11) {
            vdev.msix_cap = ptr;
            vdev.msix_size = (u16)((pci_read16(vdev.slot, ptr + 2) & 0x7FF) + 1);
            vdev.msix_table_off = pci_read32(vdev.slot, ptr + 4);
        }
        ptr = pci_read8(vdev.slot, ptr + 1) & 0xFC;
    }
    if (devid == PCI_DEV_RNG_TRANS)
        found |= 1 << 4;            /* no device-specific configuration */
    if ((found & 0x1E) != 0x1E)
        fail(FC_VIRTIO, "virtio: capabilities missing (found mask 0x%x)", found);
    if (!intx && !vdev.msix_cap)
        fail(FC_VIRTIO, "virtio: no MSI-X capability");
    kprintf("virtio: common 0x%lx isr 0x%lx device 0x%lx notify 0x%lx x%u, MSI-X %u vectors\n",
            vdev.common, vdev.isr, vdev.device, vdev.notify, vdev.notify_mult, vdev.msix_size);
}

/* Interrupt routing: MSI-X vector 0 -> this LAPIC, or the INTx GSI. */
static void vdev_irq_setup(int intx_low)
{
    u32 self = lapic_id();
    if (!vdev.intx) {
        if ((vdev.msix_table_off & 7) != 1)
            fail(FC_VIRTIO, "virtio: MSI-X table in BAR %u, expected BAR1", vdev.msix_table_off & 7);
        unsigned long t = vdev.bar1 + (vdev.msix_table_off & ~7u);
        mmio_write32(t + 0, 0xFEE00000u | (self << 12));
        mmio_write32(t + 4, 0);
        mmio_write32(t + 8, VEC_VIRTIO);
        mmio_write32(t + 12, 0);                        /* unmasked */
        u16 ctl = pci_read16(vdev.slot, vdev.msix_cap + 2);
        pci_write16(vdev.slot, vdev.msix_cap + 2, (u16)((ctl | 0x8000) & ~0x4000));
        kprintf("virtio: MSI-X on, vector 0 -> apic %u vector 0x%x\n", self, VEC_VIRTIO);
        return;
    }
    /* The INTx pin kvmbox wires: slot s pin p (1 = A) -> GSI 16 + (s + p - 1) % 4. */
    u32 want = 16 + (vdev.slot + vdev.irq_pin - 1) % 4;
    if (vdev.irq_pin < 1 || vdev.irq_pin > 4 || vdev.irq_line != want)
        fail(FC_VIRTIO, "virtio: INTERRUPT_LINE %u / PIN %u, expected GSI %u for slot %u",
             vdev.irq_line, vdev.irq_pin, want, vdev.slot);
    u32 pins = ((ioapic_read(1) >> 16) & 0xFF) + 1;
    if (vdev.irq_line >= pins)
        fail(FC_VIRTIO, "virtio: GSI %u beyond the IOAPIC's %u pins", vdev.irq_line, pins);
    ioapic_write(0x11 + 2 * vdev.irq_line, self << 24);
    ioapic_write(0x10 + 2 * vdev.irq_line, VEC_VIRTIO | (1u << 15) | (intx_low ? 1u << 13 : 0));
    kprintf("virtio: INTx GSI %u -> IOAPIC level active-%s vector 0x%x\n", vdev.irq_line,
            intx_low ? "low" : "high", VEC_VIRTIO);
}

/* Reset, feature negotiation (VERSION_1 + what `want` asks for and the
 * device offers), queue 0, DRIVER_OK. Returns the negotiated features. */
static u64 vdev_init(u64 want)
{
    vreset();
    mmio_write8(vdev.common + CC_STATUS, VS_ACK);
    mmio_write8(vdev.common + CC_STATUS, VS_ACK | VS_DRIVER);
    mmio_write32(vdev.common + CC_DFSELECT, 0);
    u64 offered = mmio_read32(vdev.common + CC_DF);
    mmio_write32(vdev.common + CC_DFSELECT, 1);
    offered |= (u64)mmio_read32(vdev.common + CC_DF) << 32;
    if (!(offered & (1ULL << VF_VERSION_1)))
        fail(FC_VIRTIO, "virtio: VERSION_1 not offered (features 0x%llx)", ULL(offered));
    u64 f = offered & (want | (1ULL << VF_VERSION_1));
    mmio_write32(vdev.common + CC_GFSELECT, 0);
    mmio_write32(vdev.common + CC_GF, (u32)f);
    mmio_write32(vdev.common + CC_GFSELECT, 1);
    mmio_write32(vdev.common + CC_GF, (u32)(f >> 32));
    mmio_write8(vdev.common + CC_STATUS, VS_ACK | VS_DRIVER | VS_FEATURES_OK);
    if (!(vstatus() & VS_FEATURES_OK))
        fail(FC_VIRTIO, "virtio: FEATURES_OK refused for 0x%llx", ULL(f));
    vdev.features = f;

    if (!vdev.intx)
        mmio_write16(vdev.common + CC_MSIX, NO_VECTOR);
    mmio_write16(vdev.common + CC_Q_SELECT, 0);
    u16 max = mmio_read16(vdev.common + CC_Q_SIZE);
    if (!max)
        fail(FC_VIRTIO, "virtio: queue 0 size 0");
    vdev.qsize = max < VQ_MAX ? max : VQ_MAX;
    mmio_write16(vdev.common + CC_Q_SIZE, vdev.qsize);
    for (unsigned i = 0; i < sizeof(vq_desc); i++)
        ((volatile u8 *)vq_desc)[i] = 0;
    for (unsigned i = 0; i < sizeof(vq_avail); i++)
        ((volatile u8 *)&vq_avail)[i] = 0;
    for (unsigned i = 0; i < sizeof(vq_used); i++)
        ((volatile u8 *)&vq_used)[i] = 0;
    vdev.avail_idx = vdev.used_seen = 0;
    mmio_write64(vdev.common + CC_Q_DESC, (u64)(unsigned long)vq_desc);
    mmio_write64(vdev.common + CC_Q_AVAIL, (u64)(unsigned long)&vq_avail);
    mmio_write64(vdev.common + CC_Q_USED, (u64)(unsigned long)&vq_used);
    if (!vdev.intx) {
        mmio_write16(vdev.common + CC_Q_MSIX, 0);
        u16 v = mmio_read16(vdev.common + CC_Q_MSIX);
        if (v != 0)
            fail(FC_VIRTIO, "virtio: queue_msix_vector reads 0x%x after writing 0", v);
    }
    vdev.notify_addr = vdev.notify + (unsigned long)mmio_read16(vdev.common + CC_Q_NOFF) * vdev.notify_mult;
    mmio_write16(vdev.common + CC_Q_ENABLE, 1);
    mmio_write8(vdev.common + CC_STATUS, VS_ACK | VS_DRIVER | VS_FEATURES_OK | VS_DRIVER_OK);
    kprintf("virtio: features 0x%llx (offered 0x%llx), queue 0 size %u (max %u), status 0x%x\n",
            ULL(f), ULL(offered), vdev.qsize, max, vstatus());
    return f;
}

static void vq_publish(u16 head)
{
    vq_avail.ring[vdev.avail_idx % vdev.qsize] = head;
    __asm__ volatile("" ::: "memory");
    vdev.avail_idx++;
    vq_avail.idx = vdev.avail_idx;   /* x86: stores are ordered */
}

static void vq_kick(void)
{
    __asm__ volatile("mfence" ::: "memory");
    mmio_write16(vdev.notify_addr, 0);
}

/* Wait until the device has used `n` more buffers (interrupts on, hlt; the
 * LAPIC timer bounds each sleep). */
static void vq_wait(u16 n, const char *what)
{
    u64 start = rdtsc(), limit = ms_to_tsc(5000);
    for (;;) {
        __asm__ volatile("cli" ::: "memory");
        if ((u16)(vq_used.idx - vdev.used_seen) >= n)
            break;
        if (vstatus() & VS_NEEDS_RESET)
            fail(FC_VIRTIO, "virtio: %s: device set NEEDS_RESET (status 0x%x)", what, vstatus());
        if (rdtsc() - start > limit)
            fail(FC_VIRTIO, "virtio: %s: no completion within 5 s (used idx %u, want %u; %u irqs)",
                 what, vq_used.idx, (u16)(vdev.used_seen + n), virtio_irqs);
        __asm__ volatile("sti; hlt" ::: "memory");
    }
    __asm__ volatile("sti" ::: "memory");
}

static void timer_wakeup_on(void)
{
    lapic_write(LAPIC_TMR_DIV, 0x3);
    lapic_write(LAPIC_LVT_TMR, VEC_LAPIC_TMR | (1 << 17));
    lapic_write(LAPIC_TMR_INIT, 625000);
}

static void timer_wakeup_off(void)
{
    lapic_write(LAPIC_LVT_TMR, 1 << 16);
    lapic_write(LAPIC_TMR_INIT, 0);
}

static void virtio_irq_init(void)
{
    tsc_calibrate();
    parse_madt();
    idt_init();
    outb(0x21, 0xFF);                  /* 8259s masked: IOAPIC and MSI only */
    outb(0xA1, 0xFF);
    lapic_enable();
    lapic_write(LAPIC_LVT_LINT0, 1 << 16);
    timer_wakeup_on();
    __asm__ volatile("sti" ::: "memory");
}

/* ---------------- virtio-blk ---------------- */

struct blk_hdr { u32 type, reserved; u64 sector; };

#define BLK_SECTORS 64
static struct blk_hdr blk_hdrs[VQ_MAX];
static volatile u8 blk_status[VQ_MAX];
static u8 blk_wbuf[BLK_SECTORS * 512] __attribute__((aligned(4096)));
static u8 blk_rbuf[BLK_SECTORS * 512] __attribute__((aligned(4096)));
static u8 blk_idbuf[20];

static u8 blk_pattern(u32 o) { return (u8)(((o >> 9) * 29 + (o & 511) * 3 + 0xA5) & 0xFF); }

static void dset(u16 i, u64 addr, u32 len, u16 flags, u16 next)
{
    vq_desc[i].addr = addr;
    vq_desc[i].len = len;
    vq_desc[i].flags = flags;
    vq_desc[i].next = next;
}

/* A request in descriptors first..: header, the data in `nseg` pieces of
 * seglen[] bytes from buf, the status byte. `slot` picks the header and
 * status. Returns the number of descriptors used. */
static u16 blk_chain(u16 first, unsigned slot, u32 type, u64 sector, u8 *buf,
                     const u32 *seglen, unsigned nseg)
{
    blk_hdrs[slot].type = type;
    blk_hdrs[slot].reserved = 0;
    blk_hdrs[slot].sector = sector;
    blk_status[slot] = 0xEE;
    u16 d = first;
    dset(d, (u64)(unsigned long)&blk_hdrs[slot], sizeof(struct blk_hdr), VRING_DESC_F_NEXT, d + 1);
    d++;
    u16 wflag = (type == VBLK_T_OUT || type == VBLK_T_FLUSH) ? 0 : VRING_DESC_F_WRITE;
    for (unsigned s = 0; s < nseg; s++) {
        dset(d, (u64)(unsigned long)buf, seglen[s], wflag | VRING_DESC_F_NEXT, d + 1);
        buf += seglen[s];
        d++;
    }
    dset(d, (u64)(unsigned long)&blk_status[slot], 1, VRING_DESC_F_WRITE, 0);
    return (u16)(d - first + 1);
}

/* One request, submitted and waited for; returns the status byte. */
static u8 blk_do(u32 type, u64 sector, u8 *buf, const u32 *seglen, unsigned nseg, const char *what)
{
    blk_chain(0, 0, type, sector, buf, seglen, nseg);
    vq_publish(0);
    vq_kick();
    vq_wait(1, what);
    u32 id = vq_used.ring[vdev.used_seen % vdev.qsize].id;
    vdev.used_seen++;
    if (id != 0)
        fail(FC_VIRTIO, "virtio-blk: %s: used id %u, expected 0", what, id);
    return blk_status[0];
}

static int cmdline_word_value(const char *key, char *out, unsigned outlen)
{
    unsigned n = 0;
    while (key[n])
        n++;
    for (const char *p = cmdline; *p; p++) {
        if ((p == cmdline || p[-1] == ' ') && !kstrncmp(p, key, n)) {
            p += n;
            unsigned i = 0;
            while (*p && *p != ' ' && i + 1 < outlen)
                out[i++] = *p++;
            out[i] = 0;
            return 1;
        }
    }
    return 0;
}

static int cmdline_has_word(const char *w);

static void test_virtio_blk(int intx)
{
    int ro = cmdline_has_word("ro");
    virtio_irq_init();
    vdev_probe(PCI_DEV_BLK_TRANS, intx);
    vdev_irq_setup(cmdline_has_word("intx-low"));
    u64 f = vdev_init((1ULL << VBLK_F_FLUSH) | (1ULL << VF_INDIRECT) | (1ULL << VBLK_F_RO));
    u64 cap = (u64)mmio_read32(vdev.device) | ((u64)mmio_read32(vdev.device + 4) << 32);
    kprintf("virtio-blk: capacity %llu sectors%s%s%s\n", ULL(cap),
            f & (1ULL << VBLK_F_FLUSH) ? ", flush" : "",
            f & (1ULL << VF_INDIRECT) ? ", indirect" : "",
            f & (1ULL << VBLK_F_RO) ? ", read-only" : "");
    if (cap < BLK_SECTORS)
        fail(FC_VIRTIO, "virtio-blk: capacity %llu < %u sectors", ULL(cap), BLK_SECTORS);
    if (!!(f & (1ULL << VBLK_F_RO)) != ro)
        fail(FC_VIRTIO, "virtio-blk: RO feature %s but the test %s it",
             f & (1ULL << VBLK_F_RO) ? "offered" : "not offered", ro ? "expects" : "does not expect");
    u8 wstatus = ro ? VBLK_S_IOERR : VBLK_S_OK;

    for (u32 o = 0; o < sizeof(blk_wbuf); o++)
        blk_wbuf[o] = blk_pattern(o);

    /* 1. sectors 0..15: one data descriptor. */
    u32 l8k[1] = { 8192 };
    u8 st = blk_do(VBLK_T_OUT, 0, blk_wbuf, l8k, 1, "write 0-15");
    if (st != wstatus)
        fail(FC_VIRTIO, "virtio-blk: write 0-15: status %u, expected %u", st, wstatus);
    /* 2. sectors 16..31: the data split over 3 descriptors. */
    u32 l3[3] = { 2048, 4096, 2048 };
    st = blk_do(VBLK_T_OUT, 16, blk_wbuf + 16 * 512, l3, 3, "write 16-31 (3 segments)");
    if (st != wstatus)
        fail(FC_VIRTIO, "virtio-blk: write 16-31 (3 segments): status %u, expected %u", st, wstatus);
    /* 3. sectors 32..47: indirect (header, data, status in a table). */
    if (f & (1ULL << VF_INDIRECT)) {
        blk_hdrs[1].type = VBLK_T_OUT;
        blk_hdrs[1].reserved = 0;
        blk_hdrs[1].sector = 32;
        blk_status[1] = 0xEE;
        vq_indirect[0] = (struct vring_desc){ (u64)(unsigned long)&blk_hdrs[1], 16, VRING_DESC_F_NEXT, 1 };
        vq_indirect[1] = (struct vring_desc){ (u64)(unsigned long)(blk_wbuf + 32 * 512), 8192,
                                              VRING_DESC_F_NEXT, 2 };
        vq_indirect[2] = (struct vring_desc){ (u64)(unsigned long)&blk_status[1], 1, VRING_DESC_F_WRITE, 0 };
        dset(0, (u64)(unsigned long)vq_indirect, 3 * sizeof(struct vring_desc), VRING_DESC_F_INDIRECT, 0);
        vq_publish(0);
        vq_kick();
        vq_wait(1, "write 32-47 (indirect)");
        vdev.used_seen++;
        if (blk_status[1] != wstatus)
            fail(FC_VIRTIO, "virtio-blk: write 32-47 (indirect): status %u, expected %u",
                 blk_status[1], wstatus);
    } else {
        st = blk_do(VBLK_T_OUT, 32, blk_wbuf + 32 * 512, l8k, 1, "write 32-47");
        if (st != wstatus)
            fail(FC_VIRTIO, "virtio-blk: write 32-47: status %u", st);
    }
    /* 4. sectors 48..55 and 56..63: two requests, one notification. */
    u32 l4k[1] = { 4096 };
    u16 n = blk_chain(0, 2, VBLK_T_OUT, 48, blk_wbuf + 48 * 512, l4k, 1);
    blk_chain(n, 3, VBLK_T_OUT, 56, blk_wbuf + 56 * 512, l4k, 1);
    vq_publish(0);
    vq_publish(n);
    vq_kick();
    vq_wait(2, "write 48-63 (2 requests)");
    vdev.used_seen += 2;
    if (blk_status[2] != wstatus || blk_status[3] != wstatus)
        fail(FC_VIRTIO, "virtio-blk: write 48-63: statuses %u %u, expected %u",
             blk_status[2], blk_status[3], wstatus);
    /* 5. flush. */
    if (f & (1ULL << VBLK_F_FLUSH)) {
        st = blk_do(VBLK_T_FLUSH, 0, 0, 0, 0, "flush");
        if (st != VBLK_S_OK && !(ro && st == VBLK_S_IOERR))
            fail(FC_VIRTIO, "virtio-blk: flush: status %u", st);
    }
    kprintf("virtio-blk: wrote sectors 0-63 (status %u), %u interrupts so far\n", wstatus, virtio_irqs);
    /* 6. read back: 32 sectors in one descriptor, 32 in two. */
    for (u32 o = 0; o < sizeof(blk_rbuf); o++)
        blk_rbuf[o] = 0;
    u32 l16k[1] = { 16384 };
    st = blk_do(VBLK_T_IN, 0, blk_rbuf, l16k, 1, "read 0-31");
    if (st != VBLK_S_OK)
        fail(FC_VIRTIO, "virtio-blk: read 0-31: status %u", st);
    u32 l2[2] = { 512, 16384 - 512 };
    st = blk_do(VBLK_T_IN, 32, blk_rbuf + 16384, l2, 2, "read 32-63 (2 segments)");
    if (st != VBLK_S_OK)
        fail(FC_VIRTIO, "virtio-blk: read 32-63: status %u", st);
    if (!ro) {
        for (u32 o = 0; o < sizeof(blk_rbuf); o++)
            if (blk_rbuf[o] != blk_wbuf[o])
                fail(FC_VIRTIO, "virtio-blk: read back: byte %u is 0x%x, wrote 0x%x", o,
                     blk_rbuf[o], blk_wbuf[o]);
        kprintf("virtio-blk: read back 32 KiB, matches\n");
    } else {
        u32 same = 0;
        for (u32 o = 0; o < sizeof(blk_rbuf); o++)
            same += blk_rbuf[o] == blk_wbuf[o];
        if (same == sizeof(blk_rbuf))
            fail(FC_VIRTIO, "virtio-blk: read-only disk holds what the guest tried to write");
        kprintf("virtio-blk: read back 32 KiB of the read-only disk (not the pattern)\n");
    }
    /* 7. GET_ID. */
    char want[21];
    for (unsigned i = 0; i < sizeof(blk_idbuf); i++)
        blk_idbuf[i] = 0xEE;
    u32 l20[1] = { 20 };
    st = blk_do(VBLK_T_GET_ID, 0, blk_idbuf, l20, 1, "get-id");
    if (st != VBLK_S_OK)
        fail(FC_VIRTIO, "virtio-blk: GET_ID: status %u", st);
    char got[21];
    unsigned gl = 0;
    while (gl < 20 && blk_idbuf[gl]) {
        got[gl] = (char)blk_idbuf[gl];
        gl++;
    }
    got[gl] = 0;
    kprintf("virtio-blk: GET_ID '%s'\n", got);
    if (cmdline_word_value("blkserial=", want, sizeof(want)) && !streq(want, got))
        fail(FC_VIRTIO, "virtio-blk: GET_ID returned '%s', expected '%s'", got, want);
    /* 8. beyond the end: IOERR. */
    u32 l512[1] = { 512 };
    st = blk_do(VBLK_T_IN, cap, blk_rbuf, l512, 1, "read beyond capacity");
    if (st != VBLK_S_IOERR)
        fail(FC_VIRTIO, "virtio-blk: read of sector %llu (= capacity): status %u, expected IOERR",
             ULL(cap), st);
    kprintf("virtio-blk: read beyond the end: IOERR\n");

    timer_wakeup_off();
    __asm__ volatile("cli" ::: "memory");
    kprintf("virtio-blk: %u interrupts (%u ISR reads, %u spurious)\n", virtio_irqs,
            virtio_isr_reads, virtio_spurious_intx);
    if (!virtio_irqs)
        fail(FC_VIRTIO, "virtio-blk: no interrupts");
    if (vstatus() & (VS_NEEDS_RESET | VS_FAILED))
        fail(FC_VIRTIO, "virtio-blk: device status 0x%x at the end", vstatus());
    vreset();
    kprintf("virtio-blk: ok\n");
    power_off();
}

/* Wait for NEEDS_RESET after a hostile request. */
static void expect_needs_reset(const char *what)
{
    u64 start = rdtsc(), limit = ms_to_tsc(5000);
    while (!(vstatus() & VS_NEEDS_RESET)) {
        if (rdtsc() - start > limit)
            fail(FC_VIRTIO, "virtio-blk-hostile: %s: no NEEDS_RESET within 5 s (status 0x%x, used idx %u)",
                 what, vstatus(), vq_used.idx);
        __asm__ volatile("sti; hlt" ::: "memory");
    }
    kprintf("virtio-blk-hostile: %s: status 0x%x (NEEDS_RESET), used idx %u\n", what, vstatus(),
            vq_used.idx);
}

static void test_virtio_blk_hostile(void)
{
    virtio_irq_init();
    vdev_probe(PCI_DEV_BLK_TRANS, 0);
    vdev_irq_setup(0);

    /* 1. A descriptor loop: 0 -> 1 -> 2 -> 1 (readable header, then the
     * writable buffers chained in a circle: a valid order, just endless). */
    vdev_init(0);
    blk_hdrs[0] = (struct blk_hdr){ VBLK_T_IN, 0, 0 };
    dset(0, (u64)(unsigned long)&blk_hdrs[0], 16, VRING_DESC_F_NEXT, 1);
    dset(1, (u64)(unsigned long)blk_rbuf, 512, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 2);
    dset(2, (u64)(unsigned long)&blk_status[0], 1, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
    vq_publish(0);
    vq_kick();
    expect_needs_reset("descriptor loop");

    /* 2. A data buffer beyond RAM (1 GiB; the VM has less). */
    vdev_init(0);
    blk_hdrs[0] = (struct blk_hdr){ VBLK_T_IN, 0, 0 };
    dset(0, (u64)(unsigned long)&blk_hdrs[0], 16, VRING_DESC_F_NEXT, 1);
    dset(1, 0x40000000ULL, 4096, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 2);
    dset(2, (u64)(unsigned long)&blk_status[0], 1, VRING_DESC_F_WRITE, 0);
    vq_publish(0);
    vq_kick();
    expect_needs_reset("buffer beyond RAM");

    /* 3. An avail index far ahead of the ring (more buffers than its size). */
    vdev_init(0);
    vq_avail.idx = (u16)(vdev.qsize + 5);
    vq_kick();
    expect_needs_reset("avail idx beyond the queue size");

    /* 4. Recovery: reset, a good request. */
    vdev_init(0);
    u32 l512[1] = { 512 };
    u8 st = blk_do(VBLK_T_IN, 0, blk_rbuf, l512, 1, "read after reset");
    if (st != VBLK_S_OK)
        fail(FC_VIRTIO, "virtio-blk-hostile: read after reset: status %u", st);
    timer_wakeup_off();
    __asm__ volatile("cli" ::: "memory");
    vreset();
    kprintf("virtio-blk-hostile: recovered after reset (%u interrupts)\n", virtio_irqs);
    kprintf("virtio-blk-hostile: ok\n");
    power_off();
}

/* ---------------- virtio-rng ---------------- */

static u8 rng_buf[64];

static void test_virtio_rng(void)
{
    virtio_irq_init();
    vdev_probe(PCI_DEV_RNG_TRANS, 0);
    vdev_irq_setup(0);
    vdev_init(0);
    for (unsigned i = 0; i < sizeof(rng_buf); i++)
        rng_buf[i] = 0;
    dset(0, (u64)(unsigned long)rng_buf, sizeof(rng_buf), VRING_DESC_F_WRITE, 0);
    vq_publish(0);
    vq_kick();
    vq_wait(1, "entropy");
    u32 len = vq_used.ring[0].len;
    vdev.used_seen++;
    unsigned nz = 0;
    for (unsigned i = 0; i < sizeof(rng_buf); i++)
        nz += rng_buf[i] != 0;
    kprintf("virtio-rng: %u bytes, %u non-zero, first %02x%02x%02x%02x, %u interrupts\n", len, nz,
            rng_buf[0], rng_buf[1], rng_buf[2], rng_buf[3], virtio_irqs);
    if (len == 0 || len > sizeof(rng_buf))
        fail(FC_VIRTIO, "virtio-rng: used length %u", len);
    if (nz == 0)
        fail(FC_VIRTIO, "virtio-rng: the buffer is all zeros");
    if (!virtio_irqs)
        fail(FC_VIRTIO, "virtio-rng: no interrupt");
    timer_wakeup_off();
    __asm__ volatile("cli" ::: "memory");
    vreset();
    kprintf("virtio-rng: ok\n");
    power_off();
}
