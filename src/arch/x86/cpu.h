/* x86 vCPU set-up: CPUID (host passthrough with -smp topology and the KVM
 * leaves), initial MSRs, LAPIC LINT pins, and the register state of each
 * boot protocol's entry. Main thread, before the vCPUs run (or parked). */
#ifndef KVMBOX_X86_CPU_H
#define KVMBOX_X86_CPU_H

#include <stdint.h>

#include "config/config.h"
#include "core/vm.h"

/* CPUID for one vCPU derived from the supported set (pure function,
 * unit-tested). kvm_on/kvm_off: KVM PV feature bits (leaf 0x40000001 EAX)
 * forced off, or kept on even where kvmbox would drop them: writes into out (which must have room for in->nent entries
 * plus 6: leaves 0xB and 0x1F are synthesized). */
void x86_cpuid_for_vcpu(const struct kvm_cpuid2 *in, struct kvm_cpuid2 *out,
                        const struct smp_config *smp, uint32_t apic_id,
                        uint32_t kvm_on, uint32_t kvm_off);

/* CPUID, MSRs, LAPIC for every vCPU, then save their reset state. */
int x86_cpus_init(struct vm *vm);

enum x86_entry_mode {
    X86_ENTRY_LONG64,      /* Linux 64-bit boot protocol / plain ELF64: RSI = zero page */
    X86_ENTRY_PROT32,      /* PVH (EBX = start_info) or multiboot (EAX magic, EBX info) */
};

struct x86_boot_regs {
    enum x86_entry_mode mode;
    uint64_t rip, rsp, rsi, rbx, rax;
};

/* Write the boot GDT/page tables to RAM and put the BSP at the entry. */
int x86_setup_boot_cpu(struct vm *vm, const struct x86_boot_regs *b);

/* MSRs reset at every boot (also the kvmclock/PV MSRs, so a rebooted guest
 * starts without stale shared pages). */
int x86_set_boot_msrs(struct vcpu *v);

#endif
