/* kvmbox freestanding test guest (x86-64). Booted by kvmbox's plain-ELF64
 * path: long mode, identity-mapped 4 GiB, RSI = boot_params (zero page).
 * The test is chosen with "test=NAME" on the command line (-append); every
 * test prints progress on COM1 and ends with an ACPI S5 power-off (success)
 * or "FAIL ..." plus an isa-debug-exit write and a power-off (failure). */
#include "lib.h"

#define ULL(x) ((unsigned long long)(x))

#define MAX_APS        32
#define TRAMP_BASE     0x3000
#define RESET_MAGIC_AT 0x5000

#define LAPIC_BASE     0xFEE00000UL
#define IOAPIC_BASE    0xFEC00000UL
#define TESTDEV_MMIO   0xFEBF0000UL

#define LAPIC_ID       0x020
#define LAPIC_TPR      0x080
#define LAPIC_EOI      0x0B0
#define LAPIC_SVR      0x0F0
#define LAPIC_ICR_LO   0x300
#define LAPIC_ICR_HI   0x310
#define LAPIC_LVT_TMR  0x320
#define LAPIC_LVT_LINT0 0x350
#define LAPIC_LVT_LINT1 0x360
#define LAPIC_TMR_INIT 0x380
#define LAPIC_TMR_CUR  0x390
#define LAPIC_TMR_DIV  0x3E0

#define VEC_PIT        0x30
#define VEC_COM1       0x34
#define VEC_SCI        0x38
#define VEC_LAPIC_TMR  0x40
#define VEC_VIRTIO     0x50
#define VEC_SPURIOUS   0xFF

#define PIT_HZ         1193182u

/* Failure codes written to isa-debug-exit (kvmbox exits with code*2+1). */
enum {
    FC_GENERIC = 1,
    FC_EXCEPTION = 2,
    FC_SMP = 3,
    FC_TIMER = 4,
    FC_PIOMMIO = 5,
    FC_RESET = 6,
    FC_EXIT = 7,
    FC_BADTEST = 8,
    FC_HELLO = 9,
    FC_ECHO = 10,
    FC_POWERBTN = 11,
};

/* ---------------- failure, boot info ---------------- */

static __attribute__((noreturn, format(printf, 2, 3))) void fail(u32 code, const char *fmt, ...)
{
    va_list ap;
    kprintf("FAIL ");
    va_start(ap, fmt);
    kvprintf(fmt, ap);
    va_end(ap);
    kprintf("\n");
    outl(PORT_DEBUG_EXIT, code);   /* ends the VM when isa-debug-exit is present */
    spin_tsc(1000000000ULL);
    power_off();
}

static const u8 *boot_params;
static const char *cmdline = "";
static char test_name[32];

static void parse_cmdline(void)
{
    u32 ptr = *(const u32 *)(boot_params + 0x228);
    if (ptr)
        cmdline = (const char *)(unsigned long)ptr;
    test_name[0] = 0;
    for (const char *p = cmdline; *p; p++) {
        if ((p == cmdline || p[-1] == ' ') && !kstrncmp(p, "test=", 5)) {
            p += 5;
            unsigned n = 0;
            while (*p && *p != ' ' && n < sizeof(test_name) - 1)
                test_name[n++] = *p++;
            test_name[n] = 0;
            break;
        }
    }
    if (!test_name[0]) {
        test_name[0] = 'h'; test_name[1] = 'e'; test_name[2] = 'l';
        test_name[3] = 'l'; test_name[4] = 'o'; test_name[5] = 0;
    }
}

static int streq(const char *a, const char *b)
{
    while (*a && *a == *b) {
        a++;
        b++;
    }
    return *a == *b;
}

/* ---------------- MMIO, MSR, TSC ---------------- */

static inline u32 mmio_read32(unsigned long a) { return *(volatile u32 *)a; }
static inline void mmio_write32(unsigned long a, u32 v) { *(volatile u32 *)a = v; }

static inline u32 lapic_read(u32 reg) { return mmio_read32(LAPIC_BASE + reg); }
static inline void lapic_write(u32 reg, u32 v) { mmio_write32(LAPIC_BASE + reg, v); }
static inline u32 lapic_id(void) { return lapic_read(LAPIC_ID) >> 24; }

static inline u64 rdtsc(void)
{
    u32 lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((u64)hi << 32) | lo;
}

static inline u64 rdmsr(u32 msr)
{
    u32 lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return ((u64)hi << 32) | lo;
}

static inline void wrmsr(u32 msr, u64 v)
{
    __asm__ volatile("wrmsr" :: "c"(msr), "a"((u32)v), "d"((u32)(v >> 32)));
}

static inline u64 read_cr2(void)
{
    u64 v;
    __asm__ volatile("mov %%cr2, %0" : "=r"(v));
    return v;
}

/* ---------------- PIT and TSC calibration ---------------- */

static u64 tsc_hz;

static u16 pit_read_ch0(void)
{
    outb(0x43, 0x00);                      /* latch channel 0 */
    u8 lo = inb(0x40);
    u8 hi = inb(0x40);
    return (u16)(lo | (hi << 8));
}

/* Measure the TSC against the PIT's channel 0 counter (mode 2, reload
 * 65536) for ~50 ms of PIT time. Channel 0's IRQ stays masked (IOAPIC pins
 * are masked at reset and interrupts are off). */
static void tsc_calibrate(void)
{
    const u32 want = PIT_HZ / 20;          /* 50 ms */
    outb(0x43, 0x34);                      /* ch0, lo/hi, mode 2 */
    outb(0x40, 0);
    outb(0x40, 0);
    u16 prev = pit_read_ch0();
    u64 t0 = rdtsc();
    u32 elapsed = 0;
    unsigned long polls = 0;
    while (elapsed < want) {
        u16 cur = pit_read_ch0();
        elapsed += (u16)(prev - cur);
        prev = cur;
        if (++polls > 20000000UL) {
            tsc_hz = 2000000000ULL;
            kprintf("tsc: PIT counter not moving, assuming 2 GHz\n");
            return;
        }
    }
    u64 dt = rdtsc() - t0;
    /* tsc_hz = dt * PIT_HZ / elapsed, computed in 64-bit (64-bit mode). */
    tsc_hz = (dt * (u64)PIT_HZ) / elapsed;
    if (tsc_hz < 1000000)
        tsc_hz = 1000000;
}

static u64 ms_to_tsc(u64 ms) { return tsc_hz / 1000 * ms; }
static u64 tsc_to_ms(u64 t) { return t / (tsc_hz / 1000); }

static void delay_us(u64 us)
{
    u64 end = rdtsc() + tsc_hz / 1000000 * us;
    while ((long long)(rdtsc() - end) < 0)
        cpu_relax();
}

/* ---------------- fw_cfg ---------------- */

static void fw_cfg_read(u16 key, void *buf, unsigned len)
{
    outw(PORT_FW_CFG, key);
    for (unsigned i = 0; i < len; i++)
        ((u8 *)buf)[i] = inb(PORT_FW_CFG + 1);
}

static int fw_cfg_present(void)
{
    char sig[4];
    fw_cfg_read(0x0000, sig, 4);
    return sig[0] == 'Q' && sig[1] == 'E' && sig[2] == 'M' && sig[3] == 'U';
}

static int fw_cfg_ncpus(void)
{
    if (!fw_cfg_present())
        return -1;
    u16 n = 0;
    fw_cfg_read(0x0005, &n, 2);
    return n;
}

static u64 fw_cfg_ram(void)
{
    u64 v = 0;
    fw_cfg_read(0x0003, &v, 8);
    return v;
}

/* ---------------- ACPI / MP tables ---------------- */

static u8 checksum(const void *p, unsigned len)
{
    u8 s = 0;
    for (unsigned i = 0; i < len; i++)
        s += ((const u8 *)p)[i];
    return s;
}

static u32 madt_apic_ids[MAX_APS + 1];
static int madt_ncpus = -1;
static int pit_gsi = 2;          /* ISA IRQ0's GSI: from the MADT override */
static int pit_gsi_from_madt;
static int com1_gsi = 4;        /* ISA IRQ4's GSI: from the MADT override */
static struct { u8 present; u32 gsi; u16 flags; } madt_iso[16];   /* by ISA IRQ */

static const u8 *find_rsdp(void)
{
    for (unsigned long a = 0xE0000; a < 0x100000; a += 16) {
        const u8 *p = (const u8 *)a;
        if (!kstrncmp((const char *)p, "RSD PTR ", 8) && checksum(p, 20) == 0)
            return p;
    }
    return 0;
}

static void parse_madt(void)
{
    const u8 *rsdp = find_rsdp();
    if (!rsdp) {
        kprintf("acpi: no RSDP\n");
        return;
    }
    const u8 *madt = 0;
    u8 rev = rsdp[15];
    u64 xsdt = rev >= 2 ? *(const u64 *)(rsdp + 24) : 0;
    if (xsdt && xsdt < 0x100000000ULL && !kstrncmp((const char *)(unsigned long)xsdt, "XSDT", 4)) {
        const u8 *t = (const u8 *)(unsigned long)xsdt;
        u32 len = *(const u32 *)(t + 4);
        for (u32 off = 36; off + 8 <= len; off += 8) {
            u64 a = *(const u64 *)(t + off);
            if (a < 0x100000000ULL && !kstrncmp((const char *)(unsigned long)a, "APIC", 4))
                madt = (const u8 *)(unsigned long)a;
        }
    }
    if (!madt) {
        const u8 *t = (const u8 *)(unsigned long)*(const u32 *)(rsdp + 16);
        if (kstrncmp((const char *)t, "RSDT", 4)) {
            kprintf("acpi: bad RSDT at %p\n", (const void *)t);
            return;
        }
        u32 len = *(const u32 *)(t + 4);
        for (u32 off = 36; off + 4 <= len; off += 4) {
            u32 a = *(const u32 *)(t + off);
            if (!kstrncmp((const char *)(unsigned long)a, "APIC", 4))
                madt = (const u8 *)(unsigned long)a;
        }
    }
    if (!madt) {
        kprintf("acpi: no MADT\n");
        return;
    }
    u32 len = *(const u32 *)(madt + 4);
    if (checksum(madt, len) != 0)
        kprintf("acpi: MADT checksum bad\n");
    madt_ncpus = 0;
    for (u32 off = 44; off + 2 <= len;) {
        u8 type = madt[off], elen = madt[off + 1];
        if (elen < 2)
            break;
        if (type == 0 && elen >= 8) {
            u32 flags = *(const u32 *)(madt + off + 4);
            if (flags & 1) {
                if (madt_ncpus < MAX_APS + 1)
                    madt_apic_ids[madt_ncpus] = madt[off + 3];
                madt_ncpus++;
            }
        } else if (type == 2 && elen >= 10) {
            u8 src = madt[off + 3];
            u32 gsi = *(const u32 *)(madt + off + 4);
            if (src < 16) {
                madt_iso[src].present = 1;
                madt_iso[src].gsi = gsi;
                madt_iso[src].flags = *(const u16 *)(madt + off + 8);
            }
            if (src == 0) {
                pit_gsi = (int)gsi;
                pit_gsi_from_madt = 1;
            } else if (src == 4) {
                com1_gsi = (int)gsi;
            }
        }
        off += elen;
    }
}

static int mptable_ncpus(void)
{
    for (unsigned long a = 0xF0000; a < 0x100000; a += 16) {
        const u8 *p = (const u8 *)a;
        if (kstrncmp((const char *)p, "_MP_", 4) || checksum(p, 16) != 0)
            continue;
        u32 cfg = *(const u32 *)(p + 4);
        if (!cfg)
            return -1;
        const u8 *c = (const u8 *)(unsigned long)cfg;
        if (kstrncmp((const char *)c, "PCMP", 4))
            return -1;
        u16 count = *(const u16 *)(c + 34);
        const u8 *e = c + 44;
        int n = 0;
        for (u16 i = 0; i < count; i++) {
            if (e[0] == 0) {
                if (e[3] & 1)
                    n++;
                e += 20;
            } else {
                e += 8;
            }
        }
        return n;
    }
    return -1;
}

/* ---------------- IDT and interrupts ---------------- */

struct idt_gate {
    u16 off_lo, sel;
    u8 ist, type;
    u16 off_mid;
    u32 off_hi, zero;
} __attribute__((packed));

static struct idt_gate idt[256] __attribute__((aligned(16)));

extern const u64 isr_table[32];
extern const u64 isr_48_addr, isr_52_addr, isr_56_addr, isr_64_addr, isr_80_addr, isr_255_addr;

static void idt_set(int vec, u64 handler)
{
    idt[vec].off_lo = (u16)handler;
    idt[vec].sel = 0x10;
    idt[vec].ist = 0;
    idt[vec].type = 0x8E;                  /* present, DPL 0, interrupt gate */
    idt[vec].off_mid = (u16)(handler >> 16);
    idt[vec].off_hi = (u32)(handler >> 32);
    idt[vec].zero = 0;
}

static void idt_init(void)
{
    for (int i = 0; i < 32; i++)
        idt_set(i, isr_table[i]);
    idt_set(VEC_PIT, isr_48_addr);
    idt_set(VEC_COM1, isr_52_addr);
    idt_set(VEC_SCI, isr_56_addr);
    idt_set(VEC_LAPIC_TMR, isr_64_addr);
    idt_set(VEC_VIRTIO, isr_80_addr);
    idt_set(VEC_SPURIOUS, isr_255_addr);
    struct {
        u16 limit;
        u64 base;
    } __attribute__((packed)) d = { sizeof(idt) - 1, (u64)(unsigned long)idt };
    __asm__ volatile("lidt %0" :: "m"(d));
}

static volatile u32 pit_irqs, lapic_irqs, spurious_irqs;

static void echo_isr(void);
static void sci_isr(void);
static void virtio_isr(void);

struct isr_frame {
    u64 vector, error, rip, cs, rflags, rsp, ss;
};

void isr_dispatch(struct isr_frame *f);
void isr_dispatch(struct isr_frame *f)
{
    switch (f->vector) {
    case VEC_PIT:
        pit_irqs++;
        lapic_write(LAPIC_EOI, 0);
        return;
    case VEC_COM1:
        echo_isr();
        lapic_write(LAPIC_EOI, 0);
        return;
    case VEC_SCI:
        sci_isr();
        lapic_write(LAPIC_EOI, 0);
        return;
    case VEC_LAPIC_TMR:
        lapic_irqs++;
        lapic_write(LAPIC_EOI, 0);
        return;
    case VEC_VIRTIO:
        virtio_isr();
        lapic_write(LAPIC_EOI, 0);
        return;
    case VEC_SPURIOUS:
        spurious_irqs++;
        return;
    default:
        fail(FC_EXCEPTION, "exception %llu at rip 0x%llx err 0x%llx cr2 0x%llx",
             ULL(f->vector), ULL(f->rip), ULL(f->error), ULL(read_cr2()));
    }
}

static void lapic_enable(void)
{
    u64 base = rdmsr(0x1B);
    if (!(base & (1 << 11)))
        wrmsr(0x1B, base | (1 << 11));
    lapic_write(LAPIC_TPR, 0);
    lapic_write(LAPIC_SVR, 0x100 | VEC_SPURIOUS);
}

static void ioapic_write(u32 reg, u32 v)
{
    mmio_write32(IOAPIC_BASE, reg);
    mmio_write32(IOAPIC_BASE + 0x10, v);
}

static u32 ioapic_read(u32 reg)
{
    mmio_write32(IOAPIC_BASE, reg);
    return mmio_read32(IOAPIC_BASE + 0x10);
}

/* ---------------- tests ---------------- */

static const char *e820_type(u32 t)
{
    switch (t) {
    case 1: return "usable";
    case 2: return "reserved";
    case 3: return "ACPI data";
    case 4: return "ACPI NVS";
    case 5: return "unusable";
    default: return "unknown";
    }
}

static void test_hello(void)
{
    kprintf("kvmbox-testguest: hello\n");
    kprintf("cmdline: %s\n", cmdline);
    u8 n = boot_params[0x1e8];
    if (n == 0 || n > 128)
        fail(FC_HELLO, "e820: bad entry count %u", n);
    u64 usable = 0;
    for (unsigned i = 0; i < n; i++) {
        const u8 *e = boot_params + 0x2d0 + 20 * i;
        u64 addr = *(const u64 *)e, size = *(const u64 *)(e + 8);
        u32 type = *(const u32 *)(e + 16);
        kprintf("e820: [mem 0x%016llx-0x%016llx] %s\n", ULL(addr), ULL(addr + size - 1),
                e820_type(type));
        if (type == 1)
            usable += size;
    }
    kprintf("e820: %u entries, %llu KiB usable\n", n, ULL(usable >> 10));
    if (fw_cfg_present())
        kprintf("fw_cfg: ram %llu MiB\n", ULL(fw_cfg_ram() >> 20));
    outl(PORT_TESTDEV, 1);                 /* boot-timer marker */
    kprintf("hello: ok\n");
    power_off();
}

static volatile u32 aps_online;

void ap_main(u32 slot);
void ap_main(u32 slot)
{
    kprintf("cpu %u (apic id %u) online\n", slot + 1, lapic_id());
    __atomic_fetch_add(&aps_online, 1, __ATOMIC_SEQ_CST);
    halt_forever();
}

extern const u8 ap_tramp_start[], ap_tramp_end[];

static void icr_send(u32 dest, u32 lo)
{
    lapic_write(LAPIC_ICR_HI, dest << 24);
    lapic_write(LAPIC_ICR_LO, lo);
    for (unsigned i = 0; i < 100000 && (lapic_read(LAPIC_ICR_LO) & (1 << 12)); i++)
        cpu_relax();
}

static void test_smp(void)
{
    tsc_calibrate();
    parse_madt();
    int mp = mptable_ncpus();
    int fw = fw_cfg_ncpus();
    kprintf("smp: madt %d cpus, mptable %d cpus, fw_cfg %d cpus\n", madt_ncpus, mp, fw);

    /* Copy the trampoline below 1 MiB; SIPI vector = page number. */
    unsigned len = (unsigned)(ap_tramp_end - ap_tramp_start);
    for (unsigned i = 0; i < len; i++)
        ((volatile u8 *)TRAMP_BASE)[i] = ap_tramp_start[i];

    lapic_enable();
    u32 self = lapic_id();
    u32 vec = TRAMP_BASE >> 12;
    int targets = 0;
    if (madt_ncpus > 0) {
        int known = madt_ncpus < MAX_APS + 1 ? madt_ncpus : MAX_APS + 1;
        for (int i = 0; i < known; i++) {
            if (madt_apic_ids[i] == self)
                continue;
            targets++;
            icr_send(madt_apic_ids[i], 0x4500);          /* INIT, assert */
        }
        delay_us(10000);
        for (int s = 0; s < 2; s++) {
            for (int i = 0; i < known; i++)
                if (madt_apic_ids[i] != self)
                    icr_send(madt_apic_ids[i], 0x4600 | vec);   /* SIPI */
            delay_us(200);
        }
    } else {
        icr_send(0, 0xC4500);                 /* INIT to all but self */
        delay_us(10000);
        icr_send(0, 0xC4600 | vec);
        delay_us(200);
        icr_send(0, 0xC4600 | vec);
    }

    int expect = madt_ncpus > 0 ? madt_ncpus : fw > 0 ? fw : mp;
    u64 start = rdtsc(), limit = ms_to_tsc(20000);
    while ((int)aps_online + 1 < expect && rdtsc() - start < limit)
        cpu_relax();
    /* Give stragglers beyond the expected count a moment to show up. */
    delay_us(20000);
    int n = (int)aps_online + 1;
    kprintf("smp: %d cpus online (%llu ms)\n", n, ULL(tsc_to_ms(rdtsc() - start)));
    if (madt_ncpus >= 0 && n != madt_ncpus)
        fail(FC_SMP, "smp: %d cpus online, MADT says %d", n, madt_ncpus);
    if (mp >= 0 && n != mp)
        fail(FC_SMP, "smp: %d cpus online, MP table says %d", n, mp);
    if (fw >= 0 && n != fw)
        fail(FC_SMP, "smp: %d cpus online, fw_cfg says %d", n, fw);
    if (madt_ncpus < 0 && mp < 0 && fw < 0)
        fail(FC_SMP, "smp: no MADT, MP table or fw_cfg to count cpus");
    kprintf("smp: ok\n");
    power_off();
}

static void test_timer(void)
{
    tsc_calibrate();
    kprintf("timer: tsc %llu kHz\n", ULL(tsc_hz / 1000));
    parse_madt();
    kprintf("timer: ISA IRQ0 -> GSI %d%s\n", pit_gsi, pit_gsi_from_madt ? " (MADT override)" : "");
    idt_init();
    /* Mask the 8259s and LINT0 so only the IOAPIC delivers the PIT. */
    outb(0x21, 0xFF);
    outb(0xA1, 0xFF);
    lapic_enable();
    lapic_write(LAPIC_LVT_LINT0, 1 << 16);
    u32 self = lapic_id();

    /* PIT channel 0, rate generator, ~1 kHz; IOAPIC pin -> VEC_PIT, edge. */
    u32 ver = ioapic_read(1);
    u32 pins = ((ver >> 16) & 0xFF) + 1;
    if ((u32)pit_gsi >= pins)
        fail(FC_TIMER, "timer: GSI %d beyond IOAPIC's %u pins", pit_gsi, pins);
    u32 div = PIT_HZ / 1000;
    outb(0x43, 0x34);
    outb(0x40, (u8)div);
    outb(0x40, (u8)(div >> 8));
    ioapic_write(0x11 + 2 * pit_gsi, self << 24);
    ioapic_write(0x10 + 2 * pit_gsi, VEC_PIT);
    pit_irqs = 0;
    u64 start = rdtsc();
    __asm__ volatile("sti" ::: "memory");
    while (rdtsc() - start < ms_to_tsc(200) ||
           (pit_irqs < 10 && rdtsc() - start < ms_to_tsc(10000)))
        cpu_relax();                       /* poll: a missing IRQ must not hang us */
    __asm__ volatile("cli" ::: "memory");
    u64 ms = tsc_to_ms(rdtsc() - start);
    ioapic_write(0x10 + 2 * pit_gsi, 1 << 16);  /* mask */
    u32 np = pit_irqs;
    kprintf("timer: %u irqs (PIT via IOAPIC pin %d, %llu ms)\n", np, pit_gsi, ULL(ms));

    /* LAPIC timer, periodic, divide by 16, ~1 ms at KVM's 1 GHz APIC bus. */
    lapic_write(LAPIC_TMR_DIV, 0x3);
    lapic_write(LAPIC_LVT_TMR, VEC_LAPIC_TMR | (1 << 17));
    lapic_irqs = 0;
    lapic_write(LAPIC_TMR_INIT, 62500);
    start = rdtsc();
    __asm__ volatile("sti" ::: "memory");
    while (rdtsc() - start < ms_to_tsc(200) ||
           (lapic_irqs < 10 && rdtsc() - start < ms_to_tsc(10000)))
        cpu_relax();
    __asm__ volatile("cli" ::: "memory");
    ms = tsc_to_ms(rdtsc() - start);
    lapic_write(LAPIC_LVT_TMR, 1 << 16);
    lapic_write(LAPIC_TMR_INIT, 0);
    u32 nl = lapic_irqs;
    kprintf("timer: lapic %u irqs (%llu ms)\n", nl, ULL(ms));
    if (np < 10)
        fail(FC_TIMER, "timer: only %u PIT irqs", np);
    if (nl < 10)
        fail(FC_TIMER, "timer: only %u LAPIC timer irqs", nl);
    kprintf("timer: ok\n");
    power_off();
}

#define CHECK(what, got, want)                                                         \
    do {                                                                               \
        u64 g_ = (u64)(got), w_ = (u64)(want);                                         \
        if (g_ != w_)                                                                  \
            fail(FC_PIOMMIO, "pio-mmio: %s: got 0x%llx want 0x%llx", what, ULL(g_),    \
                 ULL(w_));                                                             \
    } while (0)

static void test_pio_mmio(void)
{
    const u16 sp = PORT_TESTDEV + 4;
    static const u32 pat32[] = { 0, 0xFFFFFFFFu, 0xA5A5A5A5u, 0x5A5A5A5Au, 0x12345678u,
                                 0x80000001u, 0xDEADBEEFu };
    for (unsigned i = 0; i < sizeof(pat32) / sizeof(pat32[0]); i++) {
        outl(sp, pat32[i]);
        CHECK("pio outl/inl", inl(sp), pat32[i]);
    }
    for (unsigned b = 0; b < 32; b++) {
        outl(sp, 1u << b);
        CHECK("pio walking one", inl(sp), 1u << b);
    }
    outl(sp, 0x11223344);
    CHECK("pio inb +0", inb(sp), 0x44);
    CHECK("pio inb +1", inb(sp + 1), 0x33);
    CHECK("pio inb +2", inb(sp + 2), 0x22);
    CHECK("pio inb +3", inb(sp + 3), 0x11);
    CHECK("pio inw +0", inw(sp), 0x3344);
    CHECK("pio inw +2", inw(sp + 2), 0x1122);
    outb(sp + 1, 0xAA);
    CHECK("pio outb +1", inl(sp), 0x1122AA44);
    outw(sp + 2, 0xBEEF);
    CHECK("pio outw +2", inl(sp), 0xBEEFAA44);
    outb(sp, 0x01);
    outb(sp + 3, 0x7F);
    CHECK("pio outb +0/+3", inl(sp), 0x7FEFAA01);
    outw(sp, 0xC0DE);
    CHECK("pio outw +0", inw(sp), 0xC0DE);
    CHECK("pio outw +0 (32)", inl(sp), 0x7FEFC0DE);
    kprintf("pio-mmio: pio ok\n");

    volatile u8 *m8 = (volatile u8 *)TESTDEV_MMIO;
    volatile u16 *m16 = (volatile u16 *)TESTDEV_MMIO;
    volatile u32 *m32 = (volatile u32 *)TESTDEV_MMIO;
    volatile u64 *m64 = (volatile u64 *)TESTDEV_MMIO;

    m64[0] = 0x0123456789ABCDEFULL;
    CHECK("mmio 64", m64[0], 0x0123456789ABCDEFULL);
    CHECK("mmio 32 lo", m32[0], 0x89ABCDEF);
    CHECK("mmio 32 hi", m32[1], 0x01234567);
    CHECK("mmio 16 [1]", m16[1], 0x89AB);
    CHECK("mmio 16 [3]", m16[3], 0x0123);
    for (unsigned i = 0; i < 8; i++)
        CHECK("mmio 8", m8[i], (0x0123456789ABCDEFULL >> (8 * i)) & 0xFF);
    m8[2] = 0x5A;
    CHECK("mmio 8 write", m64[0], 0x01234567895ACDEFULL);
    m16[3] = 0xFACE;
    CHECK("mmio 16 write", m64[0], 0xFACE4567895ACDEFULL);
    m32[0] = 0xCAFEF00D;
    CHECK("mmio 32 write", m64[0], 0xFACE4567CAFEF00DULL);

    /* Distinct values all over the window, then read them all back. */
    for (unsigned i = 0; i < 512; i += 7)
        m64[i] = 0x9E3779B97F4A7C15ULL * (i + 1);
    for (unsigned i = 0; i < 512; i += 7)
        CHECK("mmio fill 64", m64[i], 0x9E3779B97F4A7C15ULL * (i + 1));
    for (unsigned i = 1; i < 1024; i += 13)
        m32[i] = 0xA5000000u | i;
    for (unsigned i = 1; i < 1024; i += 13)
        CHECK("mmio fill 32", m32[i], 0xA5000000u | i);
    for (unsigned b = 0; b < 64; b++) {
        m64[511] = 1ULL << b;
        CHECK("mmio walking one", m64[511], 1ULL << b);
    }
    m64[511] = 0xFFFFFFFFFFFFFFFFULL;
    CHECK("mmio ones", m64[511], 0xFFFFFFFFFFFFFFFFULL);
    m16[4095 / 2] = 0x1234;
    CHECK("mmio last 16", m8[4094] | (m8[4095] << 8), 0x1234);
    m64[511] = 0;
    CHECK("mmio zero", m64[511], 0);
    kprintf("pio-mmio: mmio ok\n");
    kprintf("pio-mmio: ok\n");
    power_off();
}

static void test_reset(void)
{
    volatile u8 *magic = (volatile u8 *)RESET_MAGIC_AT;
    volatile u32 *count = (volatile u32 *)(RESET_MAGIC_AT + 4);
    if (magic[0] != 'K' || magic[1] != 'B' || magic[2] != 'R' || magic[3] != 'S') {
        magic[0] = 'K';
        magic[1] = 'B';
        magic[2] = 'R';
        magic[3] = 'S';
        *count = 0;
    }
    u32 n = ++*count;
    kprintf("reset: boot %u\n", n);
    tsc_calibrate();
    if (n == 1) {
        kprintf("reset: via keyboard controller\n");
        outb(PORT_I8042_CMD, 0xFE);
    } else if (n == 2) {
        kprintf("reset: via 0xcf9\n");
        outb(PORT_RESET_CTL, 0x06);
    } else {
        magic[0] = 0;
        kprintf("reset: ok\n");
        power_off();
    }
    delay_us(3000000);
    fail(FC_RESET, "reset: boot %u: reset request ignored", n);
}

static void test_exit(void)
{
    kprintf("exit: writing 0x21 to isa-debug-exit\n");
    outl(PORT_DEBUG_EXIT, 0x21);
    spin_tsc(4000000000ULL);              /* the VMM stops us asynchronously */
    fail(FC_EXIT, "exit: still running after isa-debug-exit write");
}

static void test_halt(void)
{
    kprintf("halt: halting with interrupts off\n");
    halt_forever();
}

/* test=tick: print "tick N" about 20 times a second forever, so a test can
 * see whether the guest makes progress (monitor stop/cont, reset). */
static void test_tick(void)
{
    for (u64 n = 0;; n++) {
        kprintf("tick %llu\n", ULL(n));
        spin_tsc(100000000ULL);
    }
}

/* test=echo: COM1 receive, interrupt driven. The interrupt handler moves
 * received bytes from the UART into a ring; the main loop (asleep in hlt
 * until an interrupt) echoes them uppercased, raw (no LF -> CRLF), until a
 * 'q'. When the ring fills, the handler turns the receive interrupt off and
 * leaves the rest in the UART, so a host that floods us must hold its input
 * back (flow control) rather than lose it; receiver overruns (LSR.OE) are
 * counted and fail the test. The LAPIC timer only wakes the loop for the
 * 20 s no-input limit. Output: "echo: ready", the echoed bytes,
 * "echo: N irqs, M bytes, K overruns", "echo: done". */
#define ECHO_RING 1024
#define LSR_DR 0x01
#define LSR_OE 0x02
static volatile u8 echo_ring[ECHO_RING];
static volatile u32 echo_head, echo_tail;       /* written by the ISR / the loop */
static volatile u32 echo_irqs, echo_overruns, echo_rx_paused;

static void echo_note_lsr(u8 lsr)
{
    if (lsr & LSR_OE)
        echo_overruns++;
}

static void echo_isr(void)
{
    echo_irqs++;
    (void)inb(COM1 + 2);                   /* IIR */
    for (unsigned i = 0; i < 4 * ECHO_RING; i++) {
        u8 lsr = inb(COM1 + 5);
        echo_note_lsr(lsr);
        if (!(lsr & LSR_DR))
            return;
        if (echo_head - echo_tail >= ECHO_RING) {
            outb(COM1 + 1, 0x00);          /* ring full: stop receive irqs */
            echo_rx_paused = 1;
            return;
        }
        echo_ring[echo_head % ECHO_RING] = inb(COM1);
        __asm__ volatile("" ::: "memory");
        echo_head++;
    }
}

static void echo_putc(u8 c)
{
    unsigned spins = 0;
    u8 lsr;
    while (!((lsr = inb(COM1 + 5)) & 0x20) && ++spins < 100000)
        cpu_relax();
    echo_note_lsr(lsr);
    outb(COM1, c);
}

static void test_echo(void)
{
    tsc_calibrate();
    parse_madt();
    idt_init();
    outb(0x21, 0xFF);                      /* 8259s masked: IOAPIC only */
    outb(0xA1, 0xFF);
    lapic_enable();
    lapic_write(LAPIC_LVT_LINT0, 1 << 16);
    u32 self = lapic_id();
    u32 pins = ((ioapic_read(1) >> 16) & 0xFF) + 1;
    if ((u32)com1_gsi >= pins)
        fail(FC_ECHO, "echo: GSI %d beyond IOAPIC's %u pins", com1_gsi, pins);

    /* LAPIC timer, periodic ~10 ms: only a wake-up for the time limit. */
    lapic_write(LAPIC_TMR_DIV, 0x3);
    lapic_write(LAPIC_LVT_TMR, VEC_LAPIC_TMR | (1 << 17));
    lapic_write(LAPIC_TMR_INIT, 625000);

    /* Anything that arrived before we were ready is dropped. */
    for (unsigned i = 0; i < 64 && (inb(COM1 + 5) & LSR_DR); i++)
        (void)inb(COM1);
    (void)inb(COM1 + 2);
    /* IOAPIC pin: fixed, physical, edge, active high, unmasked. */
    ioapic_write(0x11 + 2 * com1_gsi, self << 24);
    ioapic_write(0x10 + 2 * com1_gsi, VEC_COM1);
    outb(COM1 + 4, 0x0B);                  /* DTR, RTS, OUT2 (IRQ gate) */
    outb(COM1 + 1, 0x01);                  /* IER: received data available */
    kprintf("echo: ready (IOAPIC pin %d)\n", com1_gsi);
    outl(PORT_TESTDEV, 0xEC);              /* "-D" log: boot-timer marker 236 */

    u64 last = rdtsc(), limit = ms_to_tsc(20000);
    u32 nbytes = 0;
    int quit = 0;
    while (!quit) {
        __asm__ volatile("cli" ::: "memory");
        if (echo_rx_paused && echo_head - echo_tail <= ECHO_RING / 2) {
            echo_rx_paused = 0;
            outb(COM1 + 1, 0x01);          /* data still in the UART re-raises the irq */
        }
        if (echo_head == echo_tail) {
            if (rdtsc() - last > limit) {
                kprintf("\n");
                fail(FC_ECHO, "echo: no input for 20 s (%u bytes, %u irqs so far)",
                     nbytes, echo_irqs);
            }
            __asm__ volatile("sti; hlt" ::: "memory");
            continue;
        }
        __asm__ volatile("sti" ::: "memory");
        while (echo_head != echo_tail) {
            u8 c = echo_ring[echo_tail % ECHO_RING];
            __asm__ volatile("" ::: "memory");
            echo_tail++;
            if (c == 'q') {
                quit = 1;
                break;
            }
            nbytes++;
            if (c >= 'a' && c <= 'z')
                c = (u8)(c - 'a' + 'A');
            echo_putc(c);
        }
        last = rdtsc();
    }
    __asm__ volatile("cli" ::: "memory");
    outb(COM1 + 1, 0x00);
    ioapic_write(0x10 + 2 * com1_gsi, 1 << 16);
    lapic_write(LAPIC_LVT_TMR, 1 << 16);
    lapic_write(LAPIC_TMR_INIT, 0);
    kprintf("\necho: %u irqs, %u bytes, %u overruns\n", echo_irqs, nbytes, echo_overruns);
    if (echo_overruns)
        fail(FC_ECHO, "echo: %u receiver overruns (input lost)", echo_overruns);
    if (nbytes && !echo_irqs)
        fail(FC_ECHO, "echo: bytes without interrupts");
    kprintf("echo: done\n");
    power_off();
}

/* test=powerbutton: an ACPI-aware guest's power button, the way an OS does
 * it. Find the FADT (RSDP -> XSDT, else RSDT) for PM1a_EVT_BLK,
 * PM1a_CNT_BLK and SCI_INT; route the SCI's GSI (MADT override: level,
 * active high on kvmbox) through the IOAPIC to VEC_SCI; set PWRBTN_EN
 * (PM1_EN bit 8, at PM1a_EVT_BLK + 2); print "powerbutton: armed" and sleep
 * in hlt. The SCI handler reads PM1_STS, clears PWRBTN_STS (write 1) and
 * the loop prints "powerbutton: pressed" and enters S5 through PM1a_CNT
 * (SLP_TYP 5 | SLP_EN). No press within 30 s: FAIL. A LAPIC timer (~10 ms)
 * only wakes the loop to check the time limit. */
#define PM1_PWRBTN 0x0100
static u16 fadt_pm1a_evt, fadt_pm1a_cnt;
static u32 fadt_sci_int;
static volatile u32 sci_irqs, sci_pwrbtn, sci_sts_seen, sci_sts_after;

static const u8 *acpi_find_table(const char *sig)
{
    const u8 *rsdp = find_rsdp();
    if (!rsdp)
        return 0;
    u64 xsdt = rsdp[15] >= 2 ? *(const u64 *)(rsdp + 24) : 0;
    if (xsdt && xsdt < 0x100000000ULL && !kstrncmp((const char *)(unsigned long)xsdt, "XSDT", 4)) {
        const u8 *t = (const u8 *)(unsigned long)xsdt;
        u32 len = *(const u32 *)(t + 4);
        for (u32 off = 36; off + 8 <= len; off += 8) {
            u64 a = *(const u64 *)(t + off);
            if (a && a < 0x100000000ULL && !kstrncmp((const char *)(unsigned long)a, sig, 4))
                return (const u8 *)(unsigned long)a;
        }
    }
    const u8 *t = (const u8 *)(unsigned long)*(const u32 *)(rsdp + 16);
    if (!t || kstrncmp((const char *)t, "RSDT", 4))
        return 0;
    u32 len = *(const u32 *)(t + 4);
    for (u32 off = 36; off + 4 <= len; off += 4) {
        u32 a = *(const u32 *)(t + off);
        if (a && !kstrncmp((const char *)(unsigned long)a, sig, 4))
            return (const u8 *)(unsigned long)a;
    }
    return 0;
}

static void sci_isr(void)
{
    sci_irqs++;
    u16 sts = inw(fadt_pm1a_evt);
    sci_sts_seen |= sts;
    if (sts & PM1_PWRBTN) {
        outw(fadt_pm1a_evt, PM1_PWRBTN);       /* write 1 to clear: drops the SCI level */
        sci_sts_after = inw(fadt_pm1a_evt);
        sci_pwrbtn++;
    }
}

static void test_powerbutton(void)
{
    tsc_calibrate();
    parse_madt();
    const u8 *fadt = acpi_find_table("FACP");
    if (!fadt)
        fail(FC_POWERBTN, "powerbutton: no FADT");
    u32 flen = *(const u32 *)(fadt + 4);
    if (flen < 116 || checksum(fadt, flen) != 0)
        fail(FC_POWERBTN, "powerbutton: FADT length %u or checksum bad", flen);
    fadt_sci_int = *(const u16 *)(fadt + 46);
    u32 evt = *(const u32 *)(fadt + 56), cnt = *(const u32 *)(fadt + 64);
    u8 evt_len = fadt[88];
    if (!evt || evt > 0xFFFF || !cnt || cnt > 0xFFFF || evt_len < 4)
        fail(FC_POWERBTN, "powerbutton: PM1a_EVT_BLK 0x%x (len %u), PM1a_CNT_BLK 0x%x", evt, evt_len, cnt);
    if (*(const u32 *)(fadt + 112) & (1u << 4))
        fail(FC_POWERBTN, "powerbutton: FADT PWR_BUTTON flag set (no fixed power button)");
    fadt_pm1a_evt = (u16)evt;
    fadt_pm1a_cnt = (u16)cnt;

    /* SCI_INT is an ISA IRQ number; the MADT may override its GSI and
     * polarity/trigger (flags: bits 0-1 polarity, 2-3 trigger; 0 = bus
     * default, i.e. ISA: active high, edge). */
    u32 gsi = fadt_sci_int;
    u16 iflags = 0;
    if (fadt_sci_int < 16 && madt_iso[fadt_sci_int].present) {
        gsi = madt_iso[fadt_sci_int].gsi;
        iflags = madt_iso[fadt_sci_int].flags;
    }
    int level = ((iflags >> 2) & 3) == 3, low = (iflags & 3) == 3;
    kprintf("powerbutton: PM1a_EVT 0x%x PM1a_CNT 0x%x SCI_INT %u -> GSI %u %s active-%s\n",
            evt, cnt, fadt_sci_int, gsi, level ? "level" : "edge", low ? "low" : "high");

    idt_init();
    outb(0x21, 0xFF);                          /* 8259s masked: IOAPIC only */
    outb(0xA1, 0xFF);
    lapic_enable();
    lapic_write(LAPIC_LVT_LINT0, 1 << 16);
    u32 self = lapic_id();
    u32 pins = ((ioapic_read(1) >> 16) & 0xFF) + 1;
    if (gsi >= pins)
        fail(FC_POWERBTN, "powerbutton: SCI GSI %u beyond IOAPIC's %u pins", gsi, pins);

    lapic_write(LAPIC_TMR_DIV, 0x3);           /* wake-up for the time limit */
    lapic_write(LAPIC_LVT_TMR, VEC_LAPIC_TMR | (1 << 17));
    lapic_write(LAPIC_TMR_INIT, 625000);

    ioapic_write(0x11 + 2 * gsi, self << 24);
    ioapic_write(0x10 + 2 * gsi, VEC_SCI | (level ? 1u << 15 : 0) | (low ? 1u << 13 : 0));
    u16 en = inw(fadt_pm1a_evt + 2);
    outw(fadt_pm1a_evt + 2, (u16)(en | PM1_PWRBTN));
    if (!(inw(fadt_pm1a_evt + 2) & PM1_PWRBTN))
        fail(FC_POWERBTN, "powerbutton: PWRBTN_EN does not stick (PM1_EN 0x%x)", inw(fadt_pm1a_evt + 2));
    kprintf("powerbutton: armed\n");

    u64 start = rdtsc(), limit = ms_to_tsc(30000);
    for (;;) {
        __asm__ volatile("cli" ::: "memory");
        if (sci_pwrbtn)
            break;
        if (rdtsc() - start > limit)
            fail(FC_POWERBTN, "powerbutton: no press within 30 s (%u SCIs, PM1_STS 0x%x)",
                 sci_irqs, inw(fadt_pm1a_evt));
        __asm__ volatile("sti; hlt" ::: "memory");
    }
    lapic_write(LAPIC_LVT_TMR, 1 << 16);
    lapic_write(LAPIC_TMR_INIT, 0);
    kprintf("powerbutton: SCI: PM1_STS 0x%x, 0x%x after clearing (%u SCIs)\n",
            sci_sts_seen, sci_sts_after, sci_irqs);
    if (sci_sts_after & PM1_PWRBTN)
        fail(FC_POWERBTN, "powerbutton: PWRBTN_STS still set after writing 1 to it");
    kprintf("powerbutton: pressed\n");
    outw(fadt_pm1a_cnt, (5 << 10) | (1 << 13));   /* S5: SLP_TYP 5, SLP_EN */
    spin_tsc(4000000000ULL);
    fail(FC_POWERBTN, "powerbutton: S5 via PM1a_CNT 0x%x did not stop the VM", fadt_pm1a_cnt);
}

/* test=virtio-blk, virtio-blk-intx, virtio-blk-hostile, virtio-rng. */
#include "virtio_tests.h"

/* "waitkey" on the command line: before the test starts (and before it
 * prints anything), wait up to 20 s for one byte on COM1 (polled), so a
 * client of a wait=off socket can connect first. Writes boot-timer marker
 * 87 (see -D) when it starts waiting. */
static int cmdline_has_word(const char *w)
{
    unsigned n = 0;
    while (w[n])
        n++;
    for (const char *p = cmdline; *p; p++)
        if ((p == cmdline || p[-1] == ' ') && !kstrncmp(p, w, n) && (p[n] == ' ' || !p[n]))
            return 1;
    return 0;
}

static void wait_key(void)
{
    tsc_calibrate();
    outl(PORT_TESTDEV, 0x57);
    u64 start = rdtsc(), limit = ms_to_tsc(20000);
    while (!(inb(COM1 + 5) & LSR_DR)) {
        if (rdtsc() - start > limit)
            fail(FC_GENERIC, "waitkey: no input for 20 s");
        cpu_relax();
    }
    delay_us(10000);
    while (inb(COM1 + 5) & LSR_DR)
        (void)inb(COM1);
}

void kmain(const u8 *bp);
void kmain(const u8 *bp)
{
    boot_params = bp;
    serial_init();
    parse_cmdline();
    if (cmdline_has_word("waitkey"))
        wait_key();
    kprintf("kvmbox-testguest: test=%s\n", test_name);
    if (streq(test_name, "hello"))
        test_hello();
    else if (streq(test_name, "smp"))
        test_smp();
    else if (streq(test_name, "timer"))
        test_timer();
    else if (streq(test_name, "pio-mmio"))
        test_pio_mmio();
    else if (streq(test_name, "reset"))
        test_reset();
    else if (streq(test_name, "exit"))
        test_exit();
    else if (streq(test_name, "halt"))
        test_halt();
    else if (streq(test_name, "echo"))
        test_echo();
    else if (streq(test_name, "tick"))
        test_tick();
    else if (streq(test_name, "powerbutton"))
        test_powerbutton();
    else if (streq(test_name, "virtio-blk"))
        test_virtio_blk(0);
    else if (streq(test_name, "virtio-blk-intx"))
        test_virtio_blk(1);
    else if (streq(test_name, "virtio-blk-hostile"))
        test_virtio_blk_hostile();
    else if (streq(test_name, "virtio-rng"))
        test_virtio_rng();
    fail(FC_BADTEST, "unknown test '%s'", test_name);
}
