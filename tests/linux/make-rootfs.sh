#!/usr/bin/env bash
# Build the ext4 root file system image used by the Linux end-to-end test
# (tests/linux/run.sh): the same busybox tree and /init as the initramfs
# (make-initramfs.sh --tree), put on a raw ext4 image with mkfs.ext4 -d.
#
# Usage: tests/linux/make-rootfs.sh [DIR]
# Writes DIR/rootfs.ext4, or by default a file in the cache directory shared
# with build-kernel.sh (${KVMBOX_CACHE:-~/.cache/kvmbox}), keyed by this
# script, make-initramfs.sh and the busybox binary, so an unchanged input is
# reused. Prints the image's path on stdout; everything else goes to stderr.
# The cached image is never booted: a test copies it (the guest writes to it).
#
# KVMBOX_ROOTFS_SIZE: the image size in MiB (default 32).
#
# Needs mkfs.ext4 and tune2fs from e2fsprogs (>= 1.43 for -d); no root, no
# loop device.
# The file system has no lazy initialisation left for the guest kernel to
# do (every inode table and the journal are written here): under a KVM that
# emulates ring 0 the ext4lazyinit thread's writes would cost boot time.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
size_mib=${KVMBOX_ROOTFS_SIZE:-32}
case $size_mib in
    ''|*[!0-9]*) echo "make-rootfs: KVMBOX_ROOTFS_SIZE is a number of MiB" >&2; exit 2 ;;
esac

PATH=$PATH:/sbin:/usr/sbin
for tool in mkfs.ext4 tune2fs; do
    command -v "$tool" >/dev/null ||
        { echo "make-rootfs: $tool is required (apt-get install e2fsprogs)" >&2; exit 1; }
done
bb=$(dpkg-query -L busybox-static 2>/dev/null | grep -m1 '/bin/busybox$' || true)

if [ $# -ge 1 ]; then
    mkdir -p "$1"
    out=$(cd "$1" && pwd)/rootfs.ext4
else
    cache=${KVMBOX_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kvmbox}
    key=$( { cat "$here/make-rootfs.sh" "$here/make-initramfs.sh"
             [ -z "$bb" ] || cat "$bb"; echo "size=$size_mib"; } |
           sha256sum | cut -c1-12)
    out=$cache/rootfs-$key.ext4
    if [ -n "$bb" ] && [ -s "$out" ]; then
        echo "$out"
        exit 0
    fi
    mkdir -p "$cache"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The tree (installs busybox-static when it is missing).
"$here/make-initramfs.sh" --tree "$tmp/root"

# root_owner: / owned by root whoever builds it; the files keep the
# builder's ids (root in CI; the guest's init runs as root either way).
truncate -s "${size_mib}M" "$tmp/rootfs.ext4"
mkfs.ext4 -q -F -t ext4 -L kvmbox-root -d "$tmp/root" \
    -E root_owner=0:0,lazy_itable_init=0,lazy_journal_init=0 \
    "$tmp/rootfs.ext4" >&2
# no_prefetch_block_bitmaps as a default mount option in the superblock:
# otherwise every read-write mount starts the ext4lazyinit kernel thread to
# prefetch the block bitmaps, and that thread exits when done. On a host
# whose KVM emulates ring 0 a task exit is fatal (exit_thread -> fpu__drop
# executes fwait, which the emulator lacks: a KVM internal error, seen here
# a few seconds after "EXT4-fs (vda): mounted filesystem"). Nothing checked
# depends on the prefetch.
tune2fs -E mount_opts=no_prefetch_block_bitmaps "$tmp/rootfs.ext4" >/dev/null
mv "$tmp/rootfs.ext4" "$out"
echo "$out"
