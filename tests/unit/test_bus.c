/* The PIO/MMIO range table and guest memory bounds checks. */
#include "core/bus.h"
#include "core/guest_mem.h"
#include "test.h"

#include <errno.h>

struct fake_dev { uint64_t last_off; unsigned last_len; uint8_t regs[16]; unsigned reads, writes; };

static void fake_read(void *o, uint64_t off, void *data, unsigned len)
{
    struct fake_dev *d = o;
    d->last_off = off;
    d->last_len = len;
    d->reads++;
    memcpy(data, d->regs + off, len);
}

static void fake_write(void *o, uint64_t off, const void *data, unsigned len)
{
    struct fake_dev *d = o;
    d->last_off = off;
    d->last_len = len;
    d->writes++;
    memcpy(d->regs + off, data, len);
}

static const struct bus_ops fake_ops = { fake_read, fake_write };

TEST(register_and_dispatch)
{
    struct bus b;
    struct fake_dev a = {0}, c = {0};
    CHECK_EQ(bus_init(&b), 0);
    CHECK_EQ(bus_register(&b, 0x3f8, 8, "a", &fake_ops, &a), 0);
    CHECK_EQ(bus_register(&b, 0x2f8, 8, "c", &fake_ops, &c), 0);
    CHECK_EQ(bus_register(&b, 0x3fc, 8, "x", &fake_ops, &a), -EEXIST);
    CHECK_EQ(bus_register(&b, 0x3f0, 9, "x", &fake_ops, &a), -EEXIST);
    CHECK_EQ(bus_register(&b, 0, 0, "x", &fake_ops, &a), -EINVAL);
    CHECK_EQ(bus_register(&b, UINT64_MAX, 2, "x", &fake_ops, &a), -EINVAL);
    uint8_t v = 0x5a;
    CHECK(bus_access(&b, 0x3fb, &v, 1, true));
    CHECK_EQ(a.last_off, 3);
    CHECK_EQ(a.regs[3], 0x5a);
    CHECK_EQ(c.writes, 0);
    uint32_t w = 0;
    CHECK(bus_access(&b, 0x2f8, &w, 4, false));
    CHECK_EQ(c.last_len, 4);
    /* Unclaimed: reads all-ones. */
    w = 0;
    CHECK(!bus_access(&b, 0x1000, &w, 4, false));
    CHECK_EQ(w, 0xffffffff);
    /* Straddling the end: the outside part reads as ones. */
    memset(a.regs, 0, sizeof a.regs);
    w = 0;
    CHECK(bus_access(&b, 0x3fe, &w, 4, false));
    CHECK_EQ(w, 0xffff0000);
    CHECK_EQ(bus_unregister(&b, 0x3f8), 0);
    CHECK_EQ(bus_unregister(&b, 0x3f8), -ENOENT);
    CHECK(!bus_access(&b, 0x3f8, &v, 1, true));
    bus_destroy(&b);
}

TEST(many_ranges_sorted)
{
    struct bus b;
    struct fake_dev d = {0};
    CHECK_EQ(bus_init(&b), 0);
    for (int i = 99; i >= 0; i--)
        CHECK_EQ(bus_register(&b, (uint64_t)i * 0x10, 8, "d", &fake_ops, &d), 0);
    for (int i = 0; i < 100; i++) {
        uint8_t v;
        CHECK(bus_access(&b, (uint64_t)i * 0x10 + 7, &v, 1, false));
        CHECK(!bus_access(&b, (uint64_t)i * 0x10 + 8, &v, 1, false));
    }
    bus_destroy(&b);
}

TEST(guest_memory_bounds)
{
    struct guest_mem m;
    CHECK_EQ(gmem_init(&m, 16 << 20), 0);
    CHECK_EQ(m.n, 1);
    CHECK(gmem_ptr(&m, 0, 16 << 20) != NULL);
    CHECK(gmem_ptr(&m, 1, 16 << 20) == NULL);
    CHECK(gmem_ptr(&m, (16 << 20) - 1, 1) != NULL);
    CHECK(gmem_ptr(&m, 16 << 20, 0) != NULL);
    CHECK(gmem_ptr(&m, 16 << 20, 1) == NULL);
    CHECK(gmem_ptr(&m, UINT64_MAX, 2) == NULL);
    CHECK(gmem_ptr(&m, 4096, UINT64_MAX) == NULL);
    uint32_t x = 0x12345678, y = 0;
    CHECK_EQ(gmem_write(&m, 0x1000, &x, 4), 0);
    CHECK_EQ(gmem_read(&m, 0x1000, &y, 4), 0);
    CHECK_EQ(y, x);
    CHECK_EQ(gmem_write(&m, (16 << 20) - 2, &x, 4), -EFAULT);
    gmem_destroy(&m);
}

TEST(guest_memory_split_around_hole)
{
    struct guest_mem m;
    uint64_t size = 4ULL << 30;
    CHECK_EQ(gmem_init(&m, size), 0);
    CHECK_EQ(m.n, 2);
    CHECK_EQ(m.regions[0].size, GMEM_LOW_LIMIT);
    CHECK_EQ(m.regions[1].gpa, GMEM_HIGH_BASE);
    CHECK_EQ(m.regions[1].size, size - GMEM_LOW_LIMIT);
    CHECK(gmem_ptr(&m, GMEM_LOW_LIMIT, 1) == NULL);            /* the hole */
    CHECK(gmem_ptr(&m, GMEM_LOW_LIMIT - 1, 2) == NULL);        /* spans into it */
    CHECK(gmem_ptr(&m, GMEM_HIGH_BASE, 1) != NULL);
    CHECK(gmem_ptr(&m, GMEM_HIGH_BASE + m.regions[1].size - 8, 8) != NULL);
    gmem_destroy(&m);
}

int main(void)
{
    RUN(register_and_dispatch);
    RUN(many_ranges_sorted);
    RUN(guest_memory_bounds);
    RUN(guest_memory_split_around_hole);
    return test_summary();
}
