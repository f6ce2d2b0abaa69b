#!/usr/bin/env bash
# From a fresh Debian 12 machine (as root) to a mounted local SealFS cluster:
# installs packages, builds, installs the binaries and the mount helper, then
# starts a metadata server and data servers on loopback and mounts the default
# volume. Extra arguments go to `sealfs local up` (e.g. --mount /mnt/x).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "==> installing packages"
./deploy/install-deps.sh
echo "==> building (release)"
cmake --preset release >/dev/null
cmake --build --preset release
echo "==> installing to /usr/local"
cmake --install build/release >/dev/null
# mount(8) looks for helpers in /sbin: `mount -t sealfs` and `-t fuse.sealfs`.
ln -sf /usr/local/sbin/mount.sealfs /sbin/mount.sealfs
ln -sf /usr/local/sbin/mount.sealfs /sbin/mount.fuse.sealfs
echo "==> starting the local cluster"
/usr/local/bin/sealfs local up "$@"
echo "==> done: 'sealfs status' shows the cluster, 'sealfs local down' stops it"
