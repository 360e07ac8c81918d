/* JSON for QMP: a small value tree, a parser with hard limits (monitor
 * clients are untrusted: depth, size and count limits, never a crash on
 * malformed input), and a compact serializer in QMP's style.
 *
 * Threads: no shared state; values are owned by whoever holds them. */
#ifndef KVMBOX_JSON_H
#define KVMBOX_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum json_type { JSON_NULL, JSON_BOOL, JSON_INT, JSON_DOUBLE, JSON_STRING, JSON_ARRAY, JSON_OBJECT };

struct json;

/* Limits the parser and the stream splitter enforce (QEMU's own: nesting
 * 1024, 64 MiB tokens; kvmbox is stricter). JSON_MAX_DEPTH nested
 * containers are accepted, one more is an error. The size limit also
 * bounds the value count (at most about JSON_MAX_INPUT / 2 values). */
#define JSON_MAX_DEPTH   64
#define JSON_MAX_INPUT   (1u << 20)     /* one QMP message */

/* Constructors return NULL only on allocation failure. */
struct json *json_null(void);
struct json *json_bool(bool b);
struct json *json_int(int64_t v);
struct json *json_double(double v);
struct json *json_string(const char *s);              /* copies */
struct json *json_string_len(const char *s, size_t n); /* copies n bytes (may hold NUL) */
struct json *json_array(void);
struct json *json_object(void);
void json_free(struct json *j);

/* Containers take ownership of v (freed on failure too). 0, -ENOMEM, or
 * -EINVAL (NULL v or key, or not that kind of container). */
int json_array_append(struct json *arr, struct json *v);
/* Replaces an existing key. */
int json_object_set(struct json *obj, const char *key, struct json *v);

enum json_type json_typeof(const struct json *j);
bool json_get_bool(const struct json *j);             /* false if not a bool */
int64_t json_get_int(const struct json *j);           /* 0 if not a number */
double json_get_double(const struct json *j);         /* ints convert */
const char *json_get_string(const struct json *j);    /* NULL if not a string */
/* The same, with the length: a string may hold NUL bytes ("\u0000"), and
 * json_get_string's view then stops early. *len = 0 if not a string. */
const char *json_get_string_len(const struct json *j, size_t *len);
size_t json_array_len(const struct json *j);
struct json *json_array_at(const struct json *j, size_t i);
/* NULL when absent or j is not an object. A parsed key holding "\u0000"
 * never matches (it is longer than any C string lookup of it). */
struct json *json_object_get(const struct json *j, const char *key);
size_t json_object_len(const struct json *j);
/* Iterate: key and value of member i (in insertion order). */
const char *json_object_key_at(const struct json *j, size_t i);
struct json *json_object_value_at(const struct json *j, size_t i);

/* Deep copy (keys with embedded NULs and member order preserved). NULL on
 * no memory. */
struct json *json_copy(const struct json *j);

/* Deep equality (objects ignore member order; an int equals a double of
 * exactly that value, as QEMU's qobject_is_equal). */
bool json_equal(const struct json *a, const struct json *b);

/* Parse exactly one JSON value from buf[0..len) (surrounding white space
 * allowed; buf need not be NUL-terminated). NULL on error with a short
 * reason in err (e.g. "expected ':', got '}' at offset 12"). Accepts
 * QEMU's extensions: single-quoted strings and the \' escape. Rejects
 * duplicate keys, lone surrogates, invalid UTF-8, control characters in
 * strings, and numbers that overflow a double (1e400). Integers that fit
 * int64 are JSON_INT; larger ones (QEMU: uint64) become JSON_DOUBLE. */
struct json *json_parse(const char *buf, size_t len, char *err, size_t errlen);

/* Serialize compactly with a space after ':' and ',' as QEMU does
 * ({"return": {}}), escaping like QEMU: output is pure ASCII (controls,
 * DEL and non-ASCII as \uXXXX, invalid UTF-8 as \uFFFD); doubles as
 * %.17g, inf/nan as null. Returns a malloc'd NUL-terminated string, or
 * NULL (no memory, or nesting beyond 1024 in a tree built by code). */
char *json_to_string(const struct json *j);

/* Streaming splitter for a byte stream carrying concatenated JSON values
 * (QMP over a socket): feed bytes, get each complete top-level value's text.
 * Tracks strings/escapes and {}/[] nesting only, so it can resynchronise
 * after garbage, as QEMU's json-lexer/json-streamer do:
 *  - a message ends when nesting returns to 0; a top-level string ends at
 *    its closing quote, a top-level number or keyword at the next byte
 *    that cannot continue it (so a trailing "123" waits for more input);
 *  - a lexical error (a byte that cannot occur there: '@', a control
 *    character in a string, a non-ASCII byte outside strings, 0xFE/0xFF)
 *    reports one error, drops the partial message and then all input up
 *    to a bracket, a control character other than tab (e.g. newline) or
 *    0xFE/0xFF. A 0xFF byte therefore always resets the stream (QMP's
 *    documented way for a client to resynchronise);
 *  - a message over JSON_MAX_INPUT bytes or JSON_MAX_DEPTH nesting is
 *    reported once, then followed without storing it until its nesting
 *    closes, so its tail is not misread as new messages;
 *  - a stray '}', ']', ':' or ',' between messages is reported by itself.
 * Memory: at most JSON_MAX_INPUT + 1 bytes per stream. */
struct json_stream;
struct json_stream *json_stream_new(void);      /* NULL on no memory */
void json_stream_free(struct json_stream *s);
/* Forget any partial message (e.g. when a new client connects). */
void json_stream_reset(struct json_stream *s);
/* Feed len bytes; for each complete message (or each error), call
 * fn(opaque, text, textlen, error) where error is NULL for a candidate
 * message (still to be json_parse()d) or a reason when the input was
 * discarded (too large, too deep, invalid character, unbalanced); text is
 * then the discarded part seen so far, for logging. text is NUL-terminated
 * and valid only during the call; fn must not feed or free the stream. */
void json_stream_feed(struct json_stream *s, const char *buf, size_t len,
                      void (*fn)(void *opaque, const char *text, size_t textlen,
                                 const char *error),
                      void *opaque);

#endif
