/* A 16550A UART (National Semiconductor PC16550D register model), as a PC's
 * COM port: 8 byte registers at PORT_COM1.. and one ISA interrupt line.
 * Good enough for Linux's 8250 driver: autoconfig finds a 16550A with a
 * 16-byte FIFO, and TX/RX run interrupt-driven.
 *
 * What is modelled: THR/RBR, IER, IIR (priorities, FIFO bits 0xC0), FCR
 * (FIFO enable/reset, RX trigger 1/4/8/14), LCR with DLAB (DLL/DLM are plain
 * storage), MCR incl. loopback, LSR (DR, OE, THRE, TEMT), MSR with delta
 * bits, SCR. What is not: baud-rate timing (a byte written to THR leaves at
 * once, so THRE/TEMT are always set), parity/framing/break errors (a host
 * backend never produces them), DMA mode signalling.
 *
 * Threads and locking: the bus callbacks run on vCPU threads (several at
 * once); serial_receive()/serial_rx_space() run on the I/O thread. All state
 * is under the device mutex. The interrupt line is driven with the mutex
 * held, so level changes reach the irq chip in the order they were computed
 * (lock order: serial -> irq chip). Backend callbacks:
 *   be->tx       is called WITH the mutex held (keeps the byte order when
 *                vCPUs race); it must not call back into this device.
 *   be->rx_ready is called WITHOUT the mutex; it may call serial_receive().
 */
#ifndef KVMBOX_HW_SERIAL_8250_H
#define KVMBOX_HW_SERIAL_8250_H

#include <stddef.h>
#include <stdint.h>

#include "core/bus.h"
#include "core/irq.h"

#define SERIAL_NR_REGS   8     /* register with bus_register(pio, PORT_COMx, SERIAL_NR_REGS, ...) */
#define SERIAL_FIFO_SIZE 16

struct serial_backend {
    /* The guest transmitted bytes (one THR write at a time today). */
    void (*tx)(void *opaque, const uint8_t *buf, size_t len);
    /* The guest drained the RX FIFO after serial_receive() could not take
     * everything offered: the backend may offer more input. May be NULL. */
    void (*rx_ready)(void *opaque);
    void *opaque;
};

struct serial;

/* irq and be are copied; be->tx may be NULL (output dropped). NULL on
 * failure. The device starts in its power-on state. */
struct serial *serial_new(const struct irq_line *irq,
                          const struct serial_backend *be);
void serial_free(struct serial *s);
/* Back to the power-on state (VM reset). Deasserts the interrupt. */
void serial_reset(struct serial *s);

/* Host input: queue up to len bytes into the RX FIFO. Returns how many were
 * accepted: 0 when the FIFO is full or the UART is in loopback (its input
 * is disconnected from the outside then). When fewer than len were taken,
 * be->rx_ready is called once the guest has drained the FIFO. */
size_t serial_receive(struct serial *s, const uint8_t *buf, size_t len);
/* Free RX FIFO space now (0 in loopback). A 0 answer also arms rx_ready. */
size_t serial_rx_space(struct serial *s);

/* 8-bit registers at offsets 0..7; a wider access is split into byte
 * accesses at consecutive offsets, as the ISA bus does for 8-bit devices. */
extern const struct bus_ops serial_bus_ops;

#endif
