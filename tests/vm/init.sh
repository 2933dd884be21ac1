#!/bin/busybox sh
# /init of the cgroup v2 test VM (see tests/vm/mod.rs): load the modules, mount the host's root
# (9p, read-only) as the new root with proc, sys, a pure cgroup2 hierarchy, dev and tmpfs /tmp
# and /run (keeping $VM_KEEP), switch to it, run $VM_COMMAND, print its exit status and power off. Every line it
# prints on the console that the host test reads starts with "VM-".
/bin/busybox --install -s /bin
export PATH=/bin
fail() {
	echo "VM-FAIL init: $*"
	poweroff -f
}
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
. /vm.conf
while read -r ko; do
	insmod "$ko" || fail "insmod $ko"
done </modules.order
r=/newroot
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose host $r ||
	fail "mounting the host's root over 9p"
mount -t proc proc $r/proc || fail "proc"
mount -t sysfs sysfs $r/sys || fail "sysfs"
mount -t cgroup2 -o nsdelegate cgroup2 $r/sys/fs/cgroup || fail "cgroup2"
mount -t devtmpfs devtmpfs $r/dev || fail "devtmpfs"
mkdir -p $r/dev/pts $r/dev/shm
ln -s /proc/self/fd $r/dev/fd
ln -s /proc/self/fd/0 $r/dev/stdin
ln -s /proc/self/fd/1 $r/dev/stdout
ln -s /proc/self/fd/2 $r/dev/stderr
mount -t devpts devpts $r/dev/pts || fail "devpts"
mount -t tmpfs tmpfs $r/dev/shm || fail "shm"
# $VM_KEEP (the build directory with the binaries under test) stays visible even when it lives
# under /tmp or /run, which get fresh tmpfs mounts: held aside, then moved back on top.
mkdir -p /keep
mount --bind "$r$VM_KEEP" /keep || fail "holding $VM_KEEP"
mount -t tmpfs -o mode=1777 tmpfs $r/tmp || fail "tmp"
mount -t tmpfs -o mode=755 tmpfs $r/run || fail "run"
mkdir -p "$r$VM_KEEP" 2>/dev/null
mount --move /keep "$r$VM_KEEP" || fail "putting $VM_KEEP back"
cp /bin/busybox $r/run/busybox
cat >$r/run/stage2 <<'EOF'
cd /tmp
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/tmp
echo "VM-BOOTED kernel $(/run/busybox uname -r), cgroup2 controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
/bin/sh -c "$VM_COMMAND"
echo "VM-EXIT $?"
/run/busybox sync
/run/busybox poweroff -f
EOF
exec switch_root $r /run/busybox sh /run/stage2
