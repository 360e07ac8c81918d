/* Unit tests for the kvmbox test device. */
#include "hw/testdev.h"

#include "test.h"

struct rig {
    uint32_t markers[8];
    unsigned n;
};

static void on_marker(void *opaque, uint32_t marker)
{
    struct rig *r = opaque;
    if (r->n < 8)
        r->markers[r->n++] = marker;
}

TEST(boot_timer_marker)
{
    struct rig r = {{0}, 0};
    struct testdev *t = testdev_new(on_marker, &r);
    CHECK(t);
    uint32_t v = 0x12345678;
    testdev_pio_bus_ops.write(t, 0, &v, 4);
    CHECK_EQ(r.n, 1);
    CHECK_EQ(r.markers[0], 0x12345678);
    uint8_t b = 0x7;
    testdev_pio_bus_ops.write(t, 0, &b, 1);
    CHECK_EQ(r.n, 2);
    CHECK_EQ(r.markers[1], 7);
    /* Not starting at +0: no marker. */
    testdev_pio_bus_ops.write(t, 2, &b, 1);
    CHECK_EQ(r.n, 2);
    uint32_t rv = 0xffffffff;
    testdev_pio_bus_ops.read(t, 0, &rv, 4);
    CHECK_EQ(rv, 0);
    testdev_free(t);
}

TEST(pio_scratch_byte_lanes)
{
    struct testdev *t = testdev_new(NULL, NULL);
    CHECK(t);
    uint32_t v = 0xAABBCCDD, rv = 0;
    testdev_pio_bus_ops.write(t, 4, &v, 4);
    testdev_pio_bus_ops.read(t, 4, &rv, 4);
    CHECK_EQ(rv, 0xAABBCCDD);
    uint8_t b = 0x11;
    testdev_pio_bus_ops.write(t, 6, &b, 1);
    testdev_pio_bus_ops.read(t, 4, &rv, 4);
    CHECK_EQ(rv, 0xAA11CCDD);
    uint16_t w = 0x2233, rw = 0;
    testdev_pio_bus_ops.write(t, 5, &w, 2);
    testdev_pio_bus_ops.read(t, 5, &rw, 2);
    CHECK_EQ(rw, 0x2233);
    testdev_pio_bus_ops.read(t, 4, &rv, 4);
    CHECK_EQ(rv, 0xAA2233DD);
    uint8_t rb = 0;
    testdev_pio_bus_ops.read(t, 7, &rb, 1);
    CHECK_EQ(rb, 0xAA);
    testdev_free(t);
}

TEST(mmio_scratch_any_width)
{
    struct testdev *t = testdev_new(NULL, NULL);
    CHECK(t);
    uint64_t q = 0x0102030405060708ull, rq = 0;
    testdev_mmio_bus_ops.write(t, 0x100, &q, 8);
    testdev_mmio_bus_ops.read(t, 0x100, &rq, 8);
    CHECK_EQ(rq, q);
    uint32_t rl = 0;
    testdev_mmio_bus_ops.read(t, 0x101, &rl, 4);   /* unaligned */
    CHECK_EQ(rl, 0x04050607);
    uint16_t w = 0xBEEF, rw = 0;
    testdev_mmio_bus_ops.write(t, 0x103, &w, 2);
    testdev_mmio_bus_ops.read(t, 0x103, &rw, 2);
    CHECK_EQ(rw, 0xBEEF);
    /* Last bytes of the window. */
    uint32_t l = 0xCAFEF00D;
    testdev_mmio_bus_ops.write(t, TESTDEV_MMIO_SIZE - 4, &l, 4);
    testdev_mmio_bus_ops.read(t, TESTDEV_MMIO_SIZE - 4, &rl, 4);
    CHECK_EQ(rl, 0xCAFEF00D);
    /* A straddling access (only if misregistered) stays in bounds. */
    testdev_mmio_bus_ops.write(t, TESTDEV_MMIO_SIZE - 2, &l, 4);
    testdev_mmio_bus_ops.read(t, TESTDEV_MMIO_SIZE - 2, &rl, 4);
    CHECK_EQ(rl, 0xFFFFF00D);
    testdev_reset(t);
    testdev_mmio_bus_ops.read(t, 0x100, &rq, 8);
    CHECK_EQ(rq, 0);
    testdev_free(t);
}

int main(void)
{
    RUN(boot_timer_marker);
    RUN(pio_scratch_byte_lanes);
    RUN(mmio_scratch_any_width);
    return test_summary();
}
