#!/usr/bin/env bash
# KVM integration tests: boot the project's freestanding test guest
# (tests/guest) with kvmbox and check exit status, serial output, sanitizer
# output and leftover processes. One line per test:
#   PASS name | FAIL name: reason | SKIP name: reason
# Usage: tests/kvm/run.sh [test...]      (default: all tests)
# Environment: KVMBOX (default build/kvmbox-san), KVM_TEST_TIMEOUT (s, 60),
#              KVM_TEST_KEEP=1 keeps the scratch directory with all outputs.
set -u

cd "$(dirname "$0")/../.." || exit 1
TMO=${KVM_TEST_TIMEOUT:-60}
ALL_TESTS="hello smp smp-topology timer pio-mmio reset reset-no-reboot exit halt multiboot logfile two-vms"

# shellcheck source=tests/kvm/lib.sh
. tests/kvm/lib.sh
kvm_setup kvmtest

# --- helpers ------------------------------------------------------------------
# Every VM gets its own serial file; its path is in the argv, so it also
# identifies leftover processes of that VM.

# vm NAME ARGS...: run kvmbox under timeout; sets RC; output in $SCRATCH/NAME.*
vm() {
    local name=$1
    shift
    run_kvmbox "$name" "$@" -display none -serial "file:$SCRATCH/$name.serial"
}

# Start a VM in the background (no timeout wrapper: the caller kills it).
vm_bg() {
    local name=$1
    shift
    "$KVMBOX" "$@" -display none -serial "file:$SCRATCH/$name.serial" \
        >"$SCRATCH/$name.out" 2>"$SCRATCH/$name.err" </dev/null &
    BGPID=$!
}

serial() { text "$SCRATCH/$1.serial"; }

# Problems common to every run; prints a reason, or nothing when clean.
common_problems() { run_problems "$SCRATCH/$1.serial" "$SCRATCH/$1.err" -- "$SCRATCH/$1.serial"; }

# Describe a failed run for the FAIL line: exit status, last serial line, stderr.
describe() { describe_run "$SCRATCH/$1.serial" "$SCRATCH/$1.err" serial; }

# check NAME WANT_RC PATTERN...: exit status and required serial lines (ERE).
check() {
    local name=$1 want=$2 p prob
    shift 2
    prob=$(common_problems "$name")
    if [ -n "$prob" ]; then fail "$name" "$prob ($(describe "$name"))"; return 1; fi
    if [ "$RC" != "$want" ]; then fail "$name" "want exit $want, $(describe "$name")"; return 1; fi
    for p in "$@"; do
        if ! serial "$name" | grep -qE -- "$p"; then
            fail "$name" "no serial line matching '$p' ($(describe "$name"))"
            return 1
        fi
    done
    return 0
}

# e820 sanity for -m 64: sorted, non-overlapping, a usable range at 0 ending
# just below 640 KiB, a usable range from 1 MiB to near 64 MiB, usable total
# between 63 and 64 MiB. Prints the problem, or nothing.
e820_check() {
    local line s e type n=0 pe=-1 tot=0 low=0 high=0
    while read -r line; do
        [[ $line =~ ^e820:\ \[mem\ 0x([0-9a-f]+)-0x([0-9a-f]+)\]\ (.*)$ ]] || continue
        s=$((16#${BASH_REMATCH[1]})); e=$((16#${BASH_REMATCH[2]})); type=${BASH_REMATCH[3]}
        n=$((n + 1))
        if ((e < s)); then echo "entry ends before it starts: $line"; return; fi
        if ((s <= pe)); then echo "overlapping or unsorted: $line"; return; fi
        pe=$e
        if [ "$type" = usable ]; then
            tot=$((tot + e - s + 1))
            ((s == 0 && e >= 0x9f000 && e < 0xa0000)) && low=1
            ((s <= 0x100000 && e >= 0x3efffff && e <= 0x3ffffff)) && high=1
        fi
    done < <(serial "$1")
    ((n)) || { echo "no e820 entries"; return; }
    ((low)) || { echo "no usable range 0..~640 KiB"; return; }
    ((high)) || { echo "no usable range from 1 MiB to ~64 MiB"; return; }
    ((tot >= 63 * 1048576 && tot <= 64 * 1048576)) || echo "usable total $tot bytes, not ~64 MiB"
}

# --- tests ----------------------------------------------------------------------
t_hello() {
    vm hello -m 64 -kernel "$GUEST" -append "test=hello extra=kvmbox-42" -no-reboot
    check hello 0 '^kvmbox-testguest: hello$' '^cmdline: test=hello extra=kvmbox-42$' \
        '^e820: \[mem 0x0000000000000000-0x[0-9a-f]+\] usable$' '^hello: ok$' || return
    # e820 sanity: a usable range at 0 below 640 KiB, one covering 1 MiB, the
    # usable total close to -m 64 and no overlapping entries.
    local why
    why=$(e820_check hello)
    if [ -n "$why" ]; then fail hello "e820: $why"; return; fi
    pass hello
}

t_smp() {
    vm smp -m 64 -smp 4 -kernel "$GUEST" -append "test=smp" -no-reboot
    check smp 0 '^smp: 4 cpus online' '^smp: ok$' || return
    local n
    n=$(serial smp | grep -cE '^cpu [0-9]+ \(apic id [0-9]+\) online$')
    if [ "$n" != 3 ]; then fail smp "$n 'cpu N online' lines from APs, want 3"; return; fi
    if [ "$(serial smp | grep -E '^cpu ' | sed 's/.*apic id \([0-9]*\).*/\1/' | sort -u | wc -l)" != 3 ]; then
        fail smp "APs report duplicate APIC ids"; return
    fi
    # fw_cfg must say 4, and the MADT and/or the MP table (whichever kvmbox
    # builds; -1 = absent) too. The guest itself fails on any disagreement.
    if ! serial smp | grep -qE '^smp: madt (4|-1) cpus, mptable (4|-1) cpus, fw_cfg 4 cpus$' ||
        serial smp | grep -qE '^smp: madt -1 cpus, mptable -1 cpus'; then
        fail smp "firmware tables: $(serial smp | grep '^smp: madt')"; return
    fi
    pass smp
}

t_smp_topology() {
    vm smp-topology -m 64 -smp 2,sockets=1,cores=2 -kernel "$GUEST" -append "test=smp" -no-reboot
    check smp-topology 0 '^smp: 2 cpus online' '^smp: ok$' \
        '^cpu 1 \(apic id [0-9]+\) online$' || return
    pass smp-topology
}

t_timer() {
    vm timer -m 64 -kernel "$GUEST" -append "test=timer" -no-reboot
    check timer 0 '^timer: [0-9]+ irqs' '^timer: lapic [0-9]+ irqs' '^timer: ok$' || return
    pass timer
}

t_pio_mmio() {
    vm pio-mmio -m 64 -kernel "$GUEST" -append "test=pio-mmio" -no-reboot
    check pio-mmio 0 '^pio-mmio: ok$' || return
    pass pio-mmio
}

t_reset() {
    vm reset -m 64 -kernel "$GUEST" -append "test=reset"
    check reset 0 '^reset: boot 1$' '^reset: boot 2$' '^reset: boot 3$' '^reset: ok$' || return
    if serial reset | grep -q '^reset: boot 4'; then fail reset "a fourth boot"; return; fi
    pass reset
}

t_reset_no_reboot() {
    vm reset-no-reboot -m 64 -kernel "$GUEST" -append "test=reset" -no-reboot
    check reset-no-reboot 0 '^reset: boot 1$' || return
    if serial reset-no-reboot | grep -q '^reset: boot 2'; then
        fail reset-no-reboot "guest rebooted despite -no-reboot"; return
    fi
    pass reset-no-reboot
}

t_exit() {
    vm exit -m 64 -kernel "$GUEST" -append "test=exit" -no-reboot \
        -device isa-debug-exit,iobase=0xf4,iosize=4
    check exit 67 '^exit: writing 0x21' || return
    pass exit
}

t_halt() {
    local i t0 t1 rc prob
    vm_bg halt -m 64 -kernel "$GUEST" -append "test=halt" -no-reboot
    local pid=$BGPID
    for ((i = 0; i < TMO * 10; i++)); do
        serial halt | grep -q '^halt: halting' && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if ! kill -0 "$pid" 2>/dev/null; then
        wait "$pid"; RC=$?
        fail halt "kvmbox ended before SIGTERM ($(describe halt))"; return
    fi
    if ! serial halt | grep -q '^halt: halting'; then
        kill -KILL "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
        RC=none; fail halt "guest never reached hlt ($(describe halt))"; return
    fi
    sleep 0.5                                  # let the vCPU block in hlt
    t0=$(date +%s%N)
    kill -TERM "$pid"
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
        fail halt "still running 5 s after SIGTERM"; return
    fi
    wait "$pid"; rc=$?
    t1=$(date +%s%N)
    RC=$rc
    prob=$(common_problems halt)
    if [ -n "$prob" ]; then fail halt "$prob"; return; fi
    # Either killed by the signal (128+15) or, like QEMU, an orderly exit 0
    # that says "terminating on signal 15".
    if [ "$rc" != 143 ] &&
        ! { [ "$rc" = 0 ] && grep -q 'terminating on signal 15' "$SCRATCH/halt.err"; }; then
        fail halt "exit status $rc after SIGTERM, want 143 or 0 with 'terminating on signal 15'"; return
    fi
    if (((t1 - t0) / 1000000 > 3000)); then
        fail halt "took $(((t1 - t0) / 1000000)) ms to end after SIGTERM"; return
    fi
    pass halt
}

t_multiboot() {
    vm multiboot -m 64 -kernel "$MBGUEST" -append "mbtest=1 foo" -no-reboot
    check multiboot 0 '^multiboot: ok mem_lower=[0-9]+ mem_upper=[0-9]+ cmdline=.*mbtest=1 foo$' || return
    local lo hi
    lo=$(serial multiboot | sed -n 's/^multiboot: ok mem_lower=\([0-9]*\) .*/\1/p')
    hi=$(serial multiboot | sed -n 's/^multiboot: ok .*mem_upper=\([0-9]*\) .*/\1/p')
    if [ "$lo" != 639 ] && [ "$lo" != 640 ]; then fail multiboot "mem_lower=$lo, want 639 or 640"; return; fi
    # -m 64: 63 MiB above 1 MiB = 64512 KiB (allow up to 1 MiB reserved at the top)
    if [ "$hi" -gt 64512 ] || [ "$hi" -lt 63488 ]; then
        fail multiboot "mem_upper=$hi KiB, want ~64512 for -m 64"; return
    fi
    pass multiboot
}

t_logfile() {
    rm -f "$SCRATCH/logfile.log"
    vm logfile -m 64 -kernel "$GUEST" -append "test=hello" -no-reboot -D "$SCRATCH/logfile.log"
    check logfile 0 '^hello: ok$' || return
    if [ ! -s "$SCRATCH/logfile.log" ]; then fail logfile "-D log file missing or empty"; return; fi
    if ! grep -qi 'boot-timer' "$SCRATCH/logfile.log"; then
        fail logfile "no 'boot-timer' line in the -D log: $(tail -n1 "$SCRATCH/logfile.log")"; return
    fi
    pass logfile
}

t_two_vms() {
    local p1 p2 r1 r2
    ( vm two-vms-a -m 64 -smp 2 -kernel "$GUEST" -append "test=smp" -no-reboot; exit $RC ) & p1=$!
    ( vm two-vms-b -m 32 -kernel "$GUEST" -append "test=pio-mmio" -no-reboot; exit $RC ) & p2=$!
    wait $p1; r1=$?
    wait $p2; r2=$?
    RC=$r1
    check two-vms-a 0 '^smp: 2 cpus online' '^smp: ok$' >/dev/null || {
        fail two-vms "first VM (smp 2): $(common_problems two-vms-a) $(describe two-vms-a)"; return; }
    RC=$r2
    check two-vms-b 0 '^pio-mmio: ok$' >/dev/null || {
        fail two-vms "second VM (pio-mmio): $(common_problems two-vms-b) $(describe two-vms-b)"; return; }
    pass two-vms
}

for t in $TESTS; do
    case $t in
    hello) t_hello ;;
    smp) t_smp ;;
    smp-topology) t_smp_topology ;;
    timer) t_timer ;;
    pio-mmio) t_pio_mmio ;;
    reset) t_reset ;;
    reset-no-reboot) t_reset_no_reboot ;;
    exit) t_exit ;;
    halt) t_halt ;;
    multiboot) t_multiboot ;;
    logfile) t_logfile ;;
    two-vms) t_two_vms ;;
    *) fail "$t" "no such test (have: $ALL_TESTS)" ;;
    esac
done
[ $# -gt 0 ] || tests/kvm/chardev.sh || failed=1   # chardev/lifecycle tests (tests/kvm/chardev.sh)
[ $# -gt 0 ] || tests/kvm/monitor.sh || failed=1   # monitor tests (tests/kvm/monitor.sh)
[ $# -gt 0 ] || tests/kvm/virtio.sh || failed=1    # PCI/virtio tests (tests/kvm/virtio.sh)
exit $failed
