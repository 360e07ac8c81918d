/* The multiplexer: one back end, up to CHARDEV_MUX_MAX front ends, QEMU's
 * Ctrl-a escapes (see chardev.h).
 *
 * Input path (loop thread): the back end's pump offers bytes to mux_input,
 * which handles escapes in order and appends the other bytes to the focused
 * front end's queue (the handle's own inbuf); each queue is then pumped to
 * its front end like any chardev's input. A queue that fills stops
 * mux_input, so the back end keeps the rest and stops reading; when the
 * front end drains its queue (chardev_input_ready on its handle ->
 * chardev_pump -> chardev_mux_resume) the back end's pump runs again.
 *
 * Output path (any thread): front-end writes go to the back end under the
 * mux lock, which also guards the timestamp state. Lock order: front end
 * -> mux -> back-end chardev. */
#include "chardev/chardev_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ESCAPE_CHAR 0x01    /* Ctrl-a, QEMU's default -echr */

struct chardev_mux {
    struct chardev *be;
    struct chardev *fe[CHARDEV_MUX_MAX];
    unsigned nr_fe;             /* front ends 0..nr_fe-1 exist (some may be NULL) */
    unsigned focus;
    bool escape_pending;        /* loop thread */
    bool in_input;              /* inside mux_input: no nested back-end pump */
    pthread_mutex_t lock;       /* timestamps, line_start */
    bool timestamps;
    bool line_start;
    bool stamp_started;
    struct timespec stamp_zero;
};

static bool fe_queue_put(struct chardev *fe, uint8_t ch)
{
    if (fe->in_len == sizeof fe->inbuf) {
        if (fe->in_off == 0)
            return false;
        memmove(fe->inbuf, fe->inbuf + fe->in_off, fe->in_len - fe->in_off);
        fe->in_len -= fe->in_off;
        fe->in_off = 0;
    }
    fe->inbuf[fe->in_len++] = ch;
    return true;
}

/* Escape output (help, "Terminated") goes straight to the back end. */
static void mux_say(struct chardev_mux *mux, const char *s)
{
    chardev_write(mux->be, s, strlen(s));
}

static void mux_print_help(struct chardev_mux *mux)
{
    /* QEMU's help text, with its "\n\r" line ends. */
    mux_say(mux, "\n\r"
                 "C-a h    print this help\n\r"
                 "C-a x    exit emulator\n\r"
                 "C-a s    save disk data back to file (if -snapshot)\n\r"
                 "C-a t    toggle console timestamps\n\r"
                 "C-a b    send break (magic sysrq)\n\r"
                 "C-a c    switch between console and monitor\n\r"
                 "C-a C-a  sends C-a\n\r");
}

/* OPENED reaches a front end once the back end has its peer and the front
 * end has the focus (see CHARDEV_EVENT_OPENED). */
static void mux_deliver_open(struct chardev_mux *mux, struct chardev *fe)
{
    if (fe && !fe->mux_opened && mux->be->connected && fe->event_fn &&
        mux->fe[mux->focus] == fe) {
        fe->mux_opened = true;
        fe->event_fn(fe->event_opaque, CHARDEV_EVENT_OPENED);
    }
}

static void mux_set_focus(struct chardev_mux *mux, unsigned focus)
{
    struct chardev *old = mux->fe[mux->focus];
    if (old && old->mux_opened && old->event_fn)
        old->event_fn(old->event_opaque, CHARDEV_EVENT_FOCUS_OUT);
    mux->focus = focus;
    struct chardev *fe = mux->fe[focus];
    if (!fe)
        return;
    if (fe->mux_opened) {
        if (fe->event_fn)
            fe->event_fn(fe->event_opaque, CHARDEV_EVENT_FOCUS_IN);
    } else {
        mux_deliver_open(mux, fe);
    }
}

/* One escape command (the byte after Ctrl-a). false: the byte could not be
 * taken now (Ctrl-a Ctrl-a into a full queue). */
static bool mux_escape(struct chardev_mux *mux, uint8_t ch)
{
    struct chardev *fe = mux->fe[mux->focus];
    switch (ch) {
    case ESCAPE_CHAR:
        return !fe || fe_queue_put(fe, ch);
    case 'x':
        mux_say(mux, "QEMU: Terminated\n\r");
        if (mux->be->hooks.quit)
            mux->be->hooks.quit(mux->be->hooks.opaque);
        break;
    case 'h':
    case '?':
        mux_print_help(mux);
        break;
    case 'c':
        if (mux->nr_fe > 1) {
            unsigned next = mux->focus;
            do
                next = (next + 1) % mux->nr_fe;
            while (!mux->fe[next]);
            mux_set_focus(mux, next);
        }
        break;
    case 'b':
        if (fe && fe->event_fn)
            fe->event_fn(fe->event_opaque, CHARDEV_EVENT_BREAK);
        break;
    case 't':
        pthread_mutex_lock(&mux->lock);
        mux->timestamps = !mux->timestamps;
        mux->stamp_started = false;
        mux->line_start = false;
        pthread_mutex_unlock(&mux->lock);
        break;
    default:
        break;      /* unknown escapes (and s: no -snapshot) are swallowed, as QEMU */
    }
    return true;
}

static void mux_pump_frontends(struct chardev_mux *mux)
{
    for (unsigned i = 0; i < mux->nr_fe; i++)
        if (mux->fe[i] && mux->fe[i]->in_off < mux->fe[i]->in_len)
            chardev_pump(mux->fe[i]);
}

/* The back end's input callback. */
static size_t mux_input(void *opaque, const uint8_t *buf, size_t len)
{
    struct chardev_mux *mux = opaque;
    size_t i;
    mux->in_input = true;
    for (i = 0; i < len; i++) {
        uint8_t ch = buf[i];
        if (mux->escape_pending) {
            /* A focus switch (c) must first hand the bytes before it to
             * the old front end, so they do not wait for its queue. */
            if (ch == 'c')
                mux_pump_frontends(mux);
            if (!mux_escape(mux, ch))
                break;
            mux->escape_pending = false;
        } else if (ch == ESCAPE_CHAR) {
            mux->escape_pending = true;
        } else {
            struct chardev *fe = mux->fe[mux->focus];
            if (fe && !fe_queue_put(fe, ch))
                break;      /* the front end's queue is full: hold the rest */
            /* no front end at all yet: the byte has nowhere to go */
        }
    }
    mux_pump_frontends(mux);
    mux->in_input = false;
    return i;
}

static void mux_backend_event(void *opaque, enum chardev_event ev)
{
    struct chardev_mux *mux = opaque;
    struct chardev *focused = mux->fe[mux->focus];
    switch (ev) {
    case CHARDEV_EVENT_OPENED:
        mux_deliver_open(mux, focused);
        break;
    case CHARDEV_EVENT_CLOSED:
        for (unsigned i = 0; i < mux->nr_fe; i++) {
            struct chardev *fe = mux->fe[i];
            if (fe && fe->mux_opened) {
                fe->mux_opened = false;
                if (fe->event_fn)
                    fe->event_fn(fe->event_opaque, CHARDEV_EVENT_CLOSED);
            }
        }
        break;
    case CHARDEV_EVENT_BREAK:
        if (focused && focused->event_fn)
            focused->event_fn(focused->event_opaque, CHARDEV_EVENT_BREAK);
        break;
    default:
        break;
    }
}

void chardev_mux_resume(struct chardev_mux *mux)
{
    /* Inside mux_input the back end's pump is already running and picks
     * up where the queue left room. */
    if (!mux->in_input)
        chardev_pump(mux->be);
}

void chardev_mux_frontend_event_set(struct chardev *fe)
{
    mux_deliver_open(fe->mux, fe);
}

/* "[hh:mm:ss.mmm] " since the first stamp, as QEMU's Ctrl-a t. */
static void mux_stamp(struct chardev_mux *mux)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (!mux->stamp_started) {
        mux->stamp_zero = now;
        mux->stamp_started = true;
    }
    long long ms = (now.tv_sec - mux->stamp_zero.tv_sec) * 1000LL +
                   (now.tv_nsec - mux->stamp_zero.tv_nsec) / 1000000;
    long long secs = ms / 1000;
    char buf[48];
    int n = snprintf(buf, sizeof buf, "[%02lld:%02lld:%02lld.%03lld] ", secs / 3600,
                     (secs / 60) % 60, secs % 60, ms % 1000);
    chardev_write(mux->be, buf, (size_t)n);
}

void chardev_mux_write(struct chardev *fe, const void *buf, size_t len)
{
    struct chardev_mux *mux = fe->mux;
    pthread_mutex_lock(&mux->lock);
    if (!mux->timestamps) {
        chardev_write(mux->be, buf, len);
        pthread_mutex_unlock(&mux->lock);
        return;
    }
    const uint8_t *p = buf, *end = p + len;
    while (p < end) {
        if (mux->line_start || !mux->stamp_started) {
            mux_stamp(mux);
            mux->line_start = false;
        }
        const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
        const uint8_t *stop = nl ? nl + 1 : end;
        chardev_write(mux->be, p, (size_t)(stop - p));
        if (nl)
            mux->line_start = true;
        p = stop;
    }
    pthread_mutex_unlock(&mux->lock);
}

struct chardev_mux *chardev_mux_new(struct chardev *be)
{
    struct chardev_mux *mux = calloc(1, sizeof *mux);
    if (!mux)
        return NULL;
    mux->be = be;
    pthread_mutex_init(&mux->lock, NULL);
    chardev_set_input(be, mux_input, mux);
    chardev_set_event(be, mux_backend_event, mux);
    return mux;
}

struct chardev *chardev_mux_frontend(struct chardev_mux *mux, unsigned index)
{
    if (index >= CHARDEV_MUX_MAX)
        return NULL;
    if (!mux->fe[index]) {
        char err[128];
        struct chardev *fe = chardev_alloc(mux->be->label, mux->be->loop, err, sizeof err);
        if (!fe)
            return NULL;
        fe->kind = mux->be->kind;
        fe->mux = mux;
        fe->mux_index = index;
        mux->fe[index] = fe;
        if (index >= mux->nr_fe)
            mux->nr_fe = index + 1;
        /* Bytes typed before the front end existed may be waiting. */
        chardev_mux_resume(mux);
    }
    return mux->fe[index];
}

unsigned chardev_mux_focus(const struct chardev_mux *mux)
{
    return mux->focus;
}

struct chardev *chardev_mux_backend(struct chardev_mux *mux)
{
    return mux->be;
}

void chardev_mux_free(struct chardev_mux *mux)
{
    if (!mux)
        return;
    /* The back end first: no more input reaches the front ends. */
    chardev_free(mux->be);
    for (unsigned i = 0; i < CHARDEV_MUX_MAX; i++)
        if (mux->fe[i])
            chardev_free(mux->fe[i]);
    pthread_mutex_destroy(&mux->lock);
    free(mux);
}
