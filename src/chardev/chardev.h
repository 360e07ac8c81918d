/* Character devices: where a serial port's or monitor's bytes go and come
 * from (stdio, null, file, pipe, pty, unix/tcp/telnet sockets). A front end
 * (the UART, a monitor) writes with chardev_write(), receives through the
 * input callback and learns about connections through the event callback.
 * A mux (chardev_mux_new) shares one back end between up to four front
 * ends, each with its own struct chardev handle, so front ends never know
 * whether they are multiplexed. src/chardev/registry.h owns the chardevs of
 * a VM by id.
 *
 * Threads: chardev_write() may be called from any thread (vCPU threads via
 * the UART); it never blocks on a slow peer — a socket or pty that cannot
 * take the bytes drops them (counted, logged rate-limited), so a stalled
 * client cannot stall the guest. Input callbacks run on the event-loop
 * thread. chardev_input_ready() may be called from any thread: the front
 * end has room again, the loop resumes delivering buffered input.
 * Lock order: front-end lock (e.g. the UART's) -> chardev lock. */
#ifndef KVMBOX_CHARDEV_H
#define KVMBOX_CHARDEV_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

struct chardev;
struct loop;

/* Offer input to the front end; returns how many bytes it accepted. */
typedef size_t (*chardev_input_fn)(void *opaque, const uint8_t *buf, size_t len);

struct chardev_hooks {
    /* Mux escape Ctrl-a x: the user asked to quit. */
    void (*quit)(void *opaque);
    void *opaque;
};

enum chardev_event {
    /* The peer is there: a socket client connected; other back ends are
     * open from the start (delivered when the handler is set). For a mux
     * front end: delivered when it first gets the focus, so a monitor
     * prints its banner and prompt when the user first switches to it
     * (QEMU's visible behaviour). */
    CHARDEV_EVENT_OPENED,
    /* The peer went away (socket client disconnected). */
    CHARDEV_EVENT_CLOSED,
    /* Mux: this front end got the focus again (Ctrl-a c): e.g. show the
     * prompt. */
    CHARDEV_EVENT_FOCUS_IN,
    /* Mux: the focus moved to another front end. */
    CHARDEV_EVENT_FOCUS_OUT,
    /* Mux Ctrl-a b / telnet IAC BREAK: a serial break. */
    CHARDEV_EVENT_BREAK,
};

/* Event callbacks run on the event-loop thread (or inside
 * chardev_set_event). */
typedef void (*chardev_event_fn)(void *opaque, enum chardev_event ev);

/* Open the back end. For a server socket with wait=on this blocks until a
 * client connects (as QEMU does). nographic: stdio without signal= keeps
 * Ctrl-C for the guest. hooks are used by a mux on top of it. Returns NULL
 * with a one-line reason in err. */
struct chardev *chardev_open(const struct chardev_spec *spec, const char *label,
                             struct loop *loop, int nographic,
                             const struct chardev_hooks *hooks,
                             char *err, size_t errlen);
/* A mux front-end handle is only detached (the mux owns it). */
void chardev_close(struct chardev *c);
/* fn NULL detaches the front end. */
void chardev_set_input(struct chardev *c, chardev_input_fn fn, void *opaque);
/* Set the event handler; OPENED is delivered at once if the peer is there. */
void chardev_set_event(struct chardev *c, chardev_event_fn fn, void *opaque);
void chardev_write(struct chardev *c, const void *buf, size_t len);
void chardev_input_ready(struct chardev *c);
/* Bytes written but not yet taken by the peer (buffered output). A front
 * end that produces output per input (the QMP monitor) stops accepting
 * input while this is large, so a client that does not read cannot make it
 * buffer without bound; input resumes as the backlog drains. */
size_t chardev_write_backlog(struct chardev *c);
#define CHARDEV_BACKLOG_RESUME (64u << 10)

/* ---- the multiplexer (-chardev ...,mux=on, -serial mon:DEV, -nographic) ----
 * Output from every front end goes to the back end (with Ctrl-a t, each
 * line stamped with the time since the first stamp); input goes to the
 * focused front end, which starts as front end 0. QEMU's escapes (Ctrl-a):
 * c next front end, h/? help, x quit (hooks.quit of the back end), b break
 * to the focused front end, t timestamps, Ctrl-a a literal Ctrl-a, anything
 * else swallowed. Each front end has its own input queue, so escapes still
 * work while a front end is not taking input (up to a queue of typed-ahead
 * bytes); past that the back end holds its input (flow control, no loss). */
#define CHARDEV_MUX_MAX CONFIG_MUX_MAX_FRONTENDS
struct chardev_mux;
/* Takes ownership of be (closed by chardev_mux_free). NULL when out of
 * memory. */
struct chardev_mux *chardev_mux_new(struct chardev *be);
/* The handle of front end index (< CHARDEV_MUX_MAX), created on first use;
 * NULL if out of range or out of memory. */
struct chardev *chardev_mux_frontend(struct chardev_mux *mux, unsigned index);
/* Index of the focused front end. */
unsigned chardev_mux_focus(const struct chardev_mux *mux);
struct chardev *chardev_mux_backend(struct chardev_mux *mux);
void chardev_mux_free(struct chardev_mux *mux);
/* Restore the terminal if any chardev put it in raw mode: safe to call from
 * exit paths more than once. */
void chardev_restore_terminal(void);

#endif
