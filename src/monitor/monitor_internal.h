/* Shared between the monitor's files (monitor.c, qmp.c, hmp.c,
 * commands_*.c); not for the rest of kvmbox.
 *
 * A monitor is one client endpoint: a chardev (one connection at a time) or,
 * for tests and human-monitor-command, an output callback / capture buffer.
 * Everything here runs on the main thread. */
#ifndef KVMBOX_MONITOR_INTERNAL_H
#define KVMBOX_MONITOR_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "monitor/monitor.h"

struct json;
struct json_stream;
struct vm_event;

typedef void (*monitor_out_fn)(void *opaque, const void *buf, size_t len);

/* Upper bound of the text one HMP command produces into a capture buffer
 * (human-monitor-command): x/100000x must not allocate without bound. */
#define MONITOR_CAPTURE_MAX (1u << 20)
/* Longest HMP input line; longer lines are discarded with an error. */
#define HMP_LINE_MAX 4096

struct qmp_state {
    struct json_stream *stream;
    bool negotiated;            /* qmp_capabilities done */
};

struct hmp_state {
    char line[HMP_LINE_MAX];
    size_t len;
    bool overflow;              /* current line too long: discard to '\n' */
    bool last_cr;               /* swallow the '\n' of "\r\n" */
    int esc;                    /* inside an escape sequence: 1 after ESC, 2 in CSI */
    unsigned cur_cpu;           /* `cpu N` / x uses this CPU */
    /* Remembered defaults of x/xp as QEMU keeps them: last format/size. */
    char last_fmt;
    int last_size;
};

struct monitor {
    struct vm *vm;
    struct chardev *chr;
    enum monitor_mode mode;
    bool pretty;
    monitor_out_fn out_fn;      /* NULL: write to chr */
    void *out_opaque;
    /* Capture (human-monitor-command): output appended here instead. */
    bool capturing;
    char *cap;
    size_t cap_len, cap_size;
    bool cap_truncated;
    bool listening;             /* registered as a vm listener */
    bool opened;                /* the chardev reported a peer (OPENED) */
    struct qmp_state qmp;
    struct hmp_state hmp;
};

/* monitor.c */
/* A monitor whose output goes to fn (unit tests). vm may be a hand-built
 * struct with only the fields the commands read. */
struct monitor *monitor_new_output(struct vm *vm, enum monitor_mode mode, bool pretty,
                                   monitor_out_fn fn, void *opaque);
/* Input bytes from the client (the chardev input callback). */
size_t monitor_input(void *opaque, const uint8_t *buf, size_t len);
/* A new client connected: greeting (QMP) or banner + prompt (HMP), fresh
 * protocol state. */
void monitor_connected(struct monitor *m);
void monitor_write(struct monitor *m, const void *buf, size_t len);
void monitor_puts(struct monitor *m, const char *s);
void monitor_printf(struct monitor *m, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* qmp.c */
int qmp_init(struct monitor *m);
void qmp_fini(struct monitor *m);
void qmp_greet(struct monitor *m);
void qmp_input(struct monitor *m, const uint8_t *buf, size_t len);
/* vm listener: emit the event to this client (after negotiation). */
void qmp_vm_event(void *opaque, const struct vm_event *ev);
/* Send one JSON value as a line (pretty or compact). */
void qmp_send(struct monitor *m, const struct json *j);

/* hmp.c */
void hmp_init(struct monitor *m);
void hmp_greet(struct monitor *m);
void hmp_show_prompt(struct monitor *m);
void hmp_input(struct monitor *m, const uint8_t *buf, size_t len);
/* Run one command line; output through monitor_printf. */
void hmp_execute(struct monitor *m, const char *line);
/* Run a line on a throw-away HMP monitor of vm and return its output
 * (malloc'd, NUL-terminated; NULL on allocation failure). */
char *hmp_execute_capture(struct vm *vm, const char *line, unsigned cpu_index);

#endif
