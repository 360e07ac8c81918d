/* Image locking with QEMU's byte-range scheme, so kvmbox, kvmbox-img,
 * qemu-system and qemu-img see each other's use of an image and refuse
 * what would corrupt it (a second writer, qemu-img check -r on a running
 * VM's qcow2 image, ...).
 *
 * QEMU's scheme (block/file-posix.c, "locking=auto"): for permission bit i
 * (consistent read 0, write 1, write unchanged 2, resize 3) a user holds a
 * shared OFD lock on byte 100 + i while it has the permission, and on
 * byte 200 + i while it does not let others have it. Taking a permission
 * means nobody locks 200 + i; denying one means nobody locks 100 + i. The
 * locks are placed first and tested after, so of two users opening at the
 * same time at least one sees the other. They belong to the open file
 * description: closing the fd (or dying) drops them. */
#include "block/block_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>

enum { LOCK_PERM_BASE = 100, LOCK_DENY_BASE = 200, LOCK_NPERMS = 4 };

static const char *const perm_names[LOCK_NPERMS] = {
    "consistent read", "write", "write unchanged", "resize",
};

static int lock_byte(int fd, unsigned off, short type, int cmd, struct flock *out)
{
    struct flock fl = { .l_type = type, .l_whence = SEEK_SET, .l_start = off, .l_len = 1 };
    if (fcntl(fd, cmd, &fl) < 0)
        return -errno;
    if (out)
        *out = fl;
    return 0;
}

/* Does another open file description hold a lock on byte off? */
static int locked_by_other(int fd, unsigned off)
{
    struct flock fl = { .l_type = F_UNLCK };
    int r = lock_byte(fd, off, F_WRLCK, F_OFD_GETLK, &fl);
    return r < 0 ? r : fl.l_type != F_UNLCK;
}

int blk_file_lock(struct blk_file *f, unsigned perm, unsigned deny, const char *name,
                  char *err, unsigned errlen)
{
    int r = 0;
    for (unsigned i = 0; i < LOCK_NPERMS && r == 0; i++) {
        if (perm & (1u << i))
            r = lock_byte(f->fd, LOCK_PERM_BASE + i, F_RDLCK, F_OFD_SETLK, NULL);
        if (r == 0 && (deny & (1u << i)))
            r = lock_byte(f->fd, LOCK_DENY_BASE + i, F_RDLCK, F_OFD_SETLK, NULL);
    }
    /* A file system without OFD locks: QEMU's locking=auto goes on
     * without (there is nothing to coordinate with). */
    if (r == -EINVAL || r == -ENOTSUP || r == -ENOLCK)
        return 0;
    for (unsigned i = 0; i < LOCK_NPERMS && r == 0; i++) {
        const char *kind = NULL;        /* which of QEMU's two messages */
        int held = 0;
        if (perm & (1u << i)) {
            held = locked_by_other(f->fd, LOCK_DENY_BASE + i);
            kind = "";
        }
        if (held == 0 && (deny & (1u << i))) {
            held = locked_by_other(f->fd, LOCK_PERM_BASE + i);
            kind = "shared ";
        }
        if (held < 0) {
            r = held;
        } else if (held > 0) {
            snprintf(err, errlen, "Failed to get %s\"%s\" lock\nIs another process using the "
                     "image [%s]?", kind, perm_names[i], name);
            r = -EAGAIN;
        }
    }
    if (r < 0 && r != -EAGAIN)
        snprintf(err, errlen, "'%s': cannot lock the image: %s", name, strerror(-r));
    return r;
}

void blk_perms_for(const char *format, bool write, bool raw_exclusive, unsigned *perm,
                   unsigned *deny)
{
    bool qcow2 = strcmp(format, "qcow2") == 0;
    *perm = BLK_PERM_CONSISTENT_READ;
    if (write)
        *perm |= BLK_PERM_WRITE | (qcow2 ? BLK_PERM_RESIZE : 0);
    if (qcow2)
        *deny = BLK_PERM_WRITE | BLK_PERM_RESIZE;
    else
        *deny = raw_exclusive ? BLK_PERM_WRITE : 0;
}
