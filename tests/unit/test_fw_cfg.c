/* Unit tests for fw_cfg: the guest-side reads follow QEMU's
 * docs/specs/fw_cfg.rst, the way SeaBIOS and Linux's qemu_fw_cfg read. */
#include "hw/fw_cfg.h"

#include <errno.h>
#include <stdlib.h>

#include "test.h"

static void sel(struct fw_cfg *fw, uint16_t key)
{
    uint8_t le[2] = {(uint8_t)key, (uint8_t)(key >> 8)};
    fw_cfg_bus_ops.write(fw, 0, le, 2);
}

static void rd(struct fw_cfg *fw, void *buf, size_t n)
{
    uint8_t *p = buf;
    for (size_t i = 0; i < n; i++)
        fw_cfg_bus_ops.read(fw, 1, &p[i], 1);
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint16_t be16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

TEST(signature_and_id)
{
    struct fw_cfg *fw = fw_cfg_new();
    CHECK(fw);
    char sig[5] = {0};
    sel(fw, FW_CFG_SIGNATURE);
    rd(fw, sig, 4);
    CHECK_STR(sig, "QEMU");
    /* Reading past the end returns 0. */
    uint8_t z = 0xAA;
    rd(fw, &z, 1);
    CHECK_EQ(z, 0);
    /* Re-selecting rewinds. */
    sel(fw, FW_CFG_SIGNATURE);
    rd(fw, sig, 4);
    CHECK_STR(sig, "QEMU");

    uint8_t id[4];
    sel(fw, FW_CFG_ID);
    rd(fw, id, 4);
    CHECK_EQ(id[0] | id[1] << 8 | id[2] << 16 | (uint32_t)id[3] << 24, 1);
    fw_cfg_free(fw);
}

TEST(integers_are_little_endian)
{
    struct fw_cfg *fw = fw_cfg_new();
    CHECK(fw);
    CHECK_EQ(fw_cfg_add_u64(fw, FW_CFG_RAM_SIZE, 0x123456789ull), 0);
    CHECK_EQ(fw_cfg_add_u16(fw, FW_CFG_NB_CPUS, 4), 0);
    CHECK_EQ(fw_cfg_add_u16(fw, FW_CFG_MAX_CPUS, 0x0102), 0);
    CHECK_EQ(fw_cfg_add_u32(fw, FW_CFG_ARCH_LOCAL | 3, 0xA1B2C3D4u), 0);

    uint8_t b[8];
    sel(fw, FW_CFG_RAM_SIZE);
    rd(fw, b, 8);
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | b[i];
    CHECK_EQ(v, 0x123456789ull);
    sel(fw, FW_CFG_NB_CPUS);
    rd(fw, b, 2);
    CHECK_EQ(b[0], 4);
    CHECK_EQ(b[1], 0);
    sel(fw, FW_CFG_MAX_CPUS);
    rd(fw, b, 2);
    CHECK_EQ(b[0], 0x02);
    CHECK_EQ(b[1], 0x01);
    sel(fw, FW_CFG_ARCH_LOCAL | 3);
    rd(fw, b, 4);
    CHECK_EQ(b[0], 0xD4);
    CHECK_EQ(b[3], 0xA1);
    fw_cfg_free(fw);
}

TEST(file_directory_format)
{
    struct fw_cfg *fw = fw_cfg_new();
    CHECK(fw);
    uint8_t hdr[4];
    sel(fw, FW_CFG_FILE_DIR);
    rd(fw, hdr, 4);
    CHECK_EQ(be32(hdr), 0);              /* empty directory */

    static const char tables[] = "acpi tables blob";
    char longname[56];
    memset(longname, 'x', 55);
    longname[55] = '\0';
    CHECK_EQ(fw_cfg_add_file(fw, "etc/acpi/tables", tables, sizeof tables), 0x20);
    CHECK_EQ(fw_cfg_add_file(fw, longname, NULL, 0), 0x21);
    CHECK_EQ(fw_cfg_add_file(fw, "etc/e820", "\x01\x02\x03", 3), 0x22);

    uint8_t dir[4 + 3 * 64];
    sel(fw, FW_CFG_FILE_DIR);
    rd(fw, dir, sizeof dir);
    CHECK_EQ(be32(dir), 3);
    const uint8_t *e = dir + 4;
    CHECK_EQ(be32(e), sizeof tables);
    CHECK_EQ(be16(e + 4), 0x20);
    CHECK_EQ(be16(e + 6), 0);
    CHECK_STR((const char *)e + 8, "etc/acpi/tables");
    for (unsigned i = 8 + 15; i < 64; i++)
        CHECK_EQ(e[i], 0);               /* NUL-padded name */
    e += 64;
    CHECK_EQ(be32(e), 0);
    CHECK_EQ(be16(e + 4), 0x21);
    CHECK_EQ(memcmp(e + 8, longname, 56), 0);
    e += 64;
    CHECK_EQ(be32(e), 3);
    CHECK_EQ(be16(e + 4), 0x22);
    CHECK_STR((const char *)e + 8, "etc/e820");
    uint8_t z = 0xAA;
    rd(fw, &z, 1);                       /* directory is exactly that long */
    CHECK_EQ(z, 0);

    /* The file reads back through its selector. */
    char back[sizeof tables];
    sel(fw, 0x20);
    rd(fw, back, sizeof back);
    CHECK_STR(back, tables);
    fw_cfg_free(fw);
}

TEST(add_errors)
{
    struct fw_cfg *fw = fw_cfg_new();
    CHECK(fw);
    char toolong[57];
    memset(toolong, 'y', 56);
    toolong[56] = '\0';
    CHECK_EQ(fw_cfg_add_file(fw, toolong, "", 0), -ENAMETOOLONG);
    CHECK_EQ(fw_cfg_add_file(fw, "", "", 0), -EINVAL);
    CHECK_EQ(fw_cfg_add_file(fw, "etc/a", "1", 1), 0x20);
    CHECK_EQ(fw_cfg_add_file(fw, "etc/a", "2", 1), -EEXIST);
    CHECK_EQ(fw_cfg_add_u32(fw, FW_CFG_SIGNATURE, 0), -EEXIST);
    CHECK_EQ(fw_cfg_add_u32(fw, FW_CFG_FILE_DIR, 0), -EINVAL);
    CHECK_EQ(fw_cfg_add_u32(fw, 0x0020, 0), -EINVAL);
    CHECK_EQ(fw_cfg_add_u32(fw, FW_CFG_WRITE_CHANNEL | 5, 0), -EINVAL);
    CHECK_EQ(fw_cfg_add_u16(fw, FW_CFG_NB_CPUS, 1), 0);
    CHECK_EQ(fw_cfg_add_u16(fw, FW_CFG_NB_CPUS, 2), -EEXIST);
    fw_cfg_free(fw);
}

TEST(guest_writes_and_unknown_keys)
{
    struct fw_cfg *fw = fw_cfg_new();
    CHECK(fw);
    uint8_t b[4];
    /* An unknown key reads as zeros. */
    sel(fw, 0x1234);
    rd(fw, b, 4);
    CHECK_EQ(b[0] | b[1] | b[2] | b[3], 0);
    /* The write channel still reads the item; data writes are dropped. */
    sel(fw, FW_CFG_WRITE_CHANNEL | FW_CFG_SIGNATURE);
    uint8_t w = 'X';
    fw_cfg_bus_ops.write(fw, 1, &w, 1);
    rd(fw, b, 4);
    CHECK_EQ(memcmp(b, "QEMU", 4), 0);
    /* A wide read returns consecutive bytes in order. */
    sel(fw, FW_CFG_SIGNATURE);
    uint32_t wide = 0;
    fw_cfg_bus_ops.read(fw, 1, &wide, 4);
    CHECK_EQ(memcmp(&wide, "QEMU", 4), 0);
    /* Reset selects the signature again. */
    sel(fw, FW_CFG_ID);
    fw_cfg_reset(fw);
    rd(fw, b, 4);
    CHECK_EQ(memcmp(b, "QEMU", 4), 0);
    fw_cfg_free(fw);
}

TEST(many_files)
{
    struct fw_cfg *fw = fw_cfg_new();
    CHECK(fw);
    char name[32];
    for (unsigned i = 0; i < FW_CFG_MAX_FILES; i++) {
        snprintf(name, sizeof name, "opt/f%u", i);
        CHECK_EQ(fw_cfg_add_file(fw, name, &i, sizeof i), 0x20 + (int)i);
    }
    CHECK_EQ(fw_cfg_add_file(fw, "opt/one-more", "", 0), -ENOSPC);
    uint8_t hdr[4];
    sel(fw, FW_CFG_FILE_DIR);
    rd(fw, hdr, 4);
    CHECK_EQ(be32(hdr), FW_CFG_MAX_FILES);
    fw_cfg_free(fw);
}

int main(void)
{
    RUN(signature_and_id);
    RUN(integers_are_little_endian);
    RUN(file_directory_format);
    RUN(add_errors);
    RUN(guest_writes_and_unknown_keys);
    RUN(many_files);
    return test_summary();
}
