/* See log.h. */
#include "core/log.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The only mutable process-wide state: set once at start-up by main(). */
static enum log_level log_level_current = LOG_WARN;
static int log_fd = 2;

void log_set_level(enum log_level level) { log_level_current = level; }
void log_set_fd(int fd) { log_fd = fd; }

static void log_vmsg(enum log_level level, const char *fmt, va_list ap)
{
    static const char *const names[] = { "error", "warning", "info", "debug" };
    char line[1024];
    int n = snprintf(line, sizeof line, "kvmbox: %s: ", names[level]);
    if (n < 0)
        return;
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    if (m < 0)
        return;
    size_t len = (size_t)n + (size_t)m;
    if (len > sizeof line - 2)
        len = sizeof line - 2;
    line[len++] = '\n';
    /* One write per line so concurrent threads do not interleave. */
    ssize_t r = write(log_fd, line, len);
    (void)r;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    if (level > log_level_current)
        return;
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(level, fmt, ap);
    va_end(ap);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Not locked: a rare race only miscounts suppressed lines, which is
 * acceptable for a diagnostic limiter, and keeps hot guest paths lock-free. */
void log_ratelimited(struct log_ratelimit *rl, enum log_level level,
                     const char *fmt, ...)
{
    enum { INTERVAL_MS = 5000, BURST = 10 };
    if (level > log_level_current)
        return;
    uint64_t now = now_ms();
    if (now - rl->window_start_ms >= INTERVAL_MS) {
        if (rl->suppressed)
            log_msg(level, "(%u similar messages suppressed)", rl->suppressed);
        rl->window_start_ms = now;
        rl->printed = 0;
        rl->suppressed = 0;
    }
    if (rl->printed >= BURST) {
        rl->suppressed++;
        return;
    }
    rl->printed++;
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(level, fmt, ap);
    va_end(ap);
}
