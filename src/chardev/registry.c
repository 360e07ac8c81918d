/* See registry.h. */
#include "chardev/registry.h"
#include "chardev/chardev_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct registry_entry {
    char *id;
    struct chardev *chr;        /* the back end */
    struct chardev_mux *mux;    /* mux=on: owns chr */
    unsigned frontends;         /* handed out by chardev_registry_attach */
};

struct chardev_registry {
    struct registry_entry e[CONFIG_MAX_CHARDEVS];
    unsigned n;
};

struct chardev_registry *chardev_registry_new(void)
{
    return calloc(1, sizeof(struct chardev_registry));
}

void chardev_registry_free(struct chardev_registry *r)
{
    if (!r)
        return;
    for (unsigned i = r->n; i-- > 0;) {
        if (r->e[i].mux)
            chardev_mux_free(r->e[i].mux);
        else
            chardev_close(r->e[i].chr);
        free(r->e[i].id);
    }
    free(r);
}

static struct registry_entry *registry_find(struct chardev_registry *r, const char *id)
{
    for (unsigned i = 0; i < r->n; i++)
        if (!strcmp(r->e[i].id, id))
            return &r->e[i];
    return NULL;
}

int chardev_registry_open(struct chardev_registry *r, const struct chardev_spec *spec,
                          struct loop *loop, int nographic, const struct chardev_hooks *hooks,
                          char *err, size_t errlen)
{
    const char *opt = spec->option ? spec->option : "-chardev";
    if (!spec->id || registry_find(r, spec->id)) {
        snprintf(err, errlen, "%s: duplicate chardev id '%s'", opt, spec->id ? spec->id : "");
        return -1;
    }
    if (r->n == CONFIG_MAX_CHARDEVS) {
        snprintf(err, errlen, "%s: too many character devices", opt);
        return -1;
    }
    struct registry_entry *e = &r->e[r->n];
    memset(e, 0, sizeof *e);
    e->id = strdup(spec->id);
    if (!e->id) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    e->chr = chardev_open(spec, spec->id, loop, nographic, hooks, err, errlen);
    if (e->chr && spec->mux && !(e->mux = chardev_mux_new(e->chr))) {
        snprintf(err, errlen, "out of memory");
        chardev_close(e->chr);
        e->chr = NULL;
    }
    if (!e->chr) {
        free(e->id);
        e->id = NULL;
        return -1;
    }
    r->n++;
    return 0;
}

struct chardev *chardev_registry_attach(struct chardev_registry *r, const char *id,
                                        char *err, size_t errlen)
{
    struct registry_entry *e = registry_find(r, id);
    if (!e) {
        snprintf(err, errlen, "no character device with id '%s'", id);
        return NULL;
    }
    if (e->mux) {
        struct chardev *fe = e->frontends < CHARDEV_MUX_MAX
                             ? chardev_mux_frontend(e->mux, e->frontends) : NULL;
        if (!fe) {
            snprintf(err, errlen, "chardev '%s': too many front ends (at most %d)", id,
                     CHARDEV_MUX_MAX);
            return NULL;
        }
        e->frontends++;
        return fe;
    }
    if (e->frontends) {
        /* QEMU: "Device 'ID' is in use" */
        snprintf(err, errlen, "chardev '%s' is already in use (expected mux=on to share it)", id);
        return NULL;
    }
    e->frontends++;
    return e->chr;
}

struct chardev_mux *chardev_registry_mux(struct chardev_registry *r, const char *id)
{
    struct registry_entry *e = registry_find(r, id);
    return e ? e->mux : NULL;
}

void chardev_registry_foreach(struct chardev_registry *r,
                              void (*fn)(void *ctx, const char *label, const char *filename,
                                         bool frontend_open),
                              void *ctx)
{
    char filename[640];
    for (unsigned i = 0; i < r->n; i++) {
        struct registry_entry *e = &r->e[i];
        chardev_filename(e->chr, filename, sizeof filename);
        if (!e->mux) {
            fn(ctx, e->id, filename, e->frontends > 0);
            continue;
        }
        char base[sizeof e->chr->label + 8];
        snprintf(base, sizeof base, "%s-base", e->id);
        fn(ctx, e->id, "mux", e->frontends > 0);
        fn(ctx, base, filename, true);     /* the mux is its front end */
    }
}
