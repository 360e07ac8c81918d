/* Reset control register (Intel ICH datasheets, "Reset Control Register,
 * I/O address CF9h"). */
#include "hw/reset_control.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/log.h"

#define RCR_SYS_RST   0x02
#define RCR_RST_CPU   0x04
#define RCR_FULL_RST  0x08
#define RCR_KEPT      (RCR_SYS_RST | RCR_FULL_RST)

struct reset_control {
    pthread_mutex_t lock;
    void (*reset)(void *opaque);
    void *opaque;
    uint8_t value;
};

static void reset_control_read(void *opaque, uint64_t off, void *data, unsigned len)
{
    struct reset_control *rc = opaque;
    uint8_t *out = data;

    pthread_mutex_lock(&rc->lock);
    out[0] = off == 0 ? rc->value : 0xff;
    pthread_mutex_unlock(&rc->lock);
    for (unsigned i = 1; i < len; i++)
        out[i] = 0xff;
}

static void reset_control_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
    struct reset_control *rc = opaque;
    uint8_t v = *(const uint8_t *)data;
    bool reset;

    (void)len;
    /* The register is one byte: only offset 0 of the range is decoded. */
    if (off != 0)
        return;
    pthread_mutex_lock(&rc->lock);
    rc->value = v & RCR_KEPT;
    reset = v & RCR_RST_CPU;
    pthread_mutex_unlock(&rc->lock);
    if (reset) {
        log_info("reset-control: guest requested reset (0x%02x)", v);
        if (rc->reset)
            rc->reset(rc->opaque);
    }
}

const struct bus_ops reset_control_bus_ops = {
    .read = reset_control_read,
    .write = reset_control_write,
};

void reset_control_reset(struct reset_control *rc)
{
    pthread_mutex_lock(&rc->lock);
    rc->value = 0;
    pthread_mutex_unlock(&rc->lock);
}

struct reset_control *reset_control_new(void (*reset)(void *opaque), void *opaque)
{
    struct reset_control *rc = calloc(1, sizeof(*rc));
    if (!rc)
        return NULL;
    if (pthread_mutex_init(&rc->lock, NULL) != 0) {
        free(rc);
        return NULL;
    }
    rc->reset = reset;
    rc->opaque = opaque;
    return rc;
}

void reset_control_free(struct reset_control *rc)
{
    if (!rc)
        return;
    pthread_mutex_destroy(&rc->lock);
    free(rc);
}
