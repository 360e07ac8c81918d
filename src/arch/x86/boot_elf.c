/* ELF kernels: PVH entry (xen/include/public/arch-x86/hvm/start_info.h; the
 * entry point from the Xen ELF note XEN_ELFNOTE_PHYS32_ENTRY) and plain ELF64
 * (64-bit entry, RSI = Linux zero page). Every header field is checked
 * against the file size before use: the file is untrusted input. */
#include "arch/x86/boot.h"
#include "arch/x86/layout.h"

#include <elf.h>
#include <stdio.h>
#include <string.h>

#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define PVH_START_MAGIC 0x336ec578

struct hvm_start_info {
    uint32_t magic, version, flags, nr_modules;
    uint64_t modlist_paddr, cmdline_paddr, rsdp_paddr, memmap_paddr;
    uint32_t memmap_entries, reserved;
};
struct hvm_modlist_entry { uint64_t paddr, size, cmdline_paddr, reserved; };
struct hvm_memmap_entry { uint64_t addr, size; uint32_t type, reserved; };
_Static_assert(sizeof(struct hvm_start_info) == 56, "hvm_start_info layout");
_Static_assert(sizeof(struct hvm_memmap_entry) == 24, "hvm_memmap_table_entry layout");

/* A uniform view of 32- and 64-bit program headers. */
struct elf_phdr {
    uint32_t type;
    uint64_t offset, paddr, vaddr, filesz, memsz;
};

struct elf_view {
    int cls;            /* 1 = ELF32, 2 = ELF64 */
    uint64_t entry;
    uint64_t phoff;
    unsigned phnum, phentsize;
};

static int elf_view(const uint8_t *d, size_t size, struct elf_view *v)
{
    if (size < EI_NIDENT || memcmp(d, ELFMAG, SELFMAG) != 0)
        return -1;
    v->cls = d[EI_CLASS];
    if (d[EI_DATA] != ELFDATA2LSB)
        return -1;
    if (v->cls == ELFCLASS64 && size >= sizeof(Elf64_Ehdr)) {
        Elf64_Ehdr h;
        memcpy(&h, d, sizeof h);
        if (h.e_machine != EM_X86_64 || h.e_phentsize != sizeof(Elf64_Phdr))
            return -1;
        *v = (struct elf_view){ 2, h.e_entry, h.e_phoff, h.e_phnum, h.e_phentsize };
    } else if (v->cls == ELFCLASS32 && size >= sizeof(Elf32_Ehdr)) {
        Elf32_Ehdr h;
        memcpy(&h, d, sizeof h);
        if ((h.e_machine != EM_386 && h.e_machine != EM_X86_64) ||
            h.e_phentsize != sizeof(Elf32_Phdr))
            return -1;
        *v = (struct elf_view){ 1, h.e_entry, h.e_phoff, h.e_phnum, h.e_phentsize };
    } else {
        return -1;
    }
    if (v->phoff > size || (uint64_t)v->phnum * v->phentsize > size - v->phoff)
        return -1;
    return 0;
}

static void elf_phdr_get(const uint8_t *d, const struct elf_view *v, unsigned i,
                         struct elf_phdr *p)
{
    const uint8_t *src = d + v->phoff + (uint64_t)i * v->phentsize;
    if (v->cls == 2) {
        Elf64_Phdr h;
        memcpy(&h, src, sizeof h);
        *p = (struct elf_phdr){ h.p_type, h.p_offset, h.p_paddr, h.p_vaddr, h.p_filesz, h.p_memsz };
    } else {
        Elf32_Phdr h;
        memcpy(&h, src, sizeof h);
        *p = (struct elf_phdr){ h.p_type, h.p_offset, h.p_paddr, h.p_vaddr, h.p_filesz, h.p_memsz };
    }
}

int boot_elf_check(const uint8_t *data, size_t size, int *elf_class, char *err, size_t errlen)
{
    struct elf_view v;
    if (elf_view(data, size, &v) < 0) {
        snprintf(err, errlen, "-kernel: not an x86 ELF kernel, or its headers are damaged "
                 "(expected a bzImage, a PVH/ELF64 vmlinux or a multiboot kernel)");
        return -1;
    }
    for (unsigned i = 0; i < v.phnum; i++) {
        struct elf_phdr p;
        elf_phdr_get(data, &v, i, &p);
        if (p.type != PT_LOAD && p.type != PT_NOTE)
            continue;
        if (p.offset > size || p.filesz > size - p.offset ||
            (p.type == PT_LOAD && p.filesz > p.memsz)) {
            snprintf(err, errlen, "-kernel: ELF program header %u lies outside the file "
                     "(truncated or damaged kernel)", i);
            return -1;
        }
    }
    *elf_class = v.cls;
    return 0;
}

int boot_elf_find_pvh(const uint8_t *data, size_t size, uint64_t *entry)
{
    struct elf_view v;
    if (elf_view(data, size, &v) < 0)
        return -1;
    for (unsigned i = 0; i < v.phnum; i++) {
        struct elf_phdr p;
        elf_phdr_get(data, &v, i, &p);
        if (p.type != PT_NOTE || p.offset > size || p.filesz > size - p.offset)
            continue;
        /* Notes: namesz, descsz, type, name (4-aligned), desc (4-aligned). */
        uint64_t off = p.offset, end = p.offset + p.filesz;
        while (end - off >= 12) {
            uint32_t namesz, descsz, type;
            memcpy(&namesz, data + off, 4);
            memcpy(&descsz, data + off + 4, 4);
            memcpy(&type, data + off + 8, 4);
            uint64_t name_off = off + 12;
            uint64_t desc_off = name_off + (((uint64_t)namesz + 3) & ~3ULL);
            uint64_t next = desc_off + (((uint64_t)descsz + 3) & ~3ULL);
            if (desc_off > end || next > end)
                break;
            if (namesz == 4 && !memcmp(data + name_off, "Xen", 4) &&
                type == XEN_ELFNOTE_PHYS32_ENTRY && (descsz == 4 || descsz == 8)) {
                uint64_t e = 0;
                memcpy(&e, data + desc_off, descsz);
                *entry = e;
                return 0;
            }
            off = next;
        }
    }
    return -1;
}

int boot_elf_load_segments(const uint8_t *data, size_t size, struct guest_mem *mem,
                           uint64_t *lowest, uint64_t *highest, char *err, size_t errlen)
{
    struct elf_view v;
    if (elf_view(data, size, &v) < 0) {
        snprintf(err, errlen, "-kernel: damaged ELF header");
        return -1;
    }
    *lowest = UINT64_MAX;
    *highest = 0;
    for (unsigned i = 0; i < v.phnum; i++) {
        struct elf_phdr p;
        elf_phdr_get(data, &v, i, &p);
        if (p.type != PT_LOAD || p.memsz == 0)
            continue;
        uint8_t *dst = gmem_ptr(mem, p.paddr, p.memsz);
        if (!dst || p.paddr < LAYOUT_HIGH_START) {
            snprintf(err, errlen, "-kernel: ELF segment %u at 0x%llx (+0x%llx) is outside "
                     "guest RAM above 1 MiB (expected a larger -m, or a kernel linked higher)",
                     i, (unsigned long long)p.paddr, (unsigned long long)p.memsz);
            return -1;
        }
        memcpy(dst, data + p.offset, p.filesz);
        memset(dst + p.filesz, 0, p.memsz - p.filesz);
        if (p.paddr < *lowest)
            *lowest = p.paddr;
        if (p.paddr + p.memsz > *highest)
            *highest = p.paddr + p.memsz;
    }
    if (*highest == 0) {
        snprintf(err, errlen, "-kernel: the ELF file has nothing to load");
        return -1;
    }
    return 0;
}

/* The entry of a plain ELF64: e_entry as a physical address, or translated
 * from virtual if it lies in a segment's virtual range (vmlinux links at
 * 0xffffffff8...). */
static int elf64_entry_paddr(const uint8_t *d, size_t size, uint64_t *entry)
{
    struct elf_view v;
    if (elf_view(d, size, &v) < 0)
        return -1;
    for (unsigned i = 0; i < v.phnum; i++) {
        struct elf_phdr p;
        elf_phdr_get(d, &v, i, &p);
        if (p.type != PT_LOAD)
            continue;
        if (v.entry >= p.paddr && v.entry - p.paddr < p.memsz) {
            *entry = v.entry;
            return 0;
        }
    }
    for (unsigned i = 0; i < v.phnum; i++) {
        struct elf_phdr p;
        elf_phdr_get(d, &v, i, &p);
        if (p.type == PT_LOAD && v.entry >= p.vaddr && v.entry - p.vaddr < p.memsz) {
            *entry = p.paddr + (v.entry - p.vaddr);
            return 0;
        }
    }
    return -1;
}

static int boot_write_pvh_start_info(const struct kernel_image *k, const struct boot_env *env,
                                     uint64_t initrd_addr, char *err, size_t errlen)
{
    /* start_info, then the memory map, then the module list, in one page. */
    uint64_t base = LAYOUT_PVH_START_INFO;
    uint64_t memmap_at = base + sizeof(struct hvm_start_info);
    uint64_t modlist_at = memmap_at + env->e820_count * sizeof(struct hvm_memmap_entry);
    uint64_t end = modlist_at + sizeof(struct hvm_modlist_entry);
    if (end > LAYOUT_ZERO_PAGE) {
        snprintf(err, errlen, "internal: PVH start info does not fit");
        return -1;
    }
    struct hvm_start_info si = {
        .magic = PVH_START_MAGIC, .version = 1,
        .cmdline_paddr = LAYOUT_CMDLINE, .rsdp_paddr = env->rsdp_addr,
        .memmap_paddr = memmap_at, .memmap_entries = env->e820_count,
    };
    for (unsigned i = 0; i < env->e820_count; i++) {
        struct hvm_memmap_entry e = { env->e820[i].addr, env->e820[i].size,
                                      env->e820[i].type, 0 };
        if (gmem_write(env->mem, memmap_at + i * sizeof e, &e, sizeof e) < 0)
            goto fault;
    }
    if (initrd_addr) {
        struct hvm_modlist_entry m = { initrd_addr, k->initrd_size, 0, 0 };
        if (gmem_write(env->mem, modlist_at, &m, sizeof m) < 0)
            goto fault;
        si.nr_modules = 1;
        si.modlist_paddr = modlist_at;
    }
    if (gmem_write(env->mem, base, &si, sizeof si) < 0)
        goto fault;
    return 0;
fault:
    snprintf(err, errlen, "-m: guest RAM too small for the PVH start info");
    return -1;
}

int boot_load_elf(const struct kernel_image *k, const struct boot_env *env,
                  struct x86_boot_regs *regs, char *err, size_t errlen)
{
    uint64_t lowest, highest;
    if (boot_elf_load_segments(k->data, k->size, env->mem, &lowest, &highest, err, errlen) < 0)
        return -1;
    /* Linux's own limit for the command line is 2048 on x86 (COMMAND_LINE_SIZE). */
    if (boot_write_cmdline(env, 2047, err, errlen) < 0)
        return -1;
    uint64_t limit = boot_low_ram_end(env);
    uint64_t initrd_addr;
    if (boot_place_initrd(k, env->mem, highest, limit, &initrd_addr, err, errlen) < 0)
        return -1;
    if (k->format == KERNEL_PVH) {
        if (boot_write_pvh_start_info(k, env, initrd_addr, err, errlen) < 0)
            return -1;
        regs->mode = X86_ENTRY_PROT32;
        regs->rip = k->pvh_entry;
        regs->rbx = LAYOUT_PVH_START_INFO;
        return 0;
    }
    uint64_t entry;
    if (elf64_entry_paddr(k->data, k->size, &entry) < 0) {
        snprintf(err, errlen, "-kernel: the ELF entry point 0x%llx is not inside a "
                 "loaded segment", (unsigned long long)((const Elf64_Ehdr *)(const void *)k->data)->e_entry);
        return -1;
    }
    if (boot_write_zero_page(k, env, NULL, 0, initrd_addr, err, errlen) < 0)
        return -1;
    regs->mode = X86_ENTRY_LONG64;
    regs->rip = entry;
    regs->rsi = LAYOUT_ZERO_PAGE;
    return 0;
}
