/* -drive file=...,if=virtio|none,index=N,media=disk,format=raw,cache=...,
 * aio=threads|io_uring|native,snapshot=on,readonly=on,id=ID,serial=S,
 * discard=unmap|ignore, and qcow2's l2-cache-size= and refcount-cache-size=
 * — QEMU's spelling and defaults. IDE, SCSI, floppy
 * and CD-ROM interfaces (QEMU's default if= on pc is ide) come with the IDE
 * controller: until then they are refused by name. */
#include "config/config.h"
#include "config/keyval.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DRIVE_FORM "file=PATH,if=virtio|none[,id=ID][,format=raw|qcow2][,cache=writeback|none|writethrough|directsync|unsafe][,aio=threads|io_uring][,snapshot=on][,readonly=on][,serial=S][,index=N][,l2-cache-size=SIZE][,refcount-cache-size=SIZE][,file.locking=on|off|auto]"

static int drive_fail(char *err, unsigned errlen, const char *fmt, const char *arg)
{
    char msg[512];
    snprintf(msg, sizeof msg, fmt, arg);
    snprintf(err, errlen, "-drive: %s", msg);
    return -EINVAL;
}

/* A qcow2 cache size (QEMU: bytes, or with a k/M/G suffix). */
static int drive_cache_size(struct keyval *kv, const char *key, uint64_t *out, char *err,
                            unsigned errlen)
{
    const char *v = keyval_get(kv, key);
    if (v && (config_parse_size(v, 1, out) < 0 || *out == 0 || *out > (1ull << 40))) {
        snprintf(err, errlen, "-drive: %s=%s: expected a size in bytes (k/M/G suffixes), "
                 "at most 1T", key, v);
        return -EINVAL;
    }
    return 0;
}

static int drive_bool(struct keyval *kv, const char *key, bool *out, char *err, unsigned errlen)
{
    const char *v = keyval_get(kv, key);
    if (v && keyval_bool(v, out) < 0) {
        snprintf(err, errlen, "-drive: %s=%s: expected on or off", key, v);
        return -EINVAL;
    }
    return 0;
}

int config_parse_drive(struct vm_config *cfg, const char *arg, char *err, unsigned errlen)
{
    if (cfg->nr_drives == CONFIG_MAX_DRIVES) {
        snprintf(err, errlen, "-drive: at most %d drives", CONFIG_MAX_DRIVES);
        return -EINVAL;
    }
    struct keyval kv;
    if (keyval_parse(&kv, arg, "file") < 0)
        return drive_fail(err, errlen, "cannot parse '%s' (expected " DRIVE_FORM ")", arg);
    struct drive_config d = { .index = -1, .cache = BLK_CACHE_WRITEBACK, .aio = BLK_AIO_THREADS };
    int ret = -EINVAL;
    const char *v;
    const char *file = keyval_get(&kv, "file");
    const char *iface = keyval_get(&kv, "if");
    if (!file || !*file) {
        ret = drive_fail(err, errlen, "a file is required (expected %s)", DRIVE_FORM);
        goto out;
    }
    if (!iface || !strcmp(iface, "ide") || !strcmp(iface, "scsi") || !strcmp(iface, "floppy") ||
        !strcmp(iface, "sd") || !strcmp(iface, "mtd") || !strcmp(iface, "pflash")) {
        ret = drive_fail(err, errlen, "if=%s needs an IDE/SCSI controller, which kvmbox does "
                         "not have yet (expected if=virtio, or if=none with -device virtio-blk-pci)",
                         iface ? iface : "ide (the default)");
        goto out;
    }
    if (!strcmp(iface, "virtio"))
        d.iface = DRIVE_IF_VIRTIO;
    else if (!strcmp(iface, "none"))
        d.iface = DRIVE_IF_NONE;
    else {
        ret = drive_fail(err, errlen, "unknown interface if=%s (expected virtio or none)", iface);
        goto out;
    }
    if ((v = keyval_get(&kv, "media")) && strcmp(v, "disk")) {
        ret = drive_fail(err, errlen, "media=%s needs IDE/SCSI CD-ROM emulation, which kvmbox "
                         "does not have yet (expected media=disk)", v);
        goto out;
    }
    if ((v = keyval_get(&kv, "format"))) {
        if (strcmp(v, "raw") && strcmp(v, "qcow2")) {
            ret = drive_fail(err, errlen, "unknown format '%s' (expected format=raw or qcow2)",
                             v);
            goto out;
        }
        d.format = strdup(v);
    }
    if ((v = keyval_get(&kv, "cache"))) {
        static const struct { const char *name; enum blk_cache_mode mode; } modes[] = {
            { "writeback", BLK_CACHE_WRITEBACK }, { "none", BLK_CACHE_NONE },
            { "writethrough", BLK_CACHE_WRITETHROUGH }, { "directsync", BLK_CACHE_DIRECTSYNC },
            { "unsafe", BLK_CACHE_UNSAFE },
        };
        size_t i;
        for (i = 0; i < sizeof modes / sizeof modes[0] && strcmp(v, modes[i].name); i++)
            ;
        if (i == sizeof modes / sizeof modes[0]) {
            ret = drive_fail(err, errlen, "cache=%s: expected writeback, none, writethrough, "
                             "directsync or unsafe", v);
            goto out;
        }
        d.cache = modes[i].mode;
    }
    if ((v = keyval_get(&kv, "aio"))) {
        if (!strcmp(v, "threads") || !strcmp(v, "native"))
            d.aio = BLK_AIO_THREADS;    /* linux-aio ("native") runs as threads here */
        else if (!strcmp(v, "io_uring"))
            d.aio = BLK_AIO_IO_URING;
        else {
            ret = drive_fail(err, errlen, "aio=%s: expected threads, native or io_uring", v);
            goto out;
        }
    }
    if (drive_bool(&kv, "snapshot", &d.snapshot, err, errlen) < 0 ||
        drive_bool(&kv, "readonly", &d.read_only, err, errlen) < 0 ||
        drive_cache_size(&kv, "l2-cache-size", &d.l2_cache_size, err, errlen) < 0 ||
        drive_cache_size(&kv, "refcount-cache-size", &d.refcount_cache_size, err, errlen) < 0)
        goto out;
    if ((v = keyval_get(&kv, "file.locking"))) {
        /* QEMU's file.locking: auto and on lock (auto quietly goes without
         * where the file system has no OFD locks, as on does here too). */
        if (!strcmp(v, "off"))
            d.no_locking = true;
        else if (strcmp(v, "on") && strcmp(v, "auto")) {
            ret = drive_fail(err, errlen, "file.locking=%s: expected on, off or auto", v);
            goto out;
        }
    }
    if ((v = keyval_get(&kv, "discard"))) {
        if (!strcmp(v, "unmap") || !strcmp(v, "on"))
            d.discard = true;
        else if (strcmp(v, "ignore") && strcmp(v, "off")) {
            ret = drive_fail(err, errlen, "discard=%s: expected unmap or ignore", v);
            goto out;
        }
    }
    if ((v = keyval_get(&kv, "index"))) {
        char *end;
        long n = strtol(v, &end, 10);
        if (!*v || *end || n < 0 || n > 64) {
            ret = drive_fail(err, errlen, "index=%s: expected a number 0-64", v);
            goto out;
        }
        d.index = (int)n;
    }
    /* Accepted for compatibility; kvmbox reports errors to the guest, which
     * is QEMU's default (werror=enospc/report). */
    keyval_get(&kv, "werror");
    keyval_get(&kv, "rerror");
    keyval_get(&kv, "boot");
    if ((v = keyval_get(&kv, "serial")))
        d.serial = strdup(v);
    if ((v = keyval_get(&kv, "id")))
        d.id = strdup(v);
    const char *unused = keyval_unused(&kv);
    if (unused) {
        ret = drive_fail(err, errlen, "unknown parameter '%s' (expected " DRIVE_FORM ")", unused);
        goto out;
    }
    d.file = strdup(file);
    if (!d.id) {
        /* QEMU names an anonymous drive after its interface and index. */
        char name[32];
        unsigned n = 0;
        for (unsigned i = 0; i < cfg->nr_drives; i++)
            n += cfg->drives[i].iface == d.iface;
        snprintf(name, sizeof name, "%s%u", d.iface == DRIVE_IF_VIRTIO ? "virtio" : "none", n);
        d.id = strdup(name);
    }
    for (unsigned i = 0; i < cfg->nr_drives; i++) {
        if (!strcmp(cfg->drives[i].id, d.id)) {
            ret = drive_fail(err, errlen, "duplicate id '%s'", d.id);
            goto out;
        }
    }
    cfg->drives[cfg->nr_drives++] = d;
    memset(&d, 0, sizeof d);
    ret = 0;
out:
    free(d.id);
    free(d.file);
    free(d.format);
    free(d.serial);
    keyval_free(&kv);
    return ret;
}
