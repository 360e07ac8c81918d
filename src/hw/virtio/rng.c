/* See rng.h. */
#include "hw/virtio/rng.h"
#include "core/log.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/random.h>

/* Cap per request: a driver asking for megabytes gets them in pieces. */
#define RNG_MAX_PER_REQUEST 65536

struct virtio_rng {
    bool used;                  /* logged once: the guest found the device */
    struct virtq_elem elem;     /* one at a time, reused */
};

static void rng_queue_notify(struct virtio_dev *vd, unsigned q)
{
    struct virtio_rng *r = vd->opaque;
    bool pushed = false;
    for (;;) {
        int n = virtio_queue_pop(vd, q, &r->elem);
        if (n < 0)
            return;     /* NEEDS_RESET already set, or not running */
        if (n == 0)
            break;
        uint32_t written = 0;
        struct iovec *in = r->elem.iov + r->elem.out_num;
        for (unsigned i = 0; i < r->elem.in_num && written < RNG_MAX_PER_REQUEST; i++) {
            size_t want = in[i].iov_len;
            if (want > RNG_MAX_PER_REQUEST - written)
                want = RNG_MAX_PER_REQUEST - written;
            size_t got = 0;
            while (got < want) {
                ssize_t g = getrandom((char *)in[i].iov_base + got, want - got, 0);
                if (g < 0 && errno == EINTR)
                    continue;
                if (g <= 0)
                    break;
                got += (size_t)g;
            }
            written += (uint32_t)got;
            if (got < want)
                break;
        }
        virtio_queue_push(vd, q, &r->elem, written);
        pushed = true;
        if (!r->used) {
            r->used = true;
            log_info("virtio-rng: the guest driver requested entropy (%u bytes served)", written);
        }
    }
    if (pushed)
        virtio_notify(vd, q);
}

static uint64_t rng_features(struct virtio_dev *vd) { return 0; }

static int rng_activate(struct virtio_dev *vd) { return 0; }

/* Requests are answered synchronously in queue_notify, so nothing is in
 * flight at reset. */
static void rng_reset(struct virtio_dev *vd) {}

static const struct virtio_device_ops rng_ops = {
    .device_id = 4, .name = "virtio-rng", .num_queues = 1, .queue_max_size = 256,
    .config_size = 0, .features = rng_features, .activate = rng_activate,
    .queue_notify = rng_queue_notify, .reset = rng_reset,
};

struct virtio_rng *virtio_rng_new(void) { return calloc(1, sizeof(struct virtio_rng)); }
void virtio_rng_free(struct virtio_rng *r) { free(r); }
const struct virtio_device_ops *virtio_rng_ops(void) { return &rng_ops; }
