/* isa-debug-exit: see the header. */
#include "hw/isa_debug_exit.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/log.h"

struct isa_debug_exit {
    void (*exit_request)(void *opaque, int status);
    void *opaque;
};

static void isa_debug_exit_read(void *opaque, uint64_t off, void *data, unsigned len)
{
    uint8_t *out = data;
    (void)opaque;
    (void)off;
    for (unsigned i = 0; i < len; i++)
        out[i] = 0;
}

static void isa_debug_exit_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
    struct isa_debug_exit *d = opaque;
    const uint8_t *in = data;
    uint64_t v = 0;

    (void)off;          /* any offset inside iosize counts, as in QEMU */
    for (unsigned i = 0; i < len && i < 8; i++)
        v |= (uint64_t)in[i] << (8 * i);
    /* QEMU's formula; keep the result a non-negative int (only the low
     * 8 bits survive exit(3) anyway). */
    int status = (int)(((v << 1) | 1) & INT_MAX);
    log_info("isa-debug-exit: guest wrote 0x%llx, exit status %d",
             (unsigned long long)v, status);
    if (d->exit_request)
        d->exit_request(d->opaque, status);
}

const struct bus_ops isa_debug_exit_bus_ops = {
    .read = isa_debug_exit_read,
    .write = isa_debug_exit_write,
};

struct isa_debug_exit *isa_debug_exit_new(void (*exit_request)(void *opaque, int status),
                                          void *opaque)
{
    struct isa_debug_exit *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->exit_request = exit_request;
    d->opaque = opaque;
    return d;
}

void isa_debug_exit_free(struct isa_debug_exit *d)
{
    free(d);
}
