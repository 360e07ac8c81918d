/* kvmbox test guest: port I/O, COM1 output, a tiny printf and the power-off
 * helpers. Header-only so the 64-bit guest and the 32-bit multiboot guest
 * share it without a second object build. Only integer code: both kernels
 * build with -mgeneral-regs-only, and no 64-bit division is used (the 32-bit
 * build would need libgcc for that). */
#ifndef TESTGUEST_LIB_H
#define TESTGUEST_LIB_H

#include <stdarg.h>
#include <stdint.h>

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;

/* Fixed addresses and ports: these mirror src/arch/x86/layout.h. */
#define COM1            0x3F8
#define PORT_TESTDEV    0x440
#define PORT_FW_CFG     0x510
#define PORT_PM1A_CNT   0x604
#define PORT_RESET_CTL  0xCF9
#define PORT_I8042_CMD  0x64
#define PORT_DEBUG_EXIT 0xF4
#define S5_POWER_OFF    ((5 << 10) | (1 << 13))

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" :: "a"(v), "Nd"(port)); }
static inline void outw(u16 port, u16 v) { __asm__ volatile("outw %0, %1" :: "a"(v), "Nd"(port)); }
static inline void outl(u16 port, u32 v) { __asm__ volatile("outl %0, %1" :: "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u16 inw(u16 port) { u16 v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u32 inl(u16 port) { u32 v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }

static inline void cpu_relax(void) { __asm__ volatile("pause" ::: "memory"); }

static inline __attribute__((noreturn)) void halt_forever(void)
{
    for (;;)
        __asm__ volatile("cli; hlt" ::: "memory");
}

/* Serial output lock: the APs print too. xchg with memory is locked. */
static volatile u32 serial_lock_word;

static inline void serial_lock(void)
{
    u32 v;
    for (;;) {
        v = 1;
        __asm__ volatile("xchgl %0, %1" : "+r"(v), "+m"(serial_lock_word) :: "memory");
        if (v == 0)
            return;
        while (serial_lock_word)
            cpu_relax();
    }
}

static inline void serial_unlock(void)
{
    __asm__ volatile("" ::: "memory");
    serial_lock_word = 0;
}

static inline void serial_putc_raw(char c)
{
    unsigned spins = 0;
    /* LSR bit 5: THR empty. Bounded, so a broken UART cannot hang us. */
    while (!(inb(COM1 + 5) & 0x20) && ++spins < 100000)
        cpu_relax();
    outb(COM1, (u8)c);
}

static inline void serial_putc(char c)
{
    if (c == '\n')
        serial_putc_raw('\r');
    serial_putc_raw(c);
}

static inline void serial_init(void)
{
    outb(COM1 + 1, 0x00);   /* no interrupts */
    outb(COM1 + 3, 0x80);   /* DLAB */
    outb(COM1 + 0, 0x01);   /* 115200 */
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03);   /* 8N1 */
    outb(COM1 + 2, 0xC7);   /* FIFO on, cleared */
    outb(COM1 + 4, 0x03);   /* DTR, RTS */
}

/* n / 10 without a division instruction on u64 (no libgcc in 32-bit mode). */
static inline u64 divu10(u64 n, unsigned *rem)
{
    u64 q = (n >> 1) + (n >> 2);
    q += q >> 4;
    q += q >> 8;
    q += q >> 16;
    q += q >> 32;
    q >>= 3;
    u64 r = n - q * 10;
    while (r > 9) {
        q++;
        r -= 10;
    }
    *rem = (unsigned)r;
    return q;
}

struct outbuf {
    char buf[256];
    unsigned len;
};

static inline void ob_putc(struct outbuf *ob, char c)
{
    if (ob->len < sizeof(ob->buf))
        ob->buf[ob->len++] = c;
}

static inline void ob_num(struct outbuf *ob, u64 v, unsigned base, int width, char pad, int neg)
{
    char tmp[24];
    int n = 0;
    do {
        unsigned d;
        if (base == 10) {
            v = divu10(v, &d);
        } else {
            d = (unsigned)(v & 15);
            v >>= 4;
        }
        tmp[n++] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
    } while (v);
    if (neg)
        tmp[n++] = '-';
    while (n < width--)
        ob_putc(ob, pad);
    while (n)
        ob_putc(ob, tmp[--n]);
}

/* printf subset: %s %c %d %u %x %p, with optional 0-padding, width and the
 * l / ll length modifiers. Output of one call is written under the lock so
 * lines from different CPUs do not interleave. */
static inline void kvprintf(const char *fmt, va_list ap)
{
    struct outbuf ob;
    ob.len = 0;
    for (const char *p = fmt; *p; p++) {
        if (*p != '%') {
            ob_putc(&ob, *p);
            continue;
        }
        p++;
        char pad = ' ';
        int width = 0, lng = 0;
        if (*p == '0') {
            pad = '0';
            p++;
        }
        while (*p >= '0' && *p <= '9')
            width = width * 10 + (*p++ - '0');
        while (*p == 'l') {
            lng++;
            p++;
        }
        switch (*p) {
        case 's': {
            const char *s = va_arg(ap, const char *);
            if (!s)
                s = "(null)";
            int n = 0;
            while (s[n])
                n++;
            while (n < width--)
                ob_putc(&ob, ' ');
            while (*s)
                ob_putc(&ob, *s++);
            break;
        }
        case 'c':
            ob_putc(&ob, (char)va_arg(ap, int));
            break;
        case 'd': {
            long long v = lng >= 2 ? va_arg(ap, long long) : lng ? va_arg(ap, long) : va_arg(ap, int);
            ob_num(&ob, v < 0 ? (u64)-v : (u64)v, 10, width, pad, v < 0);
            break;
        }
        case 'u':
        case 'x': {
            u64 v = lng >= 2 ? va_arg(ap, unsigned long long)
                  : lng ? va_arg(ap, unsigned long) : va_arg(ap, unsigned);
            ob_num(&ob, v, *p == 'u' ? 10 : 16, width, pad, 0);
            break;
        }
        case 'p':
            ob_putc(&ob, '0');
            ob_putc(&ob, 'x');
            ob_num(&ob, (u64)(unsigned long)va_arg(ap, void *), 16, width, pad, 0);
            break;
        case '%':
            ob_putc(&ob, '%');
            break;
        default:
            ob_putc(&ob, '%');
            if (!*p)
                p--;
            else
                ob_putc(&ob, *p);
            break;
        }
    }
    serial_lock();
    for (unsigned i = 0; i < ob.len; i++)
        serial_putc(ob.buf[i]);
    serial_unlock();
}

static inline __attribute__((format(printf, 1, 2))) void kprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    kvprintf(fmt, ap);
    va_end(ap);
}

static inline u64 rdtsc64(void)
{
    u32 lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((u64)hi << 32) | lo;
}

/* Spin for about `cycles` TSC ticks (no calibration needed: only used as a
 * generous grace period). */
static inline void spin_tsc(u64 cycles)
{
    u64 t0 = rdtsc64();
    while (rdtsc64() - t0 < cycles)
        cpu_relax();
}

static inline __attribute__((noreturn)) void power_off(void)
{
    outw(PORT_PM1A_CNT, S5_POWER_OFF);
    /* The VMM stops the vCPUs asynchronously: give it a few seconds (4e9
     * TSC ticks) before declaring that the power-off was ignored. */
    spin_tsc(4000000000ULL);
    kprintf("FAIL power-off via ACPI PM1a_CNT did not stop the VM\n");
    halt_forever();
}

static inline int kstrncmp(const char *a, const char *b, unsigned n)
{
    for (; n; n--, a++, b++) {
        if (*a != *b)
            return (u8)*a - (u8)*b;
        if (!*a)
            return 0;
    }
    return 0;
}

#endif
