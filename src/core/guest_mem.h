/* Guest physical memory: RAM split around the 32-bit PCI hole, and the only
 * way the rest of the VMM touches it. Every address, length and index a guest
 * (or an image file) controls goes through gmem_ptr(), which refuses ranges
 * that are not wholly inside one RAM region (including arithmetic overflow).
 *
 * Threads: the layout is fixed after gmem_init; lookups are lock-free and
 * may run on any thread. */
#ifndef KVMBOX_GUEST_MEM_H
#define KVMBOX_GUEST_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* RAM above this address moves to 4 GiB and up (QEMU's pc machine keeps
 * 3 GiB below the hole when RAM exceeds 3.5 GiB; we always split at 3 GiB). */
#define GMEM_LOW_LIMIT   0xC0000000ULL
#define GMEM_HIGH_BASE   0x100000000ULL
#define GMEM_MAX_REGIONS 2

struct gmem_region {
    uint64_t gpa;
    uint64_t size;
    uint8_t *hva;
};

struct guest_mem {
    struct gmem_region regions[GMEM_MAX_REGIONS];
    unsigned n;
    uint64_t ram_size;     /* total RAM, sum of region sizes */
    void *base;            /* one mmap backing all regions */
    size_t map_size;
};

/* Map ram_size bytes (anonymous, MAP_NORESERVE, lazily populated). 0 or
 * -errno. */
int gmem_init(struct guest_mem *m, uint64_t ram_size);
void gmem_destroy(struct guest_mem *m);
/* Host pointer for [gpa, gpa+len), or NULL. len 0 is allowed. */
void *gmem_ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len);
/* Copy helpers: 0 or -EFAULT. */
int gmem_read(const struct guest_mem *m, uint64_t gpa, void *dst, size_t len);
int gmem_write(const struct guest_mem *m, uint64_t gpa, const void *src, size_t len);

#endif
