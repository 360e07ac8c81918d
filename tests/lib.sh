# shellcheck shell=bash
# Helpers shared by the test suites (tests/*/run.sh, tests/kvm/*.sh) and
# bench/boot.sh. Source it; it runs nothing, and works under set -euo pipefail.
# Sets: top (the top of the source tree), failed=0.

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# One line per test on stdout: PASS name | FAIL name: reason | SKIP name: reason
failed=0
pass() { echo "PASS $1"; }
# shellcheck disable=SC2034  # failed is read by the sourcing script
fail() { echo "FAIL $1: $2"; failed=1; }
skip() { echo "SKIP $1: $2"; }
# fail_all / skip_all REASON NAME...: the same verdict for every test named.
fail_all() { local r=$1 t; shift; for t in "$@"; do fail "$t" "$r"; done; }
skip_all() { local r=$1 t; shift; for t in "$@"; do skip "$t" "$r"; done; }
note() { echo "# $*" >&2; }
have() { command -v "$1" >/dev/null 2>&1; }

# kvmbox_bin DEFAULT: the VMM to test: $KVMBOX, else DEFAULT (relative to
# $top). A relative path with a slash is made absolute ($KVMBOX against $PWD).
kvmbox_bin() {
    local b=${KVMBOX:-$1}
    case $b in
        /*) ;;
        */*) if [ -n "${KVMBOX:-}" ]; then b=$PWD/$b; else b=$top/$b; fi ;;
    esac
    echo "$b"
}

# kvm_problem: why /dev/kvm is unusable, or nothing when it is usable.
kvm_problem() {
    [ -e /dev/kvm ] || { echo "/dev/kvm does not exist"; return; }
    { [ -r /dev/kvm ] && [ -w /dev/kvm ]; } || { echo "/dev/kvm is not readable and writable by $(id -un)"; return; }
    if have python3; then
        local v
        v=$(python3 -c 'import fcntl, os
fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
print(fcntl.ioctl(fd, 0xAE00))' 2>&1) || { echo "cannot open /dev/kvm: ${v##*$'\n'}"; return; }
        [ "$v" = 12 ] || { echo "KVM_GET_API_VERSION returned $v, want 12"; return; }
    fi
}
