#!/usr/bin/env bash
# Install what the tests need and run the whole suite (`make check`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh test
make -j"$(nproc)" all
make check
