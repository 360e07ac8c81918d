/* Character-device back-end specs as -serial takes them:
 *   none | null | stdio | pty | file:PATH | unix:PATH[,server][,nowait]
 *   tcp:[HOST]:PORT[,server][,nowait]   (also server=on, wait=off forms)
 * The monitor multiplexer (mon:), telnet:, udp: and vc come with the monitor
 * issue; they are refused by name until then. */
#include "config/config.h"
#include "config/keyval.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHARDEV_FORMS "stdio, null, none, pty, file:PATH, unix:PATH[,server,nowait], tcp:HOST:PORT[,server,nowait]"

static int chardev_socket_opts(struct keyval *kv, struct chardev_spec *spec,
                               const char *s, char *err, unsigned errlen)
{
    const char *v;
    spec->wait = true;
    if ((v = keyval_get(kv, "server")) && keyval_bool(v, &spec->server) < 0)
        goto bad;
    if ((v = keyval_get(kv, "wait")) && keyval_bool(v, &spec->wait) < 0)
        goto bad;
    if (keyval_get(kv, "nowait"))
        spec->wait = false;
    const char *unused = keyval_unused(kv);
    if (unused) {
        snprintf(err, errlen, "-serial: unknown socket option '%s' in '%s' "
                 "(expected server, nowait, server=on|off, wait=on|off)", unused, s);
        return -EINVAL;
    }
    return 0;
bad:
    snprintf(err, errlen, "-serial: bad on/off value in '%s'", s);
    return -EINVAL;
}

int config_parse_chardev(const char *s, struct chardev_spec *spec, char *err,
                         unsigned errlen)
{
    memset(spec, 0, sizeof *spec);
    if (!strcmp(s, "none")) { spec->kind = CHARDEV_NONE; return 0; }
    if (!strcmp(s, "null")) { spec->kind = CHARDEV_NULL; return 0; }
    if (!strcmp(s, "stdio")) { spec->kind = CHARDEV_STDIO; return 0; }
    if (!strcmp(s, "pty")) { spec->kind = CHARDEV_PTY; return 0; }
    if (!strncmp(s, "file:", 5)) {
        if (!s[5]) {
            snprintf(err, errlen, "-serial: file: needs a path (expected file:PATH)");
            return -EINVAL;
        }
        spec->kind = CHARDEV_FILE;
        spec->path = strdup(s + 5);
        return spec->path ? 0 : -ENOMEM;
    }
    if (!strncmp(s, "unix:", 5) || !strncmp(s, "tcp:", 4)) {
        bool is_unix = s[0] == 'u';
        struct keyval kv;
        const char *rest = s + (is_unix ? 5 : 4);
        if (keyval_parse(&kv, rest, "addr") < 0 || !keyval_get(&kv, "addr") ||
            !*keyval_get(&kv, "addr")) {
            if (kv.n)
                keyval_free(&kv);
            snprintf(err, errlen, "-serial: cannot parse '%s' (expected %s)", s,
                     is_unix ? "unix:PATH[,server][,nowait]"
                             : "tcp:HOST:PORT[,server][,nowait]");
            return -EINVAL;
        }
        const char *addr = keyval_get(&kv, "addr");
        int ret = chardev_socket_opts(&kv, spec, s, err, errlen);
        if (ret == 0 && is_unix) {
            spec->kind = CHARDEV_UNIX;
            spec->path = strdup(addr);
            ret = spec->path ? 0 : -ENOMEM;
        } else if (ret == 0) {
            const char *colon = strrchr(addr, ':');
            char *end;
            unsigned long port = colon ? strtoul(colon + 1, &end, 10) : 0;
            if (!colon || !colon[1] || *end || port == 0 || port > 65535) {
                snprintf(err, errlen, "-serial: bad port in '%s' (expected "
                         "tcp:HOST:PORT with PORT 1-65535)", s);
                ret = -EINVAL;
            } else {
                spec->kind = CHARDEV_TCP;
                spec->port = (uint16_t)port;
                spec->host = strndup(addr, (size_t)(colon - addr));
                ret = spec->host ? 0 : -ENOMEM;
            }
        }
        keyval_free(&kv);
        return ret;
    }
    if (!strncmp(s, "mon:", 4) || !strncmp(s, "telnet:", 7) || !strcmp(s, "vc") ||
        !strncmp(s, "vc:", 3) || !strncmp(s, "udp:", 4) || !strncmp(s, "pipe:", 5) ||
        !strncmp(s, "chardev:", 8)) {
        snprintf(err, errlen, "-serial: '%s' is not supported yet (expected %s)",
                 s, CHARDEV_FORMS);
        return -EINVAL;
    }
    snprintf(err, errlen, "-serial: unknown back end '%s' (expected %s)", s,
             CHARDEV_FORMS);
    return -EINVAL;
}
