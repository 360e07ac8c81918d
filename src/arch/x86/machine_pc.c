/* See machine_pc.h. Device map (src/arch/x86/layout.h has the numbers):
 *   COM1-4 16550A, i8042, CMOS RTC, POST port 0x80, fw_cfg (I/O), ACPI PM
 *   block + reset control 0xCF9, the kvmbox test device, isa-debug-exit
 *   when asked for; in-kernel PIC/IOAPIC/PIT/LAPIC. */
#include "arch/x86/machine_pc.h"
#include "arch/x86/acpi.h"
#include "arch/x86/boot.h"
#include "arch/x86/cpu.h"
#include "arch/x86/e820.h"
#include "arch/x86/layout.h"
#include "arch/x86/mptable.h"
#include "chardev/chardev.h"
#include "chardev/registry.h"
#include "core/log.h"
#include "hw/acpi_pm.h"
#include "hw/fw_cfg.h"
#include "hw/i8042.h"
#include "hw/isa_debug_exit.h"
#include "hw/pci/pci.h"
#include "hw/port80.h"
#include "hw/reset_control.h"
#include "hw/rtc_cmos.h"
#include "hw/serial_8250.h"
#include "hw/testdev.h"
#include "hw/virtio/virtio_devices.h"
#include "monitor/monitor.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint16_t com_ports[CONFIG_MAX_SERIAL] = { PORT_COM1, PORT_COM2, PORT_COM3, PORT_COM4 };
static const uint8_t com_irqs[CONFIG_MAX_SERIAL] = { IRQ_COM1, IRQ_COM2, IRQ_COM1, IRQ_COM2 };

struct pc_serial {
    struct serial *uart;
    struct chardev *chr;
    struct irq_line irq;
};

struct pc_machine {
    const struct vm_config *cfg;
    struct vm *vm;
    struct kernel_image kernel;
    struct pc_serial serial[CONFIG_MAX_SERIAL];
    struct i8042 *i8042;
    struct rtc_cmos *rtc;
    struct fw_cfg *fw_cfg;
    struct acpi_pm *pm;
    struct reset_control *reset_ctl;
    struct pci_bus pci;
    struct testdev *testdev;
    struct isa_debug_exit *debug_exit;
    struct irq_line kbd_irq, rtc_irq, sci_irq;
    uint32_t *apic_ids;
};

struct pc_machine *pc_prepare(const struct vm_config *cfg, char *err, size_t errlen)
{
    struct pc_machine *pc = calloc(1, sizeof *pc);
    if (!pc) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pc->cfg = cfg;
    if (kernel_image_open(&pc->kernel, cfg->kernel, cfg->initrd, err, errlen) < 0) {
        free(pc);
        return NULL;
    }
    return pc;
}

void pc_discard(struct pc_machine *pc)
{
    if (!pc)
        return;
    kernel_image_close(&pc->kernel);
    free(pc->apic_ids);
    free(pc);
}

/* ---- glue between devices and the VM ---- */

static void pc_serial_tx(void *opaque, const uint8_t *buf, size_t len)
{
    struct pc_serial *s = opaque;
    chardev_write(s->chr, buf, len);
}

static void pc_serial_rx_ready(void *opaque)
{
    struct pc_serial *s = opaque;
    chardev_input_ready(s->chr);
}

static size_t pc_serial_input(void *opaque, const uint8_t *buf, size_t len)
{
    struct pc_serial *s = opaque;
    return serial_receive(s->uart, buf, len);
}

static void pc_quit(void *opaque)
{
    vm_quit(opaque, "host-ui");
}

static void pc_reset_request(void *opaque)
{
    vm_request_reset(opaque);
}

static void pc_poweroff(void *opaque)
{
    log_info("guest powered off (ACPI S5)");
    vm_request_poweroff(opaque);
}

static void pc_debug_exit(void *opaque, int status)
{
    vm_request_exit(opaque, status);
}

static void pc_boot_timer(void *opaque, uint32_t marker)
{
    struct vm *vm = opaque;
    uint64_t us = vm_uptime_us(vm);
    log_info("boot-timer: marker %u at %llu.%03llu ms since start", marker,
             (unsigned long long)(us / 1000), (unsigned long long)(us % 1000));
}

/* Device hooks for the VM lifecycle (reset/free take void *). */
static void pc_serial_reset(void *opaque) { serial_reset(((struct pc_serial *)opaque)->uart); }
static void pc_serial_free(void *opaque)
{
    struct pc_serial *s = opaque;
    /* The chardev belongs to vm->chardevs (freed after the devices that
     * use it): only detach. */
    chardev_set_input(s->chr, NULL, NULL);
    serial_free(s->uart);
    s->uart = NULL;
    s->chr = NULL;
}
static void pc_i8042_reset(void *o) { i8042_reset(o); }
static void pc_i8042_free(void *o) { i8042_free(o); }
static void pc_rtc_reset(void *o) { rtc_cmos_reset(o); }
static void pc_rtc_free(void *o) { rtc_cmos_free(o); }
static void pc_fw_cfg_reset(void *o) { fw_cfg_reset(o); }
static void pc_fw_cfg_free(void *o) { fw_cfg_free(o); }
static void pc_pm_reset(void *o) { acpi_pm_reset(o); }
static void pc_pm_free(void *o) { acpi_pm_free(o); }
static void pc_reset_ctl_reset(void *o) { reset_control_reset(o); }
static void pc_reset_ctl_free(void *o) { reset_control_free(o); }
static void pc_pci_reset(void *o) { pci_bus_reset(o); }
static void pc_pci_free(void *o) { pci_bus_destroy(o); }
static void pc_testdev_reset(void *o) { testdev_reset(o); }
static void pc_testdev_free(void *o) { testdev_free(o); }
static void pc_debug_exit_free(void *o) { isa_debug_exit_free(o); }

static int pc_add(struct vm *vm, const char *name, void (*reset)(void *),
                  void (*free_fn)(void *), void *opaque, char *err, size_t errlen)
{
    if (!opaque) {
        snprintf(err, errlen, "cannot create device %s: out of memory", name);
        return -1;
    }
    if (vm_add_device(vm, name, reset, free_fn, opaque) < 0) {
        snprintf(err, errlen, "too many devices");
        free_fn(opaque);
        return -1;
    }
    return 0;
}

static int pc_register(struct vm *vm, struct bus *bus, uint64_t base, uint64_t len,
                       const char *name, const struct bus_ops *ops, void *opaque,
                       char *err, size_t errlen)
{
    int r = bus_register(bus, base, len, name, ops, opaque);
    if (r < 0) {
        snprintf(err, errlen, "%s at 0x%llx: %s", name, (unsigned long long)base,
                 r == -EEXIST ? "the address range is already in use" : strerror(-r));
        return -1;
    }
    return 0;
}

static void pc_chardevs_free(void *opaque)
{
    struct vm *vm = opaque;
    chardev_registry_free(vm->chardevs);
    vm->chardevs = NULL;
}

/* Every chardev of the config, into vm->chardevs. Added to the VM before
 * the serial ports and monitors, so it is freed after them. */
static int pc_create_chardevs(struct pc_machine *pc, struct vm *vm, char *err, size_t errlen)
{
    const struct vm_config *cfg = pc->cfg;
    struct chardev_hooks hooks = { pc_quit, vm };
    vm->chardevs = chardev_registry_new();
    if (pc_add(vm, "chardevs", NULL, pc_chardevs_free, vm->chardevs ? vm : NULL, err, errlen) < 0)
        return -1;
    for (unsigned i = 0; i < cfg->nr_chardevs; i++)
        if (chardev_registry_open(vm->chardevs, &cfg->chardevs[i], vm->loop, cfg->nographic,
                                  &hooks, err, errlen) < 0)
            return -1;
    return 0;
}

static int pc_create_serials(struct pc_machine *pc, struct vm *vm, char *err, size_t errlen)
{
    static const char *const com_names[CONFIG_MAX_SERIAL] = { "com1", "com2", "com3", "com4" };
    const struct vm_config *cfg = pc->cfg;
    for (unsigned i = 0; i < cfg->nr_serial; i++) {
        if (!cfg->serial[i])
            continue;       /* -serial none */
        struct pc_serial *s = &pc->serial[i];
        char why[200];
        s->chr = chardev_registry_attach(vm->chardevs, cfg->serial[i], why, sizeof why);
        if (!s->chr) {
            snprintf(err, errlen, "-serial: %s: %s", com_names[i], why);
            return -1;
        }
        s->irq = vm_irq_line(vm, com_irqs[i]);
        struct serial_backend be = { pc_serial_tx, pc_serial_rx_ready, s };
        s->uart = serial_new(&s->irq, &be);
        if (!s->uart) {
            s->chr = NULL;
            snprintf(err, errlen, "cannot create %s: out of memory", com_names[i]);
            return -1;
        }
        if (vm_add_device(vm, com_names[i], pc_serial_reset, pc_serial_free, s) < 0) {
            pc_serial_free(s);
            snprintf(err, errlen, "too many devices");
            return -1;
        }
        if (pc_register(vm, &vm->pio, com_ports[i], SERIAL_NR_REGS, com_names[i],
                        &serial_bus_ops, s->uart, err, errlen) < 0)
            return -1;
        chardev_set_input(s->chr, pc_serial_input, s);
    }
    return 0;
}

static void pc_monitor_free(void *opaque) { monitor_free(opaque); }

/* The monitors of the config (-monitor, -qmp, -mon, -serial mon:, the
 * -nographic default), each on its chardev's front end. After the serial
 * ports: on a mux, COM1 is front end 0 and has the focus at start. */
static int pc_create_monitors(struct vm *vm, char *err, size_t errlen)
{
    const struct vm_config *cfg = vm->cfg;
    for (unsigned i = 0; i < cfg->nr_monitors; i++) {
        const struct monitor_config *mc = &cfg->monitors[i];
        char why[200];
        struct chardev *chr = chardev_registry_attach(vm->chardevs, mc->chardev, why, sizeof why);
        if (!chr) {
            snprintf(err, errlen, "-mon: %s", why);
            return -1;
        }
        struct monitor *m = monitor_new(vm, chr,
                                        mc->mode == CONFIG_MONITOR_CONTROL ? MONITOR_QMP
                                                                           : MONITOR_HMP,
                                        mc->pretty);
        if (pc_add(vm, "monitor", NULL, pc_monitor_free, m, err, errlen) < 0)
            return -1;
    }
    return 0;
}

static int pc_create_devices(struct pc_machine *pc, struct vm *vm, char *err, size_t errlen)
{
    const struct vm_config *cfg = pc->cfg;
    if (pc_create_chardevs(pc, vm, err, errlen) < 0 ||
        pc_create_serials(pc, vm, err, errlen) < 0 ||
        pc_create_monitors(vm, err, errlen) < 0)
        return -1;

    pc->kbd_irq = vm_irq_line(vm, IRQ_KBD);
    pc->i8042 = i8042_new(&pc->kbd_irq, pc_reset_request, vm);
    if (pc_add(vm, "i8042", pc_i8042_reset, pc_i8042_free, pc->i8042, err, errlen) < 0 ||
        pc_register(vm, &vm->pio, PORT_I8042_DATA, 1, "i8042-data", &i8042_data_bus_ops,
                    pc->i8042, err, errlen) < 0 ||
        pc_register(vm, &vm->pio, PORT_I8042_CMD, 1, "i8042-cmd", &i8042_cmd_bus_ops,
                    pc->i8042, err, errlen) < 0)
        return -1;

    uint64_t low = vm->mem.regions[0].size;
    uint64_t high = vm->mem.n > 1 ? vm->mem.regions[1].size : 0;
    pc->rtc_irq = vm_irq_line(vm, IRQ_RTC);
    pc->rtc = rtc_cmos_new(&pc->rtc_irq, low, high, cfg->smp.cpus);
    if (pc_add(vm, "rtc", pc_rtc_reset, pc_rtc_free, pc->rtc, err, errlen) < 0 ||
        pc_register(vm, &vm->pio, PORT_RTC, RTC_CMOS_NR_PORTS, "rtc", &rtc_cmos_bus_ops, pc->rtc, err, errlen) < 0)
        return -1;

    if (pc_register(vm, &vm->pio, PORT_POST, 1, "post", &port80_bus_ops, NULL, err, errlen) < 0)
        return -1;

    pc->fw_cfg = fw_cfg_new();
    if (pc_add(vm, "fw_cfg", pc_fw_cfg_reset, pc_fw_cfg_free, pc->fw_cfg, err, errlen) < 0 ||
        pc_register(vm, &vm->pio, PORT_FW_CFG, FW_CFG_NR_PORTS, "fw_cfg", &fw_cfg_bus_ops, pc->fw_cfg,
                    err, errlen) < 0)
        return -1;
    if (fw_cfg_add_u64(pc->fw_cfg, FW_CFG_RAM_SIZE, cfg->ram_size) < 0 ||
        fw_cfg_add_u16(pc->fw_cfg, FW_CFG_NB_CPUS, (uint16_t)cfg->smp.cpus) < 0 ||
        fw_cfg_add_u16(pc->fw_cfg, FW_CFG_MAX_CPUS, (uint16_t)cfg->smp.maxcpus) < 0) {
        snprintf(err, errlen, "fw_cfg: out of memory");
        return -1;
    }

    pc->sci_irq = vm_irq_line(vm, ACPI_SCI_IRQ);
    pc->pm = acpi_pm_new(&pc->sci_irq, pc_poweroff, vm);
    if (pc_add(vm, "acpi-pm", pc_pm_reset, pc_pm_free, pc->pm, err, errlen) < 0 ||
        pc_register(vm, &vm->pio, PORT_ACPI_PM_BASE, ACPI_PM_IO_LEN, "acpi-pm",
                    &acpi_pm_bus_ops, pc->pm, err, errlen) < 0)
        return -1;
    pc->reset_ctl = reset_control_new(pc_reset_request, vm);
    if (pc_add(vm, "reset-control", pc_reset_ctl_reset, pc_reset_ctl_free, pc->reset_ctl,
               err, errlen) < 0)
        return -1;
    /* The PCI host bridge owns the dword at 0xCF8, so the reset control
     * register at 0xCF9 is reached through it (as on PIIX/ICH chipsets). */
    struct pci_bus_config pcfg = {
        .ecam_base = LAYOUT_PCI_ECAM_BASE,
        .mmio_base = LAYOUT_PCI_MMIO_BASE, .mmio_size = LAYOUT_PCI_MMIO_SIZE,
        .io_base = LAYOUT_PCI_IO_BASE, .io_size = LAYOUT_PCI_IO_SIZE,
        .intx_gsi_base = LAYOUT_PCI_INTX_GSI_BASE,
        .cf9_ops = &reset_control_bus_ops, .cf9_opaque = pc->reset_ctl,
    };
    int pr = pci_bus_init(&pc->pci, vm, &vm->pio, &vm->mmio, &pcfg);
    if (pr < 0) {
        snprintf(err, errlen, "cannot create the PCI bus: %s", strerror(-pr));
        return -1;
    }
    /* Added before any PCI device, so devices are freed first. */
    if (pc_add(vm, "pci", pc_pci_reset, pc_pci_free, &pc->pci, err, errlen) < 0)
        return -1;
    vm->pci = &pc->pci;
    if (virtio_devices_create(vm, cfg, &pc->pci, vm->chardevs, err, errlen) < 0)
        return -1;

    pc->testdev = testdev_new(pc_boot_timer, vm);
    if (pc_add(vm, "testdev", pc_testdev_reset, pc_testdev_free, pc->testdev, err, errlen) < 0 ||
        pc_register(vm, &vm->pio, PORT_TESTDEV, TESTDEV_PIO_SIZE, "testdev", &testdev_pio_bus_ops,
                    pc->testdev, err, errlen) < 0 ||
        pc_register(vm, &vm->mmio, LAYOUT_TESTDEV_MMIO, TESTDEV_MMIO_SIZE, "testdev-mmio",
                    &testdev_mmio_bus_ops, pc->testdev, err, errlen) < 0)
        return -1;

    if (cfg->debug_exit.present) {
        pc->debug_exit = isa_debug_exit_new(pc_debug_exit, vm);
        if (pc_add(vm, "isa-debug-exit", NULL, pc_debug_exit_free, pc->debug_exit, err, errlen) < 0 ||
            pc_register(vm, &vm->pio, cfg->debug_exit.iobase, cfg->debug_exit.iosize,
                        "isa-debug-exit", &isa_debug_exit_bus_ops, pc->debug_exit, err, errlen) < 0)
            return -1;
    }
    return 0;
}

/* Firmware tables and the kernel: at start and at every reset. */
static int pc_load_boot(struct vm *vm)
{
    struct pc_machine *pc = vm->machine_state;
    const struct vm_config *cfg = pc->cfg;
    char err[256] = "";
    struct boot_env env = { .mem = &vm->mem, .cmdline = cfg->append ? cfg->append : "" };
    uint64_t low = vm->mem.regions[0].size;
    uint64_t high = vm->mem.n > 1 ? vm->mem.regions[1].size : 0;
    env.e820_count = (unsigned)e820_build(env.e820, sizeof env.e820 / sizeof env.e820[0], low, high);

    /* The BIOS area holding the tables: cleared so a reset leaves nothing
     * stale behind. */
    uint8_t *bios = gmem_ptr(&vm->mem, LAYOUT_BIOS_START, LAYOUT_HIGH_START - LAYOUT_BIOS_START);
    if (!bios) {
        log_err("-m: guest RAM too small for the firmware tables");
        return -1;
    }
    memset(bios, 0, LAYOUT_HIGH_START - LAYOUT_BIOS_START);
    uint32_t ioapic_id = 0;
    for (unsigned i = 0; i < cfg->smp.maxcpus; i++)
        if (pc->apic_ids[i] >= ioapic_id)
            ioapic_id = pc->apic_ids[i] + 1;
    size_t used;
    /* BARs placed as firmware would (Linux keeps them; with acpi=off it
     * could not place them itself inside our windows). */
    int r = pci_bus_assign_resources(&pc->pci);
    if (r < 0) {
        log_err("cannot place the PCI devices' BARs: %s", strerror(-r));
        return -1;
    }
    struct mptable_config mc = {
        .ncpus = cfg->smp.cpus, .apic_ids = pc->apic_ids, .ioapic_id = ioapic_id,
        .ioapic_addr = LAYOUT_IOAPIC_BASE, .pci = true,
    };
    r = mptable_build_config(gmem_ptr(&vm->mem, LAYOUT_MPTABLE_START, LAYOUT_MPTABLE_SIZE),
                             LAYOUT_MPTABLE_SIZE, LAYOUT_MPTABLE_START, &mc, &used);
    if (r < 0) {
        log_err("cannot build the MP table: %s", strerror(-r));
        return -1;
    }
    if (!cfg->no_acpi) {
        struct acpi_config ac = {
            .ncpus = cfg->smp.cpus, .max_cpus = cfg->smp.maxcpus, .apic_ids = pc->apic_ids,
            .ioapic_addr = LAYOUT_IOAPIC_BASE, .ioapic_id = ioapic_id, .has_i8042 = true,
            .pci = true,
        };
        r = acpi_build(gmem_ptr(&vm->mem, LAYOUT_ACPI_START, LAYOUT_ACPI_SIZE), LAYOUT_ACPI_SIZE,
                       LAYOUT_ACPI_START, &ac, &used);
        if (r < 0) {
            log_err("cannot build the ACPI tables: %s", strerror(-r));
            return -1;
        }
        env.rsdp_addr = LAYOUT_ACPI_START;
    }
    struct x86_boot_regs regs;
    int loaded = kernel_image_load(&pc->kernel, &env, &regs, err, sizeof err);
    kernel_image_drop_pages(&pc->kernel);
    if (loaded < 0) {
        log_err("%s", err);
        return -1;
    }
    for (unsigned i = 0; i < vm->nr_vcpus; i++)
        x86_set_boot_msrs(&vm->vcpus[i]);
    r = x86_setup_boot_cpu(vm, &regs);
    if (r < 0) {
        log_err("cannot set up the boot vCPU: %s", strerror(-r));
        return -1;
    }
    return 0;
}

static void pc_machine_free(struct vm *vm)
{
    pc_discard(vm->machine_state);
    vm->machine_state = NULL;
}

static void pc_powerdown(struct vm *vm)
{
    struct pc_machine *pc = vm->machine_state;
    acpi_pm_press_power_button(pc->pm);
}

static const struct vm_machine_ops pc_machine_ops = {
    .load_boot = pc_load_boot,
    .powerdown = pc_powerdown,
    .free = pc_machine_free,
};

int pc_attach(struct pc_machine *pc, struct vm *vm, char *err, size_t errlen)
{
    pc->vm = vm;
    vm->machine = &pc_machine_ops;
    vm->machine_state = pc;
    pc->apic_ids = calloc(vm->cfg->smp.maxcpus, sizeof *pc->apic_ids);
    if (!pc->apic_ids) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (unsigned i = 0; i < vm->cfg->smp.maxcpus; i++)
        pc->apic_ids[i] = vm_cpu_apic_id(&vm->cfg->smp, i);
    if (x86_cpus_init(vm) < 0) {
        snprintf(err, errlen, "cannot initialise the vCPUs");
        return -1;
    }
    if (pc_create_devices(pc, vm, err, errlen) < 0)
        return -1;
    if (pc_load_boot(vm) < 0) {
        snprintf(err, errlen, "cannot boot the kernel (see above)");
        return -1;
    }
    return 0;
}
