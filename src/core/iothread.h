/* An I/O thread: its own event loop on its own thread. virtio queue
 * notifications (ioeventfds) and back-end completions are handled here, so
 * no request processing happens on vCPU threads.
 *
 * Threads: iothread_new/iothread_free on the main thread; handlers added to
 * iothread_loop() must be added before iothread_start() or from the I/O
 * thread itself (the loop is not locked). */
#ifndef KVMBOX_IOTHREAD_H
#define KVMBOX_IOTHREAD_H

struct iothread;
struct loop;

struct iothread *iothread_new(const char *name);
struct loop *iothread_loop(struct iothread *t);
int iothread_start(struct iothread *t);
/* Stop the thread (joins it); the loop stays usable from the caller's
 * thread (handlers may be removed) until iothread_free. Idempotent. */
void iothread_stop(struct iothread *t);
/* Stop if needed and free everything. */
void iothread_free(struct iothread *t);

#endif
