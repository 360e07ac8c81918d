/* x86 page walk (see x86_mmu.h). Accessed/dirty bits are not set: this is
 * a debugger's view, like QEMU's cpu_get_phys_page_debug. */
#include "monitor/x86_mmu.h"

#include <errno.h>

#include "core/guest_mem.h"

#define CR0_PG (1ull << 31)
#define CR4_PSE (1ull << 4)
#define CR4_PAE (1ull << 5)
#define CR4_LA57 (1ull << 12)
#define EFER_LMA (1ull << 10)
#define PTE_P 1ull
#define PTE_PS (1ull << 7)
#define ADDR_MASK 0x000ffffffffff000ull

static int read_pte(const struct guest_mem *mem, uint64_t gpa, unsigned size, uint64_t *pte)
{
    uint64_t v = 0;
    if (gmem_read(mem, gpa, &v, size) < 0)
        return -EFAULT;
    *pte = v;               /* little-endian host (x86) */
    return (v & PTE_P) ? 0 : -EFAULT;
}

static int walk_32(const struct guest_mem *mem, const struct x86_paging *p, uint64_t va,
                   uint64_t *pa)
{
    uint32_t la = (uint32_t)va;
    uint64_t pde, pte;
    if (read_pte(mem, (p->cr3 & 0xfffff000u) + ((la >> 22) & 0x3ff) * 4, 4, &pde) < 0)
        return -EFAULT;
    if ((pde & PTE_PS) && (p->cr4 & CR4_PSE)) {
        /* 4 MiB page; PSE-36 bits 13..20 are physical address bits 32..39. */
        *pa = (pde & 0xffc00000u) | (((pde >> 13) & 0xff) << 32) | (la & 0x3fffff);
        return 0;
    }
    if (read_pte(mem, (pde & 0xfffff000u) + ((la >> 12) & 0x3ff) * 4, 4, &pte) < 0)
        return -EFAULT;
    *pa = (pte & 0xfffff000u) | (la & 0xfff);
    return 0;
}

static int walk_pae(const struct guest_mem *mem, const struct x86_paging *p, uint64_t va,
                    uint64_t *pa)
{
    uint64_t e, table;
    int level;
    if (p->efer & EFER_LMA) {
        level = (p->cr4 & CR4_LA57) ? 5 : 4;
        unsigned bits = level == 5 ? 57 : 48;
        int64_t sx = (int64_t)(va << (64 - bits)) >> (64 - bits);
        if ((uint64_t)sx != va)
            return -EFAULT;     /* non-canonical */
        table = p->cr3 & ADDR_MASK;
    } else {
        va = (uint32_t)va;
        if (read_pte(mem, (p->cr3 & 0xffffffe0u) + ((va >> 30) & 3) * 8, 8, &e) < 0)
            return -EFAULT;
        table = e & ADDR_MASK;
        level = 2;
    }
    for (; level >= 1; level--) {
        unsigned shift = 12 + 9 * (unsigned)(level - 1);
        if (read_pte(mem, table + ((va >> shift) & 0x1ff) * 8, 8, &e) < 0)
            return -EFAULT;
        if (level == 1 || ((e & PTE_PS) && level <= 3)) {
            uint64_t page_mask = (1ull << shift) - 1;
            *pa = (e & ADDR_MASK & ~page_mask) | (va & page_mask);
            return 0;
        }
        table = e & ADDR_MASK;
    }
    return -EFAULT;
}

int x86_virt_to_phys(const struct guest_mem *mem, const struct x86_paging *p, uint64_t va,
                     uint64_t *pa)
{
    if (!(p->cr0 & CR0_PG)) {
        *pa = (p->efer & EFER_LMA) ? va : (uint32_t)va;
        return 0;
    }
    if (p->cr4 & CR4_PAE)
        return walk_pae(mem, p, va, pa);
    return walk_32(mem, p, va, pa);
}
