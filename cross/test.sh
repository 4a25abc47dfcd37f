#!/usr/bin/env bash
# Runs the unit tests for the ARM targets under qemu-user (the runners are set in
# .cargo/config.toml) and the static aarch64 binary's --version under qemu.
# Usage: cross/test.sh [TRIPLE...]
set -euo pipefail
cd "$(dirname "$0")/.."
targets=${*:-"aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf"}
# Emulation is 10-30x slower: the randomized engine test runs fewer seeds here (the host run
# keeps the full depth).
export TINYLET_RANDOM_SEEDS=${TINYLET_RANDOM_SEEDS:-6}
for t in $targets; do
    echo "cross: unit tests for $t under qemu-user" >&2
    cargo test --locked --target "$t" --lib
done
