#!/usr/bin/env bash
# From a fresh Debian 12 machine (as root): installs packages, builds the
# release and the sanitizer (ASan+UBSan) builds, and runs every test in both.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "==> installing packages"
./deploy/install-deps.sh
# FUSE end-to-end tests need the fuse kernel module and /dev/fuse.
modprobe fuse 2>/dev/null || true
[[ -e /dev/fuse ]] || mknod -m 666 /dev/fuse c 10 229 2>/dev/null || true
# Both builds first: the release run's RDMA VM test also runs the sanitizer
# build's RDMA tests inside the same VM.
for preset in release asan; do
  echo "==> building ($preset)"
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset"
done
status=0
for preset in release asan; do
  echo "==> testing ($preset)"
  if ! ctest --preset "$preset" -j2; then
    status=1
  fi
done
exit $status
