/* See keyval.h. */
#include "config/keyval.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Split off one item of s at *pos into buf, un-escaping ",,". Returns false
 * when s is exhausted. */
static bool keyval_next_item(const char *s, size_t *pos, char *buf)
{
    size_t i = *pos, n = 0;
    if (s[i] == '\0')
        return false;
    while (s[i]) {
        if (s[i] == ',') {
            if (s[i + 1] == ',') {
                buf[n++] = ',';
                i += 2;
                continue;
            }
            i++;            /* the separator */
            break;
        }
        buf[n++] = s[i++];
    }
    buf[n] = '\0';
    *pos = i;
    return true;
}

int keyval_parse(struct keyval *kv, const char *s, const char *implied_key)
{
    memset(kv, 0, sizeof *kv);
    char *buf = malloc(strlen(s) + 1);
    if (!buf)
        return -ENOMEM;
    size_t pos = 0;
    int ret = 0;
    while (keyval_next_item(s, &pos, buf)) {
        if (kv->n == KEYVAL_MAX) {
            ret = -EINVAL;
            break;
        }
        char *eq = strchr(buf, '=');
        char *key = NULL, *value = NULL;
        if (eq) {
            *eq = '\0';
            key = strdup(buf);
            value = strdup(eq + 1);
            if (key && !value) {
                free(key);
                key = NULL;
            }
        } else if (kv->n == 0 && implied_key) {
            key = strdup(implied_key);
            value = strdup(buf);
            if (key && !value) {
                free(key);
                key = NULL;
            }
        } else {
            key = strdup(buf);
        }
        if (!key) {
            ret = -ENOMEM;
            break;
        }
        if (key[0] == '\0') {
            free(key);
            free(value);
            ret = -EINVAL;
            break;
        }
        kv->key[kv->n] = key;
        kv->value[kv->n] = value;
        kv->n++;
    }
    free(buf);
    if (ret)
        keyval_free(kv);
    return ret;
}

void keyval_free(struct keyval *kv)
{
    for (unsigned i = 0; i < kv->n; i++) {
        free(kv->key[i]);
        free(kv->value[i]);
    }
    memset(kv, 0, sizeof *kv);
}

const char *keyval_get(struct keyval *kv, const char *key)
{
    /* The last occurrence wins, as in QEMU. */
    const char *found = NULL;
    for (unsigned i = 0; i < kv->n; i++) {
        if (strcmp(kv->key[i], key) == 0) {
            found = kv->value[i] ? kv->value[i] : "";
            kv->used[i] = true;
        }
    }
    return found;
}

int keyval_bool(const char *v, bool *out)
{
    if (!v || !*v || !strcasecmp(v, "on") || !strcasecmp(v, "yes") ||
        !strcasecmp(v, "true")) {
        *out = true;
        return 0;
    }
    if (!strcasecmp(v, "off") || !strcasecmp(v, "no") || !strcasecmp(v, "false")) {
        *out = false;
        return 0;
    }
    return -EINVAL;
}

const char *keyval_unused(const struct keyval *kv)
{
    for (unsigned i = 0; i < kv->n; i++)
        if (!kv->used[i])
            return kv->key[i];
    return NULL;
}
