# Build helpers shared by test.sh and bench.sh (sourced): static binaries of tinylet for a guest
# arch, found through cargo's JSON messages, stripped into a payload directory.

# ring's C code for the static x86_64 build: Debian's musl-gcc (prepare.sh installs musl-tools).
# aarch64 gets its compiler from .cargo/config.toml ([env] CC_aarch64_unknown_linux_musl).
export CC_x86_64_unknown_linux_musl=${CC_x86_64_unknown_linux_musl:-musl-gcc}

# The Rust target of a guest's payload. x86_64 and aarch64: musl, static by default. armv7: the
# toolchain carries no armv7-unknown-linux-musleabihf standard library (and rustup cannot fetch
# one here), so the payload is the gnueabihf target linked statically against the armhf cross
# glibc (crt-static; libc6-dev-armhf-cross has libc.a). The IPVS tests resolve no host names, so
# static glibc's NSS limits do not matter in the guest.
payload_triple() {
    case "$1" in
        armv7) echo armv7-unknown-linux-gnueabihf ;;
        *) echo "$1-unknown-linux-musl" ;;
    esac
}

# The rustup target for a guest (cross/setup.sh installs them too; this keeps the script whole).
ensure_target() {
    local t; t=$(payload_triple "$1")
    rustup target list --installed 2>/dev/null | grep -qx "$t" || rustup target add "$t" >&2
}

strip_for() {
    case "$1" in
        x86_64) echo strip ;;
        aarch64) echo aarch64-linux-gnu-strip ;;
        armv7) echo arm-linux-gnueabihf-strip ;;
    esac
}

# cargo_exe ARCH NAME CARGO-ARGS...: build, print the path of the executable of target NAME.
cargo_exe() {
    local arch=$1 name=$2; shift 2
    local json exe env=()
    ensure_target "$arch" || return 1
    # With --target, RUSTFLAGS reach only the target's crates (not build scripts or proc macros).
    [ "$arch" != armv7 ] || env=("RUSTFLAGS=${RUSTFLAGS:+$RUSTFLAGS }-C target-feature=+crt-static")
    json=$(cd "$REPO" && env "${env[@]}" cargo "$@" --locked --target "$(payload_triple "$arch")" \
        --message-format=json-render-diagnostics) || return 1
    exe=$(jq -r --arg n "$name" \
        'select(.reason == "compiler-artifact" and .target.name == $n and .executable != null) | .executable' \
        <<<"$json" | tail -n1)
    # The guest has no dynamic loader for a glibc binary: refuse one rather than boot it.
    if [ -n "$exe" ] && readelf -l "$exe" 2>/dev/null | grep -q 'Requesting program interpreter'; then
        echo "$exe is dynamically linked; the $arch guest needs a static binary" >&2
        return 1
    fi
    echo "$exe"
}

# put_exe ARCH SRC DEST: a stripped copy (debug binaries shrink ~10x, and every byte of the
# payload is copied into the guest's RAM).
put_exe() {
    mkdir -p "$(dirname "$3")"
    "$(strip_for "$1")" -o "$3" "$2"
}
