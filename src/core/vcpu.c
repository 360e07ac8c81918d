/* vCPU threads: KVM_RUN and the exit dispatch. Device callbacks run here
 * (through the buses); lifecycle events become requests to the main thread. */
#include "core/log.h"
#include "core/vm.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

int vcpu_create(struct vm *vm, struct vcpu *v, unsigned index, uint32_t apic_id)
{
    v->vm = vm;
    v->index = index;
    v->apic_id = apic_id;
    v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)apic_id);
    if (v->fd < 0) {
        log_err("KVM_CREATE_VCPU %u: %s", index, strerror(errno));
        return -errno;
    }
    v->run = mmap(NULL, (size_t)vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
    if (v->run == MAP_FAILED) {
        v->run = NULL;
        log_err("mmap(kvm_run) for vCPU %u: %s", index, strerror(errno));
        return -errno;
    }
    return 0;
}

void vcpu_destroy(struct vcpu *v)
{
    if (v->run)
        munmap(v->run, (size_t)v->vm->run_size);
    if (v->fd >= 0)
        close(v->fd);
    v->run = NULL;
    v->fd = -1;
}

int vcpu_save_reset_state(struct vcpu *v)
{
    struct vcpu_reset_state *s = &v->reset_state;
    if (ioctl(v->fd, KVM_GET_REGS, &s->regs) < 0 ||
        ioctl(v->fd, KVM_GET_SREGS, &s->sregs) < 0 ||
        ioctl(v->fd, KVM_GET_FPU, &s->fpu) < 0 ||
        ioctl(v->fd, KVM_GET_LAPIC, &s->lapic) < 0 ||
        ioctl(v->fd, KVM_GET_MP_STATE, &s->mp_state) < 0) {
        log_err("vCPU %u: cannot read its initial state: %s", v->index, strerror(errno));
        return -errno;
    }
    return 0;
}

int vcpu_apply_reset_state(struct vcpu *v)
{
    struct vcpu_reset_state *s = &v->reset_state;
    if (ioctl(v->fd, KVM_SET_LAPIC, &s->lapic) < 0 ||
        ioctl(v->fd, KVM_SET_SREGS, &s->sregs) < 0 ||
        ioctl(v->fd, KVM_SET_REGS, &s->regs) < 0 ||
        ioctl(v->fd, KVM_SET_FPU, &s->fpu) < 0 ||
        ioctl(v->fd, KVM_SET_MP_STATE, &s->mp_state) < 0) {
        log_err("vCPU %u: cannot reset its state: %s", v->index, strerror(errno));
        return -errno;
    }
    return 0;
}

void vcpu_kick(struct vcpu *v)
{
    if (!v->thread_started || !v->run)
        return;
    /* immediate_exit makes a KVM_RUN that starts after this point return at
     * once; the signal interrupts one already running. Together there is no
     * window in which the kick is lost. */
    __atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
    pthread_kill(v->thread, VCPU_KICK_SIGNAL);
}

static void vcpu_park(struct vcpu *v)
{
    struct vm *vm = v->vm;
    pthread_mutex_lock(&vm->park_lock);
    vm->parked++;
    pthread_cond_broadcast(&vm->park_cond);
    while (atomic_load(&vm->pause_req) && !atomic_load(&vm->quitting))
        pthread_cond_wait(&vm->park_cond, &vm->park_lock);
    vm->parked--;
    pthread_mutex_unlock(&vm->park_lock);
}

void vcpu_dump_regs(struct vcpu *v)
{
    struct kvm_regs r;
    struct kvm_sregs s;
    if (ioctl(v->fd, KVM_GET_REGS, &r) < 0 || ioctl(v->fd, KVM_GET_SREGS, &s) < 0)
        return;
    struct kvm_mp_state mp = { 0 };
    ioctl(v->fd, KVM_GET_MP_STATE, &mp);
    log_err("vCPU %u: RIP=%016llx RSP=%016llx RFLAGS=%08llx CS=%04x CR0=%llx CR3=%llx CR4=%llx EFER=%llx mp_state=%u",
            v->index, r.rip, r.rsp, r.rflags, s.cs.selector, s.cr0, s.cr3, s.cr4, s.efer,
            mp.mp_state);
    log_err("vCPU %u: RAX=%016llx RBX=%016llx RCX=%016llx RDX=%016llx RSI=%016llx RDI=%016llx",
            v->index, r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi);
}

static const struct log_ratelimit vcpu_unhandled_rl_init = LOG_RATELIMIT_INIT;

/* Returns false when the vCPU must stop running (the VM is going away). */
static bool vcpu_handle_exit(struct vcpu *v, struct log_ratelimit *rl)
{
    struct kvm_run *run = v->run;
    struct vm *vm = v->vm;
    switch (run->exit_reason) {
    case KVM_EXIT_IO: {
        uint8_t *data = (uint8_t *)run + run->io.data_offset;
        bool is_write = run->io.direction == KVM_EXIT_IO_OUT;
        /* data_offset and count come from the kernel, but stay inside the
         * mapping whatever they say. */
        uint64_t span = (uint64_t)run->io.size * run->io.count;
        if (run->io.data_offset + span > (uint64_t)vm->run_size)
            return true;
        for (uint32_t i = 0; i < run->io.count; i++) {
            if (!bus_access(&vm->pio, run->io.port, data, run->io.size, is_write))
                log_ratelimited(rl, LOG_DEBUG, "unhandled %s port 0x%x size %u",
                                is_write ? "out to" : "in from", run->io.port, run->io.size);
            data += run->io.size;
        }
        return true;
    }
    case KVM_EXIT_MMIO:
        if (run->mmio.len > sizeof run->mmio.data)
            return true;
        if (!bus_access(&vm->mmio, run->mmio.phys_addr, run->mmio.data, run->mmio.len,
                        run->mmio.is_write))
            log_ratelimited(rl, LOG_DEBUG, "unhandled MMIO %s 0x%llx len %u",
                            run->mmio.is_write ? "write" : "read",
                            (unsigned long long)run->mmio.phys_addr, run->mmio.len);
        return true;
    case KVM_EXIT_INTR:
        return true;
    case KVM_EXIT_HLT:
        /* Only without an in-kernel LAPIC; kvmbox always has one. */
        return true;
    case KVM_EXIT_SHUTDOWN:
        /* A triple fault resets a PC. */
        log_info("vCPU %u: triple fault, resetting", v->index);
        vm_request_reset(vm);
        return true;
    case KVM_EXIT_SYSTEM_EVENT:
        switch (run->system_event.type) {
        case KVM_SYSTEM_EVENT_SHUTDOWN:
            vm_request_exit(vm, 0);
            return true;
        case KVM_SYSTEM_EVENT_RESET:
            vm_request_reset(vm);
            return true;
        default:
            log_err("vCPU %u: guest crash event (type %u)", v->index, run->system_event.type);
            vm_request_exit(vm, 1);
            return false;
        }
    case KVM_EXIT_INTERNAL_ERROR:
        log_err("vCPU %u: KVM internal error, suberror %u%s", v->index,
                run->internal.suberror,
                run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION
                    ? " (the host could not emulate a guest instruction)" : "");
        for (uint32_t i = 0; i < run->internal.ndata && i < 16; i++)
            log_err("vCPU %u:   data[%u] = 0x%llx", v->index, i,
                    (unsigned long long)run->internal.data[i]);
        vcpu_dump_regs(v);
        vm_request_exit(vm, 1);
        return false;
    case KVM_EXIT_FAIL_ENTRY:
        log_err("vCPU %u: KVM entry failed, hardware reason 0x%llx", v->index,
                (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
        vcpu_dump_regs(v);
        vm_request_exit(vm, 1);
        return false;
    default:
        log_err("vCPU %u: unexpected KVM exit reason %u", v->index, run->exit_reason);
        vcpu_dump_regs(v);
        vm_request_exit(vm, 1);
        return false;
    }
}

static void *vcpu_thread(void *arg)
{
    struct vcpu *v = arg;
    struct vm *vm = v->vm;
    char name[16];
    snprintf(name, sizeof name, "vcpu%u", v->index);
    atomic_store(&v->tid, (int)gettid());
    pthread_setname_np(pthread_self(), name);
    sigset_t kick;
    sigemptyset(&kick);
    sigaddset(&kick, VCPU_KICK_SIGNAL);
    pthread_sigmask(SIG_UNBLOCK, &kick, NULL);
    struct log_ratelimit rl = vcpu_unhandled_rl_init;
    bool running = true;
    while (running && !atomic_load(&vm->quitting) && !atomic_load(&vm->exit_requested)) {
        if (atomic_load(&vm->pause_req)) {
            vcpu_park(v);
            continue;
        }
        int r = ioctl(v->fd, KVM_RUN, 0);
        if (r < 0) {
            if (errno == EINTR || errno == EAGAIN) {
                __atomic_store_n(&v->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
                continue;
            }
            log_err("vCPU %u: KVM_RUN: %s", v->index, strerror(errno));
            vcpu_dump_regs(v);
            vm_request_exit(vm, 1);
            break;
        }
        running = vcpu_handle_exit(v, &rl);
    }
    /* A vCPU that stopped on its own (error) still counts as parked so a
     * pause never waits for it. */
    pthread_mutex_lock(&vm->park_lock);
    vm->parked++;
    pthread_cond_broadcast(&vm->park_cond);
    pthread_mutex_unlock(&vm->park_lock);
    return NULL;
}

int vcpu_start(struct vcpu *v)
{
    /* The kick signal is blocked everywhere but in the vCPU thread itself. */
    sigset_t kick, old;
    sigemptyset(&kick);
    sigaddset(&kick, VCPU_KICK_SIGNAL);
    pthread_sigmask(SIG_BLOCK, &kick, &old);
    int r = pthread_create(&v->thread, NULL, vcpu_thread, v);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r != 0)
        return -r;
    v->thread_started = true;
    return 0;
}
