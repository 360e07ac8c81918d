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

/* Limits the parser enforces (QEMU's own: nesting 1024, 64 MiB tokens;
 * kvmbox is stricter). */
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

/* Containers take ownership of v (freed on failure too). 0 or -ENOMEM. */
int json_array_append(struct json *arr, struct json *v);
/* Replaces an existing key. */
int json_object_set(struct json *obj, const char *key, struct json *v);

enum json_type json_typeof(const struct json *j);
bool json_get_bool(const struct json *j);             /* false if not a bool */
int64_t json_get_int(const struct json *j);           /* 0 if not a number */
double json_get_double(const struct json *j);         /* ints convert */
const char *json_get_string(const struct json *j);    /* NULL if not a string */
size_t json_array_len(const struct json *j);
struct json *json_array_at(const struct json *j, size_t i);
/* NULL when absent or j is not an object. */
struct json *json_object_get(const struct json *j, const char *key);
size_t json_object_len(const struct json *j);
/* Iterate: key and value of member i (in insertion order). */
const char *json_object_key_at(const struct json *j, size_t i);
struct json *json_object_value_at(const struct json *j, size_t i);

/* Parse exactly one JSON value from buf[0..len) (surrounding white space
 * allowed). NULL on error with a short reason in err (e.g. "expected ':'
 * at offset 12"). Accepts QEMU's extensions: single-quoted strings. */
struct json *json_parse(const char *buf, size_t len, char *err, size_t errlen);

/* Serialize compactly with a space after ':' and ',' as QEMU does
 * ({"return": {}}). Returns a malloc'd NUL-terminated string, or NULL. */
char *json_to_string(const struct json *j);

/* Streaming splitter for a byte stream carrying concatenated JSON values
 * (QMP over a socket): feed bytes, get each complete top-level value's text.
 * Tracks strings/escapes and {}/[] nesting only, so it can resynchronise
 * after garbage (QEMU's json-streamer behaviour: a lexical error discards
 * input up to the next newline... see json_stream_feed). */
struct json_stream;
struct json_stream *json_stream_new(void);
void json_stream_free(struct json_stream *s);
/* Feed len bytes; for each complete message (or each error), call
 * fn(opaque, text, textlen, error) where error is NULL for a candidate
 * message (still to be json_parse()d) or a reason when the input was
 * discarded (too large, too deep, unbalanced). */
void json_stream_feed(struct json_stream *s, const char *buf, size_t len,
                      void (*fn)(void *opaque, const char *text, size_t textlen,
                                 const char *error),
                      void *opaque);

#endif
