/* The VM as the command line describes it. Filled by config_parse() (main
 * thread, before anything else starts), read-only afterwards. */
#ifndef KVMBOX_CONFIG_H
#define KVMBOX_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "block/block.h"

#define CONFIG_MAX_SERIAL 4
#define CONFIG_MAX_CHARDEVS 16
#define CONFIG_MAX_MONITORS 8
#define CONFIG_MUX_MAX_FRONTENDS 4     /* QEMU's MAX_MUX */

enum chardev_kind {
    CHARDEV_NONE,      /* -serial none: no device */
    CHARDEV_NULL,      /* device present, output discarded */
    CHARDEV_STDIO,
    CHARDEV_FILE,
    CHARDEV_PTY,
    CHARDEV_UNIX,
    CHARDEV_TCP,
    CHARDEV_PIPE,      /* PATH.in + PATH.out, or PATH both ways */
};

struct chardev_spec {
    char *id;          /* -chardev id=, or QEMU's implied label: serialN,
                          compat_monitorN */
    const char *option;    /* the option it came from ("-serial", ...), for
                              messages; a string literal, not owned */
    enum chardev_kind kind;
    char *path;        /* FILE, UNIX, PIPE */
    char *host;        /* TCP ("" = any) */
    uint16_t port;     /* TCP */
    bool server;       /* UNIX/TCP: listen instead of connect */
    bool wait;         /* server: wait for a client before starting the VM */
    bool telnet;       /* TCP: telnet option negotiation (telnet:, telnet=on) */
    bool mux;          /* mux=on: shared by up to 4 front ends, Ctrl-a escapes */
    int signal;        /* STDIO: -1 default (Ctrl-C signals kvmbox unless
                          -nographic), 0 signal=off, 1 signal=on */
    char *logfile;     /* logfile=: a copy of all output */
    bool logappend;
};

/* -mon mode=: QEMU's names. */
enum config_monitor_mode {
    CONFIG_MONITOR_READLINE,   /* HMP */
    CONFIG_MONITOR_CONTROL,    /* QMP */
};

struct monitor_config {
    char *chardev;     /* id in vm_config.chardevs */
    enum config_monitor_mode mode;
    bool pretty;       /* QMP: pretty-printed JSON */
};

struct smp_config {
    unsigned cpus, sockets, cores, threads, maxcpus;
};

#define CONFIG_MAX_DRIVES  16
#define CONFIG_MAX_DEVICES 32

/* -drive (QEMU's blockdev-era syntax subset). */
enum drive_interface { DRIVE_IF_NONE, DRIVE_IF_VIRTIO };

struct drive_config {
    char *id;                      /* id= or QEMU's implied "virtioN" */
    char *file;
    char *format;                  /* NULL: probe */
    enum drive_interface iface;
    int index;                     /* -1: unset */
    enum blk_cache_mode cache;
    enum blk_aio aio;
    bool snapshot, read_only, discard;
    uint64_t l2_cache_size, refcount_cache_size;   /* qcow2; 0: default */
    bool no_locking;               /* file.locking=off: no image locks */
    char *serial;
    bool used;                     /* attached to a device (machine, at creation) */
};

enum device_kind {
    DEVICE_VIRTIO_BLK,             /* virtio-blk-pci */
    DEVICE_VIRTIO_SERIAL,          /* virtio-serial-pci: the bus for virtconsole */
    DEVICE_VIRTCONSOLE,            /* virtconsole on a virtio-serial bus */
    DEVICE_VIRTIO_RNG,             /* virtio-rng-pci */
};

struct device_config {
    enum device_kind kind;
    char *id;
    int devfn;                     /* addr=SLOT[.FN]; -1: first free slot */
    /* virtio-blk-pci */
    char *drive, *serial;
    unsigned num_queues, queue_size;
    uint32_t logical_block_size, physical_block_size;
    /* virtconsole */
    char *chardev;
    char *bus;                     /* bus=SERIALID.0; NULL: the only virtio-serial */
};

struct vm_config {
    uint64_t ram_size;             /* bytes */
    struct smp_config smp;
    char *kernel, *initrd, *append, *name;
    char *machine;                 /* "pc" */
    char *cpu_model;               /* "host" */
    uint32_t cpu_kvm_on, cpu_kvm_off;  /* -cpu host,kvm-*=on|off: CPUID 0x40000001 EAX bits */
    /* Every character device, in creation order: -chardev, and the ones
     * -serial/-monitor/-qmp/-nographic imply (ids serialN,
     * compat_monitorN as in QEMU). */
    struct chardev_spec chardevs[CONFIG_MAX_CHARDEVS];
    unsigned nr_chardevs;
    char *serial[CONFIG_MAX_SERIAL];   /* chardev id of COMn; NULL: -serial none */
    unsigned nr_serial;
    bool serial_given;             /* any -serial on the command line */
    struct monitor_config monitors[CONFIG_MAX_MONITORS];
    unsigned nr_monitors;
    bool monitor_given;            /* -monitor (even none), -qmp, -mon */
    uint8_t uuid[16];              /* -uuid; all zeros by default */
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
    struct drive_config drives[CONFIG_MAX_DRIVES];
    unsigned nr_drives;
    struct device_config devices[CONFIG_MAX_DEVICES];
    unsigned nr_devices;
    bool snapshot;                 /* -snapshot: every drive snapshot=on */
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

/* -device and -drive (devices.c, drive.c): 0, 1 when a help listing was
 * printed (exit 0), or -EINVAL with a one-line message in err. */
int config_parse_device(struct vm_config *cfg, const char *arg, char *err, unsigned errlen);
int config_parse_drive(struct vm_config *cfg, const char *arg, char *err, unsigned errlen);
/* Cross-checks once all options are read (drive ids referenced by
 * devices exist, virtconsole has its bus, ...). */
int config_check_devices(struct vm_config *cfg, char *err, unsigned errlen);
void config_free_devices(struct vm_config *cfg);

/* Helpers shared with other parsers (also unit-tested). */
/* "128" (MiB by default_unit), "128M", "2G", "512k", "1T": 0 or -EINVAL/-ERANGE. */
int config_parse_size(const char *s, uint64_t default_unit, uint64_t *out);
/* QEMU's -smp rules (7.2, cores preferred over sockets). Returns 0, or -EINVAL
 * with a message in err. */
int config_parse_smp(const char *s, struct smp_config *smp, char *err, unsigned errlen);
/* -serial style backend spec (none, stdio, file:P, unix:P,server, ...; not
 * mon: or chardev:, which only -serial/-monitor know). 0 or -EINVAL with a
 * message in err naming -serial. The spec's strings are the caller's
 * (config_free_chardev). */
int config_parse_chardev(const char *s, struct chardev_spec *spec, char *err, unsigned errlen);
/* The same for another option ("-monitor", "-qmp"): messages name it. */
int config_parse_chardev_compat(const char *option, const char *s, struct chardev_spec *spec,
                                char *err, unsigned errlen);
/* -chardev BACKEND,id=ID[,opts]. 0 or -EINVAL with message in err. */
int config_parse_chardev_opts(const char *s, struct chardev_spec *spec, char *err,
                              unsigned errlen);
void config_free_chardev(struct chardev_spec *spec);
/* The chardev with that id, or NULL. */
const struct chardev_spec *config_find_chardev(const struct vm_config *cfg, const char *id);
/* "550e8400-e29b-41d4-a716-446655440000" -> 16 bytes: 0 or -EINVAL. */
int config_parse_uuid(const char *s, uint8_t uuid[16]);

#endif
