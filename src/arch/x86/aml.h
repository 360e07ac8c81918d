/* A tiny ACPI Machine Language (AML) encoder: just the opcodes kvmbox's DSDT
 * needs (ACPI 6.5 §20, "ACPI Machine Language Specification"), written into a
 * caller-provided byte buffer. Pure functions, no allocation, no globals.
 *
 * Error model: every emitter appends to a struct aml_buf; the first failure
 * (buffer full, value out of range, bad name) sticks in b->err and later calls
 * do nothing, so a caller emits a whole block and checks aml_buf_error() once.
 *
 * Nesting: objects with a PkgLength (Scope, Device, Package, Method) are
 * opened with aml_*_begin(), which returns a mark, and closed with
 * aml_end(b, mark). The PkgLength is written at close time with the smallest
 * encoding (1-4 bytes, §20.2.4): one byte is reserved at open and the body
 * is moved up at close when it needs more, so the buffer never holds more
 * than the finished output. Close in reverse order of opening.
 *
 * Threads: none of its own; a buffer belongs to one caller. */
#ifndef KVMBOX_X86_AML_H
#define KVMBOX_X86_AML_H

#include <stddef.h>
#include <stdint.h>

/* §20.2 opcodes and prefixes used here. */
#define AML_ZERO_OP          0x00
#define AML_ONE_OP           0x01
#define AML_NAME_OP          0x08
#define AML_BYTE_PREFIX      0x0A
#define AML_WORD_PREFIX      0x0B
#define AML_DWORD_PREFIX     0x0C
#define AML_STRING_PREFIX    0x0D
#define AML_QWORD_PREFIX     0x0E
#define AML_SCOPE_OP         0x10
#define AML_BUFFER_OP        0x11
#define AML_PACKAGE_OP       0x12
#define AML_METHOD_OP        0x14
#define AML_DUAL_NAME_PREFIX 0x2E
#define AML_MULTI_NAME_PREFIX 0x2F
#define AML_EXT_OP_PREFIX    0x5B
#define AML_DEVICE_OP        0x82  /* after AML_EXT_OP_PREFIX */
#define AML_ROOT_CHAR        0x5C  /* '\' */
#define AML_PARENT_PREFIX    0x5E  /* '^' */
#define AML_RETURN_OP        0xA4
#define AML_ONES_OP          0xFF

/* Largest value a PkgLength can hold (28 bits, §20.2.4). */
#define AML_PKGLEN_MAX       0x0FFFFFFFu

struct aml_buf {
    uint8_t *data;
    size_t cap;
    size_t len;
    int err;        /* 0, or the first -errno an emitter hit */
};

void aml_buf_init(struct aml_buf *b, uint8_t *data, size_t cap);
/* 0, or the first error: -ENOSPC (buffer full), -EINVAL (bad argument),
 * -E2BIG (a PkgLength over 28 bits). */
int aml_buf_error(const struct aml_buf *b);

/* Encode the PkgLength for an object whose body (everything after the
 * PkgLength itself) is body_len bytes; the encoded value counts the
 * PkgLength's own bytes too (§20.2.4). Writes 1-4 bytes to out and returns
 * their count, or -E2BIG when it cannot be encoded. */
int aml_pkglen_encode(uint8_t out[4], size_t body_len);

/* Raw bytes. */
void aml_emit_byte(struct aml_buf *b, uint8_t v);
void aml_emit_bytes(struct aml_buf *b, const void *p, size_t n);

/* NameString (§20.2.2): an optional leading '\' or '^'s, then segments
 * separated by '.', each 1-4 characters of [A-Z0-9_] (first not a digit),
 * padded with '_' to 4. "\\_S5" -> 5C 5F 53 35 5F. */
void aml_emit_namestring(struct aml_buf *b, const char *path);

/* Data objects (§20.2.3). */
void aml_emit_byte_const(struct aml_buf *b, uint8_t v);    /* 0A xx */
void aml_emit_word_const(struct aml_buf *b, uint16_t v);   /* 0B xx xx */
void aml_emit_dword_const(struct aml_buf *b, uint32_t v);  /* 0C x4 */
void aml_emit_qword_const(struct aml_buf *b, uint64_t v);  /* 0E x8 */
/* The shortest encoding: ZeroOp, OneOp, OnesOp (only for ~0), then the
 * smallest of Byte/Word/DWord/QWordConst, like iasl. */
void aml_emit_integer(struct aml_buf *b, uint64_t v);
/* A NUL-terminated ASCII String (0D ... 00). */
void aml_emit_string(struct aml_buf *b, const char *s);

/* EISAID("PNP0501"): three upper-case letters (5 bits each, 'A' = 1) and
 * four hex digits packed into 32 bits, stored byte-swapped so the bytes in
 * memory read 41 D0 05 01 (ACPI 6.5 §19.6.35 EISAID macro). Returns 0 and
 * sets *out, or -EINVAL for a malformed id. */
int aml_eisaid(const char *id, uint32_t *out);
/* DWordConst of aml_eisaid(id). */
void aml_emit_eisaid(struct aml_buf *b, const char *id);

/* Name(path, ...): NameOp and the NameString; the caller emits the object. */
void aml_emit_name(struct aml_buf *b, const char *path);

/* Buffer(n){bytes}: BufferOp PkgLength BufferSize(integer) ByteList. */
void aml_emit_buffer(struct aml_buf *b, const void *bytes, size_t n);

/* Opening an object with a PkgLength returns a mark for aml_end(). */
size_t aml_scope_begin(struct aml_buf *b, const char *path);    /* 10 ...  */
size_t aml_device_begin(struct aml_buf *b, const char *path);   /* 5B 82 ... */
/* Package(num_elements){...}: the caller emits exactly num_elements data
 * objects before aml_end(). */
size_t aml_package_begin(struct aml_buf *b, uint8_t num_elements);
/* Method(path, nargs, Serialized?){...}: flags = nargs | serialized << 3. */
size_t aml_method_begin(struct aml_buf *b, const char *path, unsigned nargs,
                        int serialized);
void aml_end(struct aml_buf *b, size_t mark);

/* Resource descriptors for a ResourceTemplate (ACPI 6.5 §6.4). Build the
 * descriptors in their own aml_buf, finish with aml_res_end_tag(), then pass
 * the bytes to aml_emit_buffer(). */
/* I/O port descriptor, 16-bit decode (§6.4.2.5): 47 01 min max align len. */
void aml_res_io(struct aml_buf *r, uint16_t min, uint16_t max, uint8_t align,
                uint8_t len);
/* IRQNoFlags(){irq} (§6.4.2.1): 22 mask16 (edge, active high, exclusive). */
void aml_res_irq(struct aml_buf *r, unsigned irq);
/* End tag (§6.4.2.9): 79 and a checksum byte that makes the sum of every
 * byte of the template, the checksum included, zero. */
void aml_res_end_tag(struct aml_buf *r);

#endif
