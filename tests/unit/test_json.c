/* Unit tests for the QMP JSON module: values, parser (incl. QEMU's
 * extensions and every limit), serializer (byte-exact QEMU output) and the
 * stream splitter. Inputs are copied into exact-size heap buffers where
 * over-reads matter, so ASan catches any read past len. */
#include "monitor/json.h"
#include "test.h"

#include <math.h>
#include <stdlib.h>

/* Parse a C string through an exact-size heap copy (no NUL after it). */
static struct json *parse(const char *s, char *err, size_t errlen)
{
    size_t n = strlen(s);
    char *copy = malloc(n ? n : 1);
    if (!copy)
        return NULL;
    memcpy(copy, s, n);
    struct json *j = json_parse(copy, n, err, errlen);
    free(copy);
    return j;
}

/* Parse, serialize, free; returns the malloc'd text or NULL. */
static char *reserialize(const char *s)
{
    char err[128];
    struct json *j = parse(s, err, sizeof(err));
    if (!j) {
        printf("    parse(%s): %s\n", s, err);
        return NULL;
    }
    char *out = json_to_string(j);
    json_free(j);
    return out;
}

/* 1 if s fails to parse with an error message mentioning want. */
static int parse_fails(const char *s, const char *want)
{
    char err[128] = "";
    struct json *j = parse(s, err, sizeof(err));
    if (j) {
        printf("    parse(%s) unexpectedly succeeded\n", s);
        json_free(j);
        return 0;
    }
    if (!err[0] || (want && !strstr(err, want))) {
        printf("    parse(%s): error \"%s\", wanted \"%s\"\n", s, err, want ? want : "");
        return 0;
    }
    return 1;
}

#define CHECK_ROUNDTRIP(in, out)                                           \
    do {                                                                   \
        char *_s = reserialize(in);                                        \
        int _ok = _s && strcmp(_s, out) == 0;                              \
        if (!_ok)                                                          \
            printf("    got %s\n", _s ? _s : "(null)");                    \
        free(_s);                                                          \
        CHECK(_ok);                                                        \
    } while (0)

TEST(values_construct_and_get)
{
    struct json *o = json_object();
    CHECK(o);
    CHECK_EQ(json_object_set(o, "b", json_bool(true)), 0);
    CHECK_EQ(json_object_set(o, "i", json_int(-5)), 0);
    CHECK_EQ(json_object_set(o, "d", json_double(2.5)), 0);
    CHECK_EQ(json_object_set(o, "s", json_string("hi")), 0);
    CHECK_EQ(json_object_set(o, "n", json_null()), 0);
    CHECK_EQ(json_object_len(o), 5);
    CHECK(json_get_bool(json_object_get(o, "b")));
    CHECK_EQ(json_get_int(json_object_get(o, "i")), -5);
    CHECK(json_get_double(json_object_get(o, "i")) == -5.0);
    CHECK(json_get_double(json_object_get(o, "d")) == 2.5);
    CHECK_EQ(json_get_int(json_object_get(o, "d")), 2);
    CHECK_STR(json_get_string(json_object_get(o, "s")), "hi");
    CHECK_EQ(json_typeof(json_object_get(o, "n")), JSON_NULL);
    CHECK(json_object_get(o, "missing") == NULL);
    /* Wrong-type getters return their documented defaults. */
    CHECK(!json_get_bool(json_object_get(o, "i")));
    CHECK_EQ(json_get_int(json_object_get(o, "s")), 0);
    CHECK(json_get_string(json_object_get(o, "i")) == NULL);
    CHECK_EQ(json_array_len(o), 0);
    CHECK(json_array_at(o, 0) == NULL);
    CHECK(json_object_get(json_object_get(o, "s"), "x") == NULL);
    CHECK(json_object_key_at(o, 5) == NULL);
    CHECK(json_object_value_at(o, 5) == NULL);
    /* Replacing keeps the position. */
    CHECK_EQ(json_object_set(o, "i", json_int(7)), 0);
    CHECK_EQ(json_object_len(o), 5);
    CHECK_STR(json_object_key_at(o, 1), "i");
    CHECK_EQ(json_get_int(json_object_value_at(o, 1)), 7);
    char *s = json_to_string(o);
    CHECK_STR(s, "{\"b\": true, \"i\": 7, \"d\": 2.5, \"s\": \"hi\", \"n\": null}");
    free(s);
    /* Wrong container type: the value is freed (ASan would see a leak). */
    CHECK(json_array_append(o, json_int(1)) < 0);
    CHECK(json_object_set(json_object_get(o, "s"), "k", json_int(1)) < 0);
    json_free(o);
    /* Saturating int conversion of out-of-range doubles. */
    struct json *big = json_double(1e300), *small = json_double(-1e300);
    CHECK_EQ(json_get_int(big), INT64_MAX);
    CHECK_EQ(json_get_int(small), INT64_MIN);
    json_free(big);
    json_free(small);
    json_free(NULL);
}

TEST(values_insertion_order)
{
    struct json *o = json_object();
    const char *keys[] = { "zeta", "alpha", "mid", "beta", "a", "b", "c", "d", "e", "f", "g" };
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        CHECK_EQ(json_object_set(o, keys[i], json_int((int64_t)i)), 0);
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        CHECK_STR(json_object_key_at(o, i), keys[i]);
        CHECK_EQ(json_get_int(json_object_get(o, keys[i])), i);
    }
    json_free(o);
    /* Parsed objects keep source order too. */
    char err[128];
    struct json *p = parse("{\"z\": 1, \"y\": 2, \"x\": 3}", err, sizeof(err));
    CHECK(p);
    CHECK_STR(json_object_key_at(p, 0), "z");
    CHECK_STR(json_object_key_at(p, 2), "x");
    json_free(p);
}

TEST(string_with_nul)
{
    struct json *s = json_string_len("a\0b", 3);
    size_t n = 0;
    CHECK(s);
    CHECK(memcmp(json_get_string_len(s, &n), "a\0b", 4) == 0);
    CHECK_EQ(n, 3);
    CHECK_STR(json_get_string(s), "a");
    char *out = json_to_string(s);
    CHECK_STR(out, "\"a\\u0000b\"");
    free(out);
    json_free(s);

    char err[128];
    struct json *j = parse("{\"execute\\u0000x\": 1}", err, sizeof(err));
    CHECK(j);
    /* A key with an embedded NUL is not its C-string prefix. */
    CHECK(json_object_get(j, "execute") == NULL);
    out = json_to_string(j);
    CHECK_STR(out, "{\"execute\\u0000x\": 1}");
    free(out);
    json_free(j);
    CHECK(json_get_string_len(NULL, &n) == NULL);
    CHECK_EQ(n, 0);
}

TEST(serialize_qmp_exact)
{
    struct json *r = json_object();
    CHECK_EQ(json_object_set(r, "return", json_object()), 0);
    char *s = json_to_string(r);
    CHECK_STR(s, "{\"return\": {}}");
    free(s);
    json_free(r);

    /* The QMP greeting, as QEMU prints it. */
    struct json *qmp = json_object(), *inner = json_object(), *ver = json_object(),
                *q = json_object(), *caps = json_array();
    json_object_set(q, "micro", json_int(0));
    json_object_set(q, "minor", json_int(2));
    json_object_set(q, "major", json_int(7));
    json_object_set(ver, "qemu", q);
    json_object_set(ver, "package", json_string(""));
    json_object_set(inner, "version", ver);
    json_array_append(caps, json_string("oob"));
    json_object_set(inner, "capabilities", caps);
    json_object_set(qmp, "QMP", inner);
    s = json_to_string(qmp);
    CHECK_STR(s, "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, "
                 "\"major\": 7}, \"package\": \"\"}, \"capabilities\": [\"oob\"]}}");
    free(s);
    json_free(qmp);

    CHECK_ROUNDTRIP("[]", "[]");
    CHECK_ROUNDTRIP("[ 1 ,2,\n3 ]", "[1, 2, 3]");
    CHECK_ROUNDTRIP("[[], {}, [{}]]", "[[], {}, [{}]]");
    CHECK_ROUNDTRIP(" {\"error\":{\"class\":\"GenericError\",\"desc\":\"x\"},\"id\":1} ",
                    "{\"error\": {\"class\": \"GenericError\", \"desc\": \"x\"}, \"id\": 1}");
    CHECK_ROUNDTRIP("{\"event\": \"STOP\", \"data\": {}, \"timestamp\": "
                    "{\"seconds\": 1700000000, \"microseconds\": 123456}}",
                    "{\"event\": \"STOP\", \"data\": {}, \"timestamp\": "
                    "{\"seconds\": 1700000000, \"microseconds\": 123456}}");
    CHECK_ROUNDTRIP("[true,false,null]", "[true, false, null]");
}

TEST(serialize_escapes)
{
    /* QEMU's quoted_str: short escapes, \u00XX upper-case for the rest of
     * the controls, DEL and non-ASCII escaped, surrogate pairs. */
    struct json *s = json_string("\"\\/\b\f\n\r\t\x01\x1f\x7f" "\xc3\xa9" "\xe2\x82\xac"
                                 "\xf0\x9f\x98\x80");
    char *out = json_to_string(s);
    CHECK_STR(out, "\"\\\"\\\\/\\b\\f\\n\\r\\t\\u0001\\u001F\\u007F\\u00E9\\u20AC"
                   "\\uD83D\\uDE00\"");
    free(out);
    json_free(s);
    /* Bytes that are not UTF-8 become U+FFFD, one per byte. */
    s = json_string("a\xff" "b\xc3" "c\xed\xa0\x80");
    out = json_to_string(s);
    CHECK_STR(out, "\"a\\uFFFDb\\uFFFDc\\uFFFD\\uFFFD\\uFFFD\"");
    free(out);
    json_free(s);
    /* Keys get the same quoting. */
    struct json *o = json_object();
    json_object_set(o, "k\"\n\xc3\xa9", json_null());
    out = json_to_string(o);
    CHECK_STR(out, "{\"k\\\"\\n\\u00E9\": null}");
    free(out);
    json_free(o);
}

TEST(serialize_numbers)
{
    struct json *a = json_array();
    json_array_append(a, json_int(INT64_MIN));
    json_array_append(a, json_int(INT64_MAX));
    json_array_append(a, json_double(0.1));
    json_array_append(a, json_double(1.0));
    json_array_append(a, json_double(-0.0));
    json_array_append(a, json_double(1e300));
    json_array_append(a, json_double(INFINITY));
    json_array_append(a, json_double(-INFINITY));
    json_array_append(a, json_double(NAN));
    char *out = json_to_string(a);
    /* %.17g as QEMU; non-finite values are not JSON, so null. */
    CHECK_STR(out, "[-9223372036854775808, 9223372036854775807, 0.10000000000000001, 1, "
                   "-0, 1.0000000000000001e+300, null, null, null]");
    free(out);
    json_free(a);
}

TEST(parse_escapes)
{
    char err[128];
    struct json *j = parse("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\'\\u0041\\u00e9\\u20AC\"", err,
                           sizeof(err));
    CHECK(j);
    CHECK_STR(json_get_string(j), "\"\\/\b\f\n\r\t'A\xc3\xa9\xe2\x82\xac");
    json_free(j);
    CHECK(parse_fails("\"\\x\"", "invalid escape in string at offset 1"));
    CHECK(parse_fails("\"\\a\"", "invalid escape"));
    CHECK(parse_fails("\"\\u12\"", "invalid \\u escape"));
    CHECK(parse_fails("\"\\u12g4\"", "invalid \\u escape"));
    CHECK(parse_fails("\"\\u", "unterminated string"));
    CHECK(parse_fails("\"\\", "unterminated string"));
    CHECK(parse_fails("\"abc", "unterminated string"));
    /* Raw control characters must be escaped (RFC 8259 §7). */
    CHECK(parse_fails("\"a\nb\"", "control character in string at offset 2"));
    CHECK(parse_fails("\"a\tb\"", "control character"));
    CHECK(parse_fails("\"\x01\"", "control character"));
    /* Raw UTF-8 is accepted, invalid UTF-8 is not. */
    j = parse("\"\xc3\xa9\xf0\x9f\x98\x80\"", err, sizeof(err));
    CHECK(j);
    CHECK_STR(json_get_string(j), "\xc3\xa9\xf0\x9f\x98\x80");
    json_free(j);
    CHECK(parse_fails("\"\xc0\x80\"", "invalid UTF-8"));         /* overlong NUL */
    CHECK(parse_fails("\"\xe0\x80\xaf\"", "invalid UTF-8"));     /* overlong '/' */
    CHECK(parse_fails("\"\xed\xa0\x80\"", "invalid UTF-8"));     /* encoded surrogate */
    CHECK(parse_fails("\"\xf4\x90\x80\x80\"", "invalid UTF-8")); /* > U+10FFFF */
    CHECK(parse_fails("\"\xf5\"", "invalid UTF-8"));
    CHECK(parse_fails("\"\xff\"", "invalid UTF-8"));
    CHECK(parse_fails("\"\xc3\"", "invalid UTF-8"));             /* truncated */
    CHECK(parse_fails("\"\x80\"", "invalid UTF-8"));             /* lone continuation */
}

TEST(parse_surrogates)
{
    char err[128];
    struct json *j = parse("\"\\uD83D\\uDE00\\ud800\\udc00\\uDBFF\\uDFFF\"", err, sizeof(err));
    CHECK(j);
    CHECK_STR(json_get_string(j), "\xf0\x9f\x98\x80\xf0\x90\x80\x80\xf4\x8f\xbf\xbf");
    char *out = json_to_string(j);
    CHECK_STR(out, "\"\\uD83D\\uDE00\\uD800\\uDC00\\uDBFF\\uDFFF\"");
    free(out);
    json_free(j);
    j = parse("\"\\u0000\"", err, sizeof(err));
    size_t n;
    CHECK(j);
    CHECK(json_get_string_len(j, &n) && n == 1 && json_get_string(j)[0] == 0);
    json_free(j);
    CHECK(parse_fails("\"\\uD800\"", "lone leading surrogate"));
    CHECK(parse_fails("\"\\uD800x\"", "lone leading surrogate"));
    CHECK(parse_fails("\"\\uD800\\n\"", "lone leading surrogate"));
    CHECK(parse_fails("\"\\uD800\\u0041\"", "lone leading surrogate"));
    CHECK(parse_fails("\"\\uD800\\uD800\"", "lone leading surrogate"));
    CHECK(parse_fails("\"\\uD800\\uDC0\"", "lone leading surrogate"));
    CHECK(parse_fails("\"\\uDC00\"", "lone trailing surrogate"));
    CHECK(parse_fails("\"\\uDFFF\\uD800\"", "lone trailing surrogate"));
}

static int num_is(const char *s, enum json_type t, int64_t i, double d)
{
    char err[128];
    struct json *j = parse(s, err, sizeof(err));
    if (!j) {
        printf("    parse(%s): %s\n", s, err);
        return 0;
    }
    int ok = json_typeof(j) == t &&
             (t == JSON_INT ? json_get_int(j) == i : json_get_double(j) == d);
    if (!ok)
        printf("    parse(%s): type %d int %lld double %.17g\n", s, json_typeof(j),
               (long long)json_get_int(j), json_get_double(j));
    json_free(j);
    return ok;
}

TEST(parse_numbers)
{
    CHECK(num_is("0", JSON_INT, 0, 0));
    CHECK(num_is("-0", JSON_INT, 0, 0));
    CHECK(num_is("42", JSON_INT, 42, 0));
    CHECK(num_is("-42", JSON_INT, -42, 0));
    CHECK(num_is("9223372036854775807", JSON_INT, INT64_MAX, 0));
    CHECK(num_is("-9223372036854775808", JSON_INT, INT64_MIN, 0));
    /* Beyond int64: a double (QEMU would keep a uint64 up to 2^64-1). */
    CHECK(num_is("9223372036854775808", JSON_DOUBLE, 0, 9223372036854775808.0));
    CHECK(num_is("-9223372036854775809", JSON_DOUBLE, 0, -9223372036854775808.0));
    CHECK(num_is("18446744073709551615", JSON_DOUBLE, 0, 18446744073709551616.0));
    CHECK(num_is("100000000000000000000000000000", JSON_DOUBLE, 0, 1e29));
    CHECK(num_is("1.5", JSON_DOUBLE, 0, 1.5));
    CHECK(num_is("-0.25", JSON_DOUBLE, 0, -0.25));
    CHECK(num_is("1e2", JSON_DOUBLE, 0, 100.0));
    CHECK(num_is("1E+2", JSON_DOUBLE, 0, 100.0));
    CHECK(num_is("25e-1", JSON_DOUBLE, 0, 2.5));
    CHECK(num_is("0.0", JSON_DOUBLE, 0, 0.0));
    CHECK(num_is("1e-400", JSON_DOUBLE, 0, 0.0));      /* underflow is fine */
    CHECK(num_is("1.7976931348623157e308", JSON_DOUBLE, 0, 1.7976931348623157e308));
    char err[128];
    struct json *j = parse("-0.0", err, sizeof(err));
    CHECK(j && json_typeof(j) == JSON_DOUBLE && signbit(json_get_double(j)));
    json_free(j);
    CHECK(parse_fails("1e400", "number out of range at offset 0"));
    CHECK(parse_fails("[-1e400]", "number out of range at offset 1"));
    CHECK(parse_fails("01", "expected end of input"));
    CHECK(parse_fails("+1", "expected a value"));
    CHECK(parse_fails("1.", "invalid number"));
    CHECK(parse_fails(".5", "expected a value"));
    CHECK(parse_fails("-", "invalid number"));
    CHECK(parse_fails("-a", "invalid number"));
    CHECK(parse_fails("1e", "invalid number"));
    CHECK(parse_fails("1e+", "invalid number"));
    CHECK(parse_fails("--1", "invalid number"));
    CHECK(parse_fails("0x10", "expected end of input"));
    CHECK(parse_fails("NaN", "expected a value"));
    CHECK(parse_fails("Infinity", "expected a value"));
    CHECK(parse_fails("-Infinity", "invalid number"));
    /* A long number goes through a heap copy for strtod. */
    char big[310];
    memset(big, '1', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    j = parse(big, err, sizeof(err));
    CHECK(j && json_typeof(j) == JSON_DOUBLE && json_get_double(j) > 1e307);
    json_free(j);
    big[0] = '0';
    big[1] = '.';
    j = parse(big, err, sizeof(err));
    CHECK(j && json_typeof(j) == JSON_DOUBLE && json_get_double(j) > 0.11);
    json_free(j);
}

TEST(parse_number_not_nul_terminated)
{
    /* The byte after len must not be read as part of the number. */
    const char src[] = "1234e5";
    char *buf = malloc(3);
    memcpy(buf, src, 3);
    char err[128];
    struct json *j = json_parse(buf, 3, err, sizeof(err));
    CHECK(j && json_get_int(j) == 123);
    json_free(j);
    j = json_parse(src, 4, err, sizeof(err));
    CHECK(j && json_get_int(j) == 1234);
    json_free(j);
    j = json_parse(src, 5, err, sizeof(err));
    CHECK(j == NULL);
    json_free(j);
    free(buf);
    j = json_parse("truex", 4, err, sizeof(err));
    CHECK(j && json_get_bool(j));
    json_free(j);
}

TEST(parse_keywords_and_errors)
{
    char err[128];
    struct json *j = parse(" \t\r\ntrue \n", err, sizeof(err));
    CHECK(j && json_typeof(j) == JSON_BOOL && json_get_bool(j));
    json_free(j);
    j = parse("false", err, sizeof(err));
    CHECK(j && json_typeof(j) == JSON_BOOL && !json_get_bool(j));
    json_free(j);
    j = parse("null", err, sizeof(err));
    CHECK(j && json_typeof(j) == JSON_NULL);
    json_free(j);
    CHECK(parse_fails("tru", "expected a value"));
    CHECK(parse_fails("nul", "expected a value"));
    CHECK(parse_fails("truex", "expected end of input, got 'x' at offset 4"));
    CHECK(parse_fails("True", "expected a value, got 'T' at offset 0"));
    CHECK(parse_fails("", "unexpected end of input (expected a value) at offset 0"));
    CHECK(parse_fails("   ", "unexpected end of input"));
    CHECK(parse_fails("{\"a\" 1}", "expected ':', got '1' at offset 5"));
    CHECK(parse_fails("{\"a\": 1,}", "expected string key, got '}' at offset 8"));
    CHECK(parse_fails("{\"a\": 1 \"b\": 2}", "expected ',' or '}'"));
    CHECK(parse_fails("[1 2]", "expected ',' or ']', got '2' at offset 3"));
    CHECK(parse_fails("[1,]", "expected a value, got ']' at offset 3"));
    CHECK(parse_fails("[,1]", "expected a value"));
    CHECK(parse_fails("{1: 2}", "expected string key"));
    CHECK(parse_fails("{a: 2}", "expected string key"));
    CHECK(parse_fails("[1]]", "expected end of input, got ']' at offset 3"));
    CHECK(parse_fails("{} {}", "expected end of input"));
    CHECK(parse_fails("[\x01]", "got byte 0x01 at offset 1"));
    CHECK(parse_fails("@", "got '@'"));
    CHECK(parse_fails("\xef\xbb\xbf{}", "got byte 0xef"));   /* no BOM */
    CHECK(parse_fails("{\"a\": 1, \"a\": 2}", "duplicate key in object at offset 0"));
    CHECK(parse_fails("[{\"a\": 1, 'a': 2}]", "duplicate key in object at offset 1"));
    /* Many members: the sorted duplicate check. */
    CHECK(parse_fails("{\"a\":0,\"b\":0,\"c\":0,\"d\":0,\"e\":0,\"f\":0,\"g\":0,\"h\":0,"
                      "\"i\":0,\"j\":0,\"e\":1}", "duplicate key"));
    j = parse("{\"a\":0,\"b\":0,\"c\":0,\"d\":0,\"e\":0,\"f\":0,\"g\":0,\"h\":0,"
              "\"i\":0,\"j\":0,\"ab\":1,\"\":2}", err, sizeof(err));
    CHECK(j && json_object_len(j) == 12);
    CHECK_EQ(json_get_int(json_object_get(j, "")), 2);
    json_free(j);
    /* A NULL err buffer is allowed; a tiny one is truncated safely. */
    CHECK(json_parse("[", 1, NULL, 0) == NULL);
    char tiny[4];
    CHECK(json_parse("[", 1, tiny, sizeof(tiny)) == NULL);
    CHECK_EQ(strlen(tiny), 3);
    CHECK(json_parse(NULL, 0, err, sizeof(err)) == NULL);
}

TEST(parse_single_quotes)
{
    char err[128];
    struct json *j = parse("{'execute': 'qmp_capabilities', 'arguments': {'a': 'x\"y', "
                           "\"b\": \"it's\", 'c': 'it\\'s'}}", err, sizeof(err));
    CHECK(j);
    CHECK_STR(json_get_string(json_object_get(j, "execute")), "qmp_capabilities");
    struct json *args = json_object_get(j, "arguments");
    CHECK_STR(json_get_string(json_object_get(args, "a")), "x\"y");
    CHECK_STR(json_get_string(json_object_get(args, "b")), "it's");
    CHECK_STR(json_get_string(json_object_get(args, "c")), "it's");
    char *out = json_to_string(j);
    CHECK_STR(out, "{\"execute\": \"qmp_capabilities\", \"arguments\": {\"a\": \"x\\\"y\", "
                   "\"b\": \"it's\", \"c\": \"it's\"}}");
    free(out);
    json_free(j);
    CHECK(parse_fails("'abc", "unterminated string"));
    CHECK(parse_fails("'a'b'", "expected end of input"));
}

static char *nested(int depth, const char *open, const char *close, const char *mid)
{
    size_t lo = strlen(open), lc = strlen(close), lm = strlen(mid);
    char *s = malloc((size_t)depth * (lo + lc) + lm + 1), *p = s;
    for (int i = 0; i < depth; i++, p += lo)
        memcpy(p, open, lo);
    memcpy(p, mid, lm);
    p += lm;
    for (int i = 0; i < depth; i++, p += lc)
        memcpy(p, close, lc);
    *p = 0;
    return s;
}

TEST(parse_nesting_limit)
{
    char err[128];
    char *s = nested(JSON_MAX_DEPTH, "[", "]", "1");
    struct json *j = parse(s, err, sizeof(err));
    free(s);
    CHECK(j);
    json_free(j);
    s = nested(JSON_MAX_DEPTH + 1, "[", "]", "1");
    j = parse(s, err, sizeof(err));
    free(s);
    CHECK(!j);
    CHECK(strstr(err, "nesting deeper than 64 at offset 64"));
    s = nested(JSON_MAX_DEPTH, "{\"a\":", "}", "{}");     /* 65 objects */
    CHECK(parse_fails(s, "nesting deeper than 64"));
    free(s);
    s = nested(JSON_MAX_DEPTH - 1, "{\"a\":", "}", "{}");
    j = parse(s, err, sizeof(err));
    free(s);
    CHECK(j);
    json_free(j);
    /* Far past the limit: fails fast, no stack overflow. */
    s = nested(200000, "[", "", "");
    CHECK(parse_fails(s, "nesting deeper"));
    free(s);
}

TEST(parse_size_limit)
{
    char err[128];
    size_t n = JSON_MAX_INPUT + 1;
    char *s = malloc(n);
    memset(s, ' ', n);
    s[0] = '0';
    CHECK(json_parse(s, n, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "longer than"));
    struct json *j = json_parse(s, n - 1, err, sizeof(err));
    CHECK(j && json_get_int(j) == 0);
    json_free(j);
    /* A big but legal string. */
    s[0] = '"';
    memset(s + 1, 'x', n - 3);
    s[n - 2] = '"';
    j = json_parse(s, n - 1, err, sizeof(err));
    CHECK(j && strlen(json_get_string(j)) == n - 3);
    json_free(j);
    free(s);
}

TEST(parse_truncated_prefixes)
{
    /* Every proper prefix of these is invalid JSON: each must fail with a
     * message, reading nothing past the prefix (exact-size copies). */
    const char *msgs[] = {
        "{\"execute\": \"qmp_capabilities\"}",
        ("{\"execute\": \"blockdev-add\", \"arguments\": {\"driver\": \"qcow2\", "
         "\"node-name\": \"d0\", \"file\": {\"driver\": \"file\", \"filename\": "
         "\"/tmp/a.qcow2\"}, \"read-only\": false, \"cache\": {\"direct\": true}}, "
         "\"id\": 17}"),
        "[1, -2.5e-3, true, false, null, \"\\u00e9\\uD83D\\uDE00\\n\", [], {}]",
        "{'a': ['b', {'c': -0}]}",
        "\"\\\\\\\"\\/\"",
        ("{\"event\": \"SHUTDOWN\", \"data\": {\"guest\": true, \"reason\": "
         "\"guest-shutdown\"}, \"timestamp\": {\"seconds\": 1, \"microseconds\": 2}}"),
    };
    for (size_t m = 0; m < sizeof(msgs) / sizeof(msgs[0]); m++) {
        size_t len = strlen(msgs[m]);
        for (size_t n = 0; n < len; n++) {
            char *buf = malloc(n ? n : 1);
            memcpy(buf, msgs[m], n);
            char err[128] = "";
            struct json *j = json_parse(buf, n, err, sizeof(err));
            free(buf);
            if (j || !err[0])
                printf("    msg %zu prefix %zu: %s\n", m, n, j ? "parsed" : "no error");
            CHECK(!j);
            CHECK(err[0]);
        }
        char err[128];
        struct json *j = parse(msgs[m], err, sizeof(err));
        CHECK(j);
        /* And the full message survives serialize + re-parse. */
        char *out = json_to_string(j);
        CHECK(out);
        struct json *k = parse(out, err, sizeof(err));
        CHECK(k);
        CHECK(json_equal(j, k));
        free(out);
        json_free(j);
        json_free(k);
    }
}

TEST(equal)
{
    char err[128];
    struct json *a = parse("{\"x\": [1, 2.0, \"s\"], \"y\": null}", err, sizeof(err));
    struct json *b = parse("{\"y\": null, \"x\": [1.0, 2, \"s\"]}", err, sizeof(err));
    struct json *c = parse("{\"y\": null, \"x\": [1.5, 2, \"s\"]}", err, sizeof(err));
    struct json *d = parse("{\"y\": false, \"x\": [1, 2, \"s\"]}", err, sizeof(err));
    CHECK(a && b && c && d);
    CHECK(json_equal(a, b));
    CHECK(!json_equal(a, c));
    CHECK(!json_equal(a, d));
    json_free(a);
    json_free(b);
    json_free(c);
    json_free(d);
    a = json_int(INT64_MAX);
    b = json_double(9223372036854775808.0);
    CHECK(!json_equal(a, b));
    json_free(a);
    json_free(b);
    a = json_string_len("a\0b", 3);
    b = json_string_len("a\0c", 3);
    CHECK(!json_equal(a, b));
    json_free(a);
    json_free(b);
}

TEST(copy)
{
    char err[128];
    struct json *a = parse("{\"k\\u0000x\": [1, 2.5, \"s\\u0000t\", null, true, {}], "
                           "\"b\": {\"c\": []}}", err, sizeof(err));
    CHECK(a);
    struct json *b = json_copy(a);
    CHECK(b && b != a);
    CHECK(json_equal(a, b));
    char *sa = json_to_string(a), *sb = json_to_string(b);
    CHECK_STR(sa, sb);
    CHECK_STR(sa, "{\"k\\u0000x\": [1, 2.5, \"s\\u0000t\", null, true, {}], "
                  "\"b\": {\"c\": []}}");
    free(sa);
    free(sb);
    /* Independent: changing the copy leaves the original alone. */
    CHECK_EQ(json_object_set(b, "b", json_int(1)), 0);
    CHECK(!json_equal(a, b));
    CHECK_EQ(json_typeof(json_object_get(a, "b")), JSON_OBJECT);
    json_free(a);
    json_free(b);
    CHECK(json_copy(NULL) == NULL);
}

/* ---- stream splitter ------------------------------------------------- */

struct collected {
    int n;
    char *text[32];
    int is_error[32];
};

static void collect(void *opaque, const char *text, size_t textlen, const char *error)
{
    struct collected *c = opaque;
    if (c->n >= 32)
        return;
    /* Errors are recorded as "!<reason>", messages as their text. */
    if (error) {
        c->text[c->n] = strdup(error);
    } else {
        c->text[c->n] = malloc(textlen + 1);
        memcpy(c->text[c->n], text, textlen);
        c->text[c->n][textlen] = 0;
    }
    c->is_error[c->n] = error != NULL;
    c->n++;
}

static void collected_free(struct collected *c)
{
    for (int i = 0; i < c->n; i++)
        free(c->text[i]);
    c->n = 0;
}

/* Feed s in pieces of `chunk` bytes (0: all at once), each an exact-size
 * heap copy. */
static void feed(struct json_stream *st, const char *s, size_t len, size_t chunk,
                 struct collected *c)
{
    if (!chunk)
        chunk = len ? len : 1;
    for (size_t off = 0; off < len; off += chunk) {
        size_t n = len - off < chunk ? len - off : chunk;
        char *b = malloc(n);
        memcpy(b, s + off, n);
        json_stream_feed(st, b, n, collect, c);
        free(b);
    }
}

#define CHECK_MSG(c, i, s) do { CHECK((c)->n > (i)); CHECK(!(c)->is_error[i]); \
                                CHECK_STR((c)->text[i], s); } while (0)
#define CHECK_ERR(c, i, s) do { CHECK((c)->n > (i)); CHECK((c)->is_error[i]); \
                                CHECK(strstr((c)->text[i], s)); } while (0)

TEST(stream_split_any_chunking)
{
    const char in[] = "{\"execute\": \"qmp_capabilities\"}\r\n"
                      "{'execute': 'x', 'arguments': {'s': '}]{[\\'\"'}}"
                      "[\"\\\"}\", {}]  \"top\\\"level\" 123 -4.5e3\ttrue null{}";
    for (size_t chunk = 0; chunk <= 7; chunk++) {
        struct json_stream *st = json_stream_new();
        struct collected c = { 0 };
        CHECK(st);
        feed(st, in, sizeof(in) - 1, chunk, &c);
        /* "{}" closes at once; nothing is left pending. */
        if (c.n != 9)
            printf("    chunk %zu: %d messages\n", chunk, c.n);
        CHECK_EQ(c.n, 9);
        CHECK_MSG(&c, 0, "{\"execute\": \"qmp_capabilities\"}");
        CHECK_MSG(&c, 1, "{'execute': 'x', 'arguments': {'s': '}]{[\\'\"'}}");
        CHECK_MSG(&c, 2, "[\"\\\"}\", {}]");
        CHECK_MSG(&c, 3, "\"top\\\"level\"");
        CHECK_MSG(&c, 4, "123");
        CHECK_MSG(&c, 5, "-4.5e3");
        CHECK_MSG(&c, 6, "true");
        CHECK_MSG(&c, 7, "null");
        CHECK_MSG(&c, 8, "{}");
        for (int i = 0; i < c.n; i++) {
            char err[128];
            struct json *j = parse(c.text[i], err, sizeof(err));
            CHECK(j);
            json_free(j);
        }
        collected_free(&c);
        json_stream_free(st);
    }
}

TEST(stream_scalar_waits_for_delimiter)
{
    struct json_stream *st = json_stream_new();
    struct collected c = { 0 };
    feed(st, "12", 2, 0, &c);
    CHECK_EQ(c.n, 0);
    feed(st, "3", 1, 0, &c);
    CHECK_EQ(c.n, 0);
    feed(st, "\n", 1, 0, &c);
    CHECK_MSG(&c, 0, "123");
    /* A scalar directly followed by a bracket: both messages. */
    feed(st, "false[1]", 8, 0, &c);
    CHECK_EQ(c.n, 3);
    CHECK_MSG(&c, 1, "false");
    CHECK_MSG(&c, 2, "[1]");
    collected_free(&c);
    json_stream_free(st);
}

TEST(stream_garbage_then_recovery)
{
    struct json_stream *st = json_stream_new();
    struct collected c = { 0 };
    /* A lexical error mid-message: one error, the rest of the line is
     * dropped, the next line works. */
    const char in1[] = "{\"execute\": @@@ garbage \"quoted\" more\n{\"execute\": \"stop\"}";
    feed(st, in1, sizeof(in1) - 1, 1, &c);
    CHECK_EQ(c.n, 2);
    CHECK_ERR(&c, 0, "invalid character");
    CHECK_MSG(&c, 1, "{\"execute\": \"stop\"}");
    collected_free(&c);

    /* Garbage between messages, then a brace resynchronises too. */
    const char in2[] = "@#$ junk{\"a\": 1}";
    feed(st, in2, sizeof(in2) - 1, 0, &c);
    CHECK_EQ(c.n, 2);
    CHECK_ERR(&c, 0, "invalid character");
    CHECK_MSG(&c, 1, "{\"a\": 1}");
    collected_free(&c);

    /* Words look like keywords to the splitter: each is a candidate that
     * json_parse then rejects (QEMU does the same). */
    feed(st, "hello world\n", 12, 0, &c);
    CHECK_EQ(c.n, 2);
    CHECK_MSG(&c, 0, "hello");
    CHECK_MSG(&c, 1, "world");
    collected_free(&c);
    feed(st, "\n[2]", 4, 0, &c);
    CHECK_EQ(c.n, 1);
    CHECK_MSG(&c, 0, "[2]");
    collected_free(&c);

    /* Stray closers are reported one by one without recovery. */
    feed(st, "}] [3]", 6, 0, &c);
    CHECK_EQ(c.n, 3);
    CHECK_ERR(&c, 0, "unexpected character");
    CHECK_ERR(&c, 1, "unexpected character");
    CHECK_MSG(&c, 2, "[3]");
    collected_free(&c);

    /* A raw newline inside a string is a lexical error; recovery stops at
     * that newline, so the next line is a fresh message. */
    feed(st, "{\"a\": \"x\n{\"b\": 2}", 17, 0, &c);
    CHECK_EQ(c.n, 2);
    CHECK_ERR(&c, 0, "invalid character in string");
    CHECK_MSG(&c, 1, "{\"b\": 2}");
    collected_free(&c);

    /* Non-ASCII outside strings is garbage; inside strings it is fine. */
    feed(st, "[\"\xc3\xa9\"] \xc3\xa9\n[4]", 13, 0, &c);
    CHECK_EQ(c.n, 3);
    CHECK_MSG(&c, 0, "[\"\xc3\xa9\"]");
    CHECK_ERR(&c, 1, "invalid character");
    CHECK_MSG(&c, 2, "[4]");
    collected_free(&c);
    json_stream_free(st);
}

TEST(stream_0xff_resets)
{
    struct json_stream *st = json_stream_new();
    struct collected c = { 0 };
    /* An unterminated object and string would swallow everything after
     * them; 0xFF drops them. */
    const char in[] = "{\"execute\": \"unterminated\xff{\"execute\": \"cont\"}";
    feed(st, in, sizeof(in) - 1, 0, &c);
    CHECK_EQ(c.n, 2);
    CHECK_ERR(&c, 0, "invalid character in string");
    CHECK_MSG(&c, 1, "{\"execute\": \"cont\"}");
    collected_free(&c);
    feed(st, "[[[[\xff[5]", 8, 0, &c);
    CHECK_EQ(c.n, 2);
    CHECK_ERR(&c, 0, "invalid character");
    CHECK_MSG(&c, 1, "[5]");
    collected_free(&c);
    /* json_stream_reset forgets a partial message silently. */
    feed(st, "{\"a\": [1, 2", 11, 0, &c);
    json_stream_reset(st);
    feed(st, "[6]", 3, 0, &c);
    CHECK_EQ(c.n, 1);
    CHECK_MSG(&c, 0, "[6]");
    collected_free(&c);
    json_stream_free(st);
}

TEST(stream_oversize_rejected_then_next_ok)
{
    struct json_stream *st = json_stream_new();
    struct collected c = { 0 };
    /* An object over the limit whose body holds brackets and quotes in a
     * string: reported once, skipped to its end, then the next one works. */
    size_t body = JSON_MAX_INPUT + 100;
    char *big = malloc(body * 2 + 64);
    size_t n = 0;
    n += (size_t)sprintf(big, "{\"execute\": \"x\", \"arguments\": {\"s\": \"");
    for (size_t i = 0; i < body; i++) {
        if (i % 1000 == 999) {          /* an escaped quote now and then */
            big[n++] = '\\';
            big[n++] = '"';
        } else {
            big[n++] = "a{[x]}"[i % 6];
        }
    }
    n += (size_t)sprintf(big + n, "\"}}");
    feed(st, big, n, 4096, &c);
    feed(st, "{\"execute\": \"query-status\"}", 27, 0, &c);
    CHECK_EQ(c.n, 2);
    CHECK_ERR(&c, 0, "too large");
    CHECK_MSG(&c, 1, "{\"execute\": \"query-status\"}");
    collected_free(&c);

    /* Exactly at the limit is still one message. */
    big[0] = '[';
    memset(big + 1, ' ', JSON_MAX_INPUT - 2);
    big[JSON_MAX_INPUT - 1] = ']';
    feed(st, big, JSON_MAX_INPUT, 65536, &c);
    CHECK_EQ(c.n, 1);
    CHECK(!c.is_error[0]);
    CHECK_EQ(strlen(c.text[0]), JSON_MAX_INPUT);
    collected_free(&c);

    /* An oversize top-level string. */
    big[0] = '"';
    memset(big + 1, 'x', JSON_MAX_INPUT + 10);
    big[JSON_MAX_INPUT + 11] = '"';
    feed(st, big, JSON_MAX_INPUT + 12, 0, &c);
    feed(st, " 7 ", 3, 0, &c);
    CHECK_EQ(c.n, 2);
    CHECK_ERR(&c, 0, "too large");
    CHECK_MSG(&c, 1, "7");
    collected_free(&c);
    free(big);
    json_stream_free(st);
}

TEST(stream_too_deep_rejected_then_next_ok)
{
    struct json_stream *st = json_stream_new();
    struct collected c = { 0 };
    char *s = nested(JSON_MAX_DEPTH, "[", "]", "0");
    feed(st, s, strlen(s), 1, &c);
    free(s);
    CHECK_EQ(c.n, 1);
    CHECK(!c.is_error[0]);
    collected_free(&c);
    s = nested(JSON_MAX_DEPTH + 50, "{\"a\": [", "]}", "\"}}}]]]\"");
    feed(st, s, strlen(s), 3, &c);
    free(s);
    feed(st, "{\"execute\": \"cont\"}", 19, 0, &c);
    CHECK_EQ(c.n, 2);
    CHECK_ERR(&c, 0, "nesting too deep");
    CHECK_MSG(&c, 1, "{\"execute\": \"cont\"}");
    collected_free(&c);
    json_stream_free(st);
}

int main(void)
{
    RUN(values_construct_and_get);
    RUN(values_insertion_order);
    RUN(string_with_nul);
    RUN(serialize_qmp_exact);
    RUN(serialize_escapes);
    RUN(serialize_numbers);
    RUN(parse_escapes);
    RUN(parse_surrogates);
    RUN(parse_numbers);
    RUN(parse_number_not_nul_terminated);
    RUN(parse_keywords_and_errors);
    RUN(parse_single_quotes);
    RUN(parse_nesting_limit);
    RUN(parse_size_limit);
    RUN(parse_truncated_prefixes);
    RUN(equal);
    RUN(copy);
    RUN(stream_split_any_chunking);
    RUN(stream_scalar_waits_for_delimiter);
    RUN(stream_garbage_then_recovery);
    RUN(stream_0xff_resets);
    RUN(stream_oversize_rejected_then_next_ok);
    RUN(stream_too_deep_rejected_then_next_ok);
    return test_summary();
}
