/* The Linux x86 boot protocol (Documentation/x86/boot.rst): bzImage loading
 * and the zero page (struct boot_params) that the 64-bit entry reads. */
#include "arch/x86/boot.h"
#include "arch/x86/layout.h"

#include <stdio.h>
#include <string.h>

/* Offsets in struct boot_params (Documentation/x86/zero-page.rst). */
#define BP_ACPI_RSDP_ADDR   0x070
#define BP_EXT_RAMDISK_IMG  0x0c0
#define BP_EXT_RAMDISK_SIZE 0x0c4
#define BP_EXT_CMD_LINE_PTR 0x0c8
#define BP_E820_ENTRIES     0x1e8
#define BP_HDR              0x1f1
#define BP_SETUP_SECTS      0x1f1
#define BP_VID_MODE         0x1fa
#define BP_BOOT_FLAG        0x1fe
#define BP_HEADER           0x202
#define BP_VERSION          0x206
#define BP_TYPE_OF_LOADER   0x210
#define BP_LOADFLAGS        0x211
#define BP_CODE32_START     0x214
#define BP_RAMDISK_IMAGE    0x218
#define BP_RAMDISK_SIZE     0x21c
#define BP_HEAP_END_PTR     0x224
#define BP_CMD_LINE_PTR     0x228
#define BP_INITRD_ADDR_MAX  0x22c
#define BP_KERNEL_ALIGNMENT 0x230
#define BP_XLOADFLAGS       0x236
#define BP_CMDLINE_SIZE     0x238
#define BP_PREF_ADDRESS     0x258
#define BP_INIT_SIZE        0x260
#define BP_E820_TABLE       0x2d0
#define BP_E820_MAX         128
#define BP_SIZE             0x1000

#define LOADFLAG_LOADED_HIGH   0x01
#define LOADFLAG_CAN_USE_HEAP  0x80
#define XLF_KERNEL_64          0x01

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int boot_write_zero_page(const struct kernel_image *k, const struct boot_env *env,
                         const uint8_t *hdr_src, size_t hdr_len,
                         uint64_t initrd_addr, char *err, size_t errlen)
{
    uint8_t *bp = gmem_ptr(env->mem, LAYOUT_ZERO_PAGE, BP_SIZE);
    if (!bp) {
        snprintf(err, errlen, "-m: guest RAM too small for the boot parameters");
        return -1;
    }
    memset(bp, 0, BP_SIZE);
    if (hdr_src) {
        memcpy(bp + BP_HDR, hdr_src, hdr_len);
    } else {
        /* No setup header (ELF kernel): fill the fields the kernel reads. */
        put16(bp + BP_BOOT_FLAG, 0xAA55);
        put32(bp + BP_HEADER, 0x53726448);
        put16(bp + BP_VERSION, 0x020f);
        put32(bp + BP_KERNEL_ALIGNMENT, 0x1000000);
    }
    bp[BP_TYPE_OF_LOADER] = 0xff;                 /* "undefined" boot loader */
    bp[BP_LOADFLAGS] |= LOADFLAG_CAN_USE_HEAP | LOADFLAG_LOADED_HIGH;
    put16(bp + BP_HEAP_END_PTR, 0xfe00);
    put16(bp + BP_VID_MODE, 0xffff);              /* "normal" */
    put32(bp + BP_CMD_LINE_PTR, (uint32_t)LAYOUT_CMDLINE);
    put32(bp + BP_EXT_CMD_LINE_PTR, 0);
    if (initrd_addr) {
        put32(bp + BP_RAMDISK_IMAGE, (uint32_t)initrd_addr);
        put32(bp + BP_RAMDISK_SIZE, (uint32_t)k->initrd_size);
        put32(bp + BP_EXT_RAMDISK_IMG, (uint32_t)(initrd_addr >> 32));
        put32(bp + BP_EXT_RAMDISK_SIZE, (uint32_t)((uint64_t)k->initrd_size >> 32));
    }
    uint64_t rsdp = env->rsdp_addr;
    memcpy(bp + BP_ACPI_RSDP_ADDR, &rsdp, 8);
    unsigned n = env->e820_count < BP_E820_MAX ? env->e820_count : BP_E820_MAX;
    bp[BP_E820_ENTRIES] = (uint8_t)n;
    memcpy(bp + BP_E820_TABLE, env->e820, n * sizeof env->e820[0]);
    return 0;
}

/* The command line at LAYOUT_CMDLINE, refusing one the kernel would cut. */
int boot_write_cmdline(const struct boot_env *env, uint32_t max_len,
                       char *err, size_t errlen)
{
    size_t len = strlen(env->cmdline);
    if (max_len > LAYOUT_CMDLINE_MAX - 1)
        max_len = LAYOUT_CMDLINE_MAX - 1;
    if (len > max_len) {
        snprintf(err, errlen, "-append: the command line is %zu bytes, this kernel "
                 "accepts at most %u", len, max_len);
        return -1;
    }
    if (gmem_write(env->mem, LAYOUT_CMDLINE, env->cmdline, len + 1) < 0) {
        snprintf(err, errlen, "-m: guest RAM too small for the command line");
        return -1;
    }
    return 0;
}

int boot_load_bzimage(const struct kernel_image *k, const struct boot_env *env,
                      struct x86_boot_regs *regs, char *err, size_t errlen)
{
    const uint8_t *d = k->data;
    uint16_t version = get16(d + BP_VERSION);
    if (version < 0x0202) {
        snprintf(err, errlen, "-kernel: '%s' uses boot protocol %u.%02u; kvmbox needs "
                 "2.02 or later (a kernel from 2002 on)", k->path, version >> 8, version & 0xff);
        return -1;
    }
    if (!(d[BP_LOADFLAGS] & LOADFLAG_LOADED_HIGH)) {
        snprintf(err, errlen, "-kernel: '%s' is a zImage (loaded low); kvmbox boots bzImages",
                 k->path);
        return -1;
    }
    unsigned setup_sects = d[BP_SETUP_SECTS] ? d[BP_SETUP_SECTS] : 4;
    size_t setup_size = (size_t)(setup_sects + 1) * 512;
    if (setup_size >= k->size) {
        snprintf(err, errlen, "-kernel: '%s' is truncated (setup %zu bytes, file %zu)",
                 k->path, setup_size, k->size);
        return -1;
    }
    /* The setup header runs from 0x1f1 to 0x202 + the byte at 0x201. */
    size_t hdr_len = 0x202 + d[0x201] - BP_HDR;
    if (hdr_len > BP_E820_TABLE - BP_HDR)
        hdr_len = BP_E820_TABLE - BP_HDR;
    if (BP_HDR + hdr_len > setup_size)
        hdr_len = setup_size - BP_HDR;
    size_t kernel_size = k->size - setup_size;
    uint64_t load = LAYOUT_HIGH_START;
    uint64_t low_end = boot_low_ram_end(env);
    /* The decompressor needs init_size bytes from its run address
     * (pref_address, e.g. 16 MiB): check here for a clear error instead of a
     * guest that dies silently. */
    uint64_t need = load + kernel_size;
    if (version >= 0x020a) {
        uint64_t pref = 0;
        memcpy(&pref, d + BP_PREF_ADDRESS, 8);
        uint64_t init_end = (pref > load ? pref : load) + get32(d + BP_INIT_SIZE);
        if (init_end > need)
            need = init_end;
    }
    if (need > low_end) {
        snprintf(err, errlen, "-m: this kernel needs at least %llu MiB of guest RAM",
                 (unsigned long long)((need + (1 << 20) - 1) >> 20));
        return -1;
    }
    if (gmem_write(env->mem, load, d + setup_size, kernel_size) < 0) {
        snprintf(err, errlen, "-kernel: cannot place the kernel at 0x%llx",
                 (unsigned long long)load);
        return -1;
    }
    uint32_t cmdline_max = version >= 0x0206 ? get32(d + BP_CMDLINE_SIZE) : 255;
    if (boot_write_cmdline(env, cmdline_max, err, errlen) < 0)
        return -1;
    uint64_t initrd_max = version >= 0x0203 ? get32(d + BP_INITRD_ADDR_MAX) : 0x37ffffff;
    uint64_t limit = low_end;
    if (initrd_max + 1 < limit)
        limit = initrd_max + 1;
    uint64_t initrd_addr;
    if (boot_place_initrd(k, env->mem, need, limit, &initrd_addr, err, errlen) < 0)
        return -1;
    if (boot_write_zero_page(k, env, d + BP_HDR, hdr_len, initrd_addr, err, errlen) < 0)
        return -1;
    uint8_t *bp = gmem_ptr(env->mem, LAYOUT_ZERO_PAGE, BP_SIZE);
    put32(bp + BP_CODE32_START, (uint32_t)load);
    uint16_t xlf = version >= 0x020c ? get16(d + BP_XLOADFLAGS) : 0;
    regs->rsi = LAYOUT_ZERO_PAGE;
    regs->rsp = LAYOUT_ZERO_PAGE;       /* unused by Linux; a sane value */
    if (xlf & XLF_KERNEL_64) {
        regs->mode = X86_ENTRY_LONG64;
        regs->rip = load + 0x200;       /* the 64-bit entry point */
    } else {
        regs->mode = X86_ENTRY_PROT32;  /* 32-bit boot protocol: ESI = zero page */
        regs->rip = load;
    }
    return 0;
}

