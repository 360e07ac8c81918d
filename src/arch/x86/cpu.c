/* See cpu.h. */
#include "arch/x86/cpu.h"
#include "arch/x86/layout.h"
#include "core/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

static unsigned cpu_bits_for(unsigned n)
{
    unsigned b = 0;
    while ((1u << b) < n)
        b++;
    return b;
}

/* Intel SDM vol. 2A, CPUID leaves 1, 4 and 0xB/0x1F; the KVM leaves are
 * Documentation/virt/kvm/x86/cpuid.rst. */
void x86_cpuid_for_vcpu(const struct kvm_cpuid2 *in, struct kvm_cpuid2 *out,
                        const struct smp_config *smp, uint32_t apic_id,
                        uint32_t kvm_on, uint32_t kvm_off)
{
    unsigned threads = smp->threads, cores = smp->cores;
    unsigned per_pkg = threads * cores;
    unsigned tbits = cpu_bits_for(threads), cbits = cpu_bits_for(cores);
    out->nent = 0;
    out->padding = 0;
    for (uint32_t i = 0; i < in->nent; i++) {
        struct kvm_cpuid_entry2 e = in->entries[i];
        switch (e.function) {
        case 1:
            e.ebx = (e.ebx & 0x0000FFFFu) | ((per_pkg & 0xFF) << 16) | (apic_id << 24);
            if (per_pkg > 1)
                e.edx |= 1u << 28;          /* HTT: more than one logical CPU per package */
            else
                e.edx &= ~(1u << 28);
            e.ecx |= 1u << 31;              /* hypervisor present */
            break;
        case 4:
            if ((e.eax & 0x1F) != 0) {
                unsigned level = (e.eax >> 5) & 7;
                unsigned sharing = level >= 3 ? per_pkg : threads;
                e.eax = (e.eax & 0x3FFF)
                      | (((1u << cbits) - 1) << 26)
                      | ((sharing - 1) << 14);
            }
            break;
        case 0xB:
        case 0x1F:
            continue;       /* synthesized below, whatever KVM offered */
        case 0x40000000:
            /* "KVMKVMKVM\0\0\0": the signature Linux looks for to enable
             * kvmclock and the other PV features in leaf 0x40000001. */
            e.ebx = 0x4b4d564b;
            e.ecx = 0x564b4d56;
            e.edx = 0x0000004d;
            if (e.eax < 0x40000001)
                e.eax = 0x40000001;
            break;
        case 0x40000001:
            e.eax = (e.eax & ~kvm_off) | (e.eax & kvm_on);
            break;
        case 0x80000008:
            /* AMD: cores per package - 1 in ECX[7:0], APIC ID size [15:12]. */
            e.ecx = (e.ecx & ~0xF0FFu) | ((per_pkg - 1) & 0xFF) |
                    ((tbits + cbits) << 12);
            break;
        default:
            break;
        }
        out->entries[out->nent++] = e;
    }
    /* Extended topology: KVM may offer leaf 0xB with only an empty subleaf
     * 0, which makes every vCPU its own package (and Linux then
     * recalibrates its delay loop on each AP). Describe the -smp topology:
     * SMT level, core level, then the terminating invalid level. Leaf 0x1F
     * (V2) carries the same when the CPU advertises it. */
    uint32_t max_basic = 0;
    for (uint32_t i = 0; i < in->nent; i++)
        if (in->entries[i].function == 0)
            max_basic = in->entries[i].eax;
    for (uint32_t leaf = 0xB; leaf <= 0x1F; leaf += 0x1F - 0xB) {
        if (max_basic < leaf)
            break;
        for (uint32_t sub = 0; sub < 3; sub++) {
            struct kvm_cpuid_entry2 e = {
                .function = leaf, .index = sub,
                .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX, .edx = apic_id,
            };
            if (sub == 0) {
                e.eax = tbits;
                e.ebx = threads;
                e.ecx = (1u << 8) | sub;    /* SMT level */
            } else if (sub == 1) {
                e.eax = tbits + cbits;
                e.ebx = per_pkg;
                e.ecx = (2u << 8) | sub;    /* core level */
            } else {
                e.ecx = sub;                /* level type 0: end of list */
            }
            out->entries[out->nent++] = e;
        }
    }
}

#define MSR_IA32_SYSENTER_CS  0x174
#define MSR_IA32_SYSENTER_ESP 0x175
#define MSR_IA32_SYSENTER_EIP 0x176
#define MSR_STAR              0xc0000081
#define MSR_LSTAR             0xc0000082
#define MSR_CSTAR             0xc0000083
#define MSR_SYSCALL_MASK      0xc0000084
#define MSR_KERNEL_GS_BASE    0xc0000102
#define MSR_IA32_TSC          0x10
#define MSR_IA32_MISC_ENABLE  0x1a0
#define MSR_MTRR_DEF_TYPE     0x2ff
#define MSR_KVM_WALL_CLOCK_NEW  0x4b564d00
#define MSR_KVM_SYSTEM_TIME_NEW 0x4b564d01
#define MSR_KVM_ASYNC_PF_EN     0x4b564d02
#define MSR_KVM_STEAL_TIME      0x4b564d03
#define MSR_KVM_PV_EOI_EN       0x4b564d04

int x86_set_boot_msrs(struct vcpu *v)
{
    static const struct { uint32_t index; uint64_t value; } boot_msrs[] = {
        { MSR_IA32_SYSENTER_CS, 0 }, { MSR_IA32_SYSENTER_ESP, 0 },
        { MSR_IA32_SYSENTER_EIP, 0 }, { MSR_STAR, 0 }, { MSR_LSTAR, 0 },
        { MSR_CSTAR, 0 }, { MSR_SYSCALL_MASK, 0 }, { MSR_KERNEL_GS_BASE, 0 },
        { MSR_IA32_TSC, 0 },
        { MSR_IA32_MISC_ENABLE, 1 },                    /* fast strings */
        { MSR_MTRR_DEF_TYPE, (1u << 11) | 6 },          /* MTRRs on, default write-back */
        { MSR_KVM_SYSTEM_TIME_NEW, 0 }, { MSR_KVM_ASYNC_PF_EN, 0 },
        { MSR_KVM_STEAL_TIME, 0 }, { MSR_KVM_PV_EOI_EN, 0 },
    };
    enum { N = sizeof boot_msrs / sizeof boot_msrs[0] };
    struct {
        struct kvm_msrs hdr;
        struct kvm_msr_entry e[N];
    } m;
    memset(&m, 0, sizeof m);
    /* One MSR at a time: an implementation may not know one of them (this
     * is the case for some KVM flavours), which must not lose the others. */
    for (unsigned i = 0; i < N; i++) {
        m.hdr.nmsrs = 1;
        m.e[0].index = boot_msrs[i].index;
        m.e[0].data = boot_msrs[i].value;
        if (ioctl(v->fd, KVM_SET_MSRS, &m) != 1)
            log_debug("vCPU %u: MSR 0x%x not settable", v->index, boot_msrs[i].index);
    }
    return 0;
}

/* LAPIC local vector table: LINT0 as ExtINT (the PIC's output, used before
 * the IOAPIC is programmed), LINT1 as NMI — what firmware leaves behind. */
static int x86_setup_lapic(struct vcpu *v)
{
    struct kvm_lapic_state lapic;
    if (ioctl(v->fd, KVM_GET_LAPIC, &lapic) < 0)
        return -errno;
    enum { APIC_LVT_LINT0 = 0x350, APIC_LVT_LINT1 = 0x360 };
    uint32_t lint0, lint1;
    memcpy(&lint0, lapic.regs + APIC_LVT_LINT0, 4);
    memcpy(&lint1, lapic.regs + APIC_LVT_LINT1, 4);
    lint0 = (lint0 & ~0x700u & ~(1u << 16)) | (7u << 8);   /* ExtINT, unmasked */
    lint1 = (lint1 & ~0x700u & ~(1u << 16)) | (4u << 8);   /* NMI, unmasked */
    memcpy(lapic.regs + APIC_LVT_LINT0, &lint0, 4);
    memcpy(lapic.regs + APIC_LVT_LINT1, &lint1, 4);
    return ioctl(v->fd, KVM_SET_LAPIC, &lapic) < 0 ? -errno : 0;
}

/* Does the CPU kvmbox runs on have hardware virtualization? */
static bool x86_host_has_vmx_or_svm(void)
{
    unsigned a, b, c, d;
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(1), "c"(0));
    if (c & (1u << 5))                      /* VMX */
        return true;
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(0x80000000), "c"(0));
    if (a < 0x80000001)
        return false;
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(0x80000001), "c"(0));
    return c & (1u << 2);                   /* SVM */
}

/* The PV features a guest uses through hypercalls (kick a halted vCPU for
 * PV spinlocks, send IPIs, yield to a preempted vCPU). */
#define KVM_PV_HYPERCALL_FEATURES \
    (KVM_PV_FEATURE_BIT(7) | KVM_PV_FEATURE_BIT(11) | KVM_PV_FEATURE_BIT(13))
#define KVM_PV_FEATURE_BIT(n) (1u << (n))

int x86_cpus_init(struct vm *vm)
{
    const struct kvm_cpuid2 *sup = vm->cpuid;
    uint32_t kvm_on = vm->cfg->cpu_kvm_on, kvm_off = vm->cfg->cpu_kvm_off;
    /* A KVM that runs guests without VT-x/AMD-V (kvm_pvm) emulates a
     * non-enlightened guest's ring 0; hypercalls made from there are not
     * completed (a Linux guest hangs bringing up its second vCPU, in
     * kvm_send_ipi_mask). Offer those features only where KVM has the
     * hardware, unless the command line asks for them. */
    if (!x86_host_has_vmx_or_svm()) {
        uint32_t auto_off = KVM_PV_HYPERCALL_FEATURES & ~kvm_on;
        if (auto_off)
            log_info("host without VT-x/AMD-V: not offering the hypercall-based "
                     "PV features (kvm-pv-unhalt, kvm-pv-ipi, kvm-pv-sched-yield)");
        kvm_off |= auto_off;
    }
    struct kvm_cpuid2 *c = calloc(1, sizeof *c + (sup->nent + 8) * sizeof c->entries[0]);
    if (!c)
        return -ENOMEM;
    int ret = 0;
    for (unsigned i = 0; i < vm->nr_vcpus && ret == 0; i++) {
        struct vcpu *v = &vm->vcpus[i];
        x86_cpuid_for_vcpu(sup, c, &vm->cfg->smp, v->apic_id, kvm_on, kvm_off);
        if (ioctl(v->fd, KVM_SET_CPUID2, c) < 0) {
            log_err("vCPU %u: KVM_SET_CPUID2: %s", i, strerror(errno));
            ret = -errno;
            break;
        }
        struct kvm_fpu fpu = { .fcw = 0x37f, .mxcsr = 0x1f80 };
        if (ioctl(v->fd, KVM_SET_FPU, &fpu) < 0) {
            ret = -errno;
            log_err("vCPU %u: KVM_SET_FPU: %s", i, strerror(errno));
            break;
        }
        x86_set_boot_msrs(v);
        if ((ret = x86_setup_lapic(v)) < 0) {
            log_err("vCPU %u: LAPIC set-up: %s", i, strerror(-ret));
            break;
        }
        ret = vcpu_save_reset_state(v);
    }
    free(c);
    return ret;
}

/* Flat boot GDT: null, null, code (0x10), data (0x18), as the Linux 64-bit
 * boot protocol names __BOOT_CS/__BOOT_DS. */
#define GDT_ENTRY(flags, base, limit)                                        \
    ((((uint64_t)(base) & 0xff000000ULL) << 32) |                            \
     (((uint64_t)(flags) & 0x0000f0ffULL) << 40) |                           \
     (((uint64_t)(limit) & 0x000f0000ULL) << 32) |                           \
     (((uint64_t)(base) & 0x00ffffffULL) << 16) |                            \
     ((uint64_t)(limit) & 0x0000ffffULL))

static struct kvm_segment seg_from_gdt(uint64_t entry, uint16_t selector)
{
    struct kvm_segment s = {
        .base = (uint32_t)(((entry >> 16) & 0xffffff) | ((entry >> 32) & 0xff000000)),
        .limit = (uint32_t)((entry & 0xffff) | ((entry >> 32) & 0xf0000)),
        .selector = selector,
        .type = (uint8_t)((entry >> 40) & 0xf),
        .present = (uint8_t)((entry >> 47) & 1),
        .dpl = (uint8_t)((entry >> 45) & 3),
        .db = (uint8_t)((entry >> 54) & 1),
        .s = (uint8_t)((entry >> 44) & 1),
        .l = (uint8_t)((entry >> 53) & 1),
        .g = (uint8_t)((entry >> 55) & 1),
    };
    if (s.g)
        s.limit = (s.limit << 12) | 0xfff;
    return s;
}

int x86_setup_boot_cpu(struct vm *vm, const struct x86_boot_regs *b)
{
    bool long_mode = b->mode == X86_ENTRY_LONG64;
    uint64_t gdt[4] = {
        0, 0,
        long_mode ? GDT_ENTRY(0xa09b, 0, 0xfffff) : GDT_ENTRY(0xc09b, 0, 0xfffff),
        GDT_ENTRY(0xc093, 0, 0xfffff),
    };
    if (gmem_write(&vm->mem, LAYOUT_BOOT_GDT, gdt, sizeof gdt) < 0)
        return -EFAULT;
    uint64_t idt = 0;
    if (gmem_write(&vm->mem, LAYOUT_BOOT_IDT, &idt, sizeof idt) < 0)
        return -EFAULT;

    struct vcpu *bsp = &vm->vcpus[0];
    struct kvm_sregs sregs;
    if (ioctl(bsp->fd, KVM_GET_SREGS, &sregs) < 0)
        return -errno;
    sregs.gdt.base = LAYOUT_BOOT_GDT;
    sregs.gdt.limit = sizeof gdt - 1;
    sregs.idt.base = LAYOUT_BOOT_IDT;
    sregs.idt.limit = 0;
    sregs.cs = seg_from_gdt(gdt[2], 0x10);
    struct kvm_segment data = seg_from_gdt(gdt[3], 0x18);
    sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
    /* A valid (busy 32/64-bit) TSS in TR: VM entry checks require one. */
    sregs.tr = (struct kvm_segment){ .base = 0, .limit = 0x67, .selector = 0x20,
                                     .type = 11, .present = 1, .s = 0 };
    sregs.cr0 = 0x11;          /* PE | ET */
    sregs.cr4 = 0;
    sregs.efer = 0;
    if (long_mode) {
        /* Identity-map the first 4 GiB with 2 MiB pages: PML4 -> one PDPT
         * -> four page directories. */
        uint64_t pml4 = LAYOUT_PDPT | 0x3;
        uint64_t pdpt[4];
        for (unsigned i = 0; i < 4; i++)
            pdpt[i] = (LAYOUT_PD + i * 0x1000) | 0x3;
        if (gmem_write(&vm->mem, LAYOUT_PML4, &pml4, 8) < 0 ||
            gmem_write(&vm->mem, LAYOUT_PDPT, pdpt, sizeof pdpt) < 0)
            return -EFAULT;
        uint64_t *pd = gmem_ptr(&vm->mem, LAYOUT_PD, 4 * 0x1000);
        if (!pd)
            return -EFAULT;
        for (uint64_t i = 0; i < 4 * 512; i++)
            pd[i] = (i << 21) | 0x83;   /* present, writable, 2 MiB page */
        uint64_t rest_of_pml4 = 0;
        for (unsigned i = 1; i < 512; i++)
            gmem_write(&vm->mem, LAYOUT_PML4 + i * 8, &rest_of_pml4, 8);
        for (unsigned i = 4; i < 512; i++)
            gmem_write(&vm->mem, LAYOUT_PDPT + i * 8, &rest_of_pml4, 8);
        sregs.cr3 = LAYOUT_PML4;
        sregs.cr4 = 1u << 5;                   /* PAE */
        sregs.cr0 = 0x80000011;                /* PG | ET | PE */
        sregs.efer = (1u << 8) | (1u << 10);   /* LME | LMA */
    }
    if (ioctl(bsp->fd, KVM_SET_SREGS, &sregs) < 0)
        return -errno;
    struct kvm_regs regs = {
        .rflags = 2, .rip = b->rip, .rsp = b->rsp, .rsi = b->rsi,
        .rbx = b->rbx, .rax = b->rax,
    };
    if (ioctl(bsp->fd, KVM_SET_REGS, &regs) < 0)
        return -errno;
    return 0;
}
