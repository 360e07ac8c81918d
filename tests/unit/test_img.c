/* kvmbox-img helpers and the driver calls it added: qemu-img's size syntax
 * and human sizes, -o lists, compressed cluster writes (packing several
 * into one host cluster, refcounts, rewrite of a compressed cluster). The
 * verbs themselves are tested against qemu-img by tests/img/run.sh. */
#include "img/img.h"
#include "test.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

TEST(parse_size)
{
    uint64_t v;
    CHECK(img_parse_size("1G", &v));
    CHECK_EQ(v, 1ull << 30);
    CHECK(img_parse_size("512", &v));
    CHECK_EQ(v, 512);
    CHECK(img_parse_size("1.5M", &v));
    CHECK_EQ(v, 3ull << 19);
    CHECK(img_parse_size("4k", &v));
    CHECK_EQ(v, 4096);
    CHECK(img_parse_size("2T", &v));
    CHECK_EQ(v, 2ull << 40);
    CHECK(!img_parse_size("1X", &v));
    CHECK(!img_parse_size("-5", &v));
    CHECK(!img_parse_size("", &v));
    CHECK(!img_parse_size("99999999999E", &v));
    CHECK(!img_parse_size("abc", &v));
}

TEST(human_size)
{
    char b[32];
    img_human_size(0, b, sizeof b);
    CHECK_STR(b, "0 B");
    img_human_size(1ull << 30, b, sizeof b);
    CHECK_STR(b, "1 GiB");
    img_human_size(200704, b, sizeof b);
    CHECK_STR(b, "196 KiB");
    img_human_size(1572864, b, sizeof b);
    CHECK_STR(b, "1.5 MiB");
    img_human_size(1000, b, sizeof b);
    CHECK_STR(b, "0.977 KiB");
}

TEST(option_lists)
{
    struct img_opts o = { 0 };
    CHECK(img_opts_add(&o, "size=1G,cluster_size=4k"));
    CHECK(img_opts_add(&o, "backing_file=a,,b,lazy_refcounts"));
    CHECK(img_opts_add(&o, "size=2G"));
    CHECK_STR(img_opts_get(&o, "size"), "2G");
    CHECK_STR(img_opts_get(&o, "cluster_size"), "4k");
    CHECK_STR(img_opts_get(&o, "backing_file"), "a,b");
    CHECK_STR(img_opts_get(&o, "lazy_refcounts"), "on");
    CHECK(img_opts_get(&o, "compat") == NULL);
    img_opts_free(&o);
}

TEST(compressed_writes)
{
    char path[] = "/tmp/kvmbox-test-img-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    char err[512];
    struct qcow2_create_options co = { .size = 4 << 20, .cluster_size = 65536 };
    CHECK_EQ(qcow2_create(path, &co, err, sizeof err), 0);
    struct img im;
    CHECK_EQ(img_open(&im, path, "qcow2", IMG_RW), 0);
    uint8_t *buf = malloc(65536), *rd = malloc(65536);
    CHECK(buf && rd);
    /* Eight compressible clusters: each compresses to far less than a
     * cluster, so they share host clusters. */
    for (int i = 0; i < 8; i++) {
        for (int j = 0; j < 65536; j++)
            buf[j] = (uint8_t)((j / 100) * (i + 1));
        CHECK_EQ(qcow2_write_compressed(im.st, (uint64_t)i * 65536, buf, 65536), 0);
    }
    /* Incompressible data is stored normally. */
    uint64_t x = 88172645463325252ull;
    for (int j = 0; j < 65536; j++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        buf[j] = (uint8_t)x;
    }
    CHECK_EQ(qcow2_write_compressed(im.st, 8 * 65536, buf, 65536), 0);
    CHECK_EQ(img_read(&im, 8 * 65536, rd, 65536), 0);
    CHECK(memcmp(buf, rd, 65536) == 0);
    CHECK_EQ(qcow2_write_compressed(im.st, 100, buf, 65536), -EINVAL);
    for (int i = 0; i < 8; i++) {
        for (int j = 0; j < 65536; j++)
            buf[j] = (uint8_t)((j / 100) * (i + 1));
        CHECK_EQ(img_read(&im, (uint64_t)i * 65536, rd, 65536), 0);
        CHECK(memcmp(buf, rd, 65536) == 0);
    }
    /* Packed: the first compressed cluster's host cluster is shared. */
    struct qcow2 *s = im.q;
    uint64_t l2 = s->l1[0] & QCOW2_OFFSET_MASK, rc = 0;
    CHECK(l2 != 0);
    pthread_mutex_lock(&s->lock);
    int r;
    struct qcow2_cache_entry *e = qcow2_cache_get(s, &s->l2_cache, l2, false, &r);
    uint64_t host = 0, clen = 0;
    enum qcow2_ctype t = e ? qcow2_entry_type(s, qcow2_be64(e->data), &host, &clen)
                           : QCOW2_TYPE_UNALLOC;
    if (e)
        qcow2_get_refcount(s, host >> s->cluster_bits, &rc);
    pthread_mutex_unlock(&s->lock);
    CHECK_EQ(t, QCOW2_TYPE_COMPRESSED);
    CHECK(rc > 1);
    /* A normal write over a compressed cluster (partial: read-modify-write). */
    memset(buf, 0xab, 1000);
    CHECK_EQ(img_write(&im, 65536 + 5, buf, 1000), 0);
    CHECK_EQ(img_read(&im, 65536, rd, 65536), 0);
    CHECK(rd[4] == (uint8_t)0 && rd[5] == 0xab && rd[1004] == 0xab);
    CHECK_EQ(img_close(&im), 0);
    if (system("qemu-img --version >/dev/null 2>&1") == 0) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "qemu-img check -q %s", path);
        CHECK_EQ(system(cmd), 0);
    }
    free(buf);
    free(rd);
    unlink(path);
}

int main(void)
{
    RUN(parse_size);
    RUN(human_size);
    RUN(option_lists);
    RUN(compressed_writes);
    return test_summary();
}
