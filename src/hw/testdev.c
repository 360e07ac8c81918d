/* kvmbox test device: see the header. */
#include "hw/testdev.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

#define TESTDEV_MARKER_OFF   0
#define TESTDEV_MARKER_LEN   4
#define TESTDEV_SCRATCH_OFF  4
#define TESTDEV_SCRATCH_LEN  4

struct testdev {
    pthread_mutex_t lock;
    void (*boot_timer)(void *opaque, uint32_t marker);
    void *opaque;
    struct log_ratelimit rl;
    uint8_t scratch[TESTDEV_SCRATCH_LEN];
    uint8_t mmio[TESTDEV_MMIO_SIZE];
};

/* Byte-lane model: byte i of an access at offset off lands on register
 * byte off + i, so partial and straddling accesses mean what they say. */
static void testdev_pio_read(void *opaque, uint64_t off, void *data, unsigned len)
{
    struct testdev *t = opaque;
    uint8_t *out = data;

    pthread_mutex_lock(&t->lock);
    for (unsigned i = 0; i < len; i++) {
        uint64_t o = off + i;
        if (o >= TESTDEV_SCRATCH_OFF && o < TESTDEV_SCRATCH_OFF + TESTDEV_SCRATCH_LEN)
            out[i] = t->scratch[o - TESTDEV_SCRATCH_OFF];
        else
            out[i] = 0;     /* marker reads 0; beyond the device too */
    }
    pthread_mutex_unlock(&t->lock);
}

static void testdev_pio_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
    struct testdev *t = opaque;
    const uint8_t *in = data;
    uint32_t marker = 0;
    bool have_marker = false;

    pthread_mutex_lock(&t->lock);
    for (unsigned i = 0; i < len; i++) {
        uint64_t o = off + i;
        if (o >= TESTDEV_SCRATCH_OFF && o < TESTDEV_SCRATCH_OFF + TESTDEV_SCRATCH_LEN) {
            t->scratch[o - TESTDEV_SCRATCH_OFF] = in[i];
        } else if (off == TESTDEV_MARKER_OFF && o < TESTDEV_MARKER_LEN) {
            /* A marker write starts at +0; narrower ones zero-extend. */
            marker |= (uint32_t)in[i] << (8 * o);
            have_marker = true;
        } else {
            log_ratelimited(&t->rl, LOG_DEBUG, "testdev: byte write at offset %llu ignored",
                            (unsigned long long)o);
        }
    }
    pthread_mutex_unlock(&t->lock);
    if (have_marker && t->boot_timer)
        t->boot_timer(t->opaque, marker);
}

static void testdev_mmio_read(void *opaque, uint64_t off, void *data, unsigned len)
{
    struct testdev *t = opaque;
    uint8_t *out = data;

    pthread_mutex_lock(&t->lock);
    for (unsigned i = 0; i < len; i++)
        out[i] = off + i < TESTDEV_MMIO_SIZE ? t->mmio[off + i] : 0xff;
    pthread_mutex_unlock(&t->lock);
}

static void testdev_mmio_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
    struct testdev *t = opaque;
    const uint8_t *in = data;

    pthread_mutex_lock(&t->lock);
    for (unsigned i = 0; i < len; i++) {
        /* The bus already clips accesses to the window; stay safe if a
         * caller registered a larger range. */
        if (off + i < TESTDEV_MMIO_SIZE)
            t->mmio[off + i] = in[i];
    }
    pthread_mutex_unlock(&t->lock);
}

const struct bus_ops testdev_pio_bus_ops = {
    .read = testdev_pio_read,
    .write = testdev_pio_write,
};

const struct bus_ops testdev_mmio_bus_ops = {
    .read = testdev_mmio_read,
    .write = testdev_mmio_write,
};

void testdev_reset(struct testdev *t)
{
    pthread_mutex_lock(&t->lock);
    memset(t->scratch, 0, sizeof(t->scratch));
    memset(t->mmio, 0, sizeof(t->mmio));
    pthread_mutex_unlock(&t->lock);
}

struct testdev *testdev_new(void (*boot_timer)(void *opaque, uint32_t marker), void *opaque)
{
    struct testdev *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    if (pthread_mutex_init(&t->lock, NULL) != 0) {
        free(t);
        return NULL;
    }
    t->boot_timer = boot_timer;
    t->opaque = opaque;
    t->rl = (struct log_ratelimit)LOG_RATELIMIT_INIT;
    return t;
}

void testdev_free(struct testdev *t)
{
    if (!t)
        return;
    pthread_mutex_destroy(&t->lock);
    free(t);
}
