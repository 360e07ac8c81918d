/* Command-line parsing: good and bad forms of every option kvmbox takes. */
#include "config/config.h"
#include "config/keyval.h"
#include "test.h"

#include <stdlib.h>
#include <unistd.h>

/* Parse argv with stdout/stderr silenced; returns the result. */
static enum config_result parse(struct vm_config *cfg, const char *const *args)
{
    char *argv[64];
    int argc = 0;
    argv[argc++] = "kvmbox";
    for (const char *const *a = args; *a; a++)
        argv[argc++] = (char *)*a;
    argv[argc] = NULL;
    fflush(stdout);
    fflush(stderr);
    int so = dup(1), se = dup(2);
    FILE *null = fopen("/dev/null", "w");
    dup2(fileno(null), 1);
    dup2(fileno(null), 2);
    enum config_result r = config_parse(cfg, argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(so, 1);
    dup2(se, 2);
    close(so);
    close(se);
    fclose(null);
    return r;
}

#define ARGS(...) ((const char *const[]){ __VA_ARGS__, NULL })

TEST(size_forms)
{
    uint64_t v;
    CHECK_EQ(config_parse_size("128", 1 << 20, &v), 0);
    CHECK_EQ(v, 128ULL << 20);
    CHECK_EQ(config_parse_size("128M", 1 << 20, &v), 0);
    CHECK_EQ(v, 128ULL << 20);
    CHECK_EQ(config_parse_size("128m", 1 << 20, &v), 0);
    CHECK_EQ(v, 128ULL << 20);
    CHECK_EQ(config_parse_size("2G", 1 << 20, &v), 0);
    CHECK_EQ(v, 2ULL << 30);
    CHECK_EQ(config_parse_size("1.5G", 1 << 20, &v), 0);
    CHECK_EQ(v, 3ULL << 29);
    CHECK_EQ(config_parse_size("512k", 1 << 20, &v), 0);
    CHECK_EQ(v, 512ULL << 10);
    CHECK(config_parse_size("12Q", 1 << 20, &v) < 0);
    CHECK(config_parse_size("128MB", 1 << 20, &v) < 0);
    CHECK(config_parse_size("", 1 << 20, &v) < 0);
    CHECK(config_parse_size("-1", 1 << 20, &v) < 0);
    CHECK(config_parse_size("99999999999999999999", 1, &v) < 0);
    CHECK(config_parse_size("20000000E", 1, &v) < 0);
}

TEST(keyval_forms)
{
    struct keyval kv;
    CHECK_EQ(keyval_parse(&kv, "4,cores=2,threads=1", "cpus"), 0);
    CHECK_EQ(kv.n, 3);
    CHECK_STR(keyval_get(&kv, "cpus"), "4");
    CHECK_STR(keyval_get(&kv, "cores"), "2");
    CHECK(keyval_unused(&kv) != NULL);
    CHECK_STR(keyval_get(&kv, "threads"), "1");
    CHECK(keyval_unused(&kv) == NULL);
    keyval_free(&kv);
    CHECK_EQ(keyval_parse(&kv, "file=a,,b.img,if=virtio", NULL), 0);
    CHECK_STR(keyval_get(&kv, "file"), "a,b.img");
    CHECK_STR(keyval_get(&kv, "if"), "virtio");
    keyval_free(&kv);
    CHECK_EQ(keyval_parse(&kv, "unix:/tmp/s,server,nowait", "addr"), 0);
    CHECK_STR(keyval_get(&kv, "server"), "");
    CHECK_STR(keyval_get(&kv, "nowait"), "");
    keyval_free(&kv);
    CHECK(keyval_parse(&kv, "=x", NULL) < 0);
    bool b;
    CHECK_EQ(keyval_bool("on", &b), 0);
    CHECK(b);
    CHECK_EQ(keyval_bool("off", &b), 0);
    CHECK(!b);
    CHECK(keyval_bool("maybe", &b) < 0);
}

TEST(smp_forms)
{
    struct smp_config s;
    char err[256];
    CHECK_EQ(config_parse_smp("2", &s, err, sizeof err), 0);
    CHECK_EQ(s.cpus, 2);
    CHECK_EQ(s.cores, 2);
    CHECK_EQ(s.sockets, 1);
    CHECK_EQ(s.threads, 1);
    CHECK_EQ(s.maxcpus, 2);
    CHECK_EQ(config_parse_smp("2,cores=2", &s, err, sizeof err), 0);
    CHECK_EQ(s.sockets, 1);
    CHECK_EQ(config_parse_smp("4,sockets=2", &s, err, sizeof err), 0);
    CHECK_EQ(s.cores, 2);
    CHECK_EQ(config_parse_smp("8,sockets=2,cores=2", &s, err, sizeof err), 0);
    CHECK_EQ(s.threads, 2);
    CHECK_EQ(config_parse_smp("2,maxcpus=4", &s, err, sizeof err), 0);
    CHECK_EQ(s.cpus, 2);
    CHECK_EQ(s.maxcpus, 4);
    CHECK_EQ(s.cores, 4);
    CHECK_EQ(config_parse_smp("sockets=2,cores=2,threads=2", &s, err, sizeof err), 0);
    CHECK_EQ(s.cpus, 8);
    CHECK(config_parse_smp("0", &s, err, sizeof err) < 0);
    CHECK(strstr(err, "-smp") != NULL);
    CHECK(config_parse_smp("2,cores=3,threads=1,sockets=1", &s, err, sizeof err) < 0);
    CHECK(strstr(err, "topology") != NULL);
    CHECK(config_parse_smp("4,maxcpus=2", &s, err, sizeof err) < 0);
    CHECK(config_parse_smp("x", &s, err, sizeof err) < 0);
    CHECK(config_parse_smp("2,bogus=1", &s, err, sizeof err) < 0);
    CHECK(strstr(err, "bogus") != NULL);
}

TEST(chardev_forms)
{
    struct chardev_spec c;
    char err[256];
    CHECK_EQ(config_parse_chardev("stdio", &c, err, sizeof err), 0);
    CHECK_EQ(c.kind, CHARDEV_STDIO);
    CHECK_EQ(config_parse_chardev("file:/tmp/x.log", &c, err, sizeof err), 0);
    CHECK_EQ(c.kind, CHARDEV_FILE);
    CHECK_STR(c.path, "/tmp/x.log");
    free(c.path);
    CHECK_EQ(config_parse_chardev("unix:/tmp/s,server,nowait", &c, err, sizeof err), 0);
    CHECK_EQ(c.kind, CHARDEV_UNIX);
    CHECK(c.server);
    CHECK(!c.wait);
    free(c.path);
    CHECK_EQ(config_parse_chardev("tcp:127.0.0.1:4444,server=on,wait=off", &c, err, sizeof err), 0);
    CHECK_EQ(c.kind, CHARDEV_TCP);
    CHECK_EQ(c.port, 4444);
    CHECK_STR(c.host, "127.0.0.1");
    CHECK(c.server);
    CHECK(!c.wait);
    free(c.host);
    CHECK_EQ(config_parse_chardev("tcp::4444,server", &c, err, sizeof err), 0);
    CHECK_STR(c.host, "");
    CHECK(c.wait);
    free(c.host);
    CHECK(config_parse_chardev("tcp:host:99999", &c, err, sizeof err) < 0);
    CHECK(config_parse_chardev("bogus:thing", &c, err, sizeof err) < 0);
    CHECK(strstr(err, "-serial") != NULL);
    CHECK(config_parse_chardev("file:", &c, err, sizeof err) < 0);
    CHECK(config_parse_chardev("unix:/tmp/s,frob", &c, err, sizeof err) < 0);
}

TEST(full_command_lines)
{
    struct vm_config cfg;
    CHECK_EQ(parse(&cfg, ARGS("-m", "128m", "-smp", "2", "-cpu", "host", "-kernel", "/k",
                              "-append", "console=ttyS0", "-name", "myos", "-nographic",
                              "-enable-kvm", "-M", "pc,accel=kvm", "-no-reboot")), CONFIG_RUN);
    CHECK_EQ(cfg.ram_size, 128ULL << 20);
    CHECK_EQ(cfg.smp.cpus, 2);
    CHECK_STR(cfg.kernel, "/k");
    CHECK_STR(cfg.append, "console=ttyS0");
    CHECK_STR(cfg.name, "myos");
    CHECK(cfg.nographic);
    CHECK(cfg.no_reboot);
    CHECK_EQ(cfg.nr_serial, 1);
    CHECK_EQ(cfg.serial[0].kind, CHARDEV_STDIO);
    config_free(&cfg);

    CHECK_EQ(parse(&cfg, ARGS("--kernel", "/k", "-m", "size=2G", "-serial", "file:/tmp/a",
                              "-serial", "null", "-display", "none", "-device",
                              "isa-debug-exit,iobase=0xf4,iosize=0x04", "-D", "/tmp/l",
                              "-pidfile", "/tmp/p", "-machine", "type=pc-i440fx-7.2")), CONFIG_RUN);
    CHECK_EQ(cfg.ram_size, 2ULL << 30);
    CHECK_EQ(cfg.nr_serial, 2);
    CHECK_EQ(cfg.serial[1].kind, CHARDEV_NULL);
    CHECK(cfg.debug_exit.present);
    CHECK_EQ(cfg.debug_exit.iobase, 0xf4);
    CHECK_EQ(cfg.debug_exit.iosize, 4);
    CHECK_STR(cfg.logfile, "/tmp/l");
    CHECK_STR(cfg.machine, "pc");
    config_free(&cfg);
    CHECK_EQ(parse(&cfg, ARGS("-kernel", "/k", "-cpu", "host,kvm-pv-ipi=off,+kvm-pv-unhalt,-kvmclock")),
             CONFIG_RUN);
    CHECK_EQ(cfg.cpu_kvm_off, (1u << 11) | (1u << 0) | (1u << 3));
    CHECK_EQ(cfg.cpu_kvm_on, 1u << 7);
    config_free(&cfg);
    /* Defaults. */
    CHECK_EQ(parse(&cfg, ARGS("-kernel", "/k")), CONFIG_RUN);
    CHECK_EQ(cfg.ram_size, 128ULL << 20);
    CHECK_EQ(cfg.smp.cpus, 1);
    CHECK_STR(cfg.cpu_model, "host");
    config_free(&cfg);
}

TEST(bad_command_lines)
{
    struct vm_config cfg;
    const char *const *const bad[] = {
        ARGS("-frobnicate"),
        ARGS("-kernel", "/k", "-m", "12Q"),
        ARGS("-kernel", "/k", "-m", "0"),
        ARGS("-kernel", "/k", "-m"),
        ARGS("-kernel", "/k", "-m", "1000000G"),
        ARGS("-kernel", "/k", "-smp", "0"),
        ARGS("-kernel", "/k", "-smp", "2,cores=3,threads=1,sockets=1"),
        ARGS("-kernel", "/k", "-serial", "bogus:thing"),
        ARGS("-kernel", "/k", "-machine", "type=nosuchmachine"),
        ARGS("-kernel", "/k", "-machine", "q35"),
        ARGS("-kernel", "/k", "-machine", "pc,accel=tcg"),
        ARGS("-kernel", "/k", "-device", "nosuchdevice"),
        ARGS("-kernel", "/k", "-device", "isa-debug-exit,iosize=3"),
        ARGS("-kernel", "/k", "-cpu", "pentium"),
        ARGS("-kernel", "/k", "-cpu", "host,+x2apic"),
        ARGS("-kernel", "/k", "-cpu", "host,kvm-pv-ipi=maybe"),
        ARGS("-kernel", "/k", "-display", "gtk"),
        ARGS("-m", "128"),                              /* nothing to boot */
        ARGS("disk.img", "-kernel", "/k"),
        ARGS("-kernel", "/k", "-serial", "stdio", "-serial", "stdio"),
        ARGS("-kernel", "/k", "-daemonize"),            /* default serial is stdio */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        enum config_result r = parse(&cfg, bad[i]);
        config_free(&cfg);
        if (r != CONFIG_ERROR)
            printf("    case %zu (%s %s) was accepted\n", i, bad[i][0], bad[i][1] ? bad[i][1] : "");
        CHECK_EQ(r, CONFIG_ERROR);
    }
}

TEST(help_and_version)
{
    struct vm_config cfg;
    CHECK_EQ(parse(&cfg, ARGS("--version")), CONFIG_EXIT_OK);
    config_free(&cfg);
    CHECK_EQ(parse(&cfg, ARGS("-h")), CONFIG_EXIT_OK);
    config_free(&cfg);
    CHECK_EQ(parse(&cfg, ARGS("-M", "?")), CONFIG_EXIT_OK);
    config_free(&cfg);
    CHECK_EQ(parse(&cfg, ARGS("-cpu", "help")), CONFIG_EXIT_OK);
    config_free(&cfg);
    CHECK_EQ(parse(&cfg, ARGS("-device", "help")), CONFIG_EXIT_OK);
    config_free(&cfg);
}

int main(void)
{
    RUN(size_forms);
    RUN(keyval_forms);
    RUN(smp_forms);
    RUN(chardev_forms);
    RUN(full_command_lines);
    RUN(bad_command_lines);
    RUN(help_and_version);
    return test_summary();
}
