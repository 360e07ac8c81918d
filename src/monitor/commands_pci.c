/* query-pci: QEMU 7.2's PciInfo list (qapi/pci.json; hw/pci/pci.c
 * qmp_query_pci) for kvmbox's single bus 0. `info pci` formats it. */
#include "monitor/commands.h"

#include <stdio.h>
#include <string.h>

#include "core/vm.h"
#include "hw/pci/pci.h"

static struct json *obj_add(struct json *o, const char *k, struct json *v)
{
    if (o && json_object_set(o, k, v) < 0) {
        json_free(o);
        return NULL;
    }
    if (!o)
        json_free(v);
    return o;
}

/* Returns false (and frees everything) when a is NULL or on no memory. */
static bool arr_add(struct json *a, struct json *v)
{
    if (!a || !v) {
        json_free(v);
        return false;
    }
    return json_array_append(a, v) == 0;
}

/* QEMU's pci_class_descriptions: the class word (base << 8 | sub) to its
 * name, exact matches only; the rest has no "desc". */
static const struct {
    uint16_t class;
    const char *desc;
} pci_class_names[] = {
    { 0x0001, "VGA controller" }, { 0x0100, "SCSI controller" },
    { 0x0101, "IDE controller" }, { 0x0102, "Floppy controller" },
    { 0x0103, "IPI controller" }, { 0x0104, "RAID controller" },
    { 0x0106, "SATA controller" }, { 0x0107, "SAS controller" },
    { 0x0180, "Storage controller" }, { 0x0200, "Ethernet controller" },
    { 0x0201, "Token Ring controller" }, { 0x0202, "FDDI controller" },
    { 0x0203, "ATM controller" }, { 0x0280, "Network controller" },
    { 0x0300, "VGA controller" }, { 0x0301, "XGA controller" },
    { 0x0302, "3D controller" }, { 0x0380, "Display controller" },
    { 0x0400, "Video controller" }, { 0x0401, "Audio controller" },
    { 0x0402, "Phone" }, { 0x0403, "Audio controller" },
    { 0x0480, "Multimedia controller" }, { 0x0500, "RAM controller" },
    { 0x0501, "Flash controller" }, { 0x0580, "Memory controller" },
    { 0x0600, "Host bridge" }, { 0x0601, "ISA bridge" }, { 0x0602, "EISA bridge" },
    { 0x0603, "MC bridge" }, { 0x0604, "PCI bridge" }, { 0x0605, "PCMCIA bridge" },
    { 0x0606, "NUBUS bridge" }, { 0x0607, "CARDBUS bridge" },
    { 0x0608, "RACEWAY bridge" }, { 0x0680, "Bridge" }, { 0x0700, "Serial port" },
    { 0x0701, "Parallel port" }, { 0x0800, "Interrupt controller" },
    { 0x0801, "DMA controller" }, { 0x0802, "Timer" }, { 0x0803, "RTC" },
    { 0x0900, "Keyboard" }, { 0x0901, "Pen" }, { 0x0902, "Mouse" },
    { 0x0A00, "Dock station" }, { 0x0B00, "i386 cpu" },
    { 0x0c00, "Firewire controller" }, { 0x0c01, "Access bus controller" },
    { 0x0c02, "SSA controller" }, { 0x0c03, "USB controller" },
    { 0x0c04, "Fibre channel controller" }, { 0x0c05, "SMBus" },
};

static const char *pci_class_desc(uint16_t class)
{
    for (size_t i = 0; i < sizeof pci_class_names / sizeof pci_class_names[0]; i++)
        if (pci_class_names[i].class == class)
            return pci_class_names[i].desc;
    return NULL;
}

static const char *device_model(enum device_kind k)
{
    switch (k) {
    case DEVICE_VIRTIO_BLK: return "virtio-blk-pci";
    case DEVICE_VIRTIO_SERIAL: return "virtio-serial-pci";
    case DEVICE_VIRTIO_RNG: return "virtio-rng-pci";
    default: return NULL;     /* not a PCI function (virtconsole) */
    }
}

/* The -device id= of the function in `slot`, or "" (QEMU's qdev_id for a
 * device without one). The PCI layer records the model name, so find the
 * -device whose id it is, or else redo the machine's slot assignment:
 * virtio functions are created in -device order, then one per
 * -drive if=virtio, each in its addr= slot or the first free one from 1
 * (00.0 is the host bridge); accepted only if the model matches. */
static const char *pci_qdev_id(const struct vm_config *cfg, const struct pci_bus *bus,
                               unsigned slot)
{
    const struct pci_device *d = bus->devices[slot];
    if (!cfg || !d || d == &bus->host || !d->name)
        return "";
    for (unsigned i = 0; i < cfg->nr_devices; i++)
        if (cfg->devices[i].id && !strcmp(cfg->devices[i].id, d->name) &&
            device_model(cfg->devices[i].kind))
            return cfg->devices[i].id;
    bool used[PCI_MAX_DEVICES] = { true };
    for (unsigned i = 0; i < cfg->nr_devices; i++) {
        const struct device_config *c = &cfg->devices[i];
        const char *model = device_model(c->kind);
        if (!model)
            continue;
        unsigned s = 1;
        if (c->devfn >= 0)
            s = (unsigned)c->devfn >> 3;
        else
            while (s < PCI_MAX_DEVICES && used[s])
                s++;
        if (s >= PCI_MAX_DEVICES)
            break;
        used[s] = true;
        if (s == slot)
            return c->id && !strcmp(model, d->name) ? c->id : "";
    }
    return "";
}

static struct json *pci_regions(const struct pci_device *d)
{
    struct json *list = json_array();
    for (unsigned i = 0; list && i < PCI_NUM_BARS; i++) {
        const struct pci_bar *bar = &d->bars[i];
        if (!bar->size || bar->upper_half)
            continue;
        struct json *r = json_object();
        if (bar->type == PCI_BAR_IO) {
            r = obj_add(r, "type", json_string("io"));
        } else {
            r = obj_add(r, "type", json_string("memory"));
            r = obj_add(r, "prefetch", json_bool(bar->prefetchable));
            r = obj_add(r, "mem_type_64", json_bool(bar->type == PCI_BAR_MEM64));
        }
        r = obj_add(r, "bar", json_int(i));
        /* QEMU: PCI_BAR_UNMAPPED (all-ones, an int64 -1 on the wire) while
         * the BAR does not decode. */
        r = obj_add(r, "address", json_int(bar->mapped ? (int64_t)bar->mapped_at : -1));
        r = obj_add(r, "size", json_int((int64_t)bar->size));
        if (!arr_add(list, r)) {
            json_free(list);
            list = NULL;
        }
    }
    return list;
}

static uint16_t cfg16(const struct pci_device *d, unsigned off)
{
    return (uint16_t)(d->config[off] | d->config[off + 1] << 8);
}

/* pci_bus.lock held (BARs and the guest-written bytes). */
static struct json *pci_device_info(const struct vm_config *cfg, const struct pci_bus *bus,
                                    unsigned slot)
{
    const struct pci_device *d = bus->devices[slot];
    uint16_t class = cfg16(d, PCI_CLASS_DEVICE);
    const char *desc = pci_class_desc(class);
    struct json *ci = json_object();
    if (desc)
        ci = obj_add(ci, "desc", json_string(desc));
    ci = obj_add(ci, "class", json_int(class));

    struct json *id = json_object();
    id = obj_add(id, "device", json_int(cfg16(d, PCI_DEVICE_ID)));
    id = obj_add(id, "vendor", json_int(cfg16(d, PCI_VENDOR_ID)));
    id = obj_add(id, "subsystem", json_int(cfg16(d, PCI_SUBSYSTEM_ID)));
    id = obj_add(id, "subsystem-vendor", json_int(cfg16(d, PCI_SUBSYSTEM_VENDOR_ID)));

    uint8_t pin = d->config[PCI_INTERRUPT_PIN];
    struct json *o = json_object();
    o = obj_add(o, "bus", json_int(0));
    o = obj_add(o, "slot", json_int(d->devfn >> 3));
    o = obj_add(o, "function", json_int(d->devfn & 7));
    o = obj_add(o, "class_info", ci);
    o = obj_add(o, "id", id);
    if (pin)    /* QEMU: irq only for functions with an interrupt pin */
        o = obj_add(o, "irq", json_int(d->config[PCI_INTERRUPT_LINE]));
    o = obj_add(o, "irq_pin", json_int(pin));
    o = obj_add(o, "qdev_id", json_string(pci_qdev_id(cfg, bus, slot)));
    return obj_add(o, "regions", pci_regions(d));
}

/* One PciInfo for bus 0 (kvmbox has no bridges); [] for a machine without
 * PCI. */
struct json *cmd_query_pci(struct monitor *m, const struct json *a, struct qmp_error *e)
{
    struct pci_bus *bus = m->vm->pci;
    struct json *list = json_array();
    if (!bus || !list) {
        if (!list)
            qmp_error_set(e, QERR_GENERIC, "Out of memory");
        return list;
    }
    struct json *devs = json_array();
    pthread_mutex_lock(&bus->lock);
    for (unsigned s = 0; devs && s < PCI_MAX_DEVICES; s++) {
        if (bus->devices[s] && !arr_add(devs, pci_device_info(m->vm->cfg, bus, s))) {
            json_free(devs);
            devs = NULL;
        }
    }
    pthread_mutex_unlock(&bus->lock);
    struct json *b = json_object();
    b = obj_add(b, "bus", json_int(0));
    b = obj_add(b, "devices", devs);
    if (!devs || !arr_add(list, b)) {
        json_free(list);
        qmp_error_set(e, QERR_GENERIC, "Out of memory");
        return NULL;
    }
    return list;
}
