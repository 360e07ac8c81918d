/* Unit tests for the 0xCF9 reset control register. */
#include "hw/reset_control.h"

#include "arch/x86/layout.h"
#include "test.h"

static void on_reset(void *opaque)
{
    (*(unsigned *)opaque)++;
}

static void wr(struct reset_control *rc, uint8_t v)
{
    reset_control_bus_ops.write(rc, 0, &v, 1);
}

static uint8_t rd(struct reset_control *rc)
{
    uint8_t v;
    reset_control_bus_ops.read(rc, 0, &v, 1);
    return v;
}

TEST(bit2_requests_reset)
{
    unsigned resets = 0;
    struct reset_control *rc = reset_control_new(on_reset, &resets);
    CHECK(rc);
    CHECK_EQ(rd(rc), 0);
    wr(rc, 0x02);                        /* Linux reboot=pci: 0x02 ... */
    CHECK_EQ(resets, 0);
    CHECK_EQ(rd(rc), 0x02);
    wr(rc, 0x06);                        /* ... then 0x06 */
    CHECK_EQ(resets, 1);
    wr(rc, ACPI_RESET_VALUE);            /* FADT RESET_REG */
    CHECK_EQ(resets, 2);
    wr(rc, 0x0E);                        /* full reset */
    CHECK_EQ(resets, 3);
    CHECK_EQ(rd(rc), 0x0A);              /* RST_CPU does not read back */
    wr(rc, 0x08);
    CHECK_EQ(resets, 3);
    reset_control_reset(rc);
    CHECK_EQ(rd(rc), 0);
    reset_control_free(rc);
}

TEST(no_callback_is_harmless)
{
    struct reset_control *rc = reset_control_new(NULL, NULL);
    CHECK(rc);
    wr(rc, 0x06);
    reset_control_free(rc);
    reset_control_free(NULL);
}

int main(void)
{
    RUN(bit2_requests_reset);
    RUN(no_callback_is_harmless);
    return test_summary();
}
