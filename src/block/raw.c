/* The raw format: guest offset = host file offset, nothing else. Kept as a
 * driver (not special-cased in block.c) so qcow2 plugs into the same table
 * and snapshot=on layers over either the same way. */
#include "block/block_int.h"
#include "block/qcow2.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int raw_open(void **state, struct blk_file *file, bool read_only,
                    const struct blk_format_options *fo, char *err, unsigned errlen)
{
    const char *opt = !fo ? NULL : fo->l2_cache_size ? "l2-cache-size"
                      : fo->refcount_cache_size ? "refcount-cache-size" : NULL;
    if (opt) {
        snprintf(err, errlen, "Block format 'raw' does not support the option '%s'", opt);
        return -EINVAL;
    }
    *state = file;      /* all state is the host file's */
    return 0;
}

static int raw_preadv(void *s, uint64_t off, const struct iovec *iov, unsigned cnt, uint64_t len)
{
    return blk_file_preadv(s, off, iov, cnt, len);
}

static int raw_pwritev(void *s, uint64_t off, const struct iovec *iov, unsigned cnt, uint64_t len)
{
    return blk_file_pwritev(s, off, iov, cnt, len);
}

static int raw_flush(void *s) { return blk_file_flush(s); }

static int raw_discard(void *s, uint64_t off, uint64_t len)
{
    return blk_file_discard(s, off, len);
}

static int raw_write_zeroes(void *s, uint64_t off, uint64_t len)
{
    return blk_file_write_zeroes(s, off, len);
}

static uint64_t raw_length(void *s) { return ((struct blk_file *)s)->size; }

static void raw_close(void *s) { (void)s; }

const struct block_driver blk_driver_raw = {
    .format = "raw",
    .open = raw_open,
    .preadv = raw_preadv,
    .pwritev = raw_pwritev,
    .flush = raw_flush,
    .discard = raw_discard,
    .write_zeroes = raw_write_zeroes,
    .length = raw_length,
    .close = raw_close,
    .maps_to_file = true,
};

static const struct block_driver *const blk_drivers[] = {
    &blk_driver_raw,
    &blk_driver_qcow2,
    NULL,
};

const struct block_driver *blk_driver_find(const char *format)
{
    for (unsigned i = 0; blk_drivers[i]; i++)
        if (strcmp(blk_drivers[i]->format, format) == 0)
            return blk_drivers[i];
    return NULL;
}
