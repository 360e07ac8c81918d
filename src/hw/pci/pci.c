/* PCI bus 0, host bridge, configuration mechanisms, BARs and INTx; see
 * pci.h. Spec references are PCI Local Bus 3.0 unless said otherwise.
 *
 * Host bridge ids: 1b36:0008 (QEMU's generic "PCIe host bridge"), class
 * 06.00.00, rather than the i440FX's 8086:1237. Linux finds the root bus
 * through ACPI (PNP0A08/PNP0A03 + MCFG) or, with acpi=off, by probing
 * mechanism #1 (pci_sanity_check accepts any class 06.00 device), so the ids
 * do not decide discovery. What they do decide: an Intel chipset id invites
 * chipset-specific drivers and quirks (Linux's quirk_natoma marks 82441 as
 * "Natoma" with PCI-PCI DMA problems; EDAC/AGP drivers bind host bridges by
 * id and poke registers such as PAM/SMRAM that this bridge does not have),
 * and an i440FX never had ECAM, so MCFG plus 440FX ids describes no real
 * machine. The generic id binds no driver and promises nothing beyond the
 * standard header. */
#include "hw/pci/pci.h"

#include <errno.h>
#include <string.h>

#include "core/kvm_irq.h"
#include "core/log.h"
#include "core/vm.h"
#include "hw/pci/pci_internal.h"

#define PCI_CF8_ENABLE      0x80000000u
/* §3.2.2.3.2: bits 30:24 reserved (read 0), bits 1:0 read as 0. */
#define PCI_CF8_MASK        0x80FFFFFCu
#define PCI_PORT_CF8        0xCF8
#define PCI_PORT_CFC        0xCFC
/* Writable COMMAND bits (§6.2.2): I/O, memory, bus master, parity error
 * response, SERR# enable, interrupt disable. The rest are hardwired 0. */
#define PCI_COMMAND_WMASK   (PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | \
                             PCI_COMMAND_PARITY | PCI_COMMAND_SERR | PCI_COMMAND_INTX_DISABLE)

static const char pci_name_host[] = "pci-host";

static uint16_t cfg16(const struct pci_device *d, uint32_t off)
{
    return (uint16_t)(d->config[off] | d->config[off + 1] << 8);
}

static uint32_t cfg32(const struct pci_device *d, uint32_t off)
{
    return cfg16(d, off) | (uint32_t)cfg16(d, off + 2) << 16;
}

static void set16(uint8_t *p, uint32_t off, uint16_t v)
{
    p[off] = (uint8_t)v;
    p[off + 1] = (uint8_t)(v >> 8);
}

static void set32(uint8_t *p, uint32_t off, uint32_t v)
{
    set16(p, off, (uint16_t)v);
    set16(p, off + 2, (uint16_t)(v >> 16));
}

static bool ranges_overlap(uint32_t a, unsigned alen, uint32_t b, unsigned blen)
{
    return a < b + blen && b < a + alen;
}

/* --- default delivery through KVM --- */

static void pci_kvm_set_gsi(void *ctx, uint32_t gsi, int level)
{
    struct irq_line l = vm_irq_line(ctx, gsi);
    irq_line_set(&l, level);
}

static void pci_kvm_send_msi(void *ctx, uint64_t addr, uint32_t data)
{
    kvm_signal_msi(ctx, addr, data);
}

uint32_t pci_intx_gsi(const struct pci_bus *b, unsigned slot, unsigned pin)
{
    return b->cfg.intx_gsi_base + (slot + pin) % PCI_INTX_PINS;
}

/* --- INTx (§6.2.2 Interrupt Disable, §6.2.3 Interrupt Status) --- */

/* intx_lock held. The GSI is level-triggered and shared by every slot with
 * the same swizzle: it is asserted while any of them asserts. */
static void pci_intx_output_locked(struct pci_device *d)
{
    struct pci_bus *b = d->bus;
    bool out = d->intx_level && !d->intx_masked;
    if (out == d->intx_out)
        return;
    d->intx_out = out;
    unsigned idx = (d->intx_gsi - b->cfg.intx_gsi_base) % PCI_INTX_PINS;
    if (out) {
        if (b->intx_count[idx]++ == 0 && b->set_gsi)
            b->set_gsi(b->irq_ctx, d->intx_gsi, 1);
    } else {
        if (b->intx_count[idx] && --b->intx_count[idx] == 0 && b->set_gsi)
            b->set_gsi(b->irq_ctx, d->intx_gsi, 0);
    }
}

/* pci_bus.lock held: COMMAND or the MSI-X enable changed. */
static void pci_intx_refresh(struct pci_device *d)
{
    if (!d->config[PCI_INTERRUPT_PIN])
        return;
    bool masked = (cfg16(d, PCI_COMMAND) & PCI_COMMAND_INTX_DISABLE) || pci_msix_enabled(d);
    pthread_mutex_lock(&d->bus->intx_lock);
    d->intx_masked = masked;
    pci_intx_output_locked(d);
    pthread_mutex_unlock(&d->bus->intx_lock);
}

void pci_set_irq(struct pci_device *d, int level)
{
    if (!d || !d->bus || !d->config[PCI_INTERRUPT_PIN])
        return;
    pthread_mutex_lock(&d->bus->intx_lock);
    d->intx_level = level != 0;
    pci_intx_output_locked(d);
    pthread_mutex_unlock(&d->bus->intx_lock);
}

/* --- BARs (§6.2.5) --- */

static uint32_t pci_bar_off(unsigned idx)
{
    return PCI_BASE_ADDRESS_0 + 4 * idx;
}

/* The address bits a BAR decodes: all its writable bits. */
static uint64_t pci_bar_addr_mask(const struct pci_bar *bar)
{
    switch (bar->type) {
    case PCI_BAR_IO:
        return ~(bar->size - 1) & 0xFFFFFFFCull;
    case PCI_BAR_MEM32:
        return ~(bar->size - 1) & 0xFFFFFFF0ull;
    case PCI_BAR_MEM64:
    default:
        return ~(bar->size - 1) & ~0xFull;
    }
}

static uint64_t pci_bar_address(const struct pci_device *d, unsigned idx)
{
    const struct pci_bar *bar = &d->bars[idx];
    uint64_t a = cfg32(d, pci_bar_off(idx));
    if (bar->type == PCI_BAR_MEM64)
        a |= (uint64_t)cfg32(d, pci_bar_off(idx + 1)) << 32;
    return a & pci_bar_addr_mask(bar);
}

static bool pci_in_window(uint64_t addr, uint64_t size, uint64_t base, uint64_t wsize)
{
    return wsize && addr >= base && size <= wsize && addr - base <= wsize - size;
}

/* pci_bus.lock held: bring every BAR's mapping in line with COMMAND and
 * the BAR registers. Runs on a vCPU thread inside a config access; it only
 * touches the sub-buses (see pci.h for why). */
static void pci_update_mappings(struct pci_device *d)
{
    struct pci_bus *b = d->bus;
    uint16_t cmd = cfg16(d, PCI_COMMAND);
    for (unsigned i = 0; i < PCI_NUM_BARS; i++) {
        struct pci_bar *bar = &d->bars[i];
        if (!bar->size || bar->upper_half)
            continue;
        bool io = bar->type == PCI_BAR_IO;
        struct bus *sub = io ? &b->bar_pio : &b->bar_mmio;
        bool enabled = cmd & (io ? PCI_COMMAND_IO : PCI_COMMAND_MEMORY);
        uint64_t addr = pci_bar_address(d, i);
        /* All address bits set: the guest is sizing the BAR (§6.2.5.1),
         * not placing it. */
        bool sizing = addr == pci_bar_addr_mask(bar);
        bool inside = io ? pci_in_window(addr, bar->size, b->cfg.io_base, b->cfg.io_size)
                         : pci_in_window(addr, bar->size, b->cfg.mmio_base, b->cfg.mmio_size);
        bool want = enabled && !sizing && inside;
        if (want == bar->mapped && (!want || addr == bar->mapped_at))
            continue;
        if (bar->mapped) {
            bus_unregister(sub, bar->mapped_at);
            bar->mapped = false;
        }
        if (enabled && !sizing && !inside)
            log_ratelimited(&b->rl, LOG_WARN,
                            "pci %02x.%x %s: BAR%u at 0x%llx (size 0x%llx) is outside the PCI %s window; not mapped",
                            d->devfn >> 3, d->devfn & 7, d->name, i, (unsigned long long)addr,
                            (unsigned long long)bar->size, io ? "I/O" : "memory");
        if (!want)
            continue;
        int r = bus_register(sub, addr, bar->size, d->name, bar->ops, bar->opaque);
        if (r < 0) {
            log_ratelimited(&b->rl, LOG_WARN,
                            "pci %02x.%x %s: BAR%u at 0x%llx (size 0x%llx) overlaps another BAR; not mapped",
                            d->devfn >> 3, d->devfn & 7, d->name, i, (unsigned long long)addr,
                            (unsigned long long)bar->size);
            continue;
        }
        bar->mapped = true;
        bar->mapped_at = addr;
    }
}

static void pci_unmap_all(struct pci_device *d)
{
    for (unsigned i = 0; i < PCI_NUM_BARS; i++) {
        struct pci_bar *bar = &d->bars[i];
        if (bar->mapped) {
            bus_unregister(bar->type == PCI_BAR_IO ? &d->bus->bar_pio : &d->bus->bar_mmio,
                           bar->mapped_at);
            bar->mapped = false;
        }
    }
}

int pci_register_bar(struct pci_device *d, unsigned idx, enum pci_bar_type type,
                     uint64_t size, bool prefetchable, const struct bus_ops *ops, void *opaque)
{
    if (!d || !d->bus || !ops || idx >= PCI_NUM_BARS || !size || (size & (size - 1)))
        return -EINVAL;
    switch (type) {
    case PCI_BAR_IO:
        /* §6.2.5.1: I/O BARs claim at most 256 bytes; 4 is the minimum. */
        if (size < 4 || size > 256 || prefetchable)
            return -EINVAL;
        break;
    case PCI_BAR_MEM32:
        if (size < 16 || size > 0x80000000ull)
            return -EINVAL;
        break;
    case PCI_BAR_MEM64:
        if (size < 16 || size > (1ull << 63) || idx + 1 >= PCI_NUM_BARS)
            return -EINVAL;
        if (d->bars[idx + 1].size || d->bars[idx + 1].upper_half)
            return -EBUSY;
        break;
    default:
        return -EINVAL;
    }
    if (d->bars[idx].size || d->bars[idx].upper_half)
        return -EBUSY;
    pthread_mutex_lock(&d->bus->lock);
    struct pci_bar *bar = &d->bars[idx];
    *bar = (struct pci_bar){ .type = type, .size = size, .prefetchable = prefetchable,
                             .ops = ops, .opaque = opaque };
    uint32_t off = pci_bar_off(idx);
    uint32_t flags = type == PCI_BAR_IO ? PCI_BASE_ADDRESS_SPACE_IO
                   : (type == PCI_BAR_MEM64 ? PCI_BASE_ADDRESS_MEM_TYPE_64 : 0) |
                     (prefetchable ? PCI_BASE_ADDRESS_MEM_PREFETCH : 0);
    uint64_t mask = pci_bar_addr_mask(bar);
    set32(d->config, off, flags);
    set32(d->wmask, off, (uint32_t)mask);
    if (type == PCI_BAR_MEM64) {
        d->bars[idx + 1] = (struct pci_bar){ .type = PCI_BAR_MEM64, .upper_half = true };
        set32(d->config, off + 4, 0);
        set32(d->wmask, off + 4, (uint32_t)(mask >> 32));
    }
    pthread_mutex_unlock(&d->bus->lock);
    return 0;
}

/* --- capabilities (§6.7) --- */

int pci_add_capability(struct pci_device *d, uint8_t cap_id, uint8_t len)
{
    if (!d || !d->bus || len < 2)
        return -EINVAL;
    unsigned off = d->next_cap;
    if (!off || off + len > PCI_LEGACY_CONFIG_SIZE)
        return -ENOSPC;
    pthread_mutex_lock(&d->bus->lock);
    memset(d->config + off, 0, len);
    d->config[off] = cap_id;
    d->config[off + 1] = 0;                 /* end of list */
    if (d->last_cap)
        d->config[d->last_cap + 1] = (uint8_t)off;
    else
        d->config[PCI_CAPABILITY_LIST] = (uint8_t)off;
    d->config[PCI_STATUS] |= PCI_STATUS_CAP_LIST;
    d->last_cap = (uint8_t)off;
    unsigned next = (off + len + 3) & ~3u;  /* capabilities are dword aligned */
    d->next_cap = next >= PCI_LEGACY_CONFIG_SIZE ? 0 : (uint8_t)next;
    pthread_mutex_unlock(&d->bus->lock);
    return (int)off;
}

/* --- the type-0 header --- */

static void pci_header_init(struct pci_device *d, uint16_t vendor, uint16_t device,
                            uint32_t class_code, uint8_t revision, uint16_t subsys_vendor,
                            uint16_t subsys_id, bool host)
{
    memset(d->config, 0, sizeof d->config);
    memset(d->wmask, 0, sizeof d->wmask);
    memset(d->w1cmask, 0, sizeof d->w1cmask);
    set16(d->config, PCI_VENDOR_ID, vendor);
    set16(d->config, PCI_DEVICE_ID, device);
    d->config[PCI_REVISION_ID] = revision;
    d->config[PCI_CLASS_PROG] = (uint8_t)class_code;
    set16(d->config, PCI_CLASS_DEVICE, (uint16_t)(class_code >> 8));
    d->config[PCI_HEADER_TYPE] = 0;         /* type 0, single function */
    set16(d->config, PCI_SUBSYSTEM_VENDOR_ID, subsys_vendor);
    set16(d->config, PCI_SUBSYSTEM_ID, subsys_id);
    set16(d->wmask, PCI_COMMAND, PCI_COMMAND_WMASK);
    d->next_cap = PCI_CAP_START;
    d->last_cap = 0;
    if (host)
        return;     /* the host bridge: read-only except COMMAND */
    set16(d->w1cmask, PCI_STATUS, PCI_STATUS_ERRORS);
    d->wmask[PCI_CACHE_LINE_SIZE] = 0xFF;
    d->wmask[PCI_LATENCY_TIMER] = 0xFF;
    d->wmask[PCI_INTERRUPT_LINE] = 0xFF;    /* scratch for the OS (§6.2.4) */
    d->config[PCI_INTERRUPT_PIN] = 1;       /* INTA# */
}

int pci_device_register(struct pci_bus *b, struct pci_device *d, int devfn,
                        uint16_t vendor, uint16_t device, uint32_t class_code,
                        uint8_t revision, uint16_t subsys_vendor, uint16_t subsys_id)
{
    if (!b || !d || devfn >= 256 || (devfn >= 0 && (devfn & 7)) || vendor == 0xFFFF ||
        class_code > 0xFFFFFF)
        return -EINVAL;
    int ret = 0;
    pthread_mutex_lock(&b->lock);
    unsigned slot;
    if (devfn < 0) {
        for (slot = 1; slot < PCI_MAX_DEVICES && b->devices[slot]; slot++)
            ;
        if (slot == PCI_MAX_DEVICES) {
            ret = -ENOSPC;
            goto out;
        }
    } else {
        slot = (unsigned)devfn >> 3;
        if (b->devices[slot]) {
            ret = -EEXIST;
            goto out;
        }
    }
    d->bus = b;
    d->devfn = (uint8_t)(slot << 3);
    memset(d->bars, 0, sizeof d->bars);
    d->msix = NULL;
    d->intx_level = d->intx_out = d->intx_masked = false;
    d->intx_gsi = pci_intx_gsi(b, slot, 0);
    if (!d->name)
        d->name = "pci-device";
    pci_header_init(d, vendor, device, class_code, revision, subsys_vendor, subsys_id, false);
    b->devices[slot] = d;
out:
    pthread_mutex_unlock(&b->lock);
    return ret;
}

void pci_device_unregister(struct pci_device *d)
{
    if (!d || !d->bus)
        return;
    struct pci_bus *b = d->bus;
    pthread_mutex_lock(&b->lock);
    pci_unmap_all(d);
    pthread_mutex_lock(&b->intx_lock);
    d->intx_level = false;
    pci_intx_output_locked(d);
    pthread_mutex_unlock(&b->intx_lock);
    if (d->msix)
        pci_msix_free(d);
    if (b->devices[d->devfn >> 3] == d)
        b->devices[d->devfn >> 3] = NULL;
    pthread_mutex_unlock(&b->lock);
    d->bus = NULL;
}

/* --- configuration space access --- */

static struct pci_device *pci_lookup(struct pci_bus *b, uint8_t devfn)
{
    if (devfn & 7)
        return NULL;        /* function 0 only; header type says so */
    return b->devices[devfn >> 3];
}

static bool pci_access_ok(uint32_t off, unsigned len)
{
    return (len == 1 || len == 2 || len == 4) && off < PCI_CONFIG_SIZE &&
           (off & 3) + len <= 4;
}

static uint32_t pci_dev_config_read(struct pci_device *d, uint32_t off, unsigned len)
{
    uint32_t v = 0;
    for (unsigned i = 0; i < len; i++)
        v |= (uint32_t)d->config[off + i] << (8 * i);
    if (ranges_overlap(off, len, PCI_STATUS, 1)) {
        pthread_mutex_lock(&d->bus->intx_lock);
        if (d->intx_level)
            v |= (uint32_t)PCI_STATUS_INTERRUPT << (8 * (PCI_STATUS - off));
        pthread_mutex_unlock(&d->bus->intx_lock);
    }
    return v;
}

static void pci_dev_config_write(struct pci_device *d, uint32_t off, uint32_t val, unsigned len)
{
    for (unsigned i = 0; i < len; i++) {
        uint32_t o = off + i;
        uint8_t byte = (uint8_t)(val >> (8 * i));
        uint8_t nv = (uint8_t)((d->config[o] & ~d->wmask[o]) | (byte & d->wmask[o]));
        nv = (uint8_t)(nv & ~(byte & d->w1cmask[o]));
        d->config[o] = nv;
    }
    bool cmd = ranges_overlap(off, len, PCI_COMMAND, 2);
    bool msix = d->msix && pci_msix_config_hit(d, off, len);
    if (msix)
        pci_msix_config_changed(d);
    if (cmd || msix)
        pci_intx_refresh(d);
    if (cmd || ranges_overlap(off, len, PCI_BASE_ADDRESS_0, 4 * PCI_NUM_BARS))
        pci_update_mappings(d);
    if (d->ops && d->ops->config_write)
        d->ops->config_write(d, off, val, len);
}

static uint32_t pci_config_read_locked(struct pci_bus *b, uint8_t devfn, uint32_t off,
                                       unsigned len)
{
    uint32_t ones = len == 4 ? 0xFFFFFFFFu : (1u << (8 * len)) - 1;
    struct pci_device *d = pci_lookup(b, devfn);
    if (!d || !pci_access_ok(off, len))
        return ones;        /* master abort: all-ones (§6.1) */
    return pci_dev_config_read(d, off, len);
}

static void pci_config_write_locked(struct pci_bus *b, uint8_t devfn, uint32_t off,
                                    uint32_t val, unsigned len)
{
    struct pci_device *d = pci_lookup(b, devfn);
    if (d && pci_access_ok(off, len))
        pci_dev_config_write(d, off, val, len);
}

uint32_t pci_config_read(struct pci_bus *b, uint8_t devfn, uint32_t off, unsigned len)
{
    pthread_mutex_lock(&b->lock);
    uint32_t v = pci_config_read_locked(b, devfn, off, len);
    pthread_mutex_unlock(&b->lock);
    return v;
}

void pci_config_write(struct pci_bus *b, uint8_t devfn, uint32_t off, uint32_t val,
                      unsigned len)
{
    pthread_mutex_lock(&b->lock);
    pci_config_write_locked(b, devfn, off, val, len);
    pthread_mutex_unlock(&b->lock);
}

static uint32_t le_get(const void *data, unsigned len)
{
    const uint8_t *p = data;
    uint32_t v = 0;
    for (unsigned i = 0; i < len && i < 4; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}

static void le_put(void *data, unsigned len, uint64_t v)
{
    uint8_t *p = data;
    for (unsigned i = 0; i < len; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Configuration mechanism #1 (§3.2.2.3.2). CONFIG_ADDRESS is a dword
 * register at 0xCF8: only dword accesses reach it; narrower accesses are
 * ordinary I/O (0xCF9 being the reset control register on PC chipsets). */
static void pci_cf8_read(void *opaque, uint64_t off, void *data, unsigned len)
{
    struct pci_bus *b = opaque;
    if (off == 0 && len == 4) {
        pthread_mutex_lock(&b->lock);
        uint32_t v = b->cf8;
        pthread_mutex_unlock(&b->lock);
        le_put(data, 4, v);
        return;
    }
    uint8_t *p = data;
    for (unsigned i = 0; i < len; i++) {
        if (off + i == 1 && b->cfg.cf9_ops && b->cfg.cf9_ops->read)
            b->cfg.cf9_ops->read(b->cfg.cf9_opaque, 0, &p[i], 1);
        else
            p[i] = 0xFF;
    }
}

static void pci_cf8_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
    struct pci_bus *b = opaque;
    if (off == 0 && len == 4) {
        pthread_mutex_lock(&b->lock);
        b->cf8 = le_get(data, 4) & PCI_CF8_MASK;
        pthread_mutex_unlock(&b->lock);
        return;
    }
    const uint8_t *p = data;
    for (unsigned i = 0; i < len; i++)
        if (off + i == 1 && b->cfg.cf9_ops && b->cfg.cf9_ops->write)
            b->cfg.cf9_ops->write(b->cfg.cf9_opaque, 0, &p[i], 1);
}

/* CONFIG_DATA: byte n of 0xCFC..0xCFF is byte n of the selected dword. */
static bool pci_cfc_target(struct pci_bus *b, uint64_t off, unsigned len, uint8_t *devfn,
                           uint32_t *reg)
{
    uint32_t a = b->cf8;
    if (!(a & PCI_CF8_ENABLE) || ((a >> 16) & 0xFF) != 0 || off + len > 4)
        return false;       /* disabled, or a bus that does not exist */
    *devfn = (uint8_t)(a >> 8);
    *reg = (a & 0xFC) + (uint32_t)off;
    return true;
}

static void pci_cfc_read(void *opaque, uint64_t off, void *data, unsigned len)
{
    struct pci_bus *b = opaque;
    uint8_t devfn;
    uint32_t reg;
    uint64_t v = ~0ull;
    pthread_mutex_lock(&b->lock);
    if (len <= 4 && pci_cfc_target(b, off, len, &devfn, &reg))
        v = pci_config_read_locked(b, devfn, reg, len);
    pthread_mutex_unlock(&b->lock);
    le_put(data, len, v);
}

static void pci_cfc_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
    struct pci_bus *b = opaque;
    uint8_t devfn;
    uint32_t reg;
    pthread_mutex_lock(&b->lock);
    if (len <= 4 && pci_cfc_target(b, off, len, &devfn, &reg))
        pci_config_write_locked(b, devfn, reg, le_get(data, len), len);
    pthread_mutex_unlock(&b->lock);
}

/* ECAM (PCIe 4.0 §7.2.2, Table 7-1): address bits 19:15 device, 14:12
 * function, 11:0 register. Accesses wider than a dword or crossing one are
 * not supported (§7.2.2.2): reads all-ones, writes dropped. */
static void pci_ecam_read(void *opaque, uint64_t off, void *data, unsigned len)
{
    struct pci_bus *b = opaque;
    uint64_t v = ~0ull;
    if (off < PCI_ECAM_BUS_SIZE && len <= 4)
        v = pci_config_read(b, (uint8_t)(off >> 12), (uint32_t)(off & 0xFFF), len);
    le_put(data, len, v);
}

static void pci_ecam_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
    struct pci_bus *b = opaque;
    if (off < PCI_ECAM_BUS_SIZE && len <= 4)
        pci_config_write(b, (uint8_t)(off >> 12), (uint32_t)(off & 0xFFF), le_get(data, len), len);
}

/* The BAR windows: hand the access to whatever BAR decodes it. */
static void pci_io_window_read(void *opaque, uint64_t off, void *data, unsigned len)
{
    struct pci_bus *b = opaque;
    bus_access(&b->bar_pio, b->cfg.io_base + off, data, len, false);
}

static void pci_io_window_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
    struct pci_bus *b = opaque;
    bus_access(&b->bar_pio, b->cfg.io_base + off, (void *)data, len, true);
}

static void pci_mmio_window_read(void *opaque, uint64_t off, void *data, unsigned len)
{
    struct pci_bus *b = opaque;
    bus_access(&b->bar_mmio, b->cfg.mmio_base + off, data, len, false);
}

static void pci_mmio_window_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
    struct pci_bus *b = opaque;
    bus_access(&b->bar_mmio, b->cfg.mmio_base + off, (void *)data, len, true);
}

const struct bus_ops pci_cf8_bus_ops = { pci_cf8_read, pci_cf8_write };
const struct bus_ops pci_cfc_bus_ops = { pci_cfc_read, pci_cfc_write };
const struct bus_ops pci_ecam_bus_ops = { pci_ecam_read, pci_ecam_write };
const struct bus_ops pci_io_window_bus_ops = { pci_io_window_read, pci_io_window_write };
const struct bus_ops pci_mmio_window_bus_ops = { pci_mmio_window_read, pci_mmio_window_write };

/* --- the bus --- */

static int pci_check_config(const struct pci_bus_config *c)
{
    if (c->ecam_base & (PCI_ECAM_BUS_SIZE - 1))
        return -EINVAL;
    if (c->io_size && (c->io_base > 0x10000 || c->io_size > 0x10000 - c->io_base ||
                       ranges_overlap(c->io_base, c->io_size, PCI_PORT_CF8, 8)))
        return -EINVAL;
    if (c->mmio_size && c->mmio_base + c->mmio_size < c->mmio_base)
        return -EINVAL;
    if (c->ecam_base && c->mmio_size && c->ecam_base < c->mmio_base + c->mmio_size &&
        c->mmio_base < c->ecam_base + PCI_ECAM_BUS_SIZE)
        return -EINVAL;
    return 0;
}

static void pci_unregister_ranges(struct pci_bus *b)
{
    bus_unregister(b->pio, PCI_PORT_CF8);
    bus_unregister(b->pio, PCI_PORT_CFC);
    if (b->cfg.io_size)
        bus_unregister(b->pio, b->cfg.io_base);
    if (b->cfg.ecam_base)
        bus_unregister(b->mmio, b->cfg.ecam_base);
    if (b->cfg.mmio_size)
        bus_unregister(b->mmio, b->cfg.mmio_base);
}

int pci_bus_init(struct pci_bus *b, struct vm *vm, struct bus *pio, struct bus *mmio,
                 const struct pci_bus_config *cfg)
{
    if (!b || !pio || !mmio || !cfg)
        return -EINVAL;
    int r = pci_check_config(cfg);
    if (r < 0)
        return r;
    memset(b, 0, sizeof *b);
    b->vm = vm;
    b->pio = pio;
    b->mmio = mmio;
    b->cfg = *cfg;
    b->rl = (struct log_ratelimit)LOG_RATELIMIT_INIT;
    if (vm) {
        b->set_gsi = pci_kvm_set_gsi;
        b->send_msi = pci_kvm_send_msi;
        b->irq_ctx = vm;
    }
    if ((r = -pthread_mutex_init(&b->lock, NULL)) < 0)
        return r;
    if ((r = -pthread_mutex_init(&b->intx_lock, NULL)) < 0)
        goto err_lock;
    if ((r = bus_init(&b->bar_pio)) < 0)
        goto err_intx;
    if ((r = bus_init(&b->bar_mmio)) < 0)
        goto err_pio;

    struct pci_device *h = &b->host;
    h->bus = b;
    h->name = pci_name_host;
    h->devfn = 0;
    pci_header_init(h, PCI_HOST_VENDOR_ID, PCI_HOST_DEVICE_ID, PCI_HOST_CLASS, 0,
                    PCI_HOST_VENDOR_ID, 0x1100, true);
    b->devices[0] = h;

    /* The ranges; on failure remove those added so far. */
    struct {
        struct bus *bus;
        uint64_t base, len;
        const char *name;
        const struct bus_ops *ops;
    } ranges[] = {
        { pio, PCI_PORT_CF8, 4, "pci-conf-addr", &pci_cf8_bus_ops },
        { pio, PCI_PORT_CFC, 4, "pci-conf-data", &pci_cfc_bus_ops },
        { pio, cfg->io_base, cfg->io_size, "pci-io", &pci_io_window_bus_ops },
        { mmio, cfg->ecam_base, cfg->ecam_base ? PCI_ECAM_BUS_SIZE : 0, "pci-ecam",
          &pci_ecam_bus_ops },
        { mmio, cfg->mmio_base, cfg->mmio_size, "pci-mmio", &pci_mmio_window_bus_ops },
    };
    size_t n = sizeof ranges / sizeof ranges[0];
    for (size_t i = 0; i < n; i++) {
        if (!ranges[i].len)
            continue;
        r = bus_register(ranges[i].bus, ranges[i].base, ranges[i].len, ranges[i].name,
                         ranges[i].ops, b);
        if (r < 0) {
            log_err("pci: cannot register %s at 0x%llx: %s", ranges[i].name,
                    (unsigned long long)ranges[i].base,
                    r == -EEXIST ? "the range is in use" : strerror(-r));
            while (i-- > 0)
                if (ranges[i].len)
                    bus_unregister(ranges[i].bus, ranges[i].base);
            goto err_mmio;
        }
    }
    b->registered = true;
    return 0;

err_mmio:
    bus_destroy(&b->bar_mmio);
err_pio:
    bus_destroy(&b->bar_pio);
err_intx:
    pthread_mutex_destroy(&b->intx_lock);
err_lock:
    pthread_mutex_destroy(&b->lock);
    return r;
}

void pci_bus_destroy(struct pci_bus *b)
{
    if (!b || !b->pio)
        return;
    if (b->registered)
        pci_unregister_ranges(b);
    b->registered = false;
    bus_destroy(&b->bar_mmio);
    bus_destroy(&b->bar_pio);
    pthread_mutex_destroy(&b->intx_lock);
    pthread_mutex_destroy(&b->lock);
    b->pio = b->mmio = NULL;
}

void pci_bus_reset(struct pci_bus *b)
{
    pthread_mutex_lock(&b->lock);
    b->cf8 = 0;
    for (unsigned s = 0; s < PCI_MAX_DEVICES; s++) {
        struct pci_device *d = b->devices[s];
        if (!d)
            continue;
        /* Power-on: every guest-writable bit is 0 (command, BAR addresses,
         * interrupt line, MSI-X control); RO bits (ids, BAR types) stay. */
        for (unsigned i = 0; i < PCI_CONFIG_SIZE; i++)
            d->config[i] &= (uint8_t)~(d->wmask[i] | d->w1cmask[i]);
        pci_update_mappings(d);
        if (d->msix)
            pci_msix_reset(d);
        pthread_mutex_lock(&b->intx_lock);
        d->intx_level = false;
        d->intx_masked = false;
        pci_intx_output_locked(d);
        pthread_mutex_unlock(&b->intx_lock);
        if (d->ops && d->ops->reset)
            d->ops->reset(d);
    }
    pthread_mutex_unlock(&b->lock);
}

int pci_bus_assign_resources(struct pci_bus *b)
{
    int ret = 0;
    pthread_mutex_lock(&b->lock);
    uint64_t io = b->cfg.io_base, mem = b->cfg.mmio_base;
    uint64_t io_end = io + b->cfg.io_size, mem_end = mem + b->cfg.mmio_size;
    for (unsigned s = 1; s < PCI_MAX_DEVICES; s++) {
        struct pci_device *d = b->devices[s];
        if (!d)
            continue;
        uint16_t enable = 0;
        for (unsigned i = 0; i < PCI_NUM_BARS; i++) {
            struct pci_bar *bar = &d->bars[i];
            if (!bar->size || bar->upper_half)
                continue;
            bool isio = bar->type == PCI_BAR_IO;
            uint64_t *cur = isio ? &io : &mem;
            uint64_t end = isio ? io_end : mem_end;
            uint64_t at = (*cur + bar->size - 1) & ~(bar->size - 1);
            if (at < *cur || at > end || bar->size > end - at) {
                log_warn("pci %02x.0 %s: no room for BAR%u (0x%llx bytes) in the PCI %s window",
                         s, d->name, i, (unsigned long long)bar->size, isio ? "I/O" : "memory");
                ret = -ENOSPC;
                continue;
            }
            *cur = at + bar->size;
            uint32_t off = pci_bar_off(i);
            uint32_t type_bits = cfg32(d, off) & (isio ? 0x3u : 0xFu);
            set32(d->config, off, type_bits | (uint32_t)at);
            if (bar->type == PCI_BAR_MEM64)
                set32(d->config, off + 4, (uint32_t)(at >> 32));
            enable |= isio ? PCI_COMMAND_IO : PCI_COMMAND_MEMORY;
        }
        if (d->config[PCI_INTERRUPT_PIN])
            d->config[PCI_INTERRUPT_LINE] = (uint8_t)d->intx_gsi;
        set16(d->config, PCI_COMMAND, cfg16(d, PCI_COMMAND) | enable);
        pci_update_mappings(d);
    }
    pthread_mutex_unlock(&b->lock);
    return ret;
}
