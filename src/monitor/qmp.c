/* QMP: the JSON protocol of QEMU's control monitor (docs/interop/qmp-spec):
 * greeting, capabilities negotiation, request validation, dispatch to the
 * command table, replies with the request's "id", and asynchronous events.
 * Hostile input: the byte stream goes through json_stream_feed (size and
 * depth limits, resynchronisation after garbage), so each bad message gets
 * an error reply and the connection carries on. */
#include "monitor/monitor_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "core/vm.h"
#include "monitor/commands.h"
#include "monitor/json.h"

int qmp_init(struct monitor *m)
{
    m->qmp.stream = json_stream_new();
    return m->qmp.stream ? 0 : -1;
}

void qmp_fini(struct monitor *m)
{
    json_stream_free(m->qmp.stream);
    m->qmp.stream = NULL;
}

/* ---- output ------------------------------------------------------------ */

static void indent(struct monitor *m, unsigned depth)
{
    static const char spaces[] = "                                ";
    monitor_write(m, "\r\n", 2);
    for (unsigned i = 0; i < depth; i++)
        monitor_write(m, spaces, 4);
}

static void out_scalar(struct monitor *m, const struct json *j)
{
    char *s = json_to_string(j);
    if (s) {
        monitor_puts(m, s);
        free(s);
    }
}

/* QEMU's pretty layout (json-writer.c): 4-space indent, each member on its
 * own line, the closing bracket on a line of its own ("{\n}" when empty). */
static void out_pretty(struct monitor *m, const struct json *j, unsigned depth)
{
    enum json_type t = json_typeof(j);
    if (t != JSON_OBJECT && t != JSON_ARRAY) {
        out_scalar(m, j);
        return;
    }
    bool obj = t == JSON_OBJECT;
    size_t n = obj ? json_object_len(j) : json_array_len(j);
    monitor_puts(m, obj ? "{" : "[");
    for (size_t i = 0; i < n; i++) {
        if (i)
            monitor_puts(m, ",");
        indent(m, depth + 1);
        if (obj) {
            struct json *k = json_string(json_object_key_at(j, i));
            if (k) {
                out_scalar(m, k);
                json_free(k);
            }
            monitor_puts(m, ": ");
            out_pretty(m, json_object_value_at(j, i), depth + 1);
        } else {
            out_pretty(m, json_array_at(j, i), depth + 1);
        }
    }
    indent(m, depth);
    monitor_puts(m, obj ? "}" : "]");
}

void qmp_send(struct monitor *m, const struct json *j)
{
    if (m->pretty) {
        out_pretty(m, j, 0);
        monitor_write(m, "\r\n", 2);
        return;
    }
    char *s = json_to_string(j);
    if (!s)
        return;     /* allocation failure: nothing sensible to send */
    monitor_puts(m, s);     /* a '\n' can only be inside a string: escaped */
    monitor_write(m, "\r\n", 2);
    free(s);
}

/* {"error": {"class": C, "desc": D}[, "id": ID]} */
static void send_error(struct monitor *m, const char *cls, const char *desc,
                       const struct json *id)
{
    struct json *err = json_object(), *r = json_object();
    if (!err || !r || json_object_set(err, "class", json_string(cls)) < 0 ||
        json_object_set(err, "desc", json_string(desc)) < 0) {
        json_free(err);
        json_free(r);
        return;
    }
    if (json_object_set(r, "error", err) < 0) {
        json_free(r);
        return;
    }
    struct json *copy = id ? json_copy(id) : NULL;  /* id belongs to the request */
    if (copy)
        json_object_set(r, "id", copy);
    qmp_send(m, r);
    json_free(r);
}

static void send_return(struct monitor *m, struct json *ret, struct json *id_owned)
{
    struct json *r = json_object();
    if (!r || json_object_set(r, "return", ret) < 0) {
        json_free(r);
        json_free(id_owned);
        return;
    }
    if (id_owned)
        json_object_set(r, "id", id_owned);
    qmp_send(m, r);
    json_free(r);
}

void qmp_greet(struct monitor *m)
{
    /* A new connection: a fresh session. */
    m->qmp.negotiated = false;
    struct json_stream *s = json_stream_new();
    if (s) {
        json_stream_free(m->qmp.stream);
        m->qmp.stream = s;
    }
    struct json *caps = json_array(), *inner = json_object(), *g = json_object();
    if (caps)
        json_array_append(caps, json_string("oob"));
    if (inner) {
        json_object_set(inner, "version", monitor_version_json());
        json_object_set(inner, "capabilities", caps);
        caps = NULL;
    }
    if (g && inner) {
        json_object_set(g, "QMP", inner);
        inner = NULL;
        qmp_send(m, g);
    }
    json_free(caps);
    json_free(inner);
    json_free(g);
}

/* ---- events ------------------------------------------------------------ */

static const char *event_name(enum vm_event_kind k)
{
    switch (k) {
    case VM_EVENT_SHUTDOWN: return "SHUTDOWN";
    case VM_EVENT_POWERDOWN: return "POWERDOWN";
    case VM_EVENT_RESET: return "RESET";
    case VM_EVENT_STOP: return "STOP";
    case VM_EVENT_RESUME: return "RESUME";
    }
    return NULL;
}

void qmp_vm_event(void *opaque, const struct vm_event *ev)
{
    struct monitor *m = opaque;
    const char *name = event_name(ev->kind);
    if (!m->qmp.negotiated || !name)
        return;     /* QEMU sends events only after qmp_capabilities */
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct json *ts = json_object(), *e = json_object();
    if (!ts || !e)
        goto out;
    json_object_set(ts, "seconds", json_int(tv.tv_sec));
    json_object_set(ts, "microseconds", json_int(tv.tv_usec));
    json_object_set(e, "timestamp", ts);
    ts = NULL;
    json_object_set(e, "event", json_string(name));
    if (ev->kind == VM_EVENT_SHUTDOWN || ev->kind == VM_EVENT_RESET) {
        struct json *d = json_object();
        if (d) {
            json_object_set(d, "guest", json_bool(ev->guest));
            json_object_set(d, "reason", json_string(ev->reason ? ev->reason : "host-error"));
            json_object_set(e, "data", d);
        }
    }
    qmp_send(m, e);
out:
    json_free(ts);
    json_free(e);
}

/* ---- requests ---------------------------------------------------------- */

static const char *type_name(enum json_type t)
{
    switch (t) {
    case JSON_STRING: return "string";
    case JSON_BOOL: return "boolean";
    case JSON_INT: return "integer";
    case JSON_DOUBLE: return "number";
    case JSON_ARRAY: return "array";
    case JSON_OBJECT: return "object";
    case JSON_NULL: return "null";
    }
    return "value";
}

/* QEMU's input visitor: declared members in order (missing, wrong type),
 * then anything undeclared. */
static bool check_args(const struct qmp_arg *decl, const struct json *args,
                       struct qmp_error *e)
{
    for (const struct qmp_arg *a = decl; a && a->name; a++) {
        struct json *v = json_object_get(args, a->name);
        if (!v) {
            if (a->optional)
                continue;
            qmp_error_set(e, QERR_GENERIC, "Parameter '%s' is missing", a->name);
            return false;
        }
        enum json_type t = json_typeof(v);
        if (t != a->type) {
            qmp_error_set(e, QERR_GENERIC, "Invalid parameter type for '%s', expected: %s",
                          a->name, type_name(a->type));
            return false;
        }
    }
    for (size_t i = 0; i < json_object_len(args); i++) {
        const char *k = json_object_key_at(args, i);
        bool known = false;
        for (const struct qmp_arg *a = decl; a && a->name && !known; a++)
            known = !strcmp(a->name, k);
        if (!known) {
            qmp_error_set(e, QERR_GENERIC, "Parameter '%s' is unexpected", k);
            return false;
        }
    }
    return true;
}

/* qmp_capabilities {"enable": ["oob"]}: the protocol's own command. */
static struct json *capabilities(struct monitor *m, const struct json *args,
                                 struct qmp_error *e)
{
    static const struct qmp_arg decl[] = { { "enable", JSON_ARRAY, true }, { NULL, 0, 0 } };
    if (!check_args(decl, args, e))
        return NULL;
    struct json *en = json_object_get(args, "enable");
    for (size_t i = 0; en && i < json_array_len(en); i++) {
        const char *c = json_get_string(json_array_at(en, i));
        if (!c) {
            qmp_error_set(e, QERR_GENERIC, "Invalid parameter type for 'enable[%zu]', "
                          "expected: string", i);
            return NULL;
        }
        if (strcmp(c, "oob")) {
            qmp_error_set(e, QERR_GENERIC, "Parameter 'enable[%zu]' does not accept value "
                          "'%.64s'", i, c);
            return NULL;
        }
    }
    m->qmp.negotiated = true;
    struct json *r = json_object();
    if (!r)
        qmp_error_set(e, QERR_GENERIC, "Out of memory");
    return r;
}

static void dispatch(struct monitor *m, struct json *req)
{
    struct qmp_error e = { 0 };
    struct json *id = NULL, *args = NULL;
    const char *cmd = NULL;

    if (json_typeof(req) != JSON_OBJECT) {
        send_error(m, QERR_GENERIC, "QMP input must be a JSON object", NULL);
        return;
    }
    id = json_object_get(req, "id");
    for (size_t i = 0; i < json_object_len(req); i++) {
        const char *k = json_object_key_at(req, i);
        struct json *v = json_object_value_at(req, i);
        if (!strcmp(k, "execute") || !strcmp(k, "exec-oob")) {
            if (json_typeof(v) != JSON_STRING) {
                qmp_error_set(&e, QERR_GENERIC, "QMP input member '%s' must be a string", k);
                goto fail;
            }
            if (!strcmp(k, "exec-oob")) {
                qmp_error_set(&e, QERR_GENERIC, "The command %.64s does not support OOB",
                              json_get_string(v));
                goto fail;
            }
            cmd = json_get_string(v);
        } else if (!strcmp(k, "arguments")) {
            if (json_typeof(v) != JSON_OBJECT) {
                qmp_error_set(&e, QERR_GENERIC, "QMP input member 'arguments' must be an object");
                goto fail;
            }
            args = v;
        } else if (strcmp(k, "id")) {
            qmp_error_set(&e, QERR_GENERIC, "QMP input member '%.64s' is unexpected", k);
            goto fail;
        }
    }
    if (!cmd) {
        qmp_error_set(&e, QERR_GENERIC, "QMP input lacks member 'execute'");
        goto fail;
    }

    struct json *ret = NULL;
    struct json *no_args = NULL;
    if (!args)
        args = no_args = json_object();
    if (!args) {
        qmp_error_set(&e, QERR_GENERIC, "Out of memory");
        goto fail;
    }
    if (!strcmp(cmd, "qmp_capabilities")) {
        if (m->qmp.negotiated)
            qmp_error_set(&e, QERR_COMMAND_NOT_FOUND,
                          "Capabilities negotiation is already complete, command ignored");
        else
            ret = capabilities(m, args, &e);
    } else if (!m->qmp.negotiated) {
        qmp_error_set(&e, QERR_COMMAND_NOT_FOUND,
                      "Expecting capabilities negotiation with 'qmp_capabilities'");
    } else {
        const struct qmp_command *c = qmp_command_find(cmd);
        if (!c || !c->fn)
            qmp_error_set(&e, QERR_COMMAND_NOT_FOUND, "The command %.128s has not been found",
                          cmd);
        else if (check_args(c->args, args, &e))
            ret = c->fn(m, args, &e);
    }
    json_free(no_args);
    if (ret) {
        send_return(m, ret, id ? json_copy(id) : NULL);
        return;
    }
    if (!e.cls)
        qmp_error_set(&e, QERR_GENERIC, "Command failed");
fail:
    send_error(m, e.cls, e.desc, id);
}

static void on_message(void *opaque, const char *text, size_t len, const char *error)
{
    struct monitor *m = opaque;
    char desc[200];
    if (error) {
        snprintf(desc, sizeof desc, "JSON parse error, %s", error);
        send_error(m, QERR_GENERIC, desc, NULL);
        return;
    }
    char err[128] = "";
    struct json *req = json_parse(text, len, err, sizeof err);
    if (!req) {
        snprintf(desc, sizeof desc, "JSON parse error, %s", err[0] ? err : "invalid input");
        send_error(m, QERR_GENERIC, desc, NULL);
        return;
    }
    dispatch(m, req);
    json_free(req);
}

void qmp_input(struct monitor *m, const uint8_t *buf, size_t len)
{
    if (m->qmp.stream)
        json_stream_feed(m->qmp.stream, (const char *)buf, len, on_message, m);
}
