/* The monitor: QEMU's human monitor (HMP, mode=readline) and QMP (mode=
 * control) on a character device. Wire-compatible with QEMU so existing
 * scripts, libvirt-style clients and qmp-shell work.
 *
 * Threads: everything runs on the main thread's event loop (the chardev
 * input callback); commands that need the vCPUs stopped (info registers,
 * x, memsave) park them briefly with vm_pause_vcpus. A slow or dead client
 * never blocks the VM: output goes through chardev_write, which drops what
 * a non-reading peer cannot take. */
#ifndef KVMBOX_MONITOR_H
#define KVMBOX_MONITOR_H

#include <stdbool.h>

struct chardev;
struct vm;

enum monitor_mode {
    MONITOR_HMP,        /* -mon mode=readline, -monitor */
    MONITOR_QMP,        /* -mon mode=control, -qmp */
};

struct monitor;

/* Attach a monitor to an opened chardev (the monitor becomes its input
 * handler; for a multiplexed chardev, pass the monitor's front-end handle).
 * pretty: QMP output pretty-printed (-mon pretty=on). NULL on failure. */
struct monitor *monitor_new(struct vm *vm, struct chardev *chr, enum monitor_mode mode,
                            bool pretty);
void monitor_free(struct monitor *m);

#endif
