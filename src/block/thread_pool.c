/* aio=threads: a fixed set of workers taking requests from one FIFO. The
 * work function runs the driver's synchronous calls and hands the result to
 * the completion loop; nothing here knows about completions. */
#include "block/block_int.h"

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

struct blk_pool {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct blk_req *head, *tail;    /* linked through priv.next */
    bool stopping;
    void (*work)(void *opaque, struct blk_req *r);
    void *opaque;
    char name[16];
    unsigned nthreads;
    pthread_t threads[];
};

static void *pool_worker(void *arg)
{
    struct blk_pool *p = arg;
    pthread_setname_np(pthread_self(), p->name);
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->head && !p->stopping)
            pthread_cond_wait(&p->cond, &p->lock);
        if (!p->head)
            break;      /* stopping and nothing queued */
        struct blk_req *r = p->head;
        p->head = r->priv.next;
        if (!p->head)
            p->tail = NULL;
        pthread_mutex_unlock(&p->lock);
        p->work(p->opaque, r);
        pthread_mutex_lock(&p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

struct blk_pool *blk_pool_new(unsigned nthreads, const char *name,
                              void (*work)(void *opaque, struct blk_req *r), void *opaque)
{
    struct blk_pool *p = calloc(1, sizeof *p + nthreads * sizeof(pthread_t));
    if (!p)
        return NULL;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    p->work = work;
    p->opaque = opaque;
    snprintf(p->name, sizeof p->name, "%s", name);
    /* Workers must not take the process's signals (the main thread reads
     * them from a signalfd; SIGUSR1 is the vCPU kick). */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    for (unsigned i = 0; i < nthreads; i++) {
        if (pthread_create(&p->threads[i], NULL, pool_worker, p) != 0)
            break;
        p->nthreads++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!p->nthreads) {
        blk_pool_free(p);
        return NULL;
    }
    return p;
}

void blk_pool_submit(struct blk_pool *p, struct blk_req *r)
{
    r->priv.next = NULL;
    pthread_mutex_lock(&p->lock);
    if (p->tail)
        p->tail->priv.next = r;
    else
        p->head = r;
    p->tail = r;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

void blk_pool_free(struct blk_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    for (unsigned i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->cond);
    free(p);
}
