#!/usr/bin/env bash
# Release builds for the edge targets; prints each binary's size in bytes.
# Usage: cross/build.sh [TRIPLE...]   (default: the three shipped targets + the host)
set -euo pipefail
cd "$(dirname "$0")/.."
targets=${*:-"aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf aarch64-unknown-linux-musl x86_64-unknown-linux-gnu"}
printf '%-34s %12s\n' target bytes
for t in $targets; do
    cargo build -q --release --locked --target "$t" --bin tinylet
    bin=target/$t/release/tinylet
    printf '%-34s %12s\n' "$t" "$(stat -c %s "$bin")"
done
