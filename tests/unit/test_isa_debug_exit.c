/* Unit tests for isa-debug-exit. */
#include "hw/isa_debug_exit.h"

#include "test.h"

struct rig {
    int status;
    unsigned calls;
};

static void on_exit_request(void *opaque, int status)
{
    struct rig *r = opaque;
    r->status = status;
    r->calls++;
}

TEST(byte_write_gives_status)
{
    struct rig r = {0, 0};
    struct isa_debug_exit *d = isa_debug_exit_new(on_exit_request, &r);
    CHECK(d);
    uint8_t v = 0x10;
    isa_debug_exit_bus_ops.write(d, 0, &v, 1);
    CHECK_EQ(r.calls, 1);
    CHECK_EQ(r.status, 0x21);
    v = 0;
    isa_debug_exit_bus_ops.write(d, 0, &v, 1);
    CHECK_EQ(r.status, 1);
    isa_debug_exit_free(d);
}

TEST(wide_writes_and_offsets)
{
    struct rig r = {0, 0};
    struct isa_debug_exit *d = isa_debug_exit_new(on_exit_request, &r);
    CHECK(d);
    uint16_t w = 0x0102;
    isa_debug_exit_bus_ops.write(d, 0, &w, 2);
    CHECK_EQ(r.status, 0x0205);
    uint32_t l = 0x7f;
    isa_debug_exit_bus_ops.write(d, 3, &l, 4);
    CHECK_EQ(r.status, 0xff);
    l = 0xffffffffu;                     /* huge values stay a valid int */
    isa_debug_exit_bus_ops.write(d, 0, &l, 4);
    CHECK(r.status >= 0);
    CHECK_EQ(r.status & 0xff, 0xff);
    CHECK_EQ(r.calls, 3);
    uint32_t rv = 0xdeadbeef;
    isa_debug_exit_bus_ops.read(d, 0, &rv, 4);
    CHECK_EQ(rv, 0);
    isa_debug_exit_free(d);
}

TEST(no_callback_is_harmless)
{
    struct isa_debug_exit *d = isa_debug_exit_new(NULL, NULL);
    CHECK(d);
    uint8_t v = 1;
    isa_debug_exit_bus_ops.write(d, 0, &v, 1);
    isa_debug_exit_free(d);
    isa_debug_exit_free(NULL);
}

int main(void)
{
    RUN(byte_write_gives_status);
    RUN(wide_writes_and_offsets);
    RUN(no_callback_is_harmless);
    return test_summary();
}
