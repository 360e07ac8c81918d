/* qcow2 creation options parsed as qemu-img does (see qcow2_opts.h). */
#include "img/qcow2_opts.h"
#include "img/img.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

bool img_opt_number(const char *prefix, const char *key, const char *val, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(val, &end, 0);
    if (errno == ERANGE) {
        if (prefix)
            img_err("%sValue '%s' is too large for parameter '%s'", prefix, val, key);
        return false;
    }
    /* strtoull takes "0x" as 0 followed by "x": qemu counts that as junk. */
    if (end == val || *end || errno) {
        if (prefix)
            img_err("%sParameter '%s' expects a number", prefix, key);
        return false;
    }
    *out = v;
    return true;
}

bool img_refcount_bits_ok(int64_t bits)
{
    return bits > 0 && bits <= 64 && !(bits & (bits - 1));
}

int img_compression_type(const char *val)
{
    return !strcmp(val, "zlib") ? 0 : !strcmp(val, "zstd") ? 1 : -1;
}
