/* kvmbox-img: qemu-img's verbs over kvmbox's image formats (raw, qcow2).
 * Shared helpers (common.c): opening images through the block drivers
 * synchronously, size parsing, -o option lists, messages and progress.
 * One file per verb (create.c, info.c, ...), each exporting img_VERB.
 *
 * Everything runs on the main thread; the drivers' calls are used
 * directly (no block backend, no event loop). Exit codes follow
 * qemu-img: 0 success, 1 error, check: 2 corruptions, 3 leaks. */
#ifndef KVMBOX_IMG_IMG_H
#define KVMBOX_IMG_IMG_H

#include "block/block_int.h"
#include "block/qcow2_int.h"

#include <stdbool.h>
#include <stdint.h>

struct img {
    char *name;
    const char *fmt;                /* "raw" or "qcow2" */
    const struct block_driver *drv;
    void *st;
    struct blk_file file;
    bool file_open;
    struct qcow2 *q;                /* qcow2 state (st) or NULL */
    bool probed_raw;                /* written, format guessed: block 0 guarded (img_write) */
    uint64_t size;
};

enum {
    IMG_RW = 1,             /* open for writing */
    IMG_NO_BACKING = 2,     /* do not open backing files */
    IMG_NOCACHE = 4,        /* O_DIRECT */
    IMG_QUIET = 8,          /* no error message */
    IMG_UNSAFE = 16,        /* cache=unsafe: no fdatasync (qcow2 no_sync) */
    IMG_LOCK_RW = 32,       /* open read-only but lock as a writer (check -r writes by itself) */
    IMG_CONSISTENT = 64,    /* a raw image too must not change meanwhile (convert's sources) */
};

/* -U (--force-share): open without QEMU's image locks (set by the verbs
 * that take -U; read-only use of an image another process may write). */
extern bool img_force_share;

/* Open `name` as `fmt` (NULL: probe). 0, or -errno after printing
 * "kvmbox-img: Could not open ..." (unless IMG_QUIET). */
int img_open(struct img *im, const char *name, const char *fmt, unsigned flags);
/* Write back and close; returns 0 or -errno (close-time write-back). */
int img_close(struct img *im);
int img_read(struct img *im, uint64_t off, void *buf, uint64_t len);
int img_write(struct img *im, uint64_t off, const void *buf, uint64_t len);
/* Probe a file's format: "qcow2" or "raw"; NULL with a message on error. */
const char *img_probe(const char *name);

/* "kvmbox-img: " + message + newline on stderr. */
void img_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* For getopt's ':' (missing argument) or '?' (unknown option) on `opt`
 * (every verb's optstring starts with ':'): qemu-img's message and its
 * "Try ... --help" line. Returns 1, the exit code. */
int img_bad_option(int c, const char *opt);

/* qemu-img's size syntax: number with optional k/M/G/T/P/E (binary) or b
 * suffix, fractions allowed ("1.5G"). false if invalid. */
bool img_parse_size(const char *s, uint64_t *out);
/* The invalid size message, as qemu-img prints it. */
void img_err_size(void);
/* qemu's size_to_str: "196 KiB", "1 GiB", "0 B". */
void img_human_size(uint64_t v, char *buf, unsigned len);

/* -o key=value[,key=value...] lists (several -o accumulate). */
struct img_opts {
    unsigned n;
    char *key[64];
    char *val[64];
};
bool img_opts_add(struct img_opts *o, const char *list);
const char *img_opts_get(const struct img_opts *o, const char *key);
void img_opts_free(struct img_opts *o);
bool img_parse_bool(const char *s, bool *out);

/* Progress (-p): "    (12.34/100%)\r" on stdout, as qemu-img. */
void img_progress(bool on, double pct);
void img_progress_end(bool on);

/* The host file's allocated bytes (st_blocks * 512). */
uint64_t img_disk_usage(const char *name);

/* Verbs: argc/argv start at the verb name (argv[0] = "create"). */
int img_create(int argc, char **argv);
int img_info(int argc, char **argv);
int img_check(int argc, char **argv);
int img_convert(int argc, char **argv);
int img_resize(int argc, char **argv);
int img_map(int argc, char **argv);
int img_compare(int argc, char **argv);
int img_snapshot(int argc, char **argv);
int img_measure(int argc, char **argv);
int img_commit(int argc, char **argv);
int img_rebase(int argc, char **argv);
int img_amend(int argc, char **argv);
int img_bench(int argc, char **argv);

/* ---- qcow2 helpers for the verbs (qcow2 state internals) ---------------- */

/* Create an image of format fmt with options (the create verb's core, also
 * used by convert): prints the "Formatting ..." line unless quiet. */
int img_create_image(const char *name, const char *fmt, uint64_t size, bool have_size,
                     const struct img_opts *o, const char *backing, const char *backing_fmt,
                     bool quiet);

/* qcow2 resize (resize.c; also amend size=). 0 or -errno. */
int img_qcow2_resize(struct img *im, uint64_t size);
/* Drop every cluster of a qcow2 image: all reads go to the backing file
 * (commit.c; also used after a commit). 0 or -errno. */
int img_qcow2_make_empty(struct img *im);
/* Rewrite a qcow2 image's backing file name and format in the header
 * cluster (qmeta.c); name NULL or "": no backing file. Image open RW. */
int img_qcow2_set_backing(struct img *im, const char *name, const char *fmt);

#endif
