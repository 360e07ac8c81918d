#!/usr/bin/env bash
# Real-Linux end-to-end test: ONE boot of the project's guest kernel
# (tests/linux/build-kernel.sh) under kvmbox with its root file system on an
# ext4 image (tests/linux/make-rootfs.sh: the initramfs's busybox tree and
# /init) on virtio-blk, its console on virtio-console (hvc0), a virtio-rng,
# then many checks on the console logs, kvmbox's -D log, the image and
# kvmbox's exit. One line per check on stdout:
#     PASS name | FAIL name: reason | SKIP name: reason
# Diagnostics (progress, the kernel lines around a failure) go to stderr.
#
# The root disk is a qcow2 image that kvmbox-img converted from the ext4
# image, with an internal snapshot of it taken before the boot: the guest's
# writes (the rw mount updates the superblock and journal) copy the
# clusters the snapshot shares; afterwards the image must check clean and
# the snapshot still hold the original file system.
# Exit status: 0 when nothing failed, 1 otherwise.
#
# Environment:
#   KVMBOX                 VMM to test (default build/kvmbox); anything taking
#                          qemu-kvm's command line works, e.g. a wrapper
#                          around qemu-system-x86_64 (see README.md).
#   KVMBOX_LINUX_TIMEOUT   bound on the whole boot in seconds (default 600;
#                          the boot takes minutes on a host whose KVM
#                          emulates ring 0, ~1 s with VT-x/AMD-V).
#   KVMBOX_LINUX_LPJ       lpj= for the guest (default 1000000).
#   KVMBOX_IMG             the image tool (default build/kvmbox-img).
#   KVMBOX_LOG_DIR         where the console logs and kvmbox's output are
#                          kept (default build/test-logs; "" keeps nothing).
#
# The kernel log: earlyprintk=serial writes it to COM1 (the serial log) until
# the virtio console registers hvc0 (console=hvc0), which carries the rest
# (a real console replaces the boot console without replaying the buffer).
# The checks read the two logs concatenated.
#
# On a host whose KVM has no VT-x/AMD-V (kvm_pvm, see
# /work/shared/docs/kvm-on-this-host.md) guest user space cannot run: /init
# segfaults at its first syscall, the kernel panics ("Attempted to kill
# init"), panic=-1 makes it reboot at once, and -no-reboot turns that reset
# into kvmbox exiting with status 0. The user-space checks are then SKIPped
# (saying why); where user space runs, /init writes a file on the root file
# system, prints its checksum and KVMBOX-INIT-OK and powers off through
# ACPI, and those checks must pass. Without an /init on the root file system
# this host's emulator fails on the kernel's fallback path (fwait in
# fpu__drop, a KVM internal error): the image always has one.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/lib.sh
. "$here/../lib.sh"
vmm=$(kvmbox_bin build/kvmbox)
kimg=$(KVMBOX=${KVMBOX_IMG:-} kvmbox_bin build/kvmbox-img)
boot_timeout=${KVMBOX_LINUX_TIMEOUT:-600}
lpj=${KVMBOX_LINUX_LPJ:-1000000}
log_dir=${KVMBOX_LOG_DIR-$top/build/test-logs}

checks=(linux-version linux-pvh-entry linux-e820-ram linux-acpi-tables linux-smp
        linux-kvm-clock linux-serial-16550a linux-virtio-blk linux-ext4-mount
        linux-ext4-mount-count linux-qcow2-root linux-hvc-console linux-hwrng linux-run-init
        linux-exit-status linux-init-marker linux-rootfs-file
        linux-acpi-poweroff)

all() {  # all <FAIL|SKIP> reason: the same verdict for every check
    case $1 in
        FAIL) fail_all "$2" "${checks[@]}" ;;
        SKIP) skip_all "$2" "${checks[@]}" ;;
    esac
}

problem=$(kvm_problem)
if [ -n "$problem" ]; then
    all SKIP "$problem"
    exit 0
fi
for b in "$vmm" "$kimg"; do
    if ! command -v "$b" >/dev/null; then
        all FAIL "no boot: $b not found or not executable (run make)"
        exit 1
    fi
done

for tool in dumpe2fs debugfs; do
    command -v "$tool" >/dev/null || [ -x "/sbin/$tool" ] ||
        { all FAIL "no boot: $tool is missing (e2fsprogs)"; exit 1; }
done
PATH=$PATH:/sbin:/usr/sbin
kdir=$("$here/build-kernel.sh") || { all FAIL "no boot: build-kernel.sh failed"; exit 1; }
rootfs=$("$here/make-rootfs.sh") || { all FAIL "no boot: make-rootfs.sh failed"; exit 1; }
kernel=$kdir/bzImage

tmp=$(mktemp -d)
vm_pid=
# shellcheck disable=SC2317  # invoked by the trap
cleanup() {
    local rc=$?
    if [ -n "$vm_pid" ] && kill -0 "$vm_pid" 2>/dev/null; then
        # $vm_pid is timeout(1): it passes TERM on to the VMM.
        kill -TERM "$vm_pid" 2>/dev/null || true
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            kill -0 "$vm_pid" 2>/dev/null || break
            sleep 0.5
        done
        kill -KILL "$vm_pid" 2>/dev/null || true
        wait "$vm_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

serial=$tmp/serial.log
hvc=$tmp/hvc.log
dlog=$tmp/kvmbox-D.log
# The guest writes its root file system: boot a qcow2 copy of the cached
# image, with the snapshot "pristine" taken before the boot.
img=$tmp/rootfs.qcow2
"$kimg" convert -f raw -O qcow2 "$rootfs" "$img" &&
    "$kimg" snapshot -c pristine "$img" ||
    { all FAIL "no boot: $kimg could not make the qcow2 root image"; exit 1; }
img_bytes=$(stat -c %s "$rootfs")
raw_after=$tmp/rootfs-after.ext4
mount_count() {  # the ext4 superblock's mount count of image $1
    dumpe2fs -h "$1" 2>/dev/null | sed -nE 's/^Mount count: *([0-9]+)$/\1/p'
}
mounts_before=$(mount_count "$rootfs")
# The workarounds for a KVM that emulates ring 0 (kvm-on-this-host.md),
# shared with scripts/boot-default-vm.sh; the list below if it is missing.
workarounds="noxsave clearcpuid=cx16,smap,smep,pku,umip,popcnt,fsgsbase,rdpid"
workarounds+=",rdrand,rdseed,bmi1,bmi2,movbe,fsrm,avx,avx2,avx512f,xsave,xsaveopt"
workarounds+=",xsavec,xsaves,pcid,invpcid,clflushopt,clwb,abm,sha_ni,aes,pclmulqdq"
workarounds+=",f16c,fma,adx,gfni,vaes,vpclmulqdq,lahf_lm,sse4_1,sse4_2,ssse3"
if [ -s "$here/emulated-host.cmdline" ]; then
    workarounds=$(tr '\n' ' ' <"$here/emulated-host.cmdline")
    workarounds=${workarounds% }
fi
# Only where KVM has no VT-x/AMD-V to run the guest's ring 0 natively: with
# hardware virtualization the boot must need none of them.
if grep -qwE 'vmx|svm' /proc/cpuinfo; then
    workarounds=""
fi
append="console=hvc0 earlyprintk=serial root=/dev/vda rw rootwait init=/init"
append+=" 8250.nr_uarts=1 lpj=$lpj $workarounds panic=-1"
# shellcheck disable=SC2054  # the commas are inside -drive/-device options
cmd=("$vmm" -m 256 -smp 2 -kernel "$kernel" -append "$append"
     -drive "file=$img,if=none,id=root,format=qcow2,cache=writeback"
     -device virtio-blk-pci,drive=root,serial=kvmbox-root
     -device virtio-serial-pci -chardev "file,id=hvc,path=$hvc"
     -device virtconsole,chardev=hvc -device virtio-rng-pci
     -display none -serial "file:$serial" -D "$dlog" -no-reboot)

note "kernel $kernel"
note "root file system: a qcow2 copy of $rootfs (${img_bytes} bytes, mount count ${mounts_before:-?})"
note "booting (bounded by ${boot_timeout} s): ${cmd[*]}"
start=$(date +%s)
timeout -k 10 "$boot_timeout" "${cmd[@]}" \
    </dev/null >"$tmp/vmm.out" 2>"$tmp/vmm.err" &
vm_pid=$!
rc=0
wait "$vm_pid" || rc=$?
vm_pid=
elapsed=$(( $(date +%s) - start ))
note "VMM exited with status $rc after ${elapsed} s"
touch "$serial" "$hvc" "$dlog"
# The console logs without carriage returns (both consoles send CRLF);
# the kernel log is the serial (earlyprintk) part followed by the hvc0 part.
tr -d '\r' <"$serial" >"$tmp/serial.txt"
tr -d '\r' <"$hvc" >"$tmp/hvc.txt"
cat "$tmp/serial.txt" "$tmp/hvc.txt" >"$tmp/log"
log=$tmp/log

if [ -n "$log_dir" ]; then
    mkdir -p "$log_dir"
    cp "$tmp/serial.txt" "$log_dir/linux-serial.log"
    cp "$tmp/hvc.txt" "$log_dir/linux-hvc.log"
    cat "$tmp/vmm.out" "$tmp/vmm.err" "$dlog" >"$log_dir/linux-vmm.log"
    note "console logs kept in $log_dir/linux-serial.log (earlyprintk)" \
         "and $log_dir/linux-hvc.log (hvc0), VMM output and -D log in" \
         "$log_dir/linux-vmm.log"
fi

# context <ERE>: what the kernel printed that matters for a failed check
# (the matching lines, or the end of the log when none matches).
context() {
    {
        echo "---- kernel log lines matching /$1/:"
        if ! grep -E -m 40 -- "$1" "$log"; then
            echo "(none) ---- last 25 lines of the kernel log:"
            tail -n 25 "$log"
        fi
        if [ -s "$tmp/vmm.err" ]; then
            echo "---- VMM stderr (last 10 lines):"
            tail -n 10 "$tmp/vmm.err"
        fi
        echo "----"
    } | sed 's/^/#   /' >&2
}
check_grep() {  # check_grep name fixed-string context-ERE
    if grep -qF -- "$2" "$log"; then
        pass "$1"
    else
        fail "$1" "the kernel did not print '$2'"
        context "$3"
    fi
}

# 1. The kernel's first line of log is its banner.
first=$(grep -m1 -E '^\[ *[0-9]+\.[0-9]+\] ' "$log" || true)
if [[ $first == *"Linux version "* ]]; then
    pass linux-version
    note "${first#*] }"
elif [ ! -s "$log" ]; then
    fail linux-version "the kernel log is empty (VMM status $rc)"
    context 'x^'
else
    fail linux-version "first kernel line is not the banner: '${first:-none}'"
    context 'Linux version'
fi

# 2. The e820 map the kernel printed holds about 256 MiB of usable RAM.
usable=0
while read -r s e; do
    usable=$(( usable + e - s + 1 ))
done < <(sed -nE 's/.*BIOS-e820: \[mem (0x[0-9a-f]+)-(0x[0-9a-f]+)\] usable.*/\1 \2/p' "$log")
usable_kib=$(( usable / 1024 ))
if [ "$usable_kib" -ge $(( 248 * 1024 )) ] && [ "$usable_kib" -le $(( 256 * 1024 )) ]; then
    pass linux-e820-ram
    note "e820 usable RAM: ${usable_kib} KiB"
else
    fail linux-e820-ram "e820 usable RAM is ${usable_kib} KiB, expected 248-256 MiB"
    context 'e820|RAM map'
fi

# 3. ACPI tables found.
missing=
for t in RSDP XSDT FACP APIC DSDT; do
    grep -qE "ACPI: $t 0x" "$log" || missing+=" $t"
done
if [ -z "$missing" ]; then
    pass linux-acpi-tables
else
    fail linux-acpi-tables "no 'ACPI: <table> 0x...' line for:$missing"
    context 'ACPI'
fi

# 4-6. SMP, kvm-clock, the serial port.
check_grep linux-smp 'smp: Brought up 1 node, 2 CPUs' 'smp|CPU|APIC'
check_grep linux-kvm-clock 'clocksource: kvm-clock: mask:' 'kvm-clock|clocksource|tsc'
check_grep linux-serial-16550a \
    'ttyS0 at I/O 0x3f8 (irq = 4, base_baud = 115200) is a 16550A' \
    'serial|ttyS|8250|16550'

# 7. virtio-blk: the disk with the image's size in 512-byte sectors.
sectors=$(( img_bytes / 512 ))
blk=$(grep -m1 -E 'virtio_blk virtio[0-9]+: \[vda\] [0-9]+ 512-byte logical blocks' "$log" || true)
if [[ $blk =~ \[vda\]\ ([0-9]+)\ 512-byte ]] && [ "${BASH_REMATCH[1]}" -eq "$sectors" ]; then
    pass linux-virtio-blk
    note "${blk#*] }"
elif [ -n "$blk" ]; then
    fail linux-virtio-blk "vda has ${BASH_REMATCH[1]:-?} sectors, the image $sectors: '${blk#*] }'"
else
    fail linux-virtio-blk "no 'virtio_blk virtioN: [vda] $sectors 512-byte logical blocks' line"
    context 'virtio|vda|PCI|pci'
fi

# 8. The root file system mounted (read-write: root=/dev/vda rw).
check_grep linux-ext4-mount 'EXT4-fs (vda): mounted filesystem' 'EXT4|vda|VFS|root'

# 9. The qcow2 root after the guest's writes: kvmbox-img (and qemu-img,
# when installed) find no error, its contents convert to raw, and the
# snapshot taken before the boot still holds the original image.
why=
"$kimg" check "$img" >"$tmp/check.txt" 2>&1 || why="kvmbox-img check: $(tail -n 3 "$tmp/check.txt" | tr '\n' ' ')"
if [ -z "$why" ] && command -v qemu-img >/dev/null &&
   ! qemu-img check "$img" >"$tmp/check.txt" 2>&1; then
    why="qemu-img check: $(tail -n 3 "$tmp/check.txt" | tr '\n' ' ')"
fi
[ -n "$why" ] || "$kimg" convert -O raw "$img" "$raw_after" || why="kvmbox-img convert to raw failed"
[ -n "$why" ] || "$kimg" convert -O raw -l pristine "$img" "$tmp/pristine.ext4" ||
    why="kvmbox-img convert -l pristine failed"
[ -n "$why" ] || cmp -s "$tmp/pristine.ext4" "$rootfs" ||
    why="the snapshot taken before the boot no longer equals the original image"
if [ -z "$why" ]; then
    pass linux-qcow2-root
    note "qcow2 root: $(grep -m1 -E 'allocated' "$tmp/check.txt" || true)"
else
    fail linux-qcow2-root "$why"
fi

# 10. The host sees the rw mount: the superblock's mount count went up by 1.
mounts_after=$(mount_count "$raw_after")
if [ -n "$mounts_before" ] && [ -n "$mounts_after" ] &&
   [ "$mounts_after" -eq $(( mounts_before + 1 )) ]; then
    pass linux-ext4-mount-count
    note "ext4 mount count $mounts_before -> $mounts_after"
else
    fail linux-ext4-mount-count "ext4 superblock mount count ${mounts_before:-?} before the boot, ${mounts_after:-?} after (want +1)"
    context 'EXT4|vda'
fi

# 11. The kernel log moved to hvc0 once the virtio console was there.
hvc_lines=$(grep -cE '^\[ *[0-9]+\.[0-9]+\] ' "$tmp/hvc.txt" || true)
if grep -qF 'Run /init as init process' "$tmp/hvc.txt"; then
    pass linux-hvc-console
    note "hvc0 carried $hvc_lines kernel log lines"
else
    fail linux-hvc-console "the hvc0 log (virtio-console) has $hvc_lines kernel lines and no 'Run /init' ($(stat -c %s "$hvc") bytes)"
    context 'virtio|hvc|console'
fi

# 12. The kernel's hwrng core read from virtio-rng (kvmbox's -D log says so).
if grep -qF 'virtio-rng: the guest driver requested entropy' "$dlog"; then
    pass linux-hwrng
else
    fail linux-hwrng "kvmbox's -D log has no 'virtio-rng: the guest driver requested entropy'"
    context 'rng|random|virtio'
fi

# 13. The kernel got as far as starting init from the ext4 root.
check_grep linux-run-init 'Run /init as init process' 'Run /init|Kernel panic|VFS|EXT4|vda'

# 14-17. How the boot ended.
marker=$(grep -m1 -oE 'KVMBOX-INIT-OK cpus=[0-9]+' "$log" || true)
init_crash=$(grep -m1 -E 'Attempted to kill init|init\[1\]: segfault' "$log" || true)
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    fail linux-exit-status "timed out after ${elapsed} s (bound ${boot_timeout} s)"
    context 'Kernel panic|Run /init|KVMBOX-INIT|reboot:'
elif [ "$rc" -ne 0 ]; then
    fail linux-exit-status "VMM exited with status $rc after ${elapsed} s"
    context 'Kernel panic|Run /init|KVMBOX-INIT|reboot:'
elif [ -z "$marker" ] && [ -z "$init_crash" ]; then
    fail linux-exit-status "VMM exited 0 after ${elapsed} s but the guest neither ran init nor panicked"
    context 'Kernel panic|Run /init|KVMBOX-INIT|reboot:'
else
    pass linux-exit-status
    if [ -n "$marker" ]; then
        note "exit 0 after ${elapsed} s (guest powered off)"
    else
        note "exit 0 after ${elapsed} s (guest init crashed, panic=-1 reset, -no-reboot exit)"
    fi
fi

if [ -n "$marker" ]; then
    if [ "$marker" = "KVMBOX-INIT-OK cpus=2" ]; then
        pass linux-init-marker
    else
        fail linux-init-marker "init printed '$marker', expected cpus=2"
    fi
    # /init's write round trip: the file it wrote, read from the image.
    want=$(grep -m1 -oE 'KVMBOX-ROOTFS-FILE sha256=[0-9a-f]{64}' "$log" || true)
    want=${want#*sha256=}
    got=$(debugfs -R 'cat /kvmbox-rw-test' "$raw_after" 2>/dev/null | sha256sum | cut -d' ' -f1)
    if [ -z "$want" ]; then
        fail linux-rootfs-file "init printed no KVMBOX-ROOTFS-FILE line (was / mounted ext4 rw?)"
        context 'KVMBOX|EXT4|vda'
    elif [ "$want" = "$got" ]; then
        pass linux-rootfs-file
    else
        fail linux-rootfs-file "/kvmbox-rw-test in the image has sha256 $got, the guest wrote $want"
    fi
    if grep -qF 'reboot: Power down' "$log" && [ "$rc" -eq 0 ] &&
       ! grep -qF 'Kernel panic' "$log"; then
        pass linux-acpi-poweroff
    else
        fail linux-acpi-poweroff "after poweroff -f: VMM status $rc, 'reboot: Power down' $(grep -qF 'reboot: Power down' "$log" && echo printed || echo 'not printed')"
        context 'reboot:|Power|ACPI|Kernel panic|KVMBOX-INIT'
    fi
elif [ -n "$init_crash" ]; then
    why="guest user space cannot run on this host (KVM without VT-x/AMD-V emulates ring 0; /init crashed: '${init_crash#*] }')"
    skip linux-init-marker "$why"
    skip linux-rootfs-file "$why"
    skip linux-acpi-poweroff "$why"
else
    fail linux-init-marker "no KVMBOX-INIT-OK line and no init crash in the log"
    context 'Run /init|init|Kernel panic'
    fail linux-rootfs-file "init never ran"
    fail linux-acpi-poweroff "init never ran"
fi

# The PVH entry (vmlinux with CONFIG_PVH): a second, short boot — only until
# the kernel has printed its banner and found the hypervisor, seconds even
# here, so the ELF/PVH loader is checked with a real kernel too.
pvh_log=$tmp/pvh-serial.log
timeout -k 5 60 "$vmm" -m 128 -kernel "$kdir/vmlinux" \
    -append "console=ttyS0 earlyprintk=serial 8250.nr_uarts=1 $workarounds" \
    -display none -serial "file:$pvh_log" -no-reboot >/dev/null 2>&1 &
pvh_pid=$!
for _ in $(seq 1 120); do
    grep -q 'Hypervisor detected: KVM' "$pvh_log" 2>/dev/null && break
    kill -0 "$pvh_pid" 2>/dev/null || break
    sleep 0.5
done
kill "$pvh_pid" 2>/dev/null; wait "$pvh_pid" 2>/dev/null
if grep -q '^\[ *0\.000000\] Linux version' "$pvh_log" 2>/dev/null &&
   grep -q 'Hypervisor detected: KVM' "$pvh_log"; then
    pass linux-pvh-entry
else
    fail linux-pvh-entry "vmlinux (PVH) did not print its banner and 'Hypervisor detected: KVM' within 60 s"
    sed -n '1,10p' "$pvh_log" 2>/dev/null | sed 's/^/# /' >&2
fi

exit "$failed"
