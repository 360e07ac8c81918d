/* The VM: owns every piece of state of one virtual machine (no globals, so a
 * test process can run several). Architecture-neutral core; the x86 pc
 * machine (src/arch/x86/machine_pc.c) fills in devices and boot.
 *
 * Threads (docs/architecture.md has the picture):
 *  - the main thread runs the event loop (vm->loop): chardev input, signals,
 *    lifecycle requests (exit, reset);
 *  - one thread per vCPU runs KVM_RUN and dispatches PIO/MMIO exits to the
 *    buses, i.e. device register callbacks run on vCPU threads.
 * Lifecycle requests from vCPU threads or devices (vm_request_exit,
 * vm_request_reset) only set a flag and wake the loop; the main thread acts on
 * them with all vCPUs parked (vm_pause_vcpus). */
#ifndef KVMBOX_VM_H
#define KVMBOX_VM_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "config/config.h"
#include "core/bus.h"
#include "core/guest_mem.h"
#include "core/irq.h"

struct block_backend;
struct chardev_registry;
struct kvm_irq_routing_state;
struct pci_bus;
struct loop;
struct vm;

/* The register state a vCPU returns to on reset, captured after creation
 * (also the natural shape for saving state later). */
struct vcpu_reset_state {
    struct kvm_regs regs;
    struct kvm_sregs sregs;
    struct kvm_fpu fpu;
    struct kvm_lapic_state lapic;
    struct kvm_mp_state mp_state;
};

struct vcpu {
    struct vm *vm;
    unsigned index;
    uint32_t apic_id;               /* also the KVM vcpu id */
    int fd;
    struct kvm_run *run;
    pthread_t thread;
    atomic_int tid;                 /* the thread's kernel id (query-cpus-fast), 0 until it runs */
    bool thread_started;
    struct vcpu_reset_state reset_state;
};

/* A device's hooks into the VM lifecycle. */
struct vm_device {
    const char *name;
    void (*reset)(void *opaque);    /* main thread, vCPUs parked */
    void (*free)(void *opaque);     /* at teardown, reverse order of adding */
    void *opaque;
};

#define VM_MAX_DEVICES 64
#define VM_MAX_BLOCKS 16

enum vm_request {
    VM_REQ_EXIT = 1u << 0,
    VM_REQ_RESET = 1u << 1,
    VM_REQ_POWEROFF = 1u << 2,      /* the guest powered off (ACPI S5) */
};

/* QEMU's RunState names where a client can see them (query-status). */
enum vm_run_state {
    VM_RUN_PRELAUNCH,       /* -S: not started yet */
    VM_RUN_RUNNING,
    VM_RUN_PAUSED,          /* stop */
    VM_RUN_SHUTDOWN,        /* guest powered off, -no-shutdown kept us */
    VM_RUN_INTERNAL_ERROR,  /* a vCPU failed; the VM cannot continue */
};
const char *vm_run_state_name(enum vm_run_state s);

/* Lifecycle events, for the monitor's QMP events. */
enum vm_event_kind {
    VM_EVENT_SHUTDOWN,      /* SHUTDOWN {guest, reason} */
    VM_EVENT_POWERDOWN,     /* POWERDOWN: system_powerdown pressed the button */
    VM_EVENT_RESET,         /* RESET {guest, reason} */
    VM_EVENT_STOP,
    VM_EVENT_RESUME,
};
struct vm_event {
    enum vm_event_kind kind;
    bool guest;             /* SHUTDOWN/RESET: caused by the guest */
    const char *reason;     /* QEMU's ShutdownCause: "guest-shutdown",
                               "guest-reset", "host-qmp-quit",
                               "host-qmp-system-reset", "host-signal",
                               "host-ui", "guest-panic" */
};
#define VM_MAX_LISTENERS 64     /* one per QMP monitor, plus a few */

/* What the machine does to (re)start the guest: load the kernel and firmware
 * tables into RAM and put the boot vCPU at the entry point. Called on the
 * main thread with vCPUs parked (or not yet running). */
struct vm_machine_ops {
    int (*load_boot)(struct vm *vm);
    /* Press the ACPI power button (system_powerdown). */
    void (*powerdown)(struct vm *vm);
    void (*free)(struct vm *vm);
};

struct vm {
    const struct vm_config *cfg;
    int kvm_fd, vm_fd;
    int run_size;                   /* mmap size of struct kvm_run */
    struct guest_mem mem;
    struct bus pio, mmio;
    struct vcpu *vcpus;
    unsigned nr_vcpus;
    struct loop *loop;
    struct kvm_cpuid2 *cpuid;       /* KVM_GET_SUPPORTED_CPUID result */
    struct kvm_irq_routing_state *routing;  /* kvm_irq.c */
    struct timespec start_time;     /* process start, for the boot timer */

    const struct vm_machine_ops *machine;
    void *machine_state;
    struct chardev_registry *chardevs;  /* every -chardev/-serial back end (monitor: query-chardev) */
    struct pci_bus *pci;                /* the machine's PCI bus 0 (monitor: query-pci), or NULL */
    /* Every drive with its device, for query-block/query-blockstats. The
     * strings point into the config; main thread only. */
    struct vm_block {
        const char *id;                 /* -drive id */
        const char *qdev;               /* the device's id or its model name */
        const struct drive_config *drive;
        struct block_backend *backend;
    } blocks[VM_MAX_BLOCKS];
    unsigned nr_blocks;

    struct vm_device devices[VM_MAX_DEVICES];
    unsigned nr_devices;

    /* Lifecycle. requests: VM_REQ_* bits set from any thread. */
    atomic_uint requests;
    atomic_int exit_status;         /* valid once VM_REQ_EXIT is set */
    atomic_bool pause_req;          /* vCPUs park at the next exit */
    atomic_bool exit_requested;     /* vCPUs stop at the next exit */
    atomic_bool quitting;           /* vCPU threads return */
    pthread_mutex_t park_lock;
    pthread_cond_t park_cond;       /* parked count changed / unpause */
    unsigned parked;

    /* In-kernel irqchip state right after creation, restored on reset. */
    struct kvm_irqchip irqchip_reset[3];
    struct kvm_pit_state2 pit_reset;
    int signal_fd;

    /* Main thread only. */
    enum vm_run_state run_state;
    struct kvm_clock_data clock_at_stop;    /* kvmclock frozen while paused */
    struct {
        void (*fn)(void *opaque, const struct vm_event *ev);
        void *opaque;
    } listeners[VM_MAX_LISTENERS];
    unsigned nr_listeners;
    const char *exit_reason;                /* ShutdownCause of the exit */
    bool exit_event_sent;                   /* SHUTDOWN already emitted for it */
};

/* Create the KVM VM with RAM, in-kernel irqchip and PIT, and the vCPUs (not
 * yet running). Returns NULL with a one-line reason printed. */
struct vm *vm_create(const struct vm_config *cfg, const struct timespec *start);
void vm_destroy(struct vm *vm);
/* Register a device's lifecycle hooks; -ENOSPC when full. */
int vm_add_device(struct vm *vm, const char *name, void (*reset)(void *),
                  void (*free_fn)(void *), void *opaque);
/* An interrupt line driving a GSI of the in-kernel irqchip. */
struct irq_line vm_irq_line(struct vm *vm, uint32_t gsi);
/* Start vCPU threads and run the event loop until the VM exits. Returns the
 * process exit status. */
int vm_run(struct vm *vm);

/* Any thread. The first exit request's status wins. */
void vm_request_exit(struct vm *vm, int status);
void vm_request_reset(struct vm *vm);
/* The guest powered off: exit 0, or with -no-shutdown stop in state
 * "shutdown". */
void vm_request_poweroff(struct vm *vm);

/* Main thread (the monitor). Each returns 0 or -errno:
 * vm_stop: running -> paused (STOP event); -EINVAL if not running.
 * vm_cont: paused/prelaunch -> running (RESUME); -EBUSY in state shutdown
 *          or internal-error (a reset is needed first).
 * vm_system_reset: like a guest reset but caused by the host (RESET
 *          guest=false); a VM that was not running (paused, shutdown)
 *          is then in prelaunch, as in QEMU.
 * vm_system_powerdown: press the ACPI power button (POWERDOWN).
 * vm_quit: end kvmbox with status 0 (SHUTDOWN guest=false, host-qmp-quit). */
int vm_stop(struct vm *vm);
int vm_cont(struct vm *vm);
int vm_system_reset(struct vm *vm);
int vm_system_powerdown(struct vm *vm);
void vm_quit(struct vm *vm, const char *reason);
/* Get told about lifecycle events (main thread). -ENOSPC when full. */
int vm_add_listener(struct vm *vm, void (*fn)(void *opaque, const struct vm_event *ev),
                    void *opaque);
void vm_remove_listener(struct vm *vm, void (*fn)(void *opaque, const struct vm_event *ev),
                        void *opaque);

/* Main thread: stop every vCPU at its next exit and wait until all are
 * parked; vm_resume_vcpus lets them go. */
void vm_pause_vcpus(struct vm *vm);
void vm_resume_vcpus(struct vm *vm);

/* APIC ID of CPU index under the -smp topology (also its KVM vcpu id). */
uint32_t vm_cpu_apic_id(const struct smp_config *s, unsigned index);

/* Microseconds since the process started (the boot timer's clock). */
uint64_t vm_uptime_us(const struct vm *vm);

/* vcpu.c */
int vcpu_create(struct vm *vm, struct vcpu *v, unsigned index, uint32_t apic_id);
void vcpu_destroy(struct vcpu *v);
int vcpu_save_reset_state(struct vcpu *v);
int vcpu_apply_reset_state(struct vcpu *v);
int vcpu_start(struct vcpu *v);
void vcpu_kick(struct vcpu *v);
/* Log the vCPU's registers (error level): crash reports, SIGUSR2. */
void vcpu_dump_regs(struct vcpu *v);
/* Signal used to kick vCPU threads out of KVM_RUN. */
#define VCPU_KICK_SIGNAL SIGUSR1

#endif
