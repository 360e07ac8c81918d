/* See kvm_irq.h. */
#include "core/kvm_irq.h"
#include "core/log.h"
#include "core/vm.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

/* The table KVM gets: the fixed entries then one entry per MSI route. */
struct kvm_irq_routing_state {
    pthread_mutex_t lock;
    unsigned nr_fixed;
    unsigned nr, cap;               /* entries in use / allocated */
    struct kvm_irq_routing_entry *entries;
    uint32_t next_gsi;
    uint32_t max_gsi;               /* KVM_CAP_IRQ_ROUTING: table size */
};

static int routing_push(struct vm *vm, struct kvm_irq_routing_state *s)
{
    struct kvm_irq_routing *r = malloc(sizeof *r + s->nr * sizeof r->entries[0]);
    if (!r)
        return -ENOMEM;
    r->nr = s->nr;
    r->flags = 0;
    memcpy(r->entries, s->entries, s->nr * sizeof r->entries[0]);
    int ret = ioctl(vm->vm_fd, KVM_SET_GSI_ROUTING, r) < 0 ? -errno : 0;
    free(r);
    return ret;
}

static int routing_add(struct kvm_irq_routing_state *s, struct kvm_irq_routing_entry e)
{
    if (s->nr == s->cap) {
        unsigned cap = s->cap ? s->cap * 2 : 64;
        struct kvm_irq_routing_entry *n = realloc(s->entries, cap * sizeof *n);
        if (!n)
            return -ENOMEM;
        s->entries = n;
        s->cap = cap;
    }
    s->entries[s->nr++] = e;
    return 0;
}

/* GSI routing as QEMU's pc machine has it: GSIs 0-15 reach both the PIC and
 * the IOAPIC, except that ISA IRQ0 (the PIT) is IOAPIC pin 2 — matching the
 * MADT/MP-table override IRQ0 -> GSI 2 — and GSI 2 (the PIC cascade) is not
 * routed to the PIC. GSIs 16-23 are IOAPIC-only (PCI INTx). */
int kvm_irq_routing_init(struct vm *vm)
{
    struct kvm_irq_routing_state *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    pthread_mutex_init(&s->lock, NULL);
    int ret = 0;
    for (unsigned i = 0; i < 16 && ret == 0; i++) {
        if (i == 2)
            continue;
        ret = routing_add(s, (struct kvm_irq_routing_entry){
            .gsi = i, .type = KVM_IRQ_ROUTING_IRQCHIP,
            .u.irqchip = { .irqchip = i < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE,
                           .pin = i % 8 } });
    }
    for (unsigned i = 0; i < 24 && ret == 0; i++) {
        if (i == 2)
            continue;
        ret = routing_add(s, (struct kvm_irq_routing_entry){
            .gsi = i, .type = KVM_IRQ_ROUTING_IRQCHIP,
            .u.irqchip = { .irqchip = KVM_IRQCHIP_IOAPIC, .pin = i == 0 ? 2 : i } });
    }
    s->nr_fixed = s->nr;
    s->next_gsi = KVM_IRQ_FIRST_MSI_GSI;
    int max = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_IRQ_ROUTING);
    s->max_gsi = max > 0 ? (uint32_t)max : 1024;
    if (ret == 0)
        ret = routing_push(vm, s);
    if (ret < 0) {
        free(s->entries);
        pthread_mutex_destroy(&s->lock);
        free(s);
        return ret;
    }
    vm->routing = s;
    return 0;
}

void kvm_irq_routing_destroy(struct vm *vm)
{
    struct kvm_irq_routing_state *s = vm->routing;
    if (!s)
        return;
    free(s->entries);
    pthread_mutex_destroy(&s->lock);
    free(s);
    vm->routing = NULL;
}

static struct kvm_irq_routing_entry msi_entry(uint32_t gsi, uint64_t addr, uint32_t data)
{
    return (struct kvm_irq_routing_entry){
        .gsi = gsi, .type = KVM_IRQ_ROUTING_MSI,
        .u.msi = { .address_lo = (uint32_t)addr, .address_hi = (uint32_t)(addr >> 32),
                   .data = data } };
}

int kvm_msi_route_alloc(struct vm *vm, uint64_t addr, uint32_t data, uint32_t *gsi)
{
    struct kvm_irq_routing_state *s = vm->routing;
    pthread_mutex_lock(&s->lock);
    int ret;
    /* Reuse the lowest GSI freed earlier, else take the next new one. */
    uint32_t g = KVM_IRQ_FIRST_MSI_GSI;
    for (;; g++) {
        bool used = false;
        for (unsigned i = s->nr_fixed; i < s->nr && !used; i++)
            used = s->entries[i].gsi == g;
        if (!used)
            break;
    }
    if (g >= s->max_gsi) {
        ret = -ENOSPC;
        goto out;
    }
    ret = routing_add(s, msi_entry(g, addr, data));
    if (ret == 0) {
        ret = routing_push(vm, s);
        if (ret < 0)
            s->nr--;
        else
            *gsi = g;
    }
out:
    pthread_mutex_unlock(&s->lock);
    return ret;
}

int kvm_msi_route_update(struct vm *vm, uint32_t gsi, uint64_t addr, uint32_t data)
{
    struct kvm_irq_routing_state *s = vm->routing;
    int ret = -ENOENT;
    pthread_mutex_lock(&s->lock);
    for (unsigned i = s->nr_fixed; i < s->nr; i++) {
        if (s->entries[i].gsi != gsi)
            continue;
        struct kvm_irq_routing_entry e = msi_entry(gsi, addr, data);
        if (!memcmp(&e, &s->entries[i], sizeof e)) {
            ret = 0;        /* unchanged: spare KVM the table rebuild */
            break;
        }
        s->entries[i] = e;
        ret = routing_push(vm, s);
        break;
    }
    pthread_mutex_unlock(&s->lock);
    return ret;
}

void kvm_msi_route_free(struct vm *vm, uint32_t gsi)
{
    struct kvm_irq_routing_state *s = vm->routing;
    pthread_mutex_lock(&s->lock);
    for (unsigned i = s->nr_fixed; i < s->nr; i++) {
        if (s->entries[i].gsi == gsi) {
            s->entries[i] = s->entries[--s->nr];
            routing_push(vm, s);
            break;
        }
    }
    pthread_mutex_unlock(&s->lock);
}

int kvm_irqfd(struct vm *vm, int fd, uint32_t gsi, int resample_fd, bool assign)
{
    struct kvm_irqfd irqfd = { .fd = (uint32_t)fd, .gsi = gsi };
    if (!assign)
        irqfd.flags |= KVM_IRQFD_FLAG_DEASSIGN;
    else if (resample_fd >= 0) {
        irqfd.flags |= KVM_IRQFD_FLAG_RESAMPLE;
        irqfd.resamplefd = (uint32_t)resample_fd;
    }
    return ioctl(vm->vm_fd, KVM_IRQFD, &irqfd) < 0 ? -errno : 0;
}

int kvm_ioeventfd(struct vm *vm, uint64_t addr, unsigned len, bool pio, bool match_data,
                  uint64_t data, int fd, bool assign)
{
    struct kvm_ioeventfd e = { .datamatch = data, .addr = addr, .len = len, .fd = fd };
    if (pio)
        e.flags |= KVM_IOEVENTFD_FLAG_PIO;
    if (match_data)
        e.flags |= KVM_IOEVENTFD_FLAG_DATAMATCH;
    if (!assign)
        e.flags |= KVM_IOEVENTFD_FLAG_DEASSIGN;
    return ioctl(vm->vm_fd, KVM_IOEVENTFD, &e) < 0 ? -errno : 0;
}

int kvm_signal_msi(struct vm *vm, uint64_t addr, uint32_t data)
{
    struct kvm_msi msi = { .address_lo = (uint32_t)addr, .address_hi = (uint32_t)(addr >> 32),
                           .data = data };
    return ioctl(vm->vm_fd, KVM_SIGNAL_MSI, &msi) < 0 ? -errno : 0;
}
