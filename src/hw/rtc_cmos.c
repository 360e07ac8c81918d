/* MC146818 RTC + CMOS RAM. Register semantics follow the Motorola MC146818A
 * datasheet ("Register A" .. "Register D", "Update Cycle"); the memory
 * bytes follow QEMU's pc machine, which SeaBIOS and other firmware read. */
#include "hw/rtc_cmos.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

enum {
    REG_SEC = 0x00, REG_SEC_ALARM = 0x01, REG_MIN = 0x02, REG_MIN_ALARM = 0x03,
    REG_HOUR = 0x04, REG_HOUR_ALARM = 0x05, REG_WDAY = 0x06, REG_MDAY = 0x07,
    REG_MONTH = 0x08, REG_YEAR = 0x09,
    REG_A = 0x0A, REG_B = 0x0B, REG_C = 0x0C, REG_D = 0x0D,
    REG_CENTURY = 0x32,
};

#define A_UIP        0x80
#define A_DV_MASK    0x70
#define A_DV_NORMAL  0x20   /* 32.768 kHz time base, divider running */
#define A_RS_MASK    0x0F

#define B_SET        0x80
#define B_PIE        0x40
#define B_AIE        0x20
#define B_UIE        0x10
#define B_SQWE       0x08
#define B_DM_BINARY  0x04
#define B_24H        0x02

#define C_IRQF       0x80
#define C_PF         0x40
#define C_AF         0x20
#define C_UF         0x10

#define D_VRT        0x80

#define HOUR_PM      0x80

#define NSEC_PER_SEC 1000000000LL
/* UIP rises this long before the update (datasheet: tBUC = 244 us). */
#define UIP_LEAD_NS  244000LL
#define SEC_PER_DAY  86400LL

struct rtc_cmos {
    pthread_mutex_t lock;
    struct irq_line irq;
    struct log_ratelimit rl;
    void (*now)(void *opaque, struct timespec *ts);
    void *now_opaque;

    uint8_t cmos[128];      /* time registers here only hold values while
                             * SET freezes the clock (and for the alarms) */
    uint8_t index;
    int64_t offset_sec;     /* guest time = host realtime + offset */
    uint8_t flags;          /* pending C_PF | C_AF | C_UF */
    int64_t last_eval_sec;  /* guest second of the last flag evaluation */
    int64_t last_pf_ns;     /* host time the last periodic flag was set */
    int irq_level;
};

static void rtc_default_now(void *opaque, struct timespec *ts)
{
    (void)opaque;
    clock_gettime(CLOCK_REALTIME, ts);
}

static int64_t rtc_host_ns(struct rtc_cmos *rtc, int64_t *sec, int64_t *nsec)
{
    struct timespec ts = {0, 0};
    rtc->now(rtc->now_opaque, &ts);
    *sec = ts.tv_sec;
    *nsec = ts.tv_nsec;
    return (int64_t)ts.tv_sec * NSEC_PER_SEC + ts.tv_nsec;
}

static bool rtc_binary(const struct rtc_cmos *rtc)
{
    return rtc->cmos[REG_B] & B_DM_BINARY;
}

static uint8_t rtc_to_reg(const struct rtc_cmos *rtc, int v)
{
    if (v < 0)
        v = 0;
    if (rtc_binary(rtc))
        return (uint8_t)v;
    return (uint8_t)(((v / 10) % 10) << 4 | (v % 10));
}

/* Garbage BCD (nibbles > 9) decodes to out-of-range numbers; timegm
 * normalises those, so a guest gets a strange time but nothing breaks. */
static int rtc_from_reg(const struct rtc_cmos *rtc, uint8_t v)
{
    if (rtc_binary(rtc))
        return v;
    return (v >> 4) * 10 + (v & 0x0F);
}

static uint8_t rtc_hour_to_reg(const struct rtc_cmos *rtc, int hour)
{
    if (rtc->cmos[REG_B] & B_24H)
        return rtc_to_reg(rtc, hour);
    /* 12-hour mode: 12, 1..11 with bit 7 set for PM. */
    int h12 = hour % 12 ? hour % 12 : 12;
    return (uint8_t)(rtc_to_reg(rtc, h12) | (hour >= 12 ? HOUR_PM : 0));
}

static int rtc_hour_from_reg(const struct rtc_cmos *rtc, uint8_t v)
{
    if (rtc->cmos[REG_B] & B_24H)
        return rtc_from_reg(rtc, v);
    return rtc_from_reg(rtc, v & 0x7F) % 12 + ((v & HOUR_PM) ? 12 : 0);
}

static void rtc_guest_tm(int64_t guest_sec, struct tm *tm)
{
    time_t t = (time_t)guest_sec;
    if (!gmtime_r(&t, tm)) {
        /* Only reachable with an absurd offset: show the epoch. */
        t = 0;
        gmtime_r(&t, tm);
    }
}

/* Write the time "now" into the time registers in the current format. */
static void rtc_snapshot(struct rtc_cmos *rtc, int64_t guest_sec)
{
    struct tm tm;
    rtc_guest_tm(guest_sec, &tm);
    int year = tm.tm_year + 1900;
    rtc->cmos[REG_SEC] = rtc_to_reg(rtc, tm.tm_sec);
    rtc->cmos[REG_MIN] = rtc_to_reg(rtc, tm.tm_min);
    rtc->cmos[REG_HOUR] = rtc_hour_to_reg(rtc, tm.tm_hour);
    rtc->cmos[REG_WDAY] = rtc_to_reg(rtc, tm.tm_wday + 1);   /* Sunday = 1 */
    rtc->cmos[REG_MDAY] = rtc_to_reg(rtc, tm.tm_mday);
    rtc->cmos[REG_MONTH] = rtc_to_reg(rtc, tm.tm_mon + 1);
    rtc->cmos[REG_YEAR] = rtc_to_reg(rtc, year % 100);
    rtc->cmos[REG_CENTURY] = rtc_to_reg(rtc, year / 100);
}

/* Take the time registers as the guest's new time: recompute the offset.
 * The day of week is derived from the date, not taken from register 6. */
static void rtc_commit_time(struct rtc_cmos *rtc, int64_t host_sec)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    int century = rtc_from_reg(rtc, rtc->cmos[REG_CENTURY]);
    int yy = rtc_from_reg(rtc, rtc->cmos[REG_YEAR]) % 100;
    if (century < 19 || century > 99)
        century = yy < 70 ? 20 : 19;    /* no century byte: guess */
    tm.tm_year = century * 100 + yy - 1900;
    tm.tm_mon = rtc_from_reg(rtc, rtc->cmos[REG_MONTH]) - 1;
    tm.tm_mday = rtc_from_reg(rtc, rtc->cmos[REG_MDAY]);
    tm.tm_hour = rtc_hour_from_reg(rtc, rtc->cmos[REG_HOUR]);
    tm.tm_min = rtc_from_reg(rtc, rtc->cmos[REG_MIN]);
    tm.tm_sec = rtc_from_reg(rtc, rtc->cmos[REG_SEC]);
    time_t t = timegm(&tm);
    rtc->offset_sec = (int64_t)t - host_sec;
    /* The guest moved the clock: updates are counted from here. */
    rtc->last_eval_sec = (int64_t)t;
}

static bool rtc_alarm_field_matches(uint8_t alarm, int value, int decoded)
{
    /* 0xC0-0xFF is "don't care": matches every value. */
    return (alarm & 0xC0) == 0xC0 || decoded == value;
}

static bool rtc_alarm_matches(struct rtc_cmos *rtc, int64_t guest_sec)
{
    int64_t sod = ((guest_sec % SEC_PER_DAY) + SEC_PER_DAY) % SEC_PER_DAY;
    int h = (int)(sod / 3600), m = (int)(sod / 60 % 60), s = (int)(sod % 60);
    uint8_t as = rtc->cmos[REG_SEC_ALARM], am = rtc->cmos[REG_MIN_ALARM],
            ah = rtc->cmos[REG_HOUR_ALARM];
    return rtc_alarm_field_matches(as, s, rtc_from_reg(rtc, as)) &&
           rtc_alarm_field_matches(am, m, rtc_from_reg(rtc, am)) &&
           rtc_alarm_field_matches(ah, h, rtc_hour_from_reg(rtc, ah));
}

/* Periodic rate from register A RS bits (datasheet table "Periodic
 * Interrupt Rate", 32.768 kHz time base): 0 = off, 1 and 2 = 256/128 Hz,
 * 3..15 = 8192 Hz down to 2 Hz. */
static int64_t rtc_periodic_hz(const struct rtc_cmos *rtc)
{
    unsigned rs = rtc->cmos[REG_A] & A_RS_MASK;
    if (!rs || (rtc->cmos[REG_A] & A_DV_MASK) != A_DV_NORMAL)
        return 0;
    if (rs <= 2)
        return rs == 1 ? 256 : 128;
    return 32768 >> (rs - 1);
}

/* Bring the C flags up to date with the clock. */
static void rtc_evaluate(struct rtc_cmos *rtc)
{
    int64_t host_sec, host_nsec;
    int64_t now_ns = rtc_host_ns(rtc, &host_sec, &host_nsec);
    int64_t guest_sec = host_sec + rtc->offset_sec;

    /* SET inhibits the update cycle: no UF, no AF. */
    if (!(rtc->cmos[REG_B] & B_SET) && guest_sec > rtc->last_eval_sec) {
        rtc->flags |= C_UF;
        /* The alarm repeats at most daily: a day's worth of seconds
         * covers every match even after a long gap. */
        int64_t from = rtc->last_eval_sec + 1;
        if (guest_sec - from >= SEC_PER_DAY)
            from = guest_sec - SEC_PER_DAY + 1;
        for (int64_t t = from; t <= guest_sec && !(rtc->flags & C_AF); t++) {
            if (rtc_alarm_matches(rtc, t))
                rtc->flags |= C_AF;
        }
    }
    if (!(rtc->cmos[REG_B] & B_SET))
        rtc->last_eval_sec = guest_sec;

    int64_t hz = rtc_periodic_hz(rtc);
    if (hz && !(rtc->flags & C_PF)) {
        if ((now_ns - rtc->last_pf_ns) >= NSEC_PER_SEC / hz) {
            rtc->flags |= C_PF;
            rtc->last_pf_ns = now_ns;
        }
    } else if (!hz) {
        rtc->last_pf_ns = now_ns;
    }
}

static void rtc_update_irq(struct rtc_cmos *rtc)
{
    int level = (rtc->flags & rtc->cmos[REG_B] & (B_PIE | B_AIE | B_UIE)) != 0;
    if (level != rtc->irq_level) {
        rtc->irq_level = level;
        irq_line_set(&rtc->irq, level);
    }
}

static bool rtc_is_time_reg(unsigned reg)
{
    return reg <= REG_YEAR || reg == REG_CENTURY;
}

static bool rtc_is_alarm_reg(unsigned reg)
{
    return reg == REG_SEC_ALARM || reg == REG_MIN_ALARM || reg == REG_HOUR_ALARM;
}

static uint8_t rtc_read_reg(struct rtc_cmos *rtc, unsigned reg)
{
    int64_t host_sec, host_nsec;
    uint8_t v;

    if (rtc_is_time_reg(reg) && !rtc_is_alarm_reg(reg)) {
        if (!(rtc->cmos[REG_B] & B_SET)) {
            rtc_host_ns(rtc, &host_sec, &host_nsec);
            rtc_snapshot(rtc, host_sec + rtc->offset_sec);
        }
        return rtc->cmos[reg];
    }
    switch (reg) {
    case REG_A:
        v = rtc->cmos[REG_A] & (uint8_t)~A_UIP;
        rtc_host_ns(rtc, &host_sec, &host_nsec);
        if (!(rtc->cmos[REG_B] & B_SET) &&
            (rtc->cmos[REG_A] & A_DV_MASK) == A_DV_NORMAL &&
            host_nsec >= NSEC_PER_SEC - UIP_LEAD_NS)
            v |= A_UIP;
        return v;
    case REG_C:
        rtc_evaluate(rtc);
        v = rtc->flags;
        if (v & rtc->cmos[REG_B] & (B_PIE | B_AIE | B_UIE))
            v |= C_IRQF;
        /* Reading C clears all flags and releases IRQ 8. */
        rtc->flags = 0;
        rtc_update_irq(rtc);
        return v;
    case REG_D:
        return D_VRT;
    default:
        return rtc->cmos[reg];
    }
}

static void rtc_write_reg(struct rtc_cmos *rtc, unsigned reg, uint8_t v)
{
    int64_t host_sec, host_nsec;

    if (rtc_is_time_reg(reg) && !rtc_is_alarm_reg(reg)) {
        rtc_host_ns(rtc, &host_sec, &host_nsec);
        if (rtc->cmos[REG_B] & B_SET) {
            rtc->cmos[reg] = v;     /* taken when SET is cleared */
        } else {
            /* Writing a running clock sets that field at once. */
            rtc_snapshot(rtc, host_sec + rtc->offset_sec);
            rtc->cmos[reg] = v;
            rtc_commit_time(rtc, host_sec);
        }
        return;
    }
    switch (reg) {
    case REG_A:
        rtc->cmos[REG_A] = v & (uint8_t)~A_UIP;   /* UIP is read-only */
        break;
    case REG_B: {
        uint8_t old = rtc->cmos[REG_B];
        rtc_host_ns(rtc, &host_sec, &host_nsec);
        if ((v & B_SET) && !(old & B_SET)) {
            /* Freeze: the registers hold the time as of now (in the old
             * format) while the guest rewrites them. */
            rtc_evaluate(rtc);
            rtc_snapshot(rtc, host_sec + rtc->offset_sec);
            /* Datasheet: setting SET clears UIE. */
            v &= (uint8_t)~B_UIE;
        }
        rtc->cmos[REG_B] = v;
        if (!(v & B_SET) && (old & B_SET))
            rtc_commit_time(rtc, host_sec);
        rtc_update_irq(rtc);
        break;
    }
    case REG_C:
    case REG_D:
        log_ratelimited(&rtc->rl, LOG_DEBUG, "rtc: write 0x%02x to read-only register 0x%x ignored",
                        v, reg);
        break;
    default:
        rtc->cmos[reg] = v;     /* alarms and CMOS RAM */
        break;
    }
}

static void rtc_bus_read(void *opaque, uint64_t off, void *data, unsigned len)
{
    struct rtc_cmos *rtc = opaque;
    uint8_t *out = data;

    pthread_mutex_lock(&rtc->lock);
    for (unsigned i = 0; i < len; i++) {
        /* The index port is write-only: reads float high. */
        out[i] = off + i == 1 ? rtc_read_reg(rtc, rtc->index) : 0xff;
    }
    pthread_mutex_unlock(&rtc->lock);
}

static void rtc_bus_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
    struct rtc_cmos *rtc = opaque;
    const uint8_t *in = data;

    pthread_mutex_lock(&rtc->lock);
    for (unsigned i = 0; i < len; i++) {
        if (off + i == 0) {
            /* Bit 7 of the index port is the chipset's NMI mask, not part
             * of the RTC: there is no NMI source to mask here. */
            rtc->index = in[i] & 0x7F;
        } else if (off + i == 1) {
            rtc_write_reg(rtc, rtc->index, in[i]);
        } else {
            log_ratelimited(&rtc->rl, LOG_DEBUG, "rtc: write to port offset %llu ignored",
                            (unsigned long long)(off + i));
        }
    }
    pthread_mutex_unlock(&rtc->lock);
}

const struct bus_ops rtc_cmos_bus_ops = {
    .read = rtc_bus_read,
    .write = rtc_bus_write,
};

static void rtc_set_word(struct rtc_cmos *rtc, unsigned reg, uint64_t v, uint64_t max)
{
    if (v > max)
        v = max;
    rtc->cmos[reg] = (uint8_t)v;
    rtc->cmos[reg + 1] = (uint8_t)(v >> 8);
}

static void rtc_init_memory_bytes(struct rtc_cmos *rtc, uint64_t low, uint64_t high,
                                  unsigned ncpus)
{
    const uint64_t MiB = 1024 * 1024;

    rtc_set_word(rtc, 0x15, 640, 0xFFFF);
    uint64_t ext_kib = low > MiB ? (low - MiB) / 1024 : 0;
    rtc_set_word(rtc, 0x17, ext_kib, 0xFFFF);
    rtc_set_word(rtc, 0x30, ext_kib, 0xFFFF);
    uint64_t above16 = low > 16 * MiB ? (low - 16 * MiB) / 65536 : 0;
    rtc_set_word(rtc, 0x34, above16, 0xFFFF);
    uint64_t high64k = high / 65536;
    if (high64k > 0xFFFFFF)
        high64k = 0xFFFFFF;
    rtc->cmos[0x5B] = (uint8_t)high64k;
    rtc->cmos[0x5C] = (uint8_t)(high64k >> 8);
    rtc->cmos[0x5D] = (uint8_t)(high64k >> 16);
    rtc->cmos[0x5F] = (uint8_t)(ncpus ? (ncpus > 256 ? 255 : ncpus - 1) : 0);
}

static void rtc_reset_locked(struct rtc_cmos *rtc)
{
    rtc->cmos[REG_B] &= (uint8_t)~(B_PIE | B_AIE | B_UIE | B_SQWE);
    rtc->flags = 0;
    rtc->index = 0;
    rtc_update_irq(rtc);
}

void rtc_cmos_reset(struct rtc_cmos *rtc)
{
    pthread_mutex_lock(&rtc->lock);
    rtc_reset_locked(rtc);
    pthread_mutex_unlock(&rtc->lock);
}

/* Re-anchor the flag bookkeeping to the (new) clock. */
static void rtc_anchor(struct rtc_cmos *rtc)
{
    int64_t host_sec, host_nsec;
    rtc->last_pf_ns = rtc_host_ns(rtc, &host_sec, &host_nsec);
    rtc->last_eval_sec = host_sec + rtc->offset_sec;
    rtc->flags = 0;
}

void rtc_cmos_set_clock(struct rtc_cmos *rtc,
                        void (*now)(void *opaque, struct timespec *ts), void *opaque)
{
    pthread_mutex_lock(&rtc->lock);
    rtc->now = now ? now : rtc_default_now;
    rtc->now_opaque = now ? opaque : NULL;
    rtc_anchor(rtc);
    rtc_update_irq(rtc);
    pthread_mutex_unlock(&rtc->lock);
}

void rtc_cmos_tick(struct rtc_cmos *rtc)
{
    pthread_mutex_lock(&rtc->lock);
    rtc_evaluate(rtc);
    rtc_update_irq(rtc);
    pthread_mutex_unlock(&rtc->lock);
}

struct rtc_cmos *rtc_cmos_new(const struct irq_line *irq, uint64_t low_ram_bytes,
                              uint64_t high_ram_bytes, unsigned ncpus)
{
    struct rtc_cmos *rtc = calloc(1, sizeof(*rtc));
    if (!rtc)
        return NULL;
    if (pthread_mutex_init(&rtc->lock, NULL) != 0) {
        free(rtc);
        return NULL;
    }
    if (irq)
        rtc->irq = *irq;
    rtc->rl = (struct log_ratelimit)LOG_RATELIMIT_INIT;
    rtc->now = rtc_default_now;
    /* What PC firmware programs: 32.768 kHz divider running, 1024 Hz
     * periodic rate; 24-hour BCD. */
    rtc->cmos[REG_A] = A_DV_NORMAL | 0x06;
    rtc->cmos[REG_B] = B_24H;
    rtc_init_memory_bytes(rtc, low_ram_bytes, high_ram_bytes, ncpus);
    rtc_anchor(rtc);
    return rtc;
}

void rtc_cmos_free(struct rtc_cmos *rtc)
{
    if (!rtc)
        return;
    pthread_mutex_destroy(&rtc->lock);
    free(rtc);
}
