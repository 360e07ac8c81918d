/* Lifecycle and control commands: stop, cont, system_reset,
 * system_powerdown, quit, set_link, inject-nmi, human-monitor-command. */
#include "monitor/commands.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "core/vm.h"

void qmp_error_set(struct qmp_error *e, const char *cls, const char *fmt, ...)
{
    e->cls = cls;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->desc, sizeof e->desc, fmt, ap);
    va_end(ap);
}

static struct json *empty(struct qmp_error *e)
{
    struct json *j = json_object();
    if (!j)
        qmp_error_set(e, QERR_GENERIC, "Out of memory");
    return j;
}

struct json *cmd_stop(struct monitor *m, const struct json *a, struct qmp_error *e)
{
    vm_stop(m->vm);
    return empty(e);
}

struct json *cmd_cont(struct monitor *m, const struct json *a, struct qmp_error *e)
{
    int r = vm_cont(m->vm);
    if (r == -EBUSY) {
        qmp_error_set(e, QERR_GENERIC, "Resetting the Virtual Machine is required");
        return NULL;
    }
    if (r < 0) {
        qmp_error_set(e, QERR_GENERIC, "%s", strerror(-r));
        return NULL;
    }
    return empty(e);
}

struct json *cmd_system_reset(struct monitor *m, const struct json *a, struct qmp_error *e)
{
    int r = vm_system_reset(m->vm);
    if (r < 0) {
        qmp_error_set(e, QERR_GENERIC, "Reset failed: %s", strerror(-r));
        return NULL;
    }
    return empty(e);
}

struct json *cmd_system_powerdown(struct monitor *m, const struct json *a, struct qmp_error *e)
{
    int r = vm_system_powerdown(m->vm);
    if (r < 0) {
        qmp_error_set(e, QERR_GENERIC, "This machine has no power button (%s)", strerror(-r));
        return NULL;
    }
    return empty(e);
}

struct json *cmd_quit(struct monitor *m, const struct json *a, struct qmp_error *e)
{
    vm_quit(m->vm, "host-qmp-quit");
    return empty(e);
}

/* No NICs yet: every name is unknown, as in QEMU without that netdev. */
struct json *cmd_set_link(struct monitor *m, const struct json *a, struct qmp_error *e)
{
    const char *name = json_get_string(json_object_get(a, "name"));
    qmp_error_set(e, QERR_DEVICE_NOT_FOUND, "Device '%s' not found", name ? name : "");
    return NULL;
}

struct json *cmd_inject_nmi(struct monitor *m, const struct json *a, struct qmp_error *e)
{
    struct vm *vm = m->vm;
    bool held = monitor_vcpus_hold(vm);
    int err = 0;
    for (unsigned i = 0; i < vm->nr_vcpus; i++)
        if (ioctl(vm->vcpus[i].fd, KVM_NMI) < 0 && !err)
            err = errno;
    monitor_vcpus_release(vm, held);
    if (err) {
        qmp_error_set(e, QERR_GENERIC, "Injecting an NMI failed: %s", strerror(err));
        return NULL;
    }
    return empty(e);
}

struct json *cmd_human_monitor_command(struct monitor *m, const struct json *a,
                                       struct qmp_error *e)
{
    const char *line = json_get_string(json_object_get(a, "command-line"));
    struct json *cpu = json_object_get(a, "cpu-index");
    unsigned cpu_index = 0;
    if (cpu) {
        int64_t c = json_get_int(cpu);
        if (c < 0 || (uint64_t)c >= m->vm->nr_vcpus) {
            qmp_error_set(e, QERR_GENERIC, "Parameter 'cpu-index' expects a CPU number");
            return NULL;
        }
        cpu_index = (unsigned)c;
    }
    char *out = hmp_execute_capture(m->vm, line ? line : "", cpu_index);
    if (!out) {
        qmp_error_set(e, QERR_GENERIC, "Out of memory");
        return NULL;
    }
    struct json *r = json_string(out);
    free(out);
    if (!r)
        qmp_error_set(e, QERR_GENERIC, "Out of memory");
    return r;
}
