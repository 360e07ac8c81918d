/* Character devices: where a serial port's bytes go and come from (stdio,
 * null, file, pty, unix/tcp sockets). A front end (the UART) writes with
 * chardev_write() and receives through the input callback.
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
    /* -nographic escape Ctrl-a x: the user asked to quit. */
    void (*quit)(void *opaque);
    void *opaque;
};

/* Open the back end. For a server socket with wait=on this blocks until a
 * client connects (as QEMU does). Returns NULL with a one-line reason in err. */
struct chardev *chardev_open(const struct chardev_spec *spec, const char *label,
                             struct loop *loop, int nographic,
                             const struct chardev_hooks *hooks,
                             char *err, size_t errlen);
void chardev_close(struct chardev *c);
void chardev_set_input(struct chardev *c, chardev_input_fn fn, void *opaque);
void chardev_write(struct chardev *c, const void *buf, size_t len);
void chardev_input_ready(struct chardev *c);
/* Restore the terminal if any chardev put it in raw mode: safe to call from
 * exit paths more than once. */
void chardev_restore_terminal(void);

#endif
