#include "plugin_options.h"

#include <unistd.h>

#include <filesystem>
#include <functional>
#include <map>

#include "sealfs/rpc/transport.h"

namespace sealfs::csi {

const char* const kUsage =
    "usage: sealfs-csi --endpoint unix:///PATH/csi.sock [flags]\n"
    "  --mode controller|node|both|mounter   what to serve (default both)\n"
    "  --driver-name NAME                    CSI driver name (default csi.sealfs.io)\n"
    "  --node-id NAME                        this node's id (default the hostname)\n"
    "  --meta HOST:PORT                      the metadata server\n"
    "  --state-dir DIR                       token files and logs (default /var/lib/sealfs-csi)\n"
    "  --mounter-endpoint unix:///PATH       let a --mode mounter process run sealfs-fuse\n"
    "  --fuse-binary PATH                    sealfs-fuse (default beside sealfs-csi, else PATH)\n"
    "  --transport tcp|rdma|auto             transport of the mounts (default tcp)\n"
    "  --admin-credential-file FILE          admin credential when a request has no secrets\n"
    "  --volume-token-key-file FILE          volume token key when a request has no secrets\n"
    "  --check-args                          check the flags, print \"ok\" and exit\n"
    "  --version, --help\n";

namespace {

Status Invalid(const std::string& flag, const std::string& why) {
  return Status(EINVAL, "--" + flag + ": " + why);
}

std::string Hostname() {
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0) return "";
  return name;
}

// sealfs-fuse beside /proc/self/exe, else the first one on PATH, else the
// bare name (exec reports it missing).
std::string DefaultFuseBinary() {
  std::error_code ec;
  std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    std::filesystem::path beside = self.parent_path() / "sealfs-fuse";
    if (access(beside.c_str(), X_OK) == 0) return beside;
  }
  const char* path = getenv("PATH");
  std::string dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    std::string candidate = dirs.substr(start, end - start) + "/sealfs-fuse";
    if (end > start && access(candidate.c_str(), X_OK) == 0) return candidate;
    start = end + 1;
  }
  return "sealfs-fuse";
}

Status Validate(PluginOptions& options) {
  if (options.endpoint.empty()) return Invalid("endpoint", "required (unix:///PATH/csi.sock)");
  SEALFS_RETURN_IF_ERROR(UnixSocketPath(options.endpoint, "endpoint").status());
  if (!options.mounter_endpoint.empty()) {
    SEALFS_RETURN_IF_ERROR(UnixSocketPath(options.mounter_endpoint, "mounter-endpoint").status());
  }
  if (options.driver_name.empty() || options.driver_name.size() > 63) {
    return Invalid("driver-name", "must be 1-63 characters");
  }
  for (char c : options.driver_name) {
    if (!isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '.') {
      return Invalid("driver-name", "may hold only letters, digits, '-' and '.'");
    }
  }
  if (options.mode != PluginMode::kMounter) {
    if (options.meta_address.empty()) return Invalid("meta", "required (HOST:PORT)");
    if (!rpc::ParseAddress(options.meta_address).ok()) {
      return Invalid("meta", "'" + options.meta_address + "' is not HOST:PORT");
    }
  }
  if (!rpc::ParseTransportKind(options.transport).ok()) {
    return Invalid("transport", "is tcp, rdma or auto");
  }
  if (options.state_dir.empty() || options.state_dir.front() != '/') {
    return Invalid("state-dir", "must be an absolute path");
  }
  if (options.node_id.empty()) options.node_id = Hostname();
  if (options.serves_node() && options.node_id.empty()) {
    return Invalid("node-id", "required (the hostname is unknown)");
  }
  if (options.fuse_binary.empty()) options.fuse_binary = DefaultFuseBinary();
  return Status::Ok();
}

}  // namespace

Result<std::string> UnixSocketPath(const std::string& endpoint, const std::string& flag) {
  constexpr std::string_view kScheme = "unix://";
  if (!endpoint.starts_with(kScheme) || endpoint.size() <= kScheme.size() ||
      endpoint[kScheme.size()] != '/') {
    return Invalid(flag, "'" + endpoint + "' is not unix:///ABSOLUTE/PATH");
  }
  return endpoint.substr(kScheme.size());
}

Result<PluginOptions> ParseFlags(int argc, const char* const* argv) {
  PluginOptions options;
  std::string mode = "both";
  const std::map<std::string, std::string*> valued = {
      {"endpoint", &options.endpoint},
      {"mode", &mode},
      {"driver-name", &options.driver_name},
      {"node-id", &options.node_id},
      {"meta", &options.meta_address},
      {"state-dir", &options.state_dir},
      {"mounter-endpoint", &options.mounter_endpoint},
      {"fuse-binary", &options.fuse_binary},
      {"transport", &options.transport},
      {"admin-credential-file", &options.admin_credential_file},
      {"volume-token-key-file", &options.volume_token_key_file},
  };
  const std::map<std::string, bool*> switches = {{"check-args", &options.check_args},
                                                 {"version", &options.show_version},
                                                 {"help", &options.show_help}};
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (!arg.starts_with("--") || arg.size() == 2) {
      return Status(EINVAL, "unexpected argument '" + arg + "' (flags start with --)");
    }
    std::string name = arg.substr(2);
    std::optional<std::string> value;
    if (size_t equals = name.find('='); equals != std::string::npos) {
      value = name.substr(equals + 1);
      name.resize(equals);
    }
    if (auto found = switches.find(name); found != switches.end()) {
      if (value) return Invalid(name, "takes no value");
      *found->second = true;
      continue;
    }
    auto found = valued.find(name);
    if (found == valued.end()) return Status(EINVAL, "unknown flag --" + name);
    if (!value) {
      if (i + 1 >= argc) return Invalid(name, "needs a value");
      value = argv[++i];
    }
    *found->second = *value;
  }
  if (options.show_help || options.show_version) return options;
  const std::map<std::string, PluginMode> modes = {{"controller", PluginMode::kController},
                                                   {"node", PluginMode::kNode},
                                                   {"both", PluginMode::kBoth},
                                                   {"mounter", PluginMode::kMounter}};
  auto named = modes.find(mode);
  if (named == modes.end()) return Invalid("mode", "is controller, node, both or mounter");
  options.mode = named->second;
  SEALFS_RETURN_IF_ERROR(Validate(options));
  return options;
}

}  // namespace sealfs::csi
