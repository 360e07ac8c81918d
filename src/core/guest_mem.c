/* See guest_mem.h. */
#include "core/guest_mem.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

int gmem_init(struct guest_mem *m, uint64_t ram_size)
{
    memset(m, 0, sizeof *m);
    if (ram_size == 0 || ram_size > (1ULL << 46))
        return -EINVAL;
    /* A private anonymous mapping without MAP_NORESERVE: the kernel's
     * overcommit policy decides up front whether this much RAM can be
     * promised, so an impossible -m fails here with ENOMEM instead of the
     * guest being killed later. Pages are still populated lazily. */
    void *p = mmap(NULL, ram_size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return -errno;
    /* Guest RAM is the bulk of the process: let THP back it and keep it out
     * of core dumps (they would be huge and contain guest secrets). */
    madvise(p, ram_size, MADV_HUGEPAGE);
    madvise(p, ram_size, MADV_DONTDUMP);
    m->base = p;
    m->map_size = ram_size;
    m->ram_size = ram_size;
    uint64_t low = ram_size < GMEM_LOW_LIMIT ? ram_size : GMEM_LOW_LIMIT;
    m->regions[0] = (struct gmem_region){ 0, low, p };
    m->n = 1;
    if (ram_size > low) {
        m->regions[1] = (struct gmem_region){ GMEM_HIGH_BASE, ram_size - low,
                                              (uint8_t *)p + low };
        m->n = 2;
    }
    return 0;
}

void gmem_destroy(struct guest_mem *m)
{
    if (m->base)
        munmap(m->base, m->map_size);
    memset(m, 0, sizeof *m);
}

void *gmem_ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len)
{
    for (unsigned i = 0; i < m->n; i++) {
        const struct gmem_region *r = &m->regions[i];
        if (gpa < r->gpa)
            continue;
        uint64_t off = gpa - r->gpa;
        /* Written so no sum can overflow: off <= size, len <= size - off. */
        if (off <= r->size && len <= r->size - off)
            return r->hva + off;
    }
    return NULL;
}

int gmem_read(const struct guest_mem *m, uint64_t gpa, void *dst, size_t len)
{
    const void *p = gmem_ptr(m, gpa, len);
    if (!p)
        return -EFAULT;
    memcpy(dst, p, len);
    return 0;
}

int gmem_write(const struct guest_mem *m, uint64_t gpa, const void *src, size_t len)
{
    void *p = gmem_ptr(m, gpa, len);
    if (!p)
        return -EFAULT;
    memcpy(p, src, len);
    return 0;
}
