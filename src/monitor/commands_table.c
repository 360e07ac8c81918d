/* The QMP command table: names, argument declarations, bodies. */
#include "monitor/commands.h"

#include <string.h>

static const struct qmp_arg set_link_args[] = {
    { "name", JSON_STRING, false },
    { "up", JSON_BOOL, false },
    { NULL, JSON_NULL, false },
};
static const struct qmp_arg hmc_args[] = {
    { "command-line", JSON_STRING, false },
    { "cpu-index", JSON_INT, true },
    { NULL, JSON_NULL, false },
};
static const struct qmp_arg memsave_args[] = {
    { "val", JSON_INT, false },
    { "size", JSON_INT, false },
    { "filename", JSON_STRING, false },
    { "cpu-index", JSON_INT, true },
    { NULL, JSON_NULL, false },
};
static const struct qmp_arg pmemsave_args[] = {
    { "val", JSON_INT, false },
    { "size", JSON_INT, false },
    { "filename", JSON_STRING, false },
    { NULL, JSON_NULL, false },
};

/* qmp_capabilities is handled by the protocol (qmp.c) itself but listed
 * here so query-commands names it and lookups find it. */
static const struct qmp_command commands[] = {
    { "qmp_capabilities", NULL, NULL },
    { "query-version", cmd_query_version, NULL },
    { "query-name", cmd_query_name, NULL },
    { "query-status", cmd_query_status, NULL },
    { "query-kvm", cmd_query_kvm, NULL },
    { "query-uuid", cmd_query_uuid, NULL },
    { "query-cpus-fast", cmd_query_cpus_fast, NULL },
    { "query-pci", cmd_query_pci, NULL },
    { "query-block", cmd_query_block, NULL },
    { "query-blockstats", cmd_query_blockstats, NULL },
    { "query-chardev", cmd_query_chardev, NULL },
    { "query-commands", cmd_query_commands, NULL },
    { "stop", cmd_stop, NULL },
    { "cont", cmd_cont, NULL },
    { "system_reset", cmd_system_reset, NULL },
    { "system_powerdown", cmd_system_powerdown, NULL },
    { "quit", cmd_quit, NULL },
    { "set_link", cmd_set_link, set_link_args },
    { "inject-nmi", cmd_inject_nmi, NULL },
    { "memsave", cmd_memsave, memsave_args },
    { "pmemsave", cmd_pmemsave, pmemsave_args },
    { "human-monitor-command", cmd_human_monitor_command, hmc_args },
};

const struct qmp_command *qmp_command_find(const char *name)
{
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(commands[i].name, name))
            return &commands[i];
    return NULL;
}

const struct qmp_command *qmp_command_at(size_t i)
{
    return i < sizeof commands / sizeof commands[0] ? &commands[i] : NULL;
}
