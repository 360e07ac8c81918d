/* query-chardev (and HMP info chardev): the VM's chardev registry. */
#include "monitor/commands.h"

#include "chardev/registry.h"
#include "core/vm.h"

struct chardev_list {
    struct json *list;      /* NULL after an allocation failure */
};

static void add_chardev(void *ctx, const char *label, const char *filename,
                        bool frontend_open)
{
    struct chardev_list *c = ctx;
    if (!c->list)
        return;
    struct json *o = json_object();
    if (o && (json_object_set(o, "frontend-open", json_bool(frontend_open)) < 0 ||
              json_object_set(o, "filename", json_string(filename)) < 0 ||
              json_object_set(o, "label", json_string(label)) < 0)) {
        json_free(o);
        o = NULL;
    }
    if (!o || json_array_append(c->list, o) < 0) {
        json_free(c->list);
        c->list = NULL;
    }
}

struct json *cmd_query_chardev(struct monitor *m, const struct json *a, struct qmp_error *e)
{
    struct chardev_list c = { json_array() };
    if (c.list && m->vm->chardevs)
        chardev_registry_foreach(m->vm->chardevs, add_chardev, &c);
    if (!c.list)
        qmp_error_set(e, QERR_GENERIC, "Out of memory");
    return c.list;
}
