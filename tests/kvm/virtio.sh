#!/usr/bin/env bash
# KVM integration tests of kvmbox's PCI/virtio devices with the project's
# test guest (tests/guest/virtio_tests.h: its own virtio 1.x PCI driver).
# One line per test:
#   PASS name | FAIL name: reason | SKIP name: reason
# Usage: tests/kvm/virtio.sh [test...]      (default: all tests)
# Environment: KVMBOX (default build/kvmbox-san), KVM_TEST_TIMEOUT (s, 30:
#              the bound of each VM run), KVM_TEST_KEEP=1 keeps the scratch dir.
#
# The disk tests boot against a 1 MiB raw image filled with random bytes and
# then check the file from the host: sectors 0..63 hold the guest's pattern
# (byte o = (o/512*29 + o%512*3 + 0xA5) & 0xFF), the rest is untouched; with
# readonly=on or snapshot=on the whole file is untouched.
# Every test also fails on sanitizer reports in kvmbox's stderr.
set -u

cd "$(dirname "$0")/../.." || exit 1
TMO=${KVM_TEST_TIMEOUT:-30}
ALL_TESTS="virtio-blk virtio-blk-intx virtio-blk-readonly virtio-blk-snapshot"
ALL_TESTS+=" virtio-blk-hostile virtio-rng virtio-blk-qcow2-backing virtio-blk-qcow2-snapshot"
ALL_TESTS+=" image-locks"

# shellcheck source=tests/kvm/lib.sh
. tests/kvm/lib.sh
kvm_setup virtio "python3 is needed to check the disk images"

# --- helpers ------------------------------------------------------------------

# vm NAME GUEST-CMDLINE ARGS...: boot the test guest under timeout (in the
# foreground: nothing is left running); sets RC; output in $SCRATCH/NAME.*
vm() {
    local name=$1 append=$2
    shift 2
    run_kvmbox "$name" -m 128 -kernel "$GUEST" -append "$append" \
        -device isa-debug-exit -display none -serial "file:$SCRATCH/$name.serial" \
        -D "$SCRATCH/$name.log" "$@"
    touch "$SCRATCH/$name.serial" "$SCRATCH/$name.log"
}

# new_image NAME: a 1 MiB raw image of random bytes plus a pristine copy.
new_image() {
    head -c 1048576 /dev/urandom >"$SCRATCH/$1.img"
    cp "$SCRATCH/$1.img" "$SCRATCH/$1.orig"
}

# why NAME OKLINE: "" when the run looks right (exit 0, OKLINE printed, no
# FAIL, no sanitizer report), else the reason.
why() {
    local name=$1 ok=$2 r
    r=$(run_problems "" "$SCRATCH/$name.err" -- "$SCRATCH/$name.serial")
    if [ -n "$r" ]; then
        echo "$r (exit $RC)"
    elif [ "$RC" = 124 ] || [ "$RC" = 137 ]; then
        echo "timed out after ${TMO} s (last guest line: '$(lastline "$SCRATCH/$name.serial")')"
    elif [ "$RC" != 0 ]; then
        echo "kvmbox exited $RC ($(grep -m1 -E 'error' "$SCRATCH/$name.err" "$SCRATCH/$name.log" | head -n1))"
    elif ! grep -qaF "$ok" "$SCRATCH/$name.serial"; then
        echo "the guest did not print '$ok' (last line: '$(lastline "$SCRATCH/$name.serial")')"
    fi
}

# check_pattern IMG ORIG: the guest's pattern in the first 32 KiB of IMG,
# the rest of IMG equal to ORIG. Prints a reason when not.
check_pattern() {
    python3 - "$1" "$2" <<'EOF'
import sys
img = open(sys.argv[1], "rb").read()
orig = open(sys.argv[2], "rb").read()
n = 64 * 512
want = bytes(((o >> 9) * 29 + (o & 511) * 3 + 0xA5) & 0xFF for o in range(n))
if len(img) != len(orig):
    print("the image is %d bytes, was %d" % (len(img), len(orig)))
elif img[:n] != want:
    o = next(i for i in range(n) if img[i] != want[i])
    print("byte %d (sector %d) is 0x%02x, the guest wrote 0x%02x" % (o, o >> 9, img[o], want[o]))
elif img[n:] != orig[n:]:
    o = next(i for i in range(n, len(img)) if img[i] != orig[i])
    print("byte %d beyond the written sectors changed" % o)
EOF
}

# --- tests --------------------------------------------------------------------

# MSI-X; -drive if=none + -device virtio-blk-pci,serial=.
t_virtio_blk() {
    local t=virtio-blk r
    new_image $t
    vm $t "test=virtio-blk blkserial=kvmbox-vblk-1" \
        -drive "file=$SCRATCH/$t.img,if=none,id=d0,format=raw" \
        -device virtio-blk-pci,drive=d0,serial=kvmbox-vblk-1
    r=$(why $t "virtio-blk: ok")
    [ -n "$r" ] || r=$(check_pattern "$SCRATCH/$t.img" "$SCRATCH/$t.orig")
    if [ -z "$r" ]; then pass $t; else fail $t "$r"; fi
}

# INTx (no MSI-X); the -drive if=virtio shorthand with serial= on -drive.
t_virtio_blk_intx() {
    local t=virtio-blk-intx r n
    new_image $t
    vm $t "test=virtio-blk-intx blkserial=kvmbox-vblk-2" \
        -drive "file=$SCRATCH/$t.img,if=virtio,format=raw,serial=kvmbox-vblk-2"
    r=$(why $t "virtio-blk: ok")
    [ -n "$r" ] || r=$(check_pattern "$SCRATCH/$t.img" "$SCRATCH/$t.orig")
    if [ -z "$r" ]; then
        n=$(grep -a -m1 -oE '[0-9]+ interrupts \([0-9]+ ISR reads, [0-9]+ spurious\)' "$SCRATCH/$t.serial")
        pass $t
        echo "# $t: $n" >&2
    else
        fail $t "$r"
    fi
}

# readonly=on: RO offered, writes answered IOERR, the file unchanged.
t_virtio_blk_readonly() {
    local t=virtio-blk-readonly r
    new_image $t
    vm $t "test=virtio-blk ro" \
        -drive "file=$SCRATCH/$t.img,if=none,id=d0,format=raw,readonly=on" \
        -device virtio-blk-pci,drive=d0
    r=$(why $t "virtio-blk: ok")
    [ -n "$r" ] || cmp -s "$SCRATCH/$t.img" "$SCRATCH/$t.orig" ||
        r="the read-only image changed"
    if [ -z "$r" ]; then pass $t; else fail $t "$r"; fi
}

# snapshot=on: the guest reads back its writes, the file is unchanged after.
t_virtio_blk_snapshot() {
    local t=virtio-blk-snapshot r
    new_image $t
    vm $t "test=virtio-blk" \
        -drive "file=$SCRATCH/$t.img,if=none,id=d0,format=raw,snapshot=on" \
        -device virtio-blk-pci,drive=d0
    r=$(why $t "virtio-blk: ok")
    [ -n "$r" ] || cmp -s "$SCRATCH/$t.img" "$SCRATCH/$t.orig" ||
        r="the image changed although snapshot=on"
    if [ -z "$r" ]; then pass $t; else fail $t "$r"; fi
}

# qcow2 over a raw backing file: the guest's writes land in the overlay
# (qemu-img check clean, qemu-img's view of the overlay has them on top of
# the backing bytes), the backing file is untouched.
t_virtio_blk_qcow2_backing() {
    local t=virtio-blk-qcow2-backing r
    if ! have qemu-img; then
        skip $t "qemu-img not installed (Debian qemu-utils)"
        return
    fi
    new_image $t
    qemu-img create -q -f qcow2 -b "$SCRATCH/$t.img" -F raw "$SCRATCH/$t.qcow2" >/dev/null
    vm $t "test=virtio-blk" \
        -drive "file=$SCRATCH/$t.qcow2,if=none,id=d0,format=qcow2" \
        -device virtio-blk-pci,drive=d0
    r=$(why $t "virtio-blk: ok")
    [ -n "$r" ] || cmp -s "$SCRATCH/$t.img" "$SCRATCH/$t.orig" ||
        r="the backing file changed"
    [ -n "$r" ] || qemu-img check -q "$SCRATCH/$t.qcow2" >/dev/null 2>&1 ||
        r="qemu-img check: $(qemu-img check "$SCRATCH/$t.qcow2" 2>&1 | tail -n1)"
    if [ -z "$r" ]; then
        qemu-img convert -f qcow2 -O raw "$SCRATCH/$t.qcow2" "$SCRATCH/$t.flat"
        r=$(check_pattern "$SCRATCH/$t.flat" "$SCRATCH/$t.orig")
    fi
    if [ -z "$r" ]; then pass $t; else fail $t "$r"; fi
}

# qcow2 with an internal snapshot (taken by qemu-img), small clusters and
# a small l2-cache-size=: the guest's writes copy the shared clusters and
# L2 tables, so the active image has them and the snapshot still holds the
# original bytes; qemu-img check is clean.
t_virtio_blk_qcow2_snapshot() {
    local t=virtio-blk-qcow2-snapshot r="" mode
    if ! have qemu-img; then
        skip $t "qemu-img not installed (Debian qemu-utils)"
        return
    fi
    # The default cache mode, and O_DIRECT on io_uring (metadata I/O is
    # then bounced to the file's alignment).
    for mode in cache=writeback cache=none,aio=io_uring; do
        [ -z "$r" ] || break
        new_image $t
        qemu-img convert -q -f raw -O qcow2 -o cluster_size=4096 "$SCRATCH/$t.img" "$SCRATCH/$t.qcow2"
        qemu-img snapshot -c before "$SCRATCH/$t.qcow2"
        vm $t "test=virtio-blk" \
            -drive "file=$SCRATCH/$t.qcow2,if=none,id=d0,format=qcow2,$mode,l2-cache-size=16k,refcount-cache-size=16k" \
            -device virtio-blk-pci,drive=d0
        r=$(why $t "virtio-blk: ok")
        [ -n "$r" ] || qemu-img check -q "$SCRATCH/$t.qcow2" >/dev/null 2>&1 ||
            r="qemu-img check: $(qemu-img check "$SCRATCH/$t.qcow2" 2>&1 | tail -n1)"
        if [ -z "$r" ]; then
            qemu-img convert -f qcow2 -O raw "$SCRATCH/$t.qcow2" "$SCRATCH/$t.flat"
            r=$(check_pattern "$SCRATCH/$t.flat" "$SCRATCH/$t.orig")
        fi
        if [ -z "$r" ]; then
            qemu-img convert -f qcow2 -O raw -l snapshot.name=before "$SCRATCH/$t.qcow2" \
                "$SCRATCH/$t.snap"
            cmp -s "$SCRATCH/$t.snap" "$SCRATCH/$t.orig" || r="the snapshot's contents changed"
        fi
        [ -z "$r" ] || r="$mode: $r"
    done
    if [ -z "$r" ]; then pass $t; else fail $t "$r"; fi
}

# QEMU's image locks, both ways: while kvmbox runs a guest on a qcow2 and
# a raw image, qemu-img/kvmbox-img may not open the qcow2 one (without -U),
# a second kvmbox and qemu-system-x86_64 get neither; after kvmbox exits the
# images are free. (kvmbox-img and a QEMU holding an image: tests/img.)
t_image_locks() {
    local t=image-locks r="" pid i out
    local q=$SCRATCH/$t.qcow2 raw=$SCRATCH/$t.raw
    local kimg=${KVMBOX%/kvmbox*}/kvmbox-img${KVMBOX##*/kvmbox}
    if ! have qemu-img; then
        skip $t "qemu-img not installed (Debian qemu-utils)"
        return
    fi
    qemu-img create -q -f qcow2 "$q" 1M && qemu-img create -q -f raw "$raw" 1M
    "$KVMBOX" -m 64 -kernel "$GUEST" -append "test=halt" -no-reboot -display none \
        -serial "file:$SCRATCH/$t.serial" -drive "file=$q,if=virtio,format=qcow2" \
        -drive "file=$raw,if=virtio,format=raw" >"$SCRATCH/$t.out" 2>"$SCRATCH/$t.err" </dev/null &
    pid=$!
    BGPIDS+=("$pid")
    for ((i = 0; i < TMO * 10; i++)); do
        grep -q '^halt: halting' "$SCRATCH/$t.serial" 2>/dev/null && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    grep -q '^halt: halting' "$SCRATCH/$t.serial" 2>/dev/null ||
        r="the guest did not start ($(head -c 300 "$SCRATCH/$t.err"))"
    if [ -z "$r" ]; then
        out=$(qemu-img info "$q" 2>&1) && r="qemu-img info opened the image kvmbox writes"
        [ -n "$r" ] || grep -q 'Failed to get shared "write" lock' <<<"$out" ||
            r="qemu-img info: '$out'"
        [ -n "$r" ] || qemu-img info -U "$q" >/dev/null 2>&1 || r="qemu-img info -U failed"
        if [ -z "$r" ] && [ -x "$kimg" ]; then
            out=$("$kimg" check -r all "$q" 2>&1) && r="kvmbox-img check -r all opened the image"
            [ -n "$r" ] || grep -q 'Failed to get "write" lock' <<<"$out" ||
                r="kvmbox-img check -r all: '$out'"
        fi
        [ -n "$r" ] || qemu-img info "$raw" >/dev/null 2>&1 ||
            r="qemu-img info of the raw image failed (QEMU shares reading a raw image)"
    fi
    for d in "$q,format=qcow2" "$raw,format=raw"; do
        [ -n "$r" ] && break
        run_kvmbox $t-2 -m 64 -kernel "$GUEST" -append "test=halt" -display none \
            -drive "file=$d,if=virtio"
        if [ "$RC" = 0 ] || ! grep -q 'Failed to get "write" lock' "$SCRATCH/$t-2.err"; then
            r="a second kvmbox on ${d%%,*}: exit $RC, '$(head -c 200 "$SCRATCH/$t-2.err")'"
        fi
        if [ -z "$r" ] && have qemu-system-x86_64; then
            out=$(timeout 20 qemu-system-x86_64 -S -display none -nodefaults \
                  -drive "file=$d,if=virtio" 2>&1) &&
                r="qemu-system-x86_64 started on ${d%%,*}"
            [ -n "$r" ] || grep -q 'Failed to get "write" lock' <<<"$out" ||
                r="qemu-system-x86_64 on ${d%%,*}: '$out'"
        fi
    done
    # file.locking=off opts out (the user's call, as in QEMU).
    if [ -z "$r" ]; then
        vm $t-3 "test=hello" -no-reboot -drive "file=$raw,format=raw,if=virtio,file.locking=off"
        [ "$RC" = 0 ] || r="file.locking=off: exit $RC, '$(head -c 200 "$SCRATCH/$t-3.err")'"
    fi
    kill -TERM "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    [ -n "$r" ] || qemu-img info "$q" >/dev/null 2>&1 || r="the qcow2 image is still locked after kvmbox exited"
    if [ -z "$r" ]; then pass $t; else fail $t "$r"; fi
}

# A broken driver never kills the VMM: each hostile request puts the device
# in NEEDS_RESET (the guest checks), kvmbox logs it and keeps running, and
# after a reset the device serves a good request.
t_virtio_blk_hostile() {
    local t=virtio-blk-hostile r n
    new_image $t
    vm $t "test=virtio-blk-hostile" \
        -drive "file=$SCRATCH/$t.img,if=none,id=d0,format=raw" \
        -device virtio-blk-pci,drive=d0
    r=$(why $t "virtio-blk-hostile: ok")
    if [ -z "$r" ]; then
        n=$(grep -c 'needs reset' "$SCRATCH/$t.log" "$SCRATCH/$t.err" | awk -F: '{s += $NF} END {print s + 0}')
        [ "$n" -ge 3 ] || r="kvmbox logged $n 'needs reset' lines for 3 hostile requests"
    fi
    [ -n "$r" ] || cmp -s "$SCRATCH/$t.img" "$SCRATCH/$t.orig" ||
        r="the image changed (the guest only read)"
    if [ -z "$r" ]; then pass $t; else fail $t "$r"; fi
}

t_virtio_rng() {
    local t=virtio-rng r
    vm $t "test=virtio-rng" -device virtio-rng-pci
    r=$(why $t "virtio-rng: ok")
    [ -n "$r" ] || grep -qF 'virtio-rng: the guest driver requested entropy' "$SCRATCH/$t.log" ||
        r="no 'virtio-rng: the guest driver requested entropy' in the -D log"
    if [ -z "$r" ]; then pass $t; else fail $t "$r"; fi
}

for t in $TESTS; do
    case $t in
    virtio-blk) t_virtio_blk ;;
    virtio-blk-intx) t_virtio_blk_intx ;;
    virtio-blk-readonly) t_virtio_blk_readonly ;;
    virtio-blk-snapshot) t_virtio_blk_snapshot ;;
    virtio-blk-hostile) t_virtio_blk_hostile ;;
    virtio-rng) t_virtio_rng ;;
    virtio-blk-qcow2-backing) t_virtio_blk_qcow2_backing ;;
    virtio-blk-qcow2-snapshot) t_virtio_blk_qcow2_snapshot ;;
    image-locks) t_image_locks ;;
    *) fail "$t" "no such test (have: $ALL_TESTS)" ;;
    esac
done

# No kvmbox of ours may outlive its test (every run was in the foreground
# under timeout; this catches a VMM that daemonized or forked).
r=$(left_behind "$SCRATCH")
[ -z "$r" ] || fail leftover-processes "$r"
exit $failed
