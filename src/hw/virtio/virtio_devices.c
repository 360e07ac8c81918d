/* See virtio_devices.h. */
#include "hw/virtio/virtio_devices.h"
#include "block/block.h"
#include "chardev/registry.h"
#include "core/iothread.h"
#include "core/vm.h"
#include "hw/virtio/blk.h"
#include "hw/virtio/console.h"
#include "hw/virtio/rng.h"
#include "hw/virtio/virtio_pci.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One virtio PCI function and its model/back end, for the free hook. */
struct virtio_device_slot {
    struct virtio_pci *vp;
    struct block_backend *backend;
    struct virtio_blk *blk;
    struct virtio_rng *rng;
    struct virtio_console *console;
};

static void virtio_device_slot_free(void *opaque)
{
    struct virtio_device_slot *s = opaque;
    /* Requests still in flight complete into the device: drain them while
     * it exists (the I/O thread is stopped, so this runs them here). */
    if (s->backend)
        blk_drain(s->backend);
    virtio_pci_free(s->vp);
    virtio_blk_free(s->blk);
    if (s->backend)
        blk_close(s->backend);      /* the I/O thread is stopped by now */
    virtio_rng_free(s->rng);
    virtio_console_free(s->console);
    free(s);
}

static void virtio_iothread_free(void *opaque) { iothread_free(opaque); }
static void virtio_iothread_stop(void *opaque) { iothread_stop(opaque); }

struct virtio_build {
    struct vm *vm;
    const struct vm_config *cfg;
    struct pci_bus *bus;
    struct chardev_registry *chardevs;
    struct iothread *io;
    char *err;
    size_t errlen;
};

static int add_slot(struct virtio_build *b, struct virtio_device_slot *s)
{
    if (vm_add_device(b->vm, "virtio", NULL, virtio_device_slot_free, s) < 0) {
        snprintf(b->err, b->errlen, "too many devices");
        virtio_device_slot_free(s);
        return -1;
    }
    return 0;
}

static int make_blk(struct virtio_build *b, const struct drive_config *d,
                    const struct device_config *dev, const char *name)
{
    struct virtio_device_slot *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(b->err, b->errlen, "out of memory");
        return -1;
    }
    struct blk_options o = {
        .filename = d->file, .format = d->format, .cache = d->cache, .aio = d->aio,
        .read_only = d->read_only, .snapshot = d->snapshot, .discard = d->discard,
        .no_locking = d->no_locking,
        .fmt = { .l2_cache_size = d->l2_cache_size, .refcount_cache_size = d->refcount_cache_size },
    };
    char berr[400];
    s->backend = blk_open(&o, iothread_loop(b->io), berr, sizeof berr);
    if (!s->backend) {
        snprintf(b->err, b->errlen, "-drive %s: %s", d->id, berr);
        free(s);
        return -1;
    }
    struct virtio_blk_opts bo = {
        .serial = dev && dev->serial ? dev->serial : d->serial,
        .num_queues = dev ? dev->num_queues : 0,
        .queue_size = (uint16_t)(dev ? dev->queue_size : 0),
        .logical_block_size = dev ? dev->logical_block_size : 0,
        .physical_block_size = dev ? dev->physical_block_size : 0,
        .discard = d->discard,
    };
    s->blk = virtio_blk_new(s->backend, iothread_loop(b->io), &bo);
    if (s->blk)
        s->vp = virtio_pci_new(b->vm, &b->vm->mem, b->bus, dev ? dev->devfn : -1, name,
                               virtio_blk_ops(s->blk), s->blk, b->io, b->err,
                               (unsigned)b->errlen);
    if (!s->vp) {
        if (!s->blk)
            snprintf(b->err, b->errlen, "%s: out of memory", name);
        virtio_device_slot_free(s);
        return -1;
    }
    if (b->vm->nr_blocks < VM_MAX_BLOCKS)     /* for query-block */
        b->vm->blocks[b->vm->nr_blocks++] = (struct vm_block){
            .id = d->id, .qdev = dev && dev->id ? dev->id : name, .drive = d,
            .backend = s->backend };
    return add_slot(b, s);
}

static const struct device_config *console_for(const struct vm_config *cfg,
                                               const struct device_config *serial)
{
    /* bus=SERIALID.0 picks the bus; without bus= the console goes on the
     * first virtio-serial device that has none yet. */
    for (unsigned i = 0; i < cfg->nr_devices; i++) {
        const struct device_config *c = &cfg->devices[i];
        if (c->kind != DEVICE_VIRTCONSOLE)
            continue;
        if (c->bus && serial->id) {
            size_t n = strlen(serial->id);
            if (!strncmp(c->bus, serial->id, n) && (c->bus[n] == '\0' || !strcmp(c->bus + n, ".0")))
                return c;
        }
    }
    unsigned serial_idx = 0, unnamed = 0;
    for (unsigned i = 0; i < cfg->nr_devices; i++) {
        if (&cfg->devices[i] == serial)
            break;
        serial_idx += cfg->devices[i].kind == DEVICE_VIRTIO_SERIAL;
    }
    for (unsigned i = 0; i < cfg->nr_devices; i++) {
        const struct device_config *c = &cfg->devices[i];
        if (c->kind == DEVICE_VIRTCONSOLE && !c->bus && unnamed++ == serial_idx)
            return c;
    }
    return NULL;
}

static int make_console(struct virtio_build *b, const struct device_config *dev)
{
    const struct device_config *port = console_for(b->cfg, dev);
    struct chardev *chr = NULL;
    if (port) {
        chr = chardev_registry_attach(b->chardevs, port->chardev, b->err, b->errlen);
        if (!chr)
            return -1;
    }
    struct virtio_device_slot *s = calloc(1, sizeof *s);
    if (!s || !(s->console = virtio_console_new(chr))) {
        free(s);
        snprintf(b->err, b->errlen, "virtio-serial-pci: out of memory");
        return -1;
    }
    s->vp = virtio_pci_new(b->vm, &b->vm->mem, b->bus, dev->devfn, "virtio-serial-pci", virtio_console_ops(),
                           s->console, b->io, b->err, (unsigned)b->errlen);
    if (!s->vp) {
        virtio_device_slot_free(s);
        return -1;
    }
    virtio_console_attach(s->console, virtio_pci_dev(s->vp));
    return add_slot(b, s);
}

static int make_rng(struct virtio_build *b, const struct device_config *dev)
{
    struct virtio_device_slot *s = calloc(1, sizeof *s);
    if (!s || !(s->rng = virtio_rng_new())) {
        free(s);
        snprintf(b->err, b->errlen, "virtio-rng-pci: out of memory");
        return -1;
    }
    s->vp = virtio_pci_new(b->vm, &b->vm->mem, b->bus, dev->devfn, "virtio-rng-pci", virtio_rng_ops(),
                           s->rng, b->io, b->err, (unsigned)b->errlen);
    if (!s->vp) {
        virtio_device_slot_free(s);
        return -1;
    }
    return add_slot(b, s);
}

static const struct drive_config *find_drive(const struct vm_config *cfg, const char *id)
{
    for (unsigned i = 0; i < cfg->nr_drives; i++)
        if (!strcmp(cfg->drives[i].id, id))
            return &cfg->drives[i];
    return NULL;
}

int virtio_devices_create(struct vm *vm, const struct vm_config *cfg, struct pci_bus *bus,
                          struct chardev_registry *chardevs, char *err, size_t errlen)
{
    bool any = false;
    for (unsigned i = 0; i < cfg->nr_devices; i++)
        any |= cfg->devices[i].kind != DEVICE_VIRTCONSOLE;
    for (unsigned i = 0; i < cfg->nr_drives; i++)
        any |= cfg->drives[i].iface == DRIVE_IF_VIRTIO;
    if (!any)
        return 0;
    struct virtio_build b = { vm, cfg, bus, chardevs, iothread_new("iothread0"), err, errlen };
    if (!b.io) {
        snprintf(err, errlen, "cannot create the I/O thread");
        return -1;
    }
    /* vm_destroy frees devices in reverse order: the thread is stopped
     * first (hook added last), the devices close their back ends on its
     * loop from the main thread, and the loop goes last (hook added first). */
    if (vm_add_device(vm, "iothread0", NULL, virtio_iothread_free, b.io) < 0) {
        iothread_free(b.io);
        snprintf(err, errlen, "too many devices");
        return -1;
    }
    int ret = 0;
    for (unsigned i = 0; i < cfg->nr_devices && ret == 0; i++) {
        const struct device_config *d = &cfg->devices[i];
        switch (d->kind) {
        case DEVICE_VIRTIO_BLK:
            ret = make_blk(&b, find_drive(cfg, d->drive), d, "virtio-blk-pci");
            break;
        case DEVICE_VIRTIO_SERIAL:
            ret = make_console(&b, d);
            break;
        case DEVICE_VIRTIO_RNG:
            ret = make_rng(&b, d);
            break;
        case DEVICE_VIRTCONSOLE:
            break;          /* created with its virtio-serial bus */
        }
    }
    for (unsigned i = 0; i < cfg->nr_drives && ret == 0; i++)
        if (cfg->drives[i].iface == DRIVE_IF_VIRTIO)
            ret = make_blk(&b, &cfg->drives[i], NULL, "virtio-blk-pci");
    if (vm_add_device(vm, "iothread0-stop", NULL, virtio_iothread_stop, b.io) < 0) {
        snprintf(err, errlen, "too many devices");
        return -1;
    }
    if (ret == 0 && iothread_start(b.io) < 0) {
        snprintf(err, errlen, "cannot start the I/O thread");
        ret = -1;
    }
    return ret;
}
