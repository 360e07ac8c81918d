/* 16550A UART. Register behaviour follows the National Semiconductor
 * PC16550D datasheet (sections "Registers" and "FIFO Interrupt Mode
 * Operation"); where Linux's 8250 driver probes for quirks, the comments say
 * which answer it expects. */
#include "hw/serial_8250.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "core/log.h"

/* Register offsets (DLAB = 0 unless noted). */
enum {
    REG_RBR_THR = 0,    /* DLAB=1: DLL */
    REG_IER = 1,        /* DLAB=1: DLM */
    REG_IIR_FCR = 2,
    REG_LCR = 3,
    REG_MCR = 4,
    REG_LSR = 5,
    REG_MSR = 6,
    REG_SCR = 7,
};

#define IER_ERBFI  0x01     /* received data available */
#define IER_ETBEI  0x02     /* transmitter holding register empty */
#define IER_ELSI   0x04     /* receiver line status */
#define IER_EDSSI  0x08     /* modem status */
#define IER_MASK   0x0F     /* bits 4-7 read 0 on a 16550A (Linux probes them) */

#define IIR_NO_INT    0x01
#define IIR_MSI       0x00
#define IIR_THRI      0x02
#define IIR_RDI       0x04
#define IIR_RLSI      0x06
#define IIR_TIMEOUT   0x0C
#define IIR_FIFO_BITS 0xC0  /* both set: FIFOs enabled (16550A, not 16550) */

#define FCR_ENABLE     0x01
#define FCR_CLEAR_RX   0x02
#define FCR_CLEAR_TX   0x04
#define FCR_DMA_MODE   0x08
#define FCR_TRIG_MASK  0xC0

#define LCR_DLAB   0x80

#define MCR_DTR    0x01
#define MCR_RTS    0x02
#define MCR_OUT1   0x04
#define MCR_OUT2   0x08
#define MCR_LOOP   0x10
#define MCR_MASK   0x1F     /* bits 5-7 are 0 on a 16550A */

#define LSR_DR     0x01
#define LSR_OE     0x02
#define LSR_PE     0x04
#define LSR_FE     0x08
#define LSR_BI     0x10
#define LSR_THRE   0x20
#define LSR_TEMT   0x40
#define LSR_ERRORS (LSR_OE | LSR_PE | LSR_FE | LSR_BI)

#define MSR_DCTS   0x01
#define MSR_DDSR   0x02
#define MSR_TERI   0x04
#define MSR_DDCD   0x08
#define MSR_CTS    0x10
#define MSR_DSR    0x20
#define MSR_RI     0x40
#define MSR_DCD    0x80

/* Modem inputs when not in loopback: a terminal that is present and ready
 * (carrier, DSR, CTS), so a guest that honours flow control still sends. */
#define MSR_LINES_CONNECTED (MSR_DCD | MSR_DSR | MSR_CTS)

struct serial {
    pthread_mutex_t lock;
    struct irq_line irq;
    struct serial_backend be;
    struct log_ratelimit rl;

    uint8_t ier, lcr, mcr, scr, dll, dlm;
    uint8_t fcr;            /* FCR_ENABLE | FCR_DMA_MODE | trigger bits */
    uint8_t lsr_errors;     /* sticky OE (PE/FE/BI never happen here) */
    uint8_t msr_lines;      /* bits 4-7: current modem inputs */
    uint8_t msr_delta;      /* bits 0-3: changes since MSR was last read */
    bool thr_ipending;      /* THRE interrupt raised and not yet cleared */

    uint8_t rx_fifo[SERIAL_FIFO_SIZE];
    unsigned rx_head, rx_count;
    bool rx_blocked;        /* the backend was refused input: wake it */

    int irq_level;
};

static unsigned serial_rx_capacity(const struct serial *s)
{
    /* With FIFOs disabled the part is a 16450: a single holding register. */
    return (s->fcr & FCR_ENABLE) ? SERIAL_FIFO_SIZE : 1;
}

static unsigned serial_rx_trigger(const struct serial *s)
{
    static const unsigned levels[4] = {1, 4, 8, 14};
    return levels[(s->fcr & FCR_TRIG_MASK) >> 6];
}

static bool serial_in_loopback(const struct serial *s)
{
    return s->mcr & MCR_LOOP;
}

/* The highest-priority pending and enabled interrupt, as IIR bits 0-3
 * (datasheet table "Interrupt Control Functions"). */
static uint8_t serial_compute_iir(const struct serial *s)
{
    if ((s->ier & IER_ELSI) && (s->lsr_errors & LSR_ERRORS))
        return IIR_RLSI;
    if ((s->ier & IER_ERBFI) && s->rx_count) {
        /* FIFO mode: below the trigger level the character timeout fires
         * after 4 character times without FIFO activity. Host input arrives
         * in bursts with no baud-rate pacing, so that quiet period has
         * always elapsed by the time the guest can look: report it now. */
        if ((s->fcr & FCR_ENABLE) && s->rx_count < serial_rx_trigger(s))
            return IIR_TIMEOUT;
        return IIR_RDI;
    }
    if ((s->ier & IER_ETBEI) && s->thr_ipending)
        return IIR_THRI;
    if ((s->ier & IER_EDSSI) && (s->msr_delta & 0x0F))
        return IIR_MSI;
    return IIR_NO_INT;
}

/* The PC gates the UART's INTR pin with OUT2 (an external tri-state
 * buffer); in loopback the OUT2 pin is forced inactive (datasheet, MCR bit
 * 4), so no interrupt reaches the PIC then even though IIR shows it. */
static void serial_update_irq(struct serial *s)
{
    int level = !(serial_compute_iir(s) & IIR_NO_INT) &&
                (s->mcr & MCR_OUT2) && !serial_in_loopback(s);
    if (level != s->irq_level) {
        s->irq_level = level;
        irq_line_set(&s->irq, level);
    }
}

static uint8_t serial_modem_inputs(const struct serial *s)
{
    if (!serial_in_loopback(s))
        return MSR_LINES_CONNECTED;
    /* Loopback wires the four modem outputs to the four inputs. */
    uint8_t v = 0;
    if (s->mcr & MCR_RTS)  v |= MSR_CTS;
    if (s->mcr & MCR_DTR)  v |= MSR_DSR;
    if (s->mcr & MCR_OUT1) v |= MSR_RI;
    if (s->mcr & MCR_OUT2) v |= MSR_DCD;
    return v;
}

static void serial_update_modem_inputs(struct serial *s)
{
    uint8_t now = serial_modem_inputs(s);
    uint8_t changed = now ^ s->msr_lines;
    if (changed & MSR_CTS) s->msr_delta |= MSR_DCTS;
    if (changed & MSR_DSR) s->msr_delta |= MSR_DDSR;
    if (changed & MSR_DCD) s->msr_delta |= MSR_DDCD;
    /* TERI is set on the trailing edge of RI only (RI went 1 -> 0). */
    if ((changed & MSR_RI) && !(now & MSR_RI)) s->msr_delta |= MSR_TERI;
    s->msr_lines = now;
}

static void serial_rx_clear(struct serial *s)
{
    s->rx_head = 0;
    s->rx_count = 0;
}

/* Queue one received byte; false on overrun (FIFO full: the byte in the
 * shift register is lost, the FIFO keeps its contents, LSR.OE is set). */
static bool serial_rx_push(struct serial *s, uint8_t byte)
{
    if (s->rx_count >= serial_rx_capacity(s)) {
        s->lsr_errors |= LSR_OE;
        return false;
    }
    s->rx_fifo[(s->rx_head + s->rx_count) % SERIAL_FIFO_SIZE] = byte;
    s->rx_count++;
    return true;
}

static uint8_t serial_rx_pop(struct serial *s)
{
    if (!s->rx_count)
        return 0;
    uint8_t byte = s->rx_fifo[s->rx_head];
    s->rx_head = (s->rx_head + 1) % SERIAL_FIFO_SIZE;
    s->rx_count--;
    return byte;
}

/* Under the lock: should the backend be told it may send again? Only once
 * it was refused and the guest has drained everything (one wakeup per
 * burst rather than one per byte). */
static bool serial_take_rx_wakeup(struct serial *s)
{
    if (s->rx_blocked && !s->rx_count && !serial_in_loopback(s)) {
        s->rx_blocked = false;
        return true;
    }
    return false;
}

static void serial_transmit(struct serial *s, uint8_t byte)
{
    if (serial_in_loopback(s)) {
        /* Loopback: the transmitter output goes to the receiver input and
         * the TX pin is held marking, so nothing reaches the backend. */
        serial_rx_push(s, byte);
    } else if (s->be.tx) {
        s->be.tx(s->be.opaque, &byte, 1);
    }
    /* Writing THR clears a pending THRE interrupt (INTR falls). The byte
     * moves through the shifter at once (no baud timing), THR is empty
     * again and THRE interrupts anew: drive the line down and up so an
     * edge-triggered ISA input sees a fresh edge, as on real hardware. */
    s->thr_ipending = false;
    serial_update_irq(s);
    if (s->ier & IER_ETBEI)
        s->thr_ipending = true;
}

static void serial_write_fcr(struct serial *s, uint8_t v)
{
    bool was_on = s->fcr & FCR_ENABLE, on = v & FCR_ENABLE;
    /* Switching between FIFO and 16450 mode clears both FIFOs. */
    if (was_on != on)
        serial_rx_clear(s);
    if (!on) {
        /* FCR0 must be 1 for the other bits to be programmed. */
        s->fcr = 0;
        return;
    }
    if (v & FCR_CLEAR_RX)
        serial_rx_clear(s);
    /* FCR_CLEAR_TX: the TX FIFO is always empty here, nothing to do. The
     * reset bits self-clear, only mode bits are kept. */
    s->fcr = v & (FCR_ENABLE | FCR_DMA_MODE | FCR_TRIG_MASK);
}

static void serial_write_ier(struct serial *s, uint8_t v)
{
    uint8_t old = s->ier;
    s->ier = v & IER_MASK;
    /* Enabling ETBEI while THR is empty (always, here) raises the THRE
     * interrupt even if it was cleared before by an IIR read. Linux's
     * 8250 startup relies on this (it toggles IER.THRI and checks IIR,
     * else it marks the port UART_BUG_THRE and polls with a timer);
     * disabling ETBEI forgets it. */
    if ((s->ier & IER_ETBEI) && !(old & IER_ETBEI))
        s->thr_ipending = true;
    else if (!(s->ier & IER_ETBEI))
        s->thr_ipending = false;
}

static uint8_t serial_read_reg(struct serial *s, unsigned reg)
{
    uint8_t v;

    switch (reg) {
    case REG_RBR_THR:
        if (s->lcr & LCR_DLAB)
            return s->dll;
        /* An empty RBR reads as 0 (the datasheet leaves it undefined). */
        return serial_rx_pop(s);
    case REG_IER:
        return (s->lcr & LCR_DLAB) ? s->dlm : s->ier;
    case REG_IIR_FCR:
        v = serial_compute_iir(s);
        /* Reading IIR when THRE is the reported source clears it. */
        if (v == IIR_THRI)
            s->thr_ipending = false;
        if (s->fcr & FCR_ENABLE)
            v |= IIR_FIFO_BITS;
        return v;
    case REG_LCR:
        return s->lcr;
    case REG_MCR:
        return s->mcr;
    case REG_LSR:
        v = LSR_THRE | LSR_TEMT | s->lsr_errors;
        if (s->rx_count)
            v |= LSR_DR;
        /* Reading LSR clears the error bits and the line status interrupt. */
        s->lsr_errors = 0;
        return v;
    case REG_MSR:
        v = s->msr_lines | s->msr_delta;
        s->msr_delta = 0;
        return v;
    case REG_SCR:
        return s->scr;
    default:
        log_ratelimited(&s->rl, LOG_DEBUG, "serial: read of unknown register %u", reg);
        return 0xff;
    }
}

static void serial_write_reg(struct serial *s, unsigned reg, uint8_t v)
{
    switch (reg) {
    case REG_RBR_THR:
        if (s->lcr & LCR_DLAB)
            s->dll = v;
        else
            serial_transmit(s, v);
        break;
    case REG_IER:
        if (s->lcr & LCR_DLAB)
            s->dlm = v;
        else
            serial_write_ier(s, v);
        break;
    case REG_IIR_FCR:
        serial_write_fcr(s, v);
        break;
    case REG_LCR:
        /* Break (bit 6) and the frame format have no effect without a
         * physical line; DLAB only switches the register bank. */
        s->lcr = v;
        break;
    case REG_MCR:
        s->mcr = v & MCR_MASK;
        serial_update_modem_inputs(s);
        break;
    case REG_LSR:
    case REG_MSR:
        /* Writable only for factory test on the real part: ignored. */
        log_ratelimited(&s->rl, LOG_DEBUG, "serial: write 0x%02x to read-only register %u ignored",
                        v, reg);
        break;
    case REG_SCR:
        s->scr = v;
        break;
    default:
        log_ratelimited(&s->rl, LOG_DEBUG, "serial: write 0x%02x to unknown register %u ignored",
                        v, reg);
        break;
    }
}

static void serial_bus_read(void *opaque, uint64_t off, void *data, unsigned len)
{
    struct serial *s = opaque;
    uint8_t *out = data;
    bool wake;

    pthread_mutex_lock(&s->lock);
    for (unsigned i = 0; i < len; i++) {
        uint64_t reg = off + i;
        out[i] = reg < SERIAL_NR_REGS ? serial_read_reg(s, (unsigned)reg)
                                      : serial_read_reg(s, SERIAL_NR_REGS);
    }
    serial_update_irq(s);
    wake = serial_take_rx_wakeup(s);
    pthread_mutex_unlock(&s->lock);
    if (wake && s->be.rx_ready)
        s->be.rx_ready(s->be.opaque);
}

static void serial_bus_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
    struct serial *s = opaque;
    const uint8_t *in = data;
    bool wake;

    pthread_mutex_lock(&s->lock);
    for (unsigned i = 0; i < len; i++) {
        uint64_t reg = off + i;
        serial_write_reg(s, reg < SERIAL_NR_REGS ? (unsigned)reg : SERIAL_NR_REGS, in[i]);
    }
    serial_update_irq(s);
    wake = serial_take_rx_wakeup(s);
    pthread_mutex_unlock(&s->lock);
    if (wake && s->be.rx_ready)
        s->be.rx_ready(s->be.opaque);
}

const struct bus_ops serial_bus_ops = {
    .read = serial_bus_read,
    .write = serial_bus_write,
};

size_t serial_receive(struct serial *s, const uint8_t *buf, size_t len)
{
    size_t n = 0;

    pthread_mutex_lock(&s->lock);
    if (!serial_in_loopback(s)) {
        while (n < len && s->rx_count < serial_rx_capacity(s))
            serial_rx_push(s, buf[n++]);
    }
    if (n < len)
        s->rx_blocked = true;
    serial_update_irq(s);
    pthread_mutex_unlock(&s->lock);
    return n;
}

size_t serial_rx_space(struct serial *s)
{
    size_t space = 0;

    pthread_mutex_lock(&s->lock);
    if (!serial_in_loopback(s))
        space = serial_rx_capacity(s) - s->rx_count;
    if (!space)
        s->rx_blocked = true;
    pthread_mutex_unlock(&s->lock);
    return space;
}

/* Power-on values: datasheet table "UART Reset Configuration". The divisor
 * latch is undefined after reset; 12 (9600 baud) is what PC firmware
 * leaves behind. */
static void serial_reset_locked(struct serial *s)
{
    s->ier = 0;
    s->lcr = 0;
    s->mcr = 0;
    s->scr = 0;
    s->dll = 0x0C;
    s->dlm = 0;
    s->fcr = 0;
    s->lsr_errors = 0;
    s->thr_ipending = false;
    serial_rx_clear(s);
    s->msr_lines = serial_modem_inputs(s);
    s->msr_delta = 0;
    serial_update_irq(s);
}

void serial_reset(struct serial *s)
{
    bool wake;

    pthread_mutex_lock(&s->lock);
    serial_reset_locked(s);
    wake = serial_take_rx_wakeup(s);
    pthread_mutex_unlock(&s->lock);
    if (wake && s->be.rx_ready)
        s->be.rx_ready(s->be.opaque);
}

struct serial *serial_new(const struct irq_line *irq, const struct serial_backend *be)
{
    struct serial *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    if (pthread_mutex_init(&s->lock, NULL) != 0) {
        free(s);
        return NULL;
    }
    if (irq)
        s->irq = *irq;
    if (be)
        s->be = *be;
    s->rl = (struct log_ratelimit)LOG_RATELIMIT_INIT;
    /* The line starts low: irq_level 0 matches, nothing is sent. */
    serial_reset_locked(s);
    return s;
}

void serial_free(struct serial *s)
{
    if (!s)
        return;
    pthread_mutex_destroy(&s->lock);
    free(s);
}
