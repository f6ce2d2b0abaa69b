#!/bin/bash
# End to end over RDMA, inside the VM: a metadata server and two data servers
# listening over RDMA, a FUSE mount using RDMA, a file written and read back
# byte-identical, the servers' counters showing one-sided RDMA READ/WRITE of
# the bulk data, and a data server killed mid-transfer giving the reader an
# error rather than a hang (R = 1, io_wait=5). Then a replicated cluster (R = 2
# over three data servers): a file written and read back byte-identical, with
# the servers' counters showing the forwarded bytes moved by RDMA between data
# servers. Usage: e2e-in-vm.sh BUILD_DIR ADDRESS
set -u
build=$1
address=$2
state=$(mktemp -d /tmp/sealfs-rdma-e2e-XXXXXX)
mnt=$state/mnt
mkdir -p "$mnt"
meta="$address:7400"
pids=()
cleanup() {
  umount -l "$mnt" 2>/dev/null
  kill -9 "${pids[@]}" 2>/dev/null
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; for f in "$state"/*.log; do echo "--- $f"; tail -5 "$f"; done; exit 1; }
# The cluster's secrets; `sealfs status` finds the admin credential in $SEALFS_CREDENTIALS.
"$build/client/sealfs" keygen "$state/cluster.key" > /dev/null || fail "keygen failed"
"$build/client/sealfs" keygen "$state/admin.credential" > /dev/null || fail "keygen failed"
export SEALFS_CREDENTIALS="$state/admin.credential"

# start_cluster PREFIX DATA_SERVERS [sealfs-meta options]: a metadata server
# at $meta and data servers, all over RDMA, state under $state/PREFIX*.
start_cluster() {
  local prefix=$1 count=$2
  shift 2
  "$build/metadata/sealfs-meta" --db "$state/${prefix}meta" --listen "$meta" --transport rdma \
    --create-volume default --volume-token-file "$state/${prefix}default.token" \
    --cluster-key "$state/cluster.key" --admin-credential "$state/admin.credential" \
    --chunk-size 1048576 "$@" 2> "$state/${prefix}meta.log" &
  pids+=($!)
  for i in $(seq 0 $((count - 1))); do
    sleep 1
    "$build/server/sealfs-data" --dir "$state/${prefix}data$i" --meta "$meta" --listen "$address:0" \
      --transport rdma --heartbeat-ms 300 --port-file "$state/${prefix}data$i.port" \
      --cluster-key "$state/cluster.key" \
      2> "$state/${prefix}data$i.log" &
    pids+=($!)
  done
  for attempt in $(seq 1 120); do
    if "$build/client/sealfs" status --meta "$meta" > "$state/status.txt" 2>&1 &&
       grep -q "$count data servers (0 down)" "$state/status.txt"; then
      return 0
    fi
    sleep 0.5
  done
  fail "servers did not come up over RDMA"
}

start_cluster "" 2
grep -q "tcp+rdma" "$state/data0.log" || fail "data server is not listening over RDMA"

"$build/client/sealfs-fuse" "$meta/default" "$mnt" \
  -o transport=rdma,allow_other,default_permissions,io_wait=5,token_file=$state/default.token,log=$state/fuse.log ||
  fail "mount over RDMA failed"
head -c $((24 << 20)) /dev/urandom > "$state/source"
cp "$state/source" "$mnt/file" || fail "writing through the mount failed"
echo 3 > /proc/sys/vm/drop_caches
cmp "$state/source" "$mnt/file" || fail "read-back differs"
echo "ok: 24 MiB written and read back byte-identical over RDMA"

sleep 1  # one heartbeat carries the counters to the metadata server
"$build/client/sealfs" status --meta "$meta" > "$state/status.txt" 2>&1
cat "$state/status.txt"
# Counter columns: ID TCP_MSGS TCP_BYTES RDMA_MSGS READS READ_BYTES WRITES WRITE_BYTES
read_bytes=$(awk '/^ID +TCP_MSGS/{table=1; next} table && NF == 8 {sum += $6} END {print sum + 0}' "$state/status.txt")
write_bytes=$(awk '/^ID +TCP_MSGS/{table=1; next} table && NF == 8 {sum += $8} END {print sum + 0}' "$state/status.txt")
(( read_bytes >= (24 << 20) )) || fail "servers RDMA-READ only $read_bytes bytes of 24 MiB written"
(( write_bytes >= (24 << 20) )) || fail "servers RDMA-WRITE only $write_bytes bytes of 24 MiB read"
echo "ok: bulk data moved one-sided (RDMA READ $read_bytes bytes, RDMA WRITE $write_bytes bytes)"

# A data server dies while a reader streams the file: an error, not a hang.
head -c $((64 << 20)) /dev/urandom > "$mnt/big" || fail "writing the big file failed"
echo 3 > /proc/sys/vm/drop_caches
( for round in 1 2 3 4 5 6 7 8; do dd if="$mnt/big" of=/dev/null bs=1M iflag=direct 2>/dev/null || exit 1; done; exit 0 ) &
reader=$!
sleep 1
kill -9 "${pids[1]}"
if timeout 120 bash -c "while kill -0 $reader 2>/dev/null; do sleep 0.2; done"; then
  wait "$reader"
  status=$?
  (( status != 0 )) || fail "reads kept succeeding with a data server killed"
  echo "ok: killing a data server mid-transfer gave the reader an error"
else
  fail "the reader hung after a data server was killed"
fi

# Replicated: R = 2 over three data servers, everything over RDMA.
umount -l "$mnt" 2>/dev/null
kill -9 "${pids[@]}" 2>/dev/null
pids=()
meta="$address:7401"
start_cluster r 3 --replicas 2
"$build/client/sealfs-fuse" "$meta/default" "$mnt" \
  -o transport=rdma,allow_other,default_permissions,token_file=$state/rdefault.token,log=$state/rfuse.log ||
  fail "mount of the replicated cluster over RDMA failed"
head -c $((24 << 20)) /dev/urandom > "$state/rsource"
cp "$state/rsource" "$mnt/replicated" || fail "writing through the replicated mount failed"
echo 3 > /proc/sys/vm/drop_caches
cmp "$state/rsource" "$mnt/replicated" || fail "replicated read-back differs"
echo "ok: 24 MiB written and read back byte-identical over RDMA with R = 2"
sleep 1
"$build/client/sealfs" status --meta "$meta" > "$state/status.txt" 2>&1
cat "$state/status.txt"
grep -q "replication: 2 copies" "$state/status.txt" || fail "the cluster does not keep 2 copies"
# Forwarded bytes (ID FORWARDED FORWARDED_BYTES WHOLE_COPIES REPAIRED SCRUBBED_BYTES), and
# the RDMA READs of every server: the client's payload read by a head, then
# the head's payload read by its successor.
forwarded=$(awk '/^ID +FORWARDED/{table=1; next} table && NF == 6 {sum += $3} END {print sum + 0}' "$state/status.txt")
read_bytes=$(awk '/^ID +TCP_MSGS/{table=1; next} /^CHAIN/{table=0} table && NF == 8 {sum += $6} END {print sum + 0}' "$state/status.txt")
(( forwarded >= (24 << 20) )) || fail "data servers forwarded only $forwarded bytes of 24 MiB"
(( read_bytes >= (48 << 20) )) ||
  fail "servers RDMA-READ only $read_bytes bytes: the forwarded copies did not move by RDMA"
echo "ok: $forwarded bytes forwarded between data servers, $read_bytes bytes moved by RDMA READ in all"
echo "end to end over RDMA: passed"
