#!/bin/bash
# Runs inside the VM (chrooted into the host's root): puts soft-RoCE on the
# virtio-net interface, then runs the suites named in SEALFS_VM_SUITES:
#   gtest  the RDMA transport tests (release build)
#   e2e    the end-to-end check over RDMA
#   bench  the transport microbenchmarks and perftest baselines (not counted)
#   asan   the RDMA transport tests of ASAN_BUILD_DIR under AddressSanitizer
#          with leak detection; any sanitizer report fails it
# Usage: inside-vm.sh BUILD_DIR ADDRESS [ASAN_BUILD_DIR]
build=$1
address=$2
asan_build=${3:-}
suites=${SEALFS_VM_SUITES:-gtest e2e bench asan}
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
here=$(dirname "$(realpath "$0")")
if ! rdma link add rxe0 type rxe netdev eth0; then
  echo "rdma link add failed"
  exit 1
fi
ibv_devices
passed=0
failed=0
count() { if [[ $1 == 0 ]]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi; }
wants() { [[ " $suites " == *" $1 "* ]]; }

if wants gtest; then
  echo "== RDMA transport tests"
  SEALFS_RDMA_TEST_ADDR=$address "$build/tests/rpc_rdma_transport_test"
  count $?
fi

if wants e2e; then
  echo "== end to end over RDMA"
  bash "$here/e2e-in-vm.sh" "$build" "$address"
  count $?
fi

if wants asan; then
  if [[ -n "$asan_build" && -x "$asan_build/tests/rpc_rdma_transport_test" ]]; then
    echo "== RDMA transport tests under AddressSanitizer ($asan_build)"
    log=/tmp/rdma-asan.log
    # Fewer storm rounds: the sanitizer makes each one several times slower.
    SEALFS_RDMA_TEST_ADDR=$address SEALFS_RDMA_STORM_ROUNDS=40 \
      ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:detect_stack_use_after_return=0 \
      UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
      "$asan_build/tests/rpc_rdma_transport_test" > "$log" 2>&1
    status=$?
    grep -E "^\[ +(OK|FAILED|SKIPPED|PASSED) +\]|tests ran" "$log"
    if grep -qE "ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:" "$log"; then
      echo "FAIL: sanitizer report:"
      grep -A40 -E "ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:" "$log" | head -80
      status=1
    elif [[ $status != 0 ]]; then
      echo "FAIL: the ASan RDMA tests exited with $status"
      tail -40 "$log"
    else
      echo "ok: RDMA tests clean under AddressSanitizer and LeakSanitizer"
    fi
    count $status
  else
    echo "== RDMA tests under AddressSanitizer: not run (no ASan build of rpc_rdma_transport_test given)"
  fi
fi

if wants bench; then
  echo "== transport microbenchmarks (emulated soft-RoCE under TCG: not a measure of speed)"
  bench_args=${SEALFS_VM_BENCH_ARGS:---benchmark_min_time=0.3 --benchmark_filter=rdma|Asio}
  SEALFS_RDMA_TEST_ADDR=$address timeout 300 "$build/bench/rpc_bench" $bench_args 2>&1 |
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
fi
echo "RDMA VM: $passed passed, $failed failed"
exit $failed
