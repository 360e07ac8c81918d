/* JSON for QMP: value tree, parser, serializer and stream splitter.
 *
 * The parser and the splitter face untrusted monitor clients, so both work
 * on (pointer, length) input that is never NUL-terminated, check every
 * index against the length, and bound nesting (JSON_MAX_DEPTH) and size
 * (JSON_MAX_INPUT) before doing any work proportional to them.
 *
 * Wire format follows QEMU (qobject/json-lexer.c, json-parser.c,
 * json-writer.c) so QMP clients see the same bytes from kvmbox:
 *  - single-quoted strings and the \' escape are accepted;
 *  - duplicate object keys are an error;
 *  - output uses ", " and ": " separators, escapes control characters,
 *    DEL and every non-ASCII character as \uXXXX (upper-case hex,
 *    surrogate pairs beyond the BMP), doubles as %.17g.
 * Where kvmbox deliberately differs:
 *  - integers beyond int64 become JSON_DOUBLE (QEMU keeps a uint64 up to
 *    UINT64_MAX; kvmbox has no uint64 type and no command needs one);
 *  - numbers that overflow a double (1e400) are rejected instead of
 *    becoming inf, and a non-finite double serializes as null: inf/nan
 *    are not JSON and QEMU's own writer carries a FIXME for it;
 *  - strings may hold NUL (\u0000 decodes to a real 0 byte, length
 *    tracked) where QEMU uses modified UTF-8 (C0 80); raw C0 80 in input
 *    is rejected as overlong UTF-8.
 */
#include "monitor/json.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct json_member {
    char *key;          /* NUL-terminated copy; keylen excludes the NUL */
    size_t keylen;
    struct json *val;
};

struct json {
    enum json_type type;
    union {
        bool b;
        int64_t i;
        double d;
        struct {
            char *s;    /* always NUL-terminated; may hold NULs before len */
            size_t len;
        } str;
        struct {
            struct json **v;
            size_t len, cap;
        } arr;
        struct {
            struct json_member *m;
            size_t len, cap;
        } obj;
    } u;
};

/* The serializer and json_free recurse over trees built by code, not by
 * clients (the parser caps those at JSON_MAX_DEPTH); this bound only keeps
 * a runaway tree from overflowing the stack in json_to_string. It is
 * QEMU's own nesting limit. */
#define JSON_WRITE_MAX_DEPTH 1024

/* ---- values ---------------------------------------------------------- */

static struct json *json_new(enum json_type t)
{
    struct json *j = calloc(1, sizeof(*j));
    if (j)
        j->type = t;
    return j;
}

struct json *json_null(void) { return json_new(JSON_NULL); }

struct json *json_bool(bool b)
{
    struct json *j = json_new(JSON_BOOL);
    if (j)
        j->u.b = b;
    return j;
}

struct json *json_int(int64_t v)
{
    struct json *j = json_new(JSON_INT);
    if (j)
        j->u.i = v;
    return j;
}

struct json *json_double(double v)
{
    struct json *j = json_new(JSON_DOUBLE);
    if (j)
        j->u.d = v;
    return j;
}

struct json *json_string_len(const char *s, size_t n)
{
    if (!s && n)
        return NULL;
    if (n == SIZE_MAX)
        return NULL;
    struct json *j = json_new(JSON_STRING);
    if (!j)
        return NULL;
    j->u.str.s = malloc(n + 1);
    if (!j->u.str.s) {
        free(j);
        return NULL;
    }
    if (n)
        memcpy(j->u.str.s, s, n);
    j->u.str.s[n] = '\0';
    j->u.str.len = n;
    return j;
}

struct json *json_string(const char *s)
{
    return s ? json_string_len(s, strlen(s)) : NULL;
}

/* Takes ownership of a malloc'd buffer of n bytes plus a NUL at s[n]. */
static struct json *json_string_take(char *s, size_t n)
{
    struct json *j = json_new(JSON_STRING);
    if (!j) {
        free(s);
        return NULL;
    }
    j->u.str.s = s;
    j->u.str.len = n;
    return j;
}

struct json *json_array(void) { return json_new(JSON_ARRAY); }
struct json *json_object(void) { return json_new(JSON_OBJECT); }

void json_free(struct json *j)
{
    if (!j)
        return;
    switch (j->type) {
    case JSON_STRING:
        free(j->u.str.s);
        break;
    case JSON_ARRAY:
        for (size_t i = 0; i < j->u.arr.len; i++)
            json_free(j->u.arr.v[i]);
        free(j->u.arr.v);
        break;
    case JSON_OBJECT:
        for (size_t i = 0; i < j->u.obj.len; i++) {
            free(j->u.obj.m[i].key);
            json_free(j->u.obj.m[i].val);
        }
        free(j->u.obj.m);
        break;
    default:
        break;
    }
    free(j);
}

/* Grow *p (elements of size sz) so that index `need - 1` fits. */
static int grow(void **p, size_t *cap, size_t need, size_t sz)
{
    if (need <= *cap)
        return 0;
    size_t ncap = *cap ? *cap : 4;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2 / sz)
            return -ENOMEM;
        ncap *= 2;
    }
    void *np = realloc(*p, ncap * sz);
    if (!np)
        return -ENOMEM;
    *p = np;
    *cap = ncap;
    return 0;
}

int json_array_append(struct json *arr, struct json *v)
{
    if (!arr || arr->type != JSON_ARRAY || !v) {
        json_free(v);
        return -EINVAL;
    }
    void *p = arr->u.arr.v;
    if (grow(&p, &arr->u.arr.cap, arr->u.arr.len + 1, sizeof(struct json *)) < 0) {
        json_free(v);
        return -ENOMEM;
    }
    arr->u.arr.v = p;
    arr->u.arr.v[arr->u.arr.len++] = v;
    return 0;
}

/* Append without looking for an existing key: the parser checks for
 * duplicates once per object (see check_duplicate_keys) rather than per
 * member, which would be quadratic in a hostile 1 MiB object. Takes
 * ownership of key (NUL at key[keylen]) and v, also on failure. */
static int object_append(struct json *obj, char *key, size_t keylen, struct json *v)
{
    void *p = obj->u.obj.m;
    if (grow(&p, &obj->u.obj.cap, obj->u.obj.len + 1, sizeof(struct json_member)) < 0) {
        free(key);
        json_free(v);
        return -ENOMEM;
    }
    obj->u.obj.m = p;
    obj->u.obj.m[obj->u.obj.len++] = (struct json_member){ key, keylen, v };
    return 0;
}

static struct json_member *object_find(const struct json *obj, const char *key, size_t keylen)
{
    for (size_t i = 0; i < obj->u.obj.len; i++) {
        struct json_member *m = &obj->u.obj.m[i];
        if (m->keylen == keylen && memcmp(m->key, key, keylen) == 0)
            return m;
    }
    return NULL;
}

int json_object_set(struct json *obj, const char *key, struct json *v)
{
    if (!obj || obj->type != JSON_OBJECT || !key || !v) {
        json_free(v);
        return -EINVAL;
    }
    size_t keylen = strlen(key);
    struct json_member *m = object_find(obj, key, keylen);
    if (m) {
        json_free(m->val);
        m->val = v;
        return 0;
    }
    char *k = malloc(keylen + 1);
    if (!k) {
        json_free(v);
        return -ENOMEM;
    }
    memcpy(k, key, keylen + 1);
    return object_append(obj, k, keylen, v);
}

enum json_type json_typeof(const struct json *j)
{
    return j ? j->type : JSON_NULL;
}

bool json_get_bool(const struct json *j)
{
    return j && j->type == JSON_BOOL && j->u.b;
}

int64_t json_get_int(const struct json *j)
{
    if (!j)
        return 0;
    if (j->type == JSON_INT)
        return j->u.i;
    if (j->type == JSON_DOUBLE) {
        /* Saturate: converting an out-of-range double is undefined. */
        double d = j->u.d;
        if (isnan(d))
            return 0;
        if (d >= 9223372036854775808.0)
            return INT64_MAX;
        if (d < -9223372036854775808.0)
            return INT64_MIN;
        return (int64_t)d;
    }
    return 0;
}

double json_get_double(const struct json *j)
{
    if (!j)
        return 0;
    if (j->type == JSON_DOUBLE)
        return j->u.d;
    if (j->type == JSON_INT)
        return (double)j->u.i;
    return 0;
}

const char *json_get_string(const struct json *j)
{
    return j && j->type == JSON_STRING ? j->u.str.s : NULL;
}

const char *json_get_string_len(const struct json *j, size_t *len)
{
    if (!j || j->type != JSON_STRING) {
        if (len)
            *len = 0;
        return NULL;
    }
    if (len)
        *len = j->u.str.len;
    return j->u.str.s;
}

size_t json_array_len(const struct json *j)
{
    return j && j->type == JSON_ARRAY ? j->u.arr.len : 0;
}

struct json *json_array_at(const struct json *j, size_t i)
{
    if (!j || j->type != JSON_ARRAY || i >= j->u.arr.len)
        return NULL;
    return j->u.arr.v[i];
}

struct json *json_object_get(const struct json *j, const char *key)
{
    if (!j || j->type != JSON_OBJECT || !key)
        return NULL;
    /* Length-aware compare: a key that holds "\u0000" never matches a
     * C-string lookup of its prefix ("execute\u0000x" is not "execute"). */
    struct json_member *m = object_find(j, key, strlen(key));
    return m ? m->val : NULL;
}

size_t json_object_len(const struct json *j)
{
    return j && j->type == JSON_OBJECT ? j->u.obj.len : 0;
}

const char *json_object_key_at(const struct json *j, size_t i)
{
    if (!j || j->type != JSON_OBJECT || i >= j->u.obj.len)
        return NULL;
    return j->u.obj.m[i].key;
}

struct json *json_object_value_at(const struct json *j, size_t i)
{
    if (!j || j->type != JSON_OBJECT || i >= j->u.obj.len)
        return NULL;
    return j->u.obj.m[i].val;
}

struct json *json_copy(const struct json *j)
{
    if (!j)
        return NULL;
    struct json *c = NULL;
    switch (j->type) {
    case JSON_NULL:
        return json_null();
    case JSON_BOOL:
        return json_bool(j->u.b);
    case JSON_INT:
        return json_int(j->u.i);
    case JSON_DOUBLE:
        return json_double(j->u.d);
    case JSON_STRING:
        return json_string_len(j->u.str.s, j->u.str.len);
    case JSON_ARRAY:
        c = json_array();
        for (size_t i = 0; c && i < j->u.arr.len; i++) {
            struct json *v = json_copy(j->u.arr.v[i]);
            if (!v || json_array_append(c, v) < 0) {
                json_free(v);
                goto fail;
            }
        }
        return c;
    case JSON_OBJECT:
        c = json_object();
        for (size_t i = 0; c && i < j->u.obj.len; i++) {
            const struct json_member *m = &j->u.obj.m[i];
            struct json *v = json_copy(m->val);
            char *k = malloc(m->keylen + 1);
            if (!v || !k) {
                json_free(v);
                free(k);
                goto fail;
            }
            memcpy(k, m->key, m->keylen + 1);
            /* Keys are already unique; keep embedded NULs intact. */
            if (object_append(c, k, m->keylen, v) < 0)
                goto fail;
        }
        return c;
    }
fail:
    json_free(c);
    return NULL;
}

static bool number_equal(const struct json *a, const struct json *b)
{
    if (a->type == JSON_INT && b->type == JSON_INT)
        return a->u.i == b->u.i;
    if (a->type == JSON_DOUBLE && b->type == JSON_DOUBLE)
        return a->u.d == b->u.d;
    /* Mixed: equal only if the double is exactly that integer (as QEMU's
     * qnum_is_equal); the range check keeps the cast defined. */
    int64_t i = a->type == JSON_INT ? a->u.i : b->u.i;
    double d = a->type == JSON_DOUBLE ? a->u.d : b->u.d;
    if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0))
        return false;
    return (double)(int64_t)d == d && (int64_t)d == i;
}

bool json_equal(const struct json *a, const struct json *b)
{
    if (!a || !b)
        return a == b;
    bool an = a->type == JSON_INT || a->type == JSON_DOUBLE;
    bool bn = b->type == JSON_INT || b->type == JSON_DOUBLE;
    if (an && bn)
        return number_equal(a, b);
    if (a->type != b->type)
        return false;
    switch (a->type) {
    case JSON_NULL:
        return true;
    case JSON_BOOL:
        return a->u.b == b->u.b;
    case JSON_STRING:
        return a->u.str.len == b->u.str.len &&
               memcmp(a->u.str.s, b->u.str.s, a->u.str.len) == 0;
    case JSON_ARRAY:
        if (a->u.arr.len != b->u.arr.len)
            return false;
        for (size_t i = 0; i < a->u.arr.len; i++)
            if (!json_equal(a->u.arr.v[i], b->u.arr.v[i]))
                return false;
        return true;
    case JSON_OBJECT:
        /* Order-insensitive, like QEMU's qdict comparison. */
        if (a->u.obj.len != b->u.obj.len)
            return false;
        for (size_t i = 0; i < a->u.obj.len; i++) {
            const struct json_member *m = &a->u.obj.m[i];
            const struct json_member *o = object_find(b, m->key, m->keylen);
            if (!o || !json_equal(m->val, o->val))
                return false;
        }
        return true;
    default:
        return false;
    }
}

/* ---- UTF-8 ----------------------------------------------------------- */

/* Decode one strict UTF-8 sequence (RFC 3629: no overlongs, no encoded
 * surrogates, nothing above U+10FFFF) from s[0..n). Returns its length,
 * or 0 if invalid or truncated. */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    if (n == 0)
        return 0;
    unsigned char c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t need;
    uint32_t v;
    unsigned char lo = 0x80, hi = 0xBF;   /* allowed range of s[1] */
    if (c >= 0xC2 && c <= 0xDF) {
        need = 2;
        v = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        v = c & 0x0F;
        if (c == 0xE0)
            lo = 0xA0;          /* overlong */
        else if (c == 0xED)
            hi = 0x9F;          /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        v = c & 0x07;
        if (c == 0xF0)
            lo = 0x90;          /* overlong */
        else if (c == 0xF4)
            hi = 0x8F;          /* > U+10FFFF */
    } else {
        return 0;
    }
    if (n < need)
        return 0;
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 1; i < need; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    *cp = v;
    return need;
}

static size_t utf8_encode(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* ---- parser ---------------------------------------------------------- */

struct parser {
    const unsigned char *p;
    size_t len, pos;
    char *err;
    size_t errlen;
    bool failed;
};

/* Record the first error only: later ones are consequences of it. */
__attribute__((format(printf, 3, 4)))
static void perr(struct parser *ps, size_t off, const char *fmt, ...)
{
    if (ps->failed)
        return;
    ps->failed = true;
    if (!ps->err || ps->errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(ps->err, ps->errlen, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < ps->errlen)
        snprintf(ps->err + n, ps->errlen - (size_t)n, " at offset %zu", off);
}

/* Describe the byte at off for an error message without echoing
 * arbitrary client bytes into logs. */
static void perr_unexpected(struct parser *ps, size_t off, const char *what)
{
    if (off >= ps->len) {
        perr(ps, off, "unexpected end of input (expected %s)", what);
        return;
    }
    unsigned char c = ps->p[off];
    if (c >= 0x21 && c < 0x7F)
        perr(ps, off, "expected %s, got '%c'", what, c);
    else
        perr(ps, off, "expected %s, got byte 0x%02x", what, c);
}

static void skip_ws(struct parser *ps)
{
    while (ps->pos < ps->len) {
        unsigned char c = ps->p[ps->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        ps->pos++;
    }
}

static struct json *parse_value(struct parser *ps, unsigned depth);

static int hex4(const unsigned char *s, uint32_t *out)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (uint32_t)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

/* Parse a string starting at the quote at ps->pos (either " or ', QEMU's
 * extension). Returns a malloc'd buffer NUL-terminated at *outlen. */
static char *parse_string_raw(struct parser *ps, size_t *outlen)
{
    const unsigned char *p = ps->p;
    size_t start = ps->pos;
    unsigned char q = p[start];

    /* First find the closing quote: the decoded text is never longer than
     * the raw text (every escape shrinks), so one allocation suffices. */
    size_t end = start + 1;
    while (end < ps->len && p[end] != q) {
        if (p[end] == '\\')
            end++;
        end++;
    }
    if (end >= ps->len) {
        perr(ps, ps->len, "unterminated string starting at offset %zu", start);
        return NULL;
    }

    char *out = malloc(end - start);
    if (!out) {
        perr(ps, start, "out of memory");
        return NULL;
    }
    size_t n = 0, i = start + 1;
    while (i < end) {
        unsigned char c = p[i];
        if (c < 0x20) {
            perr(ps, i, "control character in string");
            goto fail;
        }
        if (c != '\\') {
            uint32_t cp;
            size_t l = utf8_decode(p + i, end - i, &cp);
            if (!l) {
                perr(ps, i, "invalid UTF-8 in string");
                goto fail;
            }
            memcpy(out + n, p + i, l);
            n += l;
            i += l;
            continue;
        }
        /* i + 1 < end: the scan above never stops right after a '\\'. */
        unsigned char e = p[i + 1];
        i += 2;
        switch (e) {
        case '"': out[n++] = '"'; break;
        case '\'': out[n++] = '\''; break;     /* QEMU extension */
        case '\\': out[n++] = '\\'; break;
        case '/': out[n++] = '/'; break;
        case 'b': out[n++] = '\b'; break;
        case 'f': out[n++] = '\f'; break;
        case 'n': out[n++] = '\n'; break;
        case 'r': out[n++] = '\r'; break;
        case 't': out[n++] = '\t'; break;
        case 'u': {
            uint32_t cp, lo;
            if (end - i < 4 || hex4(p + i, &cp) < 0) {
                perr(ps, i - 2, "invalid \\u escape");
                goto fail;
            }
            i += 4;
            if (cp >= 0xDC00 && cp <= 0xDFFF) {
                perr(ps, i - 6, "lone trailing surrogate \\u%04" PRIX32, cp);
                goto fail;
            }
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (end - i < 6 || p[i] != '\\' || p[i + 1] != 'u' ||
                    hex4(p + i + 2, &lo) < 0 || lo < 0xDC00 || lo > 0xDFFF) {
                    perr(ps, i - 6, "lone leading surrogate \\u%04" PRIX32, cp);
                    goto fail;
                }
                i += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            n += utf8_encode(cp, out + n);
            break;
        }
        default:
            perr(ps, i - 2, "invalid escape in string");
            goto fail;
        }
    }
    out[n] = '\0';
    *outlen = n;
    ps->pos = end + 1;
    return out;
fail:
    free(out);
    return NULL;
}

static struct json *parse_number(struct parser *ps)
{
    const unsigned char *p = ps->p;
    size_t start = ps->pos, i = start;
    bool neg = false, integral = true;

    /* RFC 8259 §6: -? (0 | [1-9][0-9]*) (.[0-9]+)? ([eE][+-]?[0-9]+)? */
    if (p[i] == '-') {
        neg = true;
        i++;
    }
    if (i >= ps->len || p[i] < '0' || p[i] > '9') {
        perr(ps, start, "invalid number");
        return NULL;
    }
    if (p[i] == '0') {
        i++;
    } else {
        while (i < ps->len && p[i] >= '0' && p[i] <= '9')
            i++;
    }
    size_t int_end = i;
    if (i < ps->len && p[i] == '.') {
        integral = false;
        i++;
        if (i >= ps->len || p[i] < '0' || p[i] > '9') {
            perr(ps, start, "invalid number");
            return NULL;
        }
        while (i < ps->len && p[i] >= '0' && p[i] <= '9')
            i++;
    }
    if (i < ps->len && (p[i] == 'e' || p[i] == 'E')) {
        integral = false;
        i++;
        if (i < ps->len && (p[i] == '+' || p[i] == '-'))
            i++;
        if (i >= ps->len || p[i] < '0' || p[i] > '9') {
            perr(ps, start, "invalid number");
            return NULL;
        }
        while (i < ps->len && p[i] >= '0' && p[i] <= '9')
            i++;
    }

    if (integral) {
        /* Magnitude limit: INT64_MAX, or 2^63 for INT64_MIN. */
        uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
        uint64_t v = 0;
        bool fits = true;
        for (size_t k = start + neg; k < int_end; k++) {
            unsigned d = p[k] - '0';
            if (v > (limit - d) / 10) {
                fits = false;
                break;
            }
            v = v * 10 + d;
        }
        if (fits) {
            ps->pos = i;
            /* -(2^63) has no positive int64: negate in unsigned arithmetic. */
            struct json *j = json_int(neg ? (int64_t)(0 - v) : (int64_t)v);
            if (!j)
                perr(ps, start, "out of memory");
            return j;
        }
        /* Beyond int64: fall through to a double (see file comment). */
    }

    /* strtod needs a NUL-terminated copy: the input is not terminated and
     * the byte after the number may be anything. strtod follows
     * LC_NUMERIC; kvmbox never calls setlocale, so that is "C". */
    size_t n = i - start;
    char small[64];
    char *copy = n < sizeof(small) ? small : malloc(n + 1);
    if (!copy) {
        perr(ps, start, "out of memory");
        return NULL;
    }
    memcpy(copy, p + start, n);
    copy[n] = '\0';
    double d = strtod(copy, NULL);
    if (copy != small)
        free(copy);
    if (isinf(d)) {
        perr(ps, start, "number out of range");
        return NULL;
    }
    ps->pos = i;
    struct json *j = json_double(d);
    if (!j)
        perr(ps, start, "out of memory");
    return j;
}

static bool match_word(struct parser *ps, const char *w)
{
    size_t n = strlen(w);
    if (ps->len - ps->pos < n || memcmp(ps->p + ps->pos, w, n) != 0)
        return false;
    ps->pos += n;
    return true;
}

/* Order members by key bytes (length-aware: keys may hold NULs). */
static int member_key_cmp(const struct json_member *x, const struct json_member *y)
{
    size_t n = x->keylen < y->keylen ? x->keylen : y->keylen;
    int c = memcmp(x->key, y->key, n);
    if (c)
        return c;
    return x->keylen < y->keylen ? -1 : x->keylen > y->keylen;
}

static int member_ptr_cmp(const void *a, const void *b)
{
    return member_key_cmp(*(const struct json_member *const *)a,
                          *(const struct json_member *const *)b);
}

/* QEMU rejects duplicate keys. Small objects (every real QMP message)
 * compare pairwise; larger ones sort pointers, so a hostile object with
 * 100k members stays O(n log n) with no hash to flood. */
static int check_duplicate_keys(struct parser *ps, const struct json *obj, size_t off)
{
    const struct json_member *m = obj->u.obj.m;
    size_t n = obj->u.obj.len;
    bool dup = false;
    if (n <= 8) {
        for (size_t a = 0; a < n && !dup; a++)
            for (size_t b = a + 1; b < n && !dup; b++)
                dup = member_key_cmp(&m[a], &m[b]) == 0;
    } else {
        const struct json_member **v = malloc(n * sizeof(*v));
        if (!v) {
            perr(ps, off, "out of memory");
            return -1;
        }
        for (size_t k = 0; k < n; k++)
            v[k] = &m[k];
        qsort(v, n, sizeof(*v), member_ptr_cmp);
        for (size_t k = 1; k < n && !dup; k++)
            dup = member_key_cmp(v[k - 1], v[k]) == 0;
        free(v);
    }
    if (dup) {
        perr(ps, off, "duplicate key in object");
        return -1;
    }
    return 0;
}

/* After a member of an object or array: 1 when a ',' follows (another
 * member), 0 at the closing character, -1 (error set) otherwise. */
static int parse_next_member(struct parser *ps, char close, const char *expected)
{
    skip_ws(ps);
    if (ps->pos < ps->len && ps->p[ps->pos] == ',') {
        ps->pos++;
        return 1;
    }
    if (ps->pos < ps->len && ps->p[ps->pos] == close) {
        ps->pos++;
        return 0;
    }
    perr_unexpected(ps, ps->pos, expected);
    return -1;
}

static struct json *parse_object(struct parser *ps, unsigned depth)
{
    size_t start = ps->pos;
    struct json *obj = json_object();
    if (!obj) {
        perr(ps, start, "out of memory");
        return NULL;
    }
    ps->pos++;                          /* '{' */
    skip_ws(ps);
    if (ps->pos < ps->len && ps->p[ps->pos] == '}') {
        ps->pos++;
        return obj;
    }
    for (;;) {
        skip_ws(ps);
        if (ps->pos >= ps->len || (ps->p[ps->pos] != '"' && ps->p[ps->pos] != '\'')) {
            perr_unexpected(ps, ps->pos, "string key");
            goto fail;
        }
        size_t keylen;
        char *key = parse_string_raw(ps, &keylen);
        if (!key)
            goto fail;
        skip_ws(ps);
        if (ps->pos >= ps->len || ps->p[ps->pos] != ':') {
            free(key);
            perr_unexpected(ps, ps->pos, "':'");
            goto fail;
        }
        ps->pos++;
        struct json *v = parse_value(ps, depth);
        if (!v) {
            free(key);
            goto fail;
        }
        if (object_append(obj, key, keylen, v) < 0) {
            perr(ps, ps->pos, "out of memory");
            goto fail;
        }
        int more = parse_next_member(ps, '}', "',' or '}'");
        if (more < 0)
            goto fail;
        if (!more)
            break;
    }
    if (check_duplicate_keys(ps, obj, start) < 0)
        goto fail;
    return obj;
fail:
    json_free(obj);
    return NULL;
}

static struct json *parse_array(struct parser *ps, unsigned depth)
{
    struct json *arr = json_array();
    if (!arr) {
        perr(ps, ps->pos, "out of memory");
        return NULL;
    }
    ps->pos++;                          /* '[' */
    skip_ws(ps);
    if (ps->pos < ps->len && ps->p[ps->pos] == ']') {
        ps->pos++;
        return arr;
    }
    for (;;) {
        struct json *v = parse_value(ps, depth);
        if (!v)
            goto fail;
        if (json_array_append(arr, v) < 0) {
            perr(ps, ps->pos, "out of memory");
            goto fail;
        }
        int more = parse_next_member(ps, ']', "',' or ']'");
        if (more < 0)
            goto fail;
        if (!more)
            return arr;
    }
fail:
    json_free(arr);
    return NULL;
}

/* depth: number of containers enclosing this value. */
static struct json *parse_value(struct parser *ps, unsigned depth)
{
    skip_ws(ps);
    if (ps->pos >= ps->len) {
        perr_unexpected(ps, ps->pos, "a value");
        return NULL;
    }
    size_t start = ps->pos;
    unsigned char c = ps->p[start];
    struct json *j = NULL;
    switch (c) {
    case '{':
    case '[':
        /* The only recursion: bounded here, before descending. */
        if (depth >= JSON_MAX_DEPTH) {
            perr(ps, start, "nesting deeper than %d", JSON_MAX_DEPTH);
            return NULL;
        }
        return c == '{' ? parse_object(ps, depth + 1) : parse_array(ps, depth + 1);
    case '"':
    case '\'': {
        size_t n;
        char *s = parse_string_raw(ps, &n);
        if (!s)
            return NULL;
        j = json_string_take(s, n);
        break;
    }
    case 't':
        if (match_word(ps, "true"))
            j = json_bool(true);
        else
            goto bad;
        break;
    case 'f':
        if (match_word(ps, "false"))
            j = json_bool(false);
        else
            goto bad;
        break;
    case 'n':
        if (match_word(ps, "null"))
            j = json_null();
        else
            goto bad;
        break;
    default:
        if (c == '-' || (c >= '0' && c <= '9'))
            return parse_number(ps);
        goto bad;
    }
    if (!j)
        perr(ps, start, "out of memory");
    return j;
bad:
    perr_unexpected(ps, start, "a value");
    return NULL;
}

struct json *json_parse(const char *buf, size_t len, char *err, size_t errlen)
{
    struct parser ps = { (const unsigned char *)buf, len, 0, err, errlen, false };
    if (err && errlen)
        err[0] = '\0';
    if (len > JSON_MAX_INPUT) {
        perr(&ps, JSON_MAX_INPUT, "input longer than %u bytes", JSON_MAX_INPUT);
        return NULL;
    }
    if (!buf) {
        ps.len = 0;
        ps.p = (const unsigned char *)"";
    }
    struct json *j = parse_value(&ps, 0);
    if (!j)
        return NULL;
    skip_ws(&ps);
    if (ps.pos != ps.len) {
        perr_unexpected(&ps, ps.pos, "end of input");
        json_free(j);
        return NULL;
    }
    return j;
}

/* ---- serializer ------------------------------------------------------ */

struct sbuf {
    char *p;
    size_t len, cap;
    bool failed;
};

static void sb_put(struct sbuf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (n >= b->cap - b->len) {
        size_t ncap = b->cap ? b->cap : 64;
        while (n >= ncap - b->len) {
            if (ncap > SIZE_MAX / 2) {
                b->failed = true;
                return;
            }
            ncap *= 2;
        }
        char *np = realloc(b->p, ncap);
        if (!np) {
            b->failed = true;
            return;
        }
        b->p = np;
        b->cap = ncap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_puts(struct sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

/* \uXXXX with upper-case hex, as QEMU prints it. u <= 0xFFFF. */
static void sb_u16(struct sbuf *b, uint32_t u)
{
    static const char hex[] = "0123456789ABCDEF";
    char t[6] = { '\\', 'u', hex[(u >> 12) & 15], hex[(u >> 8) & 15],
                  hex[(u >> 4) & 15], hex[u & 15] };
    sb_put(b, t, 6);
}

/* QEMU's quoting (json-writer.c quoted_str): short escapes for " \ \b \f
 * \n \r \t, \uXXXX for other controls, DEL and all non-ASCII (so output is
 * pure ASCII), U+FFFD for bytes that are not valid UTF-8. */
static void write_string(struct sbuf *b, const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    sb_put(b, "\"", 1);
    size_t i = 0;
    while (i < len) {
        size_t run = i;
        while (run < len && s[run] >= 0x20 && s[run] < 0x7F && s[run] != '"' && s[run] != '\\')
            run++;
        sb_put(b, (const char *)s + i, run - i);
        i = run;
        if (i >= len)
            break;
        unsigned char c = s[i];
        const char *esc = NULL;
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        default: break;
        }
        if (esc) {
            sb_put(b, esc, 2);
            i++;
            continue;
        }
        uint32_t cp;
        size_t l = utf8_decode(s + i, len - i, &cp);
        if (!l) {
            cp = 0xFFFD;
            l = 1;
        }
        i += l;
        if (cp > 0xFFFF) {
            sb_u16(b, 0xD800 + ((cp - 0x10000) >> 10));
            sb_u16(b, 0xDC00 + ((cp - 0x10000) & 0x3FF));
        } else {
            sb_u16(b, cp);
        }
    }
    sb_put(b, "\"", 1);
}

static void write_value(struct sbuf *b, const struct json *j, unsigned depth)
{
    char t[40];
    if (depth > JSON_WRITE_MAX_DEPTH) {
        b->failed = true;
        return;
    }
    switch (j->type) {
    case JSON_NULL:
        sb_puts(b, "null");
        break;
    case JSON_BOOL:
        sb_puts(b, j->u.b ? "true" : "false");
        break;
    case JSON_INT:
        snprintf(t, sizeof(t), "%" PRId64, j->u.i);
        sb_puts(b, t);
        break;
    case JSON_DOUBLE:
        /* inf/nan are not JSON (QEMU would print them; see file comment).
         * %.17g round-trips every double; like strtod it follows
         * LC_NUMERIC, which kvmbox leaves at "C". */
        if (!isfinite(j->u.d)) {
            sb_puts(b, "null");
        } else {
            snprintf(t, sizeof(t), "%.17g", j->u.d);
            sb_puts(b, t);
        }
        break;
    case JSON_STRING:
        write_string(b, j->u.str.s, j->u.str.len);
        break;
    case JSON_ARRAY:
        sb_put(b, "[", 1);
        for (size_t i = 0; i < j->u.arr.len; i++) {
            if (i)
                sb_put(b, ", ", 2);
            write_value(b, j->u.arr.v[i], depth + 1);
        }
        sb_put(b, "]", 1);
        break;
    case JSON_OBJECT:
        sb_put(b, "{", 1);
        for (size_t i = 0; i < j->u.obj.len; i++) {
            if (i)
                sb_put(b, ", ", 2);
            write_string(b, j->u.obj.m[i].key, j->u.obj.m[i].keylen);
            sb_put(b, ": ", 2);
            write_value(b, j->u.obj.m[i].val, depth + 1);
        }
        sb_put(b, "}", 1);
        break;
    }
}

char *json_to_string(const struct json *j)
{
    if (!j)
        return NULL;
    struct sbuf b = { 0 };
    write_value(&b, j, 0);
    if (b.failed || !b.p) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

/* ---- stream splitter ------------------------------------------------- */

/* A byte-level imitation of QEMU's json-lexer + json-streamer, reduced to
 * what finding message boundaries needs: string/escape state and one
 * nesting counter. Grammar errors inside a candidate are left to
 * json_parse; lexical errors (bytes that cannot occur in JSON at that
 * point, e.g. a control character in a string, '@', 0xFF) abort the
 * message and start QEMU's recovery: input is dropped up to a structural
 * bracket, a control character other than tab, or 0xFE/0xFF. So garbage
 * followed by a newline and a new command works, and a 0xFF byte (QMP's
 * documented way to force the parser into a known state) always resets. */
enum stream_state {
    ST_IDLE,        /* between messages */
    ST_CONTAINER,   /* inside {} or [] (depth > 0), outside strings */
    ST_STRING,      /* inside a string; s->quote closes it */
    ST_ESCAPE,      /* right after a backslash in a string */
    ST_SCALAR,      /* a top-level number or keyword */
    ST_RECOVER,     /* dropping input after a lexical error */
};

struct json_stream {
    enum stream_state state;
    unsigned char quote;
    size_t depth;       /* keeps counting past the limit while skipping */
    bool skipping;      /* message over a limit: track it, store nothing */
    char *buf;          /* the message so far, NUL-terminated */
    size_t len, cap;
};

typedef void json_stream_fn(void *opaque, const char *text, size_t textlen,
                            const char *error);

struct json_stream *json_stream_new(void)
{
    return calloc(1, sizeof(struct json_stream));
}

void json_stream_free(struct json_stream *s)
{
    if (!s)
        return;
    free(s->buf);
    free(s);
}

static void stream_clear(struct json_stream *s)
{
    s->len = 0;
    if (s->buf)
        s->buf[0] = '\0';
    /* Don't keep a near-1 MiB buffer around for one large message. */
    if (s->cap > 65536) {
        free(s->buf);
        s->buf = NULL;
        s->cap = 0;
    }
    s->depth = 0;
    s->skipping = false;
    s->state = ST_IDLE;
}

void json_stream_reset(struct json_stream *s)
{
    if (s)
        stream_clear(s);
}

static bool is_ws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Characters of numbers and keywords (a superset; json_parse decides). */
static bool is_scalar_char(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
           (c >= 'A' && c <= 'Z') || c == '-' || c == '+' || c == '.';
}

static void stream_error(struct json_stream *s, json_stream_fn *fn, void *opaque,
                         const char *why)
{
    fn(opaque, s->buf ? s->buf : "", s->len, why);
    stream_clear(s);
}

/* A lexical error: report it (once per message: a message already being
 * skipped has had its error), then drop input until a resync point. */
static void stream_lex_error(struct json_stream *s, json_stream_fn *fn, void *opaque,
                             const char *why)
{
    if (!s->skipping)
        stream_error(s, fn, opaque, why);
    else
        stream_clear(s);
    s->state = ST_RECOVER;
}

/* Store c; on exceeding JSON_MAX_INPUT report and switch to skipping.
 * false: the message was dropped (no memory) and the stream is recovering,
 * so the caller must not act on c any further. */
static bool stream_put(struct json_stream *s, unsigned char c, json_stream_fn *fn,
                       void *opaque)
{
    if (s->skipping)
        return true;
    if (s->len + 1 > JSON_MAX_INPUT) {
        enum stream_state st = s->state;
        size_t depth = s->depth;
        stream_error(s, fn, opaque, "message too large");
        /* Keep following the message's structure so its tail is not
         * misread as new messages. */
        s->state = st;
        s->depth = depth;
        s->skipping = true;
        return true;
    }
    if (s->len + 2 > s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 256;
        char *nb = realloc(s->buf, ncap);
        if (!nb) {
            stream_lex_error(s, fn, opaque, "out of memory");
            return false;
        }
        s->buf = nb;
        s->cap = ncap;
    }
    s->buf[s->len++] = (char)c;
    s->buf[s->len] = '\0';
    return true;
}

static void stream_done(struct json_stream *s, json_stream_fn *fn, void *opaque)
{
    if (!s->skipping)
        fn(opaque, s->buf, s->len, NULL);
    stream_clear(s);
}

static void stream_open(struct json_stream *s, unsigned char c, json_stream_fn *fn,
                        void *opaque)
{
    s->depth++;
    if (s->depth > JSON_MAX_DEPTH && !s->skipping) {
        size_t depth = s->depth;
        stream_error(s, fn, opaque, "nesting too deep");
        s->depth = depth;
        s->skipping = true;
    }
    s->state = ST_CONTAINER;
    stream_put(s, c, fn, opaque);
}

static void stream_byte(struct json_stream *s, unsigned char c, json_stream_fn *fn,
                        void *opaque)
{
    for (;;) {
        switch (s->state) {
        case ST_RECOVER:
            if ((c < 0x20 && c != '\t') || c >= 0xFE ||
                c == '{' || c == '}' || c == '[' || c == ']') {
                s->state = ST_IDLE;
                if (c == '\n' || c == '\r' || c >= 0xFE || c < 0x20)
                    return;     /* a resync byte, not the start of anything */
                continue;       /* a bracket starts the next message */
            }
            return;

        case ST_IDLE:
            if (is_ws(c))
                return;
            if (c == '{' || c == '[') {
                stream_open(s, c, fn, opaque);
                return;
            }
            if (c == '"' || c == '\'') {
                s->quote = c;
                s->state = ST_STRING;
                stream_put(s, c, fn, opaque);
                return;
            }
            if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || c == '-') {
                s->state = ST_SCALAR;
                stream_put(s, c, fn, opaque);
                return;
            }
            if (c == '}' || c == ']' || c == ':' || c == ',') {
                /* A valid token in the wrong place: a grammar error, so no
                 * recovery, as in QEMU. */
                char one[2] = { (char)c, '\0' };
                fn(opaque, one, 1, "unexpected character between messages");
                return;
            }
            stream_lex_error(s, fn, opaque, "invalid character");
            return;

        case ST_SCALAR:
            if (is_scalar_char(c)) {
                stream_put(s, c, fn, opaque);
                return;
            }
            stream_done(s, fn, opaque);
            continue;           /* c begins whatever follows */

        case ST_CONTAINER:
            if (c == '{' || c == '[') {
                stream_open(s, c, fn, opaque);
                return;
            }
            if (c == '}' || c == ']') {
                if (!stream_put(s, c, fn, opaque))
                    return;
                if (--s->depth == 0)
                    stream_done(s, fn, opaque);
                return;
            }
            if (c == '"' || c == '\'') {
                s->quote = c;
                s->state = ST_STRING;
                stream_put(s, c, fn, opaque);
                return;
            }
            if (is_ws(c) || c == ':' || c == ',' || is_scalar_char(c)) {
                stream_put(s, c, fn, opaque);
                return;
            }
            stream_lex_error(s, fn, opaque, "invalid character");
            return;

        case ST_STRING:
        case ST_ESCAPE:
            /* QEMU's lexer accepts 0x20..0xFD in strings; the rest are
             * lexical errors (and 0xFF is the client's reset request). */
            if (c < 0x20 || c >= 0xFE) {
                stream_lex_error(s, fn, opaque, "invalid character in string");
                return;
            }
            if (!stream_put(s, c, fn, opaque))
                return;
            if (s->state == ST_ESCAPE) {
                s->state = ST_STRING;
            } else if (c == '\\') {
                s->state = ST_ESCAPE;
            } else if (c == s->quote) {
                if (s->depth == 0)
                    stream_done(s, fn, opaque);
                else
                    s->state = ST_CONTAINER;
            }
            return;
        }
        return;
    }
}

void json_stream_feed(struct json_stream *s, const char *buf, size_t len,
                      json_stream_fn *fn, void *opaque)
{
    for (size_t i = 0; i < len; i++)
        stream_byte(s, (unsigned char)buf[i], fn, opaque);
}
