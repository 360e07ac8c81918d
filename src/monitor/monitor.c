/* The monitor object: binds a chardev (or an output callback) to the QMP or
 * HMP protocol, and the output path shared by both. */
#include "monitor/monitor_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chardev/chardev.h"
#include "core/vm.h"

/* Connection events from the chardev: OPENED (at once for back ends that
 * are always open, on each new client of a socket server, on a mux front
 * end's first focus) starts a fresh session with the greeting / banner;
 * FOCUS_IN (mux, Ctrl-a c back to us) shows the HMP prompt again. */
static void monitor_on_event(void *opaque, enum chardev_event ev)
{
    struct monitor *m = opaque;
    if (ev == CHARDEV_EVENT_OPENED) {
        m->opened = true;
        monitor_connected(m);
    } else if (ev == CHARDEV_EVENT_FOCUS_IN && m->opened && m->mode == MONITOR_HMP) {
        hmp_show_prompt(m);
    }
}

static void monitor_unlisten(struct monitor *m)
{
    vm_remove_listener(m->vm, qmp_vm_event, m);
}

static struct monitor *monitor_alloc(struct vm *vm, enum monitor_mode mode, bool pretty)
{
    struct monitor *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->vm = vm;
    m->mode = mode;
    m->pretty = pretty;
    if (mode == MONITOR_QMP) {
        if (qmp_init(m) < 0 || vm_add_listener(vm, qmp_vm_event, m) < 0) {
            qmp_fini(m);
            free(m);
            return NULL;
        }
        m->listening = true;
    } else {
        hmp_init(m);
    }
    return m;
}

struct monitor *monitor_new_output(struct vm *vm, enum monitor_mode mode, bool pretty,
                                   monitor_out_fn fn, void *opaque)
{
    struct monitor *m = monitor_alloc(vm, mode, pretty);
    if (!m)
        return NULL;
    m->out_fn = fn;
    m->out_opaque = opaque;
    monitor_connected(m);
    return m;
}

struct monitor *monitor_new(struct vm *vm, struct chardev *chr, enum monitor_mode mode,
                            bool pretty)
{
    struct monitor *m = monitor_alloc(vm, mode, pretty);
    if (!m)
        return NULL;
    m->chr = chr;
    chardev_set_input(chr, monitor_input, m);
    chardev_set_event(chr, monitor_on_event, m);    /* greets when the peer is there */
    return m;
}

void monitor_free(struct monitor *m)
{
    if (!m)
        return;
    if (m->chr) {
        chardev_set_input(m->chr, NULL, NULL);
        chardev_set_event(m->chr, NULL, NULL);
    }
    if (m->listening)
        monitor_unlisten(m);
    if (m->mode == MONITOR_QMP)
        qmp_fini(m);
    free(m->cap);
    free(m);
}

size_t monitor_input(void *opaque, const uint8_t *buf, size_t len)
{
    struct monitor *m = opaque;
    if (m->mode != MONITOR_QMP) {
        hmp_input(m, buf, len);
        return len;
    }
    /* Take requests in small pieces and stop while the client is not
     * reading our replies (as QEMU stops reading a QMP socket): the rest
     * stays with the chardev, which offers it again as the backlog drains. */
    enum { PIECE = 512 };
    size_t done = 0;
    while (done < len) {
        if (chardev_write_backlog(m->chr) > CHARDEV_BACKLOG_RESUME)
            break;
        size_t n = len - done < PIECE ? len - done : PIECE;
        qmp_input(m, buf + done, n);
        done += n;
    }
    return done;
}

void monitor_connected(struct monitor *m)
{
    if (m->mode == MONITOR_QMP)
        qmp_greet(m);
    else
        hmp_greet(m);
}

void monitor_write(struct monitor *m, const void *buf, size_t len)
{
    if (m->capturing) {
        if (m->cap_truncated)
            return;
        if (m->cap_len + len + 1 > MONITOR_CAPTURE_MAX) {
            m->cap_truncated = true;
            return;
        }
        if (m->cap_len + len + 1 > m->cap_size) {
            size_t ns = m->cap_size ? m->cap_size : 256;
            while (ns < m->cap_len + len + 1)
                ns *= 2;
            char *p = realloc(m->cap, ns);
            if (!p) {
                m->cap_truncated = true;
                return;
            }
            m->cap = p;
            m->cap_size = ns;
        }
        memcpy(m->cap + m->cap_len, buf, len);
        m->cap_len += len;
        m->cap[m->cap_len] = '\0';
        return;
    }
    if (m->out_fn)
        m->out_fn(m->out_opaque, buf, len);
    else if (m->chr)
        chardev_write(m->chr, buf, len);
}

/* Text output: '\n' becomes "\r\n" as in QEMU's monitor_puts. */
void monitor_puts(struct monitor *m, const char *s)
{
    const char *start = s;
    for (; *s; s++) {
        if (*s == '\n') {
            monitor_write(m, start, (size_t)(s - start));
            monitor_write(m, "\r\n", 2);
            start = s + 1;
        }
    }
    monitor_write(m, start, (size_t)(s - start));
}

void monitor_printf(struct monitor *m, const char *fmt, ...)
{
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof small) {
        monitor_puts(m, small);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big)
        return;
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    monitor_puts(m, big);
    free(big);
}
