#!/usr/bin/env bash
# Build the initramfs used by the Linux end-to-end test and the boot
# benchmark: a gzip'd newc cpio holding Debian's statically linked busybox
# and an /init script that mounts proc, sys and devtmpfs, prints
#
#     KVMBOX-INIT-OK cpus=<nproc>
#
# on /dev/console and powers the machine off (`poweroff -f`: the kernel's
# reboot(POWER_OFF), which with ACPI writes the FADT's PM1 control register).
#
# Usage: tests/linux/make-initramfs.sh [DIR]
#        tests/linux/make-initramfs.sh --tree DIR
# Writes DIR/initramfs.cpio.gz, or by default a file in the cache directory
# shared with build-kernel.sh (${KVMBOX_CACHE:-~/.cache/kvmbox}), keyed by
# this script and the busybox binary so an unchanged input is reused.
# Prints the path of the initramfs on stdout; everything else goes to stderr.
# --tree DIR only builds the file tree (busybox, its applet links, /init)
# into DIR and prints nothing: make-rootfs.sh puts the same tree on an ext4
# image, so both roots run the same /init.
#
# When the root is a disk (make-rootfs.sh's ext4 image, mounted rw), /init
# also writes /kvmbox-rw-test (64 KiB from /dev/urandom), syncs and prints
#
#     KVMBOX-ROOTFS-FILE sha256=<hex>
#
# which tests/linux/run.sh compares with the file it reads back from the
# image on the host (debugfs) after kvmbox exits.
#
# KVMBOX_INITRAMFS_COMPRESS=none writes a plain cpio (initramfs.cpio)
# instead: on a host whose KVM emulates ring 0, inflating the ~1 MB gzip
# archive costs the guest about a minute and a half of boot, copying the
# plain one well under a minute.
#
# Needs no root: /dev/console (which the kernel opens for init's stdio
# before /init runs) is written as a hand-made cpio entry instead of mknod.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)

# busybox-static, installed only when missing (a dynamic busybox would need
# its libc inside the initramfs).
if [ "$(dpkg-query -W -f='${Status}' busybox-static 2>/dev/null)" != \
     "install ok installed" ]; then
    echo "make-initramfs: installing busybox-static" >&2
    timeout 300 apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive timeout 600 \
        apt-get install -y -qq busybox-static >&2
fi
bb=$(dpkg-query -L busybox-static | grep -m1 '/bin/busybox$')
[ -x "$bb" ] || { echo "make-initramfs: $bb not found" >&2; exit 1; }
# build_tree DIR: the root file tree shared by the initramfs and the ext4
# root image (make-rootfs.sh).
build_tree() {
    local root=$1 applet
    mkdir -p "$root"/{bin,sbin,dev,proc,sys,tmp,etc,root}
    cp "$bb" "$root/bin/busybox"
    # Symlinks for the applets /init uses (and a few for a person poking
    # around), not all ~280: every file costs time to unpack on a host whose
    # KVM emulates ring 0.
    for applet in sh mount umount nproc poweroff reboot echo cat ls sleep \
                  mkdir dmesg dd sync sha256sum grep; do
        ln -s busybox "$root/bin/$applet"
    done

    cat >"$root/init" <<'EOF'
#!/bin/sh
# kvmbox end-to-end test init (tests/linux/make-initramfs.sh).
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null || true
# Root on a disk (make-rootfs.sh's ext4 image, mounted rw): a write round
# trip that the host checks on the image after exit.
if grep -q '^/dev/[^ ]* / ext4 rw' /proc/mounts; then
    dd if=/dev/urandom of=/kvmbox-rw-test bs=4096 count=16 2>/dev/null
    sync
    sum=$(sha256sum /kvmbox-rw-test)
    echo "KVMBOX-ROOTFS-FILE sha256=${sum%% *}" >/dev/console
fi
echo "KVMBOX-INIT-OK cpus=$(nproc)" >/dev/console
poweroff -f
# Not reached unless poweroff failed; keep init alive so the failure is
# a hang the test's timeout reports, not an "Attempted to kill init" panic.
echo "KVMBOX-INIT-POWEROFF-FAILED" >/dev/console
while :; do sleep 3600; done
EOF
    chmod 755 "$root/init"
}

if [ "${1:-}" = --tree ]; then
    [ $# -eq 2 ] || { echo "usage: make-initramfs.sh --tree DIR" >&2; exit 2; }
    build_tree "$2"
    exit 0
fi

for tool in cpio gzip; do
    command -v "$tool" >/dev/null ||
        { echo "make-initramfs: $tool is required" >&2; exit 1; }
done

compress=${KVMBOX_INITRAMFS_COMPRESS:-gzip}
case $compress in
    gzip) suffix=.cpio.gz; filter=(gzip -9 -n) ;;
    none) suffix=.cpio; filter=(cat) ;;
    *) echo "make-initramfs: KVMBOX_INITRAMFS_COMPRESS is gzip or none" >&2; exit 2 ;;
esac
if [ $# -ge 1 ]; then
    mkdir -p "$1"
    out=$(cd "$1" && pwd)/initramfs$suffix
else
    cache=${KVMBOX_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kvmbox}
    key=$(cat "$here/make-initramfs.sh" "$bb" | sha256sum | cut -c1-12)
    out=$cache/initramfs-$key$suffix
    if [ -s "$out" ]; then
        echo "$out"
        exit 0
    fi
    mkdir -p "$cache"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

root=$tmp/root
build_tree "$root"

# One newc cpio entry for the character device /dev/console (5,1), 0600.
# Format: "070701", 13 8-digit hex fields, the name with its NUL padded so
# that header+name is a multiple of 4 (no data for a device node).
newc_console() {
    local name=dev/console
    local namesize=$(( ${#name} + 1 ))
    printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X' \
        1000001 $((0020600)) 0 0 1 0 0 0 0 5 1 "$namesize" 0
    printf '%s\0' "$name"
    local pad=$(( (4 - (110 + namesize) % 4) % 4 ))
    head -c "$pad" /dev/zero
}

{
    (cd "$root" && find . -mindepth 1 | sed 's|^\./||' | LC_ALL=C sort |
        cpio -o -H newc -R 0:0 --quiet)
    # The kernel unpacks concatenated archives: the device node goes in a
    # second one (ending with its own trailer).
    newc_console
    printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X' \
        0 0 0 0 1 0 0 0 0 0 0 11 0
    printf 'TRAILER!!!\0'
    head -c 3 /dev/zero   # 110 + 11 bytes, padded to 124
} | "${filter[@]}" >"$tmp/initramfs"
mv "$tmp/initramfs" "$out"
echo "$out"
