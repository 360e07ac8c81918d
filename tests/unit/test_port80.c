/* Unit test for the port 0x80 sink. */
#include "hw/port80.h"

#include "test.h"

TEST(writes_dropped_reads_zero)
{
    uint8_t b = 0x42;
    port80_bus_ops.write(NULL, 0, &b, 1);
    uint32_t v = 0xffffffff;
    port80_bus_ops.read(NULL, 0, &v, 4);
    CHECK_EQ(v, 0);
}

int main(void)
{
    RUN(writes_dropped_reads_zero);
    return test_summary();
}
