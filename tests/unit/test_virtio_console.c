/* virtio-console (src/hw/virtio/console.c) driven from the simulated guest
 * driver (virtio_driver.h), with a real chardev: the pipe back end on two
 * FIFOs (PATH.in for host input, PATH.out for guest output). Guest output
 * reaches the chardev; host input fills the guest's receive buffers; input
 * beyond the posted buffers is held (not lost) and delivered when more
 * buffers come. The chardev's loop runs on the test thread in 1 ms slices
 * (a timerfd ends each), as the main loop would. */
#include "chardev/chardev.h"
#include "core/log.h"
#include "core/loop.h"
#include "hw/virtio/console.h"
#include "test.h"
#include "virtio_driver.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <unistd.h>

#define V1 (1ULL << VIRTIO_F_VERSION_1)
#define RXQ 0
#define TXQ 1

static char tdir[256];

struct fx {
    char base[300], in_path[310], out_path[310];
    struct loop *loop;
    int tfd, in_fd, out_fd;     /* test's ends: write host input, read guest output */
    struct chardev *chr;
    struct virtio_console *con;
    struct guest_mem mem;
    struct virtio_dev vd;
    struct vdrv drv;
    bool vd_ok;
};

static void fx_tick(void *opaque, int fd, uint32_t events)
{
    struct fx *f = opaque;
    uint64_t n;
    ssize_t r = read(fd, &n, sizeof n);
    (void)r;
    loop_quit(f->loop);
}

static void fx_slices(struct fx *f, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        loop_run(f->loop);
}

static void fx_free(struct fx *f)
{
    if (!f)
        return;
    if (f->vd_ok) {
        pthread_mutex_lock(&f->vd.lock);
        virtio_set_status(&f->vd, 0);
        pthread_mutex_unlock(&f->vd.lock);
        virtio_dev_destroy(&f->vd);
    }
    vdrv_destroy(&f->drv);
    if (f->chr)
        chardev_close(f->chr);
    virtio_console_free(f->con);
    if (f->tfd >= 0) {
        loop_del_fd(f->loop, f->tfd);
        close(f->tfd);
    }
    loop_free(f->loop);
    if (f->in_fd >= 0)
        close(f->in_fd);
    if (f->out_fd >= 0)
        close(f->out_fd);
    if (f->mem.base)
        gmem_destroy(&f->mem);
    unlink(f->in_path);
    unlink(f->out_path);
    free(f);
}

static unsigned serial;

static struct fx *fx_new(void)
{
    struct fx *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->tfd = f->in_fd = f->out_fd = -1;
    snprintf(f->base, sizeof f->base, "%s/con%u", tdir, serial++);
    snprintf(f->in_path, sizeof f->in_path, "%s.in", f->base);
    snprintf(f->out_path, sizeof f->out_path, "%s.out", f->base);
    if (mkfifo(f->in_path, 0600) < 0 || mkfifo(f->out_path, 0600) < 0)
        goto fail;
    f->in_fd = open(f->in_path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
    f->out_fd = open(f->out_path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
    f->loop = loop_new(NULL, NULL);
    if (f->in_fd < 0 || f->out_fd < 0 || !f->loop)
        goto fail;
    f->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    struct itimerspec its = { { 0, 1000000 }, { 0, 1000000 } };
    if (f->tfd < 0 || timerfd_settime(f->tfd, 0, &its, NULL) < 0 ||
        loop_add_fd(f->loop, f->tfd, EPOLLIN, fx_tick, f) < 0)
        goto fail;
    struct chardev_spec spec = { .id = "con", .option = "-chardev", .kind = CHARDEV_PIPE,
                                 .path = f->base, .signal = -1 };
    char err[300];
    f->chr = chardev_open(&spec, "con", f->loop, 0, NULL, err, sizeof err);
    if (!f->chr) {
        printf("    chardev_open: %s\n", err);
        goto fail;
    }
    f->con = virtio_console_new(f->chr);
    if (!f->con || gmem_init(&f->mem, 4 << 20) < 0 ||
        virtio_dev_init(&f->vd, virtio_console_ops(), f->con, &f->mem) < 0)
        goto fail;
    f->vd_ok = true;
    virtio_console_attach(f->con, &f->vd);
    if (vdrv_init(&f->drv, &f->vd, V1) < 0)
        goto fail;
    return f;
fail:
    fx_free(f);
    return NULL;
}

/* Read what the guest wrote, waiting up to ~1 s for `want` bytes. */
static size_t read_out(struct fx *f, char *buf, size_t want)
{
    size_t got = 0;
    for (unsigned i = 0; i < 1000 && got < want; i++) {
        ssize_t r = read(f->out_fd, buf + got, want - got);
        if (r > 0) {
            got += (size_t)r;
            continue;
        }
        fx_slices(f, 1);
    }
    return got;
}

TEST(ops_shape)
{
    const struct virtio_device_ops *ops = virtio_console_ops();
    CHECK_EQ(ops->device_id, 3);
    CHECK_EQ(ops->num_queues, 2);
    CHECK(ops->config_size >= 8);
}

TEST(guest_output_reaches_chardev)
{
    struct fx *f = fx_new();
    CHECK(f);
    uint64_t a = vdrv_alloc_copy(&f->drv, "hello, ", 7);
    uint64_t b = vdrv_alloc_copy(&f->drv, "world\n", 6);
    struct vdrv_sg out[] = { { a, 7 }, { b, 6 } };
    int head = vdrv_add_chain(&f->drv, TXQ, out, 2, NULL, 0);
    CHECK(head >= 0);
    uint64_t c = vdrv_alloc_copy(&f->drv, "second\n", 7);
    struct vdrv_sg out2[] = { { c, 7 } };
    int head2 = vdrv_add_chain(&f->drv, TXQ, out2, 1, NULL, 0);
    CHECK(head2 >= 0);
    vdrv_kick(&f->drv, TXQ);
    uint16_t id;
    uint32_t len;
    CHECK_EQ(vdrv_get_used(&f->drv, TXQ, &id, &len), 1);
    CHECK_EQ(id, head);
    CHECK_EQ(len, 0);
    CHECK_EQ(vdrv_get_used(&f->drv, TXQ, &id, &len), 1);
    CHECK_EQ(id, head2);
    CHECK(f->drv.irqs[TXQ] >= 1);
    char buf[64] = { 0 };
    CHECK_EQ(read_out(f, buf, 20), 20);
    CHECK(memcmp(buf, "hello, world\nsecond\n", 20) == 0);
    fx_free(f);
}

/* Host input fills posted receive buffers; what does not fit is held by
 * the chardev and delivered when the driver posts more (its kick on the
 * receiveq). */
TEST(host_input_flow_control)
{
    struct fx *f = fx_new();
    CHECK(f);
    uint64_t r1 = vdrv_alloc(&f->drv, 8, 1), r2 = vdrv_alloc(&f->drv, 8, 1);
    struct vdrv_sg in1[] = { { r1, 8 } }, in2[] = { { r2, 8 } };
    int h1 = vdrv_add_chain(&f->drv, RXQ, NULL, 0, in1, 1);
    int h2 = vdrv_add_chain(&f->drv, RXQ, NULL, 0, in2, 1);
    CHECK(h1 >= 0 && h2 >= 0);
    vdrv_kick(&f->drv, RXQ);
    const char *msg = "0123456789abcdefghijklmnopqrst";     /* 30 bytes */
    CHECK_EQ(write(f->in_fd, msg, 30), 30);
    char got[64] = { 0 };
    size_t n = 0;
    uint16_t id;
    uint32_t len;
    for (unsigned i = 0; i < 1000 && n < 16; i++) {
        if (vdrv_get_used(&f->drv, RXQ, &id, &len) == 1) {
            CHECK(id == h1 || id == h2);
            CHECK_EQ(len, 8);
            memcpy(got + n, vdrv_ptr(&f->drv, id == h1 ? r1 : r2, 8), 8);
            n += 8;
            continue;
        }
        fx_slices(f, 1);
    }
    CHECK_EQ(n, 16);
    CHECK(f->drv.irqs[RXQ] >= 1);
    /* No buffers left: nothing more arrives, nothing is lost. */
    fx_slices(f, 5);
    CHECK_EQ(vdrv_get_used(&f->drv, RXQ, &id, &len), 0);
    /* More buffers: the held 14 bytes come (10 + 4). */
    uint64_t r3 = vdrv_alloc(&f->drv, 10, 1), r4 = vdrv_alloc(&f->drv, 10, 1);
    struct vdrv_sg in3[] = { { r3, 10 } }, in4[] = { { r4, 10 } };
    int h3 = vdrv_add_chain(&f->drv, RXQ, NULL, 0, in3, 1);
    int h4 = vdrv_add_chain(&f->drv, RXQ, NULL, 0, in4, 1);
    CHECK(h3 >= 0 && h4 >= 0);
    vdrv_kick(&f->drv, RXQ);
    unsigned bufs = 0;
    for (unsigned i = 0; i < 1000 && n < 30; i++) {
        if (vdrv_get_used(&f->drv, RXQ, &id, &len) == 1) {
            CHECK(id == h3 || id == h4);
            CHECK(len >= 1 && len <= 10);
            memcpy(got + n, vdrv_ptr(&f->drv, id == h3 ? r3 : r4, len), len);
            n += len;
            bufs++;
            continue;
        }
        fx_slices(f, 1);
    }
    CHECK_EQ(n, 30);
    CHECK(memcmp(got, msg, 30) == 0);
    /* More input lands in the remaining space (h4 if the 14 bytes used
     * only part of it is already given back; post one more buffer). */
    uint64_t r5 = vdrv_alloc(&f->drv, 16, 1);
    struct vdrv_sg in5[] = { { r5, 16 } };
    int h5 = vdrv_add_chain(&f->drv, RXQ, NULL, 0, in5, 1);
    CHECK(h5 >= 0);
    vdrv_kick(&f->drv, RXQ);
    CHECK_EQ(write(f->in_fd, "XYZ", 3), 3);
    size_t extra = 0;
    char more[16] = { 0 };
    for (unsigned i = 0; i < 1000 && extra < 3; i++) {
        if (vdrv_get_used(&f->drv, RXQ, &id, &len) == 1) {
            uint64_t at = id == h5 ? r5 : id == h4 ? r4 : r3;
            memcpy(more + extra, vdrv_ptr(&f->drv, at, len), len);
            extra += len;
            continue;
        }
        fx_slices(f, 1);
    }
    CHECK_EQ(extra, 3);
    CHECK(memcmp(more, "XYZ", 3) == 0);
    (void)bufs;
    fx_free(f);
}

/* Input before DRIVER_OK is held, and delivered once the driver is up. */
TEST(input_before_driver_ok_held)
{
    struct fx *f = fx_new();
    CHECK(f);
    pthread_mutex_lock(&f->vd.lock);
    virtio_set_status(&f->vd, 0);
    pthread_mutex_unlock(&f->vd.lock);
    CHECK_EQ(write(f->in_fd, "early", 5), 5);
    fx_slices(f, 5);
    CHECK_EQ(vdrv_reinit(&f->drv, V1), 0);
    uint64_t r = vdrv_alloc(&f->drv, 16, 1);
    struct vdrv_sg in[] = { { r, 16 } };
    CHECK(vdrv_add_chain(&f->drv, RXQ, NULL, 0, in, 1) >= 0);
    vdrv_kick(&f->drv, RXQ);
    uint16_t id;
    uint32_t len = 0;
    int rc = 0;
    for (unsigned i = 0; i < 1000 && rc == 0; i++) {
        rc = vdrv_get_used(&f->drv, RXQ, &id, &len);
        if (!rc)
            fx_slices(f, 1);
    }
    CHECK_EQ(rc, 1);
    CHECK_EQ(len, 5);
    CHECK(memcmp(vdrv_ptr(&f->drv, r, 5), "early", 5) == 0);
    fx_free(f);
}

/* A console without a chardev drops output and takes no input. */
TEST(no_chardev)
{
    struct guest_mem mem;
    CHECK_EQ(gmem_init(&mem, 4 << 20), 0);
    struct virtio_console *c = virtio_console_new(NULL);
    CHECK(c);
    struct virtio_dev *vd = calloc(1, sizeof *vd);
    struct vdrv *drv = calloc(1, sizeof *drv);
    CHECK(vd && drv);
    CHECK_EQ(virtio_dev_init(vd, virtio_console_ops(), c, &mem), 0);
    virtio_console_attach(c, vd);
    CHECK_EQ(vdrv_init(drv, vd, V1), 0);
    uint64_t a = vdrv_alloc_copy(drv, "dropped", 7);
    struct vdrv_sg out[] = { { a, 7 } };
    CHECK(vdrv_add_chain(drv, TXQ, out, 1, NULL, 0) >= 0);
    vdrv_kick(drv, TXQ);
    uint16_t id;
    uint32_t len;
    CHECK_EQ(vdrv_get_used(drv, TXQ, &id, &len), 1);
    uint64_t r = vdrv_alloc(drv, 8, 1);
    struct vdrv_sg in[] = { { r, 8 } };
    CHECK(vdrv_add_chain(drv, RXQ, NULL, 0, in, 1) >= 0);
    vdrv_kick(drv, RXQ);
    CHECK_EQ(vdrv_get_used(drv, RXQ, &id, &len), 0);
    pthread_mutex_lock(&vd->lock);
    virtio_set_status(vd, 0);
    pthread_mutex_unlock(&vd->lock);
    virtio_dev_destroy(vd);
    vdrv_destroy(drv);
    virtio_console_free(c);
    gmem_destroy(&mem);
    free(vd);
    free(drv);
}

/* A hostile transmit chain: NEEDS_RESET, nothing written, recovery. */
TEST(hostile_tx_then_reset)
{
    struct fx *f = fx_new();
    CHECK(f);
    vdrv_desc_write(&f->drv, TXQ, 5, 1ULL << 40, 16, 0, 0);
    vdrv_avail_push_raw(&f->drv, TXQ, 5);
    vdrv_kick_force(&f->drv, TXQ);
    CHECK(virtio_get_status(&f->vd) & VIRTIO_STATUS_NEEDS_RESET);
    CHECK_EQ(f->drv.config_irqs, 1);
    /* Input is not delivered to a broken device (held instead). */
    CHECK_EQ(write(f->in_fd, "held", 4), 4);
    fx_slices(f, 3);
    CHECK_EQ(vdrv_reinit(&f->drv, V1), 0);
    uint64_t a = vdrv_alloc_copy(&f->drv, "ok\n", 3);
    struct vdrv_sg out[] = { { a, 3 } };
    CHECK(vdrv_add_chain(&f->drv, TXQ, out, 1, NULL, 0) >= 0);
    vdrv_kick(&f->drv, TXQ);
    char buf[8] = { 0 };
    CHECK_EQ(read_out(f, buf, 3), 3);
    CHECK(memcmp(buf, "ok\n", 3) == 0);
    uint64_t r = vdrv_alloc(&f->drv, 8, 1);
    struct vdrv_sg in[] = { { r, 8 } };
    CHECK(vdrv_add_chain(&f->drv, RXQ, NULL, 0, in, 1) >= 0);
    vdrv_kick(&f->drv, RXQ);
    uint16_t id;
    uint32_t len = 0;
    int rc = 0;
    for (unsigned i = 0; i < 1000 && rc == 0; i++) {
        rc = vdrv_get_used(&f->drv, RXQ, &id, &len);
        if (!rc)
            fx_slices(f, 1);
    }
    CHECK_EQ(rc, 1);
    CHECK_EQ(len, 4);
    CHECK(memcmp(vdrv_ptr(&f->drv, r, 4), "held", 4) == 0);
    fx_free(f);
}

int main(void)
{
    log_set_level(LOG_ERROR);
    const char *base = getenv("TMPDIR");
    snprintf(tdir, sizeof tdir, "%s/kvmbox-vcon-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tdir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(ops_shape);
    RUN(guest_output_reaches_chardev);
    RUN(host_input_flow_control);
    RUN(input_before_driver_ok_held);
    RUN(no_chardev);
    RUN(hostile_tx_then_reset);
    rmdir(tdir);
    return test_summary();
}
