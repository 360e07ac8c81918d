/* Logging: one process-wide level and sink (the only mutable global the
 * project allows, see docs/architecture.md). Thread-safe: each message is a
 * single write(2). */
#ifndef KVMBOX_LOG_H
#define KVMBOX_LOG_H

#include <stdarg.h>
#include <stdint.h>

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

void log_set_level(enum log_level level);
/* Send log lines to fd (default 2). -D FILE opens a file and passes it here. */
void log_set_fd(int fd);
void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_err(...)   log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

/* For anything a guest can trigger repeatedly: at most `burst` lines per
 * `interval_ms` per call site, then a count of what was suppressed. */
struct log_ratelimit {
    uint64_t window_start_ms;
    unsigned printed;
    unsigned suppressed;
};
#define LOG_RATELIMIT_INIT {0, 0, 0}
void log_ratelimited(struct log_ratelimit *rl, enum log_level level,
                     const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
