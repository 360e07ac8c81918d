/* The qemu-kvm command line. Every option kvmbox accepts is in the table
 * below; anything else is an error naming the option (exit 2), never
 * silently ignored. */
#include "config/config.h"
#include "config/keyval.h"
#include "version.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ERRLEN 256

struct parse_ctx {
    struct vm_config *cfg;
    const char *option;     /* the option being parsed, without dashes */
    char err[ERRLEN];
    bool exit_ok;           /* a help/version listing was printed */
    unsigned monitor_index; /* QEMU's compat_monitorN counter */
};

typedef int (*option_fn)(struct parse_ctx *ctx, const char *arg);

struct option_def {
    const char *name;
    bool has_arg;
    option_fn fn;
    const char *help;       /* "-m [size=]N[kMG]   guest RAM (default 128M)" */
};

static int fail(struct parse_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int fail(struct parse_ctx *ctx, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->err, sizeof ctx->err, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

static int set_string(char **dst, const char *v)
{
    char *s = strdup(v);
    if (!s)
        return -ENOMEM;
    free(*dst);
    *dst = s;
    return 0;
}

static bool is_help(const char *v) { return !strcmp(v, "help") || !strcmp(v, "?"); }

/* ---- option handlers ---- */

static int opt_m(struct parse_ctx *ctx, const char *arg)
{
    struct keyval kv;
    if (keyval_parse(&kv, arg, "size") < 0)
        return fail(ctx, "-m: cannot parse '%s' (expected [size=]N[kMGT], e.g. 128M or 2G)", arg);
    const char *size = keyval_get(&kv, "size");
    const char *unused = keyval_unused(&kv);
    int ret = 0;
    uint64_t bytes;
    if (unused) {
        /* slots=/maxmem= describe memory hotplug, which kvmbox lacks */
        ret = fail(ctx, "-m: '%s' is not supported (expected [size=]N[kMGT])", unused);
    } else if (!size || config_parse_size(size, 1ULL << 20, &bytes) < 0) {
        ret = fail(ctx, "-m: invalid size '%s' (expected [size=]N[kMGT], e.g. 128M or 2G)",
                   size ? size : arg);
    } else if (bytes < (2ULL << 20)) {
        ret = fail(ctx, "-m: %s is too small (expected at least 2M)", size);
    } else if (bytes > (1ULL << 40)) {
        ret = fail(ctx, "-m: %s is more than kvmbox supports (expected at most 1T)", size);
    } else {
        /* Guest RAM is mapped in whole pages: round up like QEMU. */
        ctx->cfg->ram_size = (bytes + 0xFFF) & ~0xFFFULL;
    }
    keyval_free(&kv);
    return ret;
}

static int opt_smp(struct parse_ctx *ctx, const char *arg)
{
    return config_parse_smp(arg, &ctx->cfg->smp, ctx->err, sizeof ctx->err);
}

static int opt_kernel(struct parse_ctx *ctx, const char *arg)
{
    return set_string(&ctx->cfg->kernel, arg);
}

static int opt_initrd(struct parse_ctx *ctx, const char *arg)
{
    return set_string(&ctx->cfg->initrd, arg);
}

static int opt_append(struct parse_ctx *ctx, const char *arg)
{
    return set_string(&ctx->cfg->append, arg);
}

static int opt_name(struct parse_ctx *ctx, const char *arg)
{
    struct keyval kv;
    if (keyval_parse(&kv, arg, "guest") < 0)
        return fail(ctx, "-name: cannot parse '%s' (expected NAME[,process=P][,debug-threads=on|off])", arg);
    const char *guest = keyval_get(&kv, "guest");
    keyval_get(&kv, "process");         /* process title: accepted, unused */
    keyval_get(&kv, "debug-threads");   /* thread names are always set */
    const char *unused = keyval_unused(&kv);
    int ret = 0;
    if (unused)
        ret = fail(ctx, "-name: unknown parameter '%s' (expected NAME[,process=P][,debug-threads=on|off])", unused);
    else if (guest)
        ret = set_string(&ctx->cfg->name, guest);
    keyval_free(&kv);
    return ret;
}

static int opt_nographic(struct parse_ctx *ctx, const char *arg)
{
    ctx->cfg->nographic = true;
    return 0;
}

static int opt_display(struct parse_ctx *ctx, const char *arg)
{
    if (!strcmp(arg, "none") || !strncmp(arg, "none,", 5))
        return 0;
    if (is_help(arg)) {
        printf("Available display backend types:\nnone\n");
        ctx->exit_ok = true;
        return 0;
    }
    return fail(ctx, "-display: '%s' is not supported (expected none; use -nographic for a serial console)", arg);
}

static int opt_vga(struct parse_ctx *ctx, const char *arg)
{
    if (!strcmp(arg, "none"))
        return 0;
    return fail(ctx, "-vga: '%s' is not supported yet (expected none)", arg);
}

/* Take ownership of spec (freed on failure). Ids are unique across every
 * chardev, implied ones included (QEMU: "Duplicate ID"). */
static int add_chardev(struct parse_ctx *ctx, struct chardev_spec *spec)
{
    struct vm_config *cfg = ctx->cfg;
    int ret = 0;
    if (config_find_chardev(cfg, spec->id))
        ret = fail(ctx, "%s: duplicate chardev id '%s' (expected a unique id=)",
                   spec->option, spec->id);
    else if (cfg->nr_chardevs == CONFIG_MAX_CHARDEVS)
        ret = fail(ctx, "%s: too many character devices (at most %d)", spec->option,
                   CONFIG_MAX_CHARDEVS);
    if (ret) {
        config_free_chardev(spec);
        return ret;
    }
    cfg->chardevs[cfg->nr_chardevs++] = *spec;
    return 0;
}

/* A chardev spec from the compact syntax, named id. */
static int add_compat_chardev(struct parse_ctx *ctx, const char *option, const char *arg,
                              const char *id, bool mux)
{
    struct chardev_spec spec;
    int ret = config_parse_chardev_compat(option, arg, &spec, ctx->err, sizeof ctx->err);
    if (ret == 0 && !(spec.id = strdup(id)))
        ret = -ENOMEM;
    if (ret) {
        config_free_chardev(&spec);
        return ret;
    }
    spec.mux = mux;
    return add_chardev(ctx, &spec);
}

static int add_monitor(struct parse_ctx *ctx, const char *option, const char *chardev,
                       enum config_monitor_mode mode, bool pretty)
{
    struct vm_config *cfg = ctx->cfg;
    if (cfg->nr_monitors == CONFIG_MAX_MONITORS)
        return fail(ctx, "%s: too many monitors (at most %d)", option, CONFIG_MAX_MONITORS);
    char *id = strdup(chardev);
    if (!id)
        return -ENOMEM;
    cfg->monitors[cfg->nr_monitors++] = (struct monitor_config){ id, mode, pretty };
    return 0;
}

static int opt_chardev(struct parse_ctx *ctx, const char *arg)
{
    struct chardev_spec spec;
    int ret = config_parse_chardev_opts(arg, &spec, ctx->err, sizeof ctx->err);
    return ret ? ret : add_chardev(ctx, &spec);
}

/* -serial DEV: COMn on a new chardev "serialN", on an existing one
 * (chardev:ID), or (mon:DEV) on a mux shared with an HMP monitor. */
static int opt_serial(struct parse_ctx *ctx, const char *arg)
{
    struct vm_config *cfg = ctx->cfg;
    if (cfg->nr_serial == CONFIG_MAX_SERIAL)
        return fail(ctx, "-serial: at most %d serial ports (COM1-COM4)", CONFIG_MAX_SERIAL);
    cfg->serial_given = true;
    unsigned index = cfg->nr_serial++;
    if (!strcmp(arg, "none"))
        return 0;
    if (!strncmp(arg, "chardev:", 8)) {
        if (!arg[8])
            return fail(ctx, "-serial: chardev: needs an id (expected chardev:ID)");
        return set_string(&cfg->serial[index], arg + 8);
    }
    char id[16];
    snprintf(id, sizeof id, "serial%u", index);
    bool mon = !strncmp(arg, "mon:", 4);
    if (mon && (!strcmp(arg + 4, "none") || !strncmp(arg + 4, "mon:", 4) ||
                !strncmp(arg + 4, "chardev:", 8)))
        return fail(ctx, "-serial: '%s' is not supported (expected mon:DEV with DEV a "
                    "back end such as stdio, pty or unix:PATH,server,nowait)", arg);
    int ret = add_compat_chardev(ctx, "-serial", mon ? arg + 4 : arg, id, mon);
    if (ret == 0)
        ret = set_string(&cfg->serial[index], id);
    if (ret == 0 && mon)
        ret = add_monitor(ctx, "-serial", id, CONFIG_MONITOR_READLINE, false);
    return ret;
}

/* QEMU's monitor_parse: "chardev:ID" or a compact back end that becomes
 * chardev compat_monitorN. */
static int monitor_parse(struct parse_ctx *ctx, const char *option, const char *arg,
                         enum config_monitor_mode mode, bool pretty)
{
    char id[32];
    const char *chardev = id;
    int ret = 0;
    ctx->cfg->monitor_given = true;
    if (!strncmp(arg, "chardev:", 8)) {
        if (!arg[8])
            return fail(ctx, "%s: chardev: needs an id (expected chardev:ID)", option);
        chardev = arg + 8;
    } else {
        snprintf(id, sizeof id, "compat_monitor%u", ctx->monitor_index);
        ret = add_compat_chardev(ctx, option, arg, id, false);
    }
    ctx->monitor_index++;
    return ret ? ret : add_monitor(ctx, option, chardev, mode, pretty);
}

static int opt_monitor(struct parse_ctx *ctx, const char *arg)
{
    /* QEMU: anything starting with "none" means no monitor (and no default). */
    if (!strncmp(arg, "none", 4)) {
        ctx->cfg->monitor_given = true;
        return 0;
    }
    return monitor_parse(ctx, "-monitor", arg, CONFIG_MONITOR_READLINE, false);
}

static int opt_qmp(struct parse_ctx *ctx, const char *arg)
{
    return monitor_parse(ctx, "-qmp", arg, CONFIG_MONITOR_CONTROL, false);
}

static int opt_qmp_pretty(struct parse_ctx *ctx, const char *arg)
{
    return monitor_parse(ctx, "-qmp-pretty", arg, CONFIG_MONITOR_CONTROL, true);
}

#define MON_FORM "[chardev=]ID[,mode=readline|control][,pretty=on|off]"

static int opt_mon(struct parse_ctx *ctx, const char *arg)
{
    struct keyval kv;
    if (keyval_parse(&kv, arg, "chardev") < 0)
        return fail(ctx, "-mon: cannot parse '%s' (expected " MON_FORM ")", arg);
    const char *chardev = keyval_get(&kv, "chardev");
    const char *mode = keyval_get(&kv, "mode");
    const char *pretty_s = keyval_get(&kv, "pretty");
    keyval_get(&kv, "id");
    const char *unused = keyval_unused(&kv);
    enum config_monitor_mode m = CONFIG_MONITOR_READLINE;
    bool pretty = false;
    int ret = 0;
    if (unused)
        ret = fail(ctx, "-mon: unknown parameter '%s' (expected " MON_FORM ")", unused);
    else if (!chardev || !*chardev)
        ret = fail(ctx, "-mon: needs chardev=ID (expected " MON_FORM ")");
    else if (mode && !strcmp(mode, "control"))
        m = CONFIG_MONITOR_CONTROL;
    else if (mode && strcmp(mode, "readline"))
        ret = fail(ctx, "-mon: unknown mode '%s' (expected mode=readline or mode=control)", mode);
    if (!ret && pretty_s && keyval_bool(pretty_s, &pretty) < 0)
        ret = fail(ctx, "-mon: bad value '%s' for pretty (expected on or off)", pretty_s);
    if (!ret && pretty && m == CONFIG_MONITOR_READLINE)
        ret = fail(ctx, "-mon: pretty=on is not compatible with HMP monitors "
                   "(expected mode=control)");
    if (!ret) {
        ctx->cfg->monitor_given = true;
        ret = add_monitor(ctx, "-mon", chardev, m, pretty);
    }
    keyval_free(&kv);
    return ret;
}

static int opt_uuid(struct parse_ctx *ctx, const char *arg)
{
    if (config_parse_uuid(arg, ctx->cfg->uuid) < 0)
        return fail(ctx, "-uuid: '%s' is not a UUID (expected "
                    "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx, hex digits)", arg);
    return 0;
}

static int opt_no_reboot(struct parse_ctx *ctx, const char *arg)
{
    ctx->cfg->no_reboot = true;
    return 0;
}

static int opt_enable_kvm(struct parse_ctx *ctx, const char *arg) { return 0; }

static int opt_no_shutdown(struct parse_ctx *ctx, const char *arg)
{
    ctx->cfg->no_shutdown = true;
    return 0;
}

static int opt_start_paused(struct parse_ctx *ctx, const char *arg)
{
    ctx->cfg->start_paused = true;
    return 0;
}

static int opt_no_acpi(struct parse_ctx *ctx, const char *arg)
{
    ctx->cfg->no_acpi = true;
    return 0;
}

static int check_accel(struct parse_ctx *ctx, const char *opt, const char *v)
{
    /* "kvm", or a ':'-separated fallback list that includes kvm. */
    if (strstr(v, "kvm"))
        return 0;
    return fail(ctx, "%s: accelerator '%s' is not supported (expected accel=kvm)", opt, v);
}

static int opt_accel(struct parse_ctx *ctx, const char *arg)
{
    struct keyval kv;
    if (keyval_parse(&kv, arg, "accel") < 0)
        return fail(ctx, "-accel: cannot parse '%s' (expected kvm)", arg);
    const char *a = keyval_get(&kv, "accel");
    keyval_get(&kv, "kernel-irqchip");
    int ret = a ? check_accel(ctx, "-accel", a) : fail(ctx, "-accel: expected kvm");
    keyval_free(&kv);
    return ret;
}

static const char *const machine_types[] = { "pc", "pc-i440fx-7.2", NULL };

static int opt_machine(struct parse_ctx *ctx, const char *arg)
{
    struct keyval kv;
    if (is_help(arg)) {
        printf("Supported machines are:\n"
               "pc                   Standard PC with in-kernel KVM irqchip (default)\n");
        ctx->exit_ok = true;
        return 0;
    }
    if (keyval_parse(&kv, arg, "type") < 0)
        return fail(ctx, "-machine: cannot parse '%s' (expected [type=]pc[,accel=kvm])", arg);
    int ret = 0;
    const char *type = keyval_get(&kv, "type");
    const char *accel = keyval_get(&kv, "accel");
    const char *irqchip = keyval_get(&kv, "kernel_irqchip");
    if (!irqchip)
        irqchip = keyval_get(&kv, "kernel-irqchip");
    const char *unused = keyval_unused(&kv);
    if (type) {
        bool known = false;
        for (const char *const *t = machine_types; *t; t++)
            known |= !strcmp(type, *t);
        /* Versioned pc types select compatibility quirks in QEMU; kvmbox has
         * one pc machine, so every pc-i440fx-* name means that machine. */
        known |= !strncmp(type, "pc-i440fx-", 10) || !strncmp(type, "pc-", 3);
        if (!known)
            ret = fail(ctx, "-machine: unsupported machine type '%s' (expected pc; -machine help lists them)", type);
        else
            ret = set_string(&ctx->cfg->machine, "pc");
    }
    if (!ret && accel)
        ret = check_accel(ctx, "-machine", accel);
    if (!ret && irqchip && strcmp(irqchip, "on") && strcmp(irqchip, ""))
        ret = fail(ctx, "-machine: kernel_irqchip=%s is not supported (expected kernel_irqchip=on)", irqchip);
    if (!ret && unused)
        ret = fail(ctx, "-machine: unknown property '%s' (expected [type=]pc[,accel=kvm])", unused);
    keyval_free(&kv);
    return ret;
}

/* QEMU's names for the KVM paravirtual feature bits (CPUID 0x40000001 EAX,
 * Documentation/virt/kvm/x86/cpuid.rst). */
static const struct { const char *name; uint32_t bits; } kvm_pv_features[] = {
    { "kvmclock", (1u << 0) | (1u << 3) }, { "kvm-nopiodelay", 1u << 1 },
    { "kvm-mmu", 1u << 2 }, { "kvm-asyncpf", 1u << 4 }, { "kvm-steal-time", 1u << 5 },
    { "kvm-pv-eoi", 1u << 6 }, { "kvm-pv-unhalt", 1u << 7 },
    { "kvm-pv-tlb-flush", 1u << 9 }, { "kvm-asyncpf-vmexit", 1u << 10 },
    { "kvm-pv-ipi", 1u << 11 }, { "kvm-poll-control", 1u << 12 },
    { "kvm-pv-sched-yield", 1u << 13 }, { "kvm-asyncpf-int", 1u << 14 },
    { "kvm-msi-ext-dest-id", 1u << 15 }, { "kvmclock-stable-bit", 1u << 24 },
};

/* One "-cpu" property: name=on|off, +name or -name. */
static int cpu_feature(struct parse_ctx *ctx, const char *item)
{
    char name[128];
    bool on = true;
    const char *eq = strchr(item, '=');
    if (item[0] == '+' || item[0] == '-') {
        on = item[0] == '+';
        snprintf(name, sizeof name, "%s", item + 1);
    } else if (eq) {
        snprintf(name, sizeof name, "%.*s", (int)(eq - item), item);
        if (keyval_bool(eq + 1, &on) < 0)
            return fail(ctx, "-cpu: bad value in '%s' (expected on or off)", item);
    } else {
        snprintf(name, sizeof name, "%s", item);
    }
    for (size_t i = 0; i < sizeof kvm_pv_features / sizeof kvm_pv_features[0]; i++) {
        if (strcmp(name, kvm_pv_features[i].name))
            continue;
        uint32_t b = kvm_pv_features[i].bits;
        if (on) {
            ctx->cfg->cpu_kvm_on |= b;
            ctx->cfg->cpu_kvm_off &= ~b;
        } else {
            ctx->cfg->cpu_kvm_off |= b;
            ctx->cfg->cpu_kvm_on &= ~b;
        }
        return 0;
    }
    /* Other CPUID feature flags (+x2apic, -pdpe1gb, ...) need CPUID
     * masking that KVM does not enforce on every host (see the user guide);
     * until kvmbox offers it, refuse rather than pretend. */
    return fail(ctx, "-cpu: feature '%s' is not supported (expected host or max, "
                "optionally with kvm-* paravirtual features =on|off)", name);
}

static int opt_cpu(struct parse_ctx *ctx, const char *arg)
{
    if (is_help(arg)) {
        printf("Available CPUs:\n"
               "x86 host  KVM processor with all supported host features\n"
               "x86 max   Enables all features supported by the accelerator\n");
        ctx->exit_ok = true;
        return 0;
    }
    struct keyval kv;
    if (keyval_parse(&kv, arg, "model") < 0)
        return fail(ctx, "-cpu: cannot parse '%s' (expected host or max[,kvm-FEATURE=on|off])", arg);
    const char *model = keyval_get(&kv, "model");
    int ret = 0;
    if (!model || (strcmp(model, "host") && strcmp(model, "max")))
        ret = fail(ctx, "-cpu: '%s' is not supported (expected host or max)", model ? model : arg);
    for (unsigned i = 1; i < kv.n && ret == 0; i++) {
        char item[128];
        if (kv.value[i])
            snprintf(item, sizeof item, "%s=%s", kv.key[i], kv.value[i]);
        else
            snprintf(item, sizeof item, "%s", kv.key[i]);
        ret = cpu_feature(ctx, item);
    }
    if (ret == 0)
        ret = set_string(&ctx->cfg->cpu_model, model);
    keyval_free(&kv);
    return ret;
}

static int opt_pidfile(struct parse_ctx *ctx, const char *arg)
{
    return set_string(&ctx->cfg->pidfile, arg);
}

static int opt_daemonize(struct parse_ctx *ctx, const char *arg)
{
    ctx->cfg->daemonize = true;
    return 0;
}

static int opt_logfile(struct parse_ctx *ctx, const char *arg)
{
    return set_string(&ctx->cfg->logfile, arg);
}


static int opt_device(struct parse_ctx *ctx, const char *arg)
{
    int r = config_parse_device(ctx->cfg, arg, ctx->err, sizeof ctx->err);
    if (r == 1)
        ctx->exit_ok = true;
    return r < 0 ? r : 0;
}

static int opt_drive(struct parse_ctx *ctx, const char *arg)
{
    return config_parse_drive(ctx->cfg, arg, ctx->err, sizeof ctx->err);
}

static int opt_snapshot(struct parse_ctx *ctx, const char *arg)
{
    ctx->cfg->snapshot = true;
    return 0;
}

/* -hda..-hdd and -cdrom are IDE drives in QEMU. */
static int opt_ide_disk(struct parse_ctx *ctx, const char *arg)
{
    return fail(ctx, "-%s: '%s' would be an IDE drive, and kvmbox has no IDE controller "
                "yet (expected -drive file=%s,if=virtio)", ctx->option, arg, arg);
}

static int opt_version(struct parse_ctx *ctx, const char *arg);
static int opt_help(struct parse_ctx *ctx, const char *arg);

static const struct option_def options[] = {
    { "m",          true,  opt_m,          "-m [size=]N[kMGT]  guest RAM, MiB when no unit (default 128M)" },
    { "smp",        true,  opt_smp,        "-smp N[,cores=C][,threads=T][,sockets=S][,maxcpus=M]  vCPUs and topology" },
    { "kernel",     true,  opt_kernel,     "-kernel FILE       bzImage, vmlinux (PVH or ELF64) or multiboot kernel" },
    { "initrd",     true,  opt_initrd,     "-initrd FILE       initial ram disk" },
    { "append",     true,  opt_append,     "-append CMDLINE    kernel command line" },
    { "name",       true,  opt_name,       "-name NAME         guest name" },
    { "machine",    true,  opt_machine,    "-machine [type=]pc[,accel=kvm]  machine (only pc)" },
    { "M",          true,  opt_machine,    "-M TYPE            same as -machine" },
    { "cpu",        true,  opt_cpu,        "-cpu host|max      CPU model (host passthrough)" },
    { "enable-kvm", false, opt_enable_kvm, "-enable-kvm        accepted: kvmbox always uses KVM" },
    { "accel",      true,  opt_accel,      "-accel kvm         accepted: kvmbox always uses KVM" },
    { "nographic",  false, opt_nographic,  "-nographic         COM1 and the monitor on this terminal (Ctrl-a c switches, Ctrl-a x quits)" },
    { "display",    true,  opt_display,    "-display none      no display (kvmbox has no graphical console)" },
    { "vga",        true,  opt_vga,        "-vga none          no VGA adapter" },
    { "serial",     true,  opt_serial,     "-serial DEV        stdio|null|none|pty|file:P|pipe:P|unix:P[,server,nowait]|tcp:H:P[,server,nowait]|telnet:H:P[,server,nowait]|chardev:ID|mon:DEV" },
    { "chardev",    true,  opt_chardev,    "-chardev BACKEND,id=ID[,mux=on][,logfile=P]  stdio[,signal=off], null, pty, file,path=P, pipe,path=P, socket,path=P|[host=H,]port=N[,server=on][,wait=off][,telnet=on]" },
    { "monitor",    true,  opt_monitor,    "-monitor DEV       HMP monitor on DEV (-serial syntax, none: no monitor)" },
    { "qmp",        true,  opt_qmp,        "-qmp DEV           QMP monitor on DEV (-serial syntax)" },
    { "qmp-pretty", true,  opt_qmp_pretty, "-qmp-pretty DEV    QMP monitor with pretty-printed JSON" },
    { "mon",        true,  opt_mon,        "-mon [chardev=]ID[,mode=readline|control][,pretty=on|off]  monitor on a -chardev" },
    { "uuid",       true,  opt_uuid,       "-uuid UUID         machine UUID (info uuid, query-uuid)" },
    { "no-reboot",  false, opt_no_reboot,  "-no-reboot         exit instead of rebooting" },
    { "no-shutdown", false, opt_no_shutdown, "-no-shutdown       guest power-off stops the VM instead of exiting" },
    { "S",          false, opt_start_paused, "-S                 start with the vCPUs stopped (cont starts them)" },
    { "no-acpi",    false, opt_no_acpi,    "-no-acpi           no ACPI tables (MP table only; no ACPI power-off)" },
    { "drive",      true,  opt_drive,      "-drive file=P,if=virtio|none[,format=raw][,cache=M][,aio=threads|io_uring][,snapshot=on][,readonly=on][,id=ID][,serial=S]" },
    { "snapshot",   false, opt_snapshot,   "-snapshot          writes to every drive go to a temporary overlay" },
    { "hda",        true,  opt_ide_disk,   NULL },
    { "hdb",        true,  opt_ide_disk,   NULL },
    { "hdc",        true,  opt_ide_disk,   NULL },
    { "hdd",        true,  opt_ide_disk,   NULL },
    { "cdrom",      true,  opt_ide_disk,   NULL },
    { "device",     true,  opt_device,     "-device DRIVER[,prop=v]  add a device (-device help)" },
    { "pidfile",    true,  opt_pidfile,    "-pidfile FILE      write the process id to FILE" },
    { "daemonize",  false, opt_daemonize,  "-daemonize         detach after start-up" },
    { "D",          true,  opt_logfile,    "-D FILE            log to FILE (info level, includes boot-timer)" },
    { "version",    false, opt_version,    "-version           print the version" },
    { "h",          false, opt_help,       "-h                 this help" },
    { "help",       false, opt_help,       NULL },
};

static int opt_version(struct parse_ctx *ctx, const char *arg)
{
    printf("kvmbox version %s (qemu-kvm compatible command line)\n", KVMBOX_VERSION);
    ctx->exit_ok = true;
    return 0;
}

static int opt_help(struct parse_ctx *ctx, const char *arg)
{
    printf("usage: kvmbox [options]\n\n");
    for (size_t i = 0; i < sizeof options / sizeof options[0]; i++)
        if (options[i].help)
            printf("  %s\n", options[i].help);
    printf("\nOptions take one or two leading dashes, as in qemu-system-x86_64.\n");
    ctx->exit_ok = true;
    return 0;
}

static void config_defaults(struct vm_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->ram_size = 128ULL << 20;
    cfg->smp = (struct smp_config){ 1, 1, 1, 1, 1 };
}

/* QEMU's defaults (qemu_create_default_devices): with -nographic and
 * neither -serial nor a monitor option, COM1 and an HMP monitor share stdio
 * through a mux (-serial mon:stdio); with -nographic otherwise the missing
 * one goes to stdio alone. Without -nographic QEMU would use its graphical
 * console, which kvmbox lacks: COM1 goes to stdio, and no monitor. */
static int config_defaults_chardevs(struct parse_ctx *ctx)
{
    struct vm_config *cfg = ctx->cfg;
    if (cfg->nographic && !cfg->serial_given && !cfg->monitor_given)
        return opt_serial(ctx, "mon:stdio");
    if (!cfg->serial_given) {
        int ret = opt_serial(ctx, "stdio");
        if (ret)
            return ret;
    }
    if (cfg->nographic && !cfg->monitor_given)
        return monitor_parse(ctx, "-nographic", "stdio", CONFIG_MONITOR_READLINE, false);
    return 0;
}

/* Every front end's chardev exists; one front end per chardev unless it is
 * a mux (at most CONFIG_MUX_MAX_FRONTENDS). */
static int check_frontend(struct parse_ctx *ctx, const char *option, const char *id,
                          unsigned *users)
{
    const struct chardev_spec *spec = config_find_chardev(ctx->cfg, id);
    if (!spec)
        return fail(ctx, "%s: no character device with id '%s' (expected -chardev "
                    "BACKEND,id=%s)", option, id, id);
    unsigned n = ++users[spec - ctx->cfg->chardevs];
    if (n > 1 && !spec->mux)
        return fail(ctx, "%s: chardev '%s' is already in use (expected mux=on to share it)",
                    option, id);
    if (n > CONFIG_MUX_MAX_FRONTENDS)
        return fail(ctx, "%s: chardev '%s' has more than %d front ends", option, id,
                    CONFIG_MUX_MAX_FRONTENDS);
    return 0;
}

/* Options with a value that only completes the picture after all options
 * are read: default serial port and monitor, references, conflicts. */
static int config_finish(struct parse_ctx *ctx)
{
    struct vm_config *cfg = ctx->cfg;
    if (config_check_devices(cfg, ctx->err, sizeof ctx->err) < 0)
        return -EINVAL;
    int ret = config_defaults_chardevs(ctx);
    if (ret)
        return ret;
    if (!cfg->kernel)
        return fail(ctx, "-kernel: no kernel given (expected -kernel FILE; "
                    "kvmbox has no BIOS to boot disks yet)");
    if (cfg->initrd && !cfg->kernel)
        return fail(ctx, "-initrd: needs -kernel");
    unsigned users[CONFIG_MAX_CHARDEVS] = { 0 };
    for (unsigned i = 0; i < cfg->nr_serial; i++)
        if (cfg->serial[i] && check_frontend(ctx, "-serial", cfg->serial[i], users) < 0)
            return -EINVAL;
    for (unsigned i = 0; i < cfg->nr_monitors; i++)
        if (check_frontend(ctx, "-mon", cfg->monitors[i].chardev, users) < 0)
            return -EINVAL;
    unsigned stdio_users = 0;
    for (unsigned i = 0; i < cfg->nr_chardevs; i++)
        stdio_users += cfg->chardevs[i].kind == CHARDEV_STDIO;
    if (stdio_users > 1)
        return fail(ctx, "-serial/-monitor: cannot use stdio by multiple character devices "
                    "(expected stdio at most once; -serial mon:stdio shares it with a monitor)");
    if (cfg->daemonize && stdio_users)
        return fail(ctx, "-daemonize: cannot be used with a serial port or monitor on stdio "
                    "(expected -serial file:PATH, pty, unix:... or null; -nographic uses stdio)");
    if (!cfg->machine && set_string(&cfg->machine, "pc") < 0)
        return -ENOMEM;
    if (!cfg->cpu_model && set_string(&cfg->cpu_model, "host") < 0)
        return -ENOMEM;
    return 0;
}

enum config_result config_parse(struct vm_config *cfg, int argc, char **argv)
{
    struct parse_ctx ctx = { .cfg = cfg };
    config_defaults(cfg);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || a[1] == '\0') {
            fprintf(stderr, "kvmbox: %s: disk image arguments need IDE, which "
                    "is not supported yet (expected -kernel FILE)\n", a);
            return CONFIG_ERROR;
        }
        const char *name = a + 1 + (a[1] == '-');
        const struct option_def *def = NULL;
        for (size_t j = 0; j < sizeof options / sizeof options[0]; j++)
            if (!strcmp(name, options[j].name))
                def = &options[j];
        if (!def) {
            fprintf(stderr, "kvmbox: -%s: invalid option (kvmbox -h lists the options)\n", name);
            return CONFIG_ERROR;
        }
        const char *arg = NULL;
        if (def->has_arg) {
            if (i + 1 >= argc) {
                char help[128] = "";
                if (def->help)
                    snprintf(help, sizeof help, " (expected %s)", def->help);
                /* The help text is "-opt FORM   description": keep the form. */
                char *gap = strstr(help, "  ");
                if (gap) {
                    gap[0] = ')';
                    gap[1] = '\0';
                }
                fprintf(stderr, "kvmbox: -%s: requires an argument%s\n", name, help);
                return CONFIG_ERROR;
            }
            arg = argv[++i];
        }
        ctx.err[0] = '\0';
        ctx.option = def->name;
        int ret = def->fn(&ctx, arg);
        if (ret == -ENOMEM) {
            fprintf(stderr, "kvmbox: out of memory parsing -%s\n", name);
            return CONFIG_ERROR;
        }
        if (ret < 0) {
            fprintf(stderr, "kvmbox: %s\n", ctx.err);
            return CONFIG_ERROR;
        }
        if (ctx.exit_ok)
            return CONFIG_EXIT_OK;
    }
    if (config_finish(&ctx) < 0) {
        fprintf(stderr, "kvmbox: %s\n", ctx.err[0] ? ctx.err : "out of memory");
        return CONFIG_ERROR;
    }
    return CONFIG_RUN;
}

void config_free(struct vm_config *cfg)
{
    config_free_devices(cfg);
    free(cfg->kernel);
    free(cfg->initrd);
    free(cfg->append);
    free(cfg->name);
    free(cfg->machine);
    free(cfg->cpu_model);
    free(cfg->pidfile);
    free(cfg->logfile);
    for (unsigned i = 0; i < cfg->nr_chardevs; i++)
        config_free_chardev(&cfg->chardevs[i]);
    for (unsigned i = 0; i < cfg->nr_serial; i++)
        free(cfg->serial[i]);
    for (unsigned i = 0; i < cfg->nr_monitors; i++)
        free(cfg->monitors[i].chardev);
    memset(cfg, 0, sizeof *cfg);
}
