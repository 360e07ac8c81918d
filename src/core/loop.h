/* The VMM's event loop: epoll over file descriptors plus cross-thread
 * wake-ups. One loop runs on the main thread (chardev input, lifecycle
 * requests); later issues add I/O threads each running their own loop.
 *
 * Threads: loop_add_fd/loop_mod_fd/loop_del_fd and the callbacks run on the
 * loop's own thread (or before loop_run starts). loop_wake() may be called
 * from any thread; it makes loop_run call the wake callback on the loop
 * thread. */
#ifndef KVMBOX_LOOP_H
#define KVMBOX_LOOP_H

#include <stdbool.h>
#include <stdint.h>

struct loop;

typedef void (*loop_fd_fn)(void *opaque, int fd, uint32_t events);

struct loop *loop_new(void (*wake_fn)(void *opaque), void *wake_opaque);
void loop_free(struct loop *l);
/* events: EPOLLIN / EPOLLOUT mask. 0 or -errno. */
int loop_add_fd(struct loop *l, int fd, uint32_t events, loop_fd_fn fn, void *opaque);
int loop_mod_fd(struct loop *l, int fd, uint32_t events);
int loop_del_fd(struct loop *l, int fd);
/* Run until loop_quit(). Returns 0 or -errno on a fatal epoll error. */
int loop_run(struct loop *l);
/* From the loop thread: make loop_run return after the current iteration. */
void loop_quit(struct loop *l);
/* Any thread, async-signal-safe: run wake_fn on the loop thread soon. */
void loop_wake(struct loop *l);
/* Run fn(arg) on the loop's thread and wait for it to finish: directly when
 * called from that thread or when the loop is not running, else handed over
 * and waited for. For quiescing a device's I/O thread work from a vCPU or
 * the main thread (virtio reset). */
void loop_call_sync(struct loop *l, void (*fn)(void *arg), void *arg);

#endif
