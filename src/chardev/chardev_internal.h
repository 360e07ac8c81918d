/* Shared between the chardev back ends; not for front ends. */
#ifndef KVMBOX_CHARDEV_INTERNAL_H
#define KVMBOX_CHARDEV_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>

#include "chardev/chardev.h"
#include "core/log.h"

#define CHARDEV_INBUF 4096

struct chardev {
    char label[32];
    enum chardev_kind kind;
    struct loop *loop;
    pthread_mutex_t lock;        /* guards out_fd and the drop counter */
    int in_fd, out_fd;           /* -1 when absent; may be the same fd */
    int listen_fd;               /* socket servers */
    char *unlink_path;           /* unix socket server: removed at close */
    int retry_fd;                /* pty: timerfd to look for a reader again */
    int ready_fd;                /* eventfd: front end has room again */
    bool in_watched;             /* in_fd registered in the loop */
    bool own_in, own_out;        /* close on chardev_close */
    bool nonblocking_out;        /* drop instead of blocking */
    int nographic;               /* stdio: Ctrl-a escapes active */
    bool escape_pending;         /* stdio: last byte was Ctrl-a */
    struct chardev_hooks hooks;
    chardev_input_fn input_fn;
    void *input_opaque;
    uint8_t inbuf[CHARDEV_INBUF];   /* read but not yet accepted */
    size_t in_len, in_off;
    uint64_t dropped;
    struct log_ratelimit drop_rl;
};

/* Back-end openers: 0 or -1 with err filled. */
int chardev_stdio_open(struct chardev *c, char *err, size_t errlen);
int chardev_socket_open(struct chardev *c, const struct chardev_spec *spec,
                        char *err, size_t errlen);
/* stdio: filter input through the Ctrl-a escapes; returns the new length. */
size_t chardev_stdio_filter(struct chardev *c, uint8_t *buf, size_t len);
/* socket server: a client connected or went away (loop thread). */
void chardev_attach_client(struct chardev *c, int fd);
void chardev_detach_client(struct chardev *c);
/* (Re)start watching in_fd for input. */
void chardev_watch_input(struct chardev *c);

#endif
