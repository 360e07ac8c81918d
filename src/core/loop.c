/* See loop.h. */
#include "core/loop.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

struct loop_handler {
    int fd;
    loop_fd_fn fn;
    void *opaque;
    bool deleted;
    struct loop_handler *next;
};

struct loop {
    int epfd;
    int wake_fd;
    void (*wake_fn)(void *opaque);
    void *wake_opaque;
    bool quit;
    struct loop_handler *handlers;
    /* loop_call_sync: one pending call at a time (call_lock), run by the
     * loop thread when it sees call_fn set. */
    atomic_bool running;
    pthread_t thread;
    pthread_mutex_t call_lock;      /* serialises callers */
    pthread_mutex_t call_mutex;     /* guards the fields below */
    pthread_cond_t call_done;
    void (*call_fn)(void *arg);
    void *call_arg;
    bool call_finished;
};

struct loop *loop_new(void (*wake_fn)(void *opaque), void *wake_opaque)
{
    struct loop *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    l->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (l->epfd < 0 || l->wake_fd < 0)
        goto fail;
    l->wake_fn = wake_fn;
    l->wake_opaque = wake_opaque;
    pthread_mutex_init(&l->call_lock, NULL);
    pthread_mutex_init(&l->call_mutex, NULL);
    pthread_cond_init(&l->call_done, NULL);
    /* The wake eventfd is tagged with a NULL handler pointer. */
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->wake_fd, &ev) < 0)
        goto fail;
    return l;
fail:
    if (l->epfd >= 0)
        close(l->epfd);
    if (l->wake_fd >= 0)
        close(l->wake_fd);
    free(l);
    return NULL;
}

static void loop_reap(struct loop *l)
{
    struct loop_handler **pp = &l->handlers;
    while (*pp) {
        struct loop_handler *h = *pp;
        if (h->deleted) {
            *pp = h->next;
            free(h);
        } else {
            pp = &h->next;
        }
    }
}

void loop_free(struct loop *l)
{
    if (!l)
        return;
    for (struct loop_handler *h = l->handlers; h; h = h->next)
        h->deleted = true;
    loop_reap(l);
    close(l->epfd);
    close(l->wake_fd);
    pthread_cond_destroy(&l->call_done);
    pthread_mutex_destroy(&l->call_mutex);
    pthread_mutex_destroy(&l->call_lock);
    free(l);
}

static struct loop_handler *loop_find(struct loop *l, int fd)
{
    for (struct loop_handler *h = l->handlers; h; h = h->next)
        if (h->fd == fd && !h->deleted)
            return h;
    return NULL;
}

int loop_add_fd(struct loop *l, int fd, uint32_t events, loop_fd_fn fn, void *opaque)
{
    struct loop_handler *h = calloc(1, sizeof *h);
    if (!h)
        return -ENOMEM;
    *h = (struct loop_handler){ fd, fn, opaque, false, l->handlers };
    struct epoll_event ev = { .events = events, .data.ptr = h };
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        int err = -errno;
        free(h);
        return err;
    }
    l->handlers = h;
    return 0;
}

int loop_mod_fd(struct loop *l, int fd, uint32_t events)
{
    struct loop_handler *h = loop_find(l, fd);
    if (!h)
        return -ENOENT;
    struct epoll_event ev = { .events = events, .data.ptr = h };
    return epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) < 0 ? -errno : 0;
}

int loop_del_fd(struct loop *l, int fd)
{
    struct loop_handler *h = loop_find(l, fd);
    if (!h)
        return -ENOENT;
    epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
    /* Freed after the current dispatch round: a pending event in this
     * round's array may still point at it. */
    h->deleted = true;
    return 0;
}

void loop_quit(struct loop *l) { l->quit = true; }

void loop_wake(struct loop *l)
{
    uint64_t one = 1;
    ssize_t r = write(l->wake_fd, &one, sizeof one);
    (void)r;    /* EAGAIN: the counter is already non-zero, a wake is pending */
}

static void loop_run_pending_call(struct loop *l)
{
    pthread_mutex_lock(&l->call_mutex);
    void (*fn)(void *) = l->call_fn;
    void *arg = l->call_arg;
    l->call_fn = NULL;
    pthread_mutex_unlock(&l->call_mutex);
    if (!fn)
        return;
    fn(arg);
    pthread_mutex_lock(&l->call_mutex);
    l->call_finished = true;
    pthread_cond_broadcast(&l->call_done);
    pthread_mutex_unlock(&l->call_mutex);
}

void loop_call_sync(struct loop *l, void (*fn)(void *arg), void *arg)
{
    if (!atomic_load(&l->running) || pthread_equal(pthread_self(), l->thread)) {
        fn(arg);
        return;
    }
    pthread_mutex_lock(&l->call_lock);
    pthread_mutex_lock(&l->call_mutex);
    l->call_fn = fn;
    l->call_arg = arg;
    l->call_finished = false;
    pthread_mutex_unlock(&l->call_mutex);
    loop_wake(l);
    pthread_mutex_lock(&l->call_mutex);
    while (!l->call_finished) {
        if (!atomic_load(&l->running) && l->call_fn == fn) {
            /* The loop stopped before taking the call: run it here. */
            l->call_fn = NULL;
            pthread_mutex_unlock(&l->call_mutex);
            fn(arg);
            pthread_mutex_lock(&l->call_mutex);
            break;
        }
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 10 * 1000 * 1000;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&l->call_done, &l->call_mutex, &until);
    }
    pthread_mutex_unlock(&l->call_mutex);
    pthread_mutex_unlock(&l->call_lock);
}

int loop_run(struct loop *l)
{
    l->quit = false;
    l->thread = pthread_self();
    atomic_store(&l->running, true);
    while (!l->quit) {
        struct epoll_event evs[16];
        int n = epoll_wait(l->epfd, evs, 16, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int err = -errno;
            atomic_store(&l->running, false);
            return err;
        }
        for (int i = 0; i < n; i++) {
            struct loop_handler *h = evs[i].data.ptr;
            if (!h) {
                uint64_t v;
                ssize_t r = read(l->wake_fd, &v, sizeof v);
                (void)r;
                loop_run_pending_call(l);
                if (l->wake_fn)
                    l->wake_fn(l->wake_opaque);
                continue;
            }
            if (!h->deleted)
                h->fn(h->opaque, h->fd, evs[i].events);
        }
        loop_reap(l);
    }
    /* A caller may have queued a call just as the loop was told to quit:
     * run it so nobody waits forever. */
    atomic_store(&l->running, false);
    loop_run_pending_call(l);
    return 0;
}
