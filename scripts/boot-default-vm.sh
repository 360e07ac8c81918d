#!/usr/bin/env bash
# Build kvmbox and boot the default VM: the project's small Linux guest
# (Debian's linux-source-6.1 with tests/linux/guest.fragment, built once and
# cached) with a busybox initramfs, 256 MiB, 2 vCPUs, serial console on this
# terminal (Ctrl-a x quits). Extra arguments go to kvmbox.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh kernel
make -s build/kvmbox
kdir=$(tests/linux/build-kernel.sh)
initrd=$(KVMBOX_INITRAMFS_COMPRESS=none tests/linux/make-initramfs.sh)
# On hosts whose KVM emulates guest ring 0 (no VT-x/AMD-V; see
# docs/user-guide.md) the kernel needs the CPU-feature workarounds below.
append="console=ttyS0 8250.nr_uarts=1 panic=-1"
if ! grep -qwE 'vmx|svm' /proc/cpuinfo; then
    append+=" $(cat tests/linux/emulated-host.cmdline)"
fi
exec build/kvmbox -m 256 -smp 2 -kernel "$kdir/bzImage" -initrd "$initrd" \
    -append "$append" -nographic -no-reboot "$@"
