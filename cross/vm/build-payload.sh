# Build helpers shared by test.sh and bench.sh (sourced): static musl binaries of tinylet for a
# guest arch, found through cargo's JSON messages, stripped into a payload directory.

# ring's C code for the static x86_64 build: Debian's musl-gcc (prepare.sh installs musl-tools).
# aarch64 gets its compiler from .cargo/config.toml ([env] CC_aarch64_unknown_linux_musl).
export CC_x86_64_unknown_linux_musl=${CC_x86_64_unknown_linux_musl:-musl-gcc}

musl_triple() { echo "$1-unknown-linux-musl"; }

# The rustup target for a guest (cross/setup.sh installs them too; this keeps the script whole).
ensure_target() {
    local t; t=$(musl_triple "$1")
    rustup target list --installed 2>/dev/null | grep -qx "$t" || rustup target add "$t" >&2
}

strip_for() {
    case "$1" in
        x86_64) echo strip ;;
        aarch64) echo aarch64-linux-gnu-strip ;;
    esac
}

# cargo_exe ARCH NAME CARGO-ARGS...: build, print the path of the executable of target NAME.
cargo_exe() {
    local arch=$1 name=$2; shift 2
    local json
    ensure_target "$arch" || return 1
    json=$(cd "$REPO" && cargo "$@" --locked --target "$(musl_triple "$arch")" \
        --message-format=json-render-diagnostics) || return 1
    jq -r --arg n "$name" \
        'select(.reason == "compiler-artifact" and .target.name == $n and .executable != null) | .executable' \
        <<<"$json" | tail -n1
}

# put_exe ARCH SRC DEST: a stripped copy (debug binaries shrink ~10x, and every byte of the
# payload is copied into the guest's RAM).
put_exe() {
    mkdir -p "$(dirname "$3")"
    "$(strip_for "$1")" -o "$3" "$2"
}
