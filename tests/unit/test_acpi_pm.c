/* Unit tests for the ACPI PM1a registers and PM timer. */
#include "hw/acpi_pm.h"

#include "arch/x86/layout.h"
#include "test.h"

struct rig {
    uint64_t now_ns;
    int levels[16];
    unsigned nlevels;
    unsigned poweroffs;
    struct acpi_pm *pm;
};

static uint64_t fake_now(void *opaque)
{
    struct rig *r = opaque;
    return r->now_ns;
}

static int fake_set_level(void *ctx, uint32_t gsi, int level)
{
    struct rig *r = ctx;
    if (r->nlevels < 16)
        r->levels[r->nlevels++] = level;
    return 0;
}

static const struct irq_chip_ops fake_chip = {.set_level = fake_set_level};

static void on_poweroff(void *opaque)
{
    struct rig *r = opaque;
    r->poweroffs++;
}

static void rig_init(struct rig *r)
{
    memset(r, 0, sizeof(*r));
    struct irq_line line = {.ops = &fake_chip, .ctx = r, .gsi = ACPI_SCI_IRQ};
    r->pm = acpi_pm_new(&line, on_poweroff, r);
    if (r->pm)
        acpi_pm_set_clock(r->pm, fake_now, r);
}

static uint16_t rd16(struct rig *r, unsigned off)
{
    uint16_t v;
    acpi_pm_bus_ops.read(r->pm, off, &v, 2);
    return v;
}

static void wr16(struct rig *r, unsigned off, uint16_t v)
{
    acpi_pm_bus_ops.write(r->pm, off, &v, 2);
}

static uint32_t tmr(struct rig *r)
{
    uint32_t v;
    acpi_pm_bus_ops.read(r->pm, PORT_ACPI_PM_TMR - PORT_ACPI_PM_BASE, &v, 4);
    return v;
}

enum { STS = 0, EN = 2, CNT = 4 };

static int last_level(const struct rig *r)
{
    return r->nlevels ? r->levels[r->nlevels - 1] : 0;
}

TEST(sci_en_always_set)
{
    struct rig r;
    rig_init(&r);
    CHECK(r.pm);
    CHECK_EQ(rd16(&r, CNT), 0x0001);
    wr16(&r, CNT, 0x0000);
    CHECK_EQ(rd16(&r, CNT) & 1, 1);
    wr16(&r, CNT, 0x0002 | 0x0004);      /* BM_RLD kept, GBL_RLS write-only */
    CHECK_EQ(rd16(&r, CNT), 0x0003);
    acpi_pm_free(r.pm);
}

TEST(power_button_raises_sci_when_enabled)
{
    struct rig r;
    rig_init(&r);
    acpi_pm_press_power_button(r.pm);
    CHECK_EQ(rd16(&r, STS) & 0x0100, 0x0100);
    CHECK_EQ(r.nlevels, 0);              /* PWRBTN_EN off: no SCI */
    wr16(&r, EN, 0x0100);
    CHECK_EQ(rd16(&r, EN), 0x0100);
    CHECK_EQ(last_level(&r), 1);
    wr16(&r, STS, 0x0001);               /* other bits: no effect */
    CHECK_EQ(rd16(&r, STS), 0x0100);
    CHECK_EQ(last_level(&r), 1);
    wr16(&r, STS, 0x0100);               /* write 1 to clear */
    CHECK_EQ(rd16(&r, STS), 0);
    CHECK_EQ(last_level(&r), 0);
    acpi_pm_press_power_button(r.pm);
    CHECK_EQ(last_level(&r), 1);
    wr16(&r, EN, 0);
    CHECK_EQ(last_level(&r), 0);
    CHECK_EQ(r.nlevels, 4);
    acpi_pm_free(r.pm);
}

TEST(evt_block_as_one_dword_and_bytes)
{
    struct rig r;
    rig_init(&r);
    acpi_pm_press_power_button(r.pm);
    uint32_t v = 0x01000000;             /* EN = PWRBTN_EN, STS untouched */
    acpi_pm_bus_ops.write(r.pm, 0, &v, 4);
    acpi_pm_bus_ops.read(r.pm, 0, &v, 4);
    CHECK_EQ(v, 0x01000100);
    CHECK_EQ(last_level(&r), 1);
    uint8_t b = 0x01;                    /* clear PWRBTN_STS via byte 1 */
    acpi_pm_bus_ops.write(r.pm, 1, &b, 1);
    CHECK_EQ(rd16(&r, STS), 0);
    CHECK_EQ(last_level(&r), 0);
    wr16(&r, EN, 0xFFFF);                /* reserved enable bits stay 0 */
    CHECK_EQ(rd16(&r, EN), 0x0721);
    acpi_pm_free(r.pm);
}

TEST(s5_powers_off_other_states_ignored)
{
    struct rig r;
    rig_init(&r);
    wr16(&r, CNT, (uint16_t)(3 << 10 | 0x2000));   /* S3-ish: ignored */
    CHECK_EQ(r.poweroffs, 0);
    CHECK_EQ(rd16(&r, CNT), (3 << 10) | 1);        /* SLP_EN reads 0 */
    /* Linux: SLP_TYP first, then SLP_TYP | SLP_EN. */
    wr16(&r, CNT, (uint16_t)(ACPI_S5_SLP_TYP << 10));
    CHECK_EQ(r.poweroffs, 0);
    wr16(&r, CNT, (uint16_t)(ACPI_S5_SLP_TYP << 10 | 0x2000));
    CHECK_EQ(r.poweroffs, 1);
    /* SLP_EN in the high byte alone uses the stored SLP_TYP. */
    uint8_t hi = (uint8_t)((ACPI_S5_SLP_TYP << 2) | 0x20);
    acpi_pm_bus_ops.write(r.pm, CNT + 1, &hi, 1);
    CHECK_EQ(r.poweroffs, 2);
    acpi_pm_free(r.pm);
}

TEST(pm_timer_counts_at_3579545_hz)
{
    struct rig r;
    rig_init(&r);
    r.now_ns = 0;
    CHECK_EQ(tmr(&r), 0);
    r.now_ns = 1000000000ull;            /* 1 s */
    CHECK_EQ(tmr(&r), 3579545);
    r.now_ns = 1000;                     /* 1 us: 3.58 ticks */
    CHECK_EQ(tmr(&r), 3);
    /* 24-bit wrap: 2^24 ticks is about 4.687 s. */
    r.now_ns = 5000000000ull;
    CHECK_EQ(tmr(&r), (5ull * 3579545) & 0xFFFFFF);
    /* Long uptimes do not overflow. */
    r.now_ns = 400ull * 24 * 3600 * 1000000000ull;
    CHECK_EQ(tmr(&r), (400ull * 24 * 3600 * 3579545) & 0xFFFFFF);
    /* Read-only. */
    uint32_t v = 0x1234;
    acpi_pm_bus_ops.write(r.pm, 8, &v, 4);
    CHECK_EQ(tmr(&r), (400ull * 24 * 3600 * 3579545) & 0xFFFFFF);
    /* Real clock: monotonic and at most 24 bits. */
    acpi_pm_set_clock(r.pm, NULL, NULL);
    CHECK(tmr(&r) <= 0xFFFFFF);
    acpi_pm_free(r.pm);
}

TEST(reset_clears_and_drops_sci)
{
    struct rig r;
    rig_init(&r);
    wr16(&r, EN, 0x0100);
    acpi_pm_press_power_button(r.pm);
    wr16(&r, CNT, 0x0002);
    CHECK_EQ(last_level(&r), 1);
    acpi_pm_reset(r.pm);
    CHECK_EQ(last_level(&r), 0);
    CHECK_EQ(rd16(&r, STS), 0);
    CHECK_EQ(rd16(&r, EN), 0);
    CHECK_EQ(rd16(&r, CNT), 1);
    acpi_pm_free(r.pm);
}

int main(void)
{
    RUN(sci_en_always_set);
    RUN(power_button_raises_sci_when_enabled);
    RUN(evt_block_as_one_dword_and_bytes);
    RUN(s5_powers_off_other_states_ignored);
    RUN(pm_timer_counts_at_3579545_hz);
    RUN(reset_clears_and_drops_sci);
    return test_summary();
}
