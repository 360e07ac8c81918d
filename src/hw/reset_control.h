/* The reset control register at PORT_RESET_CONTROL (0xCF9, one byte), as on
 * Intel PIIX/ICH chipsets. It is also the FADT RESET_REG, written with
 * ACPI_RESET_VALUE (0x06). A write with bit 2 (RST_CPU) set requests a
 * reset; bits 1 (SYS_RST, hard vs soft) and 3 (FULL_RST) are kept and read
 * back, and do not change what the VMM does (it always does a full VM
 * reset). Linux's reboot=pci writes 0x02 then 0x06.
 *
 * Threads and locking: the bus callbacks run on vCPU threads; the stored
 * byte is under the device mutex. reset is called WITHOUT the mutex on the
 * writing vCPU thread and should only schedule the reset (the VM reset then
 * calls reset_control_reset()).
 */
#ifndef KVMBOX_HW_RESET_CONTROL_H
#define KVMBOX_HW_RESET_CONTROL_H

#include "core/bus.h"

struct reset_control;

/* reset may be NULL. NULL on failure. */
struct reset_control *reset_control_new(void (*reset)(void *opaque), void *opaque);
void reset_control_free(struct reset_control *rc);
/* Power-on value 0. */
void reset_control_reset(struct reset_control *rc);

/* bus_register(pio, PORT_RESET_CONTROL, 1, "reset-control", &reset_control_bus_ops, rc) */
extern const struct bus_ops reset_control_bus_ops;

#endif
