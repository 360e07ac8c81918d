/* Internal snapshot selection for convert -l (see snapsel.h). */
#include "img/snapsel.h"
#include "img/qmeta.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char OPT_PREFIX[] = "snapshot.";

/* One "key[=value]" of a QEMU option list from *p (",," escapes a comma in
 * a value); *p moves past it and its separator. Malloc'ed key and value
 * (NULL: no "="). false: out of memory. */
static bool next_opt(const char **p, char **key, char **val)
{
    const char *s = *p;
    size_t kl = strcspn(s, "=,");
    *key = strndup(s, kl);
    *val = NULL;
    s += kl;
    if (*s == '=') {
        size_t n = 0;
        if (!(*val = malloc(strlen(++s) + 1)))
            return false;
        while (*s && (*s != ',' || s[1] == ',')) {
            (*val)[n++] = *s;
            s += *s == ',' ? 2 : 1;
        }
        (*val)[n] = 0;
    }
    if (*s == ',')
        s++;
    *p = s;
    return *key != NULL;
}

/* A key without a value is QEMU's deprecated boolean short form: "key"
 * means key=on, "nokey" key=off (with qemu's warning). The value, or NULL
 * (out of memory); *key loses the "no". */
static char *short_form(char *key)
{
    bool off = !strncmp(key, "no", 2);
    img_err("warning: short-form boolean option '%s' deprecated", key);
    if (off)
        memmove(key, key + 2, strlen(key + 2) + 1);
    fprintf(stderr, "Please use %s=%s instead\n", key, off ? "off" : "on");
    return strdup(off ? "off" : "on");
}

static bool parse_opts(struct snapsel *sel, const char *arg)
{
    free(sel->id);
    free(sel->name);
    sel->id = sel->name = NULL;
    sel->have_opts = true;
    for (const char *p = arg; *p;) {
        char *key, *val;
        bool ok = next_opt(&p, &key, &val);
        if (ok && !val)
            ok = (val = short_form(key)) != NULL;
        if (!ok) {
            free(key);
            free(val);
            img_err("out of memory");
            return false;
        }
        char **slot = !strcmp(key, "snapshot.id") ? &sel->id
                      : !strcmp(key, "snapshot.name") ? &sel->name : NULL;
        if (!slot) {
            img_err("Invalid parameter '%s'", key);
            free(key);
            free(val);
            return false;
        }
        free(*slot);
        *slot = val;
        free(key);
    }
    return true;
}

bool snapsel_parse(struct snapsel *sel, const char *arg)
{
    if (strncmp(arg, OPT_PREFIX, sizeof OPT_PREFIX - 1)) {
        sel->key = arg;
        return true;
    }
    if (parse_opts(sel, arg))
        return true;
    img_err("Failed in parsing snapshot param '%s'", arg);
    return false;
}

bool snapsel_given(const struct snapsel *sel)
{
    return sel->have_opts || sel->key;
}

void snapsel_free(struct snapsel *sel)
{
    free(sel->id);
    free(sel->name);
    memset(sel, 0, sizeof *sel);
}

static int find(const struct qsnap *sn, uint32_t n, const struct snapsel *sel)
{
    if (!sel->have_opts)
        return qsnap_find_id_or_name(sn, n, sel->key);
    if (!sel->id && !sel->name)
        return -1;
    return qsnap_find(sn, n, sel->id, sel->name);
}

int snapsel_load(struct img *im, const struct snapsel *sel)
{
    struct qcow2 *q = im->q;
    if (!q) {
        img_err("Failed to load snapshot: Block format '%s' used by device '' does not "
                "support temporarily loading internal snapshots", im->fmt);
        return -1;
    }
    struct qsnap *sn = NULL;
    uint32_t n = 0;
    char err[512] = "";
    int r = qsnap_read(im, &sn, &n, NULL, err, sizeof err);
    if (r < 0) {
        img_err("Failed to load snapshot: %s", err);
        return -1;
    }
    int i = find(sn, n, sel);
    uint64_t *l1 = NULL;
    /* Entries for the whole guest size: reads past the snapshot's own
     * table are unallocated rather than out of range. */
    uint64_t entries = qmeta_l1_entries(q, q->size);
    if (i >= 0)
        r = qsnap_read_l1(q, &sn[i], entries, &l1);
    if (i >= 0 && r == 0) {
        pthread_mutex_lock(&q->lock);
        free(q->l1);
        q->l1 = l1;
        q->l1_size = (uint32_t)(entries > sn[i].l1_size ? entries : sn[i].l1_size);
        q->l1_offset = sn[i].l1_offset;
        pthread_mutex_unlock(&q->lock);
    }
    if (i < 0)
        img_err("Failed to load snapshot: Can't find snapshot");
    else if (r < 0)
        img_err("Failed to load snapshot: %s", strerror(-r));
    qsnap_free(sn, n);
    return i >= 0 && r == 0 ? 0 : -1;
}
