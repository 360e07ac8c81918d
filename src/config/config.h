/* The VM as the command line describes it. Filled by config_parse() (main
 * thread, before anything else starts), read-only afterwards. */
#ifndef KVMBOX_CONFIG_H
#define KVMBOX_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#define CONFIG_MAX_SERIAL 4

enum chardev_kind {
    CHARDEV_NONE,      /* -serial none: no device */
    CHARDEV_NULL,      /* device present, output discarded */
    CHARDEV_STDIO,
    CHARDEV_FILE,
    CHARDEV_PTY,
    CHARDEV_UNIX,
    CHARDEV_TCP,
};

struct chardev_spec {
    enum chardev_kind kind;
    char *path;        /* FILE, UNIX */
    char *host;        /* TCP ("" = any) */
    uint16_t port;     /* TCP */
    bool server;       /* UNIX/TCP: listen instead of connect */
    bool wait;         /* server: wait for a client before starting the VM */
};

struct smp_config {
    unsigned cpus, sockets, cores, threads, maxcpus;
};

struct vm_config {
    uint64_t ram_size;             /* bytes */
    struct smp_config smp;
    char *kernel, *initrd, *append, *name;
    char *machine;                 /* "pc" */
    char *cpu_model;               /* "host" */
    uint32_t cpu_kvm_on, cpu_kvm_off;  /* -cpu host,kvm-*=on|off: CPUID 0x40000001 EAX bits */
    struct chardev_spec serial[CONFIG_MAX_SERIAL];
    unsigned nr_serial;
    bool serial_given;             /* any -serial on the command line */
    bool nographic;
    bool no_reboot;
    bool no_shutdown;              /* -no-shutdown: guest power-off stops, kvmbox stays */
    bool start_paused;             /* -S */
    bool no_acpi;
    bool daemonize;
    char *pidfile;
    char *logfile;                 /* -D */
    struct {
        bool present;
        uint16_t iobase, iosize;
    } debug_exit;
};

/* What config_parse() asks the caller to do. */
enum config_result {
    CONFIG_RUN,        /* start the VM */
    CONFIG_EXIT_OK,    /* --version, -h, "help" listings: printed, exit 0 */
    CONFIG_ERROR,      /* error printed (one line on stderr), exit 2 */
};

/* Parse argv (qemu-kvm syntax). On CONFIG_ERROR one line naming the option
 * and the expected form has been printed to stderr. */
enum config_result config_parse(struct vm_config *cfg, int argc, char **argv);
void config_free(struct vm_config *cfg);

/* Helpers shared with other parsers (also unit-tested). */
/* "128" (MiB by default_unit), "128M", "2G", "512k", "1T": 0 or -EINVAL/-ERANGE. */
int config_parse_size(const char *s, uint64_t default_unit, uint64_t *out);
/* QEMU's -smp rules (7.2, cores preferred over sockets). Returns 0, or -EINVAL
 * with a message in err. */
int config_parse_smp(const char *s, struct smp_config *smp, char *err, unsigned errlen);
/* -serial / -chardev style backend spec. 0 or -EINVAL with message in err. */
int config_parse_chardev(const char *s, struct chardev_spec *spec, char *err, unsigned errlen);

#endif
