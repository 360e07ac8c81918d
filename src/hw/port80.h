/* The POST-code port 0x80 (PORT_POST) as a sink: writes are dropped
 * silently, reads return 0. Linux writes it for I/O delays (outb_p) in hot
 * paths, so this must stay cheap and must not log. The ops need no device
 * state: register with opaque NULL. Usable for any other do-nothing port.
 *
 * Threads: called on vCPU threads; stateless, no locking.
 */
#ifndef KVMBOX_HW_PORT80_H
#define KVMBOX_HW_PORT80_H

#include "core/bus.h"

/* bus_register(pio, PORT_POST, 1, "post", &port80_bus_ops, NULL) */
extern const struct bus_ops port80_bus_ops;

#endif
