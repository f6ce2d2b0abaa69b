#!/usr/bin/env bash
# Installs every Debian 12 package SealFS needs to build, test, run and benchmark.
set -euo pipefail
if [[ $(id -u) -ne 0 ]]; then
  echo "install-deps: must run as root (uses apt-get)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
packages=(
  # toolchain
  build-essential g++-12 cmake ninja-build pkg-config clang-format git
  # libraries
  libfuse3-dev librocksdb-dev libasio-dev libprotobuf-dev protobuf-compiler
  libxxhash-dev libgtest-dev libgmock-dev libbenchmark-dev
  libibverbs-dev librdmacm-dev
  # credentials and capabilities (libsodium), the /metrics HTTP endpoint,
  # JSON output of `sealfs usage`
  libsodium-dev libcpp-httplib-dev nlohmann-json3-dev
  # the CSI plugin's gRPC services (sealfs-csi)
  libgrpc++-dev protobuf-compiler-grpc
  # RDMA tests run in a QEMU virtual machine with soft-RoCE (tests/rdma_vm)
  qemu-system-x86 linux-image-amd64 busybox-static ibverbs-providers rdma-core
  ibverbs-utils perftest iproute2 kmod cpio file gzip
  # runtime and test tools
  fuse3 attr acl fio psmisc procps util-linux python3 python3-matplotlib e2fsprogs strace
  # tests/deploy/check_manifests.py reads the Kubernetes manifests
  python3-yaml
)
if ! apt-get install -y --no-install-recommends "${packages[@]}" >/tmp/sealfs-apt.log 2>&1; then
  apt-get update >/tmp/sealfs-apt-update.log 2>&1
  apt-get install -y --no-install-recommends "${packages[@]}" >/tmp/sealfs-apt.log 2>&1 || {
    tail -20 /tmp/sealfs-apt.log >&2
    echo "install-deps: apt-get install failed (full log: /tmp/sealfs-apt.log)" >&2
    exit 1
  }
fi
echo "install-deps: all packages present"
