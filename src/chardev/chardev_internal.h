/* Shared between the chardev back ends; not for front ends. */
#ifndef KVMBOX_CHARDEV_INTERNAL_H
#define KVMBOX_CHARDEV_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>

#include "chardev/chardev.h"
#include "core/log.h"

#define CHARDEV_INBUF 4096
#define CHARDEV_OUTBUF_MAX (4u << 20)

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
    bool nonblocking_out;        /* never block on out_fd: buffer, then drop */
    /* Output a non-blocking peer could not take yet (sockets, ptys): kept
     * up to CHARDEV_OUTBUF_MAX and written by the loop when the peer can
     * take it, so a slow QMP client still gets whole replies. out_fd is a
     * dup of in_fd there, so it can be watched for EPOLLOUT on its own. */
    uint8_t *obuf;
    size_t olen, ocap;
    bool out_watched;            /* loop thread only */
    int flush_fd;                /* eventfd: output is waiting (any thread -> loop) */
    bool no_signals;             /* stdio: ISIG off (Ctrl-C is a byte) */
    bool connected;              /* the peer is there (socket: a client) */
    bool server;                 /* socket: listening */
    bool telnet;                 /* socket: telnet negotiation + IAC filter */
    unsigned telnet_state;       /* bytes of an IAC command seen (0: none) */
    char *desc;                  /* socket: "unix:P,server=on", "tcp:H:P" */
    char *pty_name;              /* pty: the slave's path */
    int log_fd;                  /* logfile=, -1 when none */
    struct chardev_hooks hooks;
    chardev_input_fn input_fn;
    void *input_opaque;
    chardev_event_fn event_fn;
    void *event_opaque;
    /* A mux front-end handle: its mux and index (in_fd/out_fd unused;
     * inbuf is the front end's input queue). */
    struct chardev_mux *mux;
    unsigned mux_index;
    bool mux_opened;             /* OPENED delivered to this front end */
    uint8_t inbuf[CHARDEV_INBUF];   /* read but not yet accepted */
    size_t in_len, in_off;
    uint64_t dropped;
    struct log_ratelimit drop_rl;
};

/* A chardev with no back end yet (all fds -1), registered with loop for
 * chardev_input_ready. NULL with err filled. */
struct chardev *chardev_alloc(const char *label, struct loop *loop, char *err, size_t errlen);
/* Release everything of c (chardev_close, minus the mux front-end rule). */
void chardev_free(struct chardev *c);
/* Back-end openers: 0 or -1 with err filled. */
int chardev_stdio_open(struct chardev *c, char *err, size_t errlen);
int chardev_socket_open(struct chardev *c, const struct chardev_spec *spec,
                        char *err, size_t errlen);
/* Deliver buffered input to the front end as far as it accepts it. */
void chardev_pump(struct chardev *c);
void chardev_event(struct chardev *c, enum chardev_event ev);
/* telnet: strip IAC commands from input (IAC IAC is one 0xFF); returns
 * the new length. */
size_t chardev_telnet_filter(struct chardev *c, uint8_t *buf, size_t len);
/* QEMU's query-chardev "filename" of the back end. */
void chardev_filename(struct chardev *c, char *buf, size_t len);
/* mux front ends (chardev_mux.c) */
void chardev_mux_write(struct chardev *fe, const void *buf, size_t len);
void chardev_mux_resume(struct chardev_mux *mux);
void chardev_mux_frontend_event_set(struct chardev *fe);
/* socket server: a client connected or went away (loop thread). */
void chardev_attach_client(struct chardev *c, int fd);
void chardev_detach_client(struct chardev *c);
/* Drop buffered output and stop watching out_fd (peer gone). Loop thread. */
void chardev_output_reset(struct chardev *c);
/* (Re)start watching in_fd for input. */
void chardev_watch_input(struct chardev *c);

#endif
