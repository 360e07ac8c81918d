/* Chardev core: the input pump, the non-blocking write path, and the simple
 * back ends (null, file, pty). stdio and sockets have files of their own. */
#define _XOPEN_SOURCE 700
#include "chardev/chardev_internal.h"
#include "core/loop.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <termios.h>
#include <unistd.h>

/* Deliver buffered input to the front end as far as it accepts it. */
static void chardev_pump(struct chardev *c)
{
    while (c->in_off < c->in_len && c->input_fn) {
        size_t n = c->input_fn(c->input_opaque, c->inbuf + c->in_off,
                               c->in_len - c->in_off);
        if (n == 0)
            return;
        c->in_off += n;
    }
    if (c->in_off == c->in_len) {
        c->in_off = c->in_len = 0;
        /* Everything was taken: read more. */
        if (c->in_fd >= 0 && !c->in_watched)
            chardev_watch_input(c);
    }
}

static void chardev_on_retry(void *opaque, int fd, uint32_t events)
{
    struct chardev *c = opaque;
    uint64_t expirations;
    ssize_t r = read(fd, &expirations, sizeof expirations);
    (void)r;
    chardev_watch_input(c);     /* EIO again: chardev_on_input re-arms */
}

static void chardev_retry_later(struct chardev *c)
{
    if (c->retry_fd < 0) {
        c->retry_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
        if (c->retry_fd < 0 ||
            loop_add_fd(c->loop, c->retry_fd, EPOLLIN, chardev_on_retry, c) < 0) {
            log_warn("%s: cannot poll the pty for a new reader; input stops", c->label);
            return;
        }
    }
    struct itimerspec one_second = { .it_value = { .tv_sec = 1 } };
    timerfd_settime(c->retry_fd, 0, &one_second, NULL);
}

static void chardev_on_input(void *opaque, int fd, uint32_t events)
{
    struct chardev *c = opaque;
    if (c->in_len) {
        /* Still holding bytes the front end did not take: stop reading
         * until it signals room (flow control instead of dropping). */
        loop_del_fd(c->loop, fd);
        c->in_watched = false;
        return;
    }
    ssize_t n = read(fd, c->inbuf, sizeof c->inbuf);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        /* EOF or error: stop watching. A socket server goes back to
         * accepting; stdin at EOF (e.g. </dev/null) just stops. A pty
         * master reports EIO (and stays readable) while nobody has the
         * slave open: look again once a second, as QEMU does, so a user
         * who reopens the pty is heard again. */
        loop_del_fd(c->loop, fd);
        c->in_watched = false;
        if (c->listen_fd >= 0)
            chardev_detach_client(c);
        else if (c->kind == CHARDEV_PTY)
            chardev_retry_later(c);
        return;
    }
    if (n < 0)
        return;
    size_t len = (size_t)n;
    if (c->kind == CHARDEV_STDIO)
        len = chardev_stdio_filter(c, c->inbuf, len);
    c->in_off = 0;
    c->in_len = len;
    chardev_pump(c);
    if (c->in_len && c->in_watched) {
        loop_del_fd(c->loop, fd);
        c->in_watched = false;
    }
}

void chardev_watch_input(struct chardev *c)
{
    if (c->in_fd < 0 || c->in_watched || !c->loop)
        return;
    if (loop_add_fd(c->loop, c->in_fd, EPOLLIN, chardev_on_input, c) == 0)
        c->in_watched = true;
}

static void chardev_on_ready(void *opaque, int fd, uint32_t events)
{
    struct chardev *c = opaque;
    uint64_t v;
    ssize_t r = read(fd, &v, sizeof v);
    (void)r;
    chardev_pump(c);
}

void chardev_input_ready(struct chardev *c)
{
    if (!c)
        return;
    uint64_t one = 1;
    ssize_t r = write(c->ready_fd, &one, sizeof one);
    (void)r;
}

void chardev_set_input(struct chardev *c, chardev_input_fn fn, void *opaque)
{
    c->input_fn = fn;
    c->input_opaque = opaque;
    chardev_watch_input(c);
}

void chardev_write(struct chardev *c, const void *buf, size_t len)
{
    if (!c)
        return;
    const uint8_t *p = buf;
    pthread_mutex_lock(&c->lock);
    while (len && c->out_fd >= 0) {
        ssize_t n = write(c->out_fd, p, len);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN && !c->nonblocking_out)
            continue;   /* cannot happen on blocking fds; be safe */
        break;          /* EAGAIN on a slow peer, EIO/EPIPE: drop */
    }
    if (len) {
        c->dropped += len;
        log_ratelimited(&c->drop_rl, LOG_DEBUG, "%s: dropped %zu output bytes "
                        "(peer not reading; %llu so far)", c->label, len,
                        (unsigned long long)c->dropped);
    }
    pthread_mutex_unlock(&c->lock);
}

static int chardev_pty_open(struct chardev *c, char *err, size_t errlen)
{
    int fd = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd < 0 || grantpt(fd) < 0 || unlockpt(fd) < 0) {
        snprintf(err, errlen, "-serial pty: cannot allocate a pty: %s", strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    struct termios t;
    if (tcgetattr(fd, &t) == 0) {
        cfmakeraw(&t);
        tcsetattr(fd, TCSANOW, &t);
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    /* The same line QEMU prints, so scripts that parse it keep working. */
    fprintf(stderr, "char device redirected to %s (label %s)\n", ptsname(fd), c->label);
    c->in_fd = c->out_fd = fd;
    c->own_in = true;
    c->nonblocking_out = true;
    return 0;
}

static int chardev_file_open(struct chardev *c, const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "-serial file:%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    c->out_fd = fd;
    c->own_out = true;
    return 0;
}

struct chardev *chardev_open(const struct chardev_spec *spec, const char *label,
                             struct loop *loop, int nographic,
                             const struct chardev_hooks *hooks,
                             char *err, size_t errlen)
{
    struct chardev *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    snprintf(c->label, sizeof c->label, "%s", label);
    c->kind = spec->kind;
    c->loop = loop;
    c->in_fd = c->out_fd = c->listen_fd = c->retry_fd = -1;
    c->nographic = nographic;
    if (hooks)
        c->hooks = *hooks;
    pthread_mutex_init(&c->lock, NULL);
    c->ready_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (c->ready_fd < 0 ||
        (loop && loop_add_fd(loop, c->ready_fd, EPOLLIN, chardev_on_ready, c) < 0)) {
        snprintf(err, errlen, "%s: cannot create an eventfd: %s", label, strerror(errno));
        goto fail;
    }
    int ret = 0;
    switch (spec->kind) {
    case CHARDEV_NONE:
    case CHARDEV_NULL:
        break;
    case CHARDEV_STDIO:
        ret = chardev_stdio_open(c, err, errlen);
        break;
    case CHARDEV_FILE:
        ret = chardev_file_open(c, spec->path, err, errlen);
        break;
    case CHARDEV_PTY:
        ret = chardev_pty_open(c, err, errlen);
        break;
    case CHARDEV_UNIX:
    case CHARDEV_TCP:
        ret = chardev_socket_open(c, spec, err, errlen);
        break;
    }
    if (ret < 0)
        goto fail;
    return c;
fail:
    chardev_close(c);
    return NULL;
}

void chardev_close(struct chardev *c)
{
    if (!c)
        return;
    if (c->loop) {
        if (c->in_watched)
            loop_del_fd(c->loop, c->in_fd);
        if (c->listen_fd >= 0)
            loop_del_fd(c->loop, c->listen_fd);
        if (c->ready_fd >= 0)
            loop_del_fd(c->loop, c->ready_fd);
        if (c->retry_fd >= 0)
            loop_del_fd(c->loop, c->retry_fd);
    }
    if (c->kind == CHARDEV_STDIO)
        chardev_restore_terminal();
    if (c->own_in && c->in_fd >= 0)
        close(c->in_fd);
    if (c->own_out && c->out_fd >= 0 && c->out_fd != c->in_fd)
        close(c->out_fd);
    if (c->listen_fd >= 0)
        close(c->listen_fd);
    if (c->unlink_path) {
        unlink(c->unlink_path);     /* as QEMU: a server's socket file goes with it */
        free(c->unlink_path);
    }
    if (c->ready_fd >= 0)
        close(c->ready_fd);
    if (c->retry_fd >= 0)
        close(c->retry_fd);
    pthread_mutex_destroy(&c->lock);
    free(c);
}
