#!/bin/bash
# Runs inside the VM (chrooted into the host's root): puts soft-RoCE on the
# virtio-net interface, then runs the RDMA transport tests and the
# end-to-end check. Usage: inside-vm.sh BUILD_DIR ADDRESS
build=$1
address=$2
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
here=$(dirname "$(realpath "$0")")
if ! rdma link add rxe0 type rxe netdev eth0; then
  echo "rdma link add failed"
  exit 1
fi
ibv_devices
failed=0
echo "== RDMA transport tests"
SEALFS_RDMA_TEST_ADDR=$address "$build/tests/rpc_rdma_transport_test" || failed=$((failed + 1))
echo "== end to end over RDMA"
bash "$here/e2e-in-vm.sh" "$build" "$address" || failed=$((failed + 1))
echo "RDMA VM: $((2 - failed)) passed, $failed failed"
exit $failed
