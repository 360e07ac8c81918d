/* See virtio_pci.h. Register layouts: virtio 1.2 §4.1.4 (modern
 * capabilities and struct virtio_pci_common_cfg), §4.1.4.8 (legacy
 * interface). */
#include "hw/virtio/virtio_pci.h"
#include "core/iothread.h"
#include "core/kvm_irq.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/vm.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define VIRTIO_PCI_VENDOR        0x1af4
#define VIRTIO_MSI_NO_VECTOR     0xffff

/* virtio_pci_cap.cfg_type */
#define VIRTIO_PCI_CAP_COMMON_CFG 1
#define VIRTIO_PCI_CAP_NOTIFY_CFG 2
#define VIRTIO_PCI_CAP_ISR_CFG    3
#define VIRTIO_PCI_CAP_DEVICE_CFG 4

/* struct virtio_pci_common_cfg offsets. */
#define CC_DFSELECT      0x00
#define CC_DF            0x04
#define CC_GFSELECT      0x08
#define CC_GF            0x0c
#define CC_MSIX          0x10
#define CC_NUMQ          0x12
#define CC_STATUS        0x14
#define CC_CFGGENERATION 0x15
#define CC_Q_SELECT      0x16
#define CC_Q_SIZE        0x18
#define CC_Q_MSIX        0x1a
#define CC_Q_ENABLE      0x1c
#define CC_Q_NOFF        0x1e
#define CC_Q_DESCLO      0x20
#define CC_Q_DESCHI      0x24
#define CC_Q_AVAILLO     0x28
#define CC_Q_AVAILHI     0x2c
#define CC_Q_USEDLO      0x30
#define CC_Q_USEDHI      0x34
#define CC_SIZE          0x38

/* Legacy I/O BAR registers. */
#define L_HOST_FEATURES  0x00
#define L_GUEST_FEATURES 0x04
#define L_QUEUE_PFN      0x08
#define L_QUEUE_NUM      0x0c
#define L_QUEUE_SEL      0x0e
#define L_QUEUE_NOTIFY   0x10
#define L_STATUS         0x12
#define L_ISR            0x13
#define L_CONFIG_VECTOR  0x14
#define L_QUEUE_VECTOR   0x16
#define L_LEGACY_ALIGN   4096

struct virtio_pci {
    struct pci_device pci;
    struct virtio_dev vdev;
    struct vm *vm;
    struct loop *io_loop;
    unsigned nvectors;
    int notify_fd[VIRTIO_MAX_QUEUES];       /* eventfd per queue, watched on io_loop */
    /* Where KVM ioeventfds are attached (0: none), per queue. */
    uint64_t modern_efd_addr[VIRTIO_MAX_QUEUES];
    uint64_t legacy_efd_port[VIRTIO_MAX_QUEUES];
    bool legacy_used;                       /* the driver talks through BAR 0 */
    /* The ISR bits and the INTx level change together: an I/O thread
     * raising while a vCPU reads-and-clears must not leave the line high
     * with ISR 0 (a spurious interrupt). Leaf lock (pci intx_lock below). */
    pthread_mutex_t isr_lock;
};

struct virtio_pci_class {
    uint32_t device_id;
    uint32_t class_code;
};

/* PCI class codes QEMU gives the same devices. */
static const struct virtio_pci_class virtio_pci_classes[] = {
    { 1, 0x020000 },    /* network */
    { 2, 0x010000 },    /* block: mass storage (SCSI) */
    { 3, 0x078000 },    /* console: simple communication, other */
    { 4, 0x00ff00 },    /* entropy */
    { 5, 0x00ff00 },    /* balloon */
};

static uint32_t virtio_pci_class_of(uint32_t device_id)
{
    for (size_t i = 0; i < sizeof virtio_pci_classes / sizeof virtio_pci_classes[0]; i++)
        if (virtio_pci_classes[i].device_id == device_id)
            return virtio_pci_classes[i].class_code;
    return 0x00ff00;
}

/* Transitional PCI device IDs (§4.1.2.3): legacy IDs 0x1000.. for devices
 * that had one, in the order net, block, balloon, console, SCSI, entropy. */
static uint16_t virtio_pci_transitional_id(uint32_t device_id)
{
    switch (device_id) {
    case 1: return 0x1000;
    case 2: return 0x1001;
    case 5: return 0x1002;
    case 3: return 0x1003;
    case 8: return 0x1004;
    case 4: return 0x1005;
    case 9: return 0x1009;
    default: return (uint16_t)(0x1040 + device_id);
    }
}

static uint64_t rd_le(const void *data, unsigned len)
{
    uint64_t v = 0;
    memcpy(&v, data, len > 8 ? 8 : len);
    return v;
}

static void wr_le(void *data, unsigned len, uint64_t v)
{
    memcpy(data, &v, len > 8 ? 8 : len);
}

/* ---- interrupts ---- */

static void virtio_pci_raise_intx(struct virtio_pci *vp, uint8_t isr_bit)
{
    pthread_mutex_lock(&vp->isr_lock);
    vp->vdev.s.isr |= isr_bit;
    pci_set_irq(&vp->pci, 1);
    pthread_mutex_unlock(&vp->isr_lock);
}

static void virtio_pci_notify_queue(struct virtio_dev *vd, unsigned q)
{
    struct virtio_pci *vp = vd->transport_opaque;
    if (pci_msix_enabled(&vp->pci)) {
        uint16_t vec = vd->vqs[q].s.msix_vector;
        if (vec != VIRTIO_MSI_NO_VECTOR)
            pci_msix_notify(&vp->pci, vec);
        return;
    }
    virtio_pci_raise_intx(vp, 1);
}

static void virtio_pci_notify_config(struct virtio_dev *vd)
{
    struct virtio_pci *vp = vd->transport_opaque;
    if (pci_msix_enabled(&vp->pci)) {
        if (vd->s.config_msix_vector != VIRTIO_MSI_NO_VECTOR)
            pci_msix_notify(&vp->pci, vd->s.config_msix_vector);
        return;
    }
    virtio_pci_raise_intx(vp, 2);
}

static const struct virtio_transport_ops virtio_pci_transport_ops = {
    .notify_queue = virtio_pci_notify_queue,
    .notify_config = virtio_pci_notify_config,
};

/* The ISR register: reading returns and clears it and drops INTx (§4.1.4.5). */
static uint8_t virtio_pci_read_isr(struct virtio_pci *vp)
{
    pthread_mutex_lock(&vp->isr_lock);
    uint8_t isr = vp->vdev.s.isr;
    vp->vdev.s.isr = 0;
    pci_set_irq(&vp->pci, 0);
    pthread_mutex_unlock(&vp->isr_lock);
    return isr;
}

/* ---- queue notifications ---- */

/* I/O thread: the driver kicked queue q. */
static void virtio_pci_on_notify(void *opaque, int fd, uint32_t events)
{
    struct virtio_pci *vp = opaque;
    uint64_t n;
    if (read(fd, &n, sizeof n) != sizeof n)
        return;
    unsigned q;
    for (q = 0; q < vp->vdev.num_queues; q++)
        if (vp->notify_fd[q] == fd)
            break;
    struct virtio_dev *vd = &vp->vdev;
    uint8_t status = __atomic_load_n(&vd->s.status, __ATOMIC_ACQUIRE);
    if (q == vd->num_queues || !(status & VIRTIO_STATUS_DRIVER_OK) ||
        (status & VIRTIO_STATUS_NEEDS_RESET) || !vd->vqs[q].s.ready)
        return;
    vd->ops->queue_notify(vd, q);
}

/* vCPU thread, when KVM did not catch the write with an ioeventfd (not
 * attached yet, or the BAR moved): hand the kick to the I/O thread. */
static void virtio_pci_kick(struct virtio_pci *vp, uint64_t q)
{
    if (q >= vp->vdev.num_queues)
        return;
    uint64_t one = 1;
    ssize_t r = write(vp->notify_fd[q], &one, sizeof one);
    (void)r;
}

/* Attach (or move) KVM ioeventfds for queue q at the BARs' current places. */
static void virtio_pci_update_ioeventfds(struct virtio_pci *vp, unsigned q)
{
    if (!vp->vm)
        return;
    const struct pci_bar *mb = &vp->pci.bars[VIRTIO_PCI_MODERN_BAR];
    const struct pci_bar *lb = &vp->pci.bars[VIRTIO_PCI_LEGACY_BAR];
    uint64_t maddr = mb->mapped ? mb->mapped_at + VIRTIO_PCI_NOTIFY_OFF + q * VIRTIO_PCI_NOTIFY_MULT : 0;
    uint64_t lport = lb->mapped ? lb->mapped_at + L_QUEUE_NOTIFY : 0;
    bool ready = vp->vdev.vqs[q].s.ready;
    if (!ready)
        maddr = lport = 0;
    if (vp->modern_efd_addr[q] != maddr) {
        if (vp->modern_efd_addr[q])
            kvm_ioeventfd(vp->vm, vp->modern_efd_addr[q], 0, false, false, 0,
                          vp->notify_fd[q], false);
        vp->modern_efd_addr[q] = 0;
        /* len 0: any write width to the address (the driver writes 16 bits). */
        if (maddr && kvm_ioeventfd(vp->vm, maddr, 0, false, false, 0, vp->notify_fd[q], true) == 0)
            vp->modern_efd_addr[q] = maddr;
    }
    if (vp->legacy_efd_port[q] != lport) {
        if (vp->legacy_efd_port[q])
            kvm_ioeventfd(vp->vm, vp->legacy_efd_port[q], 2, true, true, q,
                          vp->notify_fd[q], false);
        vp->legacy_efd_port[q] = 0;
        if (lport && kvm_ioeventfd(vp->vm, lport, 2, true, true, q, vp->notify_fd[q], true) == 0)
            vp->legacy_efd_port[q] = lport;
    }
}

static void virtio_pci_update_all_ioeventfds(struct virtio_pci *vp)
{
    for (unsigned q = 0; q < vp->vdev.num_queues; q++)
        virtio_pci_update_ioeventfds(vp, q);
}

/* ---- common configuration (modern) ---- */

static struct virtq *virtio_pci_selected_queue(struct virtio_pci *vp)
{
    uint16_t sel = vp->vdev.s.queue_select;
    return sel < vp->vdev.num_queues ? &vp->vdev.vqs[sel] : NULL;
}

static uint64_t virtio_pci_common_read(struct virtio_pci *vp, uint64_t off)
{
    struct virtio_dev *vd = &vp->vdev;
    struct virtq *vq = virtio_pci_selected_queue(vp);
    switch (off) {
    case CC_DFSELECT: return vd->s.device_feature_select;
    case CC_DF:
        return vd->s.device_feature_select < 2
                   ? (uint32_t)(vd->device_features >> (32 * vd->s.device_feature_select)) : 0;
    case CC_GFSELECT: return vd->s.driver_feature_select;
    case CC_GF:
        return vd->s.driver_feature_select < 2
                   ? (uint32_t)(vd->s.driver_features >> (32 * vd->s.driver_feature_select)) : 0;
    case CC_MSIX: return vd->s.config_msix_vector;
    case CC_NUMQ: return vd->num_queues;
    case CC_STATUS: return vd->s.status;
    case CC_CFGGENERATION: return (uint8_t)vd->s.config_generation;
    case CC_Q_SELECT: return vd->s.queue_select;
    case CC_Q_SIZE: return vq ? vq->s.size : 0;
    case CC_Q_MSIX: return vq ? vq->s.msix_vector : VIRTIO_MSI_NO_VECTOR;
    case CC_Q_ENABLE: return vq ? vq->s.ready : 0;
    case CC_Q_NOFF: return vd->s.queue_select;
    case CC_Q_DESCLO: return vq ? (uint32_t)vq->s.desc_gpa : 0;
    case CC_Q_DESCHI: return vq ? (uint32_t)(vq->s.desc_gpa >> 32) : 0;
    case CC_Q_AVAILLO: return vq ? (uint32_t)vq->s.avail_gpa : 0;
    case CC_Q_AVAILHI: return vq ? (uint32_t)(vq->s.avail_gpa >> 32) : 0;
    case CC_Q_USEDLO: return vq ? (uint32_t)vq->s.used_gpa : 0;
    case CC_Q_USEDHI: return vq ? (uint32_t)(vq->s.used_gpa >> 32) : 0;
    default: return 0;
    }
}

static void set_lo(uint64_t *v, uint64_t lo) { *v = (*v & ~0xffffffffULL) | (uint32_t)lo; }
static void set_hi(uint64_t *v, uint64_t hi) { *v = (*v & 0xffffffffULL) | (hi << 32); }

static uint16_t virtio_pci_checked_vector(struct virtio_pci *vp, uint64_t v)
{
    /* A vector the table does not have reads back as NO_VECTOR, which is
     * how the driver learns the assignment failed (§4.1.5.1.2). */
    return v < vp->nvectors ? (uint16_t)v : VIRTIO_MSI_NO_VECTOR;
}

/* On the I/O thread (loop_call_sync): the device's queue work and the
 * reset cannot interleave. */
static void virtio_pci_reset_on_io(void *arg)
{
    struct virtio_pci *vp = arg;
    virtio_reset(&vp->vdev);
}

static void virtio_pci_transport_reset(struct virtio_pci *vp)
{
    struct virtio_dev *vd = &vp->vdev;
    loop_call_sync(vp->io_loop, virtio_pci_reset_on_io, vp);
    vd->s.config_msix_vector = VIRTIO_MSI_NO_VECTOR;
    for (unsigned q = 0; q < vd->num_queues; q++)
        vd->vqs[q].s.msix_vector = VIRTIO_MSI_NO_VECTOR;
    virtio_pci_read_isr(vp);        /* clears ISR and drops INTx */
    virtio_pci_update_all_ioeventfds(vp);
}

static void virtio_pci_write_status(struct virtio_pci *vp, uint8_t status)
{
    if (status == 0) {
        virtio_pci_transport_reset(vp);
        return;
    }
    virtio_set_status(&vp->vdev, status);
}

static void virtio_pci_common_write(struct virtio_pci *vp, uint64_t off, uint64_t val)
{
    struct virtio_dev *vd = &vp->vdev;
    struct virtq *vq = virtio_pci_selected_queue(vp);
    switch (off) {
    case CC_DFSELECT: vd->s.device_feature_select = (uint32_t)val; break;
    case CC_GFSELECT: vd->s.driver_feature_select = (uint32_t)val; break;
    case CC_GF:
        if (vd->s.driver_feature_select <= 1)
            virtio_set_driver_features(vd, vd->s.driver_feature_select, (uint32_t)val);
        break;
    case CC_MSIX: vd->s.config_msix_vector = virtio_pci_checked_vector(vp, val); break;
    case CC_STATUS: virtio_pci_write_status(vp, (uint8_t)val); break;
    case CC_Q_SELECT: vd->s.queue_select = (uint16_t)val; break;
    case CC_Q_SIZE:
        /* Only before the queue is enabled; a power of two up to the max
         * (§4.1.4.3.2); anything else is ignored and the old size stays. */
        if (vq && !vq->s.ready && val && val <= vd->ops->queue_max_size && !(val & (val - 1)))
            vq->s.size = (uint16_t)val;
        break;
    case CC_Q_MSIX:
        if (vq)
            vq->s.msix_vector = virtio_pci_checked_vector(vp, val);
        break;
    case CC_Q_ENABLE:
        if (!vq || val != 1 || vq->s.ready)
            break;      /* writing 0 is not allowed (§4.1.4.3.2): ignore */
        if (virtq_check_config(vq) < 0) {
            virtio_dev_set_needs_reset(vd, "queue enabled with rings outside RAM or misaligned");
            break;
        }
        vq->s.ready = true;
        virtio_pci_update_ioeventfds(vp, vd->s.queue_select);
        break;
    case CC_Q_DESCLO: if (vq && !vq->s.ready) set_lo(&vq->s.desc_gpa, val); break;
    case CC_Q_DESCHI: if (vq && !vq->s.ready) set_hi(&vq->s.desc_gpa, val); break;
    case CC_Q_AVAILLO: if (vq && !vq->s.ready) set_lo(&vq->s.avail_gpa, val); break;
    case CC_Q_AVAILHI: if (vq && !vq->s.ready) set_hi(&vq->s.avail_gpa, val); break;
    case CC_Q_USEDLO: if (vq && !vq->s.ready) set_lo(&vq->s.used_gpa, val); break;
    case CC_Q_USEDHI: if (vq && !vq->s.ready) set_hi(&vq->s.used_gpa, val); break;
    default: break;     /* read-only fields */
    }
}

/* ---- the modern BAR ---- */

static void virtio_pci_modern_read(void *opaque, uint64_t off, void *data, unsigned len)
{
    struct virtio_pci *vp = opaque;
    struct virtio_dev *vd = &vp->vdev;
    memset(data, 0, len);
    pthread_mutex_lock(&vd->lock);
    if (off < CC_SIZE) {
        wr_le(data, len, virtio_pci_common_read(vp, off));
    } else if (off == VIRTIO_PCI_ISR_OFF) {
        wr_le(data, len, virtio_pci_read_isr(vp));
    } else if (off >= VIRTIO_PCI_DEVICE_OFF && off < VIRTIO_PCI_DEVICE_OFF + 0x1000) {
        uint64_t doff = off - VIRTIO_PCI_DEVICE_OFF;
        if (doff + len <= vd->ops->config_size && vd->ops->config_read)
            vd->ops->config_read(vd, (uint32_t)doff, data, len);
    }
    pthread_mutex_unlock(&vd->lock);
}

static void virtio_pci_modern_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
    struct virtio_pci *vp = opaque;
    struct virtio_dev *vd = &vp->vdev;
    uint64_t val = rd_le(data, len);
    if (off >= VIRTIO_PCI_NOTIFY_OFF && off < VIRTIO_PCI_NOTIFY_OFF + 0x1000) {
        /* Not under the lock: a kick only signals the I/O thread. */
        virtio_pci_kick(vp, (off - VIRTIO_PCI_NOTIFY_OFF) / VIRTIO_PCI_NOTIFY_MULT);
        return;
    }
    pthread_mutex_lock(&vd->lock);
    if (off < CC_SIZE) {
        virtio_pci_common_write(vp, off, val);
    } else if (off >= VIRTIO_PCI_DEVICE_OFF && off < VIRTIO_PCI_DEVICE_OFF + 0x1000) {
        uint64_t doff = off - VIRTIO_PCI_DEVICE_OFF;
        if (doff + len <= vd->ops->config_size && vd->ops->config_write)
            vd->ops->config_write(vd, (uint32_t)doff, data, len);
    }
    pthread_mutex_unlock(&vd->lock);
}

static const struct bus_ops virtio_pci_modern_ops = {
    virtio_pci_modern_read, virtio_pci_modern_write,
};

/* ---- the legacy I/O BAR ---- */

static uint64_t virtio_pci_legacy_config_off(struct virtio_pci *vp)
{
    return pci_msix_enabled(&vp->pci) ? 0x18 : 0x14;
}

static void virtio_pci_legacy_read(void *opaque, uint64_t off, void *data, unsigned len)
{
    struct virtio_pci *vp = opaque;
    struct virtio_dev *vd = &vp->vdev;
    memset(data, 0, len);
    pthread_mutex_lock(&vd->lock);
    struct virtq *vq = virtio_pci_selected_queue(vp);
    uint64_t cfg = virtio_pci_legacy_config_off(vp);
    uint64_t v = 0;
    if (off >= cfg) {
        if (off - cfg + len <= vd->ops->config_size && vd->ops->config_read)
            vd->ops->config_read(vd, (uint32_t)(off - cfg), data, len);
        pthread_mutex_unlock(&vd->lock);
        return;
    }
    switch (off) {
    case L_HOST_FEATURES: v = (uint32_t)vd->device_features; break;
    case L_GUEST_FEATURES: v = (uint32_t)vd->s.driver_features; break;
    case L_QUEUE_PFN: v = vq ? vq->s.desc_gpa / L_LEGACY_ALIGN : 0; break;
    case L_QUEUE_NUM: v = vq ? vd->ops->queue_max_size : 0; break;
    case L_QUEUE_SEL: v = vd->s.queue_select; break;
    case L_STATUS: v = vd->s.status; break;
    case L_ISR: v = virtio_pci_read_isr(vp); break;
    case L_CONFIG_VECTOR: v = vd->s.config_msix_vector; break;
    case L_QUEUE_VECTOR: v = vq ? vq->s.msix_vector : VIRTIO_MSI_NO_VECTOR; break;
    default: break;
    }
    wr_le(data, len, v);
    pthread_mutex_unlock(&vd->lock);
}

/* Legacy queues are given by a page frame number; the rings follow the
 * descriptor table with the legacy 4096-byte alignment (§2.7.2 legacy). */
static void virtio_pci_legacy_set_pfn(struct virtio_pci *vp, struct virtq *vq, uint64_t pfn)
{
    if (pfn == 0) {
        virtq_reset(vq);
        return;
    }
    uint64_t size = vp->vdev.ops->queue_max_size;
    vq->s.size = (uint16_t)size;
    vq->s.desc_gpa = pfn * L_LEGACY_ALIGN;
    vq->s.avail_gpa = vq->s.desc_gpa + 16 * size;
    vq->s.used_gpa = (vq->s.avail_gpa + 6 + 2 * size + L_LEGACY_ALIGN - 1) & ~(uint64_t)(L_LEGACY_ALIGN - 1);
    if (virtq_check_config(vq) < 0) {
        virtio_dev_set_needs_reset(&vp->vdev, "legacy queue PFN outside RAM");
        return;
    }
    vq->s.ready = true;
    virtio_pci_update_ioeventfds(vp, vp->vdev.s.queue_select);
}

static void virtio_pci_legacy_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
    struct virtio_pci *vp = opaque;
    struct virtio_dev *vd = &vp->vdev;
    uint64_t val = rd_le(data, len);
    if (off == L_QUEUE_NOTIFY) {
        virtio_pci_kick(vp, val);
        return;
    }
    pthread_mutex_lock(&vd->lock);
    vp->legacy_used = true;
    vd->s.legacy = true;
    struct virtq *vq = virtio_pci_selected_queue(vp);
    uint64_t cfg = virtio_pci_legacy_config_off(vp);
    if (off >= cfg) {
        if (off - cfg + len <= vd->ops->config_size && vd->ops->config_write)
            vd->ops->config_write(vd, (uint32_t)(off - cfg), data, len);
        pthread_mutex_unlock(&vd->lock);
        return;
    }
    switch (off) {
    case L_GUEST_FEATURES:
        /* Only the low 32 bits exist here; VERSION_1 cannot be accepted. */
        virtio_set_driver_features(vd, 0, (uint32_t)val);
        break;
    case L_QUEUE_PFN:
        if (vq)
            virtio_pci_legacy_set_pfn(vp, vq, (uint32_t)val);
        break;
    case L_QUEUE_SEL: vd->s.queue_select = (uint16_t)val; break;
    case L_STATUS: virtio_pci_write_status(vp, (uint8_t)val); break;
    case L_CONFIG_VECTOR: vd->s.config_msix_vector = virtio_pci_checked_vector(vp, val); break;
    case L_QUEUE_VECTOR:
        if (vq)
            vq->s.msix_vector = virtio_pci_checked_vector(vp, val);
        break;
    default: break;
    }
    pthread_mutex_unlock(&vd->lock);
}

static const struct bus_ops virtio_pci_legacy_ops = {
    virtio_pci_legacy_read, virtio_pci_legacy_write,
};

/* ---- MSI-X BAR ---- */

#define MSIX_TABLE_OFF 0x000
#define MSIX_PBA_OFF   0x800
#define MSIX_BAR_SIZE  0x1000

static void virtio_pci_msix_read(void *opaque, uint64_t off, void *data, unsigned len)
{
    struct virtio_pci *vp = opaque;
    if (off >= MSIX_PBA_OFF)
        pci_msix_pba_access(&vp->pci, off - MSIX_PBA_OFF, data, len, false);
    else
        pci_msix_table_access(&vp->pci, off - MSIX_TABLE_OFF, data, len, false);
}

static void virtio_pci_msix_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
    struct virtio_pci *vp = opaque;
    if (off >= MSIX_PBA_OFF)
        pci_msix_pba_access(&vp->pci, off - MSIX_PBA_OFF, (void *)data, len, true);
    else
        pci_msix_table_access(&vp->pci, off - MSIX_TABLE_OFF, (void *)data, len, true);
}

static const struct bus_ops virtio_pci_msix_ops = {
    virtio_pci_msix_read, virtio_pci_msix_write,
};

/* ---- PCI glue ---- */

/* A config write may have moved a BAR or switched decoding: keep the KVM
 * ioeventfds where the registers now are. */
static void virtio_pci_config_write(struct pci_device *d, uint32_t off, uint32_t val, unsigned len)
{
    struct virtio_pci *vp = d->opaque;
    if (off < PCI_BASE_ADDRESS_0 + 4 * PCI_NUM_BARS && off + len > PCI_COMMAND)
        virtio_pci_update_all_ioeventfds(vp);
}

static void virtio_pci_pci_reset(struct pci_device *d)
{
    virtio_pci_reset(d->opaque);
}

static const struct pci_device_ops virtio_pci_device_ops = {
    .config_write = virtio_pci_config_write,
    .reset = virtio_pci_pci_reset,
};

/* Add one virtio_pci_cap (§4.1.4) pointing into the modern BAR. */
static int virtio_pci_add_cap(struct virtio_pci *vp, uint8_t type, uint32_t off, uint32_t len,
                              bool notify)
{
    int at = pci_add_capability(&vp->pci, PCI_CAP_ID_VNDR, notify ? 20 : 16);
    if (at < 0)
        return at;
    uint8_t *c = vp->pci.config + at;
    c[2] = notify ? 20 : 16;            /* cap_len */
    c[3] = type;                        /* cfg_type */
    c[4] = VIRTIO_PCI_MODERN_BAR;       /* bar */
    c[5] = 0;                           /* id */
    memcpy(c + 8, &off, 4);
    memcpy(c + 12, &len, 4);
    if (notify) {
        uint32_t mult = VIRTIO_PCI_NOTIFY_MULT;
        memcpy(c + 16, &mult, 4);
    }
    return 0;
}

struct virtio_pci *virtio_pci_new(struct vm *vm, struct guest_mem *mem, struct pci_bus *bus,
                                  int devfn,
                                  const char *name, const struct virtio_device_ops *ops,
                                  void *opaque, struct iothread *io,
                                  char *err, unsigned errlen)
{
    struct virtio_pci *vp = calloc(1, sizeof *vp);
    if (!vp) {
        snprintf(err, errlen, "%s: out of memory", name);
        return NULL;
    }
    vp->vm = vm;
    vp->io_loop = iothread_loop(io);
    pthread_mutex_init(&vp->isr_lock, NULL);
    for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
        vp->notify_fd[q] = -1;
    if (ops->num_queues == 0 || ops->num_queues > VIRTIO_MAX_QUEUES ||
        virtio_dev_init(&vp->vdev, ops, opaque, mem) < 0) {
        snprintf(err, errlen, "%s: cannot initialise the virtio device", name);
        free(vp);
        return NULL;
    }
    vp->vdev.transport = &virtio_pci_transport_ops;
    vp->vdev.transport_opaque = vp;
    vp->nvectors = ops->num_queues + 1;
    for (unsigned q = 0; q < vp->vdev.num_queues; q++) {
        vp->notify_fd[q] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (vp->notify_fd[q] < 0 ||
            loop_add_fd(vp->io_loop, vp->notify_fd[q], EPOLLIN, virtio_pci_on_notify, vp) < 0) {
            snprintf(err, errlen, "%s: cannot create queue notifiers: %s", name, strerror(errno));
            goto fail;
        }
    }
    vp->pci.ops = &virtio_pci_device_ops;
    vp->pci.opaque = vp;
    vp->pci.name = name;
    int r = pci_device_register(bus, &vp->pci, devfn, VIRTIO_PCI_VENDOR,
                                virtio_pci_transitional_id(ops->device_id),
                                virtio_pci_class_of(ops->device_id), 0 /* transitional */,
                                VIRTIO_PCI_VENDOR, (uint16_t)ops->device_id);
    if (r < 0) {
        snprintf(err, errlen, "%s: %s", name, r == -EEXIST ? "PCI slot already in use"
                                                          : "cannot add the PCI device");
        goto fail;
    }
    /* The legacy BAR holds the registers and the device config. */
    uint64_t legacy_size = 32;
    while (legacy_size < 0x18 + ops->config_size)
        legacy_size *= 2;
    if (pci_register_bar(&vp->pci, VIRTIO_PCI_LEGACY_BAR, PCI_BAR_IO, legacy_size, false,
                         &virtio_pci_legacy_ops, vp) < 0 ||
        pci_register_bar(&vp->pci, VIRTIO_PCI_MSIX_BAR, PCI_BAR_MEM32, MSIX_BAR_SIZE, false,
                         &virtio_pci_msix_ops, vp) < 0 ||
        pci_register_bar(&vp->pci, VIRTIO_PCI_MODERN_BAR, PCI_BAR_MEM64, VIRTIO_PCI_MODERN_SIZE,
                         true, &virtio_pci_modern_ops, vp) < 0 ||
        pci_msix_init(&vp->pci, vp->nvectors, VIRTIO_PCI_MSIX_BAR, MSIX_TABLE_OFF,
                      MSIX_PBA_OFF) < 0 ||
        virtio_pci_add_cap(vp, VIRTIO_PCI_CAP_COMMON_CFG, VIRTIO_PCI_COMMON_OFF, 0x1000, false) < 0 ||
        virtio_pci_add_cap(vp, VIRTIO_PCI_CAP_ISR_CFG, VIRTIO_PCI_ISR_OFF, 0x1000, false) < 0 ||
        virtio_pci_add_cap(vp, VIRTIO_PCI_CAP_DEVICE_CFG, VIRTIO_PCI_DEVICE_OFF, 0x1000, false) < 0 ||
        virtio_pci_add_cap(vp, VIRTIO_PCI_CAP_NOTIFY_CFG, VIRTIO_PCI_NOTIFY_OFF, 0x1000, true) < 0) {
        snprintf(err, errlen, "%s: cannot set up the PCI BARs and capabilities", name);
        pci_device_unregister(&vp->pci);
        goto fail;
    }
    vp->pci.config[PCI_INTERRUPT_PIN] = 1;     /* INTA# */
    virtio_pci_transport_reset(vp);
    return vp;
fail:
    for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++) {
        if (vp->notify_fd[q] >= 0) {
            loop_del_fd(vp->io_loop, vp->notify_fd[q]);
            close(vp->notify_fd[q]);
        }
    }
    virtio_dev_destroy(&vp->vdev);
    free(vp);
    return NULL;
}

void virtio_pci_reset(struct virtio_pci *vp)
{
    pthread_mutex_lock(&vp->vdev.lock);
    virtio_pci_transport_reset(vp);
    vp->legacy_used = false;
    vp->vdev.s.legacy = false;
    pthread_mutex_unlock(&vp->vdev.lock);
    pci_msix_reset(&vp->pci);
}

/* At teardown the I/O thread is already stopped (and its loop gone):
 * nothing here may touch the loop or run the device's reset. */
void virtio_pci_free(struct virtio_pci *vp)
{
    if (!vp)
        return;
    for (unsigned q = 0; q < vp->vdev.num_queues; q++) {
        vp->vdev.vqs[q].s.ready = false;
        virtio_pci_update_ioeventfds(vp, q);    /* detaches them */
    }
    pci_msix_free(&vp->pci);
    pci_device_unregister(&vp->pci);
    for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
        if (vp->notify_fd[q] >= 0)
            close(vp->notify_fd[q]);    /* the I/O thread is stopped by now */
    virtio_dev_destroy(&vp->vdev);
    pthread_mutex_destroy(&vp->isr_lock);
    free(vp);
}

struct virtio_dev *virtio_pci_dev(struct virtio_pci *vp) { return &vp->vdev; }
struct pci_device *virtio_pci_pci(struct virtio_pci *vp) { return &vp->pci; }
