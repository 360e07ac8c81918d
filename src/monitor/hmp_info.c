/* HMP `info` subcommands: QEMU's text layouts over the same results the
 * QMP query commands return. */
#include "monitor/hmp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/vm.h"

/* Run a query command; NULL (error printed) on failure. */
static struct json *query(struct monitor *m, qmp_cmd_fn fn)
{
    struct qmp_error e = { 0 };
    struct json *args = json_object();
    struct json *r = args ? fn(m, args, &e) : NULL;
    json_free(args);
    if (!r && e.cls)
        hmp_report_error(m, &e);
    return r;
}

static const char *str(const struct json *o, const char *k)
{
    const char *s = json_get_string(json_object_get(o, k));
    return s ? s : "";
}

static void info_version(struct monitor *m, char *args)
{
    struct json *v = query(m, cmd_query_version);
    struct json *q = json_object_get(v, "qemu");
    monitor_printf(m, "%lld.%lld.%lld%s\n", (long long)json_get_int(json_object_get(q, "major")),
            (long long)json_get_int(json_object_get(q, "minor")),
            (long long)json_get_int(json_object_get(q, "micro")), str(v, "package"));
    json_free(v);
}

static void info_name(struct monitor *m, char *args)
{
    struct json *v = query(m, cmd_query_name);
    if (json_object_get(v, "name"))
        monitor_printf(m, "%s\n", str(v, "name"));
    json_free(v);
}

static void info_status(struct monitor *m, char *args)
{
    struct json *v = query(m, cmd_query_status);
    if (!v)
        return;
    bool running = json_get_bool(json_object_get(v, "running"));
    monitor_printf(m, "VM status: %s", running ? "running" : "paused");
    if (!running && strcmp(str(v, "status"), "paused"))
        monitor_printf(m, " (%s)", str(v, "status"));
    monitor_printf(m, "\n");
    json_free(v);
}

static void info_kvm(struct monitor *m, char *args)
{
    struct json *v = query(m, cmd_query_kvm);
    if (json_get_bool(json_object_get(v, "present")))
        monitor_printf(m, "kvm support: %s\n",
                json_get_bool(json_object_get(v, "enabled")) ? "enabled" : "disabled");
    else
        monitor_printf(m, "kvm support: not compiled\n");
    json_free(v);
}

static void info_uuid(struct monitor *m, char *args)
{
    struct json *v = query(m, cmd_query_uuid);
    if (v)
        monitor_printf(m, "%s\n", str(v, "UUID"));
    json_free(v);
}

static void info_cpus(struct monitor *m, char *args)
{
    struct json *v = query(m, cmd_query_cpus_fast);
    for (size_t i = 0; i < json_array_len(v); i++) {
        struct json *c = json_array_at(v, i);
        int64_t idx = json_get_int(json_object_get(c, "cpu-index"));
        monitor_printf(m, "%c CPU #%lld: thread_id=%lld\n", idx == m->hmp.cur_cpu ? '*' : ' ',
                (long long)idx, (long long)json_get_int(json_object_get(c, "thread-id")));
    }
    json_free(v);
}

static void info_chardev(struct monitor *m, char *args)
{
    struct json *v = query(m, cmd_query_chardev);
    for (size_t i = 0; i < json_array_len(v); i++) {
        struct json *c = json_array_at(v, i);
        monitor_printf(m, "%s: filename=%s\n", str(c, "label"), str(c, "filename"));
    }
    json_free(v);
}

static long long num(const struct json *o, const char *k)
{
    return (long long)json_get_int(json_object_get(o, k));
}

static bool flag(const struct json *o, const char *k)
{
    return json_get_bool(json_object_get(o, k));
}

/* QEMU's hmp_info_pci_device layout (bridges aside: kvmbox has none). */
static void info_pci(struct monitor *m, char *args)
{
    struct json *v = query(m, cmd_query_pci);
    for (size_t b = 0; b < json_array_len(v); b++) {
        struct json *devs = json_object_get(json_array_at(v, b), "devices");
        for (size_t i = 0; i < json_array_len(devs); i++) {
            struct json *d = json_array_at(devs, i);
            struct json *ci = json_object_get(d, "class_info");
            struct json *id = json_object_get(d, "id");
            monitor_printf(m, "  Bus %2lld, device %3lld, function %lld:\n", num(d, "bus"),
                    num(d, "slot"), num(d, "function"));
            if (json_object_get(ci, "desc"))
                monitor_printf(m, "    %s", str(ci, "desc"));
            else
                monitor_printf(m, "    Class %04lld", num(ci, "class"));
            monitor_printf(m, ": PCI device %04llx:%04llx\n", num(id, "vendor"),
                    num(id, "device"));
            if (json_object_get(id, "subsystem-vendor") && json_object_get(id, "subsystem"))
                monitor_printf(m, "      PCI subsystem %04llx:%04llx\n",
                        num(id, "subsystem-vendor"), num(id, "subsystem"));
            if (json_object_get(d, "irq"))
                monitor_printf(m, "      IRQ %lld, pin %c\n", num(d, "irq"),
                        (char)('A' + num(d, "irq_pin") - 1));
            struct json *regions = json_object_get(d, "regions");
            for (size_t r = 0; r < json_array_len(regions); r++) {
                struct json *reg = json_array_at(regions, r);
                unsigned long long addr = (unsigned long long)num(reg, "address");
                unsigned long long end = addr + (unsigned long long)num(reg, "size") - 1;
                monitor_printf(m, "      BAR%lld: ", num(reg, "bar"));
                if (!strcmp(str(reg, "type"), "io"))
                    monitor_printf(m, "I/O at 0x%04llx [0x%04llx].\n", addr, end);
                else
                    monitor_printf(m, "%d bit%s memory at 0x%08llx [0x%08llx].\n",
                            flag(reg, "mem_type_64") ? 64 : 32,
                            flag(reg, "prefetch") ? " prefetchable" : "", addr, end);
            }
            monitor_printf(m, "      id \"%s\"\n", str(d, "qdev_id"));
        }
    }
    json_free(v);
}

/* info block [device]: QEMU's print_block_info for each BlockBackend. */
static void info_block(struct monitor *m, char *args)
{
    size_t n = strlen(args);
    while (n && args[n - 1] == ' ')
        args[--n] = '\0';
    struct json *v = query(m, cmd_query_block);
    bool first = true;
    for (size_t i = 0; i < json_array_len(v); i++) {
        struct json *b = json_array_at(v, i);
        if (*args && strcmp(args, str(b, "device")))
            continue;
        struct json *ins = json_object_get(b, "inserted");
        if (!first)
            monitor_printf(m, "\n");
        first = false;
        if (*str(b, "device")) {
            monitor_printf(m, "%s", str(b, "device"));
            if (json_object_get(ins, "node-name"))
                monitor_printf(m, " (%s)", str(ins, "node-name"));
        } else {
            monitor_printf(m, "%s", json_object_get(ins, "node-name") ? str(ins, "node-name")
                               : json_object_get(b, "qdev") ? str(b, "qdev") : "<anonymous>");
        }
        if (ins)
            monitor_printf(m, ": %s (%s%s%s)\n", str(ins, "file"), str(ins, "drv"),
                    flag(ins, "ro") ? ", read-only" : "",
                    flag(ins, "encrypted") ? ", encrypted" : "");
        else
            monitor_printf(m, ": [not inserted]\n");
        if (json_object_get(b, "qdev"))
            monitor_printf(m, "    Attached to:      %s\n", str(b, "qdev"));
        if (json_object_get(b, "io-status") && strcmp(str(b, "io-status"), "ok"))
            monitor_printf(m, "    I/O status:       %s\n", str(b, "io-status"));
        if (flag(b, "removable"))
            monitor_printf(m, "    Removable device: %slocked, tray %s\n",
                    flag(b, "locked") ? "" : "not ", flag(b, "tray_open") ? "open" : "closed");
        if (!ins)
            continue;
        struct json *c = json_object_get(ins, "cache");
        monitor_printf(m, "    Cache mode:       %s%s%s\n",
                flag(c, "writeback") ? "writeback" : "writethrough",
                flag(c, "direct") ? ", direct" : "", flag(c, "no-flush") ? ", ignore flushes" : "");
        if (json_object_get(ins, "backing_file"))
            monitor_printf(m, "    Backing file:     %s (chain depth: %lld)\n",
                    str(ins, "backing_file"), num(ins, "backing_file_depth"));
        if (strcmp(str(ins, "detect_zeroes"), "off"))
            monitor_printf(m, "    Detect zeroes:    %s\n", str(ins, "detect_zeroes"));
    }
    json_free(v);
}

static void info_blockstats(struct monitor *m, char *args)
{
    struct json *v = query(m, cmd_query_blockstats);
    for (size_t i = 0; i < json_array_len(v); i++) {
        struct json *b = json_array_at(v, i);
        struct json *s = json_object_get(b, "stats");
        if (!json_object_get(b, "device"))
            continue;
        monitor_printf(m, "%s: rd_bytes=%lld wr_bytes=%lld rd_operations=%lld "
                "wr_operations=%lld flush_operations=%lld wr_total_time_ns=%lld "
                "rd_total_time_ns=%lld flush_total_time_ns=%lld rd_merged=%lld wr_merged=%lld "
                "idle_time_ns=%lld\n", str(b, "device"), num(s, "rd_bytes"), num(s, "wr_bytes"),
                num(s, "rd_operations"), num(s, "wr_operations"), num(s, "flush_operations"),
                num(s, "wr_total_time_ns"), num(s, "rd_total_time_ns"),
                num(s, "flush_total_time_ns"), num(s, "rd_merged"), num(s, "wr_merged"),
                num(s, "idle_time_ns"));
    }
    json_free(v);
}

/* No NICs yet: QEMU prints nothing without network clients. */
static void info_network(struct monitor *m, char *args) { }

static void info_registers(struct monitor *m, char *args)
{
    struct vm *vm = m->vm;
    unsigned first = m->hmp.cur_cpu, last = m->hmp.cur_cpu;
    if (!strcmp(args, "-a")) {
        first = 0;
        last = vm->nr_vcpus ? vm->nr_vcpus - 1 : 0;
    } else if (*args) {
        char *end;
        unsigned long n = strtoul(args, &end, 0);
        if (end == args || *end) {
            hmp_usage_error(m, "info registers", "info: integer expected");
            return;
        }
        if (n >= vm->nr_vcpus) {
            monitor_printf(m, "CPU#%lu not available\n", n);
            return;
        }
        first = last = (unsigned)n;
    }
    if (first >= vm->nr_vcpus) {
        monitor_printf(m, "No CPU available\n");
        return;
    }
    bool held = monitor_vcpus_hold(vm);
    for (unsigned i = first; i <= last; i++) {
        struct cpu_state s;
        if (cpu_state_read(&vm->vcpus[i], &s) < 0)
            monitor_printf(m, "\nCPU#%u\ncannot read the registers\n", i);
        else
            cpu_state_dump(m, &s, i);
    }
    monitor_vcpus_release(vm, held);
}

struct mtree_ctx {
    struct monitor *m;
    const char *kind;
};

static void mtree_range(void *opaque, const struct bus_range *r)
{
    struct mtree_ctx *c = opaque;
    monitor_printf(c->m, "    %016llx-%016llx (prio 0, %s): %s\n", (unsigned long long)r->base,
            (unsigned long long)(r->base + r->len - 1), c->kind, r->name ? r->name : "");
}

static void info_mtree(struct monitor *m, char *args)
{
    struct vm *vm = m->vm;
    struct mtree_ctx c = { m, "i/o" };
    monitor_printf(m, "address-space: I/O\n");
    monitor_printf(m, "  0000000000000000-000000000000ffff (prio 0, i/o): io\n");
    bus_for_each(&vm->pio, mtree_range, &c);
    monitor_printf(m, "\naddress-space: memory\n");
    monitor_printf(m, "  0000000000000000-ffffffffffffffff (prio 0, i/o): system\n");
    for (unsigned i = 0; i < vm->mem.n; i++) {
        const struct gmem_region *r = &vm->mem.regions[i];
        monitor_printf(m, "    %016llx-%016llx (prio 0, ram): %s\n", (unsigned long long)r->gpa,
                (unsigned long long)(r->gpa + r->size - 1),
                r->gpa < GMEM_HIGH_BASE ? "ram-below-4g" : "ram-above-4g");
    }
    bus_for_each(&vm->mmio, mtree_range, &c);
    monitor_printf(m, "\n");
}

static const struct hmp_command infos[] = {
    { "block", "[device]", "show info of one block device or all block devices", info_block },
    { "blockstats", "", "show block device statistics", info_blockstats },
    { "chardev", "", "show the character devices", info_chardev },
    { "cpus", "", "show infos for each CPU", info_cpus },
    { "kvm", "", "show KVM information", info_kvm },
    { "mtree", "", "show memory tree", info_mtree },
    { "name", "", "show the current VM name", info_name },
    { "network", "", "show the network state", info_network },
    { "pci", "", "show PCI info", info_pci },
    { "registers", "[-a|vcpu]", "show the cpu registers (-a: show register info for all "
      "cpus; vcpu: specific vCPU to query; show the current CPU's registers if no argument "
      "is specified)", info_registers },
    { "status", "", "show the current VM status (running|paused)", info_status },
    { "uuid", "", "show the current VM UUID", info_uuid },
    { "version", "", "show the version of QEMU", info_version },
};
#define NR_INFOS (sizeof infos / sizeof infos[0])

void hmp_info_help(struct monitor *m, const char *args)
{
    while (*args == ' ')
        args++;
    for (size_t i = 0; i < NR_INFOS; i++)
        if (!*args || !strcmp(args, infos[i].name))
            monitor_printf(m, "info %s %s -- %s\n", infos[i].name, infos[i].args, infos[i].help);
}

void hmp_info(struct monitor *m, char *args)
{
    char *p = args;
    while (*p == ' ')
        p++;
    if (!*p) {
        hmp_info_help(m, "");
        return;
    }
    char *name = p;
    while (*p && *p != ' ')
        p++;
    if (*p)
        *p++ = '\0';
    while (*p == ' ')
        p++;
    for (size_t i = 0; i < NR_INFOS; i++) {
        if (strcmp(infos[i].name, name))
            continue;
        if (*p && !infos[i].args[0]) {
            char msg[96], cmd[48];
            snprintf(msg, sizeof msg, "%s: extraneous characters at the end of line", name);
            snprintf(cmd, sizeof cmd, "info %s", name);
            hmp_usage_error(m, cmd, msg);
            return;
        }
        infos[i].fn(m, p);
        return;
    }
    monitor_printf(m, "unknown command: 'info %s'\n", name);
}
