/* query-pci, query-block, query-blockstats and `info pci/block/blockstats`
 * without KVM: a hand-built struct vm with a real PCI bus (no VM behind it)
 * holding model-named functions like virtio_devices.c registers them, and
 * a real raw block back end over a temporary file whose requests are
 * drained on the test thread. */
#include "test.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "arch/x86/layout.h"
#include "block/block.h"
#include "core/loop.h"
#include "core/vm.h"
#include "hw/pci/pci.h"
#include "monitor/commands.h"
#include "monitor/monitor_internal.h"

struct out {
    char buf[16384];
    size_t len;
};

static void collect(void *opaque, const void *data, size_t len)
{
    struct out *o = opaque;
    if (o->len + len + 1 > sizeof o->buf)
        len = sizeof o->buf - o->len - 1;
    memcpy(o->buf + o->len, data, len);
    o->len += len;
    o->buf[o->len] = '\0';
}

static void nop_read(void *opaque, uint64_t off, void *data, unsigned len)
{
    memset(data, 0, len);
}
static void nop_write(void *opaque, uint64_t off, const void *data, unsigned len) { }
static const struct bus_ops nop_ops = { nop_read, nop_write };

struct fixture {
    struct vm vm;
    struct vm_config cfg;
    struct bus pio, mmio;
    struct pci_bus pb;
    struct pci_device fn[3];
    struct loop *loop;
    char path[64];
    struct out out;
    struct monitor *hmp;
};

/* -device virtio-rng-pci (anonymous, first free slot: 1),
 * -device virtio-blk-pci,drive=d1,id=vd1,addr=5,
 * -device virtio-serial-pci,id=ser (slot 2), -device virtio-blk-pci,drive=d0
 * (anonymous: the second -device without id, slot 3). */
static struct fixture *fixture_new(void)
{
    struct fixture *f = calloc(1, sizeof *f);
    f->cfg.name = "q";
    f->vm.cfg = &f->cfg;
    f->vm.vm_fd = -1;
    f->cfg.devices[0] = (struct device_config){ .kind = DEVICE_VIRTIO_RNG, .devfn = -1 };
    f->cfg.devices[1] = (struct device_config){ .kind = DEVICE_VIRTIO_BLK, .id = "vd1",
                                                .drive = "d1", .devfn = 5 << 3 };
    f->cfg.devices[2] = (struct device_config){ .kind = DEVICE_VIRTIO_SERIAL, .id = "ser",
                                                .devfn = -1 };
    f->cfg.devices[3] = (struct device_config){ .kind = DEVICE_VIRTIO_BLK, .drive = "d0",
                                                .devfn = -1 };
    f->cfg.nr_devices = 4;
    bus_init(&f->pio);
    bus_init(&f->mmio);
    struct pci_bus_config pcfg = {
        .mmio_base = LAYOUT_PCI_MMIO_BASE, .mmio_size = LAYOUT_PCI_MMIO_SIZE,
        .io_base = LAYOUT_PCI_IO_BASE, .io_size = LAYOUT_PCI_IO_SIZE,
        .intx_gsi_base = 16,
    };
    if (pci_bus_init(&f->pb, NULL, &f->pio, &f->mmio, &pcfg) < 0)
        return NULL;
    static const struct {
        const char *name;
        int devfn;
        uint16_t id, subsys;
        uint32_t class;
    } fns[] = {
        { "virtio-rng-pci", -1, 0x1005, 4, 0x00ff00 },
        { "virtio-blk-pci", 5 << 3, 0x1001, 2, 0x010000 },
        { "virtio-serial-pci", -1, 0x1003, 3, 0x078000 },
    };
    for (unsigned i = 0; i < 3; i++) {
        f->fn[i].name = fns[i].name;
        if (pci_device_register(&f->pb, &f->fn[i], fns[i].devfn, 0x1af4, fns[i].id,
                                fns[i].class, 0, 0x1af4, fns[i].subsys) < 0 ||
            pci_register_bar(&f->fn[i], 0, PCI_BAR_IO, 32, false, &nop_ops, NULL) < 0 ||
            pci_register_bar(&f->fn[i], 1, PCI_BAR_MEM32, 4096, false, &nop_ops, NULL) < 0 ||
            pci_register_bar(&f->fn[i], 4, PCI_BAR_MEM64, 16384, true, &nop_ops, NULL) < 0)
            return NULL;
    }
    f->vm.pci = &f->pb;
    f->hmp = monitor_new_output(&f->vm, MONITOR_HMP, false, collect, &f->out);
    return f;
}

static void fixture_free(struct fixture *f)
{
    monitor_free(f->hmp);
    for (unsigned i = 0; i < f->vm.nr_blocks; i++)
        blk_close(f->vm.blocks[i].backend);
    if (f->loop)
        loop_free(f->loop);
    if (*f->path)
        unlink(f->path);
    for (unsigned i = 0; i < 3; i++)
        pci_device_unregister(&f->fn[i]);
    pci_bus_destroy(&f->pb);
    bus_destroy(&f->pio);
    bus_destroy(&f->mmio);
    free(f);
}

static const char *hmp(struct fixture *f, const char *line)
{
    f->out.len = 0;
    f->out.buf[0] = '\0';
    monitor_input(f->hmp, (const uint8_t *)line, strlen(line));
    monitor_input(f->hmp, (const uint8_t *)"\r", 1);
    char *p = strstr(f->out.buf, "\r\n");
    p = p ? p + 2 : f->out.buf;
    size_t n = strlen(p);
    if (n >= 7 && !strcmp(p + n - 7, "(qemu) "))
        p[n - 7] = '\0';
    return p;
}

static struct json *run(struct fixture *f, qmp_cmd_fn fn)
{
    struct qmp_error e = { 0 };
    struct monitor *m = monitor_new_output(&f->vm, MONITOR_QMP, false, collect, &f->out);
    struct json *args = json_object();
    struct json *r = fn(m, args, &e);
    json_free(args);
    monitor_free(m);
    return r;
}

static int64_t iget(const struct json *o, const char *k) { return json_get_int(json_object_get(o, k)); }
static const char *sget(const struct json *o, const char *k)
{
    return json_get_string(json_object_get(o, k));
}

TEST(query_pci_devices)
{
    struct fixture *f = fixture_new();
    CHECK(f);
    CHECK_EQ(pci_bus_assign_resources(&f->pb), 0);
    struct json *r = run(f, cmd_query_pci);
    CHECK_EQ(json_array_len(r), 1);
    CHECK_EQ(iget(json_array_at(r, 0), "bus"), 0);
    struct json *devs = json_object_get(json_array_at(r, 0), "devices");
    CHECK_EQ(json_array_len(devs), 4);
    static const struct { int slot; const char *qdev; int cls; const char *desc; } want[] = {
        { 0, "", 0x0600, "Host bridge" }, { 1, "", 0x00ff, NULL },
        { 2, "ser", 0x0780, NULL }, { 5, "vd1", 0x0100, "SCSI controller" },
    };
    for (unsigned i = 0; i < 4; i++) {
        struct json *d = json_array_at(devs, i);
        struct json *ci = json_object_get(d, "class_info");
        CHECK_EQ(iget(d, "slot"), want[i].slot);
        CHECK_EQ(iget(d, "function"), 0);
        CHECK_STR(sget(d, "qdev_id"), want[i].qdev);
        CHECK_EQ(iget(ci, "class"), want[i].cls);
        if (want[i].desc)
            CHECK_STR(sget(ci, "desc"), want[i].desc);
        else
            CHECK(!json_object_get(ci, "desc"));
        if (i == 0) {
            CHECK(!json_object_get(d, "irq"));
            CHECK_EQ(iget(d, "irq_pin"), 0);
            CHECK_EQ(json_array_len(json_object_get(d, "regions")), 0);
            continue;
        }
        CHECK_EQ(iget(d, "irq_pin"), 1);
        CHECK_EQ(iget(d, "irq"), 16 + (want[i].slot % 4));    /* assign_resources: the GSI */
        CHECK_EQ(iget(json_object_get(d, "id"), "vendor"), 0x1af4);
        struct json *regs = json_object_get(d, "regions");
        CHECK_EQ(json_array_len(regs), 3);      /* the MEM64's upper half is no region */
        struct json *io = json_array_at(regs, 0), *m32 = json_array_at(regs, 1),
                    *m64 = json_array_at(regs, 2);
        CHECK_STR(sget(io, "type"), "io");
        CHECK(!json_object_get(io, "prefetch") && !json_object_get(io, "mem_type_64"));
        CHECK_EQ(iget(io, "size"), 32);
        CHECK(iget(io, "address") >= LAYOUT_PCI_IO_BASE);
        CHECK_EQ(iget(m32, "bar"), 1);
        CHECK(!json_get_bool(json_object_get(m32, "mem_type_64")));
        CHECK(!json_get_bool(json_object_get(m32, "prefetch")));
        CHECK_EQ(iget(m64, "bar"), 4);
        CHECK(json_get_bool(json_object_get(m64, "mem_type_64")));
        CHECK(json_get_bool(json_object_get(m64, "prefetch")));
        CHECK_EQ(iget(m64, "size"), 16384);
        CHECK_EQ(iget(m64, "address") % 16384, 0);
        CHECK(iget(m64, "address") >= (int64_t)LAYOUT_PCI_MMIO_BASE);
    }
    json_free(r);
    fixture_free(f);
}

TEST(info_pci_text)
{
    struct fixture *f = fixture_new();
    CHECK(f);
    /* Not decoding (power-on state): QEMU's PCI_BAR_UNMAPPED. */
    const char *out = hmp(f, "info pci");
    static const char head[] = "  Bus  0, device   0, function 0:\r\n"
                        "    Host bridge: PCI device 1b36:0008\r\n"
                        "      PCI subsystem 1b36:1100\r\n"
                        "      id \"\"\r\n"
                        "  Bus  0, device   1, function 0:\r\n"
                        "    Class 0255: PCI device 1af4:1005\r\n"
                        "      PCI subsystem 1af4:0004\r\n"
                        "      IRQ 0, pin A\r\n"
                        "      BAR0: I/O at 0xffffffffffffffff [0x001e].\r\n"
                        "      BAR1: 32 bit memory at 0xffffffffffffffff [0x00000ffe].\r\n"
                        "      BAR4: 64 bit prefetchable memory at 0xffffffffffffffff "
                        "[0x00003ffe].\r\n"
                        "      id \"\"\r\n";
    CHECK(!strncmp(out, head, strlen(head)));
    CHECK(strstr(out, "  Bus  0, device   5, function 0:\r\n    SCSI controller: PCI device "
                      "1af4:1001\r\n"));
    CHECK(strstr(out, "      id \"vd1\"\r\n"));
    CHECK_EQ(pci_bus_assign_resources(&f->pb), 0);
    struct json *r = run(f, cmd_query_pci);
    struct json *io = json_array_at(json_object_get(json_array_at(json_object_get(
        json_array_at(r, 0), "devices"), 1), "regions"), 0);
    char want[96];
    snprintf(want, sizeof want, "      BAR0: I/O at 0x%04llx [0x%04llx].\r\n",
             (long long)iget(io, "address"), (long long)iget(io, "address") + 31);
    json_free(r);
    out = hmp(f, "info pci");
    CHECK(strstr(out, want));
    CHECK(strstr(out, "      IRQ 17, pin A\r\n"));
    fixture_free(f);
}

TEST(no_pci_bus)
{
    struct fixture *f = fixture_new();
    CHECK(f);
    f->vm.pci = NULL;
    struct json *r = run(f, cmd_query_pci);
    CHECK(r);
    CHECK_EQ(json_array_len(r), 0);
    json_free(r);
    CHECK_STR(hmp(f, "info pci"), "");
    fixture_free(f);
}

static int done_count, last_ret;
static void req_done(struct blk_req *r, int ret)
{
    done_count++;
    last_ret = ret;
}

/* d0 (the anonymous virtio-blk-pci) over a 64 KiB raw file. */
static struct block_backend *add_drive(struct fixture *f)
{
    snprintf(f->path, sizeof f->path, "/tmp/kvmbox-qtest.XXXXXX");
    int fd = mkstemp(f->path);
    if (fd < 0)
        return NULL;
    int r = ftruncate(fd, 65536);
    close(fd);
    if (r < 0 || !(f->loop = loop_new(NULL, NULL)))
        return NULL;
    f->cfg.drives[0] = (struct drive_config){ .id = "d0", .file = f->path, .format = "raw",
                                              .index = -1 };
    f->cfg.nr_drives = 1;
    struct blk_options o = { .filename = f->path, .format = "raw" };
    char err[256];
    struct block_backend *b = blk_open(&o, f->loop, err, sizeof err);
    if (!b)
        return NULL;
    f->vm.blocks[0] = (struct vm_block){ .id = "d0", .qdev = "virtio-blk-pci",
                                         .drive = &f->cfg.drives[0], .backend = b };
    f->vm.nr_blocks = 1;
    return b;
}

static void io(struct block_backend *b, enum blk_op op, uint64_t off, uint64_t len)
{
    static uint8_t buf[16384];
    struct iovec iov = { buf, len };
    struct blk_req r = { .op = op, .offset = off, .len = len, .done = req_done };
    if (op == BLK_OP_READ || op == BLK_OP_WRITE) {
        r.iov = &iov;
        r.iovcnt = 1;
    }
    blk_submit(b, &r);
    blk_drain(b);
}

TEST(query_block_and_stats)
{
    struct fixture *f = fixture_new();
    CHECK(f);
    struct block_backend *b = add_drive(f);
    CHECK(b);
    struct json *r = run(f, cmd_query_block);
    CHECK_EQ(json_array_len(r), 1);
    struct json *e = json_array_at(r, 0), *ins = json_object_get(e, "inserted");
    CHECK_STR(sget(e, "device"), "d0");
    CHECK_STR(sget(e, "qdev"), "/machine/peripheral-anon/device[1]/virtio-backend");
    CHECK_STR(sget(e, "type"), "unknown");
    CHECK_STR(sget(e, "io-status"), "ok");
    CHECK_STR(sget(ins, "file"), f->path);
    CHECK_STR(sget(ins, "drv"), "raw");
    CHECK(!json_get_bool(json_object_get(ins, "ro")));
    CHECK_EQ(iget(json_object_get(ins, "image"), "virtual-size"), 65536);
    CHECK(json_get_bool(json_object_get(json_object_get(ins, "cache"), "writeback")));
    json_free(r);

    r = run(f, cmd_query_blockstats);
    struct json *s = json_object_get(json_array_at(r, 0), "stats");
    CHECK_EQ(iget(s, "rd_operations"), 0);
    CHECK(!json_object_get(s, "idle_time_ns"));
    json_free(r);

    done_count = 0;
    io(b, BLK_OP_WRITE, 4096, 8192);
    io(b, BLK_OP_WRITE, 0, 512);
    io(b, BLK_OP_READ, 0, 16384);
    io(b, BLK_OP_FLUSH, 0, 0);
    io(b, BLK_OP_DISCARD, 0, 4096);         /* discard=ignore: an unmap that succeeds */
    io(b, BLK_OP_READ, 65536, 512);         /* beyond the end: invalid */
    CHECK_EQ(last_ret, -EIO);
    CHECK_EQ(done_count, 6);

    r = run(f, cmd_query_blockstats);
    e = json_array_at(r, 0);
    s = json_object_get(e, "stats");
    CHECK_STR(sget(e, "device"), "d0");
    CHECK_EQ(iget(s, "wr_operations"), 2);
    CHECK_EQ(iget(s, "wr_bytes"), 8704);
    CHECK_EQ(iget(s, "rd_operations"), 1);
    CHECK_EQ(iget(s, "rd_bytes"), 16384);
    CHECK_EQ(iget(s, "flush_operations"), 1);
    CHECK_EQ(iget(s, "unmap_operations"), 1);
    CHECK_EQ(iget(s, "unmap_bytes"), 4096);
    CHECK_EQ(iget(s, "invalid_rd_operations"), 1);
    CHECK_EQ(iget(s, "failed_rd_operations"), 0);
    CHECK_EQ(iget(s, "wr_highest_offset"), 12288);
    CHECK(iget(s, "rd_total_time_ns") > 0);
    CHECK_EQ(json_typeof(json_object_get(s, "idle_time_ns")), JSON_INT);
    CHECK_EQ(json_array_len(json_object_get(s, "timed_stats")), 0);
    struct json *p = json_object_get(e, "parent");
    CHECK_EQ(iget(json_object_get(p, "stats"), "rd_operations"), 0);
    CHECK_EQ(iget(json_object_get(p, "stats"), "wr_highest_offset"), 12288);
    CHECK_STR(sget(json_object_get(p, "driver-specific"), "driver"), "file");
    char want[400];
    snprintf(want, sizeof want, "d0: rd_bytes=16384 wr_bytes=8704 rd_operations=1 "
             "wr_operations=2 flush_operations=1 wr_total_time_ns=%lld rd_total_time_ns=%lld "
             "flush_total_time_ns=%lld rd_merged=0 wr_merged=0 idle_time_ns=",
             (long long)iget(s, "wr_total_time_ns"), (long long)iget(s, "rd_total_time_ns"),
             (long long)iget(s, "flush_total_time_ns"));
    json_free(r);
    CHECK(!strncmp(hmp(f, "info blockstats"), want, strlen(want)));

    snprintf(want, sizeof want, "d0 (#block100): %s (raw)\r\n"
             "    Attached to:      /machine/peripheral-anon/device[1]/virtio-backend\r\n"
             "    Cache mode:       writeback\r\n", f->path);
    CHECK_STR(hmp(f, "info block"), want);
    CHECK_STR(hmp(f, "info block d0 "), want);
    CHECK_STR(hmp(f, "info block d9"), "");
    fixture_free(f);
}

int main(void)
{
    RUN(query_pci_devices);
    RUN(info_pci_text);
    RUN(no_pci_bus);
    RUN(query_block_and_stats);
    return test_summary();
}
