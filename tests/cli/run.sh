#!/usr/bin/env bash
# Command-line contract tests for kvmbox. One line per case on stdout:
#     PASS name | FAIL name: reason | SKIP name: reason
# Exit status: 0 when nothing failed, 1 otherwise.
#
# The contract: a bad command line makes kvmbox exit with status 2 and print
# exactly ONE line on stderr that names the offending option (and says what
# form was expected), before touching the guest: no VM is started, no guest
# RAM is allocated. `--version` and `-h` print to stdout and exit 0.
#
# Environment:
#   KVMBOX         binary under test (default build/kvmbox)
#   KVMBOX_KERNEL  a valid guest kernel to put on the command lines whose
#                  error is elsewhere (default: the newest bzImage in the
#                  build-kernel.sh cache; without one those cases run with
#                  no -kernel, which a parser checking options first passes
#                  as well).
# Most cases need no /dev/kvm; every run is bounded by a timeout.
set -euo pipefail

# shellcheck source=tests/lib.sh
. "$(dirname "$0")/../lib.sh"
vmm=$(kvmbox_bin build/kvmbox)

cases=(cli-unknown-option cli-m-garbage cli-m-zero cli-m-missing cli-m-huge
       cli-smp-zero cli-smp-topology cli-kernel-missing-file
       cli-kernel-not-a-kernel cli-serial-bogus cli-machine-unknown
       cli-device-unknown cli-no-kernel cli-version cli-help)
if ! command -v "$vmm" >/dev/null; then
    fail_all "$vmm not found or not executable (run make)" "${cases[@]}"
    exit 1
fi

kernel=${KVMBOX_KERNEL:-}
if [ -z "$kernel" ]; then
    cache=${KVMBOX_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kvmbox}
    # Newest cached build; any valid bzImage does for these tests.
    kernel=$(find "$cache" -mindepth 2 -maxdepth 2 -path "$cache/linux-*/bzImage" \
                 -printf '%T@ %p\n' 2>/dev/null | sort -rn | head -n1 | cut -d' ' -f2- || true)
fi
kopt=()
if [ -n "$kernel" ] && [ -r "$kernel" ]; then
    kopt=(-kernel "$kernel")
else
    echo "# no guest kernel found: cases run without -kernel" >&2
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# run ARGS...: runs the VMM (bounded), sets $rc, $err, $nerr.
run() {
    rc=0
    timeout -k 5 20 "$vmm" "$@" </dev/null >"$tmp/out" 2>"$tmp/err" || rc=$?
    err=$(cat "$tmp/err")
    nerr=$(grep -c '' "$tmp/err" || true)
}

# expect_error NAME ERE ARGS...: exit 2, exactly one stderr line matching ERE.
expect_error() {
    local name=$1 re=$2
    shift 2
    run "$@"
    local shown
    shown=$(head -n 3 "$tmp/err" | tr '\n' '|' | cut -c1-200)
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        fail "$name" "kvmbox $* did not exit (it ran the VM until the 20 s timeout)"
    elif [ "$rc" -ne 2 ]; then
        fail "$name" "exit status $rc, expected 2 (stderr: ${shown:-empty})"
    elif [ "$nerr" -ne 1 ]; then
        fail "$name" "$nerr lines on stderr, expected 1 (stderr: ${shown:-empty})"
    elif ! grep -qE -- "$re" "$tmp/err"; then
        fail "$name" "stderr does not match /$re/: $err"
    else
        pass "$name"
        echo "#   $name: $err" >&2
    fi
}

common=(-display none)

expect_error cli-unknown-option 'frobnicate' \
    "${common[@]}" "${kopt[@]}" -frobnicate
expect_error cli-m-garbage '(^|[^a-z])-m([^a-z]|$).*12Q|12Q.*(^|[^a-z])-m([^a-z]|$)' \
    "${common[@]}" "${kopt[@]}" -m 12Q
expect_error cli-m-zero '(^|[^a-z])-m([^a-z]|$)' \
    "${common[@]}" "${kopt[@]}" -m 0
expect_error cli-m-missing '(^|[^a-z])-m([^a-z]|$)' \
    "${common[@]}" "${kopt[@]}" -m
# Far more than any host has: refused up front, not by a failed (or, worse,
# an overcommitted and partly touched) allocation.
expect_error cli-m-huge '(^|[^a-z])-m([^a-z]|$)' \
    "${common[@]}" "${kopt[@]}" -m 1000000G
expect_error cli-smp-zero '(^|[^a-z])-smp([^a-z]|$)' \
    "${common[@]}" "${kopt[@]}" -smp 0
expect_error cli-smp-topology '(^|[^a-z])-smp([^a-z]|$)' \
    "${common[@]}" "${kopt[@]}" -smp 2,cores=3,threads=1,sockets=1
expect_error cli-kernel-missing-file '/nonexistent' \
    "${common[@]}" -kernel /nonexistent
expect_error cli-kernel-not-a-kernel '/etc/passwd' \
    "${common[@]}" -kernel /etc/passwd
expect_error cli-serial-bogus '(^|[^a-z])-serial([^a-z]|$)|bogus' \
    "${common[@]}" "${kopt[@]}" -serial bogus:thing
expect_error cli-machine-unknown 'nosuchmachine' \
    "${common[@]}" "${kopt[@]}" -machine type=nosuchmachine
expect_error cli-device-unknown 'nosuchdevice' \
    "${common[@]}" "${kopt[@]}" -device nosuchdevice
# qemu would fall back to a BIOS boot; kvmbox has no BIOS: it must say so.
expect_error cli-no-kernel '(^|[^a-z])-kernel([^a-z]|$)' \
    "${common[@]}" -m 256

run --version
if [ "$rc" -eq 0 ] && grep -qiE 'version.*[0-9]' "$tmp/out"; then
    pass cli-version
    echo "#   cli-version: $(head -n1 "$tmp/out")" >&2
else
    fail cli-version "exit status $rc, stdout '$(head -n1 "$tmp/out")' (expected a version line and status 0)"
fi

run -h
if [ "$rc" -eq 0 ] && grep -qi 'usage' "$tmp/out" && grep -q -- '-kernel' "$tmp/out"; then
    pass cli-help
else
    fail cli-help "exit status $rc, stdout starts '$(head -n1 "$tmp/out")' (expected usage mentioning -kernel, status 0)"
fi

exit "$failed"
