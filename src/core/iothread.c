/* See iothread.h. */
#include "core/iothread.h"
#include "core/loop.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

struct iothread {
    char name[16];
    struct loop *loop;
    pthread_t thread;
    bool started;
    atomic_bool stopping;
};

static void iothread_on_wake(void *opaque)
{
    struct iothread *t = opaque;
    if (atomic_load(&t->stopping))
        loop_quit(t->loop);
}

struct iothread *iothread_new(const char *name)
{
    struct iothread *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    snprintf(t->name, sizeof t->name, "%s", name);
    t->loop = loop_new(iothread_on_wake, t);
    if (!t->loop) {
        free(t);
        return NULL;
    }
    return t;
}

struct loop *iothread_loop(struct iothread *t) { return t->loop; }

static void *iothread_main(void *arg)
{
    struct iothread *t = arg;
    pthread_setname_np(pthread_self(), t->name);
    loop_run(t->loop);
    return NULL;
}

int iothread_start(struct iothread *t)
{
    /* Signals are the main thread's business (signalfd); the new thread
     * inherits the creator's mask, so block everything while creating it. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int r = pthread_create(&t->thread, NULL, iothread_main, t);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r)
        return -r;
    t->started = true;
    return 0;
}

void iothread_stop(struct iothread *t)
{
    if (!t || !t->started)
        return;
    atomic_store(&t->stopping, true);
    loop_wake(t->loop);
    pthread_join(t->thread, NULL);
    t->started = false;
}

void iothread_free(struct iothread *t)
{
    if (!t)
        return;
    iothread_stop(t);
    loop_free(t->loop);
    free(t);
}
