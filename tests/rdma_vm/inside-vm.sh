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
echo "== transport microbenchmarks (emulated soft-RoCE under TCG: not a measure of speed)"
SEALFS_RDMA_TEST_ADDR=$address timeout 240 "$build/bench/rpc_bench" --benchmark_min_time=0.1 2>&1 |
  grep -E "^BM_|^Sealfs|^Run on" || echo "benchmarks did not run"
# The raw-verbs baselines beside them: perftest's SEND latency and READ bandwidth.
echo "== perftest baselines (same emulated device)"
for tool in "ib_send_lat -s 64 -n 2000" "ib_read_bw -s 1048576 -n 200"; do
  timeout 120 $tool -d rxe0 -F > /tmp/perftest-server.log 2>&1 &
  server=$!
  sleep 2
  timeout 120 $tool -d rxe0 -F "$address" 2>&1 | grep -E "^ *[0-9]+ +[0-9]+" | head -3 || echo "$tool did not run"
  wait $server
done
echo "RDMA VM: $((2 - failed)) passed, $failed failed"
exit $failed
