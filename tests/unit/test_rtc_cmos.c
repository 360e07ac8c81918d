/* Unit tests for the MC146818 model, with an injected wall clock. */
#include "hw/rtc_cmos.h"

#include <stdbool.h>
#include <stdlib.h>

#include "test.h"

struct rig {
    struct timespec now;
    int levels[32];
    unsigned nlevels;
    struct rtc_cmos *rtc;
};

static void fake_now(void *opaque, struct timespec *ts)
{
    struct rig *r = opaque;
    *ts = r->now;
}

static int fake_set_level(void *ctx, uint32_t gsi, int level)
{
    struct rig *r = ctx;
    if (r->nlevels < 32)
        r->levels[r->nlevels++] = level;
    return 0;
}

static const struct irq_chip_ops fake_chip = {.set_level = fake_set_level};

static time_t utc(int y, int mon, int d, int h, int m, int s)
{
    struct tm tm = {.tm_year = y - 1900, .tm_mon = mon - 1, .tm_mday = d,
                    .tm_hour = h, .tm_min = m, .tm_sec = s};
    return timegm(&tm);
}

static void rig_init(struct rig *r, time_t t, long nsec)
{
    memset(r, 0, sizeof(*r));
    r->now.tv_sec = t;
    r->now.tv_nsec = nsec;
    struct irq_line line = {.ops = &fake_chip, .ctx = r, .gsi = 8};
    r->rtc = rtc_cmos_new(&line, 512ull << 20, 0, 1);
    if (r->rtc)
        rtc_cmos_set_clock(r->rtc, fake_now, r);
}

static uint8_t cmos_rd(struct rig *r, uint8_t idx)
{
    uint8_t v;
    rtc_cmos_bus_ops.write(r->rtc, 0, &idx, 1);
    rtc_cmos_bus_ops.read(r->rtc, 1, &v, 1);
    return v;
}

static void cmos_wr(struct rig *r, uint8_t idx, uint8_t v)
{
    rtc_cmos_bus_ops.write(r->rtc, 0, &idx, 1);
    rtc_cmos_bus_ops.write(r->rtc, 1, &v, 1);
}

static int last_level(const struct rig *r)
{
    return r->nlevels ? r->levels[r->nlevels - 1] : 0;
}

TEST(bcd_24h_default)
{
    struct rig r;
    rig_init(&r, utc(2024, 2, 29, 13, 45, 56), 500000000);
    CHECK(r.rtc);
    CHECK_EQ(cmos_rd(&r, 0x00), 0x56);
    CHECK_EQ(cmos_rd(&r, 0x02), 0x45);
    CHECK_EQ(cmos_rd(&r, 0x04), 0x13);
    CHECK_EQ(cmos_rd(&r, 0x06), 0x05);   /* Thursday; Sunday = 1 */
    CHECK_EQ(cmos_rd(&r, 0x07), 0x29);
    CHECK_EQ(cmos_rd(&r, 0x08), 0x02);
    CHECK_EQ(cmos_rd(&r, 0x09), 0x24);
    CHECK_EQ(cmos_rd(&r, 0x32), 0x20);
    CHECK_EQ(cmos_rd(&r, 0x0A), 0x26);
    CHECK_EQ(cmos_rd(&r, 0x0B), 0x02);
    CHECK_EQ(cmos_rd(&r, 0x0D), 0x80);
    /* The clock moves with the host. */
    r.now.tv_sec += 65;
    CHECK_EQ(cmos_rd(&r, 0x00), 0x01);
    CHECK_EQ(cmos_rd(&r, 0x02), 0x47);
    rtc_cmos_free(r.rtc);
}

TEST(binary_mode)
{
    struct rig r;
    rig_init(&r, utc(2031, 12, 31, 23, 59, 58), 0);
    cmos_wr(&r, 0x0B, 0x06);             /* binary, 24h */
    CHECK_EQ(cmos_rd(&r, 0x00), 58);
    CHECK_EQ(cmos_rd(&r, 0x02), 59);
    CHECK_EQ(cmos_rd(&r, 0x04), 23);
    CHECK_EQ(cmos_rd(&r, 0x07), 31);
    CHECK_EQ(cmos_rd(&r, 0x08), 12);
    CHECK_EQ(cmos_rd(&r, 0x09), 31);
    CHECK_EQ(cmos_rd(&r, 0x32), 20);
    rtc_cmos_free(r.rtc);
}

TEST(twelve_hour_mode)
{
    struct rig r;
    rig_init(&r, utc(2024, 1, 1, 13, 0, 0), 0);
    cmos_wr(&r, 0x0B, 0x00);             /* BCD, 12h */
    CHECK_EQ(cmos_rd(&r, 0x04), 0x81);   /* 1 PM */
    r.now.tv_sec = utc(2024, 1, 1, 0, 30, 0);
    CHECK_EQ(cmos_rd(&r, 0x04), 0x12);   /* 12 AM */
    r.now.tv_sec = utc(2024, 1, 1, 12, 5, 0);
    CHECK_EQ(cmos_rd(&r, 0x04), 0x92);   /* 12 PM */
    r.now.tv_sec = utc(2024, 1, 1, 23, 5, 0);
    cmos_wr(&r, 0x0B, 0x04);             /* binary, 12h */
    CHECK_EQ(cmos_rd(&r, 0x04), 0x8B);   /* 11 PM */
    rtc_cmos_free(r.rtc);
}

/* Linux's mc146818_set_time order: SET, divider reset, fields, release. */
TEST(guest_sets_time_with_set_bit)
{
    struct rig r;
    time_t host = utc(2024, 6, 1, 10, 0, 0);
    rig_init(&r, host, 0);
    uint8_t b = cmos_rd(&r, 0x0B);
    cmos_wr(&r, 0x0B, b | 0x80);
    cmos_wr(&r, 0x0A, 0x26 | 0x70);
    cmos_wr(&r, 0x09, 0x99);
    cmos_wr(&r, 0x32, 0x19);
    cmos_wr(&r, 0x08, 0x12);
    cmos_wr(&r, 0x07, 0x31);
    cmos_wr(&r, 0x04, 0x23);
    cmos_wr(&r, 0x02, 0x59);
    cmos_wr(&r, 0x00, 0x50);
    /* Frozen while SET: time does not move, UIP never shows. */
    r.now.tv_sec += 5;
    r.now.tv_nsec = 999900000;
    CHECK_EQ(cmos_rd(&r, 0x00), 0x50);
    CHECK_EQ(cmos_rd(&r, 0x0A) & 0x80, 0);
    r.now.tv_nsec = 0;
    cmos_wr(&r, 0x0B, b);
    cmos_wr(&r, 0x0A, 0x26);
    CHECK_EQ(cmos_rd(&r, 0x00), 0x50);
    r.now.tv_sec += 15;                  /* over the millennium */
    CHECK_EQ(cmos_rd(&r, 0x00), 0x05);
    CHECK_EQ(cmos_rd(&r, 0x02), 0x00);
    CHECK_EQ(cmos_rd(&r, 0x04), 0x00);
    CHECK_EQ(cmos_rd(&r, 0x07), 0x01);
    CHECK_EQ(cmos_rd(&r, 0x08), 0x01);
    CHECK_EQ(cmos_rd(&r, 0x09), 0x00);
    CHECK_EQ(cmos_rd(&r, 0x32), 0x20);
    CHECK_EQ(cmos_rd(&r, 0x06), 0x07);   /* 2000-01-01 was a Saturday */
    rtc_cmos_free(r.rtc);
}

TEST(write_to_running_clock_sets_field)
{
    struct rig r;
    rig_init(&r, utc(2024, 6, 1, 10, 20, 30), 0);
    cmos_wr(&r, 0x04, 0x08);             /* hour := 8 */
    CHECK_EQ(cmos_rd(&r, 0x04), 0x08);
    CHECK_EQ(cmos_rd(&r, 0x02), 0x20);
    r.now.tv_sec += 1;
    CHECK_EQ(cmos_rd(&r, 0x00), 0x31);
    CHECK_EQ(cmos_rd(&r, 0x04), 0x08);
    rtc_cmos_free(r.rtc);
}

TEST(uip_window)
{
    struct rig r;
    rig_init(&r, utc(2024, 6, 1, 10, 0, 0), 0);
    CHECK_EQ(cmos_rd(&r, 0x0A), 0x26);
    r.now.tv_nsec = 999756000 - 1;
    CHECK_EQ(cmos_rd(&r, 0x0A) & 0x80, 0);
    r.now.tv_nsec = 999756000;
    CHECK_EQ(cmos_rd(&r, 0x0A) & 0x80, 0x80);
    r.now.tv_nsec = 999999999;
    CHECK_EQ(cmos_rd(&r, 0x0A), 0xA6);
    cmos_wr(&r, 0x0A, 0xA6);             /* UIP is read-only */
    r.now.tv_nsec = 0;
    CHECK_EQ(cmos_rd(&r, 0x0A), 0x26);
    cmos_wr(&r, 0x0A, 0x66);             /* divider in reset: no updates */
    r.now.tv_nsec = 999999999;
    CHECK_EQ(cmos_rd(&r, 0x0A), 0x66);
    rtc_cmos_free(r.rtc);
}

TEST(register_c_flags_and_irq)
{
    struct rig r;
    rig_init(&r, utc(2024, 6, 1, 10, 0, 0), 0);
    CHECK_EQ(cmos_rd(&r, 0x0C), 0x00);
    r.now.tv_sec += 1;
    CHECK_EQ(cmos_rd(&r, 0x0C) & 0x10, 0x10);  /* UF */
    CHECK_EQ(cmos_rd(&r, 0x0C) & 0x10, 0x00);  /* cleared by the read */

    /* Alarm at 10:00:03 (BCD), enabled with AIE, delivered by tick. */
    cmos_wr(&r, 0x01, 0x03);
    cmos_wr(&r, 0x03, 0x00);
    cmos_wr(&r, 0x05, 0x10);
    cmos_wr(&r, 0x0B, 0x02 | 0x20);
    r.now.tv_sec += 1;                   /* 10:00:02 */
    rtc_cmos_tick(r.rtc);
    CHECK_EQ(r.nlevels, 0);              /* UF set, but UIE is off */
    r.now.tv_sec += 3;                   /* past 10:00:03 */
    rtc_cmos_tick(r.rtc);
    CHECK_EQ(last_level(&r), 1);
    CHECK_EQ(cmos_rd(&r, 0x0C) & 0xB0, 0x80 | 0x20 | 0x10);  /* PF too */
    CHECK_EQ(last_level(&r), 0);

    /* "Don't care" hour and minute: matches every minute at :30. */
    cmos_wr(&r, 0x01, 0x30);
    cmos_wr(&r, 0x03, 0xFF);
    cmos_wr(&r, 0x05, 0xC0);
    r.now.tv_sec += 20;                  /* 10:00:25 */
    CHECK_EQ(cmos_rd(&r, 0x0C) & 0x20, 0);
    r.now.tv_sec += 600;
    CHECK_EQ(cmos_rd(&r, 0x0C) & 0x20, 0x20);

    /* Periodic flag: 1024 Hz is a period under 1 ms. */
    cmos_rd(&r, 0x0C);
    r.now.tv_nsec += 500000;
    CHECK_EQ(cmos_rd(&r, 0x0C) & 0x40, 0);
    r.now.tv_nsec += 600000;
    CHECK_EQ(cmos_rd(&r, 0x0C) & 0x40, 0x40);
    rtc_cmos_free(r.rtc);
}

TEST(index_and_control_registers)
{
    struct rig r;
    rig_init(&r, utc(2024, 6, 1, 10, 0, 0), 0);
    /* NMI-mask bit of the index is ignored. */
    CHECK_EQ(cmos_rd(&r, 0x80 | 0x0D), 0x80);
    cmos_wr(&r, 0x0D, 0x00);
    CHECK_EQ(cmos_rd(&r, 0x0D), 0x80);
    /* The index port itself reads as floating. */
    uint8_t v;
    rtc_cmos_bus_ops.read(r.rtc, 0, &v, 1);
    CHECK_EQ(v, 0xff);
    /* General CMOS RAM. */
    cmos_wr(&r, 0x40, 0xA5);
    CHECK_EQ(cmos_rd(&r, 0x40), 0xA5);
    cmos_wr(&r, 0x7F, 0x5A);
    CHECK_EQ(cmos_rd(&r, 0x7F), 0x5A);
    /* SET clears UIE. */
    cmos_wr(&r, 0x0B, 0x12);
    CHECK_EQ(cmos_rd(&r, 0x0B), 0x12);
    cmos_wr(&r, 0x0B, 0x92);
    CHECK_EQ(cmos_rd(&r, 0x0B), 0x82);
    rtc_cmos_free(r.rtc);
}

static unsigned word(struct rig *r, uint8_t idx)
{
    return cmos_rd(r, idx) | (unsigned)cmos_rd(r, (uint8_t)(idx + 1)) << 8;
}

TEST(memory_size_bytes)
{
    struct rig r;
    rig_init(&r, 0, 0);
    /* 512 MiB below 4 GiB, nothing above, 1 CPU */
    CHECK_EQ(word(&r, 0x15), 640);
    CHECK_EQ(word(&r, 0x17), 0xFFFF);    /* 511 MiB in KiB > 0xFFFF */
    CHECK_EQ(word(&r, 0x30), 0xFFFF);
    CHECK_EQ(word(&r, 0x34), (512 - 16) * 16);
    CHECK_EQ(cmos_rd(&r, 0x5B) | cmos_rd(&r, 0x5C) << 8 | cmos_rd(&r, 0x5D) << 16, 0);
    CHECK_EQ(cmos_rd(&r, 0x5F), 0);
    rtc_cmos_free(r.rtc);

    struct rtc_cmos *rtc = rtc_cmos_new(NULL, 3ull << 30, 5ull << 30, 4);
    CHECK(rtc);
    r.rtc = rtc;
    CHECK_EQ(word(&r, 0x34), (3072 - 16) * 16);
    CHECK_EQ(cmos_rd(&r, 0x5B) | cmos_rd(&r, 0x5C) << 8 | cmos_rd(&r, 0x5D) << 16,
             (5ull << 30) / 65536);
    CHECK_EQ(cmos_rd(&r, 0x5F), 3);
    rtc_cmos_free(rtc);

    rtc = rtc_cmos_new(NULL, 8ull << 20, 0, 0);
    CHECK(rtc);
    r.rtc = rtc;
    CHECK_EQ(word(&r, 0x17), 7 * 1024);
    CHECK_EQ(word(&r, 0x34), 0);
    CHECK_EQ(cmos_rd(&r, 0x5F), 0);
    rtc_cmos_free(rtc);
}

TEST(reset_keeps_time_and_ram)
{
    struct rig r;
    rig_init(&r, utc(2024, 6, 1, 10, 0, 0), 0);
    cmos_wr(&r, 0x04, 0x07);
    cmos_wr(&r, 0x50, 0x42);
    cmos_wr(&r, 0x0B, 0x02 | 0x10);      /* UIE */
    r.now.tv_sec += 1;
    rtc_cmos_tick(r.rtc);
    CHECK_EQ(last_level(&r), 1);
    rtc_cmos_reset(r.rtc);
    CHECK_EQ(last_level(&r), 0);
    CHECK_EQ(cmos_rd(&r, 0x0B), 0x02);
    CHECK_EQ(cmos_rd(&r, 0x04), 0x07);
    CHECK_EQ(cmos_rd(&r, 0x50), 0x42);
    rtc_cmos_free(r.rtc);
}

int main(void)
{
    RUN(bcd_24h_default);
    RUN(binary_mode);
    RUN(twelve_hour_mode);
    RUN(guest_sets_time_with_set_bit);
    RUN(write_to_running_clock_sets_field);
    RUN(uip_window);
    RUN(register_c_flags_and_irq);
    RUN(index_and_control_registers);
    RUN(memory_size_bytes);
    RUN(reset_keeps_time_and_ram);
    return test_summary();
}
