/* 8042 keyboard controller and a PS/2 keyboard behind it. Command set and
 * status bits follow the IBM PC AT Technical Reference (keyboard controller
 * section) and the PS/2 keyboard command list; the AUX-port behaviour is
 * chosen against Linux's drivers/input/serio/i8042.c probe order. */
#include "hw/i8042.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

/* Status register (read at 0x64). */
#define STAT_OBF      0x01  /* output buffer full: data waits at 0x60 */
#define STAT_IBF      0x02  /* input buffer full: never, we consume at once */
#define STAT_SYS      0x04  /* system flag: set once self test passed */
#define STAT_CMD      0x08  /* A2: last write was to 0x64 (command) */
#define STAT_UNLOCKED 0x10  /* keyboard not inhibited by the key lock */

/* Controller command byte ("CTR", internal RAM byte 0). */
#define CTR_KBDINT    0x01
#define CTR_AUXINT    0x02
#define CTR_SYS       0x04
#define CTR_KBDDIS    0x10
#define CTR_AUXDIS    0x20
#define CTR_XLATE     0x40

/* Output port (0xD0/0xD1). Bit 0 drives the CPU reset line, active low. */
#define OUT_RESET_N   0x01
#define OUT_A20       0x02

#define KBD_ACK       0xFA
#define KBD_RESEND    0xFE
#define KBD_BAT_OK    0xAA
#define KBD_ECHO      0xEE

#define I8042_QUEUE   16

struct i8042 {
    pthread_mutex_t lock;
    struct irq_line irq;
    void (*reset_request)(void *opaque);
    void *opaque;
    struct log_ratelimit rl;

    uint8_t ram[32];            /* internal RAM; ram[0] is the CTR */
    uint8_t status;             /* STAT_SYS | STAT_CMD; OBF is obf below */
    uint8_t outport;
    uint8_t pending_cmd;        /* command awaiting its data byte, or 0 */

    bool obf;
    uint8_t obuf;
    uint8_t queue[I8042_QUEUE]; /* bytes behind the output buffer */
    unsigned qhead, qcount;

    uint8_t kbd_pending;        /* keyboard command awaiting its parameter */
    uint8_t kbd_last;           /* last byte the keyboard sent (for 0xFE) */
    bool kbd_scanning;

    int irq_level;
};

/* IRQ1 follows OBF while the CTR enables keyboard interrupts; all bytes
 * here are keyboard-side (there is no AUX port to raise IRQ12). */
static void i8042_update_irq(struct i8042 *k)
{
    int level = k->obf && (k->ram[0] & CTR_KBDINT);
    if (level != k->irq_level) {
        k->irq_level = level;
        irq_line_set(&k->irq, level);
    }
}

/* Move the next queued byte into the output buffer if it is free. */
static void i8042_fill_obuf(struct i8042 *k)
{
    if (k->obf || !k->qcount)
        return;
    k->obuf = k->queue[k->qhead];
    k->qhead = (k->qhead + 1) % I8042_QUEUE;
    k->qcount--;
    k->obf = true;
}

static void i8042_queue(struct i8042 *k, uint8_t byte)
{
    if (k->qcount >= I8042_QUEUE) {
        /* Only a guest that never reads 0x60 gets here. */
        log_ratelimited(&k->rl, LOG_DEBUG, "i8042: output queue full, byte 0x%02x dropped", byte);
        return;
    }
    k->queue[(k->qhead + k->qcount) % I8042_QUEUE] = byte;
    k->qcount++;
    i8042_fill_obuf(k);
}

static void kbd_send(struct i8042 *k, uint8_t byte)
{
    k->kbd_last = byte;
    i8042_queue(k, byte);
}

static void kbd_set_defaults(struct i8042 *k)
{
    k->kbd_pending = 0;
    k->kbd_scanning = true;
}

/* A byte written to 0x60 with no controller command pending goes to the
 * keyboard. PS/2 keyboards acknowledge every command byte with 0xFA. */
static void kbd_write(struct i8042 *k, uint8_t v)
{
    if (k->kbd_pending) {
        uint8_t cmd = k->kbd_pending;
        k->kbd_pending = 0;
        kbd_send(k, KBD_ACK);
        /* 0xF0 0x00 asks for the current scan code set: always 2. */
        if (cmd == 0xF0 && v == 0)
            kbd_send(k, 0x02);
        return;
    }
    switch (v) {
    case 0xED:                  /* set LEDs, parameter follows */
    case 0xF3:                  /* set typematic rate, parameter follows */
    case 0xF0:                  /* get/set scan code set, parameter follows */
        kbd_send(k, KBD_ACK);
        k->kbd_pending = v;
        break;
    case 0xEE:                  /* echo: answered with 0xEE, no ACK */
        kbd_send(k, KBD_ECHO);
        break;
    case 0xF2:                  /* identify: MF2 keyboard, 0xAB 0x83; with
                                 * translation on, the controller turns
                                 * 0x83 into 0x41 (Linux accepts both) */
        kbd_send(k, KBD_ACK);
        kbd_send(k, 0xAB);
        kbd_send(k, (k->ram[0] & CTR_XLATE) ? 0x41 : 0x83);
        break;
    case 0xF4:                  /* enable scanning */
        kbd_send(k, KBD_ACK);
        k->kbd_scanning = true;
        break;
    case 0xF5:                  /* disable scanning, restore defaults */
        kbd_send(k, KBD_ACK);
        kbd_set_defaults(k);
        k->kbd_scanning = false;
        break;
    case 0xF6:                  /* restore defaults */
    case 0xF7: case 0xF8: case 0xF9: case 0xFA:
    case 0xFB: case 0xFC: case 0xFD:  /* set-3 key types: no effect here */
        kbd_send(k, KBD_ACK);
        if (v == 0xF6)
            kbd_set_defaults(k);
        break;
    case 0xFE:                  /* resend the last byte */
        i8042_queue(k, k->kbd_last);
        break;
    case 0xFF:                  /* reset: ACK, then basic assurance test OK */
        kbd_send(k, KBD_ACK);
        kbd_set_defaults(k);
        kbd_send(k, KBD_BAT_OK);
        break;
    default:
        /* Not a command: a real keyboard asks for a resend. */
        log_ratelimited(&k->rl, LOG_DEBUG, "i8042: unknown keyboard command 0x%02x", v);
        kbd_send(k, KBD_RESEND);
        break;
    }
}

/* The data byte of a two-byte controller command. Returns true when the
 * CPU reset line was pulled. */
static bool i8042_write_cmd_data(struct i8042 *k, uint8_t cmd, uint8_t v)
{
    if (cmd >= 0x60 && cmd <= 0x7F) {
        k->ram[cmd - 0x60] = v;
        if (cmd == 0x60) {
            /* The status SYS flag mirrors the CTR's system flag. */
            k->status = (uint8_t)((k->status & ~STAT_SYS) | (v & CTR_SYS));
        }
        return false;
    }
    switch (cmd) {
    case 0xD1:                  /* write output port */
        if (!(v & OUT_A20))
            log_ratelimited(&k->rl, LOG_DEBUG, "i8042: A20 gate off requested, not emulated");
        k->outport = v;
        return !(v & OUT_RESET_N);
    case 0xD2:                  /* write keyboard output buffer */
        i8042_queue(k, v);
        return false;
    case 0xD3:
        /* Write AUX output buffer. With no AUX port the byte comes back
         * marked as keyboard data: Linux's i8042_check_aux sees the missing
         * AUX flag and gives up at once instead of waiting for IRQ12. */
        i8042_queue(k, v);
        return false;
    case 0xD4:                  /* write to AUX device: none connected */
        log_ratelimited(&k->rl, LOG_DEBUG, "i8042: byte 0x%02x for absent AUX device dropped", v);
        return false;
    default:
        return false;
    }
}

/* Returns true when the CPU reset line was pulsed. */
static bool i8042_write_cmd(struct i8042 *k, uint8_t v)
{
    if (v >= 0x20 && v <= 0x3F) {           /* read internal RAM */
        i8042_queue(k, k->ram[v - 0x20]);
        return false;
    }
    if ((v >= 0x60 && v <= 0x7F) || (v >= 0xD1 && v <= 0xD4)) {
        k->pending_cmd = v;                 /* data byte follows at 0x60 */
        return false;
    }
    if (v >= 0xF0) {
        /* Pulse output port bits 0-3 low for 6 us where the command's low
         * nibble is 0. Bit 0 is the CPU reset line: 0xFE resets. */
        return !(v & 0x01);
    }
    switch (v) {
    case 0xA7: k->ram[0] |= CTR_AUXDIS; break;
    case 0xA8: k->ram[0] &= (uint8_t)~CTR_AUXDIS; break;
    case 0xA9:
        /* AUX interface test: 0x01 = clock line stuck low, i.e. nothing
         * wired. Linux then registers no AUX port. */
        i8042_queue(k, 0x01);
        break;
    case 0xAA:                              /* controller self test */
        i8042_queue(k, 0x55);
        k->status |= STAT_SYS;
        break;
    case 0xAB:                              /* keyboard interface test */
        i8042_queue(k, 0x00);
        break;
    case 0xAD: k->ram[0] |= CTR_KBDDIS; break;
    case 0xAE: k->ram[0] &= (uint8_t)~CTR_KBDDIS; break;
    case 0xD0:                              /* read output port */
        i8042_queue(k, k->outport);
        break;
    case 0xDD: k->outport &= (uint8_t)~OUT_A20; break;   /* A20 off (not emulated) */
    case 0xDF: k->outport |= OUT_A20; break;
    default:
        log_ratelimited(&k->rl, LOG_DEBUG, "i8042: unknown controller command 0x%02x ignored", v);
        break;
    }
    return false;
}

static void i8042_request_reset(struct i8042 *k)
{
    log_info("i8042: guest pulsed the CPU reset line");
    if (k->reset_request)
        k->reset_request(k->opaque);
}

static uint8_t i8042_read_status(struct i8042 *k)
{
    return (uint8_t)(k->status | STAT_UNLOCKED | (k->obf ? STAT_OBF : 0));
}

static uint8_t i8042_read_data(struct i8042 *k)
{
    uint8_t v = k->obuf;    /* an empty buffer returns the stale byte */
    if (k->obf) {
        k->obf = false;
        /* Let the line fall before the next byte raises it again, so an
         * edge-triggered ISA input sees one edge per byte. */
        i8042_update_irq(k);
        i8042_fill_obuf(k);
    }
    return v;
}

static void i8042_data_read(void *opaque, uint64_t off, void *data, unsigned len)
{
    struct i8042 *k = opaque;
    uint8_t *out = data;

    pthread_mutex_lock(&k->lock);
    out[0] = off == 0 ? i8042_read_data(k) : 0xff;
    for (unsigned i = 1; i < len; i++)
        out[i] = 0xff;
    i8042_update_irq(k);
    pthread_mutex_unlock(&k->lock);
}

static void i8042_data_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
    struct i8042 *k = opaque;
    uint8_t v = *(const uint8_t *)data;
    bool reset = false;

    (void)len;          /* an 8-bit port: only the low byte is decoded */
    if (off != 0)
        return;
    pthread_mutex_lock(&k->lock);
    k->status &= (uint8_t)~STAT_CMD;
    if (k->pending_cmd) {
        uint8_t cmd = k->pending_cmd;
        k->pending_cmd = 0;
        reset = i8042_write_cmd_data(k, cmd, v);
    } else {
        kbd_write(k, v);
    }
    i8042_update_irq(k);
    pthread_mutex_unlock(&k->lock);
    if (reset)
        i8042_request_reset(k);
}

static void i8042_cmd_read(void *opaque, uint64_t off, void *data, unsigned len)
{
    struct i8042 *k = opaque;
    uint8_t *out = data;

    pthread_mutex_lock(&k->lock);
    out[0] = off == 0 ? i8042_read_status(k) : 0xff;
    pthread_mutex_unlock(&k->lock);
    for (unsigned i = 1; i < len; i++)
        out[i] = 0xff;
}

static void i8042_cmd_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
    struct i8042 *k = opaque;
    uint8_t v = *(const uint8_t *)data;
    bool reset;

    (void)len;          /* an 8-bit port: only the low byte is decoded */
    if (off != 0)
        return;
    pthread_mutex_lock(&k->lock);
    k->status |= STAT_CMD;
    k->pending_cmd = 0;         /* a new command abandons a pending one */
    reset = i8042_write_cmd(k, v);
    i8042_update_irq(k);
    pthread_mutex_unlock(&k->lock);
    if (reset)
        i8042_request_reset(k);
}

const struct bus_ops i8042_data_bus_ops = {
    .read = i8042_data_read,
    .write = i8042_data_write,
};

const struct bus_ops i8042_cmd_bus_ops = {
    .read = i8042_cmd_read,
    .write = i8042_cmd_write,
};

/* kvmbox boots kernels without firmware, so "power-on" is the state a PC
 * BIOS leaves behind: self test passed (SYS), keyboard interrupt enabled,
 * set-2 -> set-1 translation on, reset line high, A20 on (KVM does not
 * gate A20). */
static void i8042_reset_locked(struct i8042 *k)
{
    memset(k->ram, 0, sizeof(k->ram));
    k->ram[0] = CTR_KBDINT | CTR_SYS | CTR_XLATE;
    k->status = STAT_SYS;
    k->outport = OUT_RESET_N | OUT_A20;
    k->pending_cmd = 0;
    k->obf = false;
    k->obuf = 0;
    k->qhead = k->qcount = 0;
    k->kbd_last = 0;
    kbd_set_defaults(k);
    i8042_update_irq(k);
}

void i8042_reset(struct i8042 *k)
{
    pthread_mutex_lock(&k->lock);
    i8042_reset_locked(k);
    pthread_mutex_unlock(&k->lock);
}

struct i8042 *i8042_new(const struct irq_line *kbd_irq,
                        void (*reset_request)(void *opaque), void *opaque)
{
    struct i8042 *k = calloc(1, sizeof(*k));
    if (!k)
        return NULL;
    if (pthread_mutex_init(&k->lock, NULL) != 0) {
        free(k);
        return NULL;
    }
    if (kbd_irq)
        k->irq = *kbd_irq;
    k->reset_request = reset_request;
    k->opaque = opaque;
    k->rl = (struct log_ratelimit)LOG_RATELIMIT_INIT;
    i8042_reset_locked(k);
    return k;
}

void i8042_free(struct i8042 *k)
{
    if (!k)
        return;
    pthread_mutex_destroy(&k->lock);
    free(k);
}
