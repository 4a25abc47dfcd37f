#!/usr/bin/env bash
# ipvsadm -R vs tinylet's IPVS sync in real kernels: N services x 2 masquerade destinations
# (N = 1,000 and 10,000 unless TINYLET_VM_BENCH_SIZES says otherwise), then one destination
# added at the largest N; all figures of a guest come from one boot. Prints a table per guest.
#
# Usage: cross/vm/bench.sh [x86_64] [aarch64] [armv7]   (default: x86_64; the ARM guests take
#                                                       ~3x longer)
# x86_64 runs one boot per CPU model in TINYLET_VM_BENCH_X86_CPUS (default "max Skylake-Client");
# TINYLET_VM_CPU picks a single model for any guest.
# TINYLET_VM_BENCH_DIRTY=1 adds an ipvsadm -R run in the same namespace right after its flush
# (the kernel still holds the flushed destinations in its trash list): how much that costs.
set -uo pipefail
. "$(dirname "$0")/common.sh"
. "$VM_DIR/build-payload.sh"
REPO=$(cd "$VM_DIR/../.." && pwd)

ARCHES=("$@")
[ ${#ARCHES[@]} -gt 0 ] || ARCHES=(x86_64)
SIZES=${TINYLET_VM_BENCH_SIZES:-1000 10000}
"$VM_DIR/prepare.sh" "${ARCHES[@]}" || die "prepare.sh failed"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tinylet-vm-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

# Adds tinylet's bench (the ignored bench_sync test of tests/ipvs_kernel.rs) when the tree has it.
add_tinylet_bench() {
    local arch=$1 payload=$2 exe
    if [ -f "$REPO/tests/ipvs_kernel.rs" ] && grep -q 'fn bench_sync' "$REPO/tests/ipvs_kernel.rs"; then
        # The bench profile (release optimisation and LTO, as shipped, but unwinding): a debug
        # build spends most of a 10,000-service sync in its own unoptimised code under TCG.
        exe=$(cargo_exe "$arch" ipvs_kernel test --profile bench --test ipvs_kernel --no-run) &&
            [ -n "$exe" ] || return 1
        put_exe "$arch" "$exe" "$payload/bin/ipvs_kernel"
    else
        log "no tinylet IPVS bench in this tree"
    fi
}

# The "@@BENCH tool case N seconds messages" lines of a guest as a table, one row per case.
bench_table() {
    awk '
        $1 == "@@BENCH" {
            k = $3 " " $4; t[$2, k] = $5; m[$2, k] = $6
            if (!(k in seen)) { seen[k] = 1; keys[++nk] = k }
        }
        function cell(tool, k) {
            if (!((tool, k) in t)) return "-"
            return sprintf("%.3f s", t[tool, k]) (m[tool, k] != "" ? sprintf(" (%d msgs)", m[tool, k]) : "")
        }
        END {
            names["sync"] = "sync N x 2 dests"; names["add-one"] = "+1 dest at N"
            names["resync"] = "resync, no change"; names["flush"] = "flush"
            names["encode"] = "diff+encode only (no I/O)"
            names["sync-after-flush"] = "sync, same netns just after a flush"
            printf "| %-36s | %-22s | %-22s | %-8s |\n", "case", "ipvsadm", "tinylet", "ratio"
            printf "|--------------------------------------|------------------------|------------------------|----------|\n"
            for (i = 1; i <= nk; i++) {
                split(keys[i], p, " "); k = keys[i]
                r = "-"
                if ((("ipvsadm", k) in t) && (("tinylet", k) in t)) {
                    # /proc/uptime ticks are 10 ms: a zero ipvsadm time is "< 10 ms".
                    if (t["tinylet", k] > 0) r = sprintf("%.1fx", t["ipvsadm", k] / t["tinylet", k])
                }
                printf "| %-36s | %-22s | %-22s | %-8s |\n", (p[1] in names ? names[p[1]] : p[1]) ", N=" p[2], cell("ipvsadm", k), cell("tinylet", k), r
            }
        }'
}

status=0
for arch in "${ARCHES[@]}"; do
    payload=$WORK/$arch
    mkdir -p "$payload/bin"
    echo "$SIZES" > "$payload/bench-sizes"
    [ "${TINYLET_VM_BENCH_DIRTY:-0}" != 1 ] || touch "$payload/bench-dirty"
    cp "$VM_DIR/guest/lib.sh" "$payload/"
    cp "$VM_DIR/guest/bench.sh" "$payload/run"
    add_tinylet_bench "$arch" "$payload" || { echo "FAIL bench $arch: build"; status=1; continue; }
    # x86_64 boots once per CPU model: what a syscall costs depends on the mitigations the
    # stock kernel picks for the CPU it sees (QEMU's own "max" model says AMD: no page-table
    # isolation; a Skylake says Intel: PTI and buffer clearing on every kernel exit, as on that
    # hardware), and ipvsadm makes ~14 syscalls per table line where tinylet makes ~2 per batch.
    cpus=("${TINYLET_VM_CPU:-}")
    if [ "$arch" = x86_64 ] && [ -z "${TINYLET_VM_CPU:-}" ]; then
        read -r -a cpus <<<"${TINYLET_VM_BENCH_X86_CPUS:-max Skylake-Client}"
    fi
    for cpu in "${cpus[@]}"; do
        out=$WORK/$arch-${cpu//[^A-Za-z0-9]/_}.out
        echo "=== bench $arch${cpu:+ -cpu $cpu} (N = $SIZES)"
        TINYLET_VM_CPU=$cpu TINYLET_VM_TIMEOUT=${TINYLET_VM_TIMEOUT:-1200} "$VM_DIR/run.sh" "$arch" "$payload" | tee "$out"
        rc=${PIPESTATUS[0]}
        [ "$rc" -eq 0 ] || { echo "FAIL bench $arch${cpu:+ -cpu $cpu}: exit $rc"; status=1; }
        echo
        echo "$arch guest ($(cat "$VM_CACHE/$arch/kernel-release"), QEMU TCG${cpu:+, -cpu $cpu}), one boot:"
        sed -n 's/^@@CPU /  /p' "$out"
        bench_table < "$out"
    done
    rm -rf "$payload"
done
exit $status
