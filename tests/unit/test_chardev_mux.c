/* The chardev multiplexer driven through a fake back end (a socketpair the
 * test plays the user on), plus the registry's query-chardev view, the pipe
 * back end and the telnet input filter. */
#include "chardev/chardev_internal.h"
#include "chardev/registry.h"
#include "core/loop.h"
#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <unistd.h>

struct fake_fe {
    uint8_t got[16384];
    size_t len;
    size_t room;                /* bytes it accepts before refusing */
    enum chardev_event ev[16];
    unsigned nr_ev;
};

static size_t fe_input(void *opaque, const uint8_t *buf, size_t len)
{
    struct fake_fe *f = opaque;
    size_t n = len < f->room ? len : f->room;
    memcpy(f->got + f->len, buf, n);
    f->len += n;
    f->room -= n;
    return n;
}

static void fe_event(void *opaque, enum chardev_event ev)
{
    struct fake_fe *f = opaque;
    if (f->nr_ev < 16)
        f->ev[f->nr_ev++] = ev;
}

static void on_timer(void *opaque, int fd, uint32_t events)
{
    uint64_t v;
    ssize_t r = read(fd, &v, sizeof v);
    (void)r;
    loop_quit(opaque);
}

/* Run the loop for about ms milliseconds. */
static void spin(struct loop *l, int ms)
{
    int t = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
    struct itimerspec its = { .it_value = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L } };
    timerfd_settime(t, 0, &its, NULL);
    loop_add_fd(l, t, EPOLLIN, on_timer, l);
    loop_run(l);
    loop_del_fd(l, t);
    close(t);
}

/* Everything the back end wrote so far (the user's screen). */
static size_t screen(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    return n;
}

static void put(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len) {
        ssize_t r = write(fd, p, len);
        if (r <= 0)
            return;
        p += r;
        len -= (size_t)r;
    }
}

struct rig {
    struct loop *loop;
    int user;                   /* the test's end of the socketpair */
    struct chardev_mux *mux;
    struct chardev *fe[2];
    struct fake_fe f[2];
    int quits;
};

static void rig_quit(void *opaque) { ((struct rig *)opaque)->quits++; }

static int rig_init(struct rig *r)
{
    memset(r, 0, sizeof *r);
    int sv[2];
    char err[128];
    r->loop = loop_new(NULL, NULL);
    if (!r->loop || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return -1;
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    struct chardev *be = chardev_alloc("mux0", r->loop, err, sizeof err);
    if (!be)
        return -1;
    be->kind = CHARDEV_PIPE;
    be->in_fd = be->out_fd = sv[0];
    be->own_in = true;
    be->nonblocking_out = true;
    be->connected = true;
    be->hooks = (struct chardev_hooks){ rig_quit, r };
    r->user = sv[1];
    r->mux = chardev_mux_new(be);
    for (int i = 0; i < 2; i++) {
        r->fe[i] = chardev_mux_frontend(r->mux, (unsigned)i);
        if (!r->fe[i])
            return -1;
        r->f[i].room = sizeof r->f[i].got;
        chardev_set_input(r->fe[i], fe_input, &r->f[i]);
        chardev_set_event(r->fe[i], fe_event, &r->f[i]);
    }
    return 0;
}

static void rig_fini(struct rig *r)
{
    chardev_mux_free(r->mux);
    close(r->user);
    loop_free(r->loop);
}

TEST(input_goes_to_focused_frontend)
{
    struct rig r;
    CHECK_EQ(rig_init(&r), 0);
    /* Front end 0 has the focus and got OPENED; front end 1 nothing yet. */
    CHECK_EQ(chardev_mux_focus(r.mux), 0);
    CHECK_EQ(r.f[0].nr_ev, 1);
    CHECK_EQ(r.f[0].ev[0], CHARDEV_EVENT_OPENED);
    CHECK_EQ(r.f[1].nr_ev, 0);
    put(r.user, "abc", 3);
    spin(r.loop, 30);
    CHECK_EQ(r.f[0].len, 3);
    CHECK(!memcmp(r.f[0].got, "abc", 3));
    CHECK_EQ(r.f[1].len, 0);
    /* Ctrl-a c: front end 1 gets the focus, its first OPENED, and input. */
    put(r.user, "\x01" "cxyz", 5);
    spin(r.loop, 30);
    CHECK_EQ(chardev_mux_focus(r.mux), 1);
    CHECK_EQ(r.f[0].len, 3);
    CHECK_EQ(r.f[1].len, 3);
    CHECK(!memcmp(r.f[1].got, "xyz", 3));
    CHECK_EQ(r.f[0].nr_ev, 2);
    CHECK_EQ(r.f[0].ev[1], CHARDEV_EVENT_FOCUS_OUT);
    CHECK_EQ(r.f[1].nr_ev, 1);
    CHECK_EQ(r.f[1].ev[0], CHARDEV_EVENT_OPENED);
    /* And back, with the escape split across two reads. */
    put(r.user, "\x01", 1);
    spin(r.loop, 20);
    put(r.user, "c1", 2);
    spin(r.loop, 30);
    CHECK_EQ(chardev_mux_focus(r.mux), 0);
    CHECK_EQ(r.f[0].len, 4);
    CHECK_EQ(r.f[0].got[3], '1');
    CHECK_EQ(r.f[0].ev[2], CHARDEV_EVENT_FOCUS_IN);
    CHECK_EQ(r.f[1].ev[1], CHARDEV_EVENT_FOCUS_OUT);
    /* Nothing reached the screen: QEMU prints nothing on a switch. */
    char out[256];
    CHECK_EQ(screen(r.user, out, sizeof out), 0);
    rig_fini(&r);
}

TEST(escapes)
{
    struct rig r;
    CHECK_EQ(rig_init(&r), 0);
    char out[2048];
    /* Ctrl-a Ctrl-a: one literal Ctrl-a; unknown escapes are swallowed. */
    put(r.user, "a\x01\x01" "b\x01zc", 7);
    spin(r.loop, 30);
    CHECK_EQ(r.f[0].len, 4);
    CHECK(!memcmp(r.f[0].got, "a\x01" "bc", 4));
    /* Ctrl-a h: QEMU's help on the back end. */
    put(r.user, "\x01h", 2);
    spin(r.loop, 30);
    screen(r.user, out, sizeof out);
    CHECK(strstr(out, "C-a x    exit emulator\n\r") != NULL);
    CHECK(strstr(out, "C-a c    switch between console and monitor") != NULL);
    CHECK_EQ(r.f[0].len, 4);
    /* Ctrl-a b: a break for the focused front end. */
    put(r.user, "\x01" "b", 2);
    spin(r.loop, 30);
    CHECK_EQ(r.f[0].ev[r.f[0].nr_ev - 1], CHARDEV_EVENT_BREAK);
    /* Ctrl-a x: "QEMU: Terminated" and the quit hook. */
    put(r.user, "\x01x", 2);
    spin(r.loop, 30);
    CHECK_EQ(r.quits, 1);
    screen(r.user, out, sizeof out);
    CHECK_STR(out, "QEMU: Terminated\n\r");
    CHECK_EQ(r.f[0].len, 4);
    rig_fini(&r);
}

TEST(output_interleaving_and_timestamps)
{
    struct rig r;
    CHECK_EQ(rig_init(&r), 0);
    char out[512];
    /* Every front end's output reaches the back end, in order, whoever has
     * the focus. */
    chardev_write(r.fe[0], "serial ", 7);
    chardev_write(r.fe[1], "(qemu) ", 7);
    chardev_write(r.fe[0], "more\n", 5);
    screen(r.user, out, sizeof out);
    CHECK_STR(out, "serial (qemu) more\n");
    /* Ctrl-a t: each line starts with [hh:mm:ss.mmm]. */
    put(r.user, "\x01t", 2);
    spin(r.loop, 30);
    chardev_write(r.fe[0], "one\ntwo\n", 8);
    screen(r.user, out, sizeof out);
    CHECK(!strncmp(out, "[00:00:00.", 10));
    CHECK(strstr(out, "] one\n[00:00:00.") != NULL);
    CHECK(strstr(out, "] two\n") != NULL);
    put(r.user, "\x01t", 2);
    spin(r.loop, 30);
    chardev_write(r.fe[1], "plain\n", 6);
    screen(r.user, out, sizeof out);
    CHECK_STR(out, "plain\n");
    rig_fini(&r);
}

TEST(flow_control)
{
    struct rig r;
    CHECK_EQ(rig_init(&r), 0);
    /* Front end 0 takes nothing: the bytes wait, in order, none lost,
     * and the back end stops reading once the queue is full. */
    r.f[0].room = 0;
    static uint8_t big[10000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)('a' + i % 26);
    put(r.user, big, sizeof big);
    spin(r.loop, 50);
    CHECK_EQ(r.f[0].len, 0);
    CHECK_EQ(r.f[1].len, 0);
    /* It takes 100 at a time, signalling room each time (as the UART's
     * rx_ready does). */
    for (int round = 0; round < 200 && r.f[0].len < sizeof big; round++) {
        r.f[0].room = 100;
        chardev_input_ready(r.fe[0]);
        spin(r.loop, 5);
    }
    CHECK_EQ(r.f[0].len, sizeof big);
    CHECK(!memcmp(r.f[0].got, big, sizeof big));
    /* A blocked front end does not block the escapes behind its bytes:
     * Ctrl-a c moves on, and the other front end gets its input. */
    r.f[0].room = 0;
    r.f[0].len = 0;
    put(r.user, "held\x01" "cnew", 9);
    spin(r.loop, 30);
    CHECK_EQ(r.f[0].len, 0);
    CHECK_EQ(r.f[1].len, 3);
    CHECK(!memcmp(r.f[1].got, "new", 3));
    r.f[0].room = 100;
    chardev_input_ready(r.fe[0]);
    spin(r.loop, 30);
    CHECK_EQ(r.f[0].len, 4);
    CHECK(!memcmp(r.f[0].got, "held", 4));
    rig_fini(&r);
}

TEST(frontend_detach)
{
    struct rig r;
    CHECK_EQ(rig_init(&r), 0);
    /* chardev_close on a front-end handle only detaches it. */
    chardev_close(r.fe[0]);
    put(r.user, "zz", 2);
    spin(r.loop, 30);
    CHECK_EQ(r.f[0].len, 0);
    CHECK(chardev_mux_frontend(r.mux, CHARDEV_MUX_MAX) == NULL);
    rig_fini(&r);
}

struct listing {
    char text[2048];
};

static void list_one(void *ctx, const char *label, const char *filename, bool open)
{
    struct listing *l = ctx;
    size_t n = strlen(l->text);
    snprintf(l->text + n, sizeof l->text - n, "%s=%s%s;", label, filename, open ? "*" : "");
}

TEST(registry_listing)
{
    char dir[] = "/tmp/kvmbox-mux-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[64], file[64], err[256];
    snprintf(path, sizeof path, "%s/sock", dir);
    snprintf(file, sizeof file, "%s/out", dir);
    struct loop *loop = loop_new(NULL, NULL);
    struct chardev_registry *reg = chardev_registry_new();
    CHECK(loop && reg);
    struct chardev_spec specs[] = {
        { .id = "n0", .kind = CHARDEV_NULL, .signal = -1 },
        { .id = "f0", .kind = CHARDEV_FILE, .path = file, .signal = -1 },
        { .id = "m0", .kind = CHARDEV_NULL, .mux = true, .signal = -1 },
        { .id = "s0", .kind = CHARDEV_UNIX, .path = path, .server = true, .signal = -1 },
    };
    for (size_t i = 0; i < 4; i++)
        CHECK_EQ(chardev_registry_open(reg, &specs[i], loop, 0, NULL, err, sizeof err), 0);
    CHECK(chardev_registry_open(reg, &specs[0], loop, 0, NULL, err, sizeof err) < 0);
    CHECK(strstr(err, "duplicate") != NULL);
    struct listing l = { "" };
    chardev_registry_foreach(reg, list_one, &l);
    char want[512];
    snprintf(want, sizeof want, "n0=null;f0=file;m0=mux;m0-base=null*;"
             "s0=disconnected:unix:%s,server=on;", path);
    CHECK_STR(l.text, want);
    /* Front ends: once for a plain chardev, up to four for a mux. */
    CHECK(chardev_registry_attach(reg, "n0", err, sizeof err) != NULL);
    CHECK(chardev_registry_attach(reg, "n0", err, sizeof err) == NULL);
    CHECK(strstr(err, "in use") != NULL);
    CHECK(chardev_registry_attach(reg, "nosuch", err, sizeof err) == NULL);
    for (int i = 0; i < CHARDEV_MUX_MAX; i++)
        CHECK(chardev_registry_attach(reg, "m0", err, sizeof err) != NULL);
    CHECK(chardev_registry_attach(reg, "m0", err, sizeof err) == NULL);
    CHECK(chardev_registry_attach(reg, "s0", err, sizeof err) != NULL);
    /* A client connects: the filename is the connected address. */
    int cfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un un = { .sun_family = AF_UNIX };
    snprintf(un.sun_path, sizeof un.sun_path, "%s", path);
    CHECK_EQ(connect(cfd, (struct sockaddr *)&un, sizeof un), 0);
    spin(loop, 30);
    l.text[0] = '\0';
    chardev_registry_foreach(reg, list_one, &l);
    snprintf(want, sizeof want, "n0=null*;f0=file;m0=mux*;m0-base=null*;s0=unix:%s,server=on*;",
             path);
    CHECK_STR(l.text, want);
    close(cfd);
    spin(loop, 30);
    l.text[0] = '\0';
    chardev_registry_foreach(reg, list_one, &l);
    CHECK(strstr(l.text, "s0=disconnected:unix:") != NULL);
    chardev_registry_free(reg);
    loop_free(loop);
    unlink(file);
    rmdir(dir);
}

TEST(tcp_filename)
{
    struct loop *loop = loop_new(NULL, NULL);
    struct chardev_registry *reg = chardev_registry_new();
    char err[256];
    struct chardev_spec spec = { .id = "t0", .kind = CHARDEV_TCP, .host = "127.0.0.1",
                                 .port = 0, .server = true, .signal = -1 };
    /* Port 0 is refused by the parser but lets the test bind anywhere. */
    CHECK_EQ(chardev_registry_open(reg, &spec, loop, 0, NULL, err, sizeof err), 0);
    struct chardev *c = chardev_registry_attach(reg, "t0", err, sizeof err);
    CHECK(c != NULL);
    struct sockaddr_in sin;
    socklen_t len = sizeof sin;
    CHECK_EQ(getsockname(c->listen_fd, (struct sockaddr *)&sin, &len), 0);
    int cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK_EQ(connect(cfd, (struct sockaddr *)&sin, sizeof sin), 0);
    spin(loop, 30);
    char name[256];
    chardev_filename(c, name, sizeof name);
    char want[64];
    snprintf(want, sizeof want, "tcp:127.0.0.1:%u,server=on <-> 127.0.0.1:", ntohs(sin.sin_port));
    CHECK(!strncmp(name, want, strlen(want)));
    close(cfd);
    chardev_registry_free(reg);
    loop_free(loop);
}

TEST(pipe_backend)
{
    char dir[] = "/tmp/kvmbox-pipe-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char base[128], in[140], out[140], err[256];
    snprintf(base, sizeof base, "%s/p", dir);
    snprintf(in, sizeof in, "%s.in", base);
    snprintf(out, sizeof out, "%s.out", base);
    CHECK_EQ(mkfifo(in, 0600), 0);
    CHECK_EQ(mkfifo(out, 0600), 0);
    struct loop *loop = loop_new(NULL, NULL);
    struct chardev_spec spec = { .id = "p0", .kind = CHARDEV_PIPE, .path = base, .signal = -1 };
    struct chardev *c = chardev_open(&spec, "p0", loop, 0, NULL, err, sizeof err);
    CHECK(c != NULL);
    struct fake_fe f = { .room = 100 };
    chardev_set_input(c, fe_input, &f);
    int win = open(in, O_WRONLY | O_CLOEXEC), rout = open(out, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    CHECK(win >= 0 && rout >= 0);
    put(win, "ping", 4);
    spin(loop, 30);
    CHECK_EQ(f.len, 4);
    CHECK(!memcmp(f.got, "ping", 4));
    chardev_write(c, "pong", 4);
    char buf[16];
    CHECK_EQ(screen(rout, buf, sizeof buf), 4);
    CHECK_STR(buf, "pong");
    close(win);
    close(rout);
    chardev_close(c);
    /* Missing files: an error naming the option. */
    spec.path = "/nonexistent/p";
    spec.option = "-chardev";
    CHECK(chardev_open(&spec, "p1", loop, 0, NULL, err, sizeof err) == NULL);
    CHECK(strstr(err, "-chardev") != NULL);
    loop_free(loop);
    unlink(in);
    unlink(out);
    rmdir(dir);
}

TEST(telnet_filter)
{
    struct chardev c = { .telnet = true };
    uint8_t buf[] = { 'a', 0xFF, 0xFB, 0x01, 'b', 0xFF, 0xFF, 'c', 0xFF };
    size_t n = chardev_telnet_filter(&c, buf, sizeof buf);
    CHECK_EQ(n, 4);
    CHECK(!memcmp(buf, "ab\xFF" "c", 4));
    uint8_t rest[] = { 0xFD, 0x03, 'd' };     /* the IAC command continues */
    n = chardev_telnet_filter(&c, rest, sizeof rest);
    CHECK_EQ(n, 1);
    CHECK_EQ(rest[0], 'd');
}

int main(void)
{
    RUN(input_goes_to_focused_frontend);
    RUN(escapes);
    RUN(output_interleaving_and_timestamps);
    RUN(flow_control);
    RUN(frontend_detach);
    RUN(registry_listing);
    RUN(tcp_filename);
    RUN(pipe_backend);
    RUN(telnet_filter);
    return test_summary();
}
