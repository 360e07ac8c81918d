/* unix: and tcp: back ends, client or server. A server with wait=on accepts
 * its first client before the VM starts (QEMU prints the same waiting line);
 * with wait=off clients are accepted by the event loop. One client at a
 * time; output while none is connected is dropped. */
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

void chardev_attach_client(struct chardev *c, int fd)
{
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    pthread_mutex_lock(&c->lock);
    c->in_fd = c->out_fd = fd;
    pthread_mutex_unlock(&c->lock);
    c->in_len = c->in_off = 0;
    if (c->loop && c->listen_fd >= 0)
        loop_del_fd(c->loop, c->listen_fd);     /* one client at a time */
    chardev_watch_input(c);
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
    pthread_mutex_lock(&c->lock);
    int fd = c->in_fd;
    c->in_fd = c->out_fd = -1;
    pthread_mutex_unlock(&c->lock);
    if (fd >= 0)
        close(fd);
    if (c->loop && c->listen_fd >= 0)
        loop_add_fd(c->loop, c->listen_fd, EPOLLIN, chardev_on_accept, c);
}

static int socket_address(const struct chardev_spec *spec, struct sockaddr_storage *ss,
                          socklen_t *len, char *err, size_t errlen)
{
    memset(ss, 0, sizeof *ss);
    if (spec->kind == CHARDEV_UNIX) {
        struct sockaddr_un *un = (struct sockaddr_un *)ss;
        if (strlen(spec->path) >= sizeof un->sun_path) {
            snprintf(err, errlen, "-serial unix:%s: path too long (at most %zu bytes)",
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
        snprintf(err, errlen, "-serial tcp:%s:%u: %s", spec->host, spec->port, gai_strerror(r));
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
    struct sockaddr_storage ss;
    socklen_t len;
    if (socket_address(spec, &ss, &len, err, errlen) < 0)
        return -1;
    const char *what = spec->kind == CHARDEV_UNIX ? "unix" : "tcp";
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
        if (spec->kind == CHARDEV_UNIX)
            fprintf(stderr, "QEMU waiting for connection on: disconnected:unix:%s,server=on\n",
                    spec->path);
        else
            fprintf(stderr, "QEMU waiting for connection on: disconnected:tcp:%s:%u,server=on\n",
                    spec->host, spec->port);
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
        snprintf(err, errlen, "-serial %s:%s: %s", what, spec->path, strerror(errno));
    else
        snprintf(err, errlen, "-serial %s:%s:%u: %s", what, spec->host, spec->port,
                 strerror(errno));
    if (fd >= 0 && fd != c->listen_fd)
        close(fd);
    return -1;
}
