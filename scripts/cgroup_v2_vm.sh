#!/usr/bin/env bash
# Runs firebox's cgroup tests on a cgroup v2 kernel: boots Debian's kernel under KVM with this
# machine's root file system shared read-only (9p) under a tmpfs overlay, cgroup2 alone mounted
# at /sys/fs/cgroup, and runs pytest there with the repository's venv. Exits with pytest's
# status. Needs root; uses KVM where it can; installs qemu-system-x86, linux-image-amd64 and
# busybox-static when missing.
#
#   scripts/cgroup_v2_vm.sh [pytest arguments]   (default: tests/test_cgroups.py)
#
# FIREBOX_VM_SETUP: shell lines the guest runs in the repository before pytest; what they write
# stays in the guest. FIREBOX_VM_TIMEOUT (s) and FIREBOX_VM_MEMORY (MiB) size the run.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
TIMEOUT=${FIREBOX_VM_TIMEOUT:-420}  # seconds for the whole VM run
MEMORY=${FIREBOX_VM_MEMORY:-1024}   # MiB
[ $# -gt 0 ] || set -- tests/test_cgroups.py
start=$(date +%s.%N)

# KVM where it can boot a stock kernel; PVM's /dev/kvm (kvm_pvm, a nested VM without hardware
# virtualisation) boots only PVM guest kernels, so there, as without /dev/kvm, qemu emulates.
if [ -e /dev/kvm ] && [ ! -d /sys/module/kvm_pvm ] && [ -z "${FIREBOX_VM_TCG:-}" ]; then
    accel=(-enable-kvm -cpu host)
else
    accel=(-accel tcg,thread=multi -cpu max)
fi
[ "$(id -u)" = 0 ] || { echo "cgroup_v2_vm: run as root (it installs packages)" >&2; exit 2; }
need=()
command -v qemu-system-x86_64 >/dev/null 2>&1 || need+=(qemu-system-x86)
ls /boot/vmlinuz-* >/dev/null 2>&1 || need+=(linux-image-amd64)
[ -x /bin/busybox ] || need+=(busybox-static)
if [ ${#need[@]} -gt 0 ]; then
    echo "cgroup_v2_vm: apt-get install ${need[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" \
        >/dev/null
fi
kernel=$(ls -v /boot/vmlinuz-* | tail -1)
kver=${kernel#/boot/vmlinuz-}
moddir=/lib/modules/$kver
installed=$(date +%s.%N)

work=$(mktemp -d /tmp/firebox-cgroup-vm.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/initrd/bin" "$work/initrd/lib/modules" "$work/out"

# The modules the guest needs before it can see the host's files, dependencies first.
modules=()
add_module() {
    local name=$1 path dep
    path=$(awk -v m="/$name.ko:" 'index($0, m) {print $1; exit}' "$moddir/modules.dep")
    path=${path%:}
    [ -n "$path" ] || { echo "cgroup_v2_vm: module $name not in $moddir" >&2; exit 2; }
    for m in "${modules[@]}"; do [ "$m" = "$path" ] && return; done
    for dep in $(awk -v p="$path:" '$1 == p {for (i = 2; i <= NF; i++) print $i}' \
                 "$moddir/modules.dep"); do
        dep=${dep##*/}
        add_module "${dep%%.ko*}"
    done
    modules+=("$path")
}
for m in virtio_pci 9pnet_virtio 9p overlay; do add_module "$m"; done
for m in "${modules[@]}"; do
    case $m in
        *.ko) cp "$moddir/$m" "$work/initrd/lib/modules/" ;;
        *.ko.xz) xz -dc "$moddir/$m" >"$work/initrd/lib/modules/$(basename "${m%.xz}")" ;;
        *.ko.zst) zstd -qdc "$moddir/$m" >"$work/initrd/lib/modules/$(basename "${m%.zst}")" ;;
    esac
    echo "$(basename "${m%.ko*}").ko" >>"$work/initrd/lib/modules/order"
done
cp /bin/busybox "$work/initrd/bin/busybox"

# What runs in the guest, as root in the host's file system (read-only under an overlay).
cat >"$work/out/run.sh" <<EOF
#!/bin/sh
cd $(printf %q "$REPO")
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
export PYTHONDONTWRITEBYTECODE=1 PYTHONPYCACHEPREFIX=/out/pycache
echo "guest: kernel \$(uname -r), /sys/fs/cgroup: \$(stat -f -c %T /sys/fs/cgroup)," \
     "controllers: \$(cat /sys/fs/cgroup/cgroup.controllers)"
$(printf '%s' "${FIREBOX_VM_SETUP:-}")
# Not hypothesis's plugin or anyio's: the cgroup tests use neither, and importing them takes seconds here.
exec .venv/bin/python -m pytest -q --color=no -p no:cacheprovider -p no:hypothesispytest -p no:anyio $(printf '%q ' "$@")
EOF

cat >"$work/initrd/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /lower /rw /newroot /out
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
finish() {
    echo "FIREBOX-VM-STATUS=$1"
    echo "$1" >/out/status 2>/dev/null
    /bin/busybox sync
    /bin/busybox poweroff -f
}
for m in $(/bin/busybox cat /lib/modules/order); do
    /bin/busybox insmod "/lib/modules/$m" || finish 90
done
/bin/busybox mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose \
    hostroot /lower || finish 91
/bin/busybox mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 out /out || finish 92
/bin/busybox mount -t tmpfs -o mode=0755 tmpfs /rw
/bin/busybox mkdir -p /rw/upper /rw/work
/bin/busybox mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work \
    /newroot || finish 93
cd /newroot
/bin/busybox mount -t proc proc proc
/bin/busybox mount -t sysfs sysfs sys
/bin/busybox mount -t cgroup2 cgroup2 sys/fs/cgroup || finish 94
/bin/busybox mount -t devtmpfs devtmpfs dev
/bin/busybox mkdir -p dev/pts dev/shm
/bin/busybox mount -t devpts devpts dev/pts
/bin/busybox mount -t tmpfs tmpfs dev/shm
/bin/busybox mount -t tmpfs tmpfs tmp
/bin/busybox mount -t tmpfs tmpfs run
/bin/busybox mkdir -p out
/bin/busybox mount --bind /out out
# A checkout under /tmp or /run (a CI clone) is hidden by the tmpfs above: bind it back.
repo=$(/bin/busybox cat /out/repo)
case $repo in
    /tmp/*|/run/*) /bin/busybox mkdir -p "/newroot$repo"
                   /bin/busybox mount --bind "/lower$repo" "/newroot$repo" || finish 95 ;;
esac
/bin/busybox ip link set lo up
/bin/busybox hostname firebox-vm
echo "guest: ready after $(/bin/busybox cut -d' ' -f1 /proc/uptime) s of uptime"
/bin/busybox chroot /newroot /bin/sh /out/run.sh
status=$?
echo "guest: done after $(/bin/busybox cut -d' ' -f1 /proc/uptime) s of uptime"
finish $status
EOF
printf '%s' "$REPO" >"$work/out/repo"
chmod +x "$work/initrd/init" "$work/out/run.sh"
(cd "$work/initrd" && find . | cpio -o -H newc --quiet | gzip -1 >"$work/initrd.gz")

# The bytecode of what the guest's pytest imports, compiled here: compiling it in the guest,
# under emulation, took a third of the run. The guest reads it through PYTHONPYCACHEPREFIX.
PYTHONDONTWRITEBYTECODE= PYTHONPYCACHEPREFIX="$work/out/pycache" \
    .venv/bin/python -m pytest -q --collect-only -p no:cacheprovider -p no:hypothesispytest \
    -p no:anyio "$@" >/dev/null 2>&1 || true

echo "cgroup_v2_vm: booting $kernel (${accel[*]}), ${MEMORY} MiB, 2 vcpus; pytest $*"
booted=$(date +%s.%N)
set +e
timeout --kill-after=10 "$TIMEOUT" qemu-system-x86_64 \
    "${accel[@]}" -smp 2 -m "$MEMORY" -nographic -no-reboot \
    -kernel "$kernel" -initrd "$work/initrd.gz" \
    -append "console=ttyS0 ${FIREBOX_VM_APPEND:-quiet loglevel=3} panic=-1 cgroup_no_v1=all" \
    -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
    -virtfs local,path="$work/out",mount_tag=out,security_model=none,multidevs=remap \
    -nic none </dev/null 2>&1 | sed -u 's/\r$//'
qemu=${PIPESTATUS[0]}
set -e
end=$(date +%s.%N)

status=$(cat "$work/out/status" 2>/dev/null || echo "")
awk -v s="$start" -v i="$installed" -v b="$booted" -v e="$end" 'BEGIN {
    printf "cgroup_v2_vm: install check %.1f s, vm %.1f s, total %.1f s\n", i - s, e - b, e - s }'
if [ -z "$status" ]; then
    echo "cgroup_v2_vm: the guest reported no status (qemu exited $qemu)" >&2
    exit 3
fi
echo "cgroup_v2_vm: pytest in the guest exited $status"
exit "$status"
