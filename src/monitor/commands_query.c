/* query-* commands: QAPI-shaped results (QEMU 7.2 qapi schema). HMP's
 * `info` commands format these same results. */
#include "monitor/commands.h"

#include <stdio.h>
#include <string.h>

#include "core/vm.h"
#include "version.h"

/* The version we advertise is the QEMU release whose QMP behaviour kvmbox
 * mirrors (7.2.0), not kvmbox's own: clients (libvirt, qmp-shell, scripts)
 * gate features and code paths on the QEMU version, and a version they do
 * not know (0.1.0) makes them refuse the monitor outright or take pre-2.x
 * legacy paths. kvmbox's identity goes in "package", where QEMU puts the
 * distribution's build string. */
#define MONITOR_QEMU_MAJOR 7
#define MONITOR_QEMU_MINOR 2
#define MONITOR_QEMU_MICRO 0

static struct json *obj_add(struct json *o, const char *k, struct json *v)
{
    if (o && json_object_set(o, k, v) < 0) {
        json_free(o);
        return NULL;
    }
    if (!o)
        json_free(v);
    return o;
}

struct json *monitor_version_json(void)
{
    struct json *q = json_object();
    q = obj_add(q, "micro", json_int(MONITOR_QEMU_MICRO));
    q = obj_add(q, "minor", json_int(MONITOR_QEMU_MINOR));
    q = obj_add(q, "major", json_int(MONITOR_QEMU_MAJOR));
    struct json *v = json_object();
    v = obj_add(v, "qemu", q);
    return obj_add(v, "package", json_string("kvmbox " KVMBOX_VERSION));
}

static struct json *oom(struct json *j, struct qmp_error *e)
{
    if (!j)
        qmp_error_set(e, QERR_GENERIC, "Out of memory");
    return j;
}

struct json *cmd_query_version(struct monitor *m, const struct json *a, struct qmp_error *e)
{
    return oom(monitor_version_json(), e);
}

struct json *cmd_query_name(struct monitor *m, const struct json *a, struct qmp_error *e)
{
    struct json *o = json_object();
    const char *name = m->vm->cfg ? m->vm->cfg->name : NULL;
    if (name)
        o = obj_add(o, "name", json_string(name));
    return oom(o, e);
}

struct json *cmd_query_status(struct monitor *m, const struct json *a, struct qmp_error *e)
{
    struct json *o = json_object();
    o = obj_add(o, "status", json_string(vm_run_state_name(m->vm->run_state)));
    o = obj_add(o, "singlestep", json_bool(false));
    o = obj_add(o, "running", json_bool(m->vm->run_state == VM_RUN_RUNNING));
    return oom(o, e);
}

struct json *cmd_query_kvm(struct monitor *m, const struct json *a, struct qmp_error *e)
{
    struct json *o = json_object();
    o = obj_add(o, "enabled", json_bool(true));
    o = obj_add(o, "present", json_bool(true));
    return oom(o, e);
}

struct json *cmd_query_uuid(struct monitor *m, const struct json *a, struct qmp_error *e)
{
    static const uint8_t zero[16];
    const uint8_t *u = m->vm->cfg ? m->vm->cfg->uuid : zero;
    char s[37];
    snprintf(s, sizeof s, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
             "%02x%02x%02x%02x%02x%02x", u[0], u[1], u[2], u[3], u[4], u[5], u[6],
             u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
    return oom(obj_add(json_object(), "UUID", json_string(s)), e);
}

int monitor_vcpu_tid(const struct vcpu *v)
{
    return atomic_load(&v->tid);
}

struct json *cmd_query_cpus_fast(struct monitor *m, const struct json *a, struct qmp_error *e)
{
    struct vm *vm = m->vm;
    struct json *list = json_array();
    unsigned threads = 1, cores = 1;
    if (vm->cfg) {
        threads = vm->cfg->smp.threads ? vm->cfg->smp.threads : 1;
        cores = vm->cfg->smp.cores ? vm->cfg->smp.cores : 1;
    }
    for (unsigned i = 0; list && i < vm->nr_vcpus; i++) {
        struct json *props = json_object();
        props = obj_add(props, "core-id", json_int((i / threads) % cores));
        props = obj_add(props, "thread-id", json_int(i % threads));
        props = obj_add(props, "socket-id", json_int(i / (threads * cores)));
        char path[64];
        snprintf(path, sizeof path, "/machine/unattached/device[%u]", i);
        struct json *c = json_object();
        c = obj_add(c, "thread-id", json_int(monitor_vcpu_tid(&vm->vcpus[i])));
        c = obj_add(c, "props", props);
        c = obj_add(c, "qom-path", json_string(path));
        c = obj_add(c, "cpu-index", json_int(vm->vcpus[i].index));
        c = obj_add(c, "target", json_string("x86_64"));
        if (!c || json_array_append(list, c) < 0) {
            json_free(list);
            list = NULL;
        }
    }
    return oom(list, e);
}

/* query-pci: commands_pci.c; query-block, query-blockstats: commands_block.c */

struct json *cmd_query_commands(struct monitor *m, const struct json *a, struct qmp_error *e)
{
    struct json *list = json_array();
    const struct qmp_command *c;
    for (size_t i = 0; list && (c = qmp_command_at(i)); i++) {
        struct json *o = obj_add(json_object(), "name", json_string(c->name));
        if (!o || json_array_append(list, o) < 0) {
            json_free(list);
            list = NULL;
        }
    }
    return oom(list, e);
}
