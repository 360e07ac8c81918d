/* The character devices of one VM, by id: opened from the config's
 * chardev specs, handed to front ends (serial ports, monitors), listed for
 * query-chardev / info chardev, closed together at teardown.
 *
 * Threads: main thread only (set-up, the monitor, teardown). */
#ifndef KVMBOX_CHARDEV_REGISTRY_H
#define KVMBOX_CHARDEV_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>

#include "chardev/chardev.h"

struct chardev_registry;

struct chardev_registry *chardev_registry_new(void);
/* Close every chardev (front ends must be gone or detached). */
void chardev_registry_free(struct chardev_registry *r);
/* Open spec (its id must be new) and register it; a mux=on spec gets a mux
 * on top. nographic and hooks as chardev_open. 0, or -1 with a one-line
 * reason in err. */
int chardev_registry_open(struct chardev_registry *r, const struct chardev_spec *spec,
                          struct loop *loop, int nographic, const struct chardev_hooks *hooks,
                          char *err, size_t errlen);
/* The handle a new front end of chardev id uses: the chardev itself (once),
 * or the mux's next front end (up to CHARDEV_MUX_MAX). NULL with a one-line
 * reason in err when there is no such id or it is in use. */
struct chardev *chardev_registry_attach(struct chardev_registry *r, const char *id,
                                        char *err, size_t errlen);
/* The mux of id, or NULL (not a mux / no such id). */
struct chardev_mux *chardev_registry_mux(struct chardev_registry *r, const char *id);
/* query-chardev: every chardev with its label, QEMU's filename ("stdio",
 * "pty:/dev/pts/3", "disconnected:unix:/tmp/s,server=on", "mux", ...) and
 * whether a front end is attached. A mux ID is listed as "ID" (filename
 * "mux") followed by its back end "ID-base", as QEMU does. Creation order. */
void chardev_registry_foreach(struct chardev_registry *r,
                              void (*fn)(void *ctx, const char *label, const char *filename,
                                         bool frontend_open),
                              void *ctx);

#endif
