/* fuzz-sources: src/block/qcow2.c src/block/qcow2_meta.c src/block/qcow2_create.c src/block/qcow2_compress.c src/block/file.c src/block/raw.c src/block/probe.c src/block/lock.c src/core/log.c src/core/iov.c */
/* A qcow2 image is file input a user may have downloaded: header,
 * extensions, L1/L2 tables, compressed descriptors and refcounts must
 * never crash, hang or allocate without bound. The input becomes an
 * in-memory file (memfd) opened read-only without backing files (a hostile
 * image must not make the fuzzer open host files); then a few sectors are
 * read at offsets chosen by the input. Then it is opened read-write (which
 * may rebuild the refcounts of a dirty image) and written, zeroed and
 * discarded at such offsets: allocation, copy-on-write of clusters and L2
 * tables that snapshots share, and the write-back must survive hostile
 * tables too. Needs -lz -lzstd (build.sh LIBS). */
#include "block/qcow2.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_create("fuzz_qcow2", MFD_CLOEXEC);
    if (fd < 0)
        return 0;
    if (write(fd, data, size) != (ssize_t)size) {
        close(fd);
        return 0;
    }
    char path[64], err[512];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    struct blk_file f;
    if (blk_file_open(&f, path, BLK_FILE_RDONLY, err, sizeof err) == 0) {
        struct qcow2_open_options o = { .no_backing = true, .l2_cache_size = 1 << 20,
                                        .filename = "fuzz.qcow2" };
        void *s;
        if (qcow2_open_ex(&s, &f, true, &o, err, sizeof err) == 0) {
            uint64_t len = blk_driver_qcow2.length(s);
            uint8_t buf[4096];
            for (unsigned i = 0; i < 8 && len; i++) {
                /* Offsets from the input's tail bytes: deterministic. */
                uint64_t sel = size > i ? data[size - 1 - i] : i;
                uint64_t off = (sel * 0x9e3779b97f4a7c15ull) % len;
                uint64_t n = len - off < sizeof buf ? len - off : sizeof buf;
                struct iovec v = { buf, (size_t)n };
                blk_driver_qcow2.preadv(s, off, &v, 1, n);
                v.iov_len = 512 < len ? 512 : (size_t)len;
                blk_driver_qcow2.preadv(s, 0, &v, 1, v.iov_len);
            }
            blk_driver_qcow2.close(s);
        }
        blk_file_close(&f);
    }
    if (blk_file_open(&f, path, 0, err, sizeof err) == 0) {
        struct qcow2_open_options o = { .no_backing = true, .l2_cache_size = 1 << 20,
                                        .filename = "fuzz.qcow2", .no_sync = true };
        void *s;
        if (qcow2_open_ex(&s, &f, false, &o, err, sizeof err) == 0) {
            uint64_t len = blk_driver_qcow2.length(s);
            uint8_t buf[4096];
            memset(buf, 0x5a, sizeof buf);
            for (unsigned i = 0; i < 4 && len; i++) {
                uint64_t sel = size > i + 8 ? data[size - 9 - i] : i;
                uint64_t off = (sel * 0xbf58476d1ce4e5b9ull) % len;
                uint64_t n = len - off < sizeof buf ? len - off : sizeof buf;
                struct iovec v = { buf, (size_t)n };
                if (sel % 4 == 0)
                    blk_driver_qcow2.write_zeroes(s, off, n);
                else if (sel % 4 == 1)
                    blk_driver_qcow2.discard(s, off, n);
                else
                    blk_driver_qcow2.pwritev(s, off, &v, 1, n);
            }
            blk_driver_qcow2.flush(s);
            blk_driver_qcow2.close(s);
        }
        blk_file_close(&f);
    }
    close(fd);
    return 0;
}
