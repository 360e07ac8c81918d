/* ACPI fixed-hardware power-management registers (ACPI 6.5 §4.8.3), at
 * PORT_ACPI_PM_BASE, ACPI_PM_IO_LEN bytes; the FADT points at them:
 *   +0  PM1a_STS  16 bits, write 1 to clear. PWRBTN_STS (bit 8) is the
 *                 only event modelled; nothing sets the others.
 *   +2  PM1a_EN   16 bits: TMR_EN, GBL_EN, PWRBTN_EN, SLPBTN_EN, RTC_EN.
 *   +4  PM1a_CNT  16 bits: SCI_EN (bit 0) always reads 1 -- there is no
 *                 SMI_CMD port, the OS finds ACPI mode already on (FADT
 *                 SMI_CMD = 0). SLP_TYP (bits 10-12) + SLP_EN (bit 13):
 *                 S5 (ACPI_S5_SLP_TYP) asks the VMM to power off; other
 *                 sleep states are not supported and only logged.
 *   +8  PM_TMR    32-bit read-only, a 24-bit counter at 3.579545 MHz from
 *                 CLOCK_MONOTONIC (FADT: TMR_VAL_EXT = 0). Its carry
 *                 interrupt (TMR_STS) is not modelled.
 * Accesses of any width are decoded byte lane by byte lane.
 * The SCI (ACPI_SCI_IRQ) is a level: asserted while PM1_STS & PM1_EN has a
 * modelled event. acpi_pm_press_power_button() is what system_powerdown
 * uses.
 *
 * The reset register (0xCF9, FADT RESET_REG) is the separate reset_control
 * device: the PM1 registers have no reset function.
 *
 * Threads and locking: the bus callbacks run on vCPU threads,
 * acpi_pm_press_power_button() on the monitor/I/O thread; all state is
 * under the device mutex and the SCI is driven with it held (lock order:
 * acpi_pm -> irq chip). poweroff is called WITHOUT the mutex on the writing
 * vCPU thread and should only schedule the power-off.
 */
#ifndef KVMBOX_HW_ACPI_PM_H
#define KVMBOX_HW_ACPI_PM_H

#include <stdint.h>

#include "core/bus.h"
#include "core/irq.h"

#define ACPI_PM_IO_LEN     12          /* PM1a_EVT (4) + PM1a_CNT (2) + pad (2) + PM_TMR (4) */
#define ACPI_PM_TIMER_HZ   3579545ULL

struct acpi_pm;

/* sci is copied (may be NULL); poweroff may be NULL. NULL on failure. */
struct acpi_pm *acpi_pm_new(const struct irq_line *sci, void (*poweroff)(void *opaque),
                            void *opaque);
void acpi_pm_free(struct acpi_pm *pm);
/* Power-on state: status and enables cleared, SCI deasserted. */
void acpi_pm_reset(struct acpi_pm *pm);
/* Set PWRBTN_STS; raises the SCI if the OS enabled PWRBTN_EN. */
void acpi_pm_press_power_button(struct acpi_pm *pm);
/* Replace the monotonic clock (nanoseconds) behind PM_TMR; for tests. */
void acpi_pm_set_clock(struct acpi_pm *pm, uint64_t (*now_ns)(void *opaque), void *opaque);

extern const struct bus_ops acpi_pm_bus_ops;

#endif
