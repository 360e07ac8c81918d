#!/usr/bin/env bash
# Real-Linux end-to-end test: ONE boot of the project's guest kernel
# (tests/linux/build-kernel.sh) with the busybox initramfs
# (tests/linux/make-initramfs.sh) under kvmbox, then many checks on the
# serial log and on kvmbox's exit. One line per check on stdout:
#     PASS name | FAIL name: reason | SKIP name: reason
# Diagnostics (progress, the kernel lines around a failure) go to stderr.
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
#   KVMBOX_LOG_DIR         where the serial log and kvmbox's stderr are kept
#                          (default build/test-logs; "" keeps nothing).
#
# On a host whose KVM has no VT-x/AMD-V (kvm_pvm, see
# /work/shared/docs/kvm-on-this-host.md) guest user space cannot run: /init
# segfaults at its first syscall, the kernel panics ("Attempted to kill
# init"), panic=-1 makes it reboot at once, and -no-reboot turns that reset
# into kvmbox exiting with status 0. The user-space checks are then SKIPped
# (saying why); where user space runs, /init prints KVMBOX-INIT-OK and
# powers off through ACPI, and those checks must pass.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)

vmm=${KVMBOX:-build/kvmbox}
case $vmm in
    /*) ;;
    */*) if [ -n "${KVMBOX:-}" ]; then vmm=$PWD/$vmm; else vmm=$top/$vmm; fi ;;
esac
boot_timeout=${KVMBOX_LINUX_TIMEOUT:-600}
lpj=${KVMBOX_LINUX_LPJ:-1000000}
log_dir=${KVMBOX_LOG_DIR-$top/build/test-logs}

checks=(linux-version linux-e820-ram linux-acpi-tables linux-smp
        linux-kvm-clock linux-serial-16550a linux-run-init linux-exit-status
        linux-init-marker linux-acpi-poweroff)

failed=0
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; failed=1; }
skip() { echo "SKIP $1: $2"; }
note() { echo "# $*" >&2; }
all() {  # all <PASS|FAIL|SKIP> reason: the same verdict for every check
    local c
    for c in "${checks[@]}"; do
        case $1 in
            FAIL) fail "$c" "$2" ;;
            SKIP) skip "$c" "$2" ;;
        esac
    done
}

if [ ! -e /dev/kvm ]; then
    all SKIP "/dev/kvm is missing"
    exit 0
fi
if [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
    all SKIP "/dev/kvm is not readable and writable by $(id -un)"
    exit 0
fi
if ! command -v "$vmm" >/dev/null; then
    all FAIL "no boot: $vmm not found or not executable (run make)"
    exit 1
fi

kdir=$("$here/build-kernel.sh") || { all FAIL "no boot: build-kernel.sh failed"; exit 1; }
# A plain cpio: inflating a gzip initramfs is ~60 s of emulated ring-0 time
# on hosts without VT-x/AMD-V, and checks nothing kvmbox does.
initrd=$(KVMBOX_INITRAMFS_COMPRESS=${KVMBOX_INITRAMFS_COMPRESS:-none} "$here/make-initramfs.sh") || { all FAIL "no boot: make-initramfs.sh failed"; exit 1; }
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
append="console=ttyS0 earlyprintk=serial 8250.nr_uarts=1 lpj=$lpj $workarounds panic=-1"
cmd=("$vmm" -m 256 -smp 2 -kernel "$kernel" -initrd "$initrd"
     -append "$append" -display none -serial "file:$serial" -no-reboot)

note "kernel $kernel"
note "initrd $initrd"
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
touch "$serial"
# The serial log without carriage returns (the 8250 console sends CRLF).
tr -d '\r' <"$serial" >"$tmp/log"
log=$tmp/log

if [ -n "$log_dir" ]; then
    mkdir -p "$log_dir"
    cp "$log" "$log_dir/linux-serial.log"
    cat "$tmp/vmm.out" "$tmp/vmm.err" >"$log_dir/linux-vmm.log"
    note "serial log kept in $log_dir/linux-serial.log," \
         "VMM output in $log_dir/linux-vmm.log"
fi

# context <ERE>: what the kernel printed that matters for a failed check
# (the matching lines, or the end of the log when none matches).
context() {
    {
        echo "---- kernel log lines matching /$1/:"
        if ! grep -E -m 40 -- "$1" "$log"; then
            echo "(none) ---- last 25 lines of the serial log:"
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
    fail linux-version "the serial log is empty (VMM status $rc)"
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

# 7. The kernel got as far as starting init.
check_grep linux-run-init 'Run /init as init process' 'Run /init|Kernel panic|Freeing unused|initramfs|Unpacking'

# 8-10. How the boot ended.
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
    skip linux-acpi-poweroff "$why"
else
    fail linux-init-marker "no KVMBOX-INIT-OK line and no init crash in the log"
    context 'Run /init|init|Kernel panic'
    fail linux-acpi-poweroff "init never ran"
fi

exit "$failed"
