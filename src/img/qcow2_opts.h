/* qcow2 creation options that several verbs parse the way qemu-img does
 * (create and convert -o, measure -o, amend -o): refcount_bits (a QemuOpts
 * number) and compression_type. qcow2_opts.c. */
#ifndef KVMBOX_IMG_QCOW2_OPTS_H
#define KVMBOX_IMG_QCOW2_OPTS_H

#include <stdbool.h>
#include <stdint.h>

/* QemuOpts number syntax (C integer, base prefixes, sign; nothing after):
 * true with *out, or false after printing qemu-img's message
 * ("Parameter 'KEY' expects a number" / "Value ... is too large ...")
 * behind `prefix` (e.g. "image.qcow2: " or ""; NULL: quietly). */
bool img_opt_number(const char *prefix, const char *key, const char *val, uint64_t *out);
/* QEMU's refcount width rule: a power of two, 1..64. */
bool img_refcount_bits_ok(int64_t bits);
/* The compression_type value: 0 zlib, 1 zstd, -1 anything else. */
int img_compression_type(const char *val);

#endif
