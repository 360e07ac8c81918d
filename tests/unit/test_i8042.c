/* Unit tests for the 8042 controller: the command sequences Linux's i8042
 * and atkbd drivers send, the reset paths, and IRQ1 edges. */
#include "hw/i8042.h"

#include <stdbool.h>
#include <stdlib.h>

#include "test.h"

#define MAX_EVENTS 64

struct rig {
    int levels[MAX_EVENTS];
    unsigned nlevels;
    unsigned resets;
    struct i8042 *k;
};

static int fake_set_level(void *ctx, uint32_t gsi, int level)
{
    struct rig *r = ctx;
    if (r->nlevels < MAX_EVENTS)
        r->levels[r->nlevels++] = level;
    return 0;
}

static const struct irq_chip_ops fake_chip = {.set_level = fake_set_level};

static void fake_reset(void *opaque)
{
    struct rig *r = opaque;
    r->resets++;
}

static void rig_init(struct rig *r)
{
    memset(r, 0, sizeof(*r));
    struct irq_line line = {.ops = &fake_chip, .ctx = r, .gsi = 1};
    r->k = i8042_new(&line, fake_reset, r);
}

static uint8_t status(struct rig *r)
{
    uint8_t v;
    i8042_cmd_bus_ops.read(r->k, 0, &v, 1);
    return v;
}

static uint8_t data_in(struct rig *r)
{
    uint8_t v;
    i8042_data_bus_ops.read(r->k, 0, &v, 1);
    return v;
}

static void cmd(struct rig *r, uint8_t v)
{
    i8042_cmd_bus_ops.write(r->k, 0, &v, 1);
}

static void data_out(struct rig *r, uint8_t v)
{
    i8042_data_bus_ops.write(r->k, 0, &v, 1);
}

static int last_level(const struct rig *r)
{
    return r->nlevels ? r->levels[r->nlevels - 1] : 0;
}

TEST(presence_and_self_tests)
{
    struct rig r;
    rig_init(&r);
    CHECK(r.k);
    uint8_t st = status(&r);
    CHECK_EQ(st & 0x01, 0);              /* nothing to read */
    CHECK_EQ(st & 0x02, 0);              /* ready for input */
    CHECK_EQ(st & 0x04, 0x04);           /* SYS: self test passed */
    cmd(&r, 0xAA);
    CHECK_EQ(status(&r) & 0x09, 0x09);   /* OBF, last write was a command */
    CHECK_EQ(data_in(&r), 0x55);
    CHECK_EQ(status(&r) & 0x01, 0);
    cmd(&r, 0xAB);
    CHECK_EQ(data_in(&r), 0x00);
    i8042_free(r.k);
}

TEST(command_byte_read_write)
{
    struct rig r;
    rig_init(&r);
    cmd(&r, 0x20);
    CHECK_EQ(data_in(&r), 0x45);         /* KBDINT | SYS | XLATE */
    cmd(&r, 0x60);
    data_out(&r, 0x64);                  /* XLATE | KBDDIS | SYS, no ints */
    CHECK_EQ(status(&r) & 0x08, 0);      /* last write was data */
    cmd(&r, 0x20);
    CHECK_EQ(data_in(&r), 0x64);
    /* A command abandons a pending data byte: 0x60 then 0x20. */
    cmd(&r, 0x60);
    cmd(&r, 0x20);
    CHECK_EQ(data_in(&r), 0x64);
    /* Clearing SYS in the CTR clears it in the status register. */
    cmd(&r, 0x60);
    data_out(&r, 0x40);
    CHECK_EQ(status(&r) & 0x04, 0);
    i8042_free(r.k);
}

TEST(port_disable_enable)
{
    struct rig r;
    rig_init(&r);
    cmd(&r, 0xAD);
    cmd(&r, 0xA7);
    cmd(&r, 0x20);
    CHECK_EQ(data_in(&r) & 0x30, 0x30);
    cmd(&r, 0xAE);
    cmd(&r, 0x20);
    CHECK_EQ(data_in(&r) & 0x30, 0x20);
    cmd(&r, 0xA8);
    cmd(&r, 0x20);
    CHECK_EQ(data_in(&r) & 0x30, 0x00);
    i8042_free(r.k);
}

TEST(output_port_and_reset_paths)
{
    struct rig r;
    rig_init(&r);
    cmd(&r, 0xD0);
    CHECK_EQ(data_in(&r) & 0x03, 0x03);  /* reset line high, A20 on */
    cmd(&r, 0xD1);
    data_out(&r, 0x03);
    CHECK_EQ(r.resets, 0);
    cmd(&r, 0xD1);
    data_out(&r, 0x02);                  /* bit 0 low: CPU reset */
    CHECK_EQ(r.resets, 1);
    cmd(&r, 0xFE);                       /* the classic reboot */
    CHECK_EQ(r.resets, 2);
    cmd(&r, 0xFF);                       /* pulses nothing */
    cmd(&r, 0xFD);                       /* pulses bit 1 only */
    CHECK_EQ(r.resets, 2);
    cmd(&r, 0xF0);                       /* pulses all four, bit 0 too */
    cmd(&r, 0xFC);
    CHECK_EQ(r.resets, 4);
    i8042_free(r.k);
}

TEST(keyboard_commands_answer)
{
    struct rig r;
    rig_init(&r);
    data_out(&r, 0xFF);                  /* reset */
    CHECK_EQ(data_in(&r), 0xFA);
    CHECK_EQ(data_in(&r), 0xAA);
    CHECK_EQ(status(&r) & 0x01, 0);
    data_out(&r, 0xF2);                  /* identify, translated */
    CHECK_EQ(data_in(&r), 0xFA);
    CHECK_EQ(data_in(&r), 0xAB);
    CHECK_EQ(data_in(&r), 0x41);
    cmd(&r, 0x60);
    data_out(&r, 0x05);                  /* translation off */
    data_out(&r, 0xF2);
    data_in(&r);
    data_in(&r);
    CHECK_EQ(data_in(&r), 0x83);
    data_out(&r, 0xED);                  /* set LEDs + parameter */
    CHECK_EQ(data_in(&r), 0xFA);
    data_out(&r, 0x07);
    CHECK_EQ(data_in(&r), 0xFA);
    data_out(&r, 0xF4);
    CHECK_EQ(data_in(&r), 0xFA);
    data_out(&r, 0xEE);
    CHECK_EQ(data_in(&r), 0xEE);
    data_out(&r, 0x12);                  /* not a command */
    CHECK_EQ(data_in(&r), 0xFE);
    data_out(&r, 0xF0);                  /* query scan code set */
    data_out(&r, 0x00);
    CHECK_EQ(data_in(&r), 0xFA);
    CHECK_EQ(data_in(&r), 0xFA);
    CHECK_EQ(data_in(&r), 0x02);
    i8042_free(r.k);
}

/* Linux's i8042_check_aux: the AUX loop echo comes back without the AUX
 * status bit, and the AUX interface test reports a dead port. */
TEST(aux_probe_fails_fast)
{
    struct rig r;
    rig_init(&r);
    cmd(&r, 0xD3);
    data_out(&r, 0x5A);
    uint8_t st = status(&r);
    CHECK_EQ(st & 0x01, 0x01);
    CHECK_EQ(st & 0x20, 0);              /* not AUX data */
    CHECK_EQ(data_in(&r), 0x5A);
    cmd(&r, 0xA9);
    CHECK_EQ(data_in(&r), 0x01);
    cmd(&r, 0xD4);                       /* byte for the absent mouse */
    data_out(&r, 0xFF);
    CHECK_EQ(status(&r) & 0x01, 0);
    i8042_free(r.k);
}

TEST(irq1_follows_output_buffer)
{
    struct rig r;
    rig_init(&r);
    data_out(&r, 0xFF);                  /* two bytes: FA, AA */
    CHECK_EQ(r.nlevels, 1);
    CHECK_EQ(last_level(&r), 1);
    data_in(&r);                         /* falls, then next byte raises */
    CHECK_EQ(r.nlevels, 3);
    CHECK_EQ(r.levels[1], 0);
    CHECK_EQ(r.levels[2], 1);
    data_in(&r);
    CHECK_EQ(r.nlevels, 4);
    CHECK_EQ(last_level(&r), 0);
    data_in(&r);                         /* empty read: no change */
    CHECK_EQ(r.nlevels, 4);

    /* With KBDINT off, bytes wait without an interrupt. */
    cmd(&r, 0x60);
    data_out(&r, 0x44);
    cmd(&r, 0xAA);
    CHECK_EQ(r.nlevels, 4);
    CHECK_EQ(status(&r) & 0x01, 1);
    /* Enabling KBDINT with a byte waiting raises the line. */
    cmd(&r, 0x60);
    data_out(&r, 0x45);
    CHECK_EQ(last_level(&r), 1);
    i8042_free(r.k);
}

TEST(reset_clears_state)
{
    struct rig r;
    rig_init(&r);
    cmd(&r, 0x60);
    data_out(&r, 0x01);
    data_out(&r, 0xFF);
    CHECK_EQ(last_level(&r), 1);
    cmd(&r, 0xD1);                       /* leave a command pending */
    i8042_reset(r.k);
    CHECK_EQ(last_level(&r), 0);
    CHECK_EQ(status(&r) & 0x01, 0);
    data_out(&r, 0xF4);                  /* goes to the keyboard again */
    CHECK_EQ(data_in(&r), 0xFA);
    cmd(&r, 0x20);
    CHECK_EQ(data_in(&r), 0x45);
    CHECK_EQ(r.resets, 0);
    i8042_free(r.k);
}

TEST(output_queue_overflow_is_harmless)
{
    struct rig r;
    rig_init(&r);
    for (unsigned i = 0; i < 100; i++)
        data_out(&r, 0xEE);
    unsigned n = 0;
    while ((status(&r) & 0x01) && n < 200) {
        CHECK_EQ(data_in(&r), 0xEE);
        n++;
    }
    CHECK(n >= 16 && n < 100);
    i8042_free(r.k);
}

int main(void)
{
    RUN(presence_and_self_tests);
    RUN(command_byte_read_write);
    RUN(port_disable_enable);
    RUN(output_port_and_reset_paths);
    RUN(keyboard_commands_answer);
    RUN(aux_probe_fails_fast);
    RUN(irq1_follows_output_buffer);
    RUN(reset_clears_state);
    RUN(output_queue_overflow_is_harmless);
    return test_summary();
}
