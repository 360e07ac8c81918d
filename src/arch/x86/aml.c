/* AML encoder, see aml.h. Section numbers are ACPI 6.5. */
#include "arch/x86/aml.h"

#include <errno.h>
#include <string.h>

/* Bytes reserved for a PkgLength while its object is open: one, grown at
 * close. Growing (not shrinking from 4) means the buffer never holds more
 * than the finished output, so a buffer of exactly the final size works. */
#define PKGLEN_RESERVE 1

static void aml_fail(struct aml_buf *b, int err)
{
    if (!b->err)
        b->err = err;
}

void aml_buf_init(struct aml_buf *b, uint8_t *data, size_t cap)
{
    b->data = data;
    b->cap = data ? cap : 0;
    b->len = 0;
    b->err = 0;
}

int aml_buf_error(const struct aml_buf *b)
{
    return b->err;
}

int aml_pkglen_encode(uint8_t out[4], size_t body_len)
{
    /* §20.2.4: one byte holds 0-63 in bits 0-5. Otherwise bits 6-7 of the
     * lead byte count the following bytes (1-3), bits 0-3 of the lead byte
     * are the least significant nibble and the following bytes carry the
     * rest, 8 bits each. The value includes the PkgLength bytes. */
    for (unsigned n = 1; n <= 4; n++) {
        size_t total = body_len + n;
        size_t limit = n == 1 ? 0x3F : ((size_t)1 << (4 + 8 * (n - 1))) - 1;
        if (total < body_len || total > limit)
            continue;
        if (n == 1) {
            out[0] = (uint8_t)total;
            return 1;
        }
        out[0] = (uint8_t)(((n - 1) << 6) | (total & 0x0F));
        for (unsigned i = 1; i < n; i++)
            out[i] = (uint8_t)(total >> (4 + 8 * (i - 1)));
        return (int)n;
    }
    return -E2BIG;
}

static uint8_t *aml_reserve(struct aml_buf *b, size_t n)
{
    if (b->err)
        return NULL;
    if (n > b->cap - b->len) {
        aml_fail(b, -ENOSPC);
        return NULL;
    }
    uint8_t *p = b->data + b->len;
    b->len += n;
    return p;
}

void aml_emit_byte(struct aml_buf *b, uint8_t v)
{
    uint8_t *p = aml_reserve(b, 1);
    if (p)
        *p = v;
}

void aml_emit_bytes(struct aml_buf *b, const void *src, size_t n)
{
    uint8_t *p = aml_reserve(b, n);
    if (p && n)
        memcpy(p, src, n);
}

static void aml_emit_le(struct aml_buf *b, uint64_t v, unsigned n)
{
    uint8_t *p = aml_reserve(b, n);
    if (!p)
        return;
    for (unsigned i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* §20.2.2 LeadNameChar := 'A'-'Z' | '_'; NameChar adds '0'-'9'. */
static int aml_name_char_ok(char c, int lead)
{
    if ((c >= 'A' && c <= 'Z') || c == '_')
        return 1;
    return !lead && c >= '0' && c <= '9';
}

void aml_emit_namestring(struct aml_buf *b, const char *path)
{
    if (b->err)
        return;
    if (!path) {
        aml_fail(b, -EINVAL);
        return;
    }
    const char *s = path;
    uint8_t prefix[256];
    size_t nprefix = 0;
    if (*s == '\\') {
        prefix[nprefix++] = AML_ROOT_CHAR;
        s++;
    } else {
        while (*s == '^' && nprefix < sizeof prefix) {
            prefix[nprefix++] = AML_PARENT_PREFIX;
            s++;
        }
    }

    /* Split into NameSegs, each padded with '_' (§20.2.2 NameSeg). */
    uint8_t segs[255][4];
    unsigned nsegs = 0;
    while (*s) {
        if (nsegs == 255) {
            aml_fail(b, -EINVAL);
            return;
        }
        unsigned n = 0;
        while (*s && *s != '.') {
            if (n == 4 || !aml_name_char_ok(*s, n == 0)) {
                aml_fail(b, -EINVAL);
                return;
            }
            segs[nsegs][n++] = (uint8_t)*s++;
        }
        if (n == 0) {
            aml_fail(b, -EINVAL);
            return;
        }
        for (; n < 4; n++)
            segs[nsegs][n] = '_';
        nsegs++;
        if (*s == '.') {
            s++;
            if (!*s) {
                aml_fail(b, -EINVAL);
                return;
            }
        }
    }

    aml_emit_bytes(b, prefix, nprefix);
    if (nsegs == 0) {
        aml_emit_byte(b, AML_ZERO_OP);              /* NullName */
    } else if (nsegs == 2) {
        aml_emit_byte(b, AML_DUAL_NAME_PREFIX);
    } else if (nsegs > 2) {
        aml_emit_byte(b, AML_MULTI_NAME_PREFIX);
        aml_emit_byte(b, (uint8_t)nsegs);
    }
    for (unsigned i = 0; i < nsegs; i++)
        aml_emit_bytes(b, segs[i], 4);
}

void aml_emit_byte_const(struct aml_buf *b, uint8_t v)
{
    aml_emit_byte(b, AML_BYTE_PREFIX);
    aml_emit_le(b, v, 1);
}

void aml_emit_word_const(struct aml_buf *b, uint16_t v)
{
    aml_emit_byte(b, AML_WORD_PREFIX);
    aml_emit_le(b, v, 2);
}

void aml_emit_dword_const(struct aml_buf *b, uint32_t v)
{
    aml_emit_byte(b, AML_DWORD_PREFIX);
    aml_emit_le(b, v, 4);
}

void aml_emit_qword_const(struct aml_buf *b, uint64_t v)
{
    aml_emit_byte(b, AML_QWORD_PREFIX);
    aml_emit_le(b, v, 8);
}

void aml_emit_integer(struct aml_buf *b, uint64_t v)
{
    if (v == 0)
        aml_emit_byte(b, AML_ZERO_OP);
    else if (v == 1)
        aml_emit_byte(b, AML_ONE_OP);
    else if (v == UINT64_MAX)
        aml_emit_byte(b, AML_ONES_OP);
    else if (v <= UINT8_MAX)
        aml_emit_byte_const(b, (uint8_t)v);
    else if (v <= UINT16_MAX)
        aml_emit_word_const(b, (uint16_t)v);
    else if (v <= UINT32_MAX)
        aml_emit_dword_const(b, (uint32_t)v);
    else
        aml_emit_qword_const(b, v);
}

void aml_emit_string(struct aml_buf *b, const char *s)
{
    if (!s) {
        aml_fail(b, -EINVAL);
        return;
    }
    for (const char *c = s; *c; c++) {
        if ((unsigned char)*c > 0x7F) {     /* AsciiCharList: 0x01-0x7F */
            aml_fail(b, -EINVAL);
            return;
        }
    }
    aml_emit_byte(b, AML_STRING_PREFIX);
    aml_emit_bytes(b, s, strlen(s) + 1);
}

static int aml_hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int aml_eisaid(const char *id, uint32_t *out)
{
    if (!id || strlen(id) != 7)
        return -EINVAL;
    uint32_t v = 0;
    for (int i = 0; i < 3; i++) {
        if (id[i] < 'A' || id[i] > 'Z')
            return -EINVAL;
        v = (v << 5) | (uint32_t)(id[i] - 0x40);
    }
    for (int i = 3; i < 7; i++) {
        int d = aml_hex_digit(id[i]);
        if (d < 0)
            return -EINVAL;
        v = (v << 4) | (uint32_t)d;
    }
    /* The 32-bit value is kept most significant byte first in memory
     * (the compressed vendor id leads), hence the swap for a DWordConst. */
    *out = __builtin_bswap32(v);
    return 0;
}

void aml_emit_eisaid(struct aml_buf *b, const char *id)
{
    uint32_t v;
    if (aml_eisaid(id, &v) < 0) {
        aml_fail(b, -EINVAL);
        return;
    }
    aml_emit_dword_const(b, v);
}

void aml_emit_name(struct aml_buf *b, const char *path)
{
    aml_emit_byte(b, AML_NAME_OP);
    aml_emit_namestring(b, path);
}

/* Reserve room for a PkgLength; the mark is where the body starts. */
static size_t aml_pkg_open(struct aml_buf *b)
{
    aml_reserve(b, PKGLEN_RESERVE);
    return b->len;
}

void aml_end(struct aml_buf *b, size_t mark)
{
    if (b->err)
        return;
    if (mark < PKGLEN_RESERVE || mark > b->len) {
        aml_fail(b, -EINVAL);
        return;
    }
    size_t body = b->len - mark;
    uint8_t enc[4];
    int n = aml_pkglen_encode(enc, body);
    if (n < 0) {
        aml_fail(b, n);
        return;
    }
    size_t grow = (size_t)n - PKGLEN_RESERVE;
    if (grow > b->cap - b->len) {
        aml_fail(b, -ENOSPC);
        return;
    }
    uint8_t *pkg = b->data + mark - PKGLEN_RESERVE;
    memmove(pkg + n, b->data + mark, body);
    memcpy(pkg, enc, (size_t)n);
    b->len += grow;
}

void aml_emit_buffer(struct aml_buf *b, const void *bytes, size_t n)
{
    aml_emit_byte(b, AML_BUFFER_OP);
    size_t mark = aml_pkg_open(b);
    aml_emit_integer(b, n);                       /* BufferSize */
    aml_emit_bytes(b, bytes, n);
    aml_end(b, mark);
}

size_t aml_scope_begin(struct aml_buf *b, const char *path)
{
    aml_emit_byte(b, AML_SCOPE_OP);
    size_t mark = aml_pkg_open(b);
    aml_emit_namestring(b, path);
    return mark;
}

size_t aml_device_begin(struct aml_buf *b, const char *path)
{
    aml_emit_byte(b, AML_EXT_OP_PREFIX);
    aml_emit_byte(b, AML_DEVICE_OP);
    size_t mark = aml_pkg_open(b);
    aml_emit_namestring(b, path);
    return mark;
}

size_t aml_package_begin(struct aml_buf *b, uint8_t num_elements)
{
    aml_emit_byte(b, AML_PACKAGE_OP);
    size_t mark = aml_pkg_open(b);
    aml_emit_byte(b, num_elements);
    return mark;
}

size_t aml_method_begin(struct aml_buf *b, const char *path, unsigned nargs,
                        int serialized)
{
    if (nargs > 7)
        aml_fail(b, -EINVAL);
    aml_emit_byte(b, AML_METHOD_OP);
    size_t mark = aml_pkg_open(b);
    aml_emit_namestring(b, path);
    /* §20.2.5.2 MethodFlags: bits 0-2 ArgCount, bit 3 SerializeFlag,
     * bits 4-7 SyncLevel (0). */
    aml_emit_byte(b, (uint8_t)((nargs & 7) | (serialized ? 0x08 : 0)));
    return mark;
}

void aml_res_io(struct aml_buf *r, uint16_t min, uint16_t max, uint8_t align,
                uint8_t len)
{
    /* §6.4.2.5 I/O Port Descriptor: small item name 0x08, length 7. */
    uint8_t d[8] = {
        0x47, 0x01,                       /* bit 0: 16-bit address decode */
        (uint8_t)min, (uint8_t)(min >> 8),
        (uint8_t)max, (uint8_t)(max >> 8),
        align, len,
    };
    aml_emit_bytes(r, d, sizeof d);
}

void aml_res_irq(struct aml_buf *r, unsigned irq)
{
    /* §6.4.2.1 IRQ Descriptor, the 2-byte form (small item name 0x04,
     * length 2): edge-triggered, active-high, exclusive. */
    if (irq > 15) {
        aml_fail(r, -EINVAL);
        return;
    }
    uint16_t mask = (uint16_t)(1u << irq);
    uint8_t d[3] = { 0x22, (uint8_t)mask, (uint8_t)(mask >> 8) };
    aml_emit_bytes(r, d, sizeof d);
}

void aml_res_end_tag(struct aml_buf *r)
{
    /* §6.4.2.9 End Tag: small item name 0x0F, length 1; the checksum byte
     * makes the sum of all bytes in the resource data zero. */
    aml_emit_byte(r, 0x79);
    if (r->err)
        return;
    uint8_t sum = 0;
    for (size_t i = 0; i < r->len; i++)
        sum = (uint8_t)(sum + r->data[i]);
    aml_emit_byte(r, (uint8_t)(0x100 - sum));
}
