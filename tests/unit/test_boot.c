/* Kernel loaders on synthetic images: bzImage (boot protocol), PVH ELF,
 * plain ELF64, multiboot; and hostile/odd files refused with a message. */
#include "arch/x86/boot.h"
#include "arch/x86/layout.h"
#include "test.h"

#include <elf.h>
#include <stdlib.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/kvmbox-test-boot-XXXXXX";

static const char *write_file(const char *name, const void *data, size_t len)
{
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    fwrite(data, 1, len, f);
    fclose(f);
    return path;
}

static void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }

struct env_fixture {
    struct guest_mem mem;
    struct boot_env env;
};

static int fixture_init(struct env_fixture *f, uint64_t ram, const char *cmdline)
{
    if (gmem_init(&f->mem, ram) < 0)
        return -1;
    memset(&f->env, 0, sizeof f->env);
    f->env.mem = &f->mem;
    f->env.cmdline = cmdline;
    int n = e820_build(f->env.e820, 16, ram, 0);
    if (n < 0)
        return -1;
    f->env.e820_count = (unsigned)n;
    f->env.rsdp_addr = LAYOUT_ACPI_START;
    return 0;
}

/* A minimal bzImage: one setup sector after the boot sector, then "code". */
static size_t make_bzimage(uint8_t *img, size_t code_len, uint16_t version, uint32_t init_size)
{
    size_t setup = 2 * 512;
    memset(img, 0, setup + code_len);
    img[0x1f1] = 1;                               /* setup_sects */
    img[0x1fe] = 0x55;
    img[0x1ff] = 0xAA;
    img[0x201] = 0x6a;                            /* header ends at 0x26c */
    put32(img + 0x202, 0x53726448);               /* "HdrS" */
    put16(img + 0x206, version);
    img[0x211] = 0x01;                            /* LOADED_HIGH */
    put32(img + 0x22c, 0x7fffffff);               /* initrd_addr_max */
    put32(img + 0x230, 0x200000);
    put16(img + 0x236, 0x01);                     /* XLF_KERNEL_64 */
    put32(img + 0x238, 2048);                     /* cmdline_size */
    uint64_t pref = 0x1000000;
    memcpy(img + 0x258, &pref, 8);
    put32(img + 0x260, init_size);
    for (size_t i = 0; i < code_len; i++)
        img[setup + i] = (uint8_t)(i * 7);
    return setup + code_len;
}

TEST(bzimage_load)
{
    static uint8_t img[2 * 512 + 8192];
    size_t len = make_bzimage(img, 8192, 0x020f, 4 << 20);
    const char *kpath = write_file("bz", img, len);
    char kp[256];
    snprintf(kp, sizeof kp, "%s", kpath);
    uint8_t initrd[10000];
    memset(initrd, 0xab, sizeof initrd);
    const char *ipath = write_file("initrd", initrd, sizeof initrd);
    struct kernel_image k;
    char err[256] = "";
    CHECK_EQ(kernel_image_open(&k, kp, ipath, err, sizeof err), 0);
    CHECK_EQ(k.format, KERNEL_BZIMAGE);
    struct env_fixture f;
    CHECK_EQ(fixture_init(&f, 64 << 20, "console=ttyS0 root=/dev/vda"), 0);
    struct x86_boot_regs r;
    CHECK_EQ(kernel_image_load(&k, &f.env, &r, err, sizeof err), 0);
    CHECK_EQ(r.mode, X86_ENTRY_LONG64);
    CHECK_EQ(r.rip, 0x100200);
    CHECK_EQ(r.rsi, LAYOUT_ZERO_PAGE);
    CHECK(!memcmp(gmem_ptr(&f.mem, 0x100000, 8192), img + 1024, 8192));
    uint8_t *bp = gmem_ptr(&f.mem, LAYOUT_ZERO_PAGE, 4096);
    CHECK_EQ(get32(bp + 0x202), 0x53726448);
    CHECK_EQ(bp[0x210], 0xff);                    /* type_of_loader */
    CHECK(bp[0x211] & 0x80);                      /* CAN_USE_HEAP */
    CHECK_EQ(get32(bp + 0x228), LAYOUT_CMDLINE);
    CHECK_STR((char *)gmem_ptr(&f.mem, LAYOUT_CMDLINE, 1), "console=ttyS0 root=/dev/vda");
    uint32_t rd = get32(bp + 0x218), rdsize = get32(bp + 0x21c);
    CHECK_EQ(rdsize, sizeof initrd);
    CHECK_EQ(rd & 0xfff, 0);
    CHECK(rd + rdsize <= 64 << 20);
    CHECK(rd >= 0x1000000 + (4 << 20));           /* above the decompressor's area */
    CHECK(!memcmp(gmem_ptr(&f.mem, rd, rdsize), initrd, rdsize));
    CHECK(bp[0x1e8] >= 3);                        /* e820 entries */
    uint64_t rsdp;
    memcpy(&rsdp, bp + 0x70, 8);
    CHECK_EQ(rsdp, LAYOUT_ACPI_START);
    kernel_image_close(&k);
    gmem_destroy(&f.mem);
}

TEST(bzimage_refusals)
{
    static uint8_t img[2 * 512 + 4096];
    char err[256] = "";
    struct kernel_image k;
    struct env_fixture f;
    struct x86_boot_regs r;
    /* Needs more RAM than given: a message naming -m. */
    size_t len = make_bzimage(img, 4096, 0x020f, 64 << 20);
    CHECK_EQ(kernel_image_open(&k, write_file("bz2", img, len), NULL, err, sizeof err), 0);
    CHECK_EQ(fixture_init(&f, 32 << 20, ""), 0);
    CHECK(kernel_image_load(&k, &f.env, &r, err, sizeof err) < 0);
    CHECK(strstr(err, "-m") != NULL);
    kernel_image_close(&k);
    gmem_destroy(&f.mem);
    /* Command line longer than cmdline_size. */
    len = make_bzimage(img, 4096, 0x020f, 1 << 20);
    put32(img + 0x238, 16);
    CHECK_EQ(kernel_image_open(&k, write_file("bz3", img, len), NULL, err, sizeof err), 0);
    CHECK_EQ(fixture_init(&f, 32 << 20, "this command line is too long"), 0);
    CHECK(kernel_image_load(&k, &f.env, &r, err, sizeof err) < 0);
    CHECK(strstr(err, "-append") != NULL);
    kernel_image_close(&k);
    gmem_destroy(&f.mem);
    /* Ancient protocol. */
    len = make_bzimage(img, 4096, 0x0201, 1 << 20);
    CHECK_EQ(kernel_image_open(&k, write_file("bz4", img, len), NULL, err, sizeof err), 0);
    CHECK_EQ(fixture_init(&f, 32 << 20, ""), 0);
    CHECK(kernel_image_load(&k, &f.env, &r, err, sizeof err) < 0);
    kernel_image_close(&k);
    gmem_destroy(&f.mem);
}

/* ELF64 with one PT_LOAD at 2 MiB and optionally a PVH note. */
static size_t make_elf64(uint8_t *buf, bool pvh, uint64_t entry, uint64_t phoff_override)
{
    memset(buf, 0, 8192);
    Elf64_Ehdr *eh = (Elf64_Ehdr *)buf;
    memcpy(eh->e_ident, ELFMAG, SELFMAG);
    eh->e_ident[EI_CLASS] = ELFCLASS64;
    eh->e_ident[EI_DATA] = ELFDATA2LSB;
    eh->e_ident[EI_VERSION] = EV_CURRENT;
    eh->e_type = ET_EXEC;
    eh->e_machine = EM_X86_64;
    eh->e_version = EV_CURRENT;
    eh->e_entry = entry;
    eh->e_phoff = phoff_override ? phoff_override : sizeof *eh;
    eh->e_ehsize = sizeof *eh;
    eh->e_phentsize = sizeof(Elf64_Phdr);
    eh->e_phnum = pvh ? 2 : 1;
    Elf64_Phdr *ph = (Elf64_Phdr *)(buf + sizeof *eh);
    ph[0].p_type = PT_LOAD;
    ph[0].p_offset = 4096;
    ph[0].p_paddr = 0x200000;
    ph[0].p_vaddr = 0xffffffff80200000ULL;
    ph[0].p_filesz = 4096;
    ph[0].p_memsz = 8192;                         /* 4 KiB of bss */
    memset(buf + 4096, 0xcc, 4096);
    if (pvh) {
        uint8_t *note = buf + 1024;
        put32(note, 4);                           /* namesz */
        put32(note + 4, 4);                       /* descsz */
        put32(note + 8, 18);                      /* XEN_ELFNOTE_PHYS32_ENTRY */
        memcpy(note + 12, "Xen", 4);
        put32(note + 16, 0x200040);
        ph[1].p_type = PT_NOTE;
        ph[1].p_offset = 1024;
        ph[1].p_filesz = 20;
    }
    return 8192;
}

TEST(pvh_elf_load)
{
    static uint8_t buf[8192];
    size_t len = make_elf64(buf, true, 0x200000, 0);
    struct kernel_image k;
    char err[256] = "";
    CHECK_EQ(kernel_image_open(&k, write_file("pvh", buf, len), NULL, err, sizeof err), 0);
    CHECK_EQ(k.format, KERNEL_PVH);
    CHECK_EQ(k.pvh_entry, 0x200040);
    struct env_fixture f;
    CHECK_EQ(fixture_init(&f, 32 << 20, "hello"), 0);
    memset(gmem_ptr(&f.mem, 0x201000, 4096), 0x77, 4096);    /* stale "bss" */
    struct x86_boot_regs r;
    CHECK_EQ(kernel_image_load(&k, &f.env, &r, err, sizeof err), 0);
    CHECK_EQ(r.mode, X86_ENTRY_PROT32);
    CHECK_EQ(r.rip, 0x200040);
    CHECK_EQ(r.rbx, LAYOUT_PVH_START_INFO);
    uint8_t *si = gmem_ptr(&f.mem, LAYOUT_PVH_START_INFO, 56);
    CHECK_EQ(get32(si), 0x336ec578);
    CHECK_EQ(get32(si + 4), 1);
    uint64_t cmd;
    memcpy(&cmd, si + 24, 8);
    CHECK_EQ(cmd, LAYOUT_CMDLINE);
    CHECK_EQ(get32(si + 48), f.env.e820_count);
    CHECK_EQ(*(uint8_t *)gmem_ptr(&f.mem, 0x200000, 1), 0xcc);
    CHECK_EQ(*(uint8_t *)gmem_ptr(&f.mem, 0x201000, 1), 0);   /* bss zeroed */
    kernel_image_close(&k);
    gmem_destroy(&f.mem);
}

TEST(plain_elf64_load)
{
    static uint8_t buf[8192];
    /* Entry given as a virtual address: translated to physical. */
    size_t len = make_elf64(buf, false, 0xffffffff80200010ULL, 0);
    struct kernel_image k;
    char err[256] = "";
    CHECK_EQ(kernel_image_open(&k, write_file("elf64", buf, len), NULL, err, sizeof err), 0);
    CHECK_EQ(k.format, KERNEL_ELF64);
    struct env_fixture f;
    CHECK_EQ(fixture_init(&f, 32 << 20, "test=hello"), 0);
    struct x86_boot_regs r;
    CHECK_EQ(kernel_image_load(&k, &f.env, &r, err, sizeof err), 0);
    CHECK_EQ(r.mode, X86_ENTRY_LONG64);
    CHECK_EQ(r.rip, 0x200010);
    CHECK_EQ(r.rsi, LAYOUT_ZERO_PAGE);
    uint8_t *bp = gmem_ptr(&f.mem, LAYOUT_ZERO_PAGE, 4096);
    CHECK_EQ(get32(bp + 0x228), LAYOUT_CMDLINE);
    CHECK_EQ(get32(bp + 0x202), 0x53726448);
    kernel_image_close(&k);
    gmem_destroy(&f.mem);
}

TEST(multiboot_aout_load)
{
    static uint8_t buf[4096];
    memset(buf, 0x90, sizeof buf);
    uint32_t flags = (1u << 1) | (1u << 16);
    put32(buf + 0, 0x1BADB002);
    put32(buf + 4, flags);
    put32(buf + 8, (uint32_t)-(0x1BADB002u + flags));
    put32(buf + 12, 0x100000);                    /* header_addr */
    put32(buf + 16, 0x100000);                    /* load_addr */
    put32(buf + 20, 0);                           /* load_end: whole file */
    put32(buf + 24, 0x102000);                    /* bss_end */
    put32(buf + 28, 0x100020);                    /* entry */
    struct kernel_image k;
    char err[256] = "";
    uint8_t initrd[100] = {1, 2, 3};
    char kp[256];
    snprintf(kp, sizeof kp, "%s", write_file("mb", buf, sizeof buf));
    CHECK_EQ(kernel_image_open(&k, kp, write_file("mbinitrd", initrd, sizeof initrd), err, sizeof err), 0);
    CHECK_EQ(k.format, KERNEL_MULTIBOOT);
    struct env_fixture f;
    CHECK_EQ(fixture_init(&f, 32 << 20, "a=b"), 0);
    struct x86_boot_regs r;
    CHECK_EQ(kernel_image_load(&k, &f.env, &r, err, sizeof err), 0);
    CHECK_EQ(r.mode, X86_ENTRY_PROT32);
    CHECK_EQ(r.rip, 0x100020);
    CHECK_EQ(r.rax, 0x2BADB002);
    uint8_t *mbi = gmem_ptr(&f.mem, r.rbx, 88);
    CHECK(get32(mbi) & 1);                        /* mem_* valid */
    CHECK_EQ(get32(mbi + 4), 639);                /* mem_lower KiB */
    CHECK_EQ(get32(mbi + 8), (32 << 10) - 1024);  /* mem_upper KiB */
    CHECK_EQ(get32(mbi + 20), 1);                 /* one module */
    const char *cmd = gmem_ptr(&f.mem, get32(mbi + 16), 1);
    CHECK(strstr(cmd, "a=b") != NULL);
    uint8_t *mod = gmem_ptr(&f.mem, get32(mbi + 24), 16);
    CHECK_EQ(get32(mod + 4) - get32(mod), sizeof initrd);
    CHECK(get32(mod) >= 0x102000);
    CHECK_EQ(*(uint8_t *)gmem_ptr(&f.mem, 0x101fff, 1), 0);   /* bss */
    kernel_image_close(&k);
    gmem_destroy(&f.mem);
}

TEST(not_a_kernel)
{
    struct kernel_image k;
    char err[256] = "";
    const char *text = "root:x:0:0:root:/root:/bin/bash\n";
    CHECK(kernel_image_open(&k, write_file("passwd", text, strlen(text)), NULL, err, sizeof err) < 0);
    CHECK(strstr(err, "-kernel") != NULL);
    CHECK(strstr(err, "not a kernel") != NULL);
    CHECK(kernel_image_open(&k, "/nonexistent/kernel", NULL, err, sizeof err) < 0);
    CHECK(strstr(err, "cannot open") != NULL);
    CHECK(kernel_image_open(&k, tmpdir, NULL, err, sizeof err) < 0);   /* a directory */
    CHECK(kernel_image_open(&k, write_file("empty", "", 0), NULL, err, sizeof err) < 0);
    /* Program headers beyond the end of the file. */
    static uint8_t buf[8192];
    make_elf64(buf, false, 0x200000, 100000);
    CHECK(kernel_image_open(&k, write_file("badph", buf, 8192), NULL, err, sizeof err) < 0);
    /* A segment whose file range overruns the file. */
    make_elf64(buf, true, 0x200000, 0);
    Elf64_Phdr *ph = (Elf64_Phdr *)(buf + sizeof(Elf64_Ehdr));
    ph[0].p_filesz = 1 << 30;
    ph[0].p_memsz = 1 << 30;
    CHECK(kernel_image_open(&k, write_file("badseg", buf, 8192), NULL, err, sizeof err) < 0);
    /* A PVH note with a huge descsz must not read out of bounds. */
    make_elf64(buf, true, 0x200000, 0);
    put32(buf + 1024 + 4, 0xfffffff0);
    CHECK_EQ(kernel_image_open(&k, write_file("badnote", buf, 8192), NULL, err, sizeof err), 0);
    CHECK_EQ(k.format, KERNEL_ELF64);
    kernel_image_close(&k);
    /* A segment placed outside RAM: refused at load with -m named. */
    make_elf64(buf, false, 0x200000, 0);
    ph[0].p_paddr = 0x40000000;
    CHECK_EQ(kernel_image_open(&k, write_file("high", buf, 8192), NULL, err, sizeof err), 0);
    struct env_fixture f;
    CHECK_EQ(fixture_init(&f, 32 << 20, ""), 0);
    struct x86_boot_regs r;
    CHECK(kernel_image_load(&k, &f.env, &r, err, sizeof err) < 0);
    CHECK(strstr(err, "-m") != NULL);
    kernel_image_close(&k);
    gmem_destroy(&f.mem);
}

int main(void)
{
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(bzimage_load);
    RUN(bzimage_refusals);
    RUN(pvh_elf_load);
    RUN(plain_elf64_load);
    RUN(multiboot_aout_load);
    RUN(not_a_kernel);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0)
        return 1;
    return test_summary();
}
