#!/bin/sh
# mmdebstrap hooks of build-rootfs.sh (run on the host, ROOT is the image's tree).
#   customize.sh setup ROOT      before any package: the initramfs settings, so the kernel's
#                                postinst builds a small initramfs that mounts a virtio root
#   customize.sh customize ROOT  after all packages: host name, fstab, network, the test driver
set -eu
phase=$1 root=$2

case "$phase" in
setup)
    mkdir -p "$root/etc/initramfs-tools/conf.d" "$root/etc/initramfs-tools/hooks"
    # Only the listed modules plus what the hook below adds: a few MB instead of ~30, and
    # gzip, which the kernel and the build both handle quickly.
    printf 'MODULES=list\nCOMPRESS=gzip\n' >"$root/etc/initramfs-tools/conf.d/tinylet-image"
    cat >"$root/etc/initramfs-tools/hooks/tinylet-image" <<'HOOK'
#!/bin/sh
# The modules that find and mount the root disk of a QEMU virt/pc guest (virtio-blk over PCI).
case "$1" in prereqs) exit 0 ;; esac
. /usr/share/initramfs-tools/hook-functions
for m in virtio_pci virtio_mmio virtio_blk ext4; do force_load "$m"; done
HOOK
    chmod 0755 "$root/etc/initramfs-tools/hooks/tinylet-image"
    ;;
customize)
    echo tinylet-image >"$root/etc/hostname"
    printf '127.0.0.1\tlocalhost\n127.0.1.1\ttinylet-image\n::1\tlocalhost ip6-localhost ip6-loopback\n' \
        >"$root/etc/hosts"
    # No fsck: the root is a fresh overlay of a clean image on every run.
    printf '/dev/vda\t/\text4\tdefaults,noatime\t0\t0\n' >"$root/etc/fstab"
    # DHCP on the (host-isolated) user-mode NIC: the node gets an address like a device does.
    mkdir -p "$root/etc/systemd/network"
    printf '[Match]\nName=en* eth*\n\n[Network]\nDHCP=ipv4\n' >"$root/etc/systemd/network/10-wired.network"
    chroot "$root" systemctl enable systemd-networkd.service >/dev/null 2>&1
    # Console login as root without a password, for debugging a booted image by hand.
    chroot "$root" passwd -d root >/dev/null

    # The boot test's driver: with tinylet.test=1 on the kernel command line, run /test/run
    # from the second disk (/dev/vdb). cross/image/boot-test.sh writes that disk.
    mkdir -p "$root/usr/local/sbin"
    cat >"$root/usr/local/sbin/tinylet-image-test" <<'STUB'
#!/bin/sh
mkdir -p /test
if ! mount /dev/vdb /test; then
    echo "@@TINYLET-IMAGE no test disk"
    exit 0
fi
exec /bin/sh /test/run
STUB
    chmod 0755 "$root/usr/local/sbin/tinylet-image-test"
    cat >"$root/etc/systemd/system/tinylet-image-test.service" <<'UNIT'
[Unit]
Description=tinylet boot test driver (runs /test/run from /dev/vdb)
ConditionKernelCommandLine=tinylet.test=1
Wants=dev-vdb.device
After=dev-vdb.device local-fs.target containerd.service

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/tinylet-image-test
StandardOutput=journal+console
StandardError=journal+console
TimeoutStartSec=infinity

[Install]
WantedBy=multi-user.target
UNIT
    chroot "$root" systemctl enable tinylet-image-test.service >/dev/null 2>&1
    ;;
*)
    echo "usage: customize.sh setup|customize ROOT" >&2
    exit 2
    ;;
esac
