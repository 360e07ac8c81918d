/* See bus.h. A sorted array searched by bisection: machines have tens of
 * ranges, registration is rare, lookups are on every exit. */
#include "core/bus.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int bus_init(struct bus *b)
{
    memset(b, 0, sizeof *b);
    return -pthread_rwlock_init(&b->lock, NULL);
}

void bus_destroy(struct bus *b)
{
    free(b->ranges);
    pthread_rwlock_destroy(&b->lock);
    memset(b, 0, sizeof *b);
}

/* Index of the first range whose end is above addr (may be n). */
static size_t bus_lower_bound(const struct bus *b, uint64_t addr)
{
    size_t lo = 0, hi = b->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct bus_range *r = &b->ranges[mid];
        if (r->base + r->len <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int bus_register(struct bus *b, uint64_t base, uint64_t len, const char *name,
                 const struct bus_ops *ops, void *opaque)
{
    if (len == 0 || base + len < base)
        return -EINVAL;
    int ret = 0;
    pthread_rwlock_wrlock(&b->lock);
    size_t i = bus_lower_bound(b, base);
    if (i < b->n && b->ranges[i].base < base + len) {
        ret = -EEXIST;
        goto out;
    }
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 16;
        struct bus_range *r = realloc(b->ranges, cap * sizeof *r);
        if (!r) {
            ret = -ENOMEM;
            goto out;
        }
        b->ranges = r;
        b->cap = cap;
    }
    memmove(&b->ranges[i + 1], &b->ranges[i], (b->n - i) * sizeof *b->ranges);
    b->ranges[i] = (struct bus_range){ base, len, name, ops, opaque };
    b->n++;
out:
    pthread_rwlock_unlock(&b->lock);
    return ret;
}

int bus_unregister(struct bus *b, uint64_t base)
{
    int ret = -ENOENT;
    pthread_rwlock_wrlock(&b->lock);
    size_t i = bus_lower_bound(b, base);
    if (i < b->n && b->ranges[i].base == base) {
        memmove(&b->ranges[i], &b->ranges[i + 1],
                (b->n - i - 1) * sizeof *b->ranges);
        b->n--;
        ret = 0;
    }
    pthread_rwlock_unlock(&b->lock);
    return ret;
}

bool bus_access(struct bus *b, uint64_t addr, void *data, unsigned len,
                bool is_write)
{
    bool hit = false;
    pthread_rwlock_rdlock(&b->lock);
    size_t i = bus_lower_bound(b, addr);
    if (i < b->n && b->ranges[i].base <= addr) {
        const struct bus_range *r = &b->ranges[i];
        uint64_t off = addr - r->base;
        unsigned inside = len;
        if (off + len > r->len)
            inside = (unsigned)(r->len - off);
        if (!is_write && inside < len)
            memset((uint8_t *)data + inside, 0xff, len - inside);
        /* Devices see only whole accesses of the sizes they expect; a
         * straddling access is rare (guest bug) and is handed over in the
         * largest power of two that fits so callbacks keep len in 1/2/4/8. */
        while (inside) {
            unsigned chunk = inside >= 8 ? 8 : inside >= 4 ? 4 : inside >= 2 ? 2 : 1;
            if (is_write) {
                if (r->ops->write)
                    r->ops->write(r->opaque, off, data, chunk);
            } else if (r->ops->read) {
                r->ops->read(r->opaque, off, data, chunk);
            } else {
                memset(data, 0xff, chunk);
            }
            data = (uint8_t *)data + chunk;
            off += chunk;
            inside -= chunk;
        }
        hit = true;
    } else if (!is_write) {
        memset(data, 0xff, len);
    }
    pthread_rwlock_unlock(&b->lock);
    return hit;
}

void bus_for_each(struct bus *b,
                  void (*fn)(void *ctx, const struct bus_range *r), void *ctx)
{
    pthread_rwlock_rdlock(&b->lock);
    for (size_t i = 0; i < b->n; i++)
        fn(ctx, &b->ranges[i]);
    pthread_rwlock_unlock(&b->lock);
}
