/* Chardev core: the input pump, the non-blocking write path, events, and
 * the simple back ends (null, file, pipe, pty). stdio, sockets and the mux
 * have files of their own. */
#define _XOPEN_SOURCE 700
#include "chardev/chardev_internal.h"
#include "core/loop.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/timerfd.h>
#include <termios.h>
#include <unistd.h>

void chardev_pump(struct chardev *c)
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
        /* A mux front end's queue emptied: the mux may take more from
         * its back end. */
        if (c->mux)
            chardev_mux_resume(c->mux);
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
    if (c->telnet)
        len = chardev_telnet_filter(c, c->inbuf, len);
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
    if (!fn)
        return;
    chardev_watch_input(c);
    if (c->mux)
        chardev_pump(c);    /* input queued before the front end came */
}

void chardev_event(struct chardev *c, enum chardev_event ev)
{
    if (ev == CHARDEV_EVENT_OPENED)
        c->connected = true;
    else if (ev == CHARDEV_EVENT_CLOSED)
        c->connected = false;
    if (c->event_fn)
        c->event_fn(c->event_opaque, ev);
}

void chardev_set_event(struct chardev *c, chardev_event_fn fn, void *opaque)
{
    c->event_fn = fn;
    c->event_opaque = opaque;
    if (c->mux)
        chardev_mux_frontend_event_set(c);
    else if (fn && c->connected)
        fn(opaque, CHARDEV_EVENT_OPENED);
}

void chardev_write(struct chardev *c, const void *buf, size_t len)
{
    if (!c)
        return;
    if (c->mux) {
        chardev_mux_write(c, buf, len);
        return;
    }
    const uint8_t *p = buf;
    pthread_mutex_lock(&c->lock);
    if (c->log_fd >= 0) {
        /* logfile= keeps everything, even what a missing peer drops. */
        ssize_t r = write(c->log_fd, buf, len);
        (void)r;
    }
    bool was_empty = c->olen == 0;
    /* Keep the order: while earlier output waits, new bytes queue behind. */
    while (len && c->out_fd >= 0 && c->olen == 0) {
        ssize_t n = write(c->out_fd, p, len);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        break;          /* EAGAIN on a slow peer, EIO/EPIPE: see below */
    }
    if (len && c->out_fd >= 0 && c->nonblocking_out && (errno == EAGAIN || c->olen)) {
        /* All or nothing: half a message (a QMP reply) would corrupt the
         * stream for the peer; a whole dropped one only loses it. */
        size_t room = CHARDEV_OUTBUF_MAX - c->olen;
        size_t take = len <= room ? len : 0;
        if (c->olen + take > c->ocap) {
            size_t cap = c->ocap ? c->ocap : 4096;
            while (cap < c->olen + take)
                cap *= 2;
            uint8_t *nb = realloc(c->obuf, cap);
            if (nb) {
                c->obuf = nb;
                c->ocap = cap;
            } else {
                take = 0;
            }
        }
        memcpy(c->obuf + c->olen, p, take);
        c->olen += take;
        len -= take;
        if (was_empty && c->olen) {
            uint64_t one = 1;
            ssize_t r = write(c->flush_fd, &one, sizeof one);
            (void)r;
        }
    }
    if (len) {
        c->dropped += len;
        log_ratelimited(&c->drop_rl, LOG_DEBUG, "%s: dropped %zu output bytes "
                        "(peer not reading; %llu so far)", c->label, len,
                        (unsigned long long)c->dropped);
    }
    pthread_mutex_unlock(&c->lock);
}

/* Loop thread: the peer can take more of the buffered output. */
static void chardev_on_writable(void *opaque, int fd, uint32_t events)
{
    struct chardev *c = opaque;
    pthread_mutex_lock(&c->lock);
    size_t off = 0;
    while (off < c->olen && c->out_fd >= 0) {
        ssize_t n = write(c->out_fd, c->obuf + off, c->olen - off);
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN)
            off = c->olen;      /* peer gone: its input side will notice */
        break;
    }
    memmove(c->obuf, c->obuf + off, c->olen - off);
    c->olen -= off;
    bool done = c->olen == 0;
    bool resume = c->olen < CHARDEV_BACKLOG_RESUME && c->in_off < c->in_len;
    pthread_mutex_unlock(&c->lock);
    if (done && c->out_watched) {
        loop_del_fd(c->loop, fd);
        c->out_watched = false;
    }
    if (resume)
        chardev_pump(c);    /* a front end held input back for our backlog */
}

size_t chardev_write_backlog(struct chardev *c)
{
    if (!c || c->mux)
        return 0;
    pthread_mutex_lock(&c->lock);
    size_t n = c->olen;
    pthread_mutex_unlock(&c->lock);
    return n;
}

/* Loop thread: output started waiting; watch the peer for room. */
static void chardev_on_flush(void *opaque, int fd, uint32_t events)
{
    struct chardev *c = opaque;
    uint64_t v;
    ssize_t r = read(fd, &v, sizeof v);
    (void)r;
    pthread_mutex_lock(&c->lock);
    bool pending = c->olen > 0;
    int out = c->out_fd;
    pthread_mutex_unlock(&c->lock);
    if (pending && out >= 0 && !c->out_watched &&
        loop_add_fd(c->loop, out, EPOLLOUT, chardev_on_writable, c) == 0)
        c->out_watched = true;
}

void chardev_output_reset(struct chardev *c)
{
    pthread_mutex_lock(&c->lock);
    c->olen = 0;
    int out = c->out_fd;
    pthread_mutex_unlock(&c->lock);
    if (c->out_watched && c->loop) {
        loop_del_fd(c->loop, out);
        c->out_watched = false;
    }
}

static int chardev_pty_open(struct chardev *c, const char *opt, char *err, size_t errlen)
{
    int fd = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd < 0 || grantpt(fd) < 0 || unlockpt(fd) < 0) {
        snprintf(err, errlen, "%s pty: cannot allocate a pty: %s", opt, strerror(errno));
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
    c->pty_name = strdup(ptsname(fd));
    fprintf(stderr, "char device redirected to %s (label %s)\n",
            c->pty_name ? c->pty_name : "?", c->label);
    c->in_fd = fd;
    c->out_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);     /* watched for EPOLLOUT on its own */
    c->own_in = c->own_out = true;
    c->nonblocking_out = true;
    return 0;
}

static int chardev_file_open(struct chardev *c, const char *path, const char *opt,
                             char *err, size_t errlen)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "%s file:%s: cannot open: %s", opt, path, strerror(errno));
        return -1;
    }
    c->out_fd = fd;
    c->own_out = true;
    return 0;
}

/* QEMU's pipe back end: PATH.in (input) and PATH.out (output), or PATH
 * both ways when either is missing. O_RDWR so that opening a FIFO does not
 * wait for the other side and kvmbox never sees EOF on it. */
static int chardev_pipe_open(struct chardev *c, const char *path, const char *opt,
                             char *err, size_t errlen)
{
    size_t n = strlen(path) + 5;
    char *in = malloc(n), *out = malloc(n);
    int fd_in = -1, fd_out = -1;
    if (in && out) {
        snprintf(in, n, "%s.in", path);
        snprintf(out, n, "%s.out", path);
        fd_in = open(in, O_RDWR | O_CLOEXEC | O_NONBLOCK);
        fd_out = open(out, O_RDWR | O_CLOEXEC | O_NONBLOCK);
    }
    free(in);
    free(out);
    if (fd_in < 0 || fd_out < 0) {
        if (fd_in >= 0)
            close(fd_in);
        if (fd_out >= 0)
            close(fd_out);
        fd_in = fd_out = open(path, O_RDWR | O_CLOEXEC | O_NONBLOCK);
        if (fd_in < 0) {
            snprintf(err, errlen, "%s pipe:%s: cannot open %s.in and %s.out, or %s: %s",
                     opt, path, path, path, path, strerror(errno));
            return -1;
        }
    }
    c->in_fd = fd_in;
    c->out_fd = fd_out;
    c->own_in = c->own_out = true;
    c->nonblocking_out = true;  /* a reader that stalls must not stall the guest */
    return 0;
}

struct chardev *chardev_alloc(const char *label, struct loop *loop, char *err, size_t errlen)
{
    struct chardev *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    snprintf(c->label, sizeof c->label, "%s", label);
    c->loop = loop;
    c->in_fd = c->out_fd = c->listen_fd = c->retry_fd = c->log_fd = -1;
    pthread_mutex_init(&c->lock, NULL);
    c->ready_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    c->flush_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    bool ready_added = false;
    if (c->ready_fd < 0 || c->flush_fd < 0 ||
        (loop && !(ready_added = loop_add_fd(loop, c->ready_fd, EPOLLIN, chardev_on_ready, c) == 0)) ||
        (loop && loop_add_fd(loop, c->flush_fd, EPOLLIN, chardev_on_flush, c) < 0)) {
        snprintf(err, errlen, "%s: cannot create an eventfd: %s", label, strerror(errno));
        if (ready_added)
            loop_del_fd(loop, c->ready_fd);
        if (c->ready_fd >= 0)
            close(c->ready_fd);
        if (c->flush_fd >= 0)
            close(c->flush_fd);
        pthread_mutex_destroy(&c->lock);
        free(c);
        return NULL;
    }
    return c;
}

struct chardev *chardev_open(const struct chardev_spec *spec, const char *label,
                             struct loop *loop, int nographic,
                             const struct chardev_hooks *hooks,
                             char *err, size_t errlen)
{
    const char *opt = spec->option ? spec->option : "-chardev";
    struct chardev *c = chardev_alloc(label, loop, err, errlen);
    if (!c)
        return NULL;
    c->kind = spec->kind;
    c->no_signals = spec->signal == 0 || (spec->signal < 0 && nographic);
    if (hooks)
        c->hooks = *hooks;
    if (spec->logfile) {
        c->log_fd = open(spec->logfile, O_WRONLY | O_CREAT | O_CLOEXEC |
                         (spec->logappend ? O_APPEND : O_TRUNC), 0644);
        if (c->log_fd < 0) {
            snprintf(err, errlen, "%s %s: logfile %s: %s", opt, label, spec->logfile,
                     strerror(errno));
            goto fail;
        }
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
        ret = chardev_file_open(c, spec->path, opt, err, errlen);
        break;
    case CHARDEV_PIPE:
        ret = chardev_pipe_open(c, spec->path, opt, err, errlen);
        break;
    case CHARDEV_PTY:
        ret = chardev_pty_open(c, opt, err, errlen);
        break;
    case CHARDEV_UNIX:
    case CHARDEV_TCP:
        ret = chardev_socket_open(c, spec, err, errlen);
        break;
    }
    if (ret < 0)
        goto fail;
    /* Everything but a socket without a client has its peer from the
     * start. */
    if (spec->kind != CHARDEV_UNIX && spec->kind != CHARDEV_TCP)
        c->connected = true;
    return c;
fail:
    chardev_close(c);
    return NULL;
}

void chardev_filename(struct chardev *c, char *buf, size_t len)
{
    switch (c->kind) {
    case CHARDEV_NONE:
    case CHARDEV_NULL: snprintf(buf, len, "null"); return;
    case CHARDEV_STDIO: snprintf(buf, len, "stdio"); return;
    case CHARDEV_FILE: snprintf(buf, len, "file"); return;
    case CHARDEV_PIPE: snprintf(buf, len, "pipe"); return;
    case CHARDEV_PTY: snprintf(buf, len, "pty:%s", c->pty_name ? c->pty_name : ""); return;
    case CHARDEV_UNIX:
    case CHARDEV_TCP:
        break;
    }
    pthread_mutex_lock(&c->lock);
    int fd = c->in_fd;
    struct sockaddr_storage local, peer;
    socklen_t llen = sizeof local, plen = sizeof peer;
    bool ok = fd >= 0 && getsockname(fd, (struct sockaddr *)&local, &llen) == 0 &&
              getpeername(fd, (struct sockaddr *)&peer, &plen) == 0;
    pthread_mutex_unlock(&c->lock);
    if (!ok) {
        snprintf(buf, len, "disconnected:%s", c->desc ? c->desc : "");
        return;
    }
    const char *server = c->server ? ",server=on" : "";
    if (local.ss_family == AF_UNIX) {
        /* QEMU prints the local address: the path for a server, empty for
         * a client (its socket is unnamed). */
        struct sockaddr_un *un = (struct sockaddr_un *)&local;
        size_t n = llen > offsetof(struct sockaddr_un, sun_path)
                   ? llen - offsetof(struct sockaddr_un, sun_path) : 0;
        snprintf(buf, len, "unix:%.*s%s", (int)strnlen(un->sun_path, n), un->sun_path, server);
        return;
    }
    char lh[NI_MAXHOST] = "", ls[NI_MAXSERV] = "", ph[NI_MAXHOST] = "", ps[NI_MAXSERV] = "";
    getnameinfo((struct sockaddr *)&local, llen, lh, sizeof lh, ls, sizeof ls,
                NI_NUMERICHOST | NI_NUMERICSERV);
    getnameinfo((struct sockaddr *)&peer, plen, ph, sizeof ph, ps, sizeof ps,
                NI_NUMERICHOST | NI_NUMERICSERV);
    const char *l = local.ss_family == AF_INET6 ? "[" : "";
    const char *r = local.ss_family == AF_INET6 ? "]" : "";
    snprintf(buf, len, "%s:%s%s%s:%s%s <-> %s%s%s:%s", c->telnet ? "telnet" : "tcp",
             l, lh, r, ls, server, l, ph, r, ps);
}

void chardev_close(struct chardev *c)
{
    if (!c)
        return;
    if (c->mux) {
        /* Front-end handles belong to their mux (chardev_mux_free). */
        c->input_fn = NULL;
        c->event_fn = NULL;
        return;
    }
    chardev_free(c);
}

void chardev_free(struct chardev *c)
{
    if (c->loop) {
        if (c->in_watched)
            loop_del_fd(c->loop, c->in_fd);
        if (c->listen_fd >= 0)
            loop_del_fd(c->loop, c->listen_fd);
        if (c->ready_fd >= 0)
            loop_del_fd(c->loop, c->ready_fd);
        if (c->retry_fd >= 0)
            loop_del_fd(c->loop, c->retry_fd);
        if (c->flush_fd >= 0)
            loop_del_fd(c->loop, c->flush_fd);
        if (c->out_watched)
            loop_del_fd(c->loop, c->out_fd);
    }
    if (c->kind == CHARDEV_STDIO)
        chardev_restore_terminal();
    if ((c->own_in || c->kind == CHARDEV_UNIX || c->kind == CHARDEV_TCP) && c->in_fd >= 0)
        close(c->in_fd);
    if ((c->kind == CHARDEV_UNIX || c->kind == CHARDEV_TCP) && c->out_fd >= 0 &&
        c->out_fd != c->in_fd)
        close(c->out_fd);
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
    if (c->flush_fd >= 0)
        close(c->flush_fd);
    free(c->obuf);
    if (c->log_fd >= 0)
        close(c->log_fd);
    free(c->desc);
    free(c->pty_name);
    pthread_mutex_destroy(&c->lock);
    free(c);
}
