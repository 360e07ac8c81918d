/* HMP internals shared by hmp.c (line input, parser, command table),
 * hmp_info.c (info subcommands) and hmp_memory.c (x, xp, memsave,
 * pmemsave). */
#ifndef KVMBOX_MONITOR_HMP_H
#define KVMBOX_MONITOR_HMP_H

#include <stdarg.h>

#include "monitor/commands.h"
#include "monitor/monitor_internal.h"

struct hmp_command {
    const char *name;
    const char *args;       /* for help */
    const char *help;       /* NULL: an alias, not listed */
    void (*fn)(struct monitor *m, char *args);
};

/* "Error: DESC" as QEMU's hmp_handle_error. */
void hmp_report_error(struct monitor *m, const struct qmp_error *e);
/* "MSG\nTry "help CMD" for more information". */
void hmp_usage_error(struct monitor *m, const char *cmd, const char *msg);

/* hmp_info.c */
void hmp_info(struct monitor *m, char *args);
void hmp_info_help(struct monitor *m, const char *args);

/* hmp_memory.c */
void hmp_x(struct monitor *m, char *args);
void hmp_xp(struct monitor *m, char *args);
void hmp_memsave(struct monitor *m, char *args);
void hmp_pmemsave(struct monitor *m, char *args);

#endif
