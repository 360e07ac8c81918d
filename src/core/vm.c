/* See vm.h: KVM VM creation, the interrupt controller, and the lifecycle
 * (the main thread's loop, exit and reset requests, vCPU parking). */
#include "core/vm.h"
#include "core/kvm_irq.h"
#include "core/log.h"
#include "core/loop.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

/* Capabilities kvmbox cannot run without. */
static const struct { int cap; const char *name; } vm_required_caps[] = {
    { KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP (in-kernel interrupt controller)" },
    { KVM_CAP_PIT2, "KVM_CAP_PIT2 (in-kernel PIT)" },
    { KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY" },
    { KVM_CAP_IRQ_ROUTING, "KVM_CAP_IRQ_ROUTING" },
    { KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT" },
    { KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR" },
    { KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID" },
};

static int vm_open_kvm(struct vm *vm)
{
    vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (vm->kvm_fd < 0) {
        int e = errno;
        if (e == ENOENT)
            log_err("/dev/kvm does not exist: KVM is not available on this host "
                    "(load the kvm module, or enable virtualization)");
        else if (e == EACCES || e == EPERM)
            log_err("/dev/kvm: permission denied (add your user to the kvm group "
                    "or run as root)");
        else
            log_err("/dev/kvm: %s", strerror(e));
        return -e;
    }
    /* Deliberately no check of /proc/cpuinfo for vmx/svm: KVM implementations
     * without them (nested setups, PVM) are real KVM; the API decides. */
    int api = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
    if (api != KVM_API_VERSION) {
        log_err("/dev/kvm: KVM API version %d, kvmbox needs %d", api, KVM_API_VERSION);
        return -EINVAL;
    }
    for (size_t i = 0; i < sizeof vm_required_caps / sizeof vm_required_caps[0]; i++) {
        if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, vm_required_caps[i].cap) <= 0) {
            log_err("/dev/kvm: missing capability %s", vm_required_caps[i].name);
            return -ENOTSUP;
        }
    }
    vm->run_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (vm->run_size < (int)sizeof(struct kvm_run)) {
        log_err("/dev/kvm: bad KVM_GET_VCPU_MMAP_SIZE %d", vm->run_size);
        return -EINVAL;
    }
    return 0;
}

static int vm_set_irq_level(void *ctx, uint32_t gsi, int level)
{
    struct vm *vm = ctx;
    struct kvm_irq_level irq = { .irq = gsi, .level = (uint32_t)level };
    if (ioctl(vm->vm_fd, KVM_IRQ_LINE, &irq) < 0)
        return -errno;
    return 0;
}

static const struct irq_chip_ops vm_kvm_irqchip_ops = {
    .set_level = vm_set_irq_level,
};

struct irq_line vm_irq_line(struct vm *vm, uint32_t gsi)
{
    return (struct irq_line){ &vm_kvm_irqchip_ops, vm, gsi };
}

static int vm_setup_memory(struct vm *vm)
{
    int ret = gmem_init(&vm->mem, vm->cfg->ram_size);
    if (ret < 0) {
        log_err("-m: cannot allocate %llu MiB of guest RAM: %s",
                (unsigned long long)(vm->cfg->ram_size >> 20), strerror(-ret));
        return ret;
    }
    for (unsigned i = 0; i < vm->mem.n; i++) {
        const struct gmem_region *r = &vm->mem.regions[i];
        struct kvm_userspace_memory_region slot = {
            .slot = i, .guest_phys_addr = r->gpa, .memory_size = r->size,
            .userspace_addr = (uint64_t)(uintptr_t)r->hva,
        };
        if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &slot) < 0) {
            log_err("KVM_SET_USER_MEMORY_REGION: %s", strerror(errno));
            return -errno;
        }
    }
    return 0;
}

static int vm_setup_irqchip(struct vm *vm)
{
    /* Addresses for Intel VMX's real-mode helpers, below the 4 GiB hole's
     * top where nothing else lives (the same values QEMU and Firecracker use). */
    if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, 0xfffbd000UL) < 0) {
        log_err("KVM_SET_TSS_ADDR: %s", strerror(errno));
        return -errno;
    }
    uint64_t ident = 0xfffbc000;
    if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_SET_IDENTITY_MAP_ADDR) > 0 &&
        ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &ident) < 0) {
        log_err("KVM_SET_IDENTITY_MAP_ADDR: %s", strerror(errno));
        return -errno;
    }
    if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
        log_err("KVM_CREATE_IRQCHIP: %s", strerror(errno));
        return -errno;
    }
    /* The speaker port stays in the kernel (dummy), as QEMU configures it. */
    struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
    if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
        log_err("KVM_CREATE_PIT2: %s", strerror(errno));
        return -errno;
    }
    int ret = kvm_irq_routing_init(vm);
    if (ret < 0) {
        log_err("KVM_SET_GSI_ROUTING: %s", strerror(-ret));
        return ret;
    }
    for (unsigned i = 0; i < 3; i++) {
        vm->irqchip_reset[i].chip_id = i;
        if (ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &vm->irqchip_reset[i]) < 0) {
            log_err("KVM_GET_IRQCHIP: %s", strerror(errno));
            return -errno;
        }
    }
    if (ioctl(vm->vm_fd, KVM_GET_PIT2, &vm->pit_reset) < 0) {
        log_err("KVM_GET_PIT2: %s", strerror(errno));
        return -errno;
    }
    return 0;
}

static int vm_get_cpuid(struct vm *vm)
{
    for (unsigned nent = 128; nent <= 4096; nent *= 2) {
        struct kvm_cpuid2 *c = calloc(1, sizeof *c + nent * sizeof c->entries[0]);
        if (!c)
            return -ENOMEM;
        c->nent = nent;
        if (ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0) {
            vm->cpuid = c;
            return 0;
        }
        int e = errno;
        free(c);
        if (e != E2BIG) {
            log_err("KVM_GET_SUPPORTED_CPUID: %s", strerror(e));
            return -e;
        }
    }
    return -E2BIG;
}

/* APIC ID of a CPU index under the -smp topology: thread, core and socket
 * fields, each as wide as its count rounded up to a power of two (what CPUID
 * leaf 0xB will report; Intel SDM vol. 3 §8.9). */
static unsigned bits_for(unsigned n)
{
    unsigned b = 0;
    while ((1u << b) < n)
        b++;
    return b;
}

uint32_t vm_cpu_apic_id(const struct smp_config *s, unsigned index)
{
    unsigned tbits = bits_for(s->threads), cbits = bits_for(s->cores);
    unsigned thread = index % s->threads;
    unsigned core = (index / s->threads) % s->cores;
    unsigned socket = index / (s->threads * s->cores);
    return (socket << (tbits + cbits)) | (core << tbits) | thread;
}

static void vm_kick_handler(int sig) { (void)sig; }
static void vm_on_wake(void *opaque);

struct vm *vm_create(const struct vm_config *cfg, const struct timespec *start)
{
    struct vm *vm = calloc(1, sizeof *vm);
    if (!vm) {
        log_err("out of memory");
        return NULL;
    }
    int mem_error = 0;
    vm->cfg = cfg;
    vm->kvm_fd = vm->vm_fd = vm->signal_fd = -1;
    vm->start_time = *start;
    pthread_mutex_init(&vm->park_lock, NULL);
    pthread_cond_init(&vm->park_cond, NULL);
    if (bus_init(&vm->pio) < 0 || bus_init(&vm->mmio) < 0)
        goto fail;
    vm->loop = loop_new(vm_on_wake, vm);
    if (!vm->loop)
        goto fail;
    if (vm_open_kvm(vm) < 0)
        goto fail;

    unsigned max_vcpus = (unsigned)ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
    unsigned max_id = (unsigned)ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPU_ID);
    if (max_id == 0)
        max_id = max_vcpus;
    if (cfg->smp.cpus > max_vcpus) {
        log_err("-smp: %u vCPUs requested, this host's KVM allows %u", cfg->smp.cpus, max_vcpus);
        goto fail;
    }
    uint32_t top_id = vm_cpu_apic_id(&cfg->smp, cfg->smp.maxcpus - 1);
    if (top_id >= 255 || top_id >= max_id) {
        /* 255 is the xAPIC broadcast ID; beyond it guests need x2APIC
         * routing and the MP table cannot describe the CPUs. */
        log_err("-smp: the topology needs APIC IDs up to %u (expected fewer CPUs: at most 254 APIC IDs)",
                top_id);
        goto fail;
    }

    do {
        vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
    } while (vm->vm_fd < 0 && errno == EINTR);
    if (vm->vm_fd < 0) {
        log_err("KVM_CREATE_VM: %s", strerror(errno));
        goto fail;
    }
    int r = vm_setup_memory(vm);
    if (r < 0) {
        /* The only failure that is the user's doing (-m too large): tell
         * main through errno so it can exit 2. */
        mem_error = -r;
        goto fail;
    }
    if (vm_setup_irqchip(vm) < 0 || vm_get_cpuid(vm) < 0)
        goto fail;

    struct sigaction sa = { .sa_handler = vm_kick_handler };
    sigemptyset(&sa.sa_mask);
    sigaction(VCPU_KICK_SIGNAL, &sa, NULL);    /* no SA_RESTART: KVM_RUN returns EINTR */

    vm->vcpus = calloc(cfg->smp.cpus, sizeof *vm->vcpus);
    if (!vm->vcpus)
        goto fail;
    for (unsigned i = 0; i < cfg->smp.cpus; i++) {
        if (vcpu_create(vm, &vm->vcpus[i], i, vm_cpu_apic_id(&cfg->smp, i)) < 0)
            goto fail;
        vm->nr_vcpus++;
    }
    return vm;
fail:
    vm_destroy(vm);
    errno = mem_error == ENOMEM ? ENOMEM : EINVAL;
    return NULL;
}

void vm_destroy(struct vm *vm)
{
    if (!vm)
        return;
    for (unsigned i = vm->nr_devices; i-- > 0;)
        if (vm->devices[i].free)
            vm->devices[i].free(vm->devices[i].opaque);
    if (vm->machine && vm->machine->free)
        vm->machine->free(vm);
    for (unsigned i = 0; i < vm->nr_vcpus; i++)
        vcpu_destroy(&vm->vcpus[i]);
    free(vm->vcpus);
    if (vm->loop)
        loop_free(vm->loop);
    if (vm->signal_fd >= 0)
        close(vm->signal_fd);
    free(vm->cpuid);
    kvm_irq_routing_destroy(vm);
    if (vm->vm_fd >= 0)
        close(vm->vm_fd);
    if (vm->kvm_fd >= 0)
        close(vm->kvm_fd);
    gmem_destroy(&vm->mem);
    bus_destroy(&vm->pio);
    bus_destroy(&vm->mmio);
    pthread_cond_destroy(&vm->park_cond);
    pthread_mutex_destroy(&vm->park_lock);
    free(vm);
}

int vm_add_device(struct vm *vm, const char *name, void (*reset)(void *),
                  void (*free_fn)(void *), void *opaque)
{
    if (vm->nr_devices == VM_MAX_DEVICES)
        return -ENOSPC;
    vm->devices[vm->nr_devices++] = (struct vm_device){ name, reset, free_fn, opaque };
    return 0;
}

uint64_t vm_uptime_us(const struct vm *vm)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t us = (int64_t)(now.tv_sec - vm->start_time.tv_sec) * 1000000 +
                 (now.tv_nsec - vm->start_time.tv_nsec) / 1000;
    return us > 0 ? (uint64_t)us : 0;
}

void vm_request_exit(struct vm *vm, int status)
{
    unsigned old = atomic_fetch_or(&vm->requests, VM_REQ_EXIT);
    if (!(old & VM_REQ_EXIT))
        atomic_store(&vm->exit_status, status);
    /* The requesting vCPU (e.g. one that wrote the ACPI sleep register)
     * must not run on: the guest expects to be gone, as on hardware. */
    atomic_store(&vm->exit_requested, true);
    if (vm->loop)
        loop_wake(vm->loop);
}

void vm_request_poweroff(struct vm *vm)
{
    /* Like an exit request, the vCPU that wrote the sleep register must not
     * run on; with -no-shutdown they all park instead of exiting. */
    if (vm->cfg->no_shutdown)
        atomic_store(&vm->pause_req, true);
    else
        atomic_store(&vm->exit_requested, true);
    atomic_fetch_or(&vm->requests, VM_REQ_POWEROFF);
    if (vm->loop)
        loop_wake(vm->loop);
}

void vm_request_reset(struct vm *vm)
{
    /* The requesting vCPU parks at once instead of running past the reset
     * write; the main thread parks the others (vm_pause_vcpus). */
    atomic_store(&vm->pause_req, true);
    atomic_fetch_or(&vm->requests, VM_REQ_RESET);
    if (vm->loop)
        loop_wake(vm->loop);
}

void vm_pause_vcpus(struct vm *vm)
{
    atomic_store(&vm->pause_req, true);
    for (unsigned i = 0; i < vm->nr_vcpus; i++)
        vcpu_kick(&vm->vcpus[i]);
    pthread_mutex_lock(&vm->park_lock);
    unsigned running = 0;
    for (unsigned i = 0; i < vm->nr_vcpus; i++)
        running += vm->vcpus[i].thread_started;
    while (vm->parked < running)
        pthread_cond_wait(&vm->park_cond, &vm->park_lock);
    pthread_mutex_unlock(&vm->park_lock);
}

void vm_resume_vcpus(struct vm *vm)
{
    pthread_mutex_lock(&vm->park_lock);
    atomic_store(&vm->pause_req, false);
    pthread_cond_broadcast(&vm->park_cond);
    pthread_mutex_unlock(&vm->park_lock);
}

const char *vm_run_state_name(enum vm_run_state s)
{
    switch (s) {
    case VM_RUN_PRELAUNCH: return "prelaunch";
    case VM_RUN_RUNNING: return "running";
    case VM_RUN_PAUSED: return "paused";
    case VM_RUN_SHUTDOWN: return "shutdown";
    case VM_RUN_INTERNAL_ERROR: return "internal-error";
    }
    return "unknown";
}

int vm_add_listener(struct vm *vm, void (*fn)(void *opaque, const struct vm_event *ev),
                    void *opaque)
{
    if (vm->nr_listeners == VM_MAX_LISTENERS)
        return -ENOSPC;
    vm->listeners[vm->nr_listeners].fn = fn;
    vm->listeners[vm->nr_listeners].opaque = opaque;
    vm->nr_listeners++;
    return 0;
}

void vm_remove_listener(struct vm *vm, void (*fn)(void *opaque, const struct vm_event *ev),
                        void *opaque)
{
    for (unsigned i = 0; i < vm->nr_listeners; i++) {
        if (vm->listeners[i].fn == fn && vm->listeners[i].opaque == opaque) {
            memmove(&vm->listeners[i], &vm->listeners[i + 1],
                    (vm->nr_listeners - i - 1) * sizeof vm->listeners[0]);
            vm->nr_listeners--;
            return;
        }
    }
}

static void vm_emit(struct vm *vm, enum vm_event_kind kind, bool guest, const char *reason)
{
    struct vm_event ev = { kind, guest, reason };
    for (unsigned i = 0; i < vm->nr_listeners; i++)
        vm->listeners[i].fn(vm->listeners[i].opaque, &ev);
}

/* Put the whole machine back to its power-on state and boot again. The
 * vCPUs run afterwards only if they were running before. */
static int vm_reset(struct vm *vm, bool resume)
{
    vm_pause_vcpus(vm);
    for (unsigned i = 0; i < 3; i++)
        ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &vm->irqchip_reset[i]);
    ioctl(vm->vm_fd, KVM_SET_PIT2, &vm->pit_reset);
    for (unsigned i = 0; i < vm->nr_devices; i++)
        if (vm->devices[i].reset)
            vm->devices[i].reset(vm->devices[i].opaque);
    int ret = 0;
    for (unsigned i = 0; i < vm->nr_vcpus && ret == 0; i++)
        ret = vcpu_apply_reset_state(&vm->vcpus[i]);
    if (ret == 0)
        ret = vm->machine->load_boot(vm);
    if (resume)
        vm_resume_vcpus(vm);
    return ret;
}

int vm_stop(struct vm *vm)
{
    if (vm->run_state != VM_RUN_RUNNING)
        return 0;           /* already stopped: nothing to do, as QEMU */
    vm_pause_vcpus(vm);
    /* Freeze the guest's clock: kvmclock must not jump by the time spent
     * stopped (QEMU does the same with KVM_GET/SET_CLOCK). */
    if (ioctl(vm->vm_fd, KVM_GET_CLOCK, &vm->clock_at_stop) < 0)
        vm->clock_at_stop.clock = 0;
    vm->run_state = VM_RUN_PAUSED;
    vm_emit(vm, VM_EVENT_STOP, false, NULL);
    return 0;
}

int vm_cont(struct vm *vm)
{
    switch (vm->run_state) {
    case VM_RUN_RUNNING:
        return 0;
    case VM_RUN_SHUTDOWN:
    case VM_RUN_INTERNAL_ERROR:
        return -EBUSY;      /* "Resetting the Virtual Machine is required" */
    case VM_RUN_PAUSED:
        if (vm->clock_at_stop.clock) {
            struct kvm_clock_data clk = { .clock = vm->clock_at_stop.clock };
            ioctl(vm->vm_fd, KVM_SET_CLOCK, &clk);
            vm->clock_at_stop.clock = 0;
        }
        break;
    case VM_RUN_PRELAUNCH:
        break;
    }
    vm->run_state = VM_RUN_RUNNING;
    vm_resume_vcpus(vm);
    vm_emit(vm, VM_EVENT_RESUME, false, NULL);
    return 0;
}

int vm_system_reset(struct vm *vm)
{
    bool running = vm->run_state == VM_RUN_RUNNING;
    int ret = vm_reset(vm, running);
    if (ret < 0)
        return ret;
    /* A stopped VM that is reset has not run since: QEMU calls that
     * prelaunch (query-status), whatever it was stopped for. */
    if (!running) {
        vm->run_state = VM_RUN_PRELAUNCH;
        vm->clock_at_stop.clock = 0;
    }
    vm_emit(vm, VM_EVENT_RESET, false, "host-qmp-system-reset");
    return 0;
}

int vm_system_powerdown(struct vm *vm)
{
    if (!vm->machine->powerdown)
        return -ENOTSUP;
    vm->machine->powerdown(vm);
    vm_emit(vm, VM_EVENT_POWERDOWN, false, NULL);
    return 0;
}

void vm_quit(struct vm *vm, const char *reason)
{
    /* The event goes out now, before the command's reply, as QEMU orders
     * them (main thread: the listeners are called right here). */
    if (!vm->exit_reason) {
        vm->exit_reason = reason;
        vm->exit_event_sent = true;
        vm_emit(vm, VM_EVENT_SHUTDOWN, false, reason);
    }
    vm_request_exit(vm, 0);
}

/* Main-thread side of the lifecycle requests. */
static void vm_on_wake(void *opaque)
{
    struct vm *vm = opaque;
    unsigned req = atomic_exchange(&vm->requests, 0);
    if (req & VM_REQ_EXIT) {
        atomic_fetch_or(&vm->requests, VM_REQ_EXIT);    /* keep it visible */
        if (vm->exit_reason && !vm->exit_event_sent)
            vm_emit(vm, VM_EVENT_SHUTDOWN, false, vm->exit_reason);
        loop_quit(vm->loop);
        return;
    }
    if (req & VM_REQ_POWEROFF) {
        vm_emit(vm, VM_EVENT_SHUTDOWN, true, "guest-shutdown");
        if (vm->cfg->no_shutdown) {
            /* Keep the process (and the monitor) alive, guest stopped. */
            vm_pause_vcpus(vm);
            vm->run_state = VM_RUN_SHUTDOWN;
            vm_emit(vm, VM_EVENT_STOP, false, NULL);
        } else {
            vm_request_exit(vm, 0);
        }
        return;
    }
    if (req & VM_REQ_RESET) {
        vm_emit(vm, VM_EVENT_RESET, true, "guest-reset");
        if (vm->cfg->no_reboot) {
            log_info("guest reset with -no-reboot: exiting");
            vm_emit(vm, VM_EVENT_SHUTDOWN, true, "guest-reset");
            vm_request_exit(vm, 0);
            return;
        }
        log_info("guest reset");
        if (vm_reset(vm, vm->run_state == VM_RUN_RUNNING) < 0) {
            log_err("reset failed: cannot reload the boot image");
            vm_request_exit(vm, 1);
        }
    }
}

static void vm_on_signal(void *opaque, int fd, uint32_t events)
{
    struct vm *vm = opaque;
    struct signalfd_siginfo si;
    if (read(fd, &si, sizeof si) != sizeof si)
        return;
    if (si.ssi_signo == SIGUSR2) {
        /* Debugging aid: where is every vCPU? (docs/architecture.md) */
        vm_pause_vcpus(vm);
        for (unsigned i = 0; i < vm->nr_vcpus; i++)
            vcpu_dump_regs(&vm->vcpus[i]);
        vm_resume_vcpus(vm);
        return;
    }
    /* QEMU's behaviour and message: a termination signal is an orderly
     * shutdown, exit status 0. */
    fprintf(stderr, "kvmbox: terminating on signal %u from pid %u\n",
            si.ssi_signo, si.ssi_pid);
    vm_quit(vm, "host-signal");
}

int vm_run(struct vm *vm)
{
    int status = 1;
    /* Termination signals arrive through a signalfd on the loop; they are
     * blocked in every thread (vCPU threads inherit the mask). */
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGINT);
    sigaddset(&term, SIGTERM);
    sigaddset(&term, SIGHUP);
    sigaddset(&term, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &term, NULL);
    vm->signal_fd = signalfd(-1, &term, SFD_CLOEXEC | SFD_NONBLOCK);
    if (vm->signal_fd < 0 ||
        loop_add_fd(vm->loop, vm->signal_fd, EPOLLIN, vm_on_signal, vm) < 0) {
        log_err("signalfd: %s", strerror(errno));
        return 1;
    }
    if (vm->cfg->start_paused) {
        /* -S: the vCPU threads start parked; cont lets them go. */
        atomic_store(&vm->pause_req, true);
        vm->run_state = VM_RUN_PRELAUNCH;
    } else {
        vm->run_state = VM_RUN_RUNNING;
    }
    for (unsigned i = 0; i < vm->nr_vcpus; i++) {
        if (vcpu_start(&vm->vcpus[i]) < 0) {
            log_err("cannot start vCPU thread %u", i);
            vm_request_exit(vm, 1);
            break;
        }
    }
    if (!(atomic_load(&vm->requests) & VM_REQ_EXIT)) {
        if (loop_run(vm->loop) < 0) {
            log_err("event loop failed: %s", strerror(errno));
            vm_request_exit(vm, 1);
        }
    }
    status = atomic_load(&vm->exit_status);
    /* Stop the vCPU threads: mark quitting, kick them out of KVM_RUN, join. */
    atomic_store(&vm->quitting, true);
    pthread_mutex_lock(&vm->park_lock);
    pthread_cond_broadcast(&vm->park_cond);
    pthread_mutex_unlock(&vm->park_lock);
    for (unsigned i = 0; i < vm->nr_vcpus; i++)
        vcpu_kick(&vm->vcpus[i]);
    for (unsigned i = 0; i < vm->nr_vcpus; i++) {
        if (vm->vcpus[i].thread_started) {
            pthread_join(vm->vcpus[i].thread, NULL);
            vm->vcpus[i].thread_started = false;
        }
    }
    return status;
}

