/* QEMU's isa-debug-exit: a write of value V to the port makes the VMM exit
 * with status (V << 1) | 1, so a test guest can report pass/fail without a
 * console (QEMU: -device isa-debug-exit,iobase=0xf4,iosize=0x04). The
 * machine registers it at iobase/iosize from the command line; any offset
 * and width up to iosize count, the value being the little-endian data
 * written. Reads return 0.
 *
 * Threads and locking: the bus callbacks run on vCPU threads. The device
 * has no mutable state, hence no mutex; exit_request runs on the writing
 * vCPU thread (possibly on several at once) and should only schedule the
 * exit. The status is passed as (V << 1) | 1 truncated to a non-negative
 * int; the low 8 bits are what exit(3) reports.
 */
#ifndef KVMBOX_HW_ISA_DEBUG_EXIT_H
#define KVMBOX_HW_ISA_DEBUG_EXIT_H

#include "core/bus.h"

struct isa_debug_exit;

/* exit_request may be NULL (writes are then only logged). */
struct isa_debug_exit *isa_debug_exit_new(void (*exit_request)(void *opaque, int status),
                                          void *opaque);
void isa_debug_exit_free(struct isa_debug_exit *d);

extern const struct bus_ops isa_debug_exit_bus_ops;

#endif
