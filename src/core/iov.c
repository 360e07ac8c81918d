/* See iov.h. */
#include "core/iov.h"

#include <string.h>

size_t iov_size(const struct iovec *iov, unsigned cnt)
{
    size_t n = 0;
    for (unsigned i = 0; i < cnt; i++)
        n += iov[i].iov_len;
    return n;
}

/* Walk the vector from offset, handing each piece to fn. */
static size_t iov_walk(const struct iovec *iov, unsigned cnt, size_t offset, size_t len,
                       void (*fn)(void *ctx, uint8_t *p, size_t n), void *ctx)
{
    size_t done = 0;
    for (unsigned i = 0; i < cnt && done < len; i++) {
        if (offset >= iov[i].iov_len) {
            offset -= iov[i].iov_len;
            continue;
        }
        size_t n = iov[i].iov_len - offset;
        if (n > len - done)
            n = len - done;
        fn(ctx, (uint8_t *)iov[i].iov_base + offset, n);
        done += n;
        offset = 0;
    }
    return done;
}

struct copy_ctx { uint8_t *buf; };

static void copy_out(void *ctx, uint8_t *p, size_t n)
{
    struct copy_ctx *c = ctx;
    memcpy(c->buf, p, n);
    c->buf += n;
}

static void copy_in(void *ctx, uint8_t *p, size_t n)
{
    struct copy_ctx *c = ctx;
    memcpy(p, c->buf, n);
    c->buf += n;
}

size_t iov_to_buf(const struct iovec *iov, unsigned cnt, size_t offset, void *buf, size_t len)
{
    struct copy_ctx c = { buf };
    return iov_walk(iov, cnt, offset, len, copy_out, &c);
}

size_t iov_from_buf(const struct iovec *iov, unsigned cnt, size_t offset, const void *buf,
                    size_t len)
{
    struct copy_ctx c = { (uint8_t *)(uintptr_t)buf };
    return iov_walk(iov, cnt, offset, len, copy_in, &c);
}

unsigned iov_slice(const struct iovec *src, unsigned cnt, size_t offset, size_t len,
                   struct iovec *dst, unsigned dst_max)
{
    unsigned n = 0;
    size_t left = len;
    for (unsigned i = 0; i < cnt && left; i++) {
        if (offset >= src[i].iov_len) {
            offset -= src[i].iov_len;
            continue;
        }
        if (n == dst_max)
            break;
        size_t take = src[i].iov_len - offset;
        if (take > left)
            take = left;
        dst[n].iov_base = (uint8_t *)src[i].iov_base + offset;
        dst[n].iov_len = take;
        n++;
        left -= take;
        offset = 0;
    }
    return n;
}

struct set_ctx { int c; };

static void set_piece(void *ctx, uint8_t *p, size_t n)
{
    memset(p, ((struct set_ctx *)ctx)->c, n);
}

void iov_memset(const struct iovec *iov, unsigned cnt, size_t offset, int c, size_t len)
{
    struct set_ctx s = { c };
    iov_walk(iov, cnt, offset, len, set_piece, &s);
}
