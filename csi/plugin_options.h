// The command line of sealfs-csi: what it serves, where, and how it reaches
// the cluster.
#pragma once

#include <string>

#include "sealfs/rpc/status.h"

namespace sealfs::csi {

enum class PluginMode { kController, kNode, kBoth, kMounter };

struct PluginOptions {
  std::string endpoint;  // unix:///path/csi.sock
  PluginMode mode = PluginMode::kBoth;
  std::string driver_name = "csi.sealfs.io";
  std::string node_id;       // default: the hostname
  std::string meta_address;  // HOST:PORT of the metadata server
  std::string state_dir = "/var/lib/sealfs-csi";
  std::string mounter_endpoint;  // unix:///path; empty: the node runs sealfs-fuse itself
  std::string fuse_binary;       // default: sealfs-fuse beside this binary, else from PATH
  std::string transport = "tcp";
  std::string admin_credential_file;
  std::string volume_token_key_file;
  bool check_args = false;
  bool show_version = false;
  bool show_help = false;

  bool serves_controller() const {
    return mode == PluginMode::kController || mode == PluginMode::kBoth;
  }
  bool serves_node() const { return mode == PluginMode::kNode || mode == PluginMode::kBoth; }
};

extern const char* const kUsage;

// Parses and checks every flag: unknown flags, missing values and invalid
// ones fail with a message naming the flag. Files named by flags are read
// when a request needs them, not here (they may be mounted later).
Result<PluginOptions> ParseFlags(int argc, const char* const* argv);

// The socket path of a unix:// endpoint, or EINVAL.
Result<std::string> UnixSocketPath(const std::string& endpoint, const std::string& flag);

}  // namespace sealfs::csi
