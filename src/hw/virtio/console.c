/* See console.h. */
#include "hw/virtio/console.h"
#include "chardev/chardev.h"
#include "core/iov.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define CONSOLE_RX 0
#define CONSOLE_TX 1

/* struct virtio_console_config (§5.3.4): cols, rows, max_nr_ports,
 * emerg_wr. Only meaningful with the SIZE/MULTIPORT/EMERG_WRITE features,
 * none of which is offered; the space still exists. */
#define CONSOLE_CONFIG_SIZE 12

struct virtio_console {
    struct chardev *chr;
    struct virtio_dev *vd;
    pthread_mutex_t rx_lock;        /* receiveq: main thread vs. reset */
    struct virtq_elem rx_elem;
    struct virtq_elem tx_elem;
};

/* Main thread: host input for the guest. Returns what fit into the buffers
 * the driver has posted; the rest stays with the chardev until the driver
 * posts more (its kick on the receiveq calls chardev_input_ready). */
static size_t console_input(void *opaque, const uint8_t *buf, size_t len)
{
    struct virtio_console *c = opaque;
    struct virtio_dev *vd = c->vd;
    size_t done = 0;
    pthread_mutex_lock(&c->rx_lock);
    uint8_t status = __atomic_load_n(&vd->s.status, __ATOMIC_ACQUIRE);
    struct virtq *vq = &vd->vqs[CONSOLE_RX];
    if (!(status & VIRTIO_STATUS_DRIVER_OK) || (status & VIRTIO_STATUS_NEEDS_RESET) ||
        !vq->s.ready) {
        pthread_mutex_unlock(&c->rx_lock);
        return 0;
    }
    while (done < len) {
        int n = virtio_queue_pop(vd, CONSOLE_RX, &c->rx_elem);
        if (n <= 0)
            break;
        size_t put = iov_from_buf(c->rx_elem.iov + c->rx_elem.out_num, c->rx_elem.in_num, 0,
                                  buf + done, len - done);
        virtio_queue_push(vd, CONSOLE_RX, &c->rx_elem, (uint32_t)put);
        done += put;
        if (put == 0)
            break;          /* a buffer with no writable space: stop, do not spin */
    }
    pthread_mutex_unlock(&c->rx_lock);
    if (done)
        virtio_notify(vd, CONSOLE_RX);
    return done;
}

static void console_queue_notify(struct virtio_dev *vd, unsigned q)
{
    struct virtio_console *c = vd->opaque;
    if (q == CONSOLE_RX) {
        /* New receive buffers: let the chardev offer what it holds. */
        chardev_input_ready(c->chr);
        return;
    }
    bool pushed = false;
    for (;;) {
        int n = virtio_queue_pop(vd, CONSOLE_TX, &c->tx_elem);
        if (n < 0)
            return;
        if (n == 0)
            break;
        for (unsigned i = 0; i < c->tx_elem.out_num; i++)
            chardev_write(c->chr, c->tx_elem.iov[i].iov_base, c->tx_elem.iov[i].iov_len);
        virtio_queue_push(vd, CONSOLE_TX, &c->tx_elem, 0);
        pushed = true;
    }
    if (pushed)
        virtio_notify(vd, CONSOLE_TX);
}

static uint64_t console_features(struct virtio_dev *vd) { return 0; }

static void console_config_read(struct virtio_dev *vd, uint32_t off, void *data, unsigned len)
{
    uint8_t cfg[CONSOLE_CONFIG_SIZE] = { 0 };
    if (off < sizeof cfg && len <= sizeof cfg - off)
        memcpy(data, cfg + off, len);
}

static int console_activate(struct virtio_dev *vd)
{
    struct virtio_console *c = vd->opaque;
    chardev_input_ready(c->chr);
    return 0;
}

static void console_reset(struct virtio_dev *vd)
{
    /* Wait out a main-thread input delivery in progress. */
    struct virtio_console *c = vd->opaque;
    pthread_mutex_lock(&c->rx_lock);
    pthread_mutex_unlock(&c->rx_lock);
}

static const struct virtio_device_ops console_ops = {
    .device_id = 3, .name = "virtio-console", .num_queues = 2, .queue_max_size = 128,
    .config_size = CONSOLE_CONFIG_SIZE, .features = console_features,
    .config_read = console_config_read, .activate = console_activate,
    .queue_notify = console_queue_notify, .reset = console_reset,
};

struct virtio_console *virtio_console_new(struct chardev *chr)
{
    struct virtio_console *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->chr = chr;
    pthread_mutex_init(&c->rx_lock, NULL);
    return c;
}

void virtio_console_attach(struct virtio_console *c, struct virtio_dev *vd)
{
    c->vd = vd;
    if (c->chr)     /* a virtio-serial bus without a console port has none */
        chardev_set_input(c->chr, console_input, c);
}

void virtio_console_free(struct virtio_console *c)
{
    if (!c)
        return;
    pthread_mutex_destroy(&c->rx_lock);
    free(c);
}

const struct virtio_device_ops *virtio_console_ops(void) { return &console_ops; }
