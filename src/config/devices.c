/* -device DRIVER[,prop=value...]: the devices kvmbox has, their properties
 * (QEMU's names), `-device help` and `-device DRIVER,help`. Anything else is
 * refused by name. */
#include "config/config.h"
#include "config/keyval.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct device_prop_help {
    const char *name, *type, *help;
};

struct device_type {
    const char *name;
    const char *category;           /* `-device help` section */
    const char *bus;
    const char *desc;
    const struct device_prop_help *props;
};

static const struct device_prop_help virtio_blk_props[] = {
    { "drive", "str", "ID of a -drive (if=none)" },
    { "addr", "int32", "Slot and optional function number, example: 06.0 or 06" },
    { "id", "str", "device id" },
    { "serial", "str", "get-id answer (up to 20 bytes)" },
    { "num-queues", "uint16", "number of request queues (default: 1)" },
    { "queue-size", "uint16", "max queue size, power of 2 (default: 256)" },
    { "logical_block_size", "size", "512 or 4096 (default: 512)" },
    { "physical_block_size", "size", "(default: logical_block_size)" },
    { "bus", "str", "pci.0" },
    { "scsi", "bool", "accepted: off" },
    { "bootindex", "int32", "accepted (kvmbox boots -kernel)" },
    { NULL, NULL, NULL },
};
static const struct device_prop_help virtio_pci_props[] = {
    { "addr", "int32", "Slot and optional function number, example: 06.0 or 06" },
    { "id", "str", "device id" },
    { "bus", "str", "pci.0" },
    { NULL, NULL, NULL },
};
static const struct device_prop_help virtconsole_props[] = {
    { "chardev", "str", "ID of a chardev to use as a backend" },
    { "id", "str", "device id" },
    { "bus", "str", "the virtio-serial bus: SERIALID.0" },
    { "name", "str", "accepted" },
    { NULL, NULL, NULL },
};
static const struct device_prop_help debug_exit_props[] = {
    { "iobase", "uint32", "(default: 1281)" },
    { "iosize", "uint32", "(default: 2)" },
    { NULL, NULL, NULL },
};

static const struct device_type device_types[] = {
    { "virtio-blk-pci", "Storage devices", "PCI", "Virtio block device", virtio_blk_props },
    { "virtio-serial-pci", "Input devices", "PCI", "Virtio serial bus (one console port)", virtio_pci_props },
    { "virtconsole", "Input devices", "virtio-serial-bus", "Virtio console port", virtconsole_props },
    { "virtio-rng-pci", "Misc devices", "PCI", "Virtio entropy source", virtio_pci_props },
    { "isa-debug-exit", "Misc devices", "ISA", "exit with status (v << 1) | 1", debug_exit_props },
};
#define NR_DEVICE_TYPES (sizeof device_types / sizeof device_types[0])

static int dev_fail(char *err, unsigned errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int dev_fail(char *err, unsigned errlen, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(err, errlen, "-device %s", msg);
    return -EINVAL;
}

static void device_list(void)
{
    static const char *const categories[] = { "Storage devices", "Input devices", "Misc devices" };
    for (size_t c = 0; c < sizeof categories / sizeof categories[0]; c++) {
        printf("%s%s:\n", c ? "\n" : "", categories[c]);
        for (size_t i = 0; i < NR_DEVICE_TYPES; i++)
            if (!strcmp(device_types[i].category, categories[c]))
                printf("name \"%s\", bus %s, desc \"%s\"\n", device_types[i].name,
                       device_types[i].bus, device_types[i].desc);
    }
}

static void device_props_help(const struct device_type *t)
{
    printf("%s options:\n", t->name);
    for (const struct device_prop_help *p = t->props; p->name; p++)
        printf("  %s=<%s>%*s -  %s\n", p->name, p->type,
               (int)(22 - strlen(p->name) - strlen(p->type)), "", p->help);
}

/* addr=SLOT[.FN] in hex, as QEMU (06, 0x6, 06.0). Function 0 only. */
static int parse_devfn(const char *v, int *devfn)
{
    char *end;
    unsigned long slot = strtoul(v, &end, 16);
    unsigned long fn = 0;
    if (end == v)
        return -EINVAL;
    if (*end == '.') {
        const char *f = end + 1;
        fn = strtoul(f, &end, 16);
        if (end == f)
            return -EINVAL;
    }
    if (*end || slot >= 32 || fn != 0)
        return -EINVAL;
    *devfn = (int)(slot << 3);
    return 0;
}

static int parse_uint(const char *v, unsigned long max, unsigned long *out)
{
    char *end;
    errno = 0;
    unsigned long n = strtoul(v, &end, 0);
    if (!*v || *end || errno || n > max)
        return -EINVAL;
    *out = n;
    return 0;
}

static int device_common(struct keyval *kv, struct device_config *d, const char *driver,
                         char *err, unsigned errlen)
{
    const char *v;
    d->devfn = -1;
    if ((v = keyval_get(kv, "addr")) && parse_devfn(v, &d->devfn) < 0)
        return dev_fail(err, errlen, "%s: addr=%s: expected SLOT[.0] with SLOT 00-1f (hex)",
                        driver, v);
    if ((v = keyval_get(kv, "bus")) && d->kind != DEVICE_VIRTCONSOLE && strcmp(v, "pci.0"))
        return dev_fail(err, errlen, "%s: bus=%s: kvmbox has one PCI bus (expected pci.0)",
                        driver, v);
    if ((v = keyval_get(kv, "id")) && !(d->id = strdup(v)))
        return -ENOMEM;
    return 0;
}

static int device_virtio_blk(struct keyval *kv, struct device_config *d, char *err, unsigned errlen)
{
    const char *v;
    unsigned long n;
    if (!(v = keyval_get(kv, "drive")) || !*v)
        return dev_fail(err, errlen, "virtio-blk-pci: drive= is required (expected drive=ID of a -drive if=none)");
    d->drive = strdup(v);
    if ((v = keyval_get(kv, "serial")))
        d->serial = strdup(v);
    if ((v = keyval_get(kv, "num-queues"))) {
        if (parse_uint(v, 64, &n) < 0 || n == 0)
            return dev_fail(err, errlen, "virtio-blk-pci: num-queues=%s: expected 1-64", v);
        d->num_queues = (unsigned)n;
    }
    if ((v = keyval_get(kv, "queue-size"))) {
        if (parse_uint(v, 1024, &n) < 0 || n < 2 || (n & (n - 1)))
            return dev_fail(err, errlen, "virtio-blk-pci: queue-size=%s: expected a power of 2, 2-1024", v);
        d->queue_size = (unsigned)n;
    }
    const char *lbs = keyval_get(kv, "logical_block_size");
    const char *pbs = keyval_get(kv, "physical_block_size");
    uint64_t size;
    if (lbs) {
        if (config_parse_size(lbs, 1, &size) < 0 || (size != 512 && size != 4096))
            return dev_fail(err, errlen, "virtio-blk-pci: logical_block_size=%s: expected 512 or 4096", lbs);
        d->logical_block_size = (uint32_t)size;
    }
    if (pbs) {
        if (config_parse_size(pbs, 1, &size) < 0 || size < 512 || size > 65536 || (size & (size - 1)))
            return dev_fail(err, errlen, "virtio-blk-pci: physical_block_size=%s: expected a power of 2, 512-65536", pbs);
        d->physical_block_size = (uint32_t)size;
    }
    if (d->logical_block_size && d->physical_block_size &&
        d->physical_block_size < d->logical_block_size)
        return dev_fail(err, errlen, "virtio-blk-pci: physical_block_size must be at least logical_block_size");
    if ((v = keyval_get(kv, "scsi"))) {
        bool on;
        if (keyval_bool(v, &on) < 0 || on)
            return dev_fail(err, errlen, "virtio-blk-pci: scsi=%s: SCSI passthrough is not supported (expected scsi=off)", v);
    }
    keyval_get(kv, "bootindex");
    return 0;
}

int config_parse_device(struct vm_config *cfg, const char *arg, char *err, unsigned errlen)
{
    if (!strcmp(arg, "help") || !strcmp(arg, "?")) {
        device_list();
        return 1;
    }
    struct keyval kv;
    if (keyval_parse(&kv, arg, "driver") < 0)
        return dev_fail(err, errlen, "%s: cannot parse (expected DRIVER[,prop=value,...])", arg);
    const char *driver = keyval_get(&kv, "driver");
    const struct device_type *t = NULL;
    for (size_t i = 0; driver && i < NR_DEVICE_TYPES; i++)
        if (!strcmp(driver, device_types[i].name))
            t = &device_types[i];
    int ret = 0;
    if (!t) {
        ret = dev_fail(err, errlen, "'%s' is not supported (-device help lists the devices)",
                       driver ? driver : arg);
        goto out;
    }
    if (keyval_get(&kv, "help")) {
        device_props_help(t);
        ret = 1;
        goto out;
    }
    if (!strcmp(t->name, "isa-debug-exit")) {
        const char *iobase = keyval_get(&kv, "iobase"), *iosize = keyval_get(&kv, "iosize");
        unsigned long b = 0x501, s = 2;     /* QEMU's defaults */
        keyval_get(&kv, "id");
        if (iobase && parse_uint(iobase, 0xFFFF, &b) < 0)
            ret = dev_fail(err, errlen, "isa-debug-exit: bad iobase '%s' (expected a port number, e.g. 0xf4)", iobase);
        else if (iosize && (parse_uint(iosize, 4, &s) < 0 || s == 0 || s == 3))
            ret = dev_fail(err, errlen, "isa-debug-exit: bad iosize '%s' (expected 1, 2 or 4)", iosize);
        else if (b + s > 0x10000)
            ret = dev_fail(err, errlen, "isa-debug-exit: iobase+iosize beyond port 0xffff");
        else if (cfg->debug_exit.present)
            ret = dev_fail(err, errlen, "isa-debug-exit: only one instance is supported");
        if (ret == 0 && keyval_unused(&kv))
            ret = dev_fail(err, errlen, "isa-debug-exit: unknown property '%s' (expected iobase=PORT,iosize=1|2|4)",
                           keyval_unused(&kv));
        if (ret == 0) {
            cfg->debug_exit.present = true;
            cfg->debug_exit.iobase = (uint16_t)b;
            cfg->debug_exit.iosize = (uint16_t)s;
        }
        goto out;
    }
    if (cfg->nr_devices == CONFIG_MAX_DEVICES) {
        ret = dev_fail(err, errlen, "%s: at most %d devices", t->name, CONFIG_MAX_DEVICES);
        goto out;
    }
    struct device_config *d = &cfg->devices[cfg->nr_devices];
    memset(d, 0, sizeof *d);
    if (!strcmp(t->name, "virtio-blk-pci"))
        d->kind = DEVICE_VIRTIO_BLK;
    else if (!strcmp(t->name, "virtio-serial-pci"))
        d->kind = DEVICE_VIRTIO_SERIAL;
    else if (!strcmp(t->name, "virtconsole"))
        d->kind = DEVICE_VIRTCONSOLE;
    else
        d->kind = DEVICE_VIRTIO_RNG;
    cfg->nr_devices++;      /* from here on config_free_devices owns its strings */
    ret = device_common(&kv, d, t->name, err, errlen);
    if (ret == 0 && d->kind == DEVICE_VIRTIO_BLK)
        ret = device_virtio_blk(&kv, d, err, errlen);
    if (ret == 0 && d->kind == DEVICE_VIRTCONSOLE) {
        const char *v = keyval_get(&kv, "chardev");
        keyval_get(&kv, "name");
        if (!v || !*v)
            ret = dev_fail(err, errlen, "virtconsole: chardev= is required (expected chardev=ID of a -chardev)");
        else
            d->chardev = strdup(v);
        if (ret == 0 && (v = keyval_get(&kv, "bus")))
            d->bus = strdup(v);
    }
    if (ret == 0 && d->kind == DEVICE_VIRTIO_RNG) {
        /* QEMU's rate limit and back-end object: accepted; the host's
         * getrandom() is the source. */
        keyval_get(&kv, "rng");
        keyval_get(&kv, "max-bytes");
        keyval_get(&kv, "period");
    }
    if (ret == 0 && keyval_unused(&kv))
        ret = dev_fail(err, errlen, "%s: unknown property '%s' (-device %s,help lists them)",
                       t->name, keyval_unused(&kv), t->name);
out:
    keyval_free(&kv);
    return ret;
}

static struct drive_config *find_drive(struct vm_config *cfg, const char *id)
{
    for (unsigned i = 0; i < cfg->nr_drives; i++)
        if (!strcmp(cfg->drives[i].id, id))
            return &cfg->drives[i];
    return NULL;
}

int config_check_devices(struct vm_config *cfg, char *err, unsigned errlen)
{
    unsigned serial_buses = 0, consoles = 0;
    for (unsigned i = 0; i < cfg->nr_devices; i++) {
        struct device_config *d = &cfg->devices[i];
        if (d->kind == DEVICE_VIRTIO_SERIAL)
            serial_buses++;
        if (d->kind == DEVICE_VIRTCONSOLE)
            consoles++;
        if (d->kind == DEVICE_VIRTIO_BLK) {
            struct drive_config *dr = find_drive(cfg, d->drive);
            if (!dr)
                return dev_fail(err, errlen, "virtio-blk-pci: Property 'virtio-blk-device.drive' "
                                "can't find value '%s'", d->drive);
            if (dr->iface != DRIVE_IF_NONE)
                return dev_fail(err, errlen, "virtio-blk-pci: drive '%s' has if=virtio and gets "
                                "its own device (expected if=none)", d->drive);
            for (unsigned j = 0; j < i; j++)
                if (cfg->devices[j].kind == DEVICE_VIRTIO_BLK && !strcmp(cfg->devices[j].drive, d->drive))
                    return dev_fail(err, errlen, "virtio-blk-pci: drive '%s' is already in use", d->drive);
        }
        if (d->id)
            for (unsigned j = 0; j < i; j++)
                if (cfg->devices[j].id && !strcmp(cfg->devices[j].id, d->id))
                    return dev_fail(err, errlen, "duplicate id '%s'", d->id);
    }
    if (consoles && !serial_buses)
        return dev_fail(err, errlen, "virtconsole: no virtio-serial bus (expected -device virtio-serial-pci first)");
    /* One console port per virtio-serial device: the device is offered
     * without MULTIPORT (see src/hw/virtio/console.c). */
    if (consoles > serial_buses)
        return dev_fail(err, errlen, "virtconsole: kvmbox supports one console port per "
                        "virtio-serial-pci (expected another -device virtio-serial-pci)");
    for (unsigned i = 0; i < cfg->nr_drives; i++)
        if (cfg->snapshot)
            cfg->drives[i].snapshot = true;
    return 0;
}

void config_free_devices(struct vm_config *cfg)
{
    for (unsigned i = 0; i < cfg->nr_drives; i++) {
        free(cfg->drives[i].id);
        free(cfg->drives[i].file);
        free(cfg->drives[i].format);
        free(cfg->drives[i].serial);
    }
    for (unsigned i = 0; i < cfg->nr_devices; i++) {
        free(cfg->devices[i].id);
        free(cfg->devices[i].drive);
        free(cfg->devices[i].serial);
        free(cfg->devices[i].chardev);
        free(cfg->devices[i].bus);
    }
    cfg->nr_drives = cfg->nr_devices = 0;
}
