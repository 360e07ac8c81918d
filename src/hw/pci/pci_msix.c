/* MSI-X (PCI Local Bus 3.0 §6.8.2): the capability, the vector table and
 * the pending bit array, and delivery through KVM. See pci.h.
 *
 * Delivery. Each vector owns an eventfd for its whole life (so a transport
 * can hand it to an I/O thread once). While the vector is deliverable (MSI-X
 * enabled, function and vector unmasked, a valid message), the eventfd is
 * an irqfd on a KVM MSI route that follows the table entry: a notify is one
 * eventfd write and KVM injects without a trip through the VMM. While it is
 * not deliverable the irqfd is detached: eventfd writes then just count,
 * and the count becomes the pending bit when the PBA is read or the vector
 * is unmasked (which fires it, §6.8.2.9). Without a VM (unit tests) there
 * are no eventfds: notify calls bus->send_msi.
 *
 * Locking: pci_msix.lock guards the table, the pending bits and the route
 * state; it is taken from BAR callbacks (table/PBA), from config writes
 * (pci_bus.lock held) and from any thread by notify; routing calls under it
 * take the VM's routing lock (a leaf). */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/kvm_irq.h"
#include "core/log.h"
#include "hw/pci/pci.h"
#include "hw/pci/pci_internal.h"

#define MSIX_MAX_VECTORS      2048    /* Table Size is 11 bits (§6.8.2.3) */
#define MSIX_CAP_LEN          12
#define MSIX_CTRL             2       /* Message Control, from the capability start */
#define MSIX_TABLE            4       /* Table Offset/Table BIR */
#define MSIX_PBA              8       /* PBA Offset/PBA BIR */
#define MSIX_CTRL_ENABLE      0x8000
#define MSIX_CTRL_FMASK       0x4000
#define MSIX_ENTRY_SIZE       16
#define MSIX_ENTRY_ADDR_LO    0
#define MSIX_ENTRY_ADDR_HI    4
#define MSIX_ENTRY_DATA       8
#define MSIX_ENTRY_CTRL       12
#define MSIX_VECTOR_MASKED    0x1     /* Vector Control bit 0; 31:1 reserved (§6.8.2.9) */
/* x86 MSI messages target the LAPIC window (Intel SDM vol. 3 §11.11.1). */
#define MSI_ADDR_BASE_MASK    0xFFF00000u
#define MSI_ADDR_BASE         0xFEE00000u

struct msix_vector {
    uint32_t addr_lo, addr_hi, data, ctrl;
    bool pending;
    int fd;                     /* eventfd, -1 without a VM */
    bool route;                 /* gsi allocated */
    uint32_t gsi;
    uint64_t route_addr;        /* what the route currently says */
    uint32_t route_data;
    bool irqfd;                 /* fd attached to gsi */
    bool route_failed;          /* logged once */
};

struct pci_msix {
    pthread_mutex_t lock;
    struct pci_device *dev;
    unsigned nvec, bar;
    uint32_t table_off, pba_off;
    uint8_t cap;
    atomic_bool enabled;
    bool fmask;
    struct log_ratelimit rl;
    struct msix_vector v[];
};

static uint32_t msix_table_size(const struct pci_msix *m)
{
    return m->nvec * MSIX_ENTRY_SIZE;
}

static uint32_t msix_pba_size(const struct pci_msix *m)
{
    return (m->nvec + 63) / 64 * 8;     /* QWORDs of pending bits */
}

static bool msix_msg_valid(const struct msix_vector *v)
{
    return v->addr_hi == 0 && (v->addr_lo & MSI_ADDR_BASE_MASK) == MSI_ADDR_BASE;
}

static bool msix_deliverable(const struct pci_msix *m, const struct msix_vector *v)
{
    return atomic_load(&m->enabled) && !m->fmask && !(v->ctrl & MSIX_VECTOR_MASKED);
}

/* Fold eventfd writes made while the irqfd was detached into the pending
 * bit. Lock held. */
static void msix_drain(struct msix_vector *v)
{
    uint64_t cnt;
    if (v->fd >= 0 && !v->irqfd && read(v->fd, &cnt, sizeof cnt) == sizeof cnt && cnt)
        v->pending = true;
}

/* Bring the KVM route and irqfd of vector i in line with its state. */
static void msix_sync(struct pci_msix *m, unsigned i)
{
    struct msix_vector *v = &m->v[i];
    struct vm *vm = m->dev->bus->vm;
    if (!vm || v->fd < 0)
        return;
    bool want = msix_deliverable(m, v) && msix_msg_valid(v);
    uint64_t addr = v->addr_lo;
    if (want) {
        int r = 0;
        if (!v->route) {
            r = kvm_msi_route_alloc(vm, addr, v->data, &v->gsi);
            if (r == 0)
                v->route = true;
        } else if (v->route_addr != addr || v->route_data != v->data) {
            r = kvm_msi_route_update(vm, v->gsi, addr, v->data);
        }
        if (r < 0) {
            if (!v->route_failed)
                log_err("pci %s: MSI-X vector %u: no KVM MSI route (%s); delivering through the VMM",
                        m->dev->name, i, strerror(-r));
            v->route_failed = true;
            want = false;
        } else {
            v->route_addr = addr;
            v->route_data = v->data;
        }
    }
    if (want && !v->irqfd) {
        int r = kvm_irqfd(vm, v->fd, v->gsi, -1, true);
        if (r == 0)
            v->irqfd = true;
        else if (!v->route_failed) {
            log_err("pci %s: MSI-X vector %u: irqfd: %s", m->dev->name, i, strerror(-r));
            v->route_failed = true;
        }
    } else if (!want && v->irqfd) {
        kvm_irqfd(vm, v->fd, v->gsi, -1, false);
        v->irqfd = false;
    }
}

/* Send vector i's message now. Lock held, vector deliverable. */
static void msix_fire(struct pci_msix *m, unsigned i)
{
    struct msix_vector *v = &m->v[i];
    struct pci_bus *b = m->dev->bus;
    if (!msix_msg_valid(v)) {
        /* Real hardware would write data to that address; there is no
         * memory-mapped target we model, so the message is lost. */
        log_ratelimited(&m->rl, LOG_WARN,
                        "pci %s: MSI-X vector %u has an invalid address 0x%08x%08x; dropped",
                        m->dev->name, i, v->addr_hi, v->addr_lo);
        return;
    }
    if (v->irqfd) {
        uint64_t one = 1;
        if (write(v->fd, &one, sizeof one) == sizeof one)
            return;
    }
    if (b->send_msi)
        b->send_msi(b->irq_ctx, v->addr_lo, v->data);
}

/* A vector may have become deliverable (unmask, enable, function unmask):
 * fire what is pending. Or not: detach. Lock held. */
static void msix_vector_changed(struct pci_msix *m, unsigned i)
{
    struct msix_vector *v = &m->v[i];
    if (msix_deliverable(m, v)) {
        msix_drain(v);
        msix_sync(m, i);
        if (v->pending) {
            v->pending = false;
            msix_fire(m, i);
        }
    } else {
        msix_sync(m, i);
    }
}

int pci_msix_init(struct pci_device *d, unsigned nvec, unsigned bar,
                  uint32_t table_off, uint32_t pba_off)
{
    if (!d || !d->bus || d->msix || nvec == 0 || nvec > MSIX_MAX_VECTORS ||
        bar >= PCI_NUM_BARS)
        return -EINVAL;
    const struct pci_bar *pb = &d->bars[bar];
    if (!pb->size || pb->upper_half || pb->type == PCI_BAR_IO)
        return -EINVAL;
    /* §6.8.2.4/5: the offsets are QWORD aligned (the low 3 bits hold the
     * BIR); both structures lie inside the BAR and must not overlap. */
    uint64_t tsize = (uint64_t)nvec * MSIX_ENTRY_SIZE, psize = (nvec + 63) / 64 * 8;
    if ((table_off & 7) || (pba_off & 7) || table_off + tsize > pb->size ||
        pba_off + psize > pb->size ||
        (table_off < pba_off + psize && pba_off < table_off + tsize))
        return -EINVAL;

    struct pci_msix *m = calloc(1, sizeof *m + nvec * sizeof m->v[0]);
    if (!m)
        return -ENOMEM;
    int r = -pthread_mutex_init(&m->lock, NULL);
    if (r < 0) {
        free(m);
        return r;
    }
    m->dev = d;
    m->nvec = nvec;
    m->bar = bar;
    m->table_off = table_off;
    m->pba_off = pba_off;
    m->rl = (struct log_ratelimit)LOG_RATELIMIT_INIT;
    atomic_init(&m->enabled, false);
    for (unsigned i = 0; i < nvec; i++) {
        m->v[i].ctrl = MSIX_VECTOR_MASKED;      /* masked at reset (§6.8.2.9) */
        m->v[i].fd = -1;
        if (d->bus->vm) {
            m->v[i].fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
            if (m->v[i].fd < 0) {
                r = -errno;
                goto fail;
            }
        }
    }
    int cap = pci_add_capability(d, PCI_CAP_ID_MSIX, MSIX_CAP_LEN);
    if (cap < 0) {
        r = cap;
        goto fail;
    }
    m->cap = (uint8_t)cap;
    pthread_mutex_lock(&d->bus->lock);
    uint16_t ctl = (uint16_t)(nvec - 1);        /* Table Size is N-1, RO */
    d->config[cap + MSIX_CTRL] = (uint8_t)ctl;
    d->config[cap + MSIX_CTRL + 1] = (uint8_t)(ctl >> 8);
    d->wmask[cap + MSIX_CTRL + 1] = (MSIX_CTRL_ENABLE | MSIX_CTRL_FMASK) >> 8;
    uint32_t t = table_off | bar, p = pba_off | bar;
    memcpy(d->config + cap + MSIX_TABLE, &t, 4);
    memcpy(d->config + cap + MSIX_PBA, &p, 4);
    d->msix = m;
    pthread_mutex_unlock(&d->bus->lock);
    return 0;

fail:
    for (unsigned i = 0; i < nvec; i++)
        if (m->v[i].fd >= 0)
            close(m->v[i].fd);
    pthread_mutex_destroy(&m->lock);
    free(m);
    return r;
}

bool pci_msix_config_hit(const struct pci_device *d, uint32_t off, unsigned len)
{
    uint32_t c = d->msix->cap + MSIX_CTRL;
    return off < c + 2 && c < off + len;
}

void pci_msix_config_changed(struct pci_device *d)
{
    struct pci_msix *m = d->msix;
    uint16_t ctl = (uint16_t)(d->config[m->cap + MSIX_CTRL] |
                              d->config[m->cap + MSIX_CTRL + 1] << 8);
    pthread_mutex_lock(&m->lock);
    bool en = ctl & MSIX_CTRL_ENABLE, fm = ctl & MSIX_CTRL_FMASK;
    if (en != atomic_load(&m->enabled) || fm != m->fmask) {
        atomic_store(&m->enabled, en);
        m->fmask = fm;
        for (unsigned i = 0; i < m->nvec; i++)
            msix_vector_changed(m, i);
    }
    pthread_mutex_unlock(&m->lock);
}

bool pci_msix_enabled(const struct pci_device *d)
{
    return d && d->msix && atomic_load(&d->msix->enabled);
}

void pci_msix_notify(struct pci_device *d, unsigned v)
{
    struct pci_msix *m = d ? d->msix : NULL;
    if (!m || v >= m->nvec)
        return;
    pthread_mutex_lock(&m->lock);
    if (atomic_load(&m->enabled)) {
        if (msix_deliverable(m, &m->v[v]))
            msix_fire(m, v);
        else
            m->v[v].pending = true;
    }
    pthread_mutex_unlock(&m->lock);
}

int pci_msix_vector_fd(struct pci_device *d, unsigned v)
{
    struct pci_msix *m = d ? d->msix : NULL;
    if (!m || v >= m->nvec)
        return -1;
    return m->v[v].fd;      /* immutable until pci_msix_free */
}

static uint32_t msix_table_read32(struct pci_msix *m, uint32_t off)
{
    const struct msix_vector *v = &m->v[off / MSIX_ENTRY_SIZE];
    switch (off % MSIX_ENTRY_SIZE) {
    case MSIX_ENTRY_ADDR_LO: return v->addr_lo;
    case MSIX_ENTRY_ADDR_HI: return v->addr_hi;
    case MSIX_ENTRY_DATA:    return v->data;
    default:                 return v->ctrl;
    }
}

static void msix_table_write32(struct pci_msix *m, uint32_t off, uint32_t val)
{
    unsigned i = off / MSIX_ENTRY_SIZE;
    struct msix_vector *v = &m->v[i];
    switch (off % MSIX_ENTRY_SIZE) {
    case MSIX_ENTRY_ADDR_LO:
        v->addr_lo = val & ~3u;             /* DWORD-aligned address (§6.8.2.6) */
        break;
    case MSIX_ENTRY_ADDR_HI:
        v->addr_hi = val;
        break;
    case MSIX_ENTRY_DATA:
        v->data = val;
        break;
    default:
        v->ctrl = val & MSIX_VECTOR_MASKED; /* reserved bits stay 0 */
        break;
    }
    /* A new message for a live route updates it (the spec leaves changes
     * to an unmasked entry undefined; following them is the kind choice);
     * an unmask fires the pending message. */
    msix_vector_changed(m, i);
}

void pci_msix_table_access(struct pci_device *d, uint64_t off, void *data, unsigned len,
                           bool is_write)
{
    struct pci_msix *m = d ? d->msix : NULL;
    /* §6.8.2: software uses aligned DWORD or QWORD accesses; ignore others
     * and anything past the table. */
    bool ok = m && (len == 4 || len == 8) && !(off & (len - 1)) &&
              off < msix_table_size(m) && len <= msix_table_size(m) - off;
    if (!ok) {
        if (!is_write)
            memset(data, 0xFF, len);
        if (m)
            log_ratelimited(&m->rl, LOG_DEBUG, "pci %s: MSI-X table %s at 0x%llx len %u ignored",
                            d->name, is_write ? "write" : "read", (unsigned long long)off, len);
        return;
    }
    pthread_mutex_lock(&m->lock);
    for (unsigned k = 0; k < len; k += 4) {
        uint32_t w;
        if (is_write) {
            memcpy(&w, (const uint8_t *)data + k, 4);
            msix_table_write32(m, (uint32_t)off + k, w);
        } else {
            w = msix_table_read32(m, (uint32_t)off + k);
            memcpy((uint8_t *)data + k, &w, 4);
        }
    }
    pthread_mutex_unlock(&m->lock);
}

void pci_msix_pba_access(struct pci_device *d, uint64_t off, void *data, unsigned len,
                         bool is_write)
{
    struct pci_msix *m = d ? d->msix : NULL;
    bool ok = m && (len == 4 || len == 8) && !(off & (len - 1)) &&
              off < msix_pba_size(m) && len <= msix_pba_size(m) - off;
    if (is_write) {
        /* Pending bits are read-only (§6.8.2.10). */
        if (m)
            log_ratelimited(&m->rl, LOG_DEBUG, "pci %s: MSI-X PBA write at 0x%llx ignored",
                            d->name, (unsigned long long)off);
        return;
    }
    if (!ok) {
        memset(data, 0xFF, len);
        return;
    }
    uint64_t bits = 0;
    pthread_mutex_lock(&m->lock);
    for (unsigned b = 0; b < len * 8; b++) {
        unsigned i = (unsigned)off * 8 + b;
        if (i >= m->nvec)
            break;
        msix_drain(&m->v[i]);
        if (m->v[i].pending)
            bits |= 1ull << b;
    }
    pthread_mutex_unlock(&m->lock);
    memcpy(data, &bits, len);
}

static void msix_bar_read(void *opaque, uint64_t off, void *data, unsigned len)
{
    struct pci_device *d = opaque;
    struct pci_msix *m = d->msix;
    if (m && off >= m->table_off && off - m->table_off < msix_table_size(m))
        pci_msix_table_access(d, off - m->table_off, data, len, false);
    else if (m && off >= m->pba_off && off - m->pba_off < msix_pba_size(m))
        pci_msix_pba_access(d, off - m->pba_off, data, len, false);
    else
        memset(data, 0xFF, len);
}

static void msix_bar_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
    struct pci_device *d = opaque;
    struct pci_msix *m = d->msix;
    if (m && off >= m->table_off && off - m->table_off < msix_table_size(m))
        pci_msix_table_access(d, off - m->table_off, (void *)data, len, true);
}

const struct bus_ops pci_msix_bar_ops = { msix_bar_read, msix_bar_write };

void pci_msix_reset(struct pci_device *d)
{
    struct pci_msix *m = d ? d->msix : NULL;
    if (!m)
        return;
    pthread_mutex_lock(&m->lock);
    atomic_store(&m->enabled, false);
    m->fmask = false;
    d->config[m->cap + MSIX_CTRL + 1] &= (uint8_t)~((MSIX_CTRL_ENABLE | MSIX_CTRL_FMASK) >> 8);
    for (unsigned i = 0; i < m->nvec; i++) {
        struct msix_vector *v = &m->v[i];
        v->addr_lo = v->addr_hi = v->data = 0;
        v->ctrl = MSIX_VECTOR_MASKED;
        msix_sync(m, i);                    /* detach */
        msix_drain(v);
        v->pending = false;
        v->route_failed = false;
        if (v->route) {
            kvm_msi_route_free(d->bus->vm, v->gsi);
            v->route = false;
        }
    }
    pthread_mutex_unlock(&m->lock);
}

void pci_msix_free(struct pci_device *d)
{
    struct pci_msix *m = d ? d->msix : NULL;
    if (!m)
        return;
    pci_msix_reset(d);
    for (unsigned i = 0; i < m->nvec; i++)
        if (m->v[i].fd >= 0)
            close(m->v[i].fd);
    pthread_mutex_destroy(&m->lock);
    d->msix = NULL;
    free(m);
}
