/* PCI: one bus 0 behind a host bridge, type-0 configuration space with
 * write masks, BARs the guest sizes and moves, the capability list, INTx
 * and MSI-X. Spec: PCI Local Bus 3.0 (config header §6.1-6.2, BARs §6.2.5,
 * configuration mechanism #1 §3.2.2.3.2), PCI Express Base 4.0 §7.2.2
 * (ECAM), PCI 3.0 §6.8.2 (MSI-X).
 *
 * Address decoding. pci_bus_init() registers on the VM's buses: 0xCF8 (4
 * bytes, CONFIG_ADDRESS; byte accesses to 0xCF9 are forwarded to the reset
 * control register given in the config), 0xCFC (4 bytes, CONFIG_DATA), the
 * ECAM window, and one range for each BAR window (PCI I/O and 32-bit MMIO).
 * BARs are (un)registered on the bus's own sub-buses (bar_pio, bar_mmio)
 * that the windows dispatch to. Why not on the VM buses directly: config
 * accesses arrive inside a bus_access() of the VM's PIO bus (0xCFC) or MMIO
 * bus (ECAM), holding that bus's read lock, and bus.h forbids
 * (un)registering on the bus a callback runs from (the rwlock would
 * deadlock: an I/O BAR moved through 0xCFC, a memory BAR moved through
 * ECAM). The cost is one extra bisection per BAR access; the PCI layer
 * itself is still not on the data path (bar_mmio dispatches straight to the
 * device's bus_ops). A BAR the guest puts outside the windows, or over
 * another BAR, is left unmapped (logged, rate-limited).
 *
 * Threads and locks (order: left before right):
 *   VM bus read lock -> pci_bus.lock -> sub-bus write lock
 *                                    -> pci_msix.lock -> routing (kvm_irq.c)
 *   sub-bus read lock -> device lock -> pci_bus.intx_lock / pci_msix.lock
 *   pci_bus.lock -> pci_bus.intx_lock
 * - pci_bus.lock serialises configuration accesses (0xCF8/0xCFC/ECAM, vCPU
 *   threads) and set-up; device config_write hooks run under it.
 * - BAR callbacks (vCPU threads) and device threads (I/O threads) must NOT
 *   call anything that takes pci_bus.lock: only pci_set_irq(),
 *   pci_msix_notify(), pci_msix_vector_fd(), pci_msix_enabled() and the
 *   MSI-X table/PBA accessors, which take the leaf locks intx_lock and
 *   pci_msix.lock. */
#ifndef KVMBOX_PCI_H
#define KVMBOX_PCI_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/bus.h"
#include "core/log.h"

struct vm;
struct pci_device;

#define PCI_MAX_DEVICES   32      /* slots on bus 0; function 0 only */
#define PCI_CONFIG_SIZE   4096    /* extended (ECAM) space; legacy sees 256 */
#define PCI_LEGACY_CONFIG_SIZE 256
#define PCI_NUM_BARS      6
#define PCI_INTX_PINS     4       /* INTA#..INTD# */
#define PCI_ECAM_BUS_SIZE 0x100000u  /* one bus: 32 devices x 8 functions x 4 KiB */

/* Standard header offsets (PCI 3.0 §6.1, Figure 6-1). */
#define PCI_VENDOR_ID       0x00
#define PCI_DEVICE_ID       0x02
#define PCI_COMMAND         0x04
#define  PCI_COMMAND_IO       0x1
#define  PCI_COMMAND_MEMORY   0x2
#define  PCI_COMMAND_MASTER   0x4
#define  PCI_COMMAND_PARITY   0x40
#define  PCI_COMMAND_SERR     0x100
#define  PCI_COMMAND_INTX_DISABLE 0x400
#define PCI_STATUS          0x06
#define  PCI_STATUS_INTERRUPT 0x08
#define  PCI_STATUS_CAP_LIST  0x10
#define  PCI_STATUS_ERRORS    0xF900  /* RW1C error bits (§6.2.3) */
#define PCI_REVISION_ID     0x08
#define PCI_CLASS_PROG      0x09
#define PCI_CLASS_DEVICE    0x0a
#define PCI_CACHE_LINE_SIZE 0x0c
#define PCI_LATENCY_TIMER   0x0d
#define PCI_HEADER_TYPE     0x0e
#define PCI_BASE_ADDRESS_0  0x10
#define  PCI_BASE_ADDRESS_SPACE_IO   0x1
#define  PCI_BASE_ADDRESS_MEM_TYPE_64 0x4
#define  PCI_BASE_ADDRESS_MEM_PREFETCH 0x8
#define PCI_SUBSYSTEM_VENDOR_ID 0x2c
#define PCI_SUBSYSTEM_ID    0x2e
#define PCI_ROM_ADDRESS     0x30
#define PCI_CAPABILITY_LIST 0x34
#define PCI_INTERRUPT_LINE  0x3c
#define PCI_INTERRUPT_PIN   0x3d
#define PCI_CAP_START       0x40      /* first byte after the type-0 header */

#define PCI_CAP_ID_MSIX     0x11
#define PCI_CAP_ID_VNDR     0x09

/* The host bridge at 00.0: the generic "QEMU PCIe host bridge" ids (also
 * used by QEMU's gpex/microvm), class 06.00.00. See pci.c for why not the
 * i440FX ids. */
#define PCI_HOST_VENDOR_ID  0x1b36
#define PCI_HOST_DEVICE_ID  0x0008
#define PCI_HOST_CLASS      0x060000

enum pci_bar_type {
    PCI_BAR_IO,
    PCI_BAR_MEM32,
    PCI_BAR_MEM64,          /* uses two BAR slots */
};

struct pci_device_ops {
    /* Called after the generic handling of a config write (e.g. to see the
     * command register change); may be NULL. pci_bus.lock held (not
     * recursive): it must not call pci_config_*, pci_register_bar,
     * pci_add_capability or pci_device_(un)register. */
    void (*config_write)(struct pci_device *d, uint32_t off, uint32_t val, unsigned len);
    /* Device reset (pci_bus_reset: VM reset; not FLR), after the config
     * space is back at its power-on values. May be NULL. pci_bus.lock held. */
    void (*reset)(struct pci_device *d);
};

struct pci_bar {
    enum pci_bar_type type;
    uint64_t size;              /* power of two; 0: unused */
    bool prefetchable;
    bool upper_half;            /* the high dword of the 64-bit BAR below */
    const struct bus_ops *ops;  /* the device's register callbacks */
    void *opaque;
    uint64_t mapped_at;         /* current address while decoding */
    bool mapped;
};

struct pci_msix;

struct pci_device {
    struct pci_bus *bus;
    const struct pci_device_ops *ops;
    void *opaque;               /* the device model owning this function */
    const char *name;           /* -device id or model name; outlives the device */
    uint8_t devfn;              /* slot << 3 | function */
    /* Config space. Written by the owner only before registration /
     * capability set-up, then under pci_bus.lock. STATUS.INTERRUPT is
     * composed at read time from intx_level. */
    uint8_t config[PCI_CONFIG_SIZE];
    uint8_t wmask[PCI_CONFIG_SIZE];     /* bits the guest may write */
    uint8_t w1cmask[PCI_CONFIG_SIZE];   /* write-1-to-clear bits */
    uint8_t next_cap;           /* where the next capability goes */
    uint8_t last_cap;           /* 0 or the offset of the last capability */
    struct pci_bar bars[PCI_NUM_BARS];
    /* INTx: pin A routed by slot to an IOAPIC GSI (pci_intx_gsi). Under
     * pci_bus.intx_lock. */
    uint32_t intx_gsi;
    bool intx_level;            /* what the device asserts */
    bool intx_out;              /* what it contributes to the GSI */
    bool intx_masked;           /* COMMAND.INTX_DISABLE or MSI-X enabled */
    struct pci_msix *msix;
};

/* Where the machine puts things (x86: the LAYOUT_PCI_* constants). */
struct pci_bus_config {
    uint64_t ecam_base;             /* 1 MiB (bus 0), 0: no ECAM */
    uint64_t mmio_base, mmio_size;  /* 32-bit BAR window */
    uint32_t io_base, io_size;      /* I/O BAR window, below 0x10000 */
    uint32_t intx_gsi_base;         /* GSI of swizzle 0 (x86: 16) */
    /* What answers byte accesses to 0xCF9 (shares the dword at 0xCF8, like
     * the PIIX/ICH reset control register): e.g. reset_control_bus_ops,
     * called with offset 0 and len 1. NULL: reads ones, writes dropped. */
    const struct bus_ops *cf9_ops;
    void *cf9_opaque;
};

struct pci_bus {
    pthread_mutex_t lock;
    pthread_mutex_t intx_lock;  /* leaf: INTx levels and GSI counts */
    struct vm *vm;              /* NULL in unit tests */
    struct bus *pio, *mmio;     /* the VM's buses (config ports, windows) */
    struct bus bar_pio, bar_mmio;   /* BAR mappings, behind the windows */
    struct pci_bus_config cfg;
    struct pci_device *devices[PCI_MAX_DEVICES];
    struct pci_device host;     /* the host bridge at 00.0 */
    uint32_t cf8;               /* CONFIG_ADDRESS latch */
    unsigned intx_count[PCI_INTX_PINS]; /* asserting devices per PCI GSI */
    /* Interrupt delivery (the VM's irqchip, or a test recorder). With vm
     * set and set_gsi NULL, pci_bus_init uses KVM_IRQ_LINE via vm_irq_line. */
    void (*set_gsi)(void *ctx, uint32_t gsi, int level);
    /* MSI delivery for vectors without an irqfd (or in tests); with vm set
     * and send_msi NULL, KVM_SIGNAL_MSI. */
    void (*send_msi)(void *ctx, uint64_t addr, uint32_t data);
    void *irq_ctx;
    struct log_ratelimit rl;
    bool registered;            /* config ports/windows on pio/mmio */
};

/* Bus set-up (main thread, before vCPUs run): the host bridge at 00.0, the
 * config ports 0xCF8 and 0xCFC, the ECAM window and the BAR windows on
 * pio/mmio. 0 or -errno (-EEXIST: a range is taken). set_gsi/send_msi/
 * irq_ctx may be set after init (tests). */
int pci_bus_init(struct pci_bus *b, struct vm *vm, struct bus *pio, struct bus *mmio,
                 const struct pci_bus_config *cfg);
/* Unregisters everything from pio/mmio; devices must be gone. */
void pci_bus_destroy(struct pci_bus *b);
/* Registered by pci_bus_init (exported for tests and `info mtree`). */
extern const struct bus_ops pci_cf8_bus_ops, pci_cfc_bus_ops, pci_ecam_bus_ops,
    pci_io_window_bus_ops, pci_mmio_window_bus_ops;
/* Power-on state for every device (VM reset; main thread, vCPUs parked):
 * writable config bits to 0 (decoding off, BARs 0, MSI-X off), INTx
 * deasserted, then each device's reset hook. */
void pci_bus_reset(struct pci_bus *b);
/* What firmware would do: place every BAR in the windows (naturally
 * aligned, in slot order), set INTERRUPT_LINE to the GSI and enable I/O and
 * memory decoding. Guests that assign BARs themselves (Linux with ACPI can)
 * may move them. Call after pci_bus_reset, vCPUs parked. 0, or -ENOSPC when
 * a window is full (the BARs that fit are placed). */
int pci_bus_assign_resources(struct pci_bus *b);
/* INTx swizzle (PCI-to-PCI bridge spec §9.1 style, as the ACPI _PRT and
 * MP table describe it): slot s pin p (0 = INTA#) -> GSI base + (s+p) % 4. */
uint32_t pci_intx_gsi(const struct pci_bus *b, unsigned slot, unsigned pin);

/* Configuration access by bus/devfn (what 0xCFC and ECAM do): reads of
 * absent functions return all-ones. len 1, 2 or 4, not crossing a dword.
 * Any thread that does not hold the locks listed above (monitor, tests). */
uint32_t pci_config_read(struct pci_bus *b, uint8_t devfn, uint32_t off, unsigned len);
void pci_config_write(struct pci_bus *b, uint8_t devfn, uint32_t off, uint32_t val,
                      unsigned len);

/* Device set-up, before the guest runs (main thread). devfn < 0: first free
 * slot; function numbers other than 0 are rejected (-EINVAL). The caller
 * zero-initialises d and sets ops/opaque/name. 0 or -errno (-EEXIST: slot
 * taken, -ENOSPC: bus full). */
int pci_device_register(struct pci_bus *b, struct pci_device *d, int devfn,
                        uint16_t vendor, uint16_t device, uint32_t class_code,
                        uint8_t revision, uint16_t subsys_vendor, uint16_t subsys_id);
/* Unmaps its BARs, drops INTx, frees MSI-X. Main thread, vCPUs parked. */
void pci_device_unregister(struct pci_device *d);
/* Declare a BAR, after pci_device_register: size a power of two, >= 16 for
 * memory (<= 2 GiB for MEM32), 4..256 for I/O (PCI 3.0 §6.2.5.1). MEM64
 * takes idx and idx + 1. 0 or -EINVAL/-EBUSY. */
int pci_register_bar(struct pci_device *d, unsigned idx, enum pci_bar_type type,
                     uint64_t size, bool prefetchable, const struct bus_ops *ops, void *opaque);
/* Append a capability of len bytes (incl. the 2-byte header) to the list in
 * the legacy 256 bytes (dword aligned, §6.7); returns its config offset or
 * -ENOSPC/-EINVAL. The caller fills the body and sets wmask. */
int pci_add_capability(struct pci_device *d, uint8_t cap_id, uint8_t len);
/* INTx pin A: level 1 asserted. STATUS.INTERRUPT follows level; the GSI
 * sees it unless COMMAND.INTX_DISABLE is set or MSI-X is enabled (PCI 3.0
 * §6.8.2.3). A GSI shared by several slots is the OR of their outputs. Any
 * thread. */
void pci_set_irq(struct pci_device *d, int level);

/* MSI-X (pci_msix.c): a table of nvec entries and the PBA inside memory BAR
 * `bar` (declared before) at the given offsets. Either the device's BAR
 * callbacks forward those ranges to pci_msix_table_access/pci_msix_pba_access,
 * or the BAR is dedicated: then register it with pci_msix_bar_ops and the
 * pci_device as opaque. 0 or -errno. Set-up time. */
int pci_msix_init(struct pci_device *d, unsigned nvec, unsigned bar,
                  uint32_t table_off, uint32_t pba_off);
extern const struct bus_ops pci_msix_bar_ops;
/* MSI-X Enable set in the capability (any thread). */
bool pci_msix_enabled(const struct pci_device *d);
/* Raise vector v: delivered if enabled and neither the function nor the
 * vector is masked; pending bit set if masked; dropped when MSI-X is off or
 * v is out of range. Any thread. */
void pci_msix_notify(struct pci_device *d, unsigned v);
/* For a transport that wants KVM to inject directly: an eventfd whose
 * write raises vector v (irqfd on an MSI route kept in step with the
 * table; writes while the vector is masked become its pending bit), or -1
 * when not available (no VM, no route). Stable until pci_msix_free. */
int pci_msix_vector_fd(struct pci_device *d, unsigned v);
/* MSI-X table/PBA register access (off relative to the table/PBA start),
 * dword or aligned qword; anything else is ignored (reads all-ones). */
void pci_msix_table_access(struct pci_device *d, uint64_t off, void *data, unsigned len,
                           bool is_write);
void pci_msix_pba_access(struct pci_device *d, uint64_t off, void *data, unsigned len,
                         bool is_write);
/* Power-on state: every vector masked, addresses/data 0, no pending bits,
 * routes detached. Called by pci_bus_reset. */
void pci_msix_reset(struct pci_device *d);
/* Called by pci_device_unregister. */
void pci_msix_free(struct pci_device *d);

#endif
