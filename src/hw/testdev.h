/* The kvmbox test device, for integration tests that check PIO and MMIO
 * exits and for boot-time measurement:
 *   PIO at PORT_TESTDEV, TESTDEV_PIO_SIZE bytes:
 *     +0  4 bytes, write: boot-timer marker. The value goes to the
 *         boot_timer callback (the VMM logs the time since its start, like
 *         Firecracker's boot-timer device). Reads return 0.
 *     +4  4 bytes: scratch register; reads return what was written, any
 *         width, each byte lane kept separately.
 *   MMIO at LAYOUT_TESTDEV_MMIO, TESTDEV_MMIO_SIZE bytes: scratch memory;
 *     reads return what was written, widths 1/2/4/8, unaligned allowed.
 *     Starts zeroed.
 *
 * Threads and locking: the bus callbacks run on vCPU threads; the scratch
 * state is under the device mutex. boot_timer is called WITHOUT the mutex
 * on the writing vCPU thread.
 */
#ifndef KVMBOX_HW_TESTDEV_H
#define KVMBOX_HW_TESTDEV_H

#include <stdint.h>

#include "arch/x86/layout.h"
#include "core/bus.h"

#define TESTDEV_PIO_SIZE  8
#define TESTDEV_MMIO_SIZE LAYOUT_TESTDEV_MMIO_SIZE

struct testdev;

/* boot_timer may be NULL. NULL on failure. */
struct testdev *testdev_new(void (*boot_timer)(void *opaque, uint32_t marker), void *opaque);
void testdev_free(struct testdev *t);
/* Zero the scratch register and the MMIO window. */
void testdev_reset(struct testdev *t);

/* bus_register(pio, PORT_TESTDEV, TESTDEV_PIO_SIZE, "testdev", &testdev_pio_bus_ops, t)
 * bus_register(mmio, LAYOUT_TESTDEV_MMIO, TESTDEV_MMIO_SIZE, "testdev-mmio",
 *              &testdev_mmio_bus_ops, t) */
extern const struct bus_ops testdev_pio_bus_ops;
extern const struct bus_ops testdev_mmio_bus_ops;

#endif
