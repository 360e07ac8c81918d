#!/usr/bin/env bash
# `make bench` entry point: runs every benchmark in bench/ (see
# bench/README.md): the device-side virtio-blk benchmark (bench/blk_bench.c,
# built here with bench/Makefile), then the boot benchmark (bench/boot.sh).
# Arguments go to boot.sh; BENCH_BLK_ARGS to blk_bench (e.g. "-t 2 -s 1024");
# BENCH_ONLY=blk|boot runs one of them.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
only=${BENCH_ONLY:-}
if [ -z "$only" ] || [ "$only" = blk ]; then
    make -s -C "$here"
    # shellcheck disable=SC2086
    "$here/../build/bench/blk_bench" ${BENCH_BLK_ARGS:-}
fi
if [ -z "$only" ] || [ "$only" = boot ]; then
    exec "$here/boot.sh" "$@"
fi
