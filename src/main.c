/* kvmbox: command line -> struct vm_config -> machine -> VM -> run. */
#include "arch/x86/machine_pc.h"
#include "config/config.h"
#include "core/log.h"
#include "core/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* -daemonize: fork before KVM is opened (a KVM VM belongs to the process
 * that created it); the parent waits until the child reports that start-up
 * succeeded, so errors still reach the terminal and the exit status. */
static int daemonize_start(int *report_fd)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return -errno;
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid > 0) {
        close(p[1]);
        unsigned char status = 1;
        ssize_t n;
        do {
            n = read(p[0], &status, 1);
        } while (n < 0 && errno == EINTR);
        _exit(n == 1 ? status : 1);
    }
    close(p[0]);
    setsid();
    *report_fd = p[1];
    return 0;
}

static void daemonize_finish(int report_fd, unsigned char status)
{
    if (report_fd < 0)
        return;
    if (status == 0) {
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null >= 0) {
            dup2(null, 0);
            dup2(null, 1);
            dup2(null, 2);
            close(null);
        }
    }
    ssize_t r = write(report_fd, &status, 1);
    (void)r;
    close(report_fd);
}

/* The pid file is locked while kvmbox runs (as QEMU does), so a second
 * instance with the same file refuses to start. */
static int pidfile_write(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        log_err("-pidfile: cannot open '%s': %s", path, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        log_err("-pidfile: '%s' is locked by another running instance", path);
        close(fd);
        return -1;
    }
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%d\n", (int)getpid());
    if (ftruncate(fd, 0) < 0 || write(fd, buf, (size_t)n) != n) {
        log_err("-pidfile: cannot write '%s': %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;      /* kept open: holds the lock */
}

int main(int argc, char **argv)
{
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);

    /* A socket peer that goes away must not kill the VM: writes to it
     * fail with EPIPE instead (and its output is dropped). */
    signal(SIGPIPE, SIG_IGN);

    struct vm_config cfg;
    switch (config_parse(&cfg, argc, argv)) {
    case CONFIG_EXIT_OK:
        config_free(&cfg);
        return 0;
    case CONFIG_ERROR:
        config_free(&cfg);
        return 2;
    case CONFIG_RUN:
        break;
    }

    int status = 1;
    int logfd = -1, pidfd = -1, report_fd = -1;
    if (cfg.logfile) {
        logfd = open(cfg.logfile, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
        if (logfd < 0) {
            fprintf(stderr, "kvmbox: -D: cannot open '%s': %s\n", cfg.logfile, strerror(errno));
            config_free(&cfg);
            return 2;
        }
        log_set_fd(logfd);
        log_set_level(LOG_INFO);
    }

    char err[512] = "";
    /* Files first: a missing or bad kernel is a command-line error (2). */
    struct pc_machine *pc = pc_prepare(&cfg, err, sizeof err);
    if (!pc) {
        fprintf(stderr, "kvmbox: %s\n", err);
        status = 2;
        goto out;
    }
    if (cfg.daemonize && daemonize_start(&report_fd) < 0) {
        fprintf(stderr, "kvmbox: -daemonize: cannot fork: %s\n", strerror(errno));
        pc_discard(pc);
        goto out;
    }
    if (cfg.name) {
        char title[16];
        snprintf(title, sizeof title, "%s", cfg.name);
        prctl(PR_SET_NAME, title);
    }

    struct vm *vm = vm_create(&cfg, &start);
    if (!vm) {
        pc_discard(pc);
        /* vm_create logged why; an impossible -m is the user's (exit 2). */
        status = errno == ENOMEM ? 2 : 1;
        goto out;
    }
    if (pc_attach(pc, vm, err, sizeof err) < 0) {
        if (err[0])
            fprintf(stderr, "kvmbox: %s\n", err);
        vm_destroy(vm);
        status = 2;
        goto out;
    }
    if (cfg.pidfile && (pidfd = pidfile_write(cfg.pidfile)) < 0) {
        vm_destroy(vm);
        status = 1;
        goto out;
    }
    daemonize_finish(report_fd, 0);
    report_fd = -1;
    log_info("started in %llu us", (unsigned long long)vm_uptime_us(vm));
    status = vm_run(vm);
    vm_destroy(vm);
    if (pidfd >= 0) {
        unlink(cfg.pidfile);
        close(pidfd);
    }
out:
    daemonize_finish(report_fd, (unsigned char)status);
    if (logfd >= 0)
        close(logfd);
    config_free(&cfg);
    return status;
}
