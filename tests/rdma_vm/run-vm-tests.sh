#!/usr/bin/env bash
# Runs the RDMA tests for real: boots a QEMU virtual machine (TCG) with
# Debian's kernel, loads soft-RoCE (rdma_rxe) on its virtio-net interface,
# mounts this host's root read-only over 9p, and inside it runs
#   - the RDMA transport tests (tests/rpc_rdma_transport_test), and
#   - an end-to-end check: metadata and data servers and a FUSE mount, all
#     over RDMA, a file written and read back, the counters showing one-sided
#     RDMA READ/WRITE traffic (tests/rdma_vm/e2e-in-vm.sh),
#   - the transport microbenchmarks, and
#   - when ASAN_BUILD_DIR holds a built tests/rpc_rdma_transport_test, the same
#     RDMA tests under AddressSanitizer with leak detection; any sanitizer
#     report fails the run.
# Usage: run-vm-tests.sh BUILD_DIR [ASAN_BUILD_DIR]
# SEALFS_VM_SUITES picks suites (default "gtest e2e bench asan");
# SEALFS_VM_BENCH_ARGS replaces the microbenchmarks' arguments.
# Exit 0: passed; 77: skipped (the reason is printed); anything else: failed.
#
# The guest's NIC is QEMU user networking with restrict=on: nothing leaves the
# VM. Its address (10.0.2.15, QEMU's usual guest address) exists only inside
# the VM; RDMA traffic loops back within the guest's own rxe device.
set -euo pipefail

build_dir=$(realpath "${1:?usage: run-vm-tests.sh BUILD_DIR [ASAN_BUILD_DIR]}")
asan_dir=""
if [[ -n "${2:-}" && -x "${2}/tests/rpc_rdma_transport_test" ]]; then
  asan_dir=$(realpath "$2")
fi
suites=${SEALFS_VM_SUITES:-gtest e2e bench asan}
bench_args=${SEALFS_VM_BENCH_ARGS:-}
here=$(dirname "$(realpath "$0")")
source_dir=$(realpath "$here/../..")
skip() { echo "RDMA VM tests skipped: $*"; exit 77; }

qemu=$(command -v qemu-system-x86_64 || true)
[[ -n "$qemu" ]] || skip "qemu-system-x86_64 is not installed (Debian package qemu-system-x86)"
kernel=$(ls -1 /boot/vmlinuz-* 2>/dev/null | sort -V | tail -1 || true)
[[ -n "$kernel" ]] || skip "no kernel in /boot (Debian package linux-image-amd64)"
version=${kernel#/boot/vmlinuz-}
modules=/lib/modules/$version
[[ -f $modules/modules.dep ]] || skip "no modules for kernel $version"
busybox=/bin/busybox
[[ -x $busybox ]] && file -L "$busybox" 2>/dev/null | grep -q static || busybox=$(command -v busybox || true)
[[ -x "$busybox" ]] || skip "busybox is not installed (Debian package busybox-static)"
[[ -x /usr/sbin/rdma || -x /sbin/rdma || -x /bin/rdma ]] || skip "the rdma tool is missing (Debian package iproute2)"
ls /usr/lib/x86_64-linux-gnu/libibverbs/librxe-rdmav*.so >/dev/null 2>&1 ||
  skip "the rxe userspace provider is missing (Debian package ibverbs-providers)"
[[ -x $build_dir/tests/rpc_rdma_transport_test ]] || skip "$build_dir has no RDMA tests built"

work=$(mktemp -d /tmp/sealfs-vm-XXXXXX)
trap 'rm -rf "$work"' EXIT
root=$work/initramfs
mkdir -p "$root"/{bin,proc,sys,dev,host,modules}
cp "$busybox" "$root/bin/busybox"
for applet in sh mount umount insmod ip chroot sleep mkdir cat echo poweroff sync; do
  ln -s busybox "$root/bin/$applet"
done

# Modules and what they need, in load order (dependencies first, as modprobe
# would): modules.dep lists a module's dependencies, the deepest last.
declare -A loaded=()
order=()
add_module() {
  local name=$1 line path deps dep
  line=$(grep -E "/$name\.ko(\.[a-z]+)?:" "$modules/modules.dep" | head -1) || true
  [[ -n "$line" ]] || { grep -q "/$name.ko" "$modules/modules.builtin" 2>/dev/null && return 0; skip "kernel module $name not found"; }
  path=${line%%:*}
  [[ -n ${loaded[$path]:-} ]] && return 0
  deps=(${line#*:})
  for ((i = ${#deps[@]} - 1; i >= 0; i--)); do
    dep=${deps[$i]}
    [[ -n ${loaded[$dep]:-} ]] && continue
    loaded[$dep]=1
    order+=("$dep")
  done
  loaded[$path]=1
  order+=("$path")
}
for module in crc32_generic virtio_pci virtio_net 9pnet_virtio 9p fuse rdma_rxe rdma_ucm; do
  add_module "$module"
done
: > "$root/modules/order"
for path in "${order[@]}"; do
  case $path in *.ko) ;; *) skip "compressed module $path needs an unpacker" ;; esac
  cp "$modules/$path" "$root/modules/"
  basename "$path" >> "$root/modules/order"
done

cat > "$root/init" <<INIT
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for module in \$(cat /modules/order); do insmod /modules/\$module || echo "insmod \$module failed"; done
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000 host /host
mount -t proc proc /host/proc
mount -t sysfs sys /host/sys
mount -t devtmpfs dev /host/dev
# Scratch space is tmpfs; the source and build trees stay visible even when
# they live below one of these directories.
n=0
for tree in $source_dir $build_dir $asan_dir; do
  mkdir -p /keep/\$n
  mount -o bind /host\$tree /keep/\$n
  n=\$((n + 1))
done
mount -t tmpfs tmp /host/tmp
mount -t tmpfs run /host/run
mount -t tmpfs vartmp /host/var/tmp
n=0
for tree in $source_dir $build_dir $asan_dir; do
  case \$tree in
    /tmp/*|/run/*|/var/tmp/*) mkdir -p /host\$tree && mount -o bind /keep/\$n /host\$tree ;;
  esac
  n=\$((n + 1))
done
chroot /host /usr/bin/env SEALFS_VM_SUITES="$suites" SEALFS_VM_BENCH_ARGS="$bench_args" /bin/bash $here/inside-vm.sh $build_dir 10.0.2.15 $asan_dir
echo "SEALFS_VM_EXIT \$?"
sync
poweroff -f
INIT
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$work/initramfs.gz"

echo "booting $version under QEMU (TCG) with soft-RoCE"
log=$work/console.log
set +e
timeout 900 "$qemu" -accel tcg -m 3072 -smp 2 -nographic -no-reboot \
  -kernel "$kernel" -initrd "$work/initramfs.gz" \
  -append "console=ttyS0 quiet panic=-1 rdinit=/init" \
  -nic user,model=virtio-net-pci,restrict=on \
  -virtfs local,path=/,mount_tag=host,security_model=passthrough,multidevs=remap,readonly=on \
  < /dev/null 2>&1 | tee "$log" | grep --line-buffered -vE "^\s*$"
qemu_status=${PIPESTATUS[0]}
set -e
result=$(grep -a "SEALFS_VM_EXIT" "$log" | tail -1 | awk '{print $2}' | tr -d '\r')
if [[ -z "$result" ]]; then
  echo "RDMA VM tests failed: the VM did not finish (qemu status $qemu_status)"
  exit 1
fi
exit "$result"
