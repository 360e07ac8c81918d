/* qcow2 cluster compression (spec "Compression type"): 0 = raw deflate
 * without a zlib header, 1 = zstd frames. One cluster at a time. */
#include "block/qcow2_int.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

/* Decompress one cluster (spec "Compression type": 0 = raw deflate
 * without zlib header, 1 = zstd frames). Bounded: input at most 2 clusters,
 * output exactly one. */
int qcow2_decompress(int type, const uint8_t *in, uint64_t inlen, uint8_t *out, uint64_t cs)
{
    if (type == 0) {
        z_stream z;
        memset(&z, 0, sizeof z);
        if (inflateInit2(&z, -15) != Z_OK)
            return -ENOMEM;
        z.next_in = (Bytef *)in;
        z.avail_in = (uInt)inlen;
        z.next_out = out;
        z.avail_out = (uInt)cs;
        int zr = inflate(&z, Z_FINISH);
        bool ok = (zr == Z_STREAM_END || zr == Z_BUF_ERROR) && z.avail_out == 0;
        inflateEnd(&z);
        return ok ? 0 : -EIO;
    }
    ZSTD_DCtx *d = ZSTD_createDCtx();
    if (!d)
        return -ENOMEM;
    ZSTD_inBuffer zi = { in, (size_t)inlen, 0 };
    ZSTD_outBuffer zo = { out, (size_t)cs, 0 };
    int r = 0;
    while (zo.pos < zo.size) {
        size_t ip = zi.pos, op = zo.pos;
        size_t zr = ZSTD_decompressStream(d, &zo, &zi);
        if (ZSTD_isError(zr)) {
            r = -EIO;
            break;
        }
        if (zi.pos == ip && zo.pos == op) {     /* no progress: input exhausted */
            r = zo.pos == zo.size ? 0 : -EIO;
            break;
        }
    }
    ZSTD_freeDCtx(d);
    return r;
}

/* Raw deflate (QEMU: window bits -12, default level); the output size, or
 * 0 if it does not fit in `max`. */
static uint64_t compress_zlib(const uint8_t *in, uint64_t len, uint8_t *out, uint64_t max)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -12, 9, Z_DEFAULT_STRATEGY) != Z_OK)
        return 0;
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)len;
    z.next_out = out;
    z.avail_out = (uInt)max;
    int zr = deflate(&z, Z_FINISH);
    uint64_t n = zr == Z_STREAM_END ? max - z.avail_out : 0;
    deflateEnd(&z);
    return n;
}

/* One zstd frame at the default level (as QEMU writes: the frame records
 * the content size, readers stream-decode until the cluster is full); the
 * output size, or 0 if it does not fit in `max`. The one-shot call sizes
 * its context from `len`, so small clusters stay cheap. */
static uint64_t compress_zstd(const uint8_t *in, uint64_t len, uint8_t *out, uint64_t max)
{
    size_t n = ZSTD_compress(out, (size_t)max, in, (size_t)len, ZSTD_CLEVEL_DEFAULT);
    return ZSTD_isError(n) ? 0 : (uint64_t)n;
}

uint64_t qcow2_compress(int type, const uint8_t *in, uint64_t len, uint8_t *out, uint64_t max)
{
    switch (type) {
    case QCOW2_COMPRESSION_ZLIB: return compress_zlib(in, len, out, max);
    case QCOW2_COMPRESSION_ZSTD: return compress_zstd(in, len, out, max);
    default: return 0;      /* unknown: stored uncompressed */
    }
}
