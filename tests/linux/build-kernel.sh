#!/usr/bin/env bash
# Build the small Linux guest kernel used by the end-to-end tests, the
# default VM and the boot benchmark, from Debian's linux-source-6.1.
#
# The result is cached outside the work tree (the build takes minutes on two
# cores) under a key derived from this script and the config fragment, so a
# changed fragment rebuilds and an unchanged one is reused across checkouts.
# Prints the directory that holds vmlinux (PVH ELF) and bzImage (LZ4).
#
# Two one-line source changes make the kernel usable on hosts whose KVM
# emulates ring 0 instruction by instruction (see tests/linux/README.md):
# int3_selftest() executes int3 in ring 0, and the AMD FXSAVE-leak workaround
# executes fnclex; the emulator lacks both. Neither matters to a guest on a
# host with hardware virtualization.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${KVMBOX_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kvmbox}
key=$(cat "$here/guest.fragment" "$here/build-kernel.sh" | sha256sum | cut -c1-12)
out=$cache/linux-$key

if [ -s "$out/vmlinux" ] && [ -s "$out/bzImage" ]; then
    echo "$out"
    exit 0
fi

need=()
for pair in make:make gcc:gcc flex:flex bison:bison bc:bc lz4:lz4 \
            xz:xz-utils perl:perl cpio:cpio; do
    command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
done
[ -f /usr/include/libelf.h ] || need+=(libelf-dev)
[ -f /usr/include/openssl/ssl.h ] || need+=(libssl-dev)
[ -f /usr/src/linux-source-6.1.tar.xz ] || need+=(linux-source-6.1)
if [ ${#need[@]} -gt 0 ]; then
    echo "build-kernel: installing ${need[*]}" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
fi

mkdir -p "$cache"
exec 9>"$cache/.build.lock"
flock 9
if [ -s "$out/vmlinux" ] && [ -s "$out/bzImage" ]; then
    echo "$out"
    exit 0
fi

src=$cache/src/linux-source-6.1
if [ ! -f "$src/.kvmbox-extracted" ]; then
    echo "build-kernel: extracting linux-source-6.1" >&2
    rm -rf "$cache/src"
    mkdir -p "$cache/src"
    tar -C "$cache/src" -xJf /usr/src/linux-source-6.1.tar.xz
    touch "$src/.kvmbox-extracted"
fi

# Idempotent source changes (see the header comment).
sed -i 's/^\tint3_selftest();$/\t\/* kvmbox: int3_selftest() skipped *\//' \
    "$src/arch/x86/kernel/alternative.c"
sed -i 's/^\t\tset_cpu_bug(c, X86_BUG_FXSAVE_LEAK);$/\t\t; \/* kvmbox: FXSAVE_LEAK workaround skipped *\//' \
    "$src/arch/x86/kernel/cpu/amd.c"
grep -q 'kvmbox: int3_selftest() skipped' "$src/arch/x86/kernel/alternative.c"
grep -q 'kvmbox: FXSAVE_LEAK workaround skipped' "$src/arch/x86/kernel/cpu/amd.c"

build=$out.build
rm -rf "$build"
mkdir -p "$build"
echo "build-kernel: configuring in $build" >&2
make -C "$src" O="$build" -s tinyconfig >&2
"$src/scripts/kconfig/merge_config.sh" -m -O "$build" "$build/.config" \
    "$here/guest.fragment" >&2
make -C "$src" O="$build" -s olddefconfig >&2
# Every line of the fragment must have survived olddefconfig: a silently
# dropped option would make the tests check a different kernel.
while IFS= read -r line; do
    case "$line" in
        CONFIG_*=n) opt=${line%%=*}
            ! grep -q "^$opt=" "$build/.config" ||
                { echo "build-kernel: $opt should be off" >&2; exit 1; } ;;
        CONFIG_*) grep -qx "$line" "$build/.config" ||
                { echo "build-kernel: $line did not stick" >&2; exit 1; } ;;
        "# CONFIG_"*) opt=${line#\# }; opt=${opt%% *}
            ! grep -q "^$opt=" "$build/.config" ||
                { echo "build-kernel: $opt should be off" >&2; exit 1; } ;;
    esac
done < "$here/guest.fragment"
echo "build-kernel: building (minutes)" >&2
make -C "$src" O="$build" -s -j"$(nproc)" vmlinux bzImage >&2
mkdir -p "$out.tmp"
cp "$build/vmlinux" "$out.tmp/vmlinux"
cp "$build/arch/x86/boot/bzImage" "$out.tmp/bzImage"
cp "$build/.config" "$out.tmp/config"
rm -rf "$out"
mv "$out.tmp" "$out"
rm -rf "$build"
echo "$out"
