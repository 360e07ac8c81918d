/* unix: and tcp: back ends, client or server. A server with wait=on accepts
 * its first client before the VM starts (QEMU prints the same waiting line);
 * with wait=off clients are accepted by the event loop. One client at a
 * time; output while none is connected is dropped. A client's arrival and
 * departure are the OPENED/CLOSED events (a QMP monitor greets each
 * client). telnet: the server announces binary mode with echo and
 * suppress-go-ahead (so a telnet client sends characters at once and does
 * not echo) and input loses the client's IAC commands. */
#include "chardev/chardev_internal.h"
#include "core/loop.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define TELNET_IAC 0xFF
#define TELNET_BREAK 0xF3

void chardev_attach_client(struct chardev *c, int fd)
{
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    /* A second descriptor for output, so the loop can watch it for
     * EPOLLOUT independently of the input watch (chardev_on_writable). */
    int out = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    pthread_mutex_lock(&c->lock);
    c->in_fd = fd;
    c->out_fd = out;
    c->olen = 0;
    pthread_mutex_unlock(&c->lock);
    c->in_len = c->in_off = 0;
    c->telnet_state = 0;
    if (c->loop && c->listen_fd >= 0)
        loop_del_fd(c->loop, c->listen_fd);     /* one client at a time */
    if (c->telnet) {
        /* IAC WILL ECHO, IAC WILL SUPPRESS-GO-AHEAD, IAC WILL BINARY,
         * IAC DO BINARY: what QEMU's telnet server sends. */
        static const uint8_t hello[] = { 0xFF, 0xFB, 0x01, 0xFF, 0xFB, 0x03,
                                         0xFF, 0xFB, 0x00, 0xFF, 0xFD, 0x00 };
        chardev_write(c, hello, sizeof hello);
    }
    chardev_watch_input(c);
    chardev_event(c, CHARDEV_EVENT_OPENED);
}

size_t chardev_telnet_filter(struct chardev *c, uint8_t *buf, size_t len)
{
    /* Like QEMU, every IAC command is taken as three bytes (IAC, verb,
     * option), except IAC IAC (a literal 0xFF) and IAC BREAK. */
    size_t out = 0;
    for (size_t i = 0; i < len; i++) {
        uint8_t ch = buf[i];
        switch (c->telnet_state) {
        case 0:
            if (ch == TELNET_IAC)
                c->telnet_state = 1;
            else
                buf[out++] = ch;
            break;
        case 1:
            if (ch == TELNET_IAC) {
                buf[out++] = ch;
                c->telnet_state = 0;
            } else if (ch == TELNET_BREAK) {
                chardev_event(c, CHARDEV_EVENT_BREAK);
                c->telnet_state = 0;
            } else {
                c->telnet_state = 2;
            }
            break;
        default:
            c->telnet_state = 0;    /* the option byte */
            break;
        }
    }
    return out;
}

static void chardev_on_accept(void *opaque, int fd, uint32_t events)
{
    struct chardev *c = opaque;
    int cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
    if (cfd >= 0)
        chardev_attach_client(c, cfd);
}

void chardev_detach_client(struct chardev *c)
{
    chardev_output_reset(c);
    pthread_mutex_lock(&c->lock);
    int fd = c->in_fd, out = c->out_fd;
    c->in_fd = c->out_fd = -1;
    pthread_mutex_unlock(&c->lock);
    if (fd >= 0)
        close(fd);
    if (out >= 0 && out != fd)
        close(out);
    if (c->loop && c->listen_fd >= 0)
        loop_add_fd(c->loop, c->listen_fd, EPOLLIN, chardev_on_accept, c);
    if (fd >= 0)
        chardev_event(c, CHARDEV_EVENT_CLOSED);
}

static int socket_address(const struct chardev_spec *spec, struct sockaddr_storage *ss,
                          socklen_t *len, const char *opt, char *err, size_t errlen)
{
    memset(ss, 0, sizeof *ss);
    if (spec->kind == CHARDEV_UNIX) {
        struct sockaddr_un *un = (struct sockaddr_un *)ss;
        if (strlen(spec->path) >= sizeof un->sun_path) {
            snprintf(err, errlen, "%s unix:%s: path too long (at most %zu bytes)", opt,
                     spec->path, sizeof un->sun_path - 1);
            return -1;
        }
        un->sun_family = AF_UNIX;
        strcpy(un->sun_path, spec->path);
        *len = sizeof *un;
        return 0;
    }
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = spec->server ? AI_PASSIVE : 0 };
    struct addrinfo *res;
    char port[8];
    snprintf(port, sizeof port, "%u", spec->port);
    const char *host = spec->host && *spec->host ? spec->host : NULL;
    if (!host && !spec->server)
        host = "localhost";
    int r = getaddrinfo(host, port, &hints, &res);
    if (r) {
        snprintf(err, errlen, "%s tcp:%s:%u: %s", opt, spec->host, spec->port, gai_strerror(r));
        return -1;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

int chardev_socket_open(struct chardev *c, const struct chardev_spec *spec,
                        char *err, size_t errlen)
{
    const char *opt = spec->option ? spec->option : "-chardev";
    struct sockaddr_storage ss;
    socklen_t len;
    if (socket_address(spec, &ss, &len, opt, err, errlen) < 0)
        return -1;
    const char *what = spec->kind == CHARDEV_UNIX ? "unix" : spec->telnet ? "telnet" : "tcp";
    /* query-chardev's address (QEMU's qemu_chr_socket_address). */
    char desc[512];
    if (spec->kind == CHARDEV_UNIX)
        snprintf(desc, sizeof desc, "unix:%s%s", spec->path, spec->server ? ",server=on" : "");
    else
        snprintf(desc, sizeof desc, "%s:%s:%u%s", what, spec->host, spec->port,
                 spec->server ? ",server=on" : "");
    if (!(c->desc = strdup(desc))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    c->server = spec->server;
    c->telnet = spec->telnet;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto sys_fail;
    c->nonblocking_out = true;
    if (!spec->server) {
        if (connect(fd, (struct sockaddr *)&ss, len) < 0)
            goto sys_fail;
        chardev_attach_client(c, fd);
        return 0;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (spec->kind == CHARDEV_UNIX)
        unlink(spec->path);     /* a stale socket from an earlier run */
    if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 1) < 0)
        goto sys_fail;
    c->listen_fd = fd;
    if (spec->kind == CHARDEV_UNIX)
        c->unlink_path = strdup(spec->path);
    if (spec->wait) {
        fprintf(stderr, "QEMU waiting for connection on: disconnected:%s\n", c->desc);
        int cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
        if (cfd < 0)
            goto sys_fail_listen;
        chardev_attach_client(c, cfd);
    } else if (c->loop) {
        loop_add_fd(c->loop, fd, EPOLLIN, chardev_on_accept, c);
    }
    return 0;
sys_fail_listen:
    fd = -1;
sys_fail:
    if (spec->kind == CHARDEV_UNIX)
        snprintf(err, errlen, "%s %s:%s: %s", opt, what, spec->path, strerror(errno));
    else
        snprintf(err, errlen, "%s %s:%s:%u: %s", opt, what, spec->host, spec->port,
                 strerror(errno));
    if (fd >= 0 && fd != c->listen_fd)
        close(fd);
    return -1;
}
