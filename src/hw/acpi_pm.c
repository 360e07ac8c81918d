/* ACPI PM1a event/control blocks and PM timer: see the header; register
 * bits per ACPI 6.5 §4.8.3.1 (PM1 event grouping), §4.8.3.2 (PM1 control
 * grouping) and §4.8.3.3 (power management timer). */
#include "hw/acpi_pm.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "arch/x86/layout.h"
#include "core/log.h"

#define OFF_STS   (PORT_ACPI_PM1A_EVT - PORT_ACPI_PM_BASE)       /* 0 */
#define OFF_EN    (OFF_STS + 2)                                  /* 2 */
#define OFF_CNT   (PORT_ACPI_PM1A_CNT - PORT_ACPI_PM_BASE)       /* 4 */
#define OFF_TMR   (PORT_ACPI_PM_TMR - PORT_ACPI_PM_BASE)         /* 8 */

#define STS_PWRBTN    0x0100
#define EN_MASK       0x0721   /* TMR_EN, GBL_EN, PWRBTN_EN, SLPBTN_EN, RTC_EN */
#define SCI_EVENTS    STS_PWRBTN   /* the events this model can raise */

#define CNT_SCI_EN    0x0001
#define CNT_BM_RLD    0x0002
#define CNT_SLP_TYP_SHIFT 10
#define CNT_SLP_TYP   0x1C00
#define CNT_SLP_EN    0x2000
#define CNT_STORED    (CNT_BM_RLD | CNT_SLP_TYP)   /* GBL_RLS, SLP_EN: write-only */

#define TMR_MASK      0x00FFFFFFu

_Static_assert(OFF_TMR + 4 == ACPI_PM_IO_LEN, "PM block layout");

struct acpi_pm {
    pthread_mutex_t lock;
    struct irq_line sci;
    void (*poweroff)(void *opaque);
    void *opaque;
    uint64_t (*now_ns)(void *opaque);
    void *now_opaque;
    struct log_ratelimit rl;

    uint16_t sts, en, cnt;
    int sci_level;
};

static uint64_t acpi_pm_default_now(void *opaque)
{
    (void)opaque;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static uint32_t acpi_pm_timer(struct acpi_pm *pm)
{
    uint64_t ns = pm->now_ns(pm->now_opaque);
    /* Split so neither product overflows 64 bits. */
    uint64_t ticks = (ns / 1000000000ULL) * ACPI_PM_TIMER_HZ +
                     (ns % 1000000000ULL) * ACPI_PM_TIMER_HZ / 1000000000ULL;
    return (uint32_t)(ticks & TMR_MASK);
}

static void acpi_pm_update_sci(struct acpi_pm *pm)
{
    int level = (pm->sts & pm->en & SCI_EVENTS) != 0;
    if (level != pm->sci_level) {
        pm->sci_level = level;
        irq_line_set(&pm->sci, level);
    }
}

/* The part of an access [off, off+len) that falls on the register at
 * [roff, roff+rlen): the written bits and a mask of the lanes touched. */
static uint32_t acpi_pm_lanes(uint64_t off, unsigned len, const uint8_t *in,
                              unsigned roff, unsigned rlen, uint32_t *val)
{
    uint32_t mask = 0;
    *val = 0;
    for (unsigned i = 0; i < len; i++) {
        uint64_t o = off + i;
        if (o >= roff && o < roff + rlen) {
            unsigned lane = (unsigned)(o - roff);
            *val |= (uint32_t)in[i] << (8 * lane);
            mask |= 0xFFu << (8 * lane);
        }
    }
    return mask;
}

static void acpi_pm_bus_read(void *opaque, uint64_t off, void *data, unsigned len)
{
    struct acpi_pm *pm = opaque;
    uint8_t *out = data;
    uint8_t image[ACPI_PM_IO_LEN] = {0};

    pthread_mutex_lock(&pm->lock);
    image[OFF_STS] = (uint8_t)pm->sts;
    image[OFF_STS + 1] = (uint8_t)(pm->sts >> 8);
    image[OFF_EN] = (uint8_t)pm->en;
    image[OFF_EN + 1] = (uint8_t)(pm->en >> 8);
    uint16_t cnt = pm->cnt | CNT_SCI_EN;
    image[OFF_CNT] = (uint8_t)cnt;
    image[OFF_CNT + 1] = (uint8_t)(cnt >> 8);
    if (off + len > OFF_TMR) {
        uint32_t t = acpi_pm_timer(pm);
        for (unsigned i = 0; i < 4; i++)
            image[OFF_TMR + i] = (uint8_t)(t >> (8 * i));
    }
    pthread_mutex_unlock(&pm->lock);
    for (unsigned i = 0; i < len; i++)
        out[i] = off + i < ACPI_PM_IO_LEN ? image[off + i] : 0xff;
}

static void acpi_pm_bus_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
    struct acpi_pm *pm = opaque;
    const uint8_t *in = data;
    uint32_t val, mask;
    bool poweroff = false;
    unsigned slp_typ = 0;

    pthread_mutex_lock(&pm->lock);
    mask = acpi_pm_lanes(off, len, in, OFF_STS, 2, &val);
    pm->sts &= (uint16_t)~(val & mask);                       /* write 1 to clear */
    mask = acpi_pm_lanes(off, len, in, OFF_EN, 2, &val);
    pm->en = (uint16_t)((pm->en & ~mask) | (val & mask & EN_MASK));
    mask = acpi_pm_lanes(off, len, in, OFF_CNT, 2, &val);
    pm->cnt = (uint16_t)((pm->cnt & ~mask) | (val & mask & CNT_STORED));
    if (mask & val & CNT_SLP_EN) {
        slp_typ = (pm->cnt & CNT_SLP_TYP) >> CNT_SLP_TYP_SHIFT;
        if (slp_typ == ACPI_S5_SLP_TYP)
            poweroff = true;
        else
            log_ratelimited(&pm->rl, LOG_WARN,
                            "acpi: guest asked for sleep type %u; only S5 (%u) is supported, ignored",
                            slp_typ, ACPI_S5_SLP_TYP);
    }
    if (acpi_pm_lanes(off, len, in, OFF_TMR, 4, &val) ||
        acpi_pm_lanes(off, len, in, OFF_CNT + 2, 2, &val))
        log_ratelimited(&pm->rl, LOG_DEBUG, "acpi: write to read-only/reserved PM offset %llu ignored",
                        (unsigned long long)off);
    acpi_pm_update_sci(pm);
    pthread_mutex_unlock(&pm->lock);

    if (poweroff) {
        log_info("acpi: guest entered S5, powering off");
        if (pm->poweroff)
            pm->poweroff(pm->opaque);
    }
}

const struct bus_ops acpi_pm_bus_ops = {
    .read = acpi_pm_bus_read,
    .write = acpi_pm_bus_write,
};

void acpi_pm_press_power_button(struct acpi_pm *pm)
{
    pthread_mutex_lock(&pm->lock);
    pm->sts |= STS_PWRBTN;
    acpi_pm_update_sci(pm);
    pthread_mutex_unlock(&pm->lock);
}

void acpi_pm_set_clock(struct acpi_pm *pm, uint64_t (*now_ns)(void *opaque), void *opaque)
{
    pthread_mutex_lock(&pm->lock);
    pm->now_ns = now_ns ? now_ns : acpi_pm_default_now;
    pm->now_opaque = now_ns ? opaque : NULL;
    pthread_mutex_unlock(&pm->lock);
}

void acpi_pm_reset(struct acpi_pm *pm)
{
    pthread_mutex_lock(&pm->lock);
    pm->sts = 0;
    pm->en = 0;
    pm->cnt = 0;
    acpi_pm_update_sci(pm);
    pthread_mutex_unlock(&pm->lock);
}

struct acpi_pm *acpi_pm_new(const struct irq_line *sci, void (*poweroff)(void *opaque),
                            void *opaque)
{
    struct acpi_pm *pm = calloc(1, sizeof(*pm));
    if (!pm)
        return NULL;
    if (pthread_mutex_init(&pm->lock, NULL) != 0) {
        free(pm);
        return NULL;
    }
    if (sci)
        pm->sci = *sci;
    pm->poweroff = poweroff;
    pm->opaque = opaque;
    pm->now_ns = acpi_pm_default_now;
    pm->rl = (struct log_ratelimit)LOG_RATELIMIT_INIT;
    return pm;
}

void acpi_pm_free(struct acpi_pm *pm)
{
    if (!pm)
        return;
    pthread_mutex_destroy(&pm->lock);
    free(pm);
}
