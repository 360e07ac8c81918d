/* kvmbox's x86 "pc" machine: which devices exist at which addresses, the
 * firmware tables, and booting -kernel. Runs on the main thread. */
#ifndef KVMBOX_X86_MACHINE_PC_H
#define KVMBOX_X86_MACHINE_PC_H

#include <stddef.h>

#include "config/config.h"
#include "core/vm.h"

struct pc_machine;

/* Everything that depends only on the command line and files (the kernel
 * image): done before KVM is touched, so user errors exit 2 early. NULL with
 * a one-line message in err. */
struct pc_machine *pc_prepare(const struct vm_config *cfg, char *err, size_t errlen);
/* Create the devices on vm, write the tables and load the kernel; on success
 * vm owns pc. 0, or -1 with a message in err (pc freed). */
int pc_attach(struct pc_machine *pc, struct vm *vm, char *err, size_t errlen);
void pc_discard(struct pc_machine *pc);

#endif
