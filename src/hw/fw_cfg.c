/* fw_cfg, traditional interface: see the header and QEMU's
 * docs/specs/fw_cfg.rst ("Selector (Control) Register", "Data Register",
 * "File Directory"). */
#include "hw/fw_cfg.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

#define FW_CFG_DIR_ENTRY_SIZE 64   /* be32 size, be16 select, be16 reserved, name[56] */
#define NO_ITEM SIZE_MAX

struct fw_cfg_item {
    uint16_t key;
    uint32_t len;
    uint8_t *data;
    char name[FW_CFG_MAX_FILE_PATH];    /* files only, else "" */
};

struct fw_cfg {
    pthread_mutex_t lock;
    struct log_ratelimit rl;
    struct fw_cfg_item *items;  /* append-only, so an index stays valid */
    size_t n, cap;
    unsigned nfiles;
    size_t dir_index;           /* the FW_CFG_FILE_DIR item */
    size_t cur;                 /* selected item, or NO_ITEM */
    uint32_t offset;            /* next byte of the selected item */
};

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static size_t fw_cfg_find_key(const struct fw_cfg *fw, uint16_t key)
{
    for (size_t i = 0; i < fw->n; i++) {
        if (fw->items[i].key == key)
            return i;
    }
    return NO_ITEM;
}

static int fw_cfg_copy_blob(const void *data, size_t len, uint8_t **out)
{
    *out = NULL;
    if (len > UINT32_MAX)
        return -EFBIG;
    if (!len)
        return 0;
    *out = malloc(len);
    if (!*out)
        return -ENOMEM;
    memcpy(*out, data, len);
    return 0;
}

/* Under the lock, key not in use. Takes ownership of blob. */
static int fw_cfg_append(struct fw_cfg *fw, uint16_t key, uint8_t *blob, size_t len,
                         const char *name)
{
    if (fw->n == fw->cap) {
        size_t cap = fw->cap ? fw->cap * 2 : 16;
        struct fw_cfg_item *items = realloc(fw->items, cap * sizeof(*items));
        if (!items)
            return -ENOMEM;
        fw->items = items;
        fw->cap = cap;
    }
    struct fw_cfg_item *it = &fw->items[fw->n++];
    memset(it, 0, sizeof(*it));
    it->key = key;
    it->len = (uint32_t)len;
    it->data = blob;
    if (name)
        strcpy(it->name, name);     /* length checked by the caller */
    return 0;
}

/* Rebuild the FW_CFG_FILE_DIR blob from the file items. */
static int fw_cfg_rebuild_dir(struct fw_cfg *fw)
{
    size_t len = 4 + (size_t)fw->nfiles * FW_CFG_DIR_ENTRY_SIZE;
    uint8_t *dir = calloc(1, len);
    if (!dir)
        return -ENOMEM;
    put_be32(dir, fw->nfiles);
    uint8_t *e = dir + 4;
    for (size_t i = 0; i < fw->n; i++) {
        const struct fw_cfg_item *it = &fw->items[i];
        if (!it->name[0])
            continue;
        put_be32(e, it->len);
        put_be16(e + 4, it->key);
        /* e + 6: reserved, 0 */
        memcpy(e + 8, it->name, strlen(it->name));  /* NUL-padded by calloc */
        e += FW_CFG_DIR_ENTRY_SIZE;
    }
    struct fw_cfg_item *d = &fw->items[fw->dir_index];
    free(d->data);
    d->data = dir;
    d->len = (uint32_t)len;
    return 0;
}

int fw_cfg_add_bytes(struct fw_cfg *fw, uint16_t key, const void *data, size_t len)
{
    uint16_t index = key & (uint16_t)~(FW_CFG_WRITE_CHANNEL | FW_CFG_ARCH_LOCAL);
    uint8_t *blob;
    int ret;

    if ((key & FW_CFG_WRITE_CHANNEL) || key == FW_CFG_FILE_DIR ||
        (!(key & FW_CFG_ARCH_LOCAL) && index >= FW_CFG_FILE_FIRST))
        return -EINVAL;
    ret = fw_cfg_copy_blob(data, len, &blob);
    if (ret)
        return ret;
    pthread_mutex_lock(&fw->lock);
    if (fw_cfg_find_key(fw, key) != NO_ITEM)
        ret = -EEXIST;
    else
        ret = fw_cfg_append(fw, key, blob, len, NULL);
    pthread_mutex_unlock(&fw->lock);
    if (ret)
        free(blob);
    return ret;
}

int fw_cfg_add_u16(struct fw_cfg *fw, uint16_t key, uint16_t value)
{
    uint8_t b[2] = {(uint8_t)value, (uint8_t)(value >> 8)};
    return fw_cfg_add_bytes(fw, key, b, sizeof b);
}

int fw_cfg_add_u32(struct fw_cfg *fw, uint16_t key, uint32_t value)
{
    uint8_t b[4];
    for (unsigned i = 0; i < 4; i++)
        b[i] = (uint8_t)(value >> (8 * i));
    return fw_cfg_add_bytes(fw, key, b, sizeof b);
}

int fw_cfg_add_u64(struct fw_cfg *fw, uint16_t key, uint64_t value)
{
    uint8_t b[8];
    for (unsigned i = 0; i < 8; i++)
        b[i] = (uint8_t)(value >> (8 * i));
    return fw_cfg_add_bytes(fw, key, b, sizeof b);
}

int fw_cfg_add_file(struct fw_cfg *fw, const char *name, const void *data, size_t len)
{
    uint8_t *blob;
    int ret;

    if (!name || !name[0])
        return -EINVAL;
    if (strlen(name) >= FW_CFG_MAX_FILE_PATH)
        return -ENAMETOOLONG;
    ret = fw_cfg_copy_blob(data, len, &blob);
    if (ret)
        return ret;

    pthread_mutex_lock(&fw->lock);
    for (size_t i = 0; i < fw->n; i++) {
        if (strcmp(fw->items[i].name, name) == 0) {
            ret = -EEXIST;
            goto out;
        }
    }
    if (fw->nfiles >= FW_CFG_MAX_FILES) {
        ret = -ENOSPC;
        goto out;
    }
    uint16_t key = (uint16_t)(FW_CFG_FILE_FIRST + fw->nfiles);
    ret = fw_cfg_append(fw, key, blob, len, name);
    if (ret)
        goto out;
    blob = NULL;
    fw->nfiles++;
    ret = fw_cfg_rebuild_dir(fw);
    if (ret) {
        /* Undo: the directory must list exactly the files that exist. */
        fw->nfiles--;
        fw->n--;
        blob = fw->items[fw->n].data;
        goto out;
    }
    ret = key;
out:
    pthread_mutex_unlock(&fw->lock);
    free(blob);
    return ret;
}

static void fw_cfg_select(struct fw_cfg *fw, uint16_t sel)
{
    if (sel & FW_CFG_WRITE_CHANNEL) {
        /* Spec: writable selectors; QEMU ignores data writes since v2.4.
         * Reads still return the item. */
        log_ratelimited(&fw->rl, LOG_DEBUG, "fw_cfg: selector 0x%04x asks for write access; "
                        "the interface is read-only", sel);
        sel &= (uint16_t)~FW_CFG_WRITE_CHANNEL;
    }
    fw->cur = fw_cfg_find_key(fw, sel);
    fw->offset = 0;
}

static uint8_t fw_cfg_read_byte(struct fw_cfg *fw)
{
    if (fw->cur == NO_ITEM)
        return 0;
    const struct fw_cfg_item *it = &fw->items[fw->cur];
    if (fw->offset >= it->len)
        return 0;       /* past the end: 0x00 */
    return it->data[fw->offset++];
}

/* Reads of any width and at either port return the next bytes of the item
 * in increasing order (the spec's "N-byte wide read", like rep insb). */
static void fw_cfg_bus_read(void *opaque, uint64_t off, void *data, unsigned len)
{
    struct fw_cfg *fw = opaque;
    uint8_t *out = data;

    (void)off;
    pthread_mutex_lock(&fw->lock);
    for (unsigned i = 0; i < len; i++)
        out[i] = fw_cfg_read_byte(fw);
    pthread_mutex_unlock(&fw->lock);
}

static void fw_cfg_bus_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
    struct fw_cfg *fw = opaque;
    const uint8_t *in = data;

    pthread_mutex_lock(&fw->lock);
    if (off == 0 && len >= 2) {
        fw_cfg_select(fw, (uint16_t)(in[0] | in[1] << 8));
    } else {
        log_ratelimited(&fw->rl, LOG_DEBUG, "fw_cfg: %u-byte write at offset %llu ignored "
                        "(data port is read-only)", len, (unsigned long long)off);
    }
    pthread_mutex_unlock(&fw->lock);
}

const struct bus_ops fw_cfg_bus_ops = {
    .read = fw_cfg_bus_read,
    .write = fw_cfg_bus_write,
};

void fw_cfg_reset(struct fw_cfg *fw)
{
    pthread_mutex_lock(&fw->lock);
    fw_cfg_select(fw, FW_CFG_SIGNATURE);
    pthread_mutex_unlock(&fw->lock);
}

struct fw_cfg *fw_cfg_new(void)
{
    static const uint8_t sig[4] = {'Q', 'E', 'M', 'U'};
    static const uint8_t id[4] = {FW_CFG_ID_TRADITIONAL, 0, 0, 0};
    struct fw_cfg *fw = calloc(1, sizeof(*fw));
    uint8_t *b1 = NULL, *b2 = NULL;

    if (!fw)
        return NULL;
    if (pthread_mutex_init(&fw->lock, NULL) != 0) {
        free(fw);
        return NULL;
    }
    fw->rl = (struct log_ratelimit)LOG_RATELIMIT_INIT;
    if (fw_cfg_copy_blob(sig, sizeof sig, &b1) || fw_cfg_append(fw, FW_CFG_SIGNATURE, b1, 4, NULL))
        goto fail;
    b1 = NULL;
    if (fw_cfg_copy_blob(id, sizeof id, &b2) || fw_cfg_append(fw, FW_CFG_ID, b2, 4, NULL))
        goto fail;
    b2 = NULL;
    fw->dir_index = fw->n;
    if (fw_cfg_append(fw, FW_CFG_FILE_DIR, NULL, 0, NULL) || fw_cfg_rebuild_dir(fw))
        goto fail;
    fw_cfg_select(fw, FW_CFG_SIGNATURE);
    return fw;
fail:
    free(b1);
    free(b2);
    fw_cfg_free(fw);
    return NULL;
}

void fw_cfg_free(struct fw_cfg *fw)
{
    if (!fw)
        return;
    for (size_t i = 0; i < fw->n; i++)
        free(fw->items[i].data);
    free(fw->items);
    pthread_mutex_destroy(&fw->lock);
    free(fw);
}
