#!/usr/bin/env bash
# Build the libFuzzer targets, then run each for ${FUZZ_SECONDS:-10} s on a
# temporary copy of its seed corpus tests/fuzz/corpus/<name>/ (so the corpus
# in git does not grow). One line per target, as tests/run.sh counts them:
#   PASS fuzz-<name>  |  FAIL fuzz-<name>: <crash summary>  |  SKIP ...
# A crashing input and the fuzzer's log are kept in build/fuzz/crashes/<name>/;
# reproduce with: build/fuzz/<name> build/fuzz/crashes/<name>/crash-...
# Usage: tests/fuzz/run.sh [target-name...]   (default: all)
set -u
cd "$(dirname "$0")/../.."

secs=${FUZZ_SECONDS:-10}

build_out=$(tests/fuzz/build.sh "$@" 2>&1)
build_rc=$?
if grep -q '^SKIP fuzz-build' <<< "$build_out"; then
    grep '^SKIP fuzz-build' <<< "$build_out"
    exit 0
fi
if [ $build_rc -ne 0 ]; then
    # Show why, indented: the per-target "did not build" line below is the
    # one FAIL that counts.
    sed 's/^/    /' <<< "$build_out"
fi

if [ $# -gt 0 ]; then
    names=("$@")
else
    names=()
    for src in tests/fuzz/fuzz_*.c; do names+=("$(basename "$src" .c)"); done
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0
for name in "${names[@]}"; do
    bin=build/fuzz/$name
    if [ ! -x "$bin" ]; then
        echo "FAIL fuzz-${name#fuzz_}: did not build"
        status=1
        continue
    fi
    crashes=build/fuzz/crashes/$name
    mkdir -p "$crashes" "$tmp/$name"
    [ -d "tests/fuzz/corpus/$name" ] && cp -R "tests/fuzz/corpus/$name/." "$tmp/$name/"
    log=$tmp/$name.log
    # -timeout: one input taking over 10 s is a bug (a hang) too.
    timeout -k 10 $((secs + 120)) "$bin" -max_total_time="$secs" -max_len=4096 \
        -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$crashes/" "$tmp/$name" > "$log" 2>&1
    rc=$?
    if [ $rc -eq 0 ]; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
        cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
        echo "PASS fuzz-${name#fuzz_} (${runs:-?} runs, ${cov:-cov: ?}, ${secs}s)"
        continue
    fi
    status=1
    stamp=$(date +%Y%m%d-%H%M%S)
    cp "$log" "$crashes/log-$stamp.txt"
    input=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    # The sanitizer's SUMMARY names the bug and the source line.
    why=$(grep -m1 -E '^SUMMARY: ' "$log")
    [ -n "$why" ] || why=$(grep -m1 -E 'ERROR: libFuzzer|==ERROR: ' "$log")
    [ $rc -eq 124 ] && why="timed out after $((secs + 120)) s"
    [ -n "$why" ] || why="exit status $rc"
    echo "FAIL fuzz-${name#fuzz_}: $why (input: ${input:-none}, log: $crashes/log-$stamp.txt)"
done
exit $status
