/* QMP protocol without KVM: a hand-built struct vm (the fields the
 * commands read, vCPUs without threads or fds) and a monitor whose output
 * goes to a buffer; input goes through the real stream splitter, parser,
 * dispatcher and error paths. */
#include "test.h"

#include <stdlib.h>

#include "core/vm.h"
#include "monitor/json.h"
#include "monitor/monitor_internal.h"

struct out {
    char *buf;
    size_t len, cap;
};

static void collect(void *opaque, const void *data, size_t len)
{
    struct out *o = opaque;
    if (o->len + len + 1 > o->cap) {
        o->cap = (o->len + len + 1) * 2;
        o->buf = realloc(o->buf, o->cap);
    }
    memcpy(o->buf + o->len, data, len);
    o->len += len;
    o->buf[o->len] = '\0';
}

struct fixture {
    struct vm vm;
    struct vm_config cfg;
    struct vcpu vcpus[2];
    struct out out;
    struct monitor *m;
    int powerdowns, boots;
};

static int fake_load_boot(struct vm *vm)
{
    struct fixture *f = (struct fixture *)vm;   /* vm is the first member */
    f->boots++;
    return 0;
}

static void fake_powerdown(struct vm *vm)
{
    ((struct fixture *)vm)->powerdowns++;
}

static const struct vm_machine_ops fake_machine = {
    .load_boot = fake_load_boot,
    .powerdown = fake_powerdown,
};

static struct fixture *fixture_new(bool pretty)
{
    struct fixture *f = calloc(1, sizeof *f);
    f->cfg.name = "testvm";
    f->cfg.smp = (struct smp_config){ 2, 1, 2, 1, 2 };
    for (int i = 0; i < 16; i++)
        f->cfg.uuid[i] = (uint8_t)(0x10 + i);
    f->vm.cfg = &f->cfg;
    f->vm.vm_fd = -1;
    f->vm.run_state = VM_RUN_RUNNING;
    f->vm.machine = &fake_machine;
    pthread_mutex_init(&f->vm.park_lock, NULL);
    pthread_cond_init(&f->vm.park_cond, NULL);
    for (unsigned i = 0; i < 2; i++) {
        f->vcpus[i].vm = &f->vm;
        f->vcpus[i].index = i;
        f->vcpus[i].fd = -1;
        atomic_store(&f->vcpus[i].tid, 1000 + (int)i);
    }
    f->vm.vcpus = f->vcpus;
    f->vm.nr_vcpus = 2;
    f->m = monitor_new_output(&f->vm, MONITOR_QMP, pretty, collect, &f->out);
    return f;
}

static void fixture_free(struct fixture *f)
{
    monitor_free(f->m);
    free(f->out.buf);
    free(f);
}

static void feed(struct fixture *f, const char *s)
{
    monitor_input(f->m, (const uint8_t *)s, strlen(s));
}

/* Take the next "\r\n"-terminated message from the output, parsed. */
static struct json *next_msg(struct fixture *f)
{
    if (!f->out.len)
        return NULL;
    char *end = strstr(f->out.buf, "\r\n");
    if (!end)
        return NULL;
    size_t n = (size_t)(end - f->out.buf);
    char err[128];
    struct json *j = json_parse(f->out.buf, n, err, sizeof err);
    memmove(f->out.buf, end + 2, f->out.len - n - 2 + 1);
    f->out.len -= n + 2;
    return j;
}

/* Send a request and return its single reply (events before it skipped). */
static struct json *ask(struct fixture *f, const char *req)
{
    feed(f, req);
    struct json *j;
    while ((j = next_msg(f))) {
        if (!json_object_get(j, "event"))
            return j;
        json_free(j);
    }
    return NULL;
}

static const char *err_class(const struct json *r)
{
    return json_get_string(json_object_get(json_object_get(r, "error"), "class"));
}

static const char *err_desc(const struct json *r)
{
    return json_get_string(json_object_get(json_object_get(r, "error"), "desc"));
}

static struct fixture *negotiated(void)
{
    struct fixture *f = fixture_new(false);
    json_free(next_msg(f));     /* greeting */
    json_free(ask(f, "{\"execute\": \"qmp_capabilities\"}"));
    return f;
}

TEST(greeting)
{
    struct fixture *f = fixture_new(false);
    CHECK(f->m);
    CHECK(strstr(f->out.buf, "\r\n"));
    struct json *g = next_msg(f);
    CHECK(g);
    struct json *q = json_object_get(g, "QMP");
    struct json *v = json_object_get(json_object_get(q, "version"), "qemu");
    CHECK_EQ(json_get_int(json_object_get(v, "major")), 7);
    CHECK_EQ(json_get_int(json_object_get(v, "minor")), 2);
    CHECK_EQ(json_get_int(json_object_get(v, "micro")), 0);
    CHECK(json_get_string(json_object_get(json_object_get(q, "version"), "package")));
    struct json *caps = json_object_get(q, "capabilities");
    CHECK_EQ(json_array_len(caps), 1);
    CHECK_STR(json_get_string(json_array_at(caps, 0)), "oob");
    json_free(g);
    fixture_free(f);
}

TEST(negotiation_required)
{
    struct fixture *f = fixture_new(false);
    json_free(next_msg(f));
    struct json *r = ask(f, "{\"execute\": \"query-status\"}");
    CHECK_STR(err_class(r), "CommandNotFound");
    CHECK_STR(err_desc(r), "Expecting capabilities negotiation with 'qmp_capabilities'");
    json_free(r);
    r = ask(f, "{\"execute\": \"qmp_capabilities\", \"id\": [1, {\"a\": 2}]}");
    CHECK(json_object_get(r, "return"));
    CHECK_EQ(json_object_len(json_object_get(r, "return")), 0);
    struct json *id = json_object_get(r, "id");
    CHECK_EQ(json_array_len(id), 2);
    CHECK_EQ(json_get_int(json_object_get(json_array_at(id, 1), "a")), 2);
    json_free(r);
    r = ask(f, "{\"execute\": \"qmp_capabilities\"}");
    CHECK_STR(err_class(r), "CommandNotFound");
    CHECK_STR(err_desc(r), "Capabilities negotiation is already complete, command ignored");
    json_free(r);
    fixture_free(f);
}

TEST(queries)
{
    struct fixture *f = negotiated();
    struct json *r = ask(f, "{\"execute\": \"query-status\", \"id\": \"s\"}");
    struct json *v = json_object_get(r, "return");
    CHECK_STR(json_get_string(json_object_get(v, "status")), "running");
    CHECK_EQ(json_typeof(json_object_get(v, "singlestep")), JSON_BOOL);
    CHECK(json_get_bool(json_object_get(v, "running")));
    CHECK_STR(json_get_string(json_object_get(r, "id")), "s");
    json_free(r);

    r = ask(f, "{\"execute\": \"query-name\"}");
    CHECK_STR(json_get_string(json_object_get(json_object_get(r, "return"), "name")), "testvm");
    json_free(r);
    r = ask(f, "{\"execute\": \"query-kvm\"}");
    CHECK(json_get_bool(json_object_get(json_object_get(r, "return"), "enabled")));
    json_free(r);
    r = ask(f, "{\"execute\": \"query-uuid\"}");
    CHECK_STR(json_get_string(json_object_get(json_object_get(r, "return"), "UUID")),
              "10111213-1415-1617-1819-1a1b1c1d1e1f");
    json_free(r);
    r = ask(f, "{\"execute\": \"query-cpus-fast\"}");
    v = json_object_get(r, "return");
    CHECK_EQ(json_array_len(v), 2);
    struct json *c1 = json_array_at(v, 1);
    CHECK_EQ(json_get_int(json_object_get(c1, "cpu-index")), 1);
    CHECK_EQ(json_get_int(json_object_get(c1, "thread-id")), 1001);
    CHECK_STR(json_get_string(json_object_get(c1, "qom-path")), "/machine/unattached/device[1]");
    CHECK_STR(json_get_string(json_object_get(c1, "target")), "x86_64");
    CHECK_EQ(json_get_int(json_object_get(json_object_get(c1, "props"), "core-id")), 1);
    CHECK_EQ(json_get_int(json_object_get(json_object_get(c1, "props"), "socket-id")), 0);
    json_free(r);
    const char *empty[] = { "query-pci", "query-block", "query-blockstats" };
    for (int i = 0; i < 3; i++) {
        char req[80];
        snprintf(req, sizeof req, "{\"execute\": \"%s\"}", empty[i]);
        r = ask(f, req);
        CHECK_EQ(json_typeof(json_object_get(r, "return")), JSON_ARRAY);
        CHECK_EQ(json_array_len(json_object_get(r, "return")), 0);
        json_free(r);
    }
    r = ask(f, "{\"execute\": \"query-commands\"}");
    v = json_object_get(r, "return");
    bool found = false;
    for (size_t i = 0; i < json_array_len(v); i++)
        found |= !strcmp(json_get_string(json_object_get(json_array_at(v, i), "name")),
                         "human-monitor-command");
    CHECK(found);
    json_free(r);
    r = ask(f, "{\"execute\": \"query-version\"}");
    CHECK_EQ(json_get_int(json_object_get(json_object_get(json_object_get(r, "return"), "qemu"),
                                          "major")), 7);
    json_free(r);
    fixture_free(f);
}

TEST(request_errors)
{
    struct fixture *f = negotiated();
    static const struct { const char *req, *cls, *desc; } cases[] = {
        { "{\"execute\": \"foo\"}", "CommandNotFound", "The command foo has not been found" },
        { "{\"exec\": \"foo\"}", "GenericError", "QMP input member 'exec' is unexpected" },
        { "{\"arguments\": {}}", "GenericError", "QMP input lacks member 'execute'" },
        { "{\"execute\": \"query-status\", \"arguments\": {\"x\": 1}}", "GenericError",
          "Parameter 'x' is unexpected" },
        { "{\"execute\": \"set_link\", \"arguments\": {\"name\": \"x\", \"up\": true}}",
          "DeviceNotFound", "Device 'x' not found" },
        { "{\"execute\": \"set_link\", \"arguments\": {\"name\": \"x\"}}", "GenericError",
          "Parameter 'up' is missing" },
        { "{\"execute\": \"set_link\", \"arguments\": {\"name\": 1, \"up\": true}}",
          "GenericError", "Invalid parameter type for 'name', expected: string" },
        { "{\"execute\": \"set_link\", \"arguments\": {\"name\": \"n\", \"up\": 1}}",
          "GenericError", "Invalid parameter type for 'up', expected: boolean" },
        { "[1, 2]", "GenericError", "QMP input must be a JSON object" },
        { "\"str\"", "GenericError", "QMP input must be a JSON object" },
        { "{\"execute\": 1}", "GenericError", "QMP input member 'execute' must be a string" },
        { "{\"execute\": \"query-status\", \"arguments\": []}", "GenericError",
          "QMP input member 'arguments' must be an object" },
        { "{\"execute\": \"human-monitor-command\"}", "GenericError",
          "Parameter 'command-line' is missing" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct json *r = ask(f, cases[i].req);
        if (!r || !err_class(r) || strcmp(err_class(r), cases[i].cls) ||
            strcmp(err_desc(r), cases[i].desc))
            printf("    case %zu: %s -> %s\n", i, cases[i].req,
                   r ? err_desc(r) : "(no reply)");
        CHECK(r);
        CHECK_STR(err_class(r), cases[i].cls);
        CHECK_STR(err_desc(r), cases[i].desc);
        json_free(r);
    }
    /* id is echoed on errors too */
    struct json *r = ask(f, "{\"execute\": \"query-status\", \"id\": 5, \"x\": 1}");
    CHECK_EQ(json_get_int(json_object_get(r, "id")), 5);
    CHECK_STR(err_desc(r), "QMP input member 'x' is unexpected");
    json_free(r);
    fixture_free(f);
}

TEST(bad_json_keeps_going)
{
    struct fixture *f = negotiated();
    struct json *r = ask(f, "garbage\n");
    CHECK(r);
    CHECK_STR(err_class(r), "GenericError");
    CHECK(!strncmp(err_desc(r), "JSON parse error, ", 18));
    json_free(r);
    /* truncated, then completed in a second chunk */
    feed(f, "{\"execute\": \"query-st");
    CHECK_EQ(f->out.len, 0);
    r = ask(f, "atus\"}");
    CHECK_STR(json_get_string(json_object_get(json_object_get(r, "return"), "status")),
              "running");
    json_free(r);
    /* stray closer after a message */
    feed(f, "{\"execute\": \"query-name\"}}");
    r = next_msg(f);
    CHECK(json_object_get(r, "return"));
    json_free(r);
    r = next_msg(f);
    CHECK_STR(err_class(r), "GenericError");
    json_free(r);
    /* huge: more than one message may hold */
    size_t big = JSON_MAX_INPUT + 4096;
    char *huge = malloc(big + 1);
    memcpy(huge, "{\"execute\": \"", 13);
    memset(huge + 13, 'a', big - 13);
    huge[big] = '\0';
    feed(f, huge);
    free(huge);
    feed(f, "\"}\n");
    r = next_msg(f);
    CHECK(r);
    CHECK_STR(err_class(r), "GenericError");
    json_free(r);
    while ((r = next_msg(f)))
        json_free(r);
    /* deep nesting */
    char deep[400];
    memset(deep, '[', 300);
    strcpy(deep + 300, "\n");
    feed(f, deep);
    memset(deep, ']', 300);
    strcpy(deep + 300, "\n");
    feed(f, deep);
    r = next_msg(f);
    CHECK(r);
    CHECK_STR(err_class(r), "GenericError");
    json_free(r);
    while ((r = next_msg(f)))
        json_free(r);
    /* still works */
    r = ask(f, "{'execute': 'query-status'}");
    CHECK(json_object_get(r, "return"));
    json_free(r);
    /* several messages in one chunk */
    feed(f, "{\"execute\":\"query-kvm\",\"id\":1}{\"execute\":\"query-name\",\"id\":2}");
    r = next_msg(f);
    CHECK_EQ(json_get_int(json_object_get(r, "id")), 1);
    json_free(r);
    r = next_msg(f);
    CHECK_EQ(json_get_int(json_object_get(r, "id")), 2);
    json_free(r);
    fixture_free(f);
}

static struct json *next_event(struct fixture *f)
{
    struct json *j;
    while ((j = next_msg(f))) {
        if (json_object_get(j, "event"))
            return j;
        json_free(j);
    }
    return NULL;
}

TEST(lifecycle_and_events)
{
    struct fixture *f = negotiated();
    feed(f, "{\"execute\": \"stop\"}");
    struct json *e = next_event(f);
    CHECK_STR(json_get_string(json_object_get(e, "event")), "STOP");
    struct json *ts = json_object_get(e, "timestamp");
    CHECK(json_get_int(json_object_get(ts, "seconds")) > 1600000000);
    CHECK_EQ(json_typeof(json_object_get(ts, "microseconds")), JSON_INT);
    CHECK(!json_object_get(e, "data"));
    json_free(e);
    /* the event comes before the reply, as in QEMU */
    struct json *ok = next_msg(f);
    CHECK(json_object_get(ok, "return"));
    json_free(ok);
    CHECK_EQ(f->vm.run_state, VM_RUN_PAUSED);
    struct json *r = ask(f, "{\"execute\": \"query-status\"}");
    CHECK_STR(json_get_string(json_object_get(json_object_get(r, "return"), "status")), "paused");
    CHECK(!json_get_bool(json_object_get(json_object_get(r, "return"), "running")));
    json_free(r);
    feed(f, "{\"execute\": \"cont\"}");
    e = next_event(f);
    CHECK_STR(json_get_string(json_object_get(e, "event")), "RESUME");
    json_free(e);
    f->vm.nr_vcpus = 0;     /* no KVM vCPUs to reset in this test */
    feed(f, "{\"execute\": \"system_reset\"}");
    f->vm.nr_vcpus = 2;
    e = next_event(f);
    CHECK_STR(json_get_string(json_object_get(e, "event")), "RESET");
    CHECK_EQ(json_get_bool(json_object_get(json_object_get(e, "data"), "guest")), 0);
    CHECK_STR(json_get_string(json_object_get(json_object_get(e, "data"), "reason")),
              "host-qmp-system-reset");
    json_free(e);
    CHECK_EQ(f->boots, 1);
    feed(f, "{\"execute\": \"system_powerdown\"}");
    e = next_event(f);
    CHECK_STR(json_get_string(json_object_get(e, "event")), "POWERDOWN");
    json_free(e);
    CHECK_EQ(f->powerdowns, 1);
    r = ask(f, "{\"execute\": \"quit\", \"id\": 9}");
    CHECK(json_object_get(r, "return"));
    json_free(r);
    CHECK(atomic_load(&f->vm.requests) & VM_REQ_EXIT);
    CHECK_STR(f->vm.exit_reason, "host-qmp-quit");
    /* No events before negotiation: a fresh session after reconnect. */
    while ((r = next_msg(f)))
        json_free(r);
    monitor_connected(f->m);
    r = next_msg(f);
    CHECK(json_object_get(r, "QMP"));
    json_free(r);
    f->vm.run_state = VM_RUN_RUNNING;
    vm_stop(&f->vm);
    CHECK_EQ(f->out.len, 0);
    fixture_free(f);
}

TEST(human_monitor_command)
{
    struct fixture *f = negotiated();
    struct json *r = ask(f, "{\"execute\": \"human-monitor-command\", "
                            "\"arguments\": {\"command-line\": \"info status\"}}");
    CHECK_STR(json_get_string(json_object_get(r, "return")), "VM status: running\r\n");
    json_free(r);
    r = ask(f, "{\"execute\": \"human-monitor-command\", "
               "\"arguments\": {\"command-line\": \"foo\"}}");
    CHECK_STR(json_get_string(json_object_get(r, "return")), "unknown command: 'foo'\r\n");
    json_free(r);
    r = ask(f, "{\"execute\": \"human-monitor-command\", "
               "\"arguments\": {\"command-line\": \"info cpus\"}}");
    CHECK_STR(json_get_string(json_object_get(r, "return")),
              "* CPU #0: thread_id=1000\r\n  CPU #1: thread_id=1001\r\n");
    json_free(r);
    fixture_free(f);
}

TEST(pretty)
{
    struct fixture *f = fixture_new(true);
    CHECK(!strncmp(f->out.buf, "{\r\n    \"QMP\": {\r\n        \"version\": {", 36));
    f->out.len = 0;
    feed(f, "{\"execute\": \"qmp_capabilities\"}");
    CHECK_STR(f->out.buf, "{\r\n    \"return\": {\r\n    }\r\n}\r\n");
    fixture_free(f);
}

TEST(listeners_removed)
{
    struct fixture *f = fixture_new(false);
    CHECK_EQ(f->vm.nr_listeners, 1);
    struct monitor *m2 = monitor_new_output(&f->vm, MONITOR_QMP, false, collect, &f->out);
    CHECK_EQ(f->vm.nr_listeners, 2);
    monitor_free(m2);
    CHECK_EQ(f->vm.nr_listeners, 1);
    CHECK(f->vm.listeners[0].opaque == f->m);
    fixture_free(f);
}

int main(void)
{
    RUN(greeting);
    RUN(negotiation_required);
    RUN(queries);
    RUN(request_errors);
    RUN(bad_json_keeps_going);
    RUN(lifecycle_and_events);
    RUN(human_monitor_command);
    RUN(pretty);
    RUN(listeners_removed);
    return test_summary();
}
