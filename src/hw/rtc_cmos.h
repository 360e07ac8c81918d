/* The PC's real-time clock, a Motorola MC146818 with 128 bytes of CMOS RAM,
 * at PORT_RTC (0x70 index, 0x71 data) on ISA IRQ 8.
 *
 * The time is not kept by a running counter: every read of a time register
 * computes it from the host's CLOCK_REALTIME plus a guest offset (set when
 * the guest writes the time), shown in UTC. Registers A-D: UIP is set in
 * the 244 us before each second's update; D always reports valid RAM and
 * time (VRT); C's flags are computed when read:
 *   UF  an update cycle completed since C was last read,
 *   AF  the time passed the alarm (with "don't care" values 0xC0-0xFF),
 *   PF  at least one periodic-interrupt period (reg A rate) has elapsed.
 * The device owns no timer, so interrupts are only raised when someone
 * calls rtc_cmos_tick(): the machine may do so from a timer (once per
 * second serves UIE/AIE); without it IRQ 8 never fires and the periodic
 * interrupt in particular is not delivered (guests then poll register C,
 * or use the HPET/PIT/LAPIC timer as Linux does by default).
 * The divider bits in register A are stored but do not stop the clock.
 *
 * CMOS RAM bytes 0x0E-0x7F are plain storage, preset with the memory-size
 * and CPU-count bytes QEMU's pc machine writes (SeaBIOS reads them):
 *   0x15/0x16 base memory in KiB (640)
 *   0x17/0x18 and 0x30/0x31 KiB above 1 MiB, at most 0xFFFF
 *   0x34/0x35 64 KiB units above 16 MiB (below 4 GiB), at most 0xFFFF
 *   0x5B-0x5D 64 KiB units above 4 GiB
 *   0x5F number of CPUs - 1
 *   0x32 century (part of the clock)
 *
 * Threads and locking: the bus callbacks run on vCPU threads,
 * rtc_cmos_tick() on the timer/I/O thread; all state is under the device
 * mutex, and IRQ 8 is driven with it held (lock order: rtc -> irq chip).
 * The clock callback is called with the mutex held.
 */
#ifndef KVMBOX_HW_RTC_CMOS_H
#define KVMBOX_HW_RTC_CMOS_H

#include <stdint.h>
#include <time.h>

#include "core/bus.h"
#include "core/irq.h"

#define RTC_CMOS_NR_PORTS 2   /* bus_register(pio, PORT_RTC, RTC_CMOS_NR_PORTS, ...) */

struct rtc_cmos;

/* low_ram_bytes: RAM below 4 GiB; high_ram_bytes: RAM at 4 GiB and up.
 * irq is copied (may be NULL). NULL on failure. */
struct rtc_cmos *rtc_cmos_new(const struct irq_line *irq, uint64_t low_ram_bytes,
                              uint64_t high_ram_bytes, unsigned ncpus);
void rtc_cmos_free(struct rtc_cmos *rtc);
/* The MC146818 RESET pin (VM reset): clears the interrupt enables in B and
 * the flags in C and drops IRQ 8. Time, guest offset and CMOS RAM survive,
 * being battery-backed. */
void rtc_cmos_reset(struct rtc_cmos *rtc);

/* Replace the host wall clock (default: clock_gettime(CLOCK_REALTIME)).
 * For tests; call before the guest runs. */
void rtc_cmos_set_clock(struct rtc_cmos *rtc,
                        void (*now)(void *opaque, struct timespec *ts), void *opaque);

/* Recompute the register C flags now and drive IRQ 8 from them. */
void rtc_cmos_tick(struct rtc_cmos *rtc);

extern const struct bus_ops rtc_cmos_bus_ops;

#endif
