/* vCPU state for the monitor: holding the vCPUs, reading registers, QEMU's
 * register dump layout, and guest memory reads through the page tables. */
#include "monitor/commands.h"

#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>

#include "core/vm.h"
#include "monitor/x86_mmu.h"

bool monitor_vcpus_hold(struct vm *vm)
{
    if (vm->run_state != VM_RUN_RUNNING)
        return false;       /* already parked (paused, shutdown) or not started */
    vm_pause_vcpus(vm);
    return true;
}

void monitor_vcpus_release(struct vm *vm, bool held)
{
    if (held)
        vm_resume_vcpus(vm);
}

int cpu_state_read(struct vcpu *v, struct cpu_state *s)
{
    memset(s, 0, sizeof *s);
    if (ioctl(v->fd, KVM_GET_REGS, &s->regs) < 0 || ioctl(v->fd, KVM_GET_SREGS, &s->sregs) < 0)
        return -errno;
    /* The rest is decoration: zeros if the host refuses. */
    ioctl(v->fd, KVM_GET_FPU, &s->fpu);
    ioctl(v->fd, KVM_GET_DEBUGREGS, &s->dbg);
    ioctl(v->fd, KVM_GET_VCPU_EVENTS, &s->events);
    ioctl(v->fd, KVM_GET_MP_STATE, &s->mp);
    return 0;
}

/* QEMU's SegmentCache flags from a KVM segment (target/i386/kvm get_seg). */
#define DESC_A (1u << 8)
#define DESC_RW (1u << 9)          /* R for code, W for data */
#define DESC_CE (1u << 10)         /* C for code, E for data */
#define DESC_CS (1u << 11)
#define DESC_S (1u << 12)
#define DESC_P (1u << 15)
#define DESC_L (1u << 21)
#define DESC_B (1u << 22)

static uint32_t seg_flags(const struct kvm_segment *s)
{
    return (uint32_t)s->type << 8 | (uint32_t)(s->present && !s->unusable) << 15 |
           (uint32_t)s->dpl << 13 | (uint32_t)s->db << 22 | (uint32_t)s->s << 12 |
           (uint32_t)s->l << 21 | (uint32_t)s->g << 23 | (uint32_t)s->avl << 20;
}

static void dump_seg(struct monitor *m, const char *name, const struct kvm_segment *sg,
                     bool cs64, bool pe, bool lma)
{
    uint32_t f = seg_flags(sg);
    if (cs64)
        monitor_printf(m, "%-3s=%04x %016llx %08x %08x", name, sg->selector,
                       (unsigned long long)sg->base, sg->limit, f);
    else
        monitor_printf(m, "%-3s=%04x %08x %08x %08x", name, sg->selector,
                       (unsigned)sg->base, sg->limit, f);
    if (pe && (f & DESC_P)) {
        monitor_printf(m, " DPL=%u ", sg->dpl);
        if (f & DESC_S) {
            if (f & DESC_CS) {
                monitor_puts(m, (f & DESC_L) ? "CS64" : (f & DESC_B) ? "CS32" : "CS16");
                monitor_printf(m, " [%c%c", (f & DESC_CE) ? 'C' : '-', (f & DESC_RW) ? 'R' : '-');
            } else {
                monitor_puts(m, ((f & DESC_B) || lma) ? "DS  " : "DS16");
                monitor_printf(m, " [%c%c", (f & DESC_CE) ? 'E' : '-', (f & DESC_RW) ? 'W' : '-');
            }
            monitor_printf(m, "%c]", (f & DESC_A) ? 'A' : '-');
        } else {
            static const char *const sys[2][16] = {
                { "Reserved", "TSS16-avl", "LDT", "TSS16-busy", "CallGate16", "TaskGate",
                  "IntGate16", "TrapGate16", "Reserved", "TSS32-avl", "Reserved",
                  "TSS32-busy", "CallGate32", "Reserved", "IntGate32", "TrapGate32" },
                { "<hiword>", "Reserved", "LDT", "Reserved", "Reserved", "Reserved",
                  "Reserved", "Reserved", "Reserved", "TSS64-avl", "Reserved",
                  "TSS64-busy", "CallGate64", "Reserved", "IntGate64", "TrapGate64" },
            };
            monitor_puts(m, sys[lma][sg->type & 15]);
        }
    }
    monitor_puts(m, "\n");
}

void cpu_state_dump(struct monitor *m, const struct cpu_state *s, unsigned index)
{
    const struct kvm_regs *r = &s->regs;
    const struct kvm_sregs *sr = &s->sregs;
    bool lma = sr->efer & (1u << 10);
    bool cs64 = lma && sr->cs.l;
    bool pe = sr->cr0 & 1;
    uint64_t fl = r->rflags;
    char flags[8] = {
        (fl & 0x400) ? 'D' : '-', (fl & 0x800) ? 'O' : '-', (fl & 0x80) ? 'S' : '-',
        (fl & 0x40) ? 'Z' : '-', (fl & 0x10) ? 'A' : '-', (fl & 0x4) ? 'P' : '-',
        (fl & 0x1) ? 'C' : '-', 0,
    };
    unsigned cpl = sr->ss.dpl, ii = s->events.interrupt.shadow ? 1 : 0;
    unsigned smm = (s->events.smi.smm) ? 1 : 0;
    unsigned hlt = s->mp.mp_state == KVM_MP_STATE_HALTED;
    typedef unsigned long long ull;

    monitor_printf(m, "\nCPU#%u\n", index);
    if (cs64) {
        monitor_printf(m, "RAX=%016llx RBX=%016llx RCX=%016llx RDX=%016llx\n"
                       "RSI=%016llx RDI=%016llx RBP=%016llx RSP=%016llx\n"
                       "R8 =%016llx R9 =%016llx R10=%016llx R11=%016llx\n"
                       "R12=%016llx R13=%016llx R14=%016llx R15=%016llx\n"
                       "RIP=%016llx RFL=%08x [%s] CPL=%u II=%u A20=1 SMM=%u HLT=%u\n",
                       (ull)r->rax, (ull)r->rbx, (ull)r->rcx, (ull)r->rdx, (ull)r->rsi,
                       (ull)r->rdi, (ull)r->rbp, (ull)r->rsp, (ull)r->r8, (ull)r->r9,
                       (ull)r->r10, (ull)r->r11, (ull)r->r12, (ull)r->r13, (ull)r->r14,
                       (ull)r->r15, (ull)r->rip, (unsigned)fl, flags, cpl, ii, smm, hlt);
    } else {
        monitor_printf(m, "EAX=%08x EBX=%08x ECX=%08x EDX=%08x\n"
                       "ESI=%08x EDI=%08x EBP=%08x ESP=%08x\n"
                       "EIP=%08x EFL=%08x [%s] CPL=%u II=%u A20=1 SMM=%u HLT=%u\n",
                       (unsigned)r->rax, (unsigned)r->rbx, (unsigned)r->rcx,
                       (unsigned)r->rdx, (unsigned)r->rsi, (unsigned)r->rdi,
                       (unsigned)r->rbp, (unsigned)r->rsp, (unsigned)r->rip, (unsigned)fl,
                       flags, cpl, ii, smm, hlt);
    }
    dump_seg(m, "ES", &sr->es, cs64, pe, lma);
    dump_seg(m, "CS", &sr->cs, cs64, pe, lma);
    dump_seg(m, "SS", &sr->ss, cs64, pe, lma);
    dump_seg(m, "DS", &sr->ds, cs64, pe, lma);
    dump_seg(m, "FS", &sr->fs, cs64, pe, lma);
    dump_seg(m, "GS", &sr->gs, cs64, pe, lma);
    dump_seg(m, "LDT", &sr->ldt, cs64, pe, lma);
    dump_seg(m, "TR", &sr->tr, cs64, pe, lma);
    if (cs64) {
        monitor_printf(m, "GDT=     %016llx %08x\n", (ull)sr->gdt.base, sr->gdt.limit);
        monitor_printf(m, "IDT=     %016llx %08x\n", (ull)sr->idt.base, sr->idt.limit);
        monitor_printf(m, "CR0=%08x CR2=%016llx CR3=%016llx CR4=%08x\n", (unsigned)sr->cr0,
                       (ull)sr->cr2, (ull)sr->cr3, (unsigned)sr->cr4);
    } else {
        monitor_printf(m, "GDT=     %08x %08x\n", (unsigned)sr->gdt.base, sr->gdt.limit);
        monitor_printf(m, "IDT=     %08x %08x\n", (unsigned)sr->idt.base, sr->idt.limit);
        monitor_printf(m, "CR0=%08x CR2=%08x CR3=%08x CR4=%08x\n", (unsigned)sr->cr0,
                       (unsigned)sr->cr2, (unsigned)sr->cr3, (unsigned)sr->cr4);
    }
    for (int i = 0; i < 4; i++)
        monitor_printf(m, "DR%d=%016llx ", i, (ull)s->dbg.db[i]);
    monitor_printf(m, "\nDR6=%016llx DR7=%016llx\n", (ull)s->dbg.dr6, (ull)s->dbg.dr7);
    monitor_printf(m, "EFER=%016llx\n", (ull)sr->efer);

    const struct kvm_fpu *f = &s->fpu;
    monitor_printf(m, "FCW=%04x FSW=%04x [ST=%d] FTW=%02x MXCSR=%08x\n", f->fcw, f->fsw,
                   (f->fsw >> 11) & 7, f->ftwx, f->mxcsr);
    for (int i = 0; i < 8; i++) {
        uint64_t mant;
        uint16_t exp;
        memcpy(&mant, f->fpr[i], 8);
        memcpy(&exp, f->fpr[i] + 8, 2);
        monitor_printf(m, "FPR%d=%016llx %04x%s", i, (ull)mant, exp, (i & 1) ? "\n" : " ");
    }
    int nxmm = cs64 ? 16 : 8;
    for (int i = 0; i < nxmm; i++) {
        uint64_t lo, hi;
        memcpy(&lo, f->xmm[i], 8);
        memcpy(&hi, f->xmm[i] + 8, 8);
        monitor_printf(m, "XMM%02d=%016llx %016llx%s", i, (ull)hi, (ull)lo,
                       (i & 1) ? "\n" : " ");
    }
}

int monitor_read_mem(struct vm *vm, unsigned cpu, bool physical, uint64_t addr, void *buf,
                     size_t len)
{
    if (physical)
        return gmem_read(&vm->mem, addr, buf, len);
    if (cpu >= vm->nr_vcpus)
        return -EFAULT;
    struct kvm_sregs sr;
    if (ioctl(vm->vcpus[cpu].fd, KVM_GET_SREGS, &sr) < 0)
        return -EFAULT;
    struct x86_paging pg = { sr.cr0, sr.cr3, sr.cr4, sr.efer };
    uint8_t *out = buf;
    while (len) {
        size_t chunk = 4096 - (addr & 4095);
        if (chunk > len)
            chunk = len;
        uint64_t pa;
        if (x86_virt_to_phys(&vm->mem, &pg, addr, &pa) < 0 ||
            gmem_read(&vm->mem, pa, out, chunk) < 0)
            return -EFAULT;
        out += chunk;
        addr += chunk;
        len -= chunk;
    }
    return 0;
}
