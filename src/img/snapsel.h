/* Choosing an internal snapshot as a read-only source (convert -l), as
 * qemu-img: "snapshot.id=ID,snapshot.name=NAME" options, or a bare ID or
 * name. snapsel.c. */
#ifndef KVMBOX_IMG_SNAPSEL_H
#define KVMBOX_IMG_SNAPSEL_H

#include "img/img.h"

struct snapsel {
    bool have_opts;         /* a snapshot.* argument was given (wins over key) */
    char *id, *name;        /* its values; NULL: not given */
    const char *key;        /* the last bare argument: ID, else name */
};

/* Take one -l argument (a later one replaces an earlier one of the same
 * form). false after printing qemu-img's messages. */
bool snapsel_parse(struct snapsel *sel, const char *arg);
bool snapsel_given(const struct snapsel *sel);
void snapsel_free(struct snapsel *sel);
/* Make the read-only image's active state the chosen snapshot's L1 table.
 * The guest size stays the image's (qemu-img convert -l copies that many
 * bytes; past the snapshot's tables they read as unallocated). 0, or -1
 * after "Failed to load snapshot: ..." */
int snapsel_load(struct img *im, const struct snapsel *sel);

#endif
