/* The PC's 8042 keyboard controller (PS/2), enough for a guest to find it
 * and to reset the machine through it: status register, command byte
 * (0x20/0x60), self and interface tests, port enable/disable, output port
 * (0xD0/0xD1, bit 0 = CPU reset line), reset pulse (0xF0-0xFF), and a PS/2
 * keyboard that answers its commands (ACK, reset -> 0xFA 0xAA, identify).
 * No key input yet, and no AUX (mouse) port: the AUX tests fail fast so a
 * Linux guest registers no mouse port without waiting for timeouts.
 *
 * Two register windows: data at PORT_I8042_DATA (0x60) and command/status
 * at PORT_I8042_CMD (0x64), each one byte; 0x61 between them belongs to the
 * PIT/speaker, so each has its own bus_ops.
 *
 * Threads and locking: the bus callbacks run on vCPU threads; all state is
 * under the device mutex. IRQ1 is driven with the mutex held (lock order:
 * i8042 -> irq chip). reset_request is called WITHOUT the mutex, on the
 * vCPU thread that wrote the command; it should only schedule the reset
 * (the VM reset then calls i8042_reset()).
 */
#ifndef KVMBOX_HW_I8042_H
#define KVMBOX_HW_I8042_H

#include "core/bus.h"
#include "core/irq.h"

struct i8042;

/* kbd_irq is copied (may be NULL). reset_request may be NULL. */
struct i8042 *i8042_new(const struct irq_line *kbd_irq,
                        void (*reset_request)(void *opaque), void *opaque);
void i8042_free(struct i8042 *k);
/* Power-on state (VM reset): empty output buffer, IRQ1 deasserted. */
void i8042_reset(struct i8042 *k);

/* bus_register(pio, PORT_I8042_DATA, 1, "i8042-data", &i8042_data_bus_ops, k)
 * bus_register(pio, PORT_I8042_CMD,  1, "i8042-cmd",  &i8042_cmd_bus_ops, k) */
extern const struct bus_ops i8042_data_bus_ops;
extern const struct bus_ops i8042_cmd_bus_ops;

#endif
