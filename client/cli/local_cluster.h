// A local cluster on loopback: one metadata server and N data servers as
// child processes with their state, logs, ports and pids under one directory.
#pragma once

#include <string>

#include "sealfs/rpc/status.h"

namespace sealfs::cli {

struct LocalClusterOptions {
  std::string state_dir = "/var/lib/sealfs/local";
  std::string mountpoint = "/mnt/sealfs";
  int data_servers = 3;
  int replicas = 2;  // for a new cluster; an existing one keeps its own
  std::string volume = "default";
  uint32_t chunk_size = 4u << 20;
  bool mount = true;
  std::string transport = "tcp";  // tcp, rdma or auto: for servers and the mount
};

// Starts whatever is not running yet (a restart reuses state and ports) and
// mounts the volume. Prints a progress line per step.
Status LocalUp(const LocalClusterOptions& options);
// Unmounts and stops every process; the state stays for the next `up`.
Status LocalDown(const LocalClusterOptions& options);
// Prints the processes, their addresses and the mount. Fails if any is down.
Status LocalStatus(const LocalClusterOptions& options);

// The metadata address of the local cluster in `state_dir`, if it has one.
std::string LocalMetaAddress(const std::string& state_dir);
// Where `sealfs local up` keeps a volume's mount token, under the state dir.
std::string TokenFileName(const std::string& volume);
// http://127.0.0.1:PORT/metrics from a server's metrics port file ("" if none).
std::string MetricsUrl(const std::string& port_file);

}  // namespace sealfs::cli
