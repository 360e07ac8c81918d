/* -kernel/-initrd: read once at start-up (errors are the user's: exit 2),
 * loaded into guest RAM at every boot and reset.
 *
 * Formats, probed in QEMU's order: a Linux bzImage ("HdrS" setup header);
 * an ELF with the PVH entry note (Xen ELFNOTE_PHYS32_ENTRY, e.g. vmlinux with
 * CONFIG_PVH); a multiboot v1 kernel; a plain ELF64 (entered in 64-bit mode
 * with RSI pointing at a Linux zero page, as Firecracker boots vmlinux). */
#ifndef KVMBOX_X86_BOOT_H
#define KVMBOX_X86_BOOT_H

#include <stddef.h>
#include <stdint.h>

#include "arch/x86/cpu.h"
#include "arch/x86/e820.h"
#include "core/guest_mem.h"

enum kernel_format {
    KERNEL_BZIMAGE,
    KERNEL_PVH,
    KERNEL_MULTIBOOT,
    KERNEL_ELF64,
};

struct kernel_image {
    enum kernel_format format;
    const char *path;
    uint8_t *data;          /* whole file, mapped read-only */
    int fd, initrd_fd;      /* kept open (-1: none), see boot_image.c */
    size_t size;
    uint8_t *initrd;        /* NULL without -initrd */
    size_t initrd_size;
    const char *initrd_path;
    uint64_t pvh_entry;     /* KERNEL_PVH */
    size_t mb_header_off;   /* KERNEL_MULTIBOOT: offset of the header */
};

/* What the loader needs to know about the machine. */
struct boot_env {
    struct guest_mem *mem;
    const char *cmdline;            /* "" when none */
    struct e820_entry e820[16];
    unsigned e820_count;
    uint64_t rsdp_addr;             /* 0 without ACPI */
};

/* Read and probe. Returns 0, or -1 with a one-line message in err. */
int kernel_image_open(struct kernel_image *k, const char *kernel, const char *initrd,
                      char *err, size_t errlen);
void kernel_image_close(struct kernel_image *k);
/* Give back the resident pages of the mapped files (after a load). */
void kernel_image_drop_pages(const struct kernel_image *k);
/* Detect the format of k->data/k->size (k->path names it in messages);
 * kernel_image_open's second half, separate for the fuzz target. */
int kernel_image_probe(struct kernel_image *k, char *err, size_t errlen);
/* Copy into guest RAM and fill in the boot vCPU's entry registers. */
int kernel_image_load(const struct kernel_image *k, const struct boot_env *env,
                      struct x86_boot_regs *regs, char *err, size_t errlen);

/* Internal to the loaders (boot_*.c). */
int boot_load_bzimage(const struct kernel_image *k, const struct boot_env *env,
                      struct x86_boot_regs *regs, char *err, size_t errlen);
int boot_load_elf(const struct kernel_image *k, const struct boot_env *env,
                  struct x86_boot_regs *regs, char *err, size_t errlen);
int boot_load_multiboot(const struct kernel_image *k, const struct boot_env *env,
                        struct x86_boot_regs *regs, char *err, size_t errlen);
/* ELF probing shared by the probe and the loaders. */
int boot_elf_check(const uint8_t *data, size_t size, int *elf_class, char *err, size_t errlen);
int boot_elf_find_pvh(const uint8_t *data, size_t size, uint64_t *entry);
int boot_elf_load_segments(const uint8_t *data, size_t size, struct guest_mem *mem,
                           uint64_t *lowest, uint64_t *highest, char *err, size_t errlen);
/* Place the initrd as high as possible below limit, above min_addr. */
int boot_place_initrd(const struct kernel_image *k, struct guest_mem *mem,
                      uint64_t min_addr, uint64_t limit, uint64_t *addr,
                      char *err, size_t errlen);
/* The Linux zero page for the 64-bit entry of a plain ELF kernel and the
 * bzImage loader. hdr_src: the bzImage's setup header, or NULL. */
int boot_write_zero_page(const struct kernel_image *k, const struct boot_env *env,
                         const uint8_t *hdr_src, size_t hdr_len,
                         uint64_t initrd_addr, char *err, size_t errlen);
/* The command line at LAYOUT_CMDLINE; refuses one longer than max_len. */
int boot_write_cmdline(const struct boot_env *env, uint32_t max_len,
                       char *err, size_t errlen);
/* Largest e820 RAM address below 4 GiB + 1 (the end of low RAM). */
uint64_t boot_low_ram_end(const struct boot_env *env);

#endif
