/* aio=io_uring for requests that map straight onto the host file (raw):
 * readv/writev/fsync SQEs, completions signalled on the backend's eventfd
 * (io_uring_register_eventfd) and reaped on the completion loop. The ring
 * is touched only from that loop's thread (submission happens there too),
 * so it needs no lock. */
#include "block/block_int.h"

#include <errno.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { URING_ENTRIES = 128 };

struct blk_uring {
    struct io_uring ring;
    struct blk_file *f;
    unsigned in_ring;
    /* Requests beyond the ring's size wait here (linked through priv.next):
     * keeping at most URING_ENTRIES in the kernel means the completion
     * queue (twice that) can never overflow. */
    struct blk_req *pend_head, *pend_tail;
};

struct blk_uring *blk_uring_new(struct blk_file *f, int efd, char *err, unsigned errlen)
{
    struct blk_uring *u = calloc(1, sizeof *u);
    if (!u) {
        snprintf(err, errlen, "aio=io_uring: out of memory");
        return NULL;
    }
    int r = io_uring_queue_init(URING_ENTRIES, &u->ring, 0);
    if (r < 0) {
        /* Old kernels, kernel.io_uring_disabled=2, seccomp filters in
         * containers: all show up here. */
        snprintf(err, errlen, "aio=io_uring: io_uring is not available (%s); use aio=threads",
                 strerror(-r));
        free(u);
        return NULL;
    }
    r = io_uring_register_eventfd(&u->ring, efd);
    if (r < 0) {
        snprintf(err, errlen, "aio=io_uring: io_uring is not available (cannot register an "
                 "eventfd: %s); use aio=threads", strerror(-r));
        io_uring_queue_exit(&u->ring);
        free(u);
        return NULL;
    }
    u->f = f;
    return u;
}

void blk_uring_free(struct blk_uring *u)
{
    if (!u)
        return;
    io_uring_queue_exit(&u->ring);
    free(u);
}

unsigned blk_uring_in_flight(const struct blk_uring *u) { return u->in_ring; }

static void uring_prep(struct blk_uring *u, struct io_uring_sqe *sqe, struct blk_req *r)
{
    switch (r->op) {
    case BLK_OP_READ:
        io_uring_prep_readv(sqe, u->f->fd, r->priv.iov, r->priv.iovcnt, r->offset);
        break;
    case BLK_OP_WRITE:
        io_uring_prep_writev(sqe, u->f->fd, r->priv.iov, r->priv.iovcnt, r->offset);
        break;
    default:    /* FLUSH; block.c sends nothing else here */
        io_uring_prep_fsync(sqe, u->f->fd, IORING_FSYNC_DATASYNC);
        break;
    }
    io_uring_sqe_set_data(sqe, r);
}

/* Move waiting requests into the ring while there is room, then submit. */
static void uring_fill(struct blk_uring *u)
{
    unsigned added = 0;
    while (u->pend_head && u->in_ring < URING_ENTRIES) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
        if (!sqe)
            break;
        struct blk_req *r = u->pend_head;
        u->pend_head = r->priv.next;
        if (!u->pend_head)
            u->pend_tail = NULL;
        uring_prep(u, sqe, r);
        u->in_ring++;
        added++;
    }
    if (added || io_uring_sq_ready(&u->ring)) {
        /* -EAGAIN/-EBUSY: the kernel is short of resources; the SQEs stay
         * in the submission ring and go with the next submit, which the
         * next reap does (requests are in flight, so a reap will come). */
        int r = io_uring_submit(&u->ring);
        (void)r;
    }
}

static void uring_queue(struct blk_uring *u, struct blk_req *r, bool front)
{
    if (front) {
        r->priv.next = u->pend_head;
        u->pend_head = r;
        if (!u->pend_tail)
            u->pend_tail = r;
        return;
    }
    r->priv.next = NULL;
    if (u->pend_tail)
        u->pend_tail->priv.next = r;
    else
        u->pend_head = r;
    u->pend_tail = r;
}

void blk_uring_submit(struct blk_uring *u, struct blk_req *r)
{
    uring_queue(u, r, false);
    uring_fill(u);
}

void blk_uring_reap(struct blk_uring *u, void (*complete)(void *, struct blk_req *, int),
                    void (*resubmit)(void *, struct blk_req *), void *opaque)
{
    struct io_uring_cqe *cqe;
    while (io_uring_peek_cqe(&u->ring, &cqe) == 0) {
        struct blk_req *r = io_uring_cqe_get_data(cqe);
        int res = cqe->res;
        io_uring_cqe_seen(&u->ring, cqe);
        u->in_ring--;
        if (res == -EINTR || res == -EAGAIN) {
            uring_queue(u, r, true);
            continue;
        }
        if (res < 0 || r->op == BLK_OP_FLUSH) {
            complete(opaque, r, res < 0 ? res : 0);
            continue;
        }
        uint64_t want = r->len - r->priv.done_bytes;
        if ((uint64_t)res >= want) {
            complete(opaque, r, 0);
        } else if (res == 0 && r->op == BLK_OP_READ) {
            /* EOF (the file shrank under us): pad with zeros like QEMU. */
            iov_memset(r->priv.iov, r->priv.iovcnt, r->priv.done_bytes, 0, want);
            complete(opaque, r, 0);
        } else {
            /* Short transfer: the worker pool finishes the rest with the
             * synchronous loop, which handles further short transfers. */
            r->priv.done_bytes += (uint64_t)res;
            resubmit(opaque, r);
        }
    }
    uring_fill(u);
}
