/* Unit tests for the AML encoder: exact bytes for known encodings (ACPI 6.5
 * §20 and §6.4). */
#include "arch/x86/aml.h"
#include "test.h"

#include <errno.h>
#include <stdlib.h>

#define CHECK_BYTES(buf, len, ...)                                          \
    do {                                                                    \
        static const uint8_t _exp[] = { __VA_ARGS__ };                      \
        CHECK_EQ((len), sizeof _exp);                                       \
        for (size_t _i = 0; _i < sizeof _exp; _i++) {                       \
            if ((buf)[_i] != _exp[_i])                                      \
                printf("    byte %zu: got 0x%02x want 0x%02x\n", _i,        \
                       (buf)[_i], _exp[_i]);                                \
            CHECK_EQ((buf)[_i], _exp[_i]);                                  \
        }                                                                   \
    } while (0)

TEST(test_pkglen_one_byte)
{
    uint8_t o[4];
    CHECK_EQ(aml_pkglen_encode(o, 0), 1);
    CHECK_EQ(o[0], 0x01);
    CHECK_EQ(aml_pkglen_encode(o, 7), 1);
    CHECK_EQ(o[0], 0x08);
    CHECK_EQ(aml_pkglen_encode(o, 62), 1);     /* 63 = 0x3F: the largest */
    CHECK_EQ(o[0], 0x3F);
}

TEST(test_pkglen_multi_byte)
{
    uint8_t o[4];
    /* body 63 -> total 65 = 0x41: lead 0x40 | 1, next byte 0x04 */
    CHECK_EQ(aml_pkglen_encode(o, 63), 2);
    CHECK_EQ(o[0], 0x41);
    CHECK_EQ(o[1], 0x04);
    /* total 0xFFF is the largest 2-byte value */
    CHECK_EQ(aml_pkglen_encode(o, 0xFFD), 2);
    CHECK_EQ(o[0], 0x4F);
    CHECK_EQ(o[1], 0xFF);
    /* body 0xFFE -> 3 bytes, total 0x1001 */
    CHECK_EQ(aml_pkglen_encode(o, 0xFFE), 3);
    CHECK_EQ(o[0], 0x81);
    CHECK_EQ(o[1], 0x00);
    CHECK_EQ(o[2], 0x01);
    /* body 0x100000 -> 4 bytes, total 0x100004 */
    CHECK_EQ(aml_pkglen_encode(o, 0x100000), 4);
    CHECK_EQ(o[0], 0xC4);
    CHECK_EQ(o[1], 0x00);
    CHECK_EQ(o[2], 0x00);
    CHECK_EQ(o[3], 0x01);
    /* the 28-bit limit */
    CHECK_EQ(aml_pkglen_encode(o, AML_PKGLEN_MAX - 4), 4);
    CHECK_EQ(o[0], 0xCF);
    CHECK_EQ(o[3], 0xFF);
    CHECK_EQ(aml_pkglen_encode(o, AML_PKGLEN_MAX - 3), -E2BIG);
}

TEST(test_integers)
{
    uint8_t d[64];
    struct aml_buf b;
    aml_buf_init(&b, d, sizeof d);
    aml_emit_integer(&b, 0);
    aml_emit_integer(&b, 1);
    aml_emit_integer(&b, 5);
    aml_emit_integer(&b, 0x3F8);
    aml_emit_integer(&b, 0x12345678);
    aml_emit_integer(&b, 0x100000000ULL);
    aml_emit_integer(&b, UINT64_MAX);
    CHECK_EQ(aml_buf_error(&b), 0);
    CHECK_BYTES(d, b.len,
                0x00, 0x01, 0x0A, 0x05, 0x0B, 0xF8, 0x03,
                0x0C, 0x78, 0x56, 0x34, 0x12,
                0x0E, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
                0xFF);
}

TEST(test_explicit_consts_and_string)
{
    uint8_t d[32];
    struct aml_buf b;
    aml_buf_init(&b, d, sizeof d);
    aml_emit_byte_const(&b, 0);
    aml_emit_word_const(&b, 1);
    aml_emit_dword_const(&b, 2);
    aml_emit_string(&b, "AB");
    CHECK_EQ(aml_buf_error(&b), 0);
    CHECK_BYTES(d, b.len,
                0x0A, 0x00, 0x0B, 0x01, 0x00, 0x0C, 0x02, 0x00, 0x00, 0x00,
                0x0D, 'A', 'B', 0x00);
}

TEST(test_namestrings)
{
    uint8_t d[64];
    struct aml_buf b;
    aml_buf_init(&b, d, sizeof d);
    aml_emit_namestring(&b, "\\_S5");
    CHECK_BYTES(d, b.len, 0x5C, '_', 'S', '5', '_');

    aml_buf_init(&b, d, sizeof d);
    aml_emit_namestring(&b, "\\_SB.PCI0");
    CHECK_BYTES(d, b.len, 0x5C, 0x2E, '_', 'S', 'B', '_', 'P', 'C', 'I', '0');

    aml_buf_init(&b, d, sizeof d);
    aml_emit_namestring(&b, "A.B.C");
    CHECK_BYTES(d, b.len, 0x2F, 0x03, 'A', '_', '_', '_', 'B', '_', '_', '_',
                'C', '_', '_', '_');

    aml_buf_init(&b, d, sizeof d);
    aml_emit_namestring(&b, "^^COM1");
    CHECK_BYTES(d, b.len, 0x5E, 0x5E, 'C', 'O', 'M', '1');

    aml_buf_init(&b, d, sizeof d);
    aml_emit_namestring(&b, "\\");
    CHECK_BYTES(d, b.len, 0x5C, 0x00);
}

TEST(test_bad_namestrings)
{
    static const char *const bad[] = {
        "abcd", "TOOLONG", "1ABC", "A..B", "A.", ".A", "\\^A", "A-B",
    };
    uint8_t d[64];
    struct aml_buf b;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        aml_buf_init(&b, d, sizeof d);
        aml_emit_namestring(&b, bad[i]);
        if (aml_buf_error(&b) != -EINVAL)
            printf("    accepted \"%s\"\n", bad[i]);
        CHECK_EQ(aml_buf_error(&b), -EINVAL);
    }
    aml_buf_init(&b, d, sizeof d);
    aml_emit_namestring(&b, NULL);
    CHECK_EQ(aml_buf_error(&b), -EINVAL);
}

TEST(test_s5_package)
{
    /* Name(\_S5, Package(4){5, 5, 0, 0}) */
    uint8_t d[64];
    struct aml_buf b;
    aml_buf_init(&b, d, sizeof d);
    aml_emit_name(&b, "\\_S5");
    size_t m = aml_package_begin(&b, 4);
    aml_emit_integer(&b, 5);
    aml_emit_integer(&b, 5);
    aml_emit_integer(&b, 0);
    aml_emit_integer(&b, 0);
    aml_end(&b, m);
    CHECK_EQ(aml_buf_error(&b), 0);
    CHECK_BYTES(d, b.len,
                0x08, 0x5C, '_', 'S', '5', '_',
                0x12, 0x08, 0x04, 0x0A, 0x05, 0x0A, 0x05, 0x00, 0x00);
}

TEST(test_eisaid)
{
    uint32_t v;
    CHECK_EQ(aml_eisaid("PNP0501", &v), 0);
    CHECK_EQ(v, 0x0105D041);
    CHECK_EQ(aml_eisaid("PNP0A03", &v), 0);
    CHECK_EQ(v, 0x030AD041);
    CHECK_EQ(aml_eisaid("PNP0303", &v), 0);
    CHECK_EQ(v, 0x0303D041);
    CHECK_EQ(aml_eisaid("PNP050", &v), -EINVAL);
    CHECK_EQ(aml_eisaid("pnp0501", &v), -EINVAL);
    CHECK_EQ(aml_eisaid("PNP05G1", &v), -EINVAL);
    CHECK_EQ(aml_eisaid(NULL, &v), -EINVAL);

    uint8_t d[16];
    struct aml_buf b;
    aml_buf_init(&b, d, sizeof d);
    aml_emit_eisaid(&b, "PNP0501");
    CHECK_BYTES(d, b.len, 0x0C, 0x41, 0xD0, 0x05, 0x01);
}

TEST(test_scope_device)
{
    /* Scope(\_SB){ Device(COM1){ Name(_HID, EisaId("PNP0501")) } } */
    uint8_t d[64];
    struct aml_buf b;
    aml_buf_init(&b, d, sizeof d);
    size_t sb = aml_scope_begin(&b, "\\_SB");
    size_t dev = aml_device_begin(&b, "COM1");
    aml_emit_name(&b, "_HID");
    aml_emit_eisaid(&b, "PNP0501");
    aml_end(&b, dev);
    aml_end(&b, sb);
    CHECK_EQ(aml_buf_error(&b), 0);
    CHECK_BYTES(d, b.len,
                0x10, 0x17, 0x5C, '_', 'S', 'B', '_',
                0x5B, 0x82, 0x0F, 'C', 'O', 'M', '1',
                0x08, '_', 'H', 'I', 'D', 0x0C, 0x41, 0xD0, 0x05, 0x01);
}

TEST(test_method)
{
    /* Method(_STA, 0, NotSerialized){ Return(0x0F) } */
    uint8_t d[32];
    struct aml_buf b;
    aml_buf_init(&b, d, sizeof d);
    size_t m = aml_method_begin(&b, "_STA", 0, 0);
    aml_emit_byte(&b, AML_RETURN_OP);
    aml_emit_integer(&b, 0x0F);
    aml_end(&b, m);
    CHECK_EQ(aml_buf_error(&b), 0);
    CHECK_BYTES(d, b.len, 0x14, 0x09, '_', 'S', 'T', 'A', 0x00, 0xA4, 0x0A, 0x0F);

    aml_buf_init(&b, d, sizeof d);
    m = aml_method_begin(&b, "_PS0", 2, 1);
    aml_end(&b, m);
    CHECK_BYTES(d, b.len, 0x14, 0x06, '_', 'P', 'S', '0', 0x0A);
}

TEST(test_resource_template_com1)
{
    /* ResourceTemplate(){ IO(Decode16, 0x3F8, 0x3F8, 0, 8) IRQNoFlags(){4} } */
    uint8_t rd[32], d[64];
    struct aml_buf r, b;
    aml_buf_init(&r, rd, sizeof rd);
    aml_res_io(&r, 0x3F8, 0x3F8, 0x00, 0x08);
    aml_res_irq(&r, 4);
    aml_res_end_tag(&r);
    CHECK_EQ(aml_buf_error(&r), 0);
    CHECK_BYTES(rd, r.len,
                0x47, 0x01, 0xF8, 0x03, 0xF8, 0x03, 0x00, 0x08,
                0x22, 0x10, 0x00,
                0x79, 0x0F);
    uint8_t sum = 0;
    for (size_t i = 0; i < r.len; i++)
        sum = (uint8_t)(sum + rd[i]);
    CHECK_EQ(sum, 0);

    aml_buf_init(&b, d, sizeof d);
    aml_emit_buffer(&b, rd, r.len);
    CHECK_EQ(aml_buf_error(&b), 0);
    CHECK_BYTES(d, b.len,
                0x11, 0x10, 0x0A, 0x0D,
                0x47, 0x01, 0xF8, 0x03, 0xF8, 0x03, 0x00, 0x08,
                0x22, 0x10, 0x00, 0x79, 0x0F);

    aml_buf_init(&r, rd, sizeof rd);
    aml_res_irq(&r, 16);
    CHECK_EQ(aml_buf_error(&r), -EINVAL);
}

TEST(test_two_byte_pkglen_moves_body)
{
    /* A package whose body needs a 2-byte PkgLength: Package(1){Buffer(100)} */
    uint8_t payload[100], d[160];
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (uint8_t)i;
    struct aml_buf b;
    aml_buf_init(&b, d, sizeof d);
    size_t m = aml_package_begin(&b, 1);
    aml_emit_buffer(&b, payload, sizeof payload);
    aml_end(&b, m);
    CHECK_EQ(aml_buf_error(&b), 0);
    /* Buffer: 11, PkgLength(2+100 body -> 2 bytes, total 104 = 0x68:
     * 0x48 0x06), 0A 64, payload = 105 bytes. Package: 12, PkgLength(1 +
     * 105 body -> total 108 = 0x6C: 0x4C 0x06), 01. */
    CHECK_EQ(b.len, 1 + 2 + 1 + 105);
    CHECK_EQ(d[0], 0x12);
    CHECK_EQ(d[1], 0x4C);
    CHECK_EQ(d[2], 0x06);
    CHECK_EQ(d[3], 0x01);
    CHECK_EQ(d[4], 0x11);
    CHECK_EQ(d[5], 0x48);
    CHECK_EQ(d[6], 0x06);
    CHECK_EQ(d[7], 0x0A);
    CHECK_EQ(d[8], 100);
    CHECK(memcmp(&d[9], payload, sizeof payload) == 0);
}

TEST(test_exact_size_buffer)
{
    /* The encoder never needs more room than its output: the same nested
     * objects fit a buffer of exactly the final length, and not one less. */
    uint8_t payload[100] = {0};
    size_t final_len = 0;
    for (size_t cap = 120; cap > 0; cap--) {
        uint8_t *d = malloc(cap);
        CHECK(d);
        struct aml_buf b;
        aml_buf_init(&b, d, cap);
        size_t sb = aml_scope_begin(&b, "\\_SB");
        size_t m = aml_package_begin(&b, 1);
        aml_emit_buffer(&b, payload, sizeof payload);
        aml_end(&b, m);
        aml_end(&b, sb);
        int err = aml_buf_error(&b);
        size_t len = b.len;
        free(d);
        if (cap == 120) {
            CHECK_EQ(err, 0);
            final_len = len;
            cap = final_len + 1;               /* next: exactly final_len */
        } else if (cap == final_len) {
            CHECK_EQ(err, 0);
            CHECK_EQ(len, final_len);
        } else {
            CHECK_EQ(err, -ENOSPC);
            CHECK(len <= cap);
        }
    }
}

TEST(test_enospc_sticks)
{
    uint8_t d[8];
    struct aml_buf b;
    aml_buf_init(&b, d, sizeof d);
    aml_emit_name(&b, "\\_S5");
    size_t m = aml_package_begin(&b, 4);   /* no room for NumElements */
    CHECK_EQ(aml_buf_error(&b), -ENOSPC);
    aml_emit_integer(&b, 5);
    aml_end(&b, m);
    CHECK_EQ(aml_buf_error(&b), -ENOSPC);
    CHECK(b.len <= sizeof d);

    aml_buf_init(&b, NULL, 100);
    aml_emit_byte(&b, 1);
    CHECK_EQ(aml_buf_error(&b), -ENOSPC);
}

int main(void)
{
    RUN(test_pkglen_one_byte);
    RUN(test_pkglen_multi_byte);
    RUN(test_integers);
    RUN(test_explicit_consts_and_string);
    RUN(test_namestrings);
    RUN(test_bad_namestrings);
    RUN(test_s5_package);
    RUN(test_eisaid);
    RUN(test_scope_device);
    RUN(test_method);
    RUN(test_resource_template_com1);
    RUN(test_two_byte_pkglen_moves_body);
    RUN(test_exact_size_buffer);
    RUN(test_enospc_sticks);
    return test_summary();
}
