/* query-block and query-blockstats: QEMU 7.2's BlockInfo and BlockStats
 * (qapi/block-core.json; block/qapi.c) for every drive attached to a
 * device (vm->blocks). `info block` and `info blockstats` format them.
 *
 * Where kvmbox differs from QEMU's block graph: a drive is one back end
 * (format driver over the host file), shown as QEMU's two nodes, the
 * format node (BlockInfo.inserted, BlockStats) and its "file" child
 * (BlockStats.parent), named "#block<n>00" in QEMU's auto-generated style.
 * snapshot=on shows the image, not QEMU's temporary qcow2 overlay. */
#include "monitor/commands.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "block/block.h"
#include "core/vm.h"

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

static struct json *u64(uint64_t v)
{
    return json_int(v > INT64_MAX ? INT64_MAX : (int64_t)v);
}

/* Auto-generated node names: the format node and its file child. */
static void node_name(char *buf, size_t len, unsigned block, bool file)
{
    snprintf(buf, len, "#block%u00", 2 * block + (file ? 0 : 1));
}

/* QEMU's BlockInfo.qdev: the attached device's id, or its QOM path. For
 * virtio-blk-pci the block device is the inner virtio-blk-device:
 * /machine/peripheral/ID/virtio-backend, or for a device without id
 * /machine/peripheral-anon/device[N]/virtio-backend, N counting the
 * -device options without id= in order, then the devices -drive if=virtio
 * implies (QEMU adds those after the command line's). */
static void block_qdev(const struct vm *vm, const struct vm_block *blk, char *buf, size_t len)
{
    const struct vm_config *cfg = vm->cfg;
    const char *drive = blk->drive ? blk->drive->id : blk->id;
    unsigned anon = 0;
    for (unsigned i = 0; cfg && drive && i < cfg->nr_devices; i++) {
        const struct device_config *d = &cfg->devices[i];
        if (d->kind == DEVICE_VIRTIO_BLK && d->drive && !strcmp(d->drive, drive)) {
            if (d->id)
                snprintf(buf, len, "/machine/peripheral/%s/virtio-backend", d->id);
            else
                snprintf(buf, len, "/machine/peripheral-anon/device[%u]/virtio-backend", anon);
            return;
        }
        anon += !d->id;
    }
    for (unsigned i = 0; cfg && blk->drive && i < cfg->nr_drives; i++) {
        const struct drive_config *d = &cfg->drives[i];
        if (d == blk->drive) {
            snprintf(buf, len, "/machine/peripheral-anon/device[%u]/virtio-backend", anon);
            return;
        }
        anon += d->iface == DRIVE_IF_VIRTIO;
    }
    snprintf(buf, len, "%s", blk->qdev ? blk->qdev : "");  /* not from the config (tests) */
}

static const char *block_file(const struct vm_block *blk)
{
    return blk->drive && blk->drive->file ? blk->drive->file : "";
}

static struct json *image_info(const struct vm_block *blk)
{
    const char *file = block_file(blk);
    struct json *o = json_object();
    o = obj_add(o, "filename", json_string(file));
    o = obj_add(o, "format", json_string(blk_format(blk->backend)));
    o = obj_add(o, "virtual-size", u64(blk_length(blk->backend)));
    struct stat st;
    if (stat(file, &st) == 0)   /* QEMU: omitted when unknown */
        o = obj_add(o, "actual-size", u64((uint64_t)st.st_blocks * 512));
    return obj_add(o, "dirty-flag", json_bool(false));
}

static struct json *block_device_info(const struct vm_block *blk, unsigned idx)
{
    enum blk_cache_mode cache = blk->drive ? blk->drive->cache : BLK_CACHE_WRITEBACK;
    struct json *c = json_object();
    c = obj_add(c, "writeback", json_bool(blk_write_cache(blk->backend)));
    c = obj_add(c, "direct", json_bool(cache == BLK_CACHE_NONE || cache == BLK_CACHE_DIRECTSYNC));
    c = obj_add(c, "no-flush", json_bool(cache == BLK_CACHE_UNSAFE));

    char node[32];
    node_name(node, sizeof node, idx, false);
    struct json *o = json_object();
    o = obj_add(o, "file", json_string(block_file(blk)));
    o = obj_add(o, "node-name", json_string(node));
    o = obj_add(o, "ro", json_bool(blk_read_only(blk->backend)));
    o = obj_add(o, "drv", json_string(blk_format(blk->backend)));
    o = obj_add(o, "backing_file_depth", json_int(0));
    o = obj_add(o, "encrypted", json_bool(false));
    o = obj_add(o, "detect_zeroes", json_string("off"));
    static const char *const throttle[] = { "bps", "bps_rd", "bps_wr", "iops", "iops_rd",
                                            "iops_wr" };
    for (size_t i = 0; i < sizeof throttle / sizeof throttle[0]; i++)
        o = obj_add(o, throttle[i], json_int(0));
    o = obj_add(o, "image", image_info(blk));
    o = obj_add(o, "write_threshold", json_int(0));
    return obj_add(o, "cache", c);
}

/* Append item to list (non-NULL); on failure free both, set e, false. */
static bool list_add(struct json *list, struct json *item, struct qmp_error *e)
{
    if (item && json_array_append(list, item) == 0)
        return true;
    json_free(list);    /* a failed append has freed item */
    qmp_error_set(e, QERR_GENERIC, "Out of memory");
    return false;
}

struct json *cmd_query_block(struct monitor *m, const struct json *a, struct qmp_error *e)
{
    struct vm *vm = m->vm;
    struct json *list = json_array();
    for (unsigned i = 0; list && i < vm->nr_blocks; i++) {
        const struct vm_block *blk = &vm->blocks[i];
        if (!blk->backend)
            continue;
        char qdev[256];
        block_qdev(vm, blk, qdev, sizeof qdev);
        struct json *o = json_object();
        o = obj_add(o, "device", json_string(blk->id ? blk->id : ""));
        o = obj_add(o, "qdev", json_string(qdev));
        o = obj_add(o, "locked", json_bool(false));
        o = obj_add(o, "removable", json_bool(false));
        o = obj_add(o, "inserted", block_device_info(blk, i));
        o = obj_add(o, "type", json_string("unknown"));
        o = obj_add(o, "io-status", json_string("ok"));
        if (!list_add(list, o, e))
            return NULL;
    }
    if (!list)
        qmp_error_set(e, QERR_GENERIC, "Out of memory");
    return list;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* BlockDeviceStats; s NULL: a node without a BlockBackend (QEMU counts
 * only at the backend: zeros, no accounting of invalid/failed). */
static struct json *device_stats(const struct blk_stats *s, uint64_t wr_highest)
{
    static const struct blk_stats zero;
    const struct blk_stats *v = s ? s : &zero;
    static const struct {
        const char *name;
        enum blk_acct_type t;
    } kinds[] = { { "rd", BLK_ACCT_READ }, { "wr", BLK_ACCT_WRITE },
                  { "unmap", BLK_ACCT_UNMAP }, { "flush", BLK_ACCT_FLUSH } };
    struct json *o = json_object();
    char k[48];
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        enum blk_acct_type t = kinds[i].t;
        const char *n = kinds[i].name;
        if (t != BLK_ACCT_FLUSH) {
            snprintf(k, sizeof k, "%s_bytes", n);
            o = obj_add(o, k, u64(v->bytes[t]));
        }
        snprintf(k, sizeof k, "%s_operations", n);
        o = obj_add(o, k, u64(v->ops[t]));
        snprintf(k, sizeof k, "%s_total_time_ns", n);
        o = obj_add(o, k, u64(v->total_time_ns[t]));
        snprintf(k, sizeof k, "failed_%s_operations", n);
        o = obj_add(o, k, u64(v->failed_ops[t]));
        snprintf(k, sizeof k, "invalid_%s_operations", n);
        o = obj_add(o, k, u64(v->invalid_ops[t]));
        if (t != BLK_ACCT_FLUSH) {
            snprintf(k, sizeof k, "%s_merged", n);   /* kvmbox never merges requests */
            o = obj_add(o, k, json_int(0));
        }
    }
    o = obj_add(o, "wr_highest_offset", u64(wr_highest));
    if (v->last_access_ns) {
        uint64_t now = now_ns();
        o = obj_add(o, "idle_time_ns", u64(now > v->last_access_ns ? now - v->last_access_ns : 0));
    }
    o = obj_add(o, "account_invalid", json_bool(s != NULL));
    o = obj_add(o, "account_failed", json_bool(s != NULL));
    return obj_add(o, "timed_stats", json_array());
}

struct json *cmd_query_blockstats(struct monitor *m, const struct json *a, struct qmp_error *e)
{
    struct vm *vm = m->vm;
    struct json *list = json_array();
    for (unsigned i = 0; list && i < vm->nr_blocks; i++) {
        const struct vm_block *blk = &vm->blocks[i];
        if (!blk->backend)
            continue;
        struct blk_stats st;
        blk_get_stats(blk->backend, &st);
        bool raw = !strcmp(blk_format(blk->backend), "raw");
        bool discard = blk->drive && blk->drive->discard;

        /* The file child: raw passes offsets through unchanged; for other
         * formats the host file's own offsets are not tracked. file-posix's
         * discard counters count the discards that reached the file. */
        struct json *ds = json_object();
        ds = obj_add(ds, "driver", json_string("file"));
        ds = obj_add(ds, "discard-nb-ok", u64(discard && raw ? st.ops[BLK_ACCT_UNMAP] : 0));
        ds = obj_add(ds, "discard-nb-failed",
                     u64(discard && raw ? st.failed_ops[BLK_ACCT_UNMAP] : 0));
        ds = obj_add(ds, "discard-bytes-ok", u64(discard && raw ? st.bytes[BLK_ACCT_UNMAP] : 0));
        char node[32], qdev[256];
        node_name(node, sizeof node, i, true);
        struct json *parent = json_object();
        parent = obj_add(parent, "node-name", json_string(node));
        parent = obj_add(parent, "stats", device_stats(NULL, raw ? st.wr_highest_offset : 0));
        parent = obj_add(parent, "driver-specific", ds);

        node_name(node, sizeof node, i, false);
        block_qdev(vm, blk, qdev, sizeof qdev);
        struct json *o = json_object();
        o = obj_add(o, "device", json_string(blk->id ? blk->id : ""));
        o = obj_add(o, "qdev", json_string(qdev));
        o = obj_add(o, "node-name", json_string(node));
        o = obj_add(o, "stats", device_stats(&st, st.wr_highest_offset));
        o = obj_add(o, "parent", parent);
        if (!list_add(list, o, e))
            return NULL;
    }
    if (!list)
        qmp_error_set(e, QERR_GENERIC, "Out of memory");
    return list;
}
