# Build helpers shared by test.sh and bench.sh (sourced): static binaries of tinylet for a guest
# arch, found through cargo's JSON messages, stripped into a payload directory.

# ring's C code for a static x86_64 musl build (TINYLET_VM_LIBC=musl): Debian's musl-gcc
# (prepare.sh installs musl-tools). aarch64 gets its compiler from .cargo/config.toml
# ([env] CC_aarch64_unknown_linux_musl).
export CC_x86_64_unknown_linux_musl=${CC_x86_64_unknown_linux_musl:-musl-gcc}

# The Rust target of a guest's payload: a flavour tinylet ships (cross/build.sh), linked
# statically since the guest has no dynamic loader. x86_64: gnu, as shipped (the C library's
# small copies differ: musl's x86_64 memcpy starts each with rep movs). aarch64: musl, the
# static flavour shipped. armv7: gnueabihf (the toolchain carries no armv7-unknown-linux-musleabihf standard
# library and rustup cannot fetch one here). Static glibc comes from libc6-dev and the cross
# libc6-dev packages (libc.a); the IPVS tests resolve no host names, so static glibc's NSS limits
# do not matter in the guest. TINYLET_VM_LIBC=gnu|musl overrides the choice for x86_64/aarch64.
payload_triple() {
    local libc
    case "$1" in
        armv7) echo armv7-unknown-linux-gnueabihf; return ;;
        x86_64) libc=${TINYLET_VM_LIBC:-gnu} ;;
        *) libc=${TINYLET_VM_LIBC:-musl} ;;
    esac
    echo "$1-unknown-linux-$libc"
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
    case "$(payload_triple "$arch")" in
        *-gnu*) env=("RUSTFLAGS=${RUSTFLAGS:+$RUSTFLAGS }-C target-feature=+crt-static") ;;
    esac
    # armv7: the static unoptimised tinylet (17 MB of Thumb-2 text) dies before its first system
    # call, in the guest kernel and under qemu-user alike, while the same build at opt-level 1
    # (9 MB of text) starts; the payloads for that guest are built at opt-level 1.
    if [ "$arch" = armv7 ]; then
        env+=("CARGO_PROFILE_DEV_OPT_LEVEL=1" "CARGO_PROFILE_DEV_DEBUG=false")
    fi
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
