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
    int saved[2];
    test_redirect(saved, NULL, NULL);
    enum config_result r = config_parse(cfg, argc, argv);
    test_restore(saved);
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
    CHECK_EQ(config_parse_chardev("pipe:/tmp/p", &c, err, sizeof err), 0);
    CHECK_EQ(c.kind, CHARDEV_PIPE);
    CHECK_STR(c.path, "/tmp/p");
    config_free_chardev(&c);
    CHECK_EQ(config_parse_chardev("telnet::4444,server,nowait", &c, err, sizeof err), 0);
    CHECK_EQ(c.kind, CHARDEV_TCP);
    CHECK(c.telnet && c.server && !c.wait);
    config_free_chardev(&c);
    CHECK(config_parse_chardev("pipe:", &c, err, sizeof err) < 0);
    CHECK(config_parse_chardev("vc", &c, err, sizeof err) < 0);
    CHECK(config_parse_chardev_compat("-monitor", "bogus", &c, err, sizeof err) < 0);
    CHECK(strstr(err, "-monitor") != NULL);
}

TEST(chardev_option_forms)
{
    struct chardev_spec c;
    char err[256];
    CHECK_EQ(config_parse_chardev_opts("stdio,id=c0,signal=off,mux=on", &c, err, sizeof err), 0);
    CHECK_EQ(c.kind, CHARDEV_STDIO);
    CHECK_STR(c.id, "c0");
    CHECK_EQ(c.signal, 0);
    CHECK(c.mux);
    config_free_chardev(&c);
    CHECK_EQ(config_parse_chardev_opts("socket,id=m,path=/tmp/s,server=on,wait=off", &c, err,
                                       sizeof err), 0);
    CHECK_EQ(c.kind, CHARDEV_UNIX);
    CHECK_STR(c.path, "/tmp/s");
    CHECK(c.server && !c.wait);
    config_free_chardev(&c);
    CHECK_EQ(config_parse_chardev_opts("socket,id=t,host=127.0.0.1,port=4444,server,nowait,telnet=on",
                                       &c, err, sizeof err), 0);
    CHECK_EQ(c.kind, CHARDEV_TCP);
    CHECK_STR(c.host, "127.0.0.1");
    CHECK_EQ(c.port, 4444);
    CHECK(c.server && !c.wait && c.telnet);
    config_free_chardev(&c);
    CHECK_EQ(config_parse_chardev_opts("socket,id=t,port=5555", &c, err, sizeof err), 0);
    CHECK_STR(c.host, "");
    CHECK(!c.server && c.wait);
    config_free_chardev(&c);
    CHECK_EQ(config_parse_chardev_opts("file,id=f,path=/tmp/x,logfile=/tmp/l,logappend=on", &c,
                                       err, sizeof err), 0);
    CHECK_EQ(c.kind, CHARDEV_FILE);
    CHECK_STR(c.logfile, "/tmp/l");
    CHECK(c.logappend);
    config_free_chardev(&c);
    CHECK_EQ(config_parse_chardev_opts("pipe,id=p,path=/tmp/p", &c, err, sizeof err), 0);
    CHECK_EQ(c.kind, CHARDEV_PIPE);
    config_free_chardev(&c);
    CHECK_EQ(config_parse_chardev_opts("pty,id=p", &c, err, sizeof err), 0);
    config_free_chardev(&c);
    CHECK_EQ(config_parse_chardev_opts("null,id=n", &c, err, sizeof err), 0);
    CHECK_EQ(c.kind, CHARDEV_NULL);
    config_free_chardev(&c);

    static const char *const bad[] = {
        "stdio",                        /* no id */
        "stdio,id=",
        "stdio,id=0abc",                /* not an identifier */
        "stdio,id=a b",
        "id=x",                         /* no backend */
        "bogus,id=x",
        "vc,id=x",
        "stdio,id=x,signal=maybe",
        "stdio,id=x,path=/tmp/p",       /* stdio takes no path */
        "stdio,id=x,mux=maybe",
        "file,id=x",                    /* no path */
        "pipe,id=x,path=",
        "socket,id=x",                  /* neither path nor port */
        "socket,id=x,path=/s,port=4",
        "socket,id=x,port=0",
        "socket,id=x,host=h,port=70000",
        "socket,id=x,path=/s,telnet=on",
        "socket,id=x,path=/s,frob=1",
        "null,id=x,logfile=",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        int r = config_parse_chardev_opts(bad[i], &c, err, sizeof err);
        if (r == 0)
            printf("    '%s' was accepted\n", bad[i]);
        CHECK(r < 0);
        CHECK(strstr(err, "-chardev") != NULL);
        CHECK(strchr(err, '\n') == NULL);
    }
}

TEST(uuid_forms)
{
    uint8_t u[16];
    CHECK_EQ(config_parse_uuid("550e8400-e29b-41d4-a716-446655440000", u), 0);
    CHECK_EQ(u[0], 0x55);
    CHECK_EQ(u[3], 0x00);
    CHECK_EQ(u[4], 0xe2);
    CHECK_EQ(u[15], 0x00);
    CHECK_EQ(u[10], 0x44);
    CHECK_EQ(config_parse_uuid("ABCDEF01-2345-6789-abcd-ef0123456789", u), 0);
    CHECK_EQ(u[0], 0xab);
    CHECK_EQ(u[15], 0x89);
    CHECK(config_parse_uuid("550e8400e29b41d4a716446655440000", u) < 0);
    CHECK(config_parse_uuid("550e8400-e29b-41d4-a716-44665544000", u) < 0);
    CHECK(config_parse_uuid("550e8400-e29b-41d4-a716-4466554400000", u) < 0);
    CHECK(config_parse_uuid("550e8400-e29b-41d4-a716_446655440000", u) < 0);
    CHECK(config_parse_uuid("g50e8400-e29b-41d4-a716-446655440000", u) < 0);
    CHECK(config_parse_uuid("", u) < 0);
}

/* The monitor/serial picture a command line gives. */
TEST(monitor_and_serial_lines)
{
    struct vm_config cfg;
    const struct chardev_spec *c;
    /* -nographic alone: COM1 and an HMP monitor share stdio through a mux. */
    CHECK_EQ(parse(&cfg, ARGS("-kernel", "/k", "-nographic")), CONFIG_RUN);
    CHECK_EQ(cfg.nr_serial, 1);
    CHECK_STR(cfg.serial[0], "serial0");
    CHECK((c = config_find_chardev(&cfg, "serial0")) != NULL);
    CHECK_EQ(c->kind, CHARDEV_STDIO);
    CHECK(c->mux);
    CHECK_EQ(cfg.nr_monitors, 1);
    CHECK_STR(cfg.monitors[0].chardev, "serial0");
    CHECK_EQ(cfg.monitors[0].mode, CONFIG_MONITOR_READLINE);
    CHECK_EQ(cfg.nr_chardevs, 1);
    config_free(&cfg);
    /* -serial mon:stdio is the same. */
    CHECK_EQ(parse(&cfg, ARGS("-kernel", "/k", "-serial", "mon:stdio")), CONFIG_RUN);
    CHECK((c = config_find_chardev(&cfg, "serial0")) != NULL);
    CHECK(c->mux && c->kind == CHARDEV_STDIO);
    CHECK_EQ(cfg.nr_monitors, 1);
    config_free(&cfg);
    /* Without -nographic: COM1 on stdio, no monitor. */
    CHECK_EQ(parse(&cfg, ARGS("-kernel", "/k")), CONFIG_RUN);
    CHECK_EQ(cfg.nr_monitors, 0);
    CHECK((c = config_find_chardev(&cfg, cfg.serial[0])) != NULL);
    CHECK(c->kind == CHARDEV_STDIO && !c->mux);
    for (unsigned i = 0; i < 16; i++)
        CHECK_EQ(cfg.uuid[i], 0);
    config_free(&cfg);
    /* -nographic with a monitor elsewhere: COM1 on stdio alone. */
    CHECK_EQ(parse(&cfg, ARGS("-kernel", "/k", "-nographic", "-monitor",
                              "unix:/tmp/m,server,nowait")), CONFIG_RUN);
    CHECK((c = config_find_chardev(&cfg, cfg.serial[0])) != NULL);
    CHECK(c->kind == CHARDEV_STDIO && !c->mux);
    CHECK_EQ(cfg.nr_monitors, 1);
    CHECK_STR(cfg.monitors[0].chardev, "compat_monitor0");
    CHECK((c = config_find_chardev(&cfg, "compat_monitor0")) != NULL);
    CHECK(c->kind == CHARDEV_UNIX && c->server && !c->wait);
    config_free(&cfg);
    /* -nographic with -serial: the monitor gets stdio (QEMU). */
    CHECK_EQ(parse(&cfg, ARGS("-kernel", "/k", "-nographic", "-serial", "file:/tmp/x")),
             CONFIG_RUN);
    CHECK_EQ(cfg.nr_monitors, 1);
    CHECK((c = config_find_chardev(&cfg, cfg.monitors[0].chardev)) != NULL);
    CHECK_EQ(c->kind, CHARDEV_STDIO);
    config_free(&cfg);
    /* -nographic -monitor none: COM1 on stdio, no monitor. */
    CHECK_EQ(parse(&cfg, ARGS("-kernel", "/k", "-nographic", "-monitor", "none")), CONFIG_RUN);
    CHECK_EQ(cfg.nr_monitors, 0);
    CHECK(!config_find_chardev(&cfg, cfg.serial[0])->mux);
    config_free(&cfg);
    /* -qmp, -qmp-pretty, -mon, -chardev, -serial chardev:, -uuid. */
    CHECK_EQ(parse(&cfg, ARGS("-kernel", "/k", "-qmp", "tcp:127.0.0.1:4444,server,nowait",
                              "-qmp-pretty", "unix:/tmp/q,server=on,wait=off",
                              "-chardev", "socket,id=mon1,path=/tmp/m1,server=on,wait=off",
                              "-mon", "chardev=mon1,mode=control,pretty=on",
                              "-chardev", "pty,id=c1", "-serial", "chardev:c1",
                              "-monitor", "telnet:127.0.0.1:5555,server,nowait",
                              "-mon", "mon1x", "-chardev", "null,id=mon1x",
                              "-uuid", "550e8400-e29b-41d4-a716-446655440000")), CONFIG_RUN);
    CHECK_EQ(cfg.nr_monitors, 5);
    CHECK_STR(cfg.monitors[0].chardev, "compat_monitor0");
    CHECK_EQ(cfg.monitors[0].mode, CONFIG_MONITOR_CONTROL);
    CHECK(!cfg.monitors[0].pretty);
    CHECK_STR(cfg.monitors[1].chardev, "compat_monitor1");
    CHECK(cfg.monitors[1].pretty);
    CHECK_STR(cfg.monitors[2].chardev, "mon1");
    CHECK(cfg.monitors[2].pretty);
    CHECK_EQ(cfg.monitors[2].mode, CONFIG_MONITOR_CONTROL);
    CHECK_STR(cfg.monitors[3].chardev, "compat_monitor2");
    CHECK_EQ(cfg.monitors[3].mode, CONFIG_MONITOR_READLINE);
    CHECK((c = config_find_chardev(&cfg, "compat_monitor2")) != NULL);
    CHECK(c->telnet && c->kind == CHARDEV_TCP);
    CHECK_STR(cfg.monitors[4].chardev, "mon1x");
    CHECK_STR(cfg.serial[0], "c1");
    CHECK_EQ(cfg.uuid[0], 0x55);
    CHECK_EQ(cfg.uuid[15], 0x00);
    config_free(&cfg);
    /* A mux shared by a serial port and two monitors. */
    CHECK_EQ(parse(&cfg, ARGS("-kernel", "/k", "-chardev", "stdio,id=s,mux=on",
                              "-serial", "chardev:s", "-mon", "s", "-mon", "chardev=s,mode=control")),
             CONFIG_RUN);
    CHECK_EQ(cfg.nr_monitors, 2);
    config_free(&cfg);
    /* -serial none keeps its slot; -serial mon:pty. */
    CHECK_EQ(parse(&cfg, ARGS("-kernel", "/k", "-serial", "none", "-serial", "mon:pty")),
             CONFIG_RUN);
    CHECK_EQ(cfg.nr_serial, 2);
    CHECK(cfg.serial[0] == NULL);
    CHECK_STR(cfg.serial[1], "serial1");
    CHECK(config_find_chardev(&cfg, "serial1")->mux);
    config_free(&cfg);
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
    CHECK_EQ(config_find_chardev(&cfg, cfg.serial[0])->kind, CHARDEV_STDIO);
    config_free(&cfg);

    CHECK_EQ(parse(&cfg, ARGS("--kernel", "/k", "-m", "size=2G", "-serial", "file:/tmp/a",
                              "-serial", "null", "-display", "none", "-device",
                              "isa-debug-exit,iobase=0xf4,iosize=0x04", "-D", "/tmp/l",
                              "-pidfile", "/tmp/p", "-machine", "type=pc-i440fx-7.2")), CONFIG_RUN);
    CHECK_EQ(cfg.ram_size, 2ULL << 30);
    CHECK_EQ(cfg.nr_serial, 2);
    CHECK_EQ(config_find_chardev(&cfg, cfg.serial[1])->kind, CHARDEV_NULL);
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

/* -drive: qcow2's cache sizes and file.locking (QEMU's spellings), and
 * their bad forms. */
TEST(drive_cache_sizes)
{
    struct vm_config cfg;
    CHECK_EQ(parse(&cfg, ARGS("-kernel", "/k", "-drive",
                              "file=/d.qcow2,if=virtio,format=qcow2,l2-cache-size=4M,"
                              "refcount-cache-size=262144")), CONFIG_RUN);
    CHECK_EQ(cfg.nr_drives, 1);
    CHECK_EQ(cfg.drives[0].l2_cache_size, 4ULL << 20);
    CHECK_EQ(cfg.drives[0].refcount_cache_size, 262144);
    config_free(&cfg);
    CHECK_EQ(parse(&cfg, ARGS("-kernel", "/k", "-drive", "file=/d.qcow2,if=virtio")), CONFIG_RUN);
    CHECK_EQ(cfg.drives[0].l2_cache_size, 0);
    CHECK(!cfg.drives[0].no_locking);
    config_free(&cfg);
    CHECK_EQ(parse(&cfg, ARGS("-kernel", "/k", "-drive", "file=/d,if=virtio,file.locking=off")),
             CONFIG_RUN);
    CHECK(cfg.drives[0].no_locking);
    config_free(&cfg);
    const char *bad[] = { "file=/d,if=virtio,l2-cache-size=lots", "file=/d,if=virtio,l2-cache-size=0",
                          "file=/d,if=virtio,refcount-cache-size=2T",
                          "file=/d,if=virtio,file.locking=maybe" };
    for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_EQ(parse(&cfg, ARGS("-kernel", "/k", "-drive", bad[i])), CONFIG_ERROR);
        config_free(&cfg);
    }
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
        ARGS("-kernel", "/k", "-nographic", "-daemonize"),
        /* -chardev, -serial chardev:, -mon, -monitor, -qmp, -uuid */
        ARGS("-kernel", "/k", "-chardev", "null,id=a", "-chardev", "pty,id=a"),
        ARGS("-kernel", "/k", "-chardev", "null,id=serial0"),   /* -serial stdio's id */
        ARGS("-kernel", "/k", "-chardev", "bogus,id=a"),
        ARGS("-kernel", "/k", "-serial", "chardev:nosuch"),
        ARGS("-kernel", "/k", "-serial", "chardev:"),
        ARGS("-kernel", "/k", "-chardev", "null,id=a", "-serial", "chardev:a",
             "-serial", "chardev:a"),                   /* in use, not a mux */
        ARGS("-kernel", "/k", "-chardev", "null,id=a,mux=on", "-serial", "chardev:a",
             "-serial", "chardev:a", "-serial", "chardev:a", "-serial", "chardev:a",
             "-mon", "a"),                              /* five front ends */
        ARGS("-kernel", "/k", "-serial", "mon:none"),
        ARGS("-kernel", "/k", "-serial", "mon:bogus"),
        ARGS("-kernel", "/k", "-mon", "nosuch"),
        ARGS("-kernel", "/k", "-mon", "chardev="),
        ARGS("-kernel", "/k", "-chardev", "null,id=a", "-mon", "a,mode=bogus"),
        ARGS("-kernel", "/k", "-chardev", "null,id=a", "-mon", "a,pretty=on"),
        ARGS("-kernel", "/k", "-chardev", "null,id=a", "-mon", "a,frob=1"),
        ARGS("-kernel", "/k", "-monitor", "bogus"),
        ARGS("-kernel", "/k", "-monitor", "stdio"),     /* COM1 is on stdio too */
        ARGS("-kernel", "/k", "-monitor", "stdio", "-serial", "stdio"),
        ARGS("-kernel", "/k", "-nographic", "-monitor", "stdio"),
        ARGS("-kernel", "/k", "-nographic", "-serial", "stdio"),  /* the monitor takes stdio */
        ARGS("-kernel", "/k", "-serial", "null", "-qmp", "stdio", "-monitor", "stdio"),
        ARGS("-kernel", "/k", "-qmp", "tcp:h:0,server"),
        ARGS("-kernel", "/k", "-qmp"),
        ARGS("-kernel", "/k", "-uuid", "1234"),
        ARGS("-kernel", "/k", "-uuid", "550e8400-e29b-41d4-a716-44665544000g"),
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
    RUN(chardev_option_forms);
    RUN(uuid_forms);
    RUN(monitor_and_serial_lines);
    RUN(full_command_lines);
    RUN(drive_cache_sizes);
    RUN(bad_command_lines);
    RUN(help_and_version);
    return test_summary();
}
