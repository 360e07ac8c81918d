/* fuzz-sources: src/arch/x86/boot_image.c src/arch/x86/boot_linux.c src/arch/x86/boot_elf.c src/arch/x86/boot_multiboot.c src/arch/x86/e820.c src/core/guest_mem.c */
/* Kernel images are files the user names, often downloaded: probing and
 * loading one must never read or write outside the file or guest RAM,
 * whatever its headers say. The input is the kernel file; it is probed and,
 * when accepted, loaded into a small guest (with an initrd so placement
 * arithmetic runs too). */
#include "arch/x86/boot.h"
#include "arch/x86/layout.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct guest_mem mem;
    static bool mem_ready;
    if (!mem_ready) {
        if (gmem_init(&mem, 16 << 20) < 0)
            abort();
        mem_ready = true;
    }
    struct kernel_image k;
    memset(&k, 0, sizeof k);
    k.path = "fuzz";
    k.fd = k.initrd_fd = -1;
    k.data = malloc(size ? size : 1);
    if (!k.data)
        return 0;
    memcpy(k.data, data, size);
    k.size = size;
    static uint8_t initrd[4096];
    k.initrd = initrd;
    k.initrd_size = sizeof initrd;
    k.initrd_path = "initrd";
    char err[256];
    if (kernel_image_probe(&k, err, sizeof err) == 0) {
        struct boot_env env = { .mem = &mem, .cmdline = "console=ttyS0" };
        int n = e820_build(env.e820, 16, mem.ram_size, 0);
        env.e820_count = n > 0 ? (unsigned)n : 0;
        struct x86_boot_regs regs;
        kernel_image_load(&k, &env, &regs, err, sizeof err);
    }
    free(k.data);
    return 0;
}
