/* Unit tests for the e820 map. */
#include "arch/x86/e820.h"
#include "arch/x86/layout.h"
#include "test.h"

#include <errno.h>

#define MiB (1ULL << 20)
#define GiB (1ULL << 30)

struct want { uint64_t addr, size; uint32_t type; };

/* 0 when out[0..n) equals w[0..nw), else the index + 1 of the first
 * difference. */
static int compare(const struct e820_entry *out, int n, const struct want *w,
                   int nw)
{
    if (n != nw)
        return nw + 1;
    for (int i = 0; i < n; i++) {
        if (out[i].addr != w[i].addr || out[i].size != w[i].size ||
            out[i].type != w[i].type) {
            printf("    entry %d: [0x%" PRIx64 " +0x%" PRIx64 " type %u]\n", i,
                   out[i].addr, out[i].size, out[i].type);
            return i + 1;
        }
    }
    return 0;
}

/* Sorted, non-overlapping, non-empty; the ACPI and MP table windows are
 * inside a non-RAM range. */
static int sane(const struct e820_entry *out, int n)
{
    for (int i = 0; i < n; i++) {
        if (out[i].size == 0)
            return __LINE__;
        if (i && out[i].addr < out[i - 1].addr + out[i - 1].size)
            return __LINE__;
    }
    const uint64_t windows[2][2] = {
        { LAYOUT_ACPI_START, LAYOUT_ACPI_START + LAYOUT_ACPI_SIZE },
        { LAYOUT_MPTABLE_START, LAYOUT_MPTABLE_START + LAYOUT_MPTABLE_SIZE },
    };
    for (int w = 0; w < 2; w++) {
        int covered = 0;
        for (int i = 0; i < n; i++) {
            uint64_t s = out[i].addr, e = out[i].addr + out[i].size;
            if (windows[w][0] < e && s < windows[w][1]) {
                if (out[i].type == E820_RAM)
                    return __LINE__;
                if (s <= windows[w][0] && windows[w][1] <= e)
                    covered = 1;
            }
        }
        if (!covered)
            return __LINE__;
    }
    return 0;
}

#define LOW_FIXED                                                  \
    { 0, LAYOUT_EBDA_START, E820_RAM },                            \
    { LAYOUT_EBDA_START, 0xA0000 - LAYOUT_EBDA_START, E820_RESERVED }, \
    { LAYOUT_BIOS_START, 0x100000 - LAYOUT_BIOS_START, E820_RESERVED }

TEST(test_2mib)
{
    struct e820_entry out[E820_MAX_BUILT];
    int n = e820_build(out, E820_MAX_BUILT, 2 * MiB, 0);
    static const struct want w[] = { LOW_FIXED, { MiB, MiB, E820_RAM } };
    CHECK_EQ(compare(out, n, w, 4), 0);
    CHECK_EQ(sane(out, n), 0);
}

TEST(test_128mib)
{
    struct e820_entry out[E820_MAX_BUILT];
    int n = e820_build(out, E820_MAX_BUILT, 128 * MiB, 0);
    static const struct want w[] = { LOW_FIXED, { MiB, 127 * MiB, E820_RAM } };
    CHECK_EQ(compare(out, n, w, 4), 0);
    CHECK_EQ(sane(out, n), 0);
}

TEST(test_3gib)
{
    struct e820_entry out[E820_MAX_BUILT];
    int n = e820_build(out, E820_MAX_BUILT, 3 * GiB, 0);
    static const struct want w[] = { LOW_FIXED,
                                     { MiB, 3 * GiB - MiB, E820_RAM } };
    CHECK_EQ(compare(out, n, w, 4), 0);
    CHECK_EQ(sane(out, n), 0);
}

TEST(test_4gib_split)
{
    struct e820_entry out[E820_MAX_BUILT];
    int n = e820_build(out, E820_MAX_BUILT, 3 * GiB, 1 * GiB);
    static const struct want w[] = { LOW_FIXED,
                                     { MiB, 3 * GiB - MiB, E820_RAM },
                                     { 4 * GiB, 1 * GiB, E820_RAM } };
    CHECK_EQ(compare(out, n, w, 5), 0);
    CHECK_EQ(sane(out, n), 0);
    uint64_t ram = 0;
    for (int i = 0; i < n; i++)
        if (out[i].type == E820_RAM)
            ram += out[i].size;
    /* 4 GiB of RAM less the EBDA, VGA hole and BIOS area below 1 MiB */
    CHECK_EQ(ram, 4 * GiB - (MiB - LAYOUT_EBDA_START));
}

TEST(test_exactly_1mib)
{
    struct e820_entry out[E820_MAX_BUILT];
    int n = e820_build(out, E820_MAX_BUILT, MiB, 0);
    static const struct want w[] = { LOW_FIXED };
    CHECK_EQ(compare(out, n, w, 3), 0);
}

TEST(test_errors)
{
    struct e820_entry out[E820_MAX_BUILT];
    CHECK_EQ(e820_build(out, E820_MAX_BUILT, MiB - 1, 0), -EINVAL);
    CHECK_EQ(e820_build(out, E820_MAX_BUILT, 3 * GiB + 4096, 0), -EINVAL);
    CHECK_EQ(e820_build(out, E820_MAX_BUILT, 3 * GiB, UINT64_MAX), -EINVAL);
    CHECK_EQ(e820_build(out, 4, 3 * GiB, GiB), -ENOSPC);
    CHECK_EQ(e820_build(out, 3, 128 * MiB, 0), -ENOSPC);
    CHECK_EQ(e820_build(out, 4, 128 * MiB, 0), 4);
    CHECK_EQ(e820_build(NULL, 0, 128 * MiB, 0), -ENOSPC);
}

TEST(test_layout)
{
    /* The boot protocol's struct boot_e820_entry: 8 + 8 + 4, packed */
    CHECK_EQ(sizeof(struct e820_entry), 20);
    struct e820_entry e[2];
    CHECK_EQ((uint8_t *)&e[1] - (uint8_t *)&e[0], 20);
    CHECK_EQ((uint8_t *)&e[0].type - (uint8_t *)&e[0], 16);
}

int main(void)
{
    RUN(test_2mib);
    RUN(test_128mib);
    RUN(test_3gib);
    RUN(test_4gib_split);
    RUN(test_exactly_1mib);
    RUN(test_errors);
    RUN(test_layout);
    return test_summary();
}
