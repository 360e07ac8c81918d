/* x86 guest page-table walk for the monitor (x, memsave): linear ->
 * guest-physical under the vCPU's current paging mode (none, 32-bit with
 * PSE, PAE, 4- and 5-level long mode). Reads only through gmem_read, so a
 * hostile page table can at most make a translation fail. */
#ifndef KVMBOX_MONITOR_X86_MMU_H
#define KVMBOX_MONITOR_X86_MMU_H

#include <stdint.h>

struct guest_mem;

struct x86_paging {
    uint64_t cr0, cr3, cr4, efer;
};

/* 0 and *pa, or -EFAULT (not present, non-canonical, table outside RAM). */
int x86_virt_to_phys(const struct guest_mem *mem, const struct x86_paging *p, uint64_t va,
                     uint64_t *pa);

#endif
