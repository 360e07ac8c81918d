/* QEMU's "key=value,key=value" option strings, with ",," standing for a
 * literal comma. A leading bare word (no '=') is returned under the key
 * given as implied_key (e.g. "-smp 4,cores=2" -> cpus=4). */
#ifndef KVMBOX_KEYVAL_H
#define KVMBOX_KEYVAL_H

#include <stdbool.h>

#define KEYVAL_MAX 32

struct keyval {
    unsigned n;
    char *key[KEYVAL_MAX];
    char *value[KEYVAL_MAX];   /* a bare "flag" later in the list has value NULL */
    bool used[KEYVAL_MAX];     /* fetched by keyval_get */
};

/* 0, or -EINVAL (empty key, too many pairs) / -ENOMEM. */
int keyval_parse(struct keyval *kv, const char *s, const char *implied_key);
void keyval_free(struct keyval *kv);
/* Value of key (NULL when absent; for a bare flag, ""), marking it used. */
const char *keyval_get(struct keyval *kv, const char *key);
/* Parse on/off/yes/no/true/false (a bare flag is on): 0 or -EINVAL. */
int keyval_bool(const char *v, bool *out);
/* First key not fetched with keyval_get (to report unknown parameters), or NULL. */
const char *keyval_unused(const struct keyval *kv);

#endif
