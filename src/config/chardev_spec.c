/* Character-device back-end specs, in QEMU's two syntaxes:
 *  - the compact one of -serial/-monitor/-qmp:
 *      none | null | stdio | pty | file:PATH | pipe:PATH
 *      unix:PATH[,server][,nowait]   tcp:[HOST]:PORT[,server][,nowait]
 *      telnet:[HOST]:PORT[,server][,nowait]   (also server=on, wait=off)
 *    (mon: and chardev: are the options' business: options.c);
 *  - -chardev BACKEND,id=ID[,key=value...] with the backends stdio, null,
 *    pty, file, pipe and socket, and the common mux=, logfile=, logappend=.
 * vc, udp:, serial devices, ringbuf... are refused by name. */
#include "config/config.h"
#include "config/keyval.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHARDEV_FORMS "stdio, null, none, pty, file:PATH, pipe:PATH, " \
                      "unix:PATH[,server,nowait], tcp:HOST:PORT[,server,nowait], " \
                      "telnet:HOST:PORT[,server,nowait]"
#define CHARDEV_BACKENDS "stdio, null, pty, file, pipe, socket"

void config_free_chardev(struct chardev_spec *spec)
{
    free(spec->id);
    free(spec->path);
    free(spec->host);
    free(spec->logfile);
    memset(spec, 0, sizeof *spec);
}

static int dup_into(char **dst, const char *s)
{
    *dst = strdup(s);
    return *dst ? 0 : -ENOMEM;
}

/* server/wait/nowait/telnet, shared by both syntaxes. */
static int socket_flags(struct keyval *kv, struct chardev_spec *spec)
{
    const char *v;
    spec->wait = true;
    if ((v = keyval_get(kv, "server")) && keyval_bool(v, &spec->server) < 0)
        return -EINVAL;
    if ((v = keyval_get(kv, "wait")) && keyval_bool(v, &spec->wait) < 0)
        return -EINVAL;
    if (keyval_get(kv, "nowait"))
        spec->wait = false;
    if ((v = keyval_get(kv, "telnet")) && keyval_bool(v, &spec->telnet) < 0)
        return -EINVAL;
    return 0;
}

/* "HOST:PORT" (HOST may be empty: any address for a server). */
static int split_host_port(const char *addr, struct chardev_spec *spec)
{
    const char *colon = strrchr(addr, ':');
    char *end;
    if (!colon || !colon[1])
        return -EINVAL;
    errno = 0;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (*end || errno || port == 0 || port > 65535)
        return -EINVAL;
    spec->port = (uint16_t)port;
    spec->host = strndup(addr, (size_t)(colon - addr));
    return spec->host ? 0 : -ENOMEM;
}

int config_parse_chardev_compat(const char *option, const char *s, struct chardev_spec *spec,
                                char *err, unsigned errlen)
{
    memset(spec, 0, sizeof *spec);
    spec->option = option;
    spec->signal = -1;
    if (!strcmp(s, "none")) { spec->kind = CHARDEV_NONE; return 0; }
    if (!strcmp(s, "null")) { spec->kind = CHARDEV_NULL; return 0; }
    if (!strcmp(s, "stdio")) { spec->kind = CHARDEV_STDIO; return 0; }
    if (!strcmp(s, "pty")) { spec->kind = CHARDEV_PTY; return 0; }
    if (!strncmp(s, "file:", 5) || !strncmp(s, "pipe:", 5)) {
        if (!s[5]) {
            snprintf(err, errlen, "%s: %.5s needs a path (expected %.4s:PATH)", option, s, s);
            return -EINVAL;
        }
        spec->kind = s[0] == 'f' ? CHARDEV_FILE : CHARDEV_PIPE;
        return dup_into(&spec->path, s + 5);
    }
    bool is_unix = !strncmp(s, "unix:", 5);
    bool is_telnet = !strncmp(s, "telnet:", 7);
    if (is_unix || is_telnet || !strncmp(s, "tcp:", 4)) {
        const char *form = is_unix ? "unix:PATH[,server][,nowait]"
                         : is_telnet ? "telnet:HOST:PORT[,server][,nowait]"
                                     : "tcp:HOST:PORT[,server][,nowait]";
        struct keyval kv;
        const char *rest = strchr(s, ':') + 1;
        if (keyval_parse(&kv, rest, "addr") < 0) {
            snprintf(err, errlen, "%s: cannot parse '%s' (expected %s)", option, s, form);
            return -EINVAL;
        }
        const char *addr = keyval_get(&kv, "addr");
        int ret = 0;
        if (!addr || !*addr) {
            snprintf(err, errlen, "%s: cannot parse '%s' (expected %s)", option, s, form);
            ret = -EINVAL;
        } else if (socket_flags(&kv, spec) < 0) {
            snprintf(err, errlen, "%s: bad on/off value in '%s'", option, s);
            ret = -EINVAL;
        } else if (keyval_unused(&kv)) {
            snprintf(err, errlen, "%s: unknown socket option '%s' in '%s' "
                     "(expected server, nowait, server=on|off, wait=on|off)", option,
                     keyval_unused(&kv), s);
            ret = -EINVAL;
        } else if (is_unix) {
            spec->kind = CHARDEV_UNIX;
            ret = dup_into(&spec->path, addr);
        } else {
            spec->kind = CHARDEV_TCP;
            spec->telnet |= is_telnet;
            ret = split_host_port(addr, spec);
            if (ret == -EINVAL)
                snprintf(err, errlen, "%s: bad port in '%s' (expected %s with PORT 1-65535)",
                         option, s, form);
        }
        keyval_free(&kv);
        return ret;
    }
    if (!strcmp(s, "vc") || !strncmp(s, "vc:", 3) || !strncmp(s, "udp:", 4) ||
        !strcmp(s, "msmouse") || !strcmp(s, "braille") || !strncmp(s, "/dev/", 5)) {
        snprintf(err, errlen, "%s: '%s' is not supported (expected %s)", option, s,
                 CHARDEV_FORMS);
        return -EINVAL;
    }
    snprintf(err, errlen, "%s: unknown back end '%s' (expected %s)", option, s, CHARDEV_FORMS);
    return -EINVAL;
}

int config_parse_chardev(const char *s, struct chardev_spec *spec, char *err, unsigned errlen)
{
    return config_parse_chardev_compat("-serial", s, spec, err, errlen);
}

/* QEMU's id_wellformed: a letter, then letters, digits, '-', '.', '_'. */
static bool id_wellformed(const char *id)
{
    if (!isalpha((unsigned char)id[0]))
        return false;
    for (const char *p = id + 1; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("-._", *p))
            return false;
    return true;
}

static int chardev_opts(struct keyval *kv, const char *backend, struct chardev_spec *spec,
                        char *err, unsigned errlen)
{
    const char *v;
    /* Fetched only by the back ends that take a path, so that e.g.
     * "stdio,path=x" is an unknown parameter. */
    const char *path = NULL;
    if (!strcmp(backend, "file") || !strcmp(backend, "pipe") || !strcmp(backend, "socket"))
        path = keyval_get(kv, "path");
    if (!strcmp(backend, "null")) {
        spec->kind = CHARDEV_NULL;
    } else if (!strcmp(backend, "stdio")) {
        spec->kind = CHARDEV_STDIO;
        bool on;
        if ((v = keyval_get(kv, "signal"))) {
            if (keyval_bool(v, &on) < 0) {
                snprintf(err, errlen, "-chardev stdio: bad value '%s' for signal "
                         "(expected on or off)", v);
                return -EINVAL;
            }
            spec->signal = on;
        }
    } else if (!strcmp(backend, "pty")) {
        spec->kind = CHARDEV_PTY;
    } else if (!strcmp(backend, "file") || !strcmp(backend, "pipe")) {
        spec->kind = backend[0] == 'f' ? CHARDEV_FILE : CHARDEV_PIPE;
        if (!path || !*path) {
            snprintf(err, errlen, "-chardev %s: needs path=PATH (expected %s,id=ID,path=PATH)",
                     backend, backend);
            return -EINVAL;
        }
        if (dup_into(&spec->path, path) < 0)
            return -ENOMEM;
    } else if (!strcmp(backend, "socket")) {
        const char *host = keyval_get(kv, "host"), *port = keyval_get(kv, "port");
        if (socket_flags(kv, spec) < 0) {
            snprintf(err, errlen, "-chardev socket: bad on/off value (expected "
                     "server=on|off, wait=on|off, telnet=on|off)");
            return -EINVAL;
        }
        if (path && !host && !port) {
            spec->kind = CHARDEV_UNIX;
            if (!*path || dup_into(&spec->path, path) < 0)
                goto bad_socket;
        } else if (!path && port) {
            char addr[300];
            snprintf(addr, sizeof addr, "%s:%s", host ? host : "", port);
            spec->kind = CHARDEV_TCP;
            if (split_host_port(addr, spec) < 0)
                goto bad_socket;
        } else {
            goto bad_socket;
        }
        if (spec->telnet && spec->kind == CHARDEV_UNIX) {
            snprintf(err, errlen, "-chardev socket: telnet=on needs host=,port=");
            return -EINVAL;
        }
    } else if (!strcmp(backend, "vc") || !strcmp(backend, "udp") || !strcmp(backend, "serial") ||
               !strcmp(backend, "tty") || !strcmp(backend, "parallel") ||
               !strcmp(backend, "ringbuf") || !strcmp(backend, "memory") ||
               !strcmp(backend, "spicevmc") || !strcmp(backend, "spiceport") ||
               !strcmp(backend, "msmouse") || !strcmp(backend, "braille") ||
               !strcmp(backend, "testdev") || !strcmp(backend, "qemu-vdagent")) {
        snprintf(err, errlen, "-chardev: backend '%s' is not supported (expected %s)",
                 backend, CHARDEV_BACKENDS);
        return -EINVAL;
    } else {
        snprintf(err, errlen, "-chardev: unknown backend '%s' (expected %s)", backend,
                 CHARDEV_BACKENDS);
        return -EINVAL;
    }
    return 0;
bad_socket:
    snprintf(err, errlen, "-chardev socket: expected path=PATH or [host=HOST,]port=PORT "
             "(PORT 1-65535)[,server=on|off][,wait=on|off]");
    return -EINVAL;
}

int config_parse_chardev_opts(const char *s, struct chardev_spec *spec, char *err,
                              unsigned errlen)
{
    memset(spec, 0, sizeof *spec);
    spec->option = "-chardev";
    spec->signal = -1;
    struct keyval kv;
    if (keyval_parse(&kv, s, "backend") < 0) {
        snprintf(err, errlen, "-chardev: cannot parse '%s' (expected BACKEND,id=ID[,...])", s);
        return -EINVAL;
    }
    const char *backend = keyval_get(&kv, "backend");
    const char *id = keyval_get(&kv, "id");
    const char *v;
    int ret = 0;
    if (!backend || !*backend) {
        snprintf(err, errlen, "-chardev: no backend in '%s' (expected BACKEND,id=ID; "
                 "backends: %s)", s, CHARDEV_BACKENDS);
        ret = -EINVAL;
    } else if (!id || !*id) {
        snprintf(err, errlen, "-chardev %s: needs an id (expected %s,id=ID[,...])",
                 backend, backend);
        ret = -EINVAL;
    } else if (!id_wellformed(id)) {
        snprintf(err, errlen, "-chardev: id '%s' is not an identifier (expected a letter, "
                 "then letters, digits, '-', '.', '_')", id);
        ret = -EINVAL;
    } else if (dup_into(&spec->id, id) < 0) {
        ret = -ENOMEM;
    }
    if (!ret && (v = keyval_get(&kv, "mux")) && keyval_bool(v, &spec->mux) < 0) {
        snprintf(err, errlen, "-chardev: bad value '%s' for mux (expected on or off)", v);
        ret = -EINVAL;
    }
    if (!ret && (v = keyval_get(&kv, "logappend")) && keyval_bool(v, &spec->logappend) < 0) {
        snprintf(err, errlen, "-chardev: bad value '%s' for logappend (expected on or off)", v);
        ret = -EINVAL;
    }
    if (!ret && (v = keyval_get(&kv, "logfile")) && (!*v || dup_into(&spec->logfile, v) < 0)) {
        snprintf(err, errlen, "-chardev: logfile needs a path (expected logfile=PATH)");
        ret = *v ? -ENOMEM : -EINVAL;
    }
    if (!ret)
        ret = chardev_opts(&kv, backend, spec, err, errlen);
    if (!ret && keyval_unused(&kv)) {
        snprintf(err, errlen, "-chardev %s: unknown parameter '%s' in '%s'", backend,
                 keyval_unused(&kv), s);
        ret = -EINVAL;
    }
    keyval_free(&kv);
    if (ret)
        config_free_chardev(spec);
    return ret;
}

const struct chardev_spec *config_find_chardev(const struct vm_config *cfg, const char *id)
{
    for (unsigned i = 0; i < cfg->nr_chardevs; i++)
        if (cfg->chardevs[i].id && !strcmp(cfg->chardevs[i].id, id))
            return &cfg->chardevs[i];
    return NULL;
}

int config_parse_uuid(const char *s, uint8_t uuid[16])
{
    /* 8-4-4-4-12 hex digits, as QEMU's qemu_uuid_parse. */
    static const unsigned groups[] = { 8, 4, 4, 4, 12 };
    uint8_t out[16];
    unsigned n = 0;
    const char *p = s;
    for (unsigned g = 0; g < 5; g++) {
        if (g && *p++ != '-')
            return -EINVAL;
        for (unsigned i = 0; i < groups[g]; i += 2) {
            if (!isxdigit((unsigned char)p[0]) || !isxdigit((unsigned char)p[1]))
                return -EINVAL;
            char byte[3] = { p[0], p[1], 0 };
            out[n++] = (uint8_t)strtoul(byte, NULL, 16);
            p += 2;
        }
    }
    if (*p)
        return -EINVAL;
    memcpy(uuid, out, 16);
    return 0;
}
