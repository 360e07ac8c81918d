/* Monitor command bodies, shared by QMP and HMP: each piece of logic exists
 * once. A QMP command takes its (already type-checked) arguments object and
 * returns the "return" value, or NULL with a QEMU error class and text; HMP
 * calls the same functions and formats their results as QEMU's HMP does.
 * Main thread only. */
#ifndef KVMBOX_MONITOR_COMMANDS_H
#define KVMBOX_MONITOR_COMMANDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <linux/kvm.h>

#include "monitor/json.h"
#include "monitor/monitor_internal.h"

struct vm;
struct vcpu;

/* QEMU's error classes (qapi/error.json ErrorClass). */
#define QERR_GENERIC "GenericError"
#define QERR_COMMAND_NOT_FOUND "CommandNotFound"
#define QERR_DEVICE_NOT_FOUND "DeviceNotFound"

struct qmp_error {
    const char *cls;            /* NULL: no error */
    char desc[256];
};
void qmp_error_set(struct qmp_error *e, const char *cls, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* One declared argument of a QMP command (checked in declaration order,
 * then unknown members are refused, as QEMU's input visitor does). */
struct qmp_arg {
    const char *name;
    enum json_type type;        /* JSON_INT accepts any integer */
    bool optional;
};

typedef struct json *(*qmp_cmd_fn)(struct monitor *m, const struct json *args,
                                   struct qmp_error *err);

struct qmp_command {
    const char *name;
    qmp_cmd_fn fn;
    const struct qmp_arg *args; /* terminated by a NULL name; NULL: none */
};

/* The command table (commands_table.c). NULL if unknown. */
const struct qmp_command *qmp_command_find(const char *name);
const struct qmp_command *qmp_command_at(size_t i);   /* NULL past the end */

/* The version kvmbox advertises (greeting, query-version, info version). */
struct json *monitor_version_json(void);

/* commands_query.c */
struct json *cmd_query_version(struct monitor *m, const struct json *a, struct qmp_error *e);
struct json *cmd_query_name(struct monitor *m, const struct json *a, struct qmp_error *e);
struct json *cmd_query_status(struct monitor *m, const struct json *a, struct qmp_error *e);
struct json *cmd_query_kvm(struct monitor *m, const struct json *a, struct qmp_error *e);
struct json *cmd_query_uuid(struct monitor *m, const struct json *a, struct qmp_error *e);
struct json *cmd_query_cpus_fast(struct monitor *m, const struct json *a, struct qmp_error *e);
struct json *cmd_query_pci(struct monitor *m, const struct json *a, struct qmp_error *e);
struct json *cmd_query_block(struct monitor *m, const struct json *a, struct qmp_error *e);
struct json *cmd_query_blockstats(struct monitor *m, const struct json *a, struct qmp_error *e);
struct json *cmd_query_chardev(struct monitor *m, const struct json *a, struct qmp_error *e);
struct json *cmd_query_commands(struct monitor *m, const struct json *a, struct qmp_error *e);

/* commands_control.c */
struct json *cmd_stop(struct monitor *m, const struct json *a, struct qmp_error *e);
struct json *cmd_cont(struct monitor *m, const struct json *a, struct qmp_error *e);
struct json *cmd_system_reset(struct monitor *m, const struct json *a, struct qmp_error *e);
struct json *cmd_system_powerdown(struct monitor *m, const struct json *a, struct qmp_error *e);
struct json *cmd_quit(struct monitor *m, const struct json *a, struct qmp_error *e);
struct json *cmd_set_link(struct monitor *m, const struct json *a, struct qmp_error *e);
struct json *cmd_inject_nmi(struct monitor *m, const struct json *a, struct qmp_error *e);
struct json *cmd_human_monitor_command(struct monitor *m, const struct json *a,
                                       struct qmp_error *e);

/* commands_memory.c: memsave {val, size, filename, cpu-index?} and
 * pmemsave {val, size, filename}. */
struct json *cmd_memsave(struct monitor *m, const struct json *a, struct qmp_error *e);
struct json *cmd_pmemsave(struct monitor *m, const struct json *a, struct qmp_error *e);

/* Stop the vCPUs for a moment to read/modify their state, unless they are
 * not running anyway. Returns whether monitor_vcpus_release must resume. */
bool monitor_vcpus_hold(struct vm *vm);
void monitor_vcpus_release(struct vm *vm, bool held);

/* The vCPU's kernel thread id (0 until its thread runs). */
int monitor_vcpu_tid(const struct vcpu *v);

/* commands_cpu.c: a vCPU's state as `info registers` shows it. Read with
 * the vCPUs held (monitor_vcpus_hold). */
struct cpu_state {
    struct kvm_regs regs;
    struct kvm_sregs sregs;
    struct kvm_fpu fpu;
    struct kvm_debugregs dbg;
    struct kvm_vcpu_events events;
    struct kvm_mp_state mp;
};
int cpu_state_read(struct vcpu *v, struct cpu_state *s);
/* QEMU's x86_cpu_dump_state layout (with FPU/SSE), preceded by
 * "\nCPU#N\n" as HMP prints it. */
void cpu_state_dump(struct monitor *m, const struct cpu_state *s, unsigned index);
/* Copy guest memory at a linear address of vCPU cpu (its current page
 * tables) or, with physical, at a guest-physical address. vCPUs held by
 * the caller. 0 or -EFAULT. */
int monitor_read_mem(struct vm *vm, unsigned cpu, bool physical, uint64_t addr, void *buf,
                     size_t len);

#endif
