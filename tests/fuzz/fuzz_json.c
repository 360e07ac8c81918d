/* fuzz-sources: src/monitor/json.c */
/* QMP input comes from whoever can open the monitor socket: neither the
 * parser nor the stream splitter may crash, leak, hang or read past the
 * buffer, whatever the bytes. Beyond "no crash" this checks properties:
 *  - parse -> serialize -> parse gives an equal value, and serializing is
 *    stable from then on (output is QEMU-style ASCII that parses back);
 *  - the splitter reports the same events whatever the read sizes (chunk
 *    sizes come from a PRNG seeded by the input);
 *  - a value json_parse accepts, followed by a newline, comes out of the
 *    splitter as exactly one message: its text without surrounding white
 *    space. */
#include "monitor/json.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A transcript of splitter callbacks, to compare two feeding schedules. */
struct transcript {
    char *buf;
    size_t len, cap;
    size_t messages, errors;
    size_t first_len;           /* text of the first message */
    char *first;
};

static void transcript_add(struct transcript *t, const void *p, size_t n)
{
    if (t->len + n > t->cap) {
        size_t cap = t->cap ? t->cap : 256;
        while (cap < t->len + n)
            cap *= 2;
        char *nb = realloc(t->buf, cap);
        if (!nb)
            abort();
        t->buf = nb;
        t->cap = cap;
    }
    memcpy(t->buf + t->len, p, n);
    t->len += n;
}

static void on_message(void *opaque, const char *text, size_t textlen, const char *error)
{
    struct transcript *t = opaque;
    /* The splitter never hands out more than the parser accepts. */
    if (textlen > JSON_MAX_INPUT || text[textlen] != '\0')
        abort();
    char tag = error ? 'E' : 'M';
    transcript_add(t, &tag, 1);
    transcript_add(t, &textlen, sizeof(textlen));
    transcript_add(t, text, textlen);
    if (error) {
        transcript_add(t, error, strlen(error) + 1);
        t->errors++;
        return;
    }
    if (t->messages++ == 0) {
        t->first = malloc(textlen + 1);
        if (!t->first)
            abort();
        memcpy(t->first, text, textlen + 1);
        t->first_len = textlen;
    }
    /* Exercise the parser on every candidate, as the monitor will. */
    char err[128];
    json_free(json_parse(text, textlen, err, sizeof(err)));
}

static void transcript_free(struct transcript *t)
{
    free(t->buf);
    free(t->first);
}

/* xorshift64: deterministic chunk sizes from the input's own hash. */
static uint64_t next_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void check_roundtrip(const struct json *v)
{
    char err[128];
    char *s1 = json_to_string(v);
    if (!s1)
        abort();
    struct json *v2 = json_parse(s1, strlen(s1), err, sizeof(err));
    if (!v2) {
        fprintf(stderr, "re-parse of %s failed: %s\n", s1, err);
        abort();
    }
    if (!json_equal(v, v2)) {
        fprintf(stderr, "round trip changed the value: %s\n", s1);
        abort();
    }
    /* After one round numbers have settled (a double printed as "1"
     * re-parses as an int), so text must now be a fixed point. */
    char *s2 = json_to_string(v2);
    struct json *v3 = s2 ? json_parse(s2, strlen(s2), err, sizeof(err)) : NULL;
    char *s3 = v3 ? json_to_string(v3) : NULL;
    if (!s3 || strcmp(s2, s3) != 0) {
        fprintf(stderr, "serialization not stable: %s vs %s\n", s2 ? s2 : "(null)",
                s3 ? s3 : "(null)");
        abort();
    }
    for (const char *p = s1; *p; p++) {
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7F) {
            fprintf(stderr, "non-ASCII output byte 0x%02x\n", (unsigned char)*p);
            abort();
        }
    }
    struct json *c = json_copy(v);
    char *sc = c ? json_to_string(c) : NULL;
    if (!sc || !json_equal(v, c) || strcmp(sc, s1) != 0) {
        fprintf(stderr, "json_copy differs: %s\n", sc ? sc : "(null)");
        abort();
    }
    free(sc);
    json_free(c);
    free(s1);
    free(s2);
    free(s3);
    json_free(v2);
    json_free(v3);
}

static void check_stream(const uint8_t *data, size_t size, bool parsed)
{
    /* Feed once whole and once in random chunks, each chunk an exact-size
     * copy so ASan sees any read past it. */
    struct transcript whole = { 0 }, chunked = { 0 };
    struct json_stream *a = json_stream_new(), *b = json_stream_new();
    if (!a || !b)
        abort();
    uint8_t *copy = malloc(size + 1);
    if (!copy)
        abort();
    memcpy(copy, data, size);
    copy[size] = '\n';      /* ends a trailing top-level number/keyword */
    json_stream_feed(a, (const char *)copy, size + 1, on_message, &whole);

    uint64_t seed = 0x9E3779B97F4A7C15ull ^ size;
    for (size_t i = 0; i < size; i++)
        seed = (seed ^ data[i]) * 0x100000001B3ull;
    if (!seed)
        seed = 1;
    size_t off = 0;
    while (off < size + 1) {
        uint64_t r = next_rand(&seed);
        /* Mostly tiny reads, sometimes large ones. */
        size_t n = (r & 3) ? 1 + (r >> 8) % 8 : 1 + (r >> 8) % 512;
        if (n > size + 1 - off)
            n = size + 1 - off;
        char *piece = malloc(n);
        if (!piece)
            abort();
        memcpy(piece, copy + off, n);
        json_stream_feed(b, piece, n, on_message, &chunked);
        free(piece);
        off += n;
    }
    if (whole.len != chunked.len ||
        (whole.len && memcmp(whole.buf, chunked.buf, whole.len) != 0)) {
        fprintf(stderr, "splitter output depends on read sizes\n");
        abort();
    }

    if (parsed) {
        /* Trim JSON white space: that is the text the splitter must give. */
        size_t s = 0, e = size;
        while (s < e && strchr(" \t\r\n", data[s]) && data[s])
            s++;
        while (e > s && strchr(" \t\r\n", data[e - 1]) && data[e - 1])
            e--;
        if (whole.messages != 1 || whole.errors != 0 || whole.first_len != e - s ||
            memcmp(whole.first, data + s, e - s) != 0) {
            fprintf(stderr, "valid JSON split into %zu messages, %zu errors\n",
                    whole.messages, whole.errors);
            abort();
        }
    }
    free(copy);
    json_stream_free(a);
    json_stream_free(b);
    transcript_free(&whole);
    transcript_free(&chunked);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size heap copy: libFuzzer's buffer is exact too, but this
     * keeps the property explicit if the harness changes. */
    char *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    char err[128];
    struct json *v = json_parse(buf, size, err, sizeof(err));
    if (!v && !err[0])
        abort();                /* every failure must say why */
    if (v)
        check_roundtrip(v);
    check_stream(data, size, v != NULL);
    json_free(v);
    free(buf);
    return 0;
}
