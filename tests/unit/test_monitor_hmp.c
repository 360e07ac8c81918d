/* HMP without KVM: line input, parser, info commands, x/xp formats and
 * errors, on a hand-built struct vm with real guest RAM (gmem) and no
 * vCPU fds; plus the x86 page walk on hand-built page tables. */
#include "test.h"

#include <stdlib.h>
#include <unistd.h>

#include "core/vm.h"
#include "monitor/monitor_internal.h"
#include "monitor/x86_mmu.h"

struct out {
    char buf[65536];
    size_t len;
};

static void collect(void *opaque, const void *data, size_t len)
{
    struct out *o = opaque;
    if (o->len + len + 1 > sizeof o->buf)
        len = sizeof o->buf - o->len - 1;
    memcpy(o->buf + o->len, data, len);
    o->len += len;
    o->buf[o->len] = '\0';
}

struct fixture {
    struct vm vm;
    struct vm_config cfg;
    struct vcpu vcpus[2];
    struct out out;
    struct monitor *m;
};

static struct fixture *fixture_new(void)
{
    struct fixture *f = calloc(1, sizeof *f);
    f->cfg.name = "hmpvm";
    f->cfg.smp = (struct smp_config){ 2, 1, 2, 1, 2 };
    f->vm.cfg = &f->cfg;
    f->vm.vm_fd = -1;
    f->vm.run_state = VM_RUN_RUNNING;
    pthread_mutex_init(&f->vm.park_lock, NULL);
    pthread_cond_init(&f->vm.park_cond, NULL);
    for (unsigned i = 0; i < 2; i++) {
        f->vcpus[i].index = i;
        f->vcpus[i].fd = -1;
        atomic_store(&f->vcpus[i].tid, 4000 + (int)i);
    }
    f->vm.vcpus = f->vcpus;
    f->vm.nr_vcpus = 2;
    gmem_init(&f->vm.mem, 2 << 20);
    bus_init(&f->vm.pio);
    bus_init(&f->vm.mmio);
    f->m = monitor_new_output(&f->vm, MONITOR_HMP, false, collect, &f->out);
    return f;
}

static void fixture_free(struct fixture *f)
{
    monitor_free(f->m);
    gmem_destroy(&f->vm.mem);
    bus_destroy(&f->vm.pio);
    bus_destroy(&f->vm.mmio);
    free(f);
}

/* Type a line; return what the monitor printed after the echo, without the
 * trailing prompt. */
static const char *type(struct fixture *f, const char *line)
{
    f->out.len = 0;
    f->out.buf[0] = '\0';
    monitor_input(f->m, (const uint8_t *)line, strlen(line));
    monitor_input(f->m, (const uint8_t *)"\r", 1);
    char *p = strstr(f->out.buf, "\r\n");        /* end of the echo */
    p = p ? p + 2 : f->out.buf;
    size_t n = strlen(p);
    if (n >= 7 && !strcmp(p + n - 7, "(qemu) "))
        p[n - 7] = '\0';
    return p;
}

TEST(banner_and_prompt)
{
    struct fixture *f = fixture_new();
    CHECK_STR(f->out.buf, "QEMU 7.2.0 monitor - type 'help' for more information\r\n(qemu) ");
    fixture_free(f);
}

TEST(info_commands)
{
    struct fixture *f = fixture_new();
    CHECK_STR(type(f, "info status"), "VM status: running\r\n");
    f->vm.run_state = VM_RUN_PAUSED;
    CHECK_STR(type(f, "info status"), "VM status: paused\r\n");
    f->vm.run_state = VM_RUN_SHUTDOWN;
    CHECK_STR(type(f, "info status"), "VM status: paused (shutdown)\r\n");
    f->vm.run_state = VM_RUN_PRELAUNCH;
    CHECK_STR(type(f, "info status"), "VM status: paused (prelaunch)\r\n");
    CHECK_STR(type(f, "info version"), "7.2.0kvmbox 0.1.0\r\n");
    CHECK_STR(type(f, "info name"), "hmpvm\r\n");
    CHECK_STR(type(f, "info kvm"), "kvm support: enabled\r\n");
    CHECK_STR(type(f, "info uuid"), "00000000-0000-0000-0000-000000000000\r\n");
    CHECK_STR(type(f, "info cpus"), "* CPU #0: thread_id=4000\r\n  CPU #1: thread_id=4001\r\n");
    CHECK_STR(type(f, "cpu 1"), "");
    CHECK_STR(type(f, "info cpus"), "  CPU #0: thread_id=4000\r\n* CPU #1: thread_id=4001\r\n");
    CHECK_STR(type(f, "info pci"), "");
    CHECK_STR(type(f, "info block"), "");
    CHECK_STR(type(f, "info network"), "");
    CHECK_STR(type(f, "info status extra"),
              "status: extraneous characters at the end of line\r\n"
              "Try \"help info status\" for more information\r\n");
    CHECK_STR(type(f, "info foo"), "unknown command: 'info foo'\r\n");
    CHECK(strstr(type(f, "info mtree"), "address-space: memory\r\n"));
    CHECK(strstr(type(f, "info"), "info status  -- show the current VM status"));
    fixture_free(f);
}

TEST(commands_and_errors)
{
    struct fixture *f = fixture_new();
    CHECK_STR(type(f, "foo"), "unknown command: 'foo'\r\n");
    CHECK_STR(type(f, ""), "");
    CHECK_STR(type(f, "set_link x on"), "Error: Device 'x' not found\r\n");
    CHECK_STR(type(f, "set_link x"),
              "Expected 'on' or 'off'\r\nTry \"help set_link\" for more information\r\n");
    CHECK_STR(type(f, "help x"), "x /fmt addr -- virtual memory dump starting at 'addr'\r\n");
    CHECK_STR(type(f, "stop"), "");
    CHECK_EQ(f->vm.run_state, VM_RUN_PAUSED);
    CHECK_STR(type(f, "cont"), "");
    CHECK_EQ(f->vm.run_state, VM_RUN_RUNNING);
    /* backspace editing */
    f->out.len = 0;
    monitor_input(f->m, (const uint8_t *)"info statux\x7fs\r", 14);
    CHECK(strstr(f->out.buf, "VM status: running\r\n"));
    /* escape sequences (arrow keys) are dropped */
    CHECK_STR(type(f, "\x1b[Ainfo kvm"), "kvm support: enabled\r\n");
    /* an over-long line is refused, the next one works */
    char *lng = malloc(HMP_LINE_MAX + 100);
    memset(lng, 'a', HMP_LINE_MAX + 99);
    lng[HMP_LINE_MAX + 99] = '\0';
    CHECK(strstr(type(f, lng), "line too long"));
    free(lng);
    CHECK_STR(type(f, "info kvm"), "kvm support: enabled\r\n");
    fixture_free(f);
}

TEST(memory_dump)
{
    struct fixture *f = fixture_new();
    static const uint8_t bytes[] = { 0xea, 0x5b, 0xe0, 0x00, 0xf0, 0x30, 0x36, 0x2f,
                                     0x32, 0x33, 0x2f, 0x39, 0x39, 0x00, 0xfc, 0xbb };
    gmem_write(&f->vm.mem, 0x1000, bytes, sizeof bytes);
    gmem_write(&f->vm.mem, 0x2000, "\0P2'\n", 5);
    CHECK_STR(type(f, "xp/4xw 0x1000"),
              "0000000000001000: 0x00e05bea 0x2f3630f0 0x392f3332 0xbbfc0039\r\n");
    CHECK_STR(type(f, "xp/5db 0x1000"), "0000000000001000: 234  91 224   0 240\r\n");
    CHECK_STR(type(f, "xp/3uw 0x1000"), "0000000000001000:   14703594  792080624  959394610\r\n");
    CHECK_STR(type(f, "xp/3ow 0x1000"),
              "0000000000001000:   070055752 05715430360 07113631462\r\n");
    CHECK_STR(type(f, "xp 0x1000"), "0000000000001000:   070055752\r\n");  /* last fmt */
    CHECK_STR(type(f, "xp/2dg 0x1000"),
              "0000000000001000:  3401960375889976298 -4901042048713411790\r\n");
    CHECK_STR(type(f, "xp/10xb 0x1000"),
              "0000000000001000: 0xea 0x5b 0xe0 0x00 0xf0 0x30 0x36 0x2f\r\n"
              "0000000000001008: 0x32 0x33\r\n");
    CHECK_STR(type(f, "xp/5cb 0x2000"),
              "0000000000002000: '\\x00' 'P' '2' '\\'' '\\n'\r\n");
    CHECK_STR(type(f, "xp/2x 0x100000000000"), "0000100000000000: Cannot access memory\r\n");
    CHECK_STR(type(f, "xp/2xw 0x1ffffc"), "00000000001ffffc: Cannot access memory\r\n");
    CHECK_STR(type(f, "xp/4xw"),
              "unexpected end of expression\r\nTry \"help xp\" for more information\r\n");
    CHECK_STR(type(f, "xp/4xw 0x1000 extra"),
              "xp: extraneous characters at the end of line\r\n"
              "Try \"help xp\" for more information\r\n");
    CHECK_STR(type(f, "xp/4xw 0x1000+8-4"), "0000000000001004: 0x2f3630f0 0x392f3332 "
              "0xbbfc0039 0x00000000\r\n");
    /* x without a vCPU to translate through */
    CHECK_STR(type(f, "x/1xw 0x1000"), "0000000000001000: Cannot access memory\r\n");
    /* pmemsave writes the bytes */
    char path[] = "/tmp/kvmbox-hmp-XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "pmemsave 0x1000 16 \"%s\"", path);
    CHECK_STR(type(f, cmd), "");
    uint8_t back[32];
    FILE *fp = fopen(path, "rb");
    size_t n = fread(back, 1, sizeof back, fp);
    fclose(fp);
    unlink(path);
    CHECK_EQ(n, 16);
    CHECK(!memcmp(back, bytes, 16));
    CHECK(strstr(type(f, "pmemsave 0x1ff000 0x2000 /tmp/kvmbox-hmp-never"),
                 "Error: Invalid addr 0x00000000001ff000/size 8192 specified"));
    unlink("/tmp/kvmbox-hmp-never");
    CHECK(strstr(type(f, "pmemsave 0 16 /nonexistent/dir/x"), "Error: Could not open"));
    fixture_free(f);
}

static void put64(struct guest_mem *m, uint64_t gpa, uint64_t v)
{
    gmem_write(m, gpa, &v, 8);
}

TEST(page_walk)
{
    struct guest_mem mem;
    CHECK_EQ(gmem_init(&mem, 4 << 20), 0);
    uint64_t pa;
    /* paging off: identity */
    struct x86_paging p = { .cr0 = 1 };
    CHECK_EQ(x86_virt_to_phys(&mem, &p, 0x1234, &pa), 0);
    CHECK_EQ(pa, 0x1234);
    /* 4-level: PML4 at 0x10000 -> PDPT 0x11000 -> PD 0x12000 -> PT 0x13000 */
    p = (struct x86_paging){ .cr0 = 0x80000001, .cr3 = 0x10000, .cr4 = 0x20, .efer = 0x500 };
    uint64_t va = 0xffff800000201000ull;   /* PML4 256, PDPT 0, PD 1, PT 1 */
    put64(&mem, 0x10000 + 256 * 8, 0x11000 | 3);
    put64(&mem, 0x11000 + 0 * 8, 0x12000 | 3);
    put64(&mem, 0x12000 + 1 * 8, 0x13000 | 3);
    put64(&mem, 0x13000 + 1 * 8, 0x0000000000345000ull | 3 | (1ull << 63));
    CHECK_EQ(x86_virt_to_phys(&mem, &p, va + 0x12, &pa), 0);
    CHECK_EQ(pa, 0x345012);
    /* 2 MiB page in the PD */
    put64(&mem, 0x12000 + 2 * 8, 0x200000 | 0x83);
    CHECK_EQ(x86_virt_to_phys(&mem, &p, 0xffff800000400000ull + 0x1234, &pa), 0);
    CHECK_EQ(pa, 0x201234);
    /* not present, non-canonical, table outside RAM */
    CHECK(x86_virt_to_phys(&mem, &p, 0xffff800000601000ull, &pa) < 0);
    CHECK(x86_virt_to_phys(&mem, &p, 0x0000800000000000ull, &pa) < 0);
    put64(&mem, 0x12000 + 3 * 8, 0x7ffff000ull | 3);
    CHECK(x86_virt_to_phys(&mem, &p, 0xffff800000600000ull, &pa) < 0);
    /* 32-bit, 4 MiB PSE page and a 4 KiB page */
    p = (struct x86_paging){ .cr0 = 0x80000001, .cr3 = 0x20000, .cr4 = 0x10 };
    uint32_t pde = 0x00400000 | 0x83;
    gmem_write(&mem, 0x20000 + 1 * 4, &pde, 4);
    CHECK_EQ(x86_virt_to_phys(&mem, &p, 0x00412345, &pa), 0);
    CHECK_EQ(pa, 0x00412345);
    pde = 0x21000 | 3;
    gmem_write(&mem, 0x20000 + 2 * 4, &pde, 4);
    uint32_t pte = 0x5000 | 3;
    gmem_write(&mem, 0x21000 + 3 * 4, &pte, 4);
    CHECK_EQ(x86_virt_to_phys(&mem, &p, 0x00803abc, &pa), 0);
    CHECK_EQ(pa, 0x5abc);
    /* PAE (32-bit): PDPT at 0x30000 */
    p = (struct x86_paging){ .cr0 = 0x80000001, .cr3 = 0x30000, .cr4 = 0x20 };
    put64(&mem, 0x30000 + 1 * 8, 0x31000 | 1);
    put64(&mem, 0x31000 + 0 * 8, 0x32000 | 3);
    put64(&mem, 0x32000 + 5 * 8, 0x7000 | 3);
    CHECK_EQ(x86_virt_to_phys(&mem, &p, 0x40005123, &pa), 0);
    CHECK_EQ(pa, 0x7123);
    gmem_destroy(&mem);
}

TEST(capture_bounded)
{
    struct fixture *f = fixture_new();
    char *s = hmp_execute_capture(&f->vm, "xp/1000000xg 0", 0);
    CHECK(s);
    CHECK(strlen(s) <= MONITOR_CAPTURE_MAX);
    free(s);
    fixture_free(f);
}

int main(void)
{
    RUN(banner_and_prompt);
    RUN(info_commands);
    RUN(commands_and_errors);
    RUN(memory_dump);
    RUN(page_walk);
    RUN(capture_bounded);
    return test_summary();
}
