/* Reading -kernel/-initrd and probing the kernel's format (see boot.h). */
#include "arch/x86/boot.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Files larger than this are not kernels or initrds we could place below
 * 4 GiB anyway; refusing early avoids reading a huge disk image by mistake. */
#define BOOT_FILE_MAX (2ULL << 30)

/* Map a boot file read-only. The mapping is file-backed and clean: after
 * each load into guest RAM kernel_image_drop_pages() returns its pages, so
 * a kept kernel costs no resident memory between resets (a malloc'd copy
 * of an 18 MiB vmlinux was most of kvmbox's overhead). */
static int map_whole_file(const char *opt, const char *path, uint8_t **data, size_t *size,
                          int *fd_out, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot open '%s': %s", opt, path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: '%s' is not a regular file", opt, path);
        close(fd);
        return -1;
    }
    if ((uint64_t)st.st_size > BOOT_FILE_MAX) {
        snprintf(err, errlen, "%s: '%s' is too large (%lld bytes; at most 2 GiB)", opt,
                 path, (long long)st.st_size);
        close(fd);
        return -1;
    }
    size_t n = (size_t)st.st_size;
    void *p = NULL;
    if (n) {
        p = mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            snprintf(err, errlen, "%s: cannot map '%s': %s", opt, path, strerror(errno));
            close(fd);
            return -1;
        }
    }
    /* Kept open to notice a file truncated under us before touching the
     * mapping again at a reset (that would be SIGBUS). */
    *fd_out = fd;
    *data = p;
    *size = n;
    return 0;
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static bool find_multiboot_header(const uint8_t *data, size_t size, size_t *off)
{
    /* Multiboot spec §3.1.1: within the first 8192 bytes, 32-bit aligned,
     * magic + flags + checksum == 0 (mod 2^32). */
    size_t limit = size < 8192 ? size : 8192;
    for (size_t o = 0; o + 12 <= limit; o += 4) {
        if (rd32(data + o) == 0x1BADB002 &&
            (uint32_t)(rd32(data + o) + rd32(data + o + 4) + rd32(data + o + 8)) == 0) {
            *off = o;
            return true;
        }
    }
    return false;
}

int kernel_image_open(struct kernel_image *k, const char *kernel, const char *initrd,
                      char *err, size_t errlen)
{
    memset(k, 0, sizeof *k);
    k->fd = k->initrd_fd = -1;
    k->path = kernel;
    if (map_whole_file("-kernel", kernel, &k->data, &k->size, &k->fd, err, errlen) < 0)
        return -1;
    if (initrd) {
        k->initrd_path = initrd;
        if (map_whole_file("-initrd", initrd, &k->initrd, &k->initrd_size, &k->initrd_fd, err, errlen) < 0)
            goto fail;
    }
    if (kernel_image_probe(k, err, errlen) < 0)
        goto fail;
    return 0;
fail:
    kernel_image_close(k);
    return -1;
}

int kernel_image_probe(struct kernel_image *k, char *err, size_t errlen)
{
    const char *kernel = k->path;
    /* bzImage: boot protocol "HdrS" at 0x202 and the 0xAA55 boot flag. */
    if (k->size >= 0x250 && rd32(k->data + 0x202) == 0x53726448 &&
        k->data[0x1fe] == 0x55 && k->data[0x1ff] == 0xAA) {
        k->format = KERNEL_BZIMAGE;
        return 0;
    }
    int elf_class = 0;
    bool is_elf = k->size >= 4 && !memcmp(k->data, "\177ELF", 4);
    if (is_elf) {
        if (boot_elf_check(k->data, k->size, &elf_class, err, errlen) < 0)
            return -1;
        if (boot_elf_find_pvh(k->data, k->size, &k->pvh_entry) == 0) {
            k->format = KERNEL_PVH;
            return 0;
        }
    }
    if (find_multiboot_header(k->data, k->size, &k->mb_header_off)) {
        k->format = KERNEL_MULTIBOOT;
        return 0;
    }
    if (is_elf && elf_class == 2) {
        k->format = KERNEL_ELF64;
        return 0;
    }
    if (is_elf)
        snprintf(err, errlen, "-kernel: '%s' is a 32-bit ELF without a PVH note or "
                 "multiboot header (expected a bzImage, a PVH/ELF64 vmlinux or a multiboot kernel)",
                 kernel);
    else
        snprintf(err, errlen, "-kernel: '%s' is not a kernel (expected a bzImage, a "
                 "PVH/ELF64 vmlinux or a multiboot kernel)", kernel);
    return -1;
}

void kernel_image_close(struct kernel_image *k)
{
    if (k->data && k->size)
        munmap(k->data, k->size);
    if (k->initrd && k->initrd_size)
        munmap(k->initrd, k->initrd_size);
    if (k->fd >= 0)
        close(k->fd);
    if (k->initrd_fd >= 0)
        close(k->initrd_fd);
    memset(k, 0, sizeof *k);
    k->fd = k->initrd_fd = -1;
}

static bool file_still_whole(int fd, size_t size)
{
    struct stat st;
    return fd < 0 || (fstat(fd, &st) == 0 && (uint64_t)st.st_size >= size);
}

int kernel_image_load(const struct kernel_image *k, const struct boot_env *env,
                      struct x86_boot_regs *regs, char *err, size_t errlen)
{
    memset(regs, 0, sizeof *regs);
    if (!file_still_whole(k->fd, k->size) || !file_still_whole(k->initrd_fd, k->initrd_size)) {
        snprintf(err, errlen, "'%s' or its initrd shrank since kvmbox started; cannot boot it again",
                 k->path);
        return -1;
    }
    switch (k->format) {
    case KERNEL_BZIMAGE:
        return boot_load_bzimage(k, env, regs, err, errlen);
    case KERNEL_PVH:
    case KERNEL_ELF64:
        return boot_load_elf(k, env, regs, err, errlen);
    case KERNEL_MULTIBOOT:
        return boot_load_multiboot(k, env, regs, err, errlen);
    }
    return -1;
}

void kernel_image_drop_pages(const struct kernel_image *k)
{
    if (k->data && k->size)
        madvise(k->data, k->size, MADV_DONTNEED);
    if (k->initrd && k->initrd_size)
        madvise(k->initrd, k->initrd_size, MADV_DONTNEED);
}

uint64_t boot_low_ram_end(const struct boot_env *env)
{
    uint64_t end = 0;
    for (unsigned i = 0; i < env->e820_count; i++) {
        const struct e820_entry *e = &env->e820[i];
        if (e->type == E820_RAM && e->addr + e->size <= (1ULL << 32) &&
            e->addr + e->size > end)
            end = e->addr + e->size;
    }
    return end;
}

int boot_place_initrd(const struct kernel_image *k, struct guest_mem *mem,
                      uint64_t min_addr, uint64_t limit, uint64_t *addr,
                      char *err, size_t errlen)
{
    *addr = 0;
    if (!k->initrd)
        return 0;
    uint64_t size = k->initrd_size;
    if (size > limit || ((limit - size) & ~0xFFFULL) < min_addr) {
        snprintf(err, errlen, "-initrd: '%s' (%zu bytes) does not fit in guest RAM below "
                 "0x%llx above the kernel (expected a larger -m)", k->initrd_path,
                 k->initrd_size, (unsigned long long)limit);
        return -1;
    }
    uint64_t at = (limit - size) & ~0xFFFULL;
    if (gmem_write(mem, at, k->initrd, k->initrd_size) < 0) {
        snprintf(err, errlen, "-initrd: cannot place '%s' at 0x%llx", k->initrd_path,
                 (unsigned long long)at);
        return -1;
    }
    *addr = at;
    return 0;
}
