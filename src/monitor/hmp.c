/* HMP: the human monitor's line input (minimal editing: backspace) and
 * command parser, with QEMU's command names and output shapes. Command
 * bodies are shared with QMP (commands.h); hmp_info.c and hmp_memory.c
 * format their results. */
#include "monitor/hmp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/vm.h"

#define HMP_BANNER "QEMU 7.2.0 monitor - type 'help' for more information\n"
#define HMP_PROMPT "(qemu) "

void hmp_init(struct monitor *m)
{
    m->hmp.len = 0;
    m->hmp.overflow = false;
    m->hmp.last_cr = false;
    m->hmp.cur_cpu = 0;
    m->hmp.last_fmt = 'x';
    m->hmp.last_size = 4;
}

void hmp_greet(struct monitor *m)
{
    m->hmp.len = 0;
    m->hmp.overflow = false;
    monitor_printf(m, HMP_BANNER HMP_PROMPT);
}

void hmp_show_prompt(struct monitor *m)
{
    monitor_printf(m, HMP_PROMPT);
}

void hmp_report_error(struct monitor *m, const struct qmp_error *e)
{
    monitor_printf(m, "Error: %s\n", e->desc);
}

void hmp_usage_error(struct monitor *m, const char *cmd, const char *msg)
{
    monitor_printf(m, "%s\nTry \"help %s\" for more information\n", msg, cmd);
}

/* ---- commands without their own file ----------------------------------- */

static void run_qmp(struct monitor *m, qmp_cmd_fn fn, struct json *args)
{
    struct qmp_error e = { 0 };
    struct json *no = NULL;
    if (!args)
        args = no = json_object();
    struct json *r = args ? fn(m, args, &e) : NULL;
    if (!r && e.cls)
        hmp_report_error(m, &e);
    json_free(r);
    json_free(no);
}

static void hmp_stop(struct monitor *m, char *args) { run_qmp(m, cmd_stop, NULL); }
static void hmp_cont(struct monitor *m, char *args) { run_qmp(m, cmd_cont, NULL); }
static void hmp_system_reset(struct monitor *m, char *args) { run_qmp(m, cmd_system_reset, NULL); }
static void hmp_system_powerdown(struct monitor *m, char *args)
{
    run_qmp(m, cmd_system_powerdown, NULL);
}
static void hmp_quit(struct monitor *m, char *args) { run_qmp(m, cmd_quit, NULL); }
static void hmp_nmi(struct monitor *m, char *args) { run_qmp(m, cmd_inject_nmi, NULL); }

static void hmp_set_link(struct monitor *m, char *args)
{
    char *save = NULL;
    char *name = strtok_r(args, " \t", &save);
    char *state = name ? strtok_r(NULL, " \t", &save) : NULL;
    if (!name) {
        hmp_usage_error(m, "set_link", "set_link: string expected");
        return;
    }
    if (!state || (strcmp(state, "on") && strcmp(state, "off"))) {
        hmp_usage_error(m, "set_link", "Expected 'on' or 'off'");
        return;
    }
    struct json *a = json_object();
    if (a) {
        json_object_set(a, "name", json_string(name));
        json_object_set(a, "up", json_bool(!strcmp(state, "on")));
    }
    run_qmp(m, cmd_set_link, a);
    json_free(a);
}

static void hmp_cpu(struct monitor *m, char *args)
{
    char *end;
    unsigned long n = strtoul(args, &end, 0);
    if (end == args) {
        hmp_usage_error(m, "cpu", "cpu: integer expected");
        return;
    }
    if (n >= m->vm->nr_vcpus) {
        monitor_printf(m, "invalid CPU index\n");
        return;
    }
    m->hmp.cur_cpu = (unsigned)n;
}

static void hmp_help(struct monitor *m, char *args);

static const struct hmp_command commands[] = {
    { "cont", "", "resume emulation", hmp_cont },
    { "c", NULL, NULL, hmp_cont },
    { "cpu", "index", "set the default CPU", hmp_cpu },
    { "help", "[cmd]", "show the help", hmp_help },
    { "?", NULL, NULL, hmp_help },
    { "info", "[subcommand]", "show various information about the system state", hmp_info },
    { "memsave", "addr size file", "save to disk virtual memory dump starting at 'addr' of "
      "size 'size'", hmp_memsave },
    { "nmi", "", "inject an NMI", hmp_nmi },
    { "pmemsave", "addr size file", "save to disk physical memory dump starting at 'addr' "
      "of size 'size'", hmp_pmemsave },
    { "quit", "", "quit the emulator", hmp_quit },
    { "q", NULL, NULL, hmp_quit },
    { "set_link", "name on|off", "change the link status of a network adapter", hmp_set_link },
    { "stop", "", "stop emulation", hmp_stop },
    { "s", NULL, NULL, hmp_stop },
    { "system_powerdown", "", "send system power down event", hmp_system_powerdown },
    { "system_reset", "", "reset the system", hmp_system_reset },
    { "x", "/fmt addr", "virtual memory dump starting at 'addr'", hmp_x },
    { "xp", "/fmt addr", "physical memory dump starting at 'addr'", hmp_xp },
};
#define NR_COMMANDS (sizeof commands / sizeof commands[0])

static void hmp_help(struct monitor *m, char *args)
{
    while (*args == ' ' || *args == '\t')
        args++;
    if (!strncmp(args, "info", 4) && (args[4] == '\0' || args[4] == ' ')) {
        hmp_info_help(m, args + 4);
        return;
    }
    bool found = false;
    for (size_t i = 0; i < NR_COMMANDS; i++) {
        if (!commands[i].help || (*args && strcmp(args, commands[i].name)))
            continue;
        monitor_printf(m, "%s %s -- %s\n", commands[i].name, commands[i].args, commands[i].help);
        found = true;
    }
    if (!found && *args)
        monitor_printf(m, "unknown command: '%s'\n", args);
}

void hmp_execute(struct monitor *m, const char *line_in)
{
    char line[HMP_LINE_MAX];
    snprintf(line, sizeof line, "%s", line_in);
    char *p = line;
    while (*p == ' ' || *p == '\t')
        p++;
    size_t n = strlen(p);
    while (n && (p[n - 1] == ' ' || p[n - 1] == '\t' || p[n - 1] == '\r' || p[n - 1] == '\n'))
        p[--n] = '\0';
    if (!*p)
        return;
    char *name = p;
    while (*p && *p != ' ' && *p != '\t' && *p != '/')
        p++;
    char saved = *p;
    *p = '\0';
    const struct hmp_command *c = NULL;
    for (size_t i = 0; i < NR_COMMANDS && !c; i++)
        if (!strcmp(commands[i].name, name))
            c = &commands[i];
    if (!c) {
        monitor_printf(m, "unknown command: '%s'\n", name);
        return;
    }
    *p = saved;
    if (*p != '/') {
        while (*p == ' ' || *p == '\t')
            p++;
    }
    c->fn(m, p);
}

/* Bytes from the client: printable characters join the line (echoed),
 * backspace/DEL edits, CR or LF runs it, escape sequences are dropped. */
void hmp_input(struct monitor *m, const uint8_t *buf, size_t len)
{
    struct hmp_state *h = &m->hmp;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = buf[i];
        if (h->esc) {
            /* ESC [ ... final byte (0x40-0x7e), or ESC + one byte. */
            if (h->esc == 1 && c == '[') {
                h->esc = 2;
                continue;
            }
            if (h->esc == 2 && (c < 0x40 || c > 0x7e))
                continue;
            h->esc = 0;
            continue;
        }
        if (c == '\n' && h->last_cr) {
            h->last_cr = false;
            continue;
        }
        h->last_cr = c == '\r';
        if (c == '\r' || c == '\n') {
            monitor_write(m, "\r\n", 2);
            if (h->overflow) {
                monitor_printf(m, "line too long (more than %u characters)\n", HMP_LINE_MAX - 1);
            } else {
                h->line[h->len] = '\0';
                hmp_execute(m, h->line);
            }
            h->len = 0;
            h->overflow = false;
            monitor_printf(m, HMP_PROMPT);
            continue;
        }
        if (c == 0x1b) {
            h->esc = 1;
            continue;
        }
        if (c == 0x7f || c == 0x08) {
            if (h->len && !h->overflow) {
                h->len--;
                monitor_write(m, "\b \b", 3);
            }
            continue;
        }
        if (c < 0x20)
            continue;   /* other control characters: ignored */
        if (h->len + 1 >= HMP_LINE_MAX) {
            h->overflow = true;
            continue;
        }
        h->line[h->len++] = (char)c;
        monitor_write(m, &c, 1);
    }
}

char *hmp_execute_capture(struct vm *vm, const char *line, unsigned cpu_index)
{
    struct monitor *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->vm = vm;
    m->mode = MONITOR_HMP;
    hmp_init(m);
    m->hmp.cur_cpu = cpu_index;
    m->capturing = true;
    hmp_execute(m, line);
    char *out = m->cap ? m->cap : strdup("");
    free(m);
    return out;
}
