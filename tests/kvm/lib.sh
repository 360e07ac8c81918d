# shellcheck shell=bash
# The prelude and helpers shared by the KVM integration tests
# (tests/kvm/*.sh). A script cds to the top of the tree, sets TMO and
# ALL_TESTS, sources this file, then calls kvm_setup.
# Sets: KVMBOX (default build/kvmbox-san), GUEST, MBGUEST, TESTS (the
# script's arguments, default $ALL_TESTS), the sanitizer options, and what
# tests/lib.sh sets (pass/fail/skip, failed=0, ...).

# shellcheck source=tests/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

KVMBOX=${KVMBOX:-build/kvmbox-san}
GUEST=tests/guest/build/testguest.elf
MBGUEST=tests/guest/build/testguest-mb.elf
TESTS=${*:-$ALL_TESTS}

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}

# kvm_setup NAME [WHY_PYTHON3]: SKIP every test and exit 0 when KVM is
# unusable (or, given WHY_PYTHON3, python3 is missing: the SKIP reason);
# FAIL every test and exit 1 when kvmbox is not built or the test guest does
# not build (incrementally: the guest may be older than the tests). Then
# makes the scratch directory SCRATCH (/tmp/kvmbox-NAME.*), removed at exit
# unless KVM_TEST_KEEP=1, and at exit stops the background processes in
# BGPIDS (children: TERM, which timeout(1) passes on, then KILL) and DAEMONS.
kvm_setup() {
    local problem
    problem=$(kvm_problem)
    if [ -z "$problem" ] && [ -n "${2:-}" ] && ! have python3; then problem=$2; fi
    # shellcheck disable=SC2086
    if [ -n "$problem" ]; then skip_all "$problem" $TESTS; exit 0; fi
    # shellcheck disable=SC2086
    if [ ! -x "$KVMBOX" ]; then fail_all "$KVMBOX not built (make $KVMBOX)" $TESTS; exit 1; fi
    if ! make -s -C tests/guest >/dev/null 2>&1 || [ ! -f "$GUEST" ] || [ ! -f "$MBGUEST" ]; then
        # shellcheck disable=SC2086
        fail_all "test guest does not build (make -C tests/guest)" $TESTS
        exit 1
    fi
    SCRATCH=$(mktemp -d "/tmp/kvmbox-$1.XXXXXX")
    BGPIDS=()
    DAEMONS=()
    trap kvm_cleanup EXIT
    trap 'exit 130' INT TERM
}

# shellcheck disable=SC2317  # invoked by the trap
kvm_cleanup() {
    local p i
    for p in "${BGPIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${BGPIDS[@]}"; do
        for ((i = 0; i < 20; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    for p in "${DAEMONS[@]}"; do kill -KILL "$p" 2>/dev/null; done
    if [ "${KVM_TEST_KEEP:-0}" = 1 ]; then
        echo "# outputs kept in $SCRATCH" >&2
    else
        rm -rf "$SCRATCH"
    fi
}

# run_kvmbox NAME ARGS...: kvmbox ARGS in the foreground under timeout (TMO
# s), stdin /dev/null, stdout and stderr in $SCRATCH/NAME.out and .err; sets RC.
run_kvmbox() {
    local name=$1
    shift
    timeout -k 5 "$TMO" "$KVMBOX" "$@" \
        >"$SCRATCH/$name.out" 2>"$SCRATCH/$name.err" </dev/null
    RC=$?
}

text() { { tr -d '\r' <"$1"; } 2>/dev/null; }
lastline() { text "$1" | grep -av '^$' | tail -n1 | cut -c1-160; }

# sanitizer_report FILE: prints the first line of an ASan/LSan/UBSan/TSan
# report in FILE and returns 0, or returns 1 when there is none.
sanitizer_report() {
    grep -m1 -aE 'Sanitizer|runtime error' "$1" 2>/dev/null
}

# left_behind PATTERN: kills the processes whose command line contains
# PATTERN (a path of the test's) and says so, or prints nothing.
left_behind() {
    local pids
    pids=$(pgrep -f -- "$1" 2>/dev/null | tr '\n' ' ')
    pids=${pids% }
    [ -n "$pids" ] || return 0
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null
    echo "process(es) left behind: $pids"
}

# run_problems PATTERN ERRFILE... [-- OUTFILE...]: the problems common to every
# run: processes left behind (see left_behind; none checked when PATTERN is
# ""), a sanitizer report in an
# ERRFILE, a FAIL line of the guest in an OUTFILE. Prints the first one as
# a reason, or nothing.
run_problems() {
    local f r=
    [ -z "$1" ] || r=$(left_behind "$1")
    if [ -n "$r" ]; then echo "$r"; return; fi
    shift
    while [ $# -gt 0 ] && [ "$1" != -- ]; do
        if [ -f "$1" ] && r=$(sanitizer_report "$1"); then
            echo "sanitizer report in $(basename "$1"): $r"
            return
        fi
        shift
    done
    [ $# -eq 0 ] || shift
    for f in "$@"; do
        if r=$(text "$f" | grep -a -m1 '^FAIL'); then
            echo "guest: $r"
            return
        fi
    done
}

# describe_run OUTFILE ERRFILE [LABEL]: the end of a run for a FAIL line: timeout,
# exit status ($RC), the last line of OUTFILE and of ERRFILE.
describe_run() {
    local last err
    last=$(lastline "$1")
    err=$(grep -av '^$' "$2" 2>/dev/null | tail -n1 | cut -c1-200)
    [ "$RC" = 124 ] && echo -n "timed out after ${TMO}s; "
    echo -n "exit $RC; ${3:-output}: '${last:-<empty>}'"
    [ -n "$err" ] && echo -n "; stderr: '$err'"
    echo
}
