# Payload of cross/vm/powercut.sh (busybox ash): mounts the virtio disk /dev/vda as ext4 with
# data=ordered, the way Raspberry Pi OS mounts its root, and runs the store's power-cut checks
# from tests/store_powercut.rs on it:
#   1. verify: opens the store after the last cut and checks it against the state before that
#      boot (/payload/model) and what its writer acknowledged (/payload/writer.log);
#   2. mode `cycle` (/payload/mode): the writer then puts, overwrites and deletes records,
#      printing `@@ok` after each write the store acknowledged, until the host cuts the power;
#      mode `verify`: unmounts instead (the last boot, so the host can fsck a clean image).
while read -r m; do
    insmod "/lib/modules/$m.ko" || { echo "powercut: insmod $m failed"; exit 1; }
done < /lib/modules/disk.order
# devtmpfs creates the node when virtio_blk has probed the disk.
i=0
while [ ! -b /dev/vda ] && [ "$i" -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
[ -b /dev/vda ] || { echo "powercut: no /dev/vda"; exit 1; }
mkdir -p /mnt/data
mount -t ext4 -o noatime,data=ordered /dev/vda /mnt/data || { echo "powercut: mount failed"; exit 1; }
echo "@@mounted uptime=$(cut -d' ' -f1 /proc/uptime) $(grep ' /mnt/data ' /proc/mounts)"

TINYLET_STORE_POWERCUT_VERIFY=/mnt/data/store TINYLET_STORE_POWERCUT_MODEL=/payload/model \
    TINYLET_STORE_POWERCUT_LOG=/payload/writer.log \
    ./bin/store_powercut --exact powercut_vm_verify --nocapture --test-threads=1 > /tmp/verify.out 2>&1
rc=$?
cat /tmp/verify.out
if [ "$rc" = 0 ] && [ "$(cat mode)" = cycle ]; then
    next=$(sed -n 's/.*@@model next=\([0-9]*\).*/\1/p' /tmp/verify.out)
    TINYLET_STORE_POWERCUT_CHILD=/mnt/data/store TINYLET_STORE_POWERCUT_SEQ=${next:-0} \
        TINYLET_STORE_POWERCUT_CHILD_SEED=$(cat seed) \
        ./bin/store_powercut --exact powercut_child --nocapture --test-threads=1
    echo "powercut: the writer ended without a power cut"
    rc=1
fi
# A clean unmount, so the host's read-only fsck sees a consistent filesystem.
umount /mnt/data || rc=1
exit "$rc"
