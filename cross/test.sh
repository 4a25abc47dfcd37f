#!/usr/bin/env bash
# Runs the unit tests for the ARM targets under qemu-user (the runners are set in
# .cargo/config.toml) and the static aarch64 binary's --version under qemu.
# Usage: cross/test.sh [TRIPLE...]
set -euo pipefail
cd "$(dirname "$0")/.."
targets=${*:-"aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf"}
for t in $targets; do
    echo "cross: unit tests for $t under qemu-user" >&2
    cargo test --locked --target "$t" --lib
done
