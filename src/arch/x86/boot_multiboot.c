/* Multiboot v1 kernels as QEMU's -kernel loads them (Multiboot
 * Specification 0.6.96 §3): the a.out kludge when header flag 16 is set,
 * else the ELF program headers; entered in 32-bit protected mode with
 * EAX = 0x2BADB002 and EBX = the multiboot information structure. */
#include "arch/x86/boot.h"
#include "arch/x86/layout.h"

#include <stdio.h>
#include <string.h>

#define MB_BOOTLOADER_MAGIC 0x2BADB002
#define MB_FLAG_PAGE_ALIGN  (1u << 0)
#define MB_FLAG_MEMORY_INFO (1u << 1)
#define MB_FLAG_VIDEO_MODE  (1u << 2)
#define MB_FLAG_AOUT_KLUDGE (1u << 16)

#define MBI_MEM     (1u << 0)
#define MBI_CMDLINE (1u << 2)
#define MBI_MODS    (1u << 3)
#define MBI_MMAP    (1u << 6)
#define MBI_LOADER  (1u << 9)

struct mb_header {
    uint32_t magic, flags, checksum;
    uint32_t header_addr, load_addr, load_end_addr, bss_end_addr, entry_addr;
};

struct mb_info {
    uint32_t flags, mem_lower, mem_upper, boot_device, cmdline, mods_count, mods_addr;
    uint32_t syms[4];
    uint32_t mmap_length, mmap_addr;
    uint32_t drives_length, drives_addr, config_table, boot_loader_name;
    uint32_t apm_table;
    uint32_t vbe[6];
};

struct mb_module { uint32_t mod_start, mod_end, string, reserved; };

struct mb_mmap_entry {
    uint32_t size;      /* of the rest of the entry: 20 */
    uint64_t addr, len;
    uint32_t type;
} __attribute__((packed));

/* Load the kernel per the a.out kludge fields. */
static int mb_load_aout(const struct kernel_image *k, const struct mb_header *h,
                        const struct boot_env *env, uint64_t *end, char *err, size_t errlen)
{
    /* header_addr corresponds to the header's file offset. */
    if (h->load_addr > h->header_addr || h->header_addr - h->load_addr > k->mb_header_off) {
        snprintf(err, errlen, "-kernel: multiboot header load addresses are inconsistent");
        return -1;
    }
    uint64_t file_off = k->mb_header_off - (h->header_addr - h->load_addr);
    uint64_t load_end = h->load_end_addr ? h->load_end_addr : h->load_addr + (k->size - file_off);
    if (load_end < h->load_addr || load_end - h->load_addr > k->size - file_off) {
        snprintf(err, errlen, "-kernel: multiboot load_end_addr lies beyond the file");
        return -1;
    }
    uint64_t bss_end = h->bss_end_addr ? h->bss_end_addr : load_end;
    if (bss_end < load_end) {
        snprintf(err, errlen, "-kernel: multiboot bss_end_addr below load_end_addr");
        return -1;
    }
    uint8_t *dst = gmem_ptr(env->mem, h->load_addr, bss_end - h->load_addr);
    if (!dst || h->load_addr < LAYOUT_HIGH_START) {
        snprintf(err, errlen, "-kernel: multiboot kernel at 0x%x does not fit in guest RAM "
                 "above 1 MiB", h->load_addr);
        return -1;
    }
    memcpy(dst, k->data + file_off, load_end - h->load_addr);
    memset(dst + (load_end - h->load_addr), 0, bss_end - load_end);
    *end = bss_end;
    return 0;
}

int boot_load_multiboot(const struct kernel_image *k, const struct boot_env *env,
                        struct x86_boot_regs *regs, char *err, size_t errlen)
{
    struct mb_header h;
    memset(&h, 0, sizeof h);
    size_t avail = k->size - k->mb_header_off;
    memcpy(&h, k->data + k->mb_header_off, avail < sizeof h ? avail : sizeof h);
    uint32_t required = h.flags & 0xFFFF;
    if (required & ~(MB_FLAG_PAGE_ALIGN | MB_FLAG_MEMORY_INFO | MB_FLAG_VIDEO_MODE)) {
        snprintf(err, errlen, "-kernel: multiboot header requires unsupported features "
                 "(flags 0x%x)", h.flags);
        return -1;
    }
    uint64_t end, entry;
    if (h.flags & MB_FLAG_AOUT_KLUDGE) {
        if (avail < sizeof h) {
            snprintf(err, errlen, "-kernel: truncated multiboot header");
            return -1;
        }
        if (mb_load_aout(k, &h, env, &end, err, errlen) < 0)
            return -1;
        entry = h.entry_addr;
    } else {
        int cls;
        if (boot_elf_check(k->data, k->size, &cls, err, errlen) < 0)
            return -1;
        uint64_t lowest;
        if (boot_elf_load_segments(k->data, k->size, env->mem, &lowest, &end, err, errlen) < 0)
            return -1;
        uint32_t e32;
        memcpy(&e32, k->data + 24, 4);     /* e_entry of an ELF32 header */
        entry = e32;
        if (cls == 2)
            memcpy(&entry, k->data + 24, 8);
    }
    /* Modules (the initrd) go page-aligned after the kernel. */
    uint64_t low_end = boot_low_ram_end(env);
    uint64_t initrd_addr = 0;
    if (boot_place_initrd(k, env->mem, (end + 0xFFF) & ~0xFFFULL, low_end, &initrd_addr,
                          err, errlen) < 0)
        return -1;

    /* The information structure and its strings/tables share the page at
     * LAYOUT_MULTIBOOT_INFO. QEMU passes "kernel-path cmdline" as cmdline. */
    uint64_t info = LAYOUT_MULTIBOOT_INFO;
    uint64_t mmap_at = info + sizeof(struct mb_info);
    uint64_t mods_at = mmap_at + env->e820_count * sizeof(struct mb_mmap_entry);
    uint64_t name_at = mods_at + sizeof(struct mb_module);
    uint64_t initrd_str_at = name_at + 16;
    uint64_t cmdline_at = LAYOUT_CMDLINE;
    char loader_name[16] = "kvmbox";
    size_t path_len = strlen(k->path), cmd_len = strlen(env->cmdline);
    if (path_len + 1 + cmd_len + 1 > LAYOUT_CMDLINE_MAX) {
        snprintf(err, errlen, "-append: command line too long for multiboot (at most %llu bytes)",
                 (unsigned long long)(LAYOUT_CMDLINE_MAX - path_len - 2));
        return -1;
    }
    char *cmd = gmem_ptr(env->mem, cmdline_at, path_len + 1 + cmd_len + 1);
    const char *ipath = k->initrd_path ? k->initrd_path : "";
    size_t ipath_len = strlen(ipath);
    if (!cmd || initrd_str_at + ipath_len + 1 > LAYOUT_ZERO_PAGE) {
        snprintf(err, errlen, "-initrd: path too long for the multiboot module string");
        return -1;
    }
    memcpy(cmd, k->path, path_len);
    cmd[path_len] = ' ';
    memcpy(cmd + path_len + 1, env->cmdline, cmd_len + 1);
    if (cmd_len == 0)
        cmd[path_len] = '\0';

    struct mb_info mbi;
    memset(&mbi, 0, sizeof mbi);
    mbi.flags = MBI_MEM | MBI_CMDLINE | MBI_MMAP | MBI_LOADER;
    mbi.mem_lower = (uint32_t)(LAYOUT_EBDA_START >> 10);
    mbi.mem_upper = (uint32_t)((low_end - LAYOUT_HIGH_START) >> 10);
    mbi.cmdline = (uint32_t)cmdline_at;
    mbi.mmap_addr = (uint32_t)mmap_at;
    mbi.mmap_length = (uint32_t)(env->e820_count * sizeof(struct mb_mmap_entry));
    mbi.boot_loader_name = (uint32_t)name_at;
    for (unsigned i = 0; i < env->e820_count; i++) {
        struct mb_mmap_entry e = { 20, env->e820[i].addr, env->e820[i].size, env->e820[i].type };
        if (gmem_write(env->mem, mmap_at + i * sizeof e, &e, sizeof e) < 0)
            goto fault;
    }
    if (initrd_addr) {
        struct mb_module m = { (uint32_t)initrd_addr, (uint32_t)(initrd_addr + k->initrd_size),
                               (uint32_t)initrd_str_at, 0 };
        if (gmem_write(env->mem, mods_at, &m, sizeof m) < 0 ||
            gmem_write(env->mem, initrd_str_at, ipath, ipath_len + 1) < 0)
            goto fault;
        mbi.flags |= MBI_MODS;
        mbi.mods_count = 1;
        mbi.mods_addr = (uint32_t)mods_at;
    }
    if (gmem_write(env->mem, name_at, loader_name, sizeof loader_name) < 0 ||
        gmem_write(env->mem, info, &mbi, sizeof mbi) < 0)
        goto fault;
    regs->mode = X86_ENTRY_PROT32;
    regs->rip = entry;
    regs->rax = MB_BOOTLOADER_MAGIC;
    regs->rbx = info;
    return 0;
fault:
    snprintf(err, errlen, "-m: guest RAM too small for the multiboot information");
    return -1;
}
