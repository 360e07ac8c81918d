#!/usr/bin/env bash
# Install the Debian packages a purpose needs, only those missing.
#   scripts/install-deps.sh build   compiler and make
#   scripts/install-deps.sh kernel  what building the guest kernel needs
#   scripts/install-deps.sh test    everything `make check` uses
#   scripts/install-deps.sh bench   the reference programs for bench/
set -euo pipefail

pkgs=()
want() {    # want PACKAGE [command-or-file that proves it is there]
    local pkg=$1 probe=${2:-}
    if [ -n "$probe" ]; then
        if [ "${probe#/}" != "$probe" ]; then
            [ -e "$probe" ] && return 0
        else
            command -v "$probe" >/dev/null 2>&1 && return 0
        fi
    else
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" && return 0
    fi
    pkgs+=("$pkg")
}

build() {
    want make make
    want gcc gcc
    want libc6-dev /usr/include/stdio.h
    want linux-libc-dev /usr/include/linux/kvm.h
    want liburing-dev /usr/include/liburing.h
    want zlib1g-dev /usr/include/zlib.h
    want libzstd-dev /usr/include/zstd.h
}

kernel() {
    build
    want linux-source-6.1 /usr/src/linux-source-6.1.tar.xz
    want flex flex
    want bison bison
    want bc bc
    want lz4 lz4
    want xz-utils xz
    want cpio cpio
    want libelf-dev /usr/include/libelf.h
    want libssl-dev /usr/include/openssl/ssl.h
    want busybox-static /bin/busybox
    want gzip gzip
}

for purpose in "$@"; do
    case "$purpose" in
    build) build ;;
    kernel) kernel ;;
    test)
        kernel
        want clang clang                     # libFuzzer targets (tests/fuzz)
        want libclang-rt-14-dev /usr/lib/llvm-14/lib/clang/14.0.6/lib/linux/libclang_rt.fuzzer-x86_64.a
        want e2fsprogs /sbin/mkfs.ext4             # the Linux test's root image
        want python3 python3                 # monitor/chardev test clients
        want acpica-tools iasl               # ACPI tables checked by iasl/acpiexec
        want socat socat
        want procps pgrep
        want iproute2 ip
        want qemu-system-x86 qemu-system-x86_64   # reference for comparisons
        want qemu-utils qemu-img             # qcow2 interoperability
        ;;
    bench)
        kernel
        want qemu-system-x86 qemu-system-x86_64
        want strace strace
        ;;
    *) echo "install-deps: unknown purpose '$purpose' (expected build, kernel, test, bench)" >&2; exit 2 ;;
    esac
done

if [ ${#pkgs[@]} -gt 0 ]; then
    echo "install-deps: installing ${pkgs[*]}" >&2
    if [ "$(id -u)" -ne 0 ]; then
        SUDO=sudo
    else
        SUDO=
    fi
    $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >&2
fi
