/* HMP memory commands: x/FMT ADDR, xp/FMT ADDR (QEMU's memory_dump layout)
 * and memsave/pmemsave (the QMP bodies), with QEMU's small address
 * expression language: numbers (0x.., 0.., decimal), $register, + and -. */
#include "monitor/hmp.h"

#include <ctype.h>
#include <stddef.h>
#include <stdio.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "core/vm.h"

/* x/100000000x: bounded so one command cannot stall the VM for long. */
#define HMP_DUMP_MAX (1u << 20)

static int reg_value(struct monitor *m, const char *name, uint64_t *out)
{
    struct vm *vm = m->vm;
    if (m->hmp.cur_cpu >= vm->nr_vcpus)
        return -1;
    struct kvm_regs r;
    if (ioctl(vm->vcpus[m->hmp.cur_cpu].fd, KVM_GET_REGS, &r) < 0)
        return -1;
    static const struct { const char *n; size_t off; } regs[] = {
#define R(name, field) { name, offsetof(struct kvm_regs, field) }
        R("rax", rax), R("rbx", rbx), R("rcx", rcx), R("rdx", rdx), R("rsi", rsi),
        R("rdi", rdi), R("rbp", rbp), R("rsp", rsp), R("r8", r8), R("r9", r9),
        R("r10", r10), R("r11", r11), R("r12", r12), R("r13", r13), R("r14", r14),
        R("r15", r15), R("rip", rip), R("pc", rip), R("eflags", rflags),
        R("eax", rax), R("ebx", rbx), R("ecx", rcx), R("edx", rdx), R("esi", rsi),
        R("edi", rdi), R("ebp", rbp), R("esp", rsp), R("eip", rip),
#undef R
    };
    for (size_t i = 0; i < sizeof regs / sizeof regs[0]; i++) {
        if (strcmp(regs[i].n, name))
            continue;
        uint64_t v;
        memcpy(&v, (const char *)&r + regs[i].off, sizeof v);
        *out = name[0] == 'e' ? (uint32_t)v : v;
        return 0;
    }
    return -1;
}

/* Parse one expression at *pp; NULL on success, else the error text. */
static const char *parse_expr(struct monitor *m, char **pp, uint64_t *out)
{
    char *p = *pp;
    uint64_t sum = 0;
    int sign = 1;
    for (;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p)
            return "unexpected end of expression";
        uint64_t v;
        if (*p == '$') {
            char name[16];
            size_t n = 0;
            p++;
            while ((isalnum((unsigned char)*p) || *p == '_') && n < sizeof name - 1)
                name[n++] = (char)tolower((unsigned char)*p++);
            name[n] = '\0';
            if (reg_value(m, name, &v) < 0)
                return "unknown register";
        } else if (isdigit((unsigned char)*p)) {
            char *end;
            errno = 0;
            v = strtoull(p, &end, 0);
            if (errno)
                return "number too large";
            p = end;
        } else {
            return "invalid char in expression";
        }
        sum += sign > 0 ? v : -v;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '+' || *p == '-') {
            sign = *p == '+' ? 1 : -1;
            p++;
            continue;
        }
        break;
    }
    *pp = p;
    *out = sum;
    return NULL;
}

static void printc(struct monitor *m, unsigned c)
{
    switch (c) {
    case '\'': monitor_printf(m, "'\\''"); break;
    case '\\': monitor_printf(m, "'\\\\'"); break;
    case '\n': monitor_printf(m, "'\\n'"); break;
    case '\r': monitor_printf(m, "'\\r'"); break;
    default:
        if (c >= 32 && c <= 126)
            monitor_printf(m, "'%c'", c);
        else
            monitor_printf(m, "'\\x%02x'", c);
    }
}

static void memory_dump(struct monitor *m, const char *cmd, char *args, bool physical)
{
    struct hmp_state *h = &m->hmp;
    char *p = args;
    unsigned long count = 1;
    char fmt = h->last_fmt;
    int size = -1;
    if (*p == '/') {
        p++;
        if (isdigit((unsigned char)*p))
            count = strtoul(p, &p, 10);
        for (; *p && *p != ' ' && *p != '\t'; p++) {
            switch (*p) {
            case 'x': case 'd': case 'u': case 'o': case 'c':
                fmt = *p;
                break;
            case 'b': size = 1; break;
            case 'h': size = 2; break;
            case 'w': size = 4; break;
            case 'g': size = 8; break;
            default: {
                char msg[64];
                snprintf(msg, sizeof msg, "invalid char in format: '%c'", *p);
                hmp_usage_error(m, cmd, msg);
                return;
            }
            }
        }
    }
    if (size < 0)
        size = fmt == 'c' ? 1 : h->last_size;
    uint64_t addr;
    const char *err = parse_expr(m, &p, &addr);
    if (err) {
        hmp_usage_error(m, cmd, err);
        return;
    }
    if (*p) {
        char msg[64];
        snprintf(msg, sizeof msg, "%s: extraneous characters at the end of line", cmd);
        hmp_usage_error(m, cmd, msg);
        return;
    }
    h->last_fmt = fmt;
    h->last_size = size;

    unsigned wsize = (unsigned)size;
    uint64_t len = (uint64_t)count * wsize;
    if (count > HMP_DUMP_MAX || len > HMP_DUMP_MAX)
        len = HMP_DUMP_MAX;
    unsigned line = wsize == 1 ? 8 : 16;
    int digits;
    switch (fmt) {
    case 'o': digits = (int)(wsize * 8 + 2) / 3; break;
    case 'u': case 'd': digits = (int)(wsize * 8 * 10 + 32) / 33; break;
    case 'c': wsize = 1; digits = 0; break;
    default: digits = (int)wsize * 2; break;
    }
    struct vm *vm = m->vm;
    bool held = monitor_vcpus_hold(vm);
    while (len > 0) {
        monitor_printf(m, "%016" PRIx64 ":", addr);
        unsigned l = len > line ? line : (unsigned)len;
        uint8_t buf[16];
        if (monitor_read_mem(vm, h->cur_cpu, physical, addr, buf, l) < 0) {
            monitor_printf(m, " Cannot access memory\n");
            break;
        }
        for (unsigned i = 0; i + wsize <= l; i += wsize) {
            uint64_t v = 0;
            memcpy(&v, buf + i, wsize);     /* little-endian guest and host */
            monitor_printf(m, " ");
            switch (fmt) {
            case 'o': monitor_printf(m, "%#*" PRIo64, digits, v); break;
            case 'u': monitor_printf(m, "%*" PRIu64, digits, v); break;
            case 'd': monitor_printf(m, "%*" PRId64, digits, (int64_t)v); break;
            case 'c': printc(m, (unsigned)v); break;
            default: monitor_printf(m, "0x%0*" PRIx64, digits, v); break;
            }
        }
        monitor_printf(m, "\n");
        addr += l;
        len -= l;
    }
    monitor_vcpus_release(vm, held);
}

void hmp_x(struct monitor *m, char *args)
{
    memory_dump(m, "x", args, false);
}

void hmp_xp(struct monitor *m, char *args)
{
    memory_dump(m, "xp", args, true);
}

/* memsave ADDR SIZE FILE: FILE may be "quoted". */
static void save(struct monitor *m, const char *cmd, char *args, qmp_cmd_fn fn)
{
    char *p = args;
    uint64_t addr, size;
    const char *err = parse_expr(m, &p, &addr);
    if (!err)
        err = parse_expr(m, &p, &size);
    if (err) {
        hmp_usage_error(m, cmd, err);
        return;
    }
    while (*p == ' ' || *p == '\t')
        p++;
    char *file = p;
    if (*p == '"') {
        file = ++p;
        while (*p && *p != '"')
            p++;
        if (*p != '"') {
            char msg[64];
            snprintf(msg, sizeof msg, "%s: unterminated string", cmd);
            hmp_usage_error(m, cmd, msg);
            return;
        }
        *p = '\0';
    } else {
        while (*p && *p != ' ' && *p != '\t')
            p++;
        *p = '\0';
    }
    if (!*file) {
        char msg[64];
        snprintf(msg, sizeof msg, "%s: string expected", cmd);
        hmp_usage_error(m, cmd, msg);
        return;
    }
    struct json *a = json_object();
    if (!a || json_object_set(a, "val", json_int((int64_t)addr)) < 0 ||
        json_object_set(a, "size", json_int((int64_t)size)) < 0 ||
        json_object_set(a, "filename", json_string(file)) < 0) {
        json_free(a);
        return;
    }
    struct qmp_error e = { 0 };
    struct json *r = fn(m, a, &e);
    if (!r && e.cls)
        hmp_report_error(m, &e);
    json_free(r);
    json_free(a);
}

void hmp_memsave(struct monitor *m, char *args)
{
    save(m, "memsave", args, cmd_memsave);
}

void hmp_pmemsave(struct monitor *m, char *args)
{
    save(m, "pmemsave", args, cmd_pmemsave);
}
