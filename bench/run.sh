#!/usr/bin/env bash
# `make bench` entry point: runs every benchmark in bench/ (today only the
# boot benchmark, bench/boot.sh; see bench/README.md). Arguments go to it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exec "$here/boot.sh" "$@"
