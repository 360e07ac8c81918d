/* qemu-img's messages for a bad command-line option (opterr.c). */
#ifndef KVMBOX_IMG_OPTERR_H
#define KVMBOX_IMG_OPTERR_H

/* For getopt's ':' (missing argument) or '?' (unknown option) on `opt`:
 * prints qemu-img's message and its "Try ... --help" line; returns 1 (the
 * exit code). */
int img_bad_option(int c, const char *opt);

#endif
