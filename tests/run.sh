#!/usr/bin/env bash
# The test runner behind `make check` (and check-unit/check-kvm/check-linux).
# Every suite prints one line per test: "PASS name", "FAIL name[: why]" or
# "SKIP name: reason"; this script counts them and ends with
#   N passed, N failed[, N skipped]
# Usage: tests/run.sh all|unit|kvm|linux|cli|fuzz|img
set -u
cd "$(dirname "$0")/.."
what=${1:-all}
pass=0 fail=0 skip=0
failed_names=()

# Each suite has a bounded run time; nothing it starts may outlive it.
run_suite() {
    local name=$1 limit=$2
    shift 2
    echo "=== $name"
    local out
    out=$(mktemp)
    timeout -k 10 "$limit" "$@" > >(tee "$out") 2>&1
    local rc=$?
    sleep 0.2   # let tee drain
    local p f s
    p=$(grep -c '^PASS ' "$out")
    f=$(grep -c '^FAIL ' "$out")
    s=$(grep -c '^SKIP ' "$out")
    pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + s))
    while IFS= read -r line; do failed_names+=("$name: ${line#FAIL }"); done < <(grep '^FAIL ' "$out")
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        # A crash or timeout with no FAIL line still fails the run.
        fail=$((fail + 1))
        failed_names+=("$name: exited with status $rc")
        echo "FAIL $name: suite exited with status $rc"
    fi
    rm -f "$out"
}

if [ "$what" = all ] || [ "$what" = unit ]; then
    for t in build/unit/test_*; do
        [ -x "$t" ] || continue
        run_suite "unit/$(basename "$t")" 300 "$t"
    done
fi
if [ "$what" = all ] || [ "$what" = cli ] || [ "$what" = unit ]; then
    [ -x tests/cli/run.sh ] && run_suite cli 300 tests/cli/run.sh
fi
if [ "$what" = all ] || [ "$what" = img ] || [ "$what" = unit ]; then
    # kvmbox-img against qemu-img (no KVM needed).
    [ -x tests/img/run.sh ] && run_suite img 900 tests/img/run.sh
fi
if [ "$what" = all ] || [ "$what" = fuzz ] || [ "$what" = unit ]; then
    # Every libFuzzer target briefly (FUZZ_SECONDS each) on its seed corpus.
    FUZZ_SECONDS=${FUZZ_SECONDS:-10} run_suite fuzz 600 tests/fuzz/run.sh
fi
if [ "$what" = all ] || [ "$what" = kvm ]; then
    run_suite kvm 1200 tests/kvm/run.sh
fi
if [ "$what" = all ] || [ "$what" = linux ]; then
    run_suite linux 2400 tests/linux/run.sh
fi

echo
if [ ${#failed_names[@]} -gt 0 ]; then
    echo "Failures:"
    printf '  %s\n' "${failed_names[@]}"
fi
if [ "$skip" -gt 0 ]; then
    echo "$pass passed, $fail failed, $skip skipped"
else
    echo "$pass passed, $fail failed"
fi
[ "$fail" -eq 0 ]
