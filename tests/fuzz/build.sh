#!/usr/bin/env bash
# Build every tests/fuzz/fuzz_*.c into build/fuzz/<name> with libFuzzer,
# ASan and UBSan. A target names the project sources it links in its first
# line, so adding a target needs no edit here:
#   /* fuzz-sources: src/monitor/json.c src/core/foo.c */
# Installs nothing: without clang's libFuzzer runtime (Debian: clang,
# libclang-rt-14-dev) it prints "SKIP fuzz-build: <reason>" and exits 0.
# Exit status: 1 if any target failed to build.
# Usage: tests/fuzz/build.sh [target-name...]   (default: all)
set -u
cd "$(dirname "$0")/../.."

CC=${FUZZ_CC:-clang}
# UBSan must abort, not just print, or libFuzzer never sees the finding.
FLAGS="-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
       -fno-omit-frame-pointer -std=c11 -D_GNU_SOURCE -Isrc
       -Wall -Wextra -Wno-unused-parameter"
LIBS="-lpthread -luring -lz -lzstd"   # what the project links (see the Makefile)

if ! command -v "$CC" >/dev/null 2>&1; then
    echo "SKIP fuzz-build: $CC not found (Debian: apt-get install clang libclang-rt-14-dev)"
    exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Probe the runtime with a trivial target rather than guessing its path.
cat > "$tmp/probe.c" <<'PROBE'
#include <stddef.h>
#include <stdint.h>
int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);
int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }
PROBE
# shellcheck disable=SC2086
if ! "$CC" $FLAGS "$tmp/probe.c" -o "$tmp/probe" 2> "$tmp/probe.err"; then
    echo "SKIP fuzz-build: $CC cannot link libFuzzer: $(grep -m1 -i error "$tmp/probe.err")" \
         "(Debian: libclang-rt-14-dev)"
    exit 0
fi

mkdir -p build/fuzz
if [ $# -gt 0 ]; then
    srcs=()
    for n in "$@"; do srcs+=("tests/fuzz/$n.c"); done
else
    srcs=(tests/fuzz/fuzz_*.c)
fi

rc=0
for src in "${srcs[@]}"; do
    [ -f "$src" ] || { echo "FAIL fuzz-build: no such target $src"; rc=1; continue; }
    name=$(basename "$src" .c)
    out=build/fuzz/$name
    rm -f "$out"       # never leave a stale binary to be run by run.sh
    # The first line lists the project sources: /* fuzz-sources: a.c b.c */
    deps=$(sed -n '1s|^/\*[[:space:]]*fuzz-sources:\(.*\)\*/[[:space:]]*$|\1|p' "$src")
    if [ -z "$deps" ]; then
        echo "FAIL fuzz-build-$name: first line is not /* fuzz-sources: ... */"
        rc=1
        continue
    fi
    missing=
    for d in $deps; do [ -f "$d" ] || missing="$missing $d"; done
    if [ -n "$missing" ]; then
        echo "FAIL fuzz-build-$name: listed sources missing:$missing"
        rc=1
        continue
    fi
    # shellcheck disable=SC2086
    if "$CC" $FLAGS -o "$out" "$src" $deps $LIBS 2> "$tmp/$name.err"; then
        cat "$tmp/$name.err"          # warnings, if any
        echo "built $out"
    else
        cat "$tmp/$name.err"
        echo "FAIL fuzz-build-$name: compile error"
        rc=1
    fi
done
exit $rc
