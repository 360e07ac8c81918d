/* Port 0x80 sink: see the header. */
#include "hw/port80.h"

#include <string.h>

static void port80_read(void *opaque, uint64_t off, void *data, unsigned len)
{
    (void)opaque;
    (void)off;
    memset(data, 0, len);
}

static void port80_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
    (void)opaque;
    (void)off;
    (void)data;
    (void)len;
}

const struct bus_ops port80_bus_ops = {
    .read = port80_read,
    .write = port80_write,
};
