/* Unit tests for the 16550A model: register-level, no guest. The fake irq
 * chip records every level change so the tests can check edges. */
#include "hw/serial_8250.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "test.h"

#define MAX_EVENTS 64

struct fake_irq {
    int levels[MAX_EVENTS];
    unsigned n;
};

static int fake_set_level(void *ctx, uint32_t gsi, int level)
{
    struct fake_irq *f = ctx;
    if (f->n < MAX_EVENTS)
        f->levels[f->n++] = level;
    return 0;
}

static const struct irq_chip_ops fake_chip = {.set_level = fake_set_level};

struct fake_be {
    uint8_t tx[256];
    size_t ntx;
    unsigned rx_ready_calls;
};

static void fake_tx(void *opaque, const uint8_t *buf, size_t len)
{
    struct fake_be *b = opaque;
    for (size_t i = 0; i < len && b->ntx < sizeof b->tx; i++)
        b->tx[b->ntx++] = buf[i];
}

static void fake_rx_ready(void *opaque)
{
    struct fake_be *b = opaque;
    b->rx_ready_calls++;
}

struct rig {
    struct fake_irq irq;
    struct fake_be be;
    struct serial *s;
};

static void rig_init(struct rig *r)
{
    memset(r, 0, sizeof(*r));
    struct irq_line line = {.ops = &fake_chip, .ctx = &r->irq, .gsi = 4};
    struct serial_backend be = {.tx = fake_tx, .rx_ready = fake_rx_ready, .opaque = &r->be};
    r->s = serial_new(&line, &be);
}

static uint8_t rd(struct rig *r, unsigned reg)
{
    uint8_t v = 0xAA;
    serial_bus_ops.read(r->s, reg, &v, 1);
    return v;
}

static void wr(struct rig *r, unsigned reg, uint8_t v)
{
    serial_bus_ops.write(r->s, reg, &v, 1);
}

static int last_level(const struct rig *r)
{
    return r->irq.n ? r->irq.levels[r->irq.n - 1] : 0;
}

enum { RBR = 0, IER = 1, IIR = 2, FCR = 2, LCR = 3, MCR = 4, LSR = 5, MSR = 6, SCR = 7 };

/* The probe sequence of Linux's drivers/tty/serial/8250/8250_port.c
 * autoconfig() and autoconfig_16550a(), with the answers a real 16550A
 * gives at each step. */
TEST(linux_autoconfig_finds_16550a)
{
    struct rig r;
    rig_init(&r);
    CHECK(r.s);

    /* IER read-back test: only the low nibble exists. */
    uint8_t save_ier = rd(&r, IER);
    wr(&r, IER, 0);
    CHECK_EQ(rd(&r, IER) & 0x0f, 0);
    wr(&r, IER, 0x0f);
    CHECK_EQ(rd(&r, IER) & 0x0f, 0x0f);
    wr(&r, IER, save_ier);

    /* Loopback test: MCR = LOOP|OUT2|RTS must show DCD|CTS in MSR. */
    uint8_t save_mcr = rd(&r, MCR);
    wr(&r, MCR, 0x10 | 0x0A);
    CHECK_EQ(rd(&r, MSR) & 0xF0, 0x90);
    wr(&r, MCR, save_mcr);

    /* EFR probing: LCR=0xBF, write EFR (offset 2) = 0, back to LCR=0. */
    wr(&r, LCR, 0xBF);
    wr(&r, 2, 0);
    wr(&r, LCR, 0);

    /* FIFO detection: IIR bits 7:6 = 3 after enabling the FIFOs. */
    wr(&r, FCR, 0xE7);
    CHECK_EQ(rd(&r, IIR) >> 6, 3);

    /* autoconfig_16550a: not an ST16C650V1 (EFR under DLAB reads non-0). */
    wr(&r, LCR, 0x80);
    CHECK(rd(&r, 2) != 0);
    /* Not an EFR-capable part either. */
    wr(&r, LCR, 0xBF);
    CHECK(rd(&r, 2) != 0);
    /* Not a NatSemi SuperIO: EXCR1 (offset 2 with LCR=0xE0) does not
     * mirror MCR.LOOP. */
    wr(&r, LCR, 0);
    uint8_t status1 = rd(&r, MCR);
    wr(&r, LCR, 0xE0);
    uint8_t status2 = rd(&r, 2);
    CHECK_EQ((status1 ^ status2) & 0x10, 0);
    wr(&r, LCR, 0);
    wr(&r, MCR, status1 ^ 0x10);
    wr(&r, LCR, 0xE0);
    status2 = rd(&r, 2);
    wr(&r, LCR, 0);
    wr(&r, MCR, status1);
    CHECK_EQ((status1 ^ status2) & 0x10, 0);
    /* Not a TI16750: IIR bit 5 stays clear with or without DLAB. */
    wr(&r, FCR, 0x21);
    CHECK_EQ(rd(&r, IIR) >> 5, 6);
    wr(&r, FCR, 0x01);
    wr(&r, LCR, 0x80);
    wr(&r, FCR, 0x21);
    CHECK_EQ(rd(&r, IIR) >> 5, 6);
    wr(&r, FCR, 0x01);
    wr(&r, LCR, 0);
    /* Not an XScale: IER.UUE (bit 6) does not stick. */
    wr(&r, IER, 0x40);
    CHECK_EQ(rd(&r, IER) & 0x40, 0);
    wr(&r, IER, 0);

    /* Scratch register holds a value. */
    wr(&r, SCR, 0x5A);
    CHECK_EQ(rd(&r, SCR), 0x5A);
    wr(&r, SCR, 0xA5);
    CHECK_EQ(rd(&r, SCR), 0xA5);

    /* Nothing enabled OUT2: no interrupt went out during the probe. */
    CHECK_EQ(r.irq.n, 0);
    serial_free(r.s);
}

TEST(tx_goes_to_backend_and_thre_stays_set)
{
    struct rig r;
    rig_init(&r);
    CHECK_EQ(rd(&r, LSR), 0x60);
    wr(&r, RBR, 'h');
    wr(&r, RBR, 'i');
    CHECK_EQ(r.be.ntx, 2);
    CHECK_EQ(r.be.tx[0], 'h');
    CHECK_EQ(r.be.tx[1], 'i');
    CHECK_EQ(rd(&r, LSR) & 0x60, 0x60);
    serial_free(r.s);
}

/* Linux's serial8250_do_startup THRE re-assertion test, and the edges the
 * line produces for interrupt-driven TX. */
TEST(thre_interrupt_semantics)
{
    struct rig r;
    rig_init(&r);
    wr(&r, MCR, 0x08);                   /* OUT2: connect INTR to the PIC */
    CHECK_EQ(r.irq.n, 0);

    wr(&r, IER, 0x02);                   /* ETBEI with THR empty: raise */
    CHECK_EQ(last_level(&r), 1);
    CHECK_EQ(rd(&r, IIR), 0x02);         /* reading IIR clears THRE */
    CHECK_EQ(last_level(&r), 0);
    CHECK_EQ(rd(&r, IIR), 0x01);
    wr(&r, IER, 0);
    wr(&r, IER, 0x02);                   /* re-enabling re-asserts */
    CHECK_EQ(rd(&r, IIR) & 0x0f, 0x02);
    CHECK_EQ(last_level(&r), 0);

    /* Writing THR while THRE is pending gives a fresh edge (down, up). */
    wr(&r, IER, 0);
    wr(&r, IER, 0x02);
    unsigned before = r.irq.n;
    CHECK_EQ(last_level(&r), 1);
    wr(&r, RBR, 'x');
    CHECK_EQ(r.irq.n, before + 2);
    CHECK_EQ(r.irq.levels[before], 0);
    CHECK_EQ(r.irq.levels[before + 1], 1);

    /* Disabling ETBEI drops it. */
    wr(&r, IER, 0);
    CHECK_EQ(last_level(&r), 0);
    CHECK_EQ(rd(&r, IIR), 0x01);
    serial_free(r.s);
}

TEST(rx_fifo_fill_and_drain)
{
    struct rig r;
    rig_init(&r);
    uint8_t in[20];
    for (unsigned i = 0; i < sizeof in; i++)
        in[i] = (uint8_t)('a' + i);

    /* 16450 mode: a single holding register. */
    CHECK_EQ(serial_rx_space(r.s), 1);
    CHECK_EQ(serial_receive(r.s, in, 3), 1);
    CHECK_EQ(rd(&r, LSR) & 0x01, 1);
    CHECK_EQ(rd(&r, RBR), 'a');
    CHECK_EQ(rd(&r, LSR) & 0x01, 0);
    CHECK_EQ(r.be.rx_ready_calls, 1);    /* was refused, now drained */

    wr(&r, FCR, 0x01);
    CHECK_EQ(serial_rx_space(r.s), 16);
    CHECK_EQ(serial_receive(r.s, in, sizeof in), 16);
    CHECK_EQ(serial_rx_space(r.s), 0);
    CHECK_EQ(serial_receive(r.s, in, 1), 0);
    /* Host input never overruns: it is refused, not dropped. */
    CHECK_EQ(rd(&r, LSR) & 0x03, 0x01);
    for (unsigned i = 0; i < 16; i++) {
        CHECK_EQ(r.be.rx_ready_calls, 1);
        CHECK_EQ(rd(&r, RBR), 'a' + i);
    }
    CHECK_EQ(rd(&r, LSR) & 0x01, 0);
    CHECK_EQ(r.be.rx_ready_calls, 2);

    /* FCR RX reset empties the FIFO. */
    CHECK_EQ(serial_receive(r.s, in, 5), 5);
    wr(&r, FCR, 0x03);
    CHECK_EQ(rd(&r, LSR) & 0x01, 0);
    CHECK_EQ(serial_rx_space(r.s), 16);
    /* Leaving FIFO mode clears it as well. */
    CHECK_EQ(serial_receive(r.s, in, 5), 5);
    wr(&r, FCR, 0x00);
    CHECK_EQ(rd(&r, LSR) & 0x01, 0);
    serial_free(r.s);
}

TEST(overrun_sets_oe_and_line_status_interrupt)
{
    struct rig r;
    rig_init(&r);
    wr(&r, FCR, 0x01);
    wr(&r, MCR, 0x10 | 0x08);            /* loopback */
    wr(&r, IER, 0x05);                   /* ERBFI | ELSI */
    for (unsigned i = 0; i < 17; i++)
        wr(&r, RBR, (uint8_t)i);
    CHECK_EQ(r.be.ntx, 0);               /* loopback keeps TX internal */
    CHECK_EQ(rd(&r, IIR), 0xC6);         /* line status beats RX data */
    uint8_t lsr = rd(&r, LSR);
    CHECK_EQ(lsr & 0x03, 0x03);          /* DR | OE */
    CHECK_EQ(rd(&r, LSR) & 0x02, 0);     /* OE cleared by the read */
    CHECK_EQ(rd(&r, IIR), 0xC4);         /* 16 >= trigger 1 */
    for (unsigned i = 0; i < 16; i++)
        CHECK_EQ(rd(&r, RBR), i);        /* the 17th byte was lost */
    CHECK_EQ(rd(&r, IIR), 0xC1);
    serial_free(r.s);
}

TEST(rx_trigger_levels_and_timeout)
{
    struct rig r;
    rig_init(&r);
    uint8_t in[16] = {0};
    wr(&r, MCR, 0x08);
    wr(&r, FCR, 0x81);                   /* FIFO, trigger 8 */
    wr(&r, IER, 0x01);
    CHECK_EQ(r.irq.n, 0);
    CHECK_EQ(serial_receive(r.s, in, 4), 4);
    CHECK_EQ(last_level(&r), 1);
    CHECK_EQ(rd(&r, IIR), 0xCC);         /* below trigger: timeout */
    CHECK_EQ(serial_receive(r.s, in, 4), 4);
    CHECK_EQ(rd(&r, IIR), 0xC4);         /* at trigger: data available */
    rd(&r, RBR);
    CHECK_EQ(rd(&r, IIR), 0xCC);
    for (unsigned i = 0; i < 7; i++)
        rd(&r, RBR);
    CHECK_EQ(rd(&r, IIR), 0xC1);
    CHECK_EQ(last_level(&r), 0);

    static const struct { uint8_t fcr; unsigned level; } t[] = {
        {0x01, 1}, {0x41, 4}, {0x81, 8}, {0xC1, 14},
    };
    for (unsigned k = 0; k < 4; k++) {
        wr(&r, FCR, (uint8_t)(t[k].fcr | 0x02));
        CHECK_EQ(serial_receive(r.s, in, t[k].level - 1), t[k].level - 1);
        CHECK_EQ(rd(&r, IIR), t[k].level == 1 ? 0xC1 : 0xCC);
        CHECK_EQ(serial_receive(r.s, in, 1), 1);
        CHECK_EQ(rd(&r, IIR), 0xC4);
    }
    serial_free(r.s);
}

TEST(interrupt_priorities)
{
    struct rig r;
    rig_init(&r);
    wr(&r, FCR, 0x01);
    wr(&r, MCR, 0x08 | 0x10);            /* loopback: makes an overrun */
    for (unsigned i = 0; i < 17; i++)
        wr(&r, RBR, 'x');
    wr(&r, MCR, 0x08 | 0x10 | 0x02);     /* RTS -> CTS: modem status change */
    wr(&r, IER, 0x0F);
    CHECK_EQ(rd(&r, IIR), 0xC6);         /* line status */
    rd(&r, LSR);
    CHECK_EQ(rd(&r, IIR), 0xC4);         /* RX data */
    for (unsigned i = 0; i < 16; i++)
        rd(&r, RBR);
    CHECK_EQ(rd(&r, IIR), 0xC2);         /* THRE, cleared by this read */
    CHECK_EQ(rd(&r, IIR), 0xC0);         /* modem status */
    CHECK_EQ(rd(&r, MSR) & 0x01, 0x01);  /* DCTS; the read clears it */
    CHECK_EQ(rd(&r, IIR), 0xC1);
    serial_free(r.s);
}

TEST(irq_line_gated_by_out2_and_level_changes_only)
{
    struct rig r;
    rig_init(&r);
    uint8_t b = 'q';
    wr(&r, IER, 0x01);
    CHECK_EQ(serial_receive(r.s, &b, 1), 1);
    CHECK_EQ(rd(&r, IIR), 0x04);         /* pending ... */
    CHECK_EQ(r.irq.n, 0);                /* ... but OUT2 is off */
    wr(&r, MCR, 0x08);
    CHECK_EQ(r.irq.n, 1);
    CHECK_EQ(last_level(&r), 1);
    wr(&r, SCR, 1);                      /* unrelated access: no call */
    rd(&r, LSR);
    CHECK_EQ(r.irq.n, 1);
    rd(&r, RBR);
    CHECK_EQ(r.irq.n, 2);
    CHECK_EQ(last_level(&r), 0);
    serial_free(r.s);
}

TEST(loopback_modem_lines_and_input)
{
    struct rig r;
    rig_init(&r);
    /* Outside loopback the inputs show a connected terminal. */
    CHECK_EQ(rd(&r, MSR), 0xB0);
    wr(&r, MCR, 0x10);                   /* loopback, all outputs off */
    CHECK_EQ(rd(&r, MSR), 0x0B);         /* DCD, DSR, CTS fell: deltas */
    wr(&r, MCR, 0x10 | 0x01);            /* DTR -> DSR */
    CHECK_EQ(rd(&r, MSR), 0x22);
    wr(&r, MCR, 0x10 | 0x04);            /* OUT1 -> RI, DSR falls */
    CHECK_EQ(rd(&r, MSR), 0x42);         /* RI rising: no TERI */
    wr(&r, MCR, 0x10);
    CHECK_EQ(rd(&r, MSR), 0x04);         /* RI trailing edge: TERI */
    wr(&r, MCR, 0x10 | 0x08);            /* OUT2 -> DCD */
    CHECK_EQ(rd(&r, MSR), 0x88);

    /* External input is disconnected in loopback. */
    uint8_t b = 'z';
    CHECK_EQ(serial_receive(r.s, &b, 1), 0);
    CHECK_EQ(serial_rx_space(r.s), 0);
    wr(&r, RBR, 'L');
    CHECK_EQ(r.be.ntx, 0);
    CHECK_EQ(rd(&r, LSR) & 0x01, 1);
    CHECK_EQ(rd(&r, RBR), 'L');
    CHECK_EQ(r.be.rx_ready_calls, 0);    /* still in loopback */
    wr(&r, MCR, 0x08);                   /* leave: the backend may send */
    CHECK_EQ(r.be.rx_ready_calls, 1);
    CHECK_EQ(serial_receive(r.s, &b, 1), 1);
    CHECK_EQ(rd(&r, RBR), 'z');
    serial_free(r.s);
}

TEST(loopback_interrupts_do_not_reach_pic)
{
    struct rig r;
    rig_init(&r);
    wr(&r, MCR, 0x18);                   /* loopback + OUT2 bit */
    wr(&r, IER, 0x01);
    wr(&r, RBR, 'a');
    CHECK_EQ(rd(&r, IIR), 0x04);
    CHECK_EQ(r.irq.n, 0);
    wr(&r, MCR, 0x08);                   /* leaving loopback: INTR passes */
    CHECK_EQ(last_level(&r), 1);
    serial_free(r.s);
}

TEST(dlab_switches_bank)
{
    struct rig r;
    rig_init(&r);
    wr(&r, IER, 0x05);
    wr(&r, LCR, 0x83);                   /* DLAB, 8N1 */
    wr(&r, 0, 0x01);                     /* DLL: 115200 baud */
    wr(&r, 1, 0x00);                     /* DLM */
    CHECK_EQ(r.be.ntx, 0);               /* not transmitted */
    CHECK_EQ(rd(&r, 0), 0x01);
    CHECK_EQ(rd(&r, 1), 0x00);
    wr(&r, LCR, 0x03);
    CHECK_EQ(rd(&r, LCR), 0x03);
    CHECK_EQ(rd(&r, IER), 0x05);         /* IER untouched by DLM write */
    wr(&r, 0, 'A');
    CHECK_EQ(r.be.ntx, 1);
    wr(&r, LCR, 0x80);
    CHECK_EQ(rd(&r, 0), 0x01);
    serial_free(r.s);
}

TEST(wide_access_is_split_into_bytes)
{
    struct rig r;
    rig_init(&r);
    uint16_t v = 0x0B03;                 /* LCR = 0x03, MCR = 0x0B */
    serial_bus_ops.write(r.s, LCR, &v, 2);
    CHECK_EQ(rd(&r, LCR), 0x03);
    CHECK_EQ(rd(&r, MCR), 0x0B);
    uint32_t w = 0;
    serial_bus_ops.read(r.s, 6, &w, 4);  /* MSR, SCR, then past the end */
    CHECK_EQ(w & 0xffff0000u, 0xffff0000u);
    serial_free(r.s);
}

TEST(reset_returns_to_power_on_state)
{
    struct rig r;
    rig_init(&r);
    uint8_t in[4] = {1, 2, 3, 4};
    wr(&r, FCR, 0xC7);
    wr(&r, LCR, 0x1B);
    wr(&r, MCR, 0x0B);
    wr(&r, IER, 0x0F);
    wr(&r, SCR, 0x77);
    CHECK_EQ(serial_receive(r.s, in, 4), 4);
    CHECK_EQ(last_level(&r), 1);
    serial_reset(r.s);
    CHECK_EQ(last_level(&r), 0);
    CHECK_EQ(rd(&r, IER), 0);
    CHECK_EQ(rd(&r, IIR), 0x01);
    CHECK_EQ(rd(&r, LCR), 0);
    CHECK_EQ(rd(&r, MCR), 0);
    CHECK_EQ(rd(&r, LSR), 0x60);
    CHECK_EQ(rd(&r, MSR), 0xB0);
    CHECK_EQ(rd(&r, SCR), 0);
    CHECK_EQ(serial_rx_space(r.s), 1);
    serial_free(r.s);
}

TEST(null_irq_and_backend_are_allowed)
{
    struct serial *s = serial_new(NULL, NULL);
    CHECK(s);
    uint8_t v = 'x';
    serial_bus_ops.write(s, 0, &v, 1);
    v = 0x0f;
    serial_bus_ops.write(s, 1, &v, 1);
    serial_bus_ops.write(s, 4, &(uint8_t){0x08}, 1);
    serial_free(s);
    serial_free(NULL);
}

/* An I/O thread pushes input while this thread drains it like a guest:
 * every byte arrives once, in order, and a refused sender is always woken
 * (no lost rx_ready wakeup between "refused" and "drained"). */
#define STREAM_LEN 20000

struct stream {
    struct serial *s;
    pthread_mutex_t m;
    pthread_cond_t c;
    bool ready;
    bool timed_out;
};

static void stream_rx_ready(void *opaque)
{
    struct stream *st = opaque;
    pthread_mutex_lock(&st->m);
    st->ready = true;
    pthread_cond_signal(&st->c);
    pthread_mutex_unlock(&st->m);
}

static void *stream_sender(void *opaque)
{
    struct stream *st = opaque;
    uint8_t buf[37];
    size_t sent = 0;
    while (sent < STREAM_LEN) {
        size_t n = 0;
        while (n < sizeof buf && sent + n < STREAM_LEN) {
            buf[n] = (uint8_t)((sent + n) * 7);
            n++;
        }
        pthread_mutex_lock(&st->m);
        st->ready = false;
        pthread_mutex_unlock(&st->m);
        size_t took = serial_receive(st->s, buf, n);
        sent += took;
        if (took < n) {
            struct timespec dl;
            clock_gettime(CLOCK_REALTIME, &dl);
            dl.tv_sec += 5;
            pthread_mutex_lock(&st->m);
            while (!st->ready && !st->timed_out) {
                if (pthread_cond_timedwait(&st->c, &st->m, &dl) != 0)
                    st->timed_out = true;
            }
            pthread_mutex_unlock(&st->m);
            if (st->timed_out)
                break;
        }
    }
    return NULL;
}

TEST(threaded_rx_stream_no_lost_wakeup)
{
    struct stream st = {.ready = false, .timed_out = false};
    pthread_mutex_init(&st.m, NULL);
    pthread_cond_init(&st.c, NULL);
    struct serial_backend be = {.tx = NULL, .rx_ready = stream_rx_ready, .opaque = &st};
    st.s = serial_new(NULL, &be);
    CHECK(st.s);
    uint8_t fcr = 0xC1;
    serial_bus_ops.write(st.s, FCR, &fcr, 1);
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, stream_sender, &st), 0);
    size_t got = 0;
    bool order_ok = true;
    time_t give_up = time(NULL) + 10;
    while (got < STREAM_LEN && time(NULL) < give_up) {
        uint8_t lsr, b;
        serial_bus_ops.read(st.s, LSR, &lsr, 1);
        if (!(lsr & 0x01))
            continue;
        serial_bus_ops.read(st.s, RBR, &b, 1);
        if (b != (uint8_t)(got * 7))
            order_ok = false;
        got++;
    }
    pthread_join(th, NULL);
    serial_free(st.s);
    pthread_cond_destroy(&st.c);
    pthread_mutex_destroy(&st.m);
    CHECK(!st.timed_out);
    CHECK_EQ(got, STREAM_LEN);
    CHECK(order_ok);
}

int main(void)
{
    RUN(linux_autoconfig_finds_16550a);
    RUN(tx_goes_to_backend_and_thre_stays_set);
    RUN(thre_interrupt_semantics);
    RUN(rx_fifo_fill_and_drain);
    RUN(overrun_sets_oe_and_line_status_interrupt);
    RUN(rx_trigger_levels_and_timeout);
    RUN(interrupt_priorities);
    RUN(irq_line_gated_by_out2_and_level_changes_only);
    RUN(loopback_modem_lines_and_input);
    RUN(loopback_interrupts_do_not_reach_pic);
    RUN(dlab_switches_bank);
    RUN(wide_access_is_split_into_bytes);
    RUN(reset_returns_to_power_on_state);
    RUN(null_irq_and_backend_are_allowed);
    RUN(threaded_rx_stream_no_lost_wakeup);
    return test_summary();
}
