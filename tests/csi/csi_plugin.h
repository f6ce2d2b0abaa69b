// Helpers of the CSI tests: a real local cluster with a running sealfs-csi
// (one process serving controller and node, or a controller, a node and a
// mounter apart), gRPC stubs over its unix sockets, and request builders.
#pragma once

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <signal.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "csi.grpc.pb.h"
#include "e2e/e2e_util.h"
#include "sealfs/rpc/credentials.h"
#include "test_cluster.h"

namespace sealfs::testing {

namespace v1 = ::csi::v1;
using Mode = v1::VolumeCapability::AccessMode;

// One sealfs-csi process.
class CsiProcess {
 public:
  CsiProcess(std::string socket, std::vector<std::string> args, std::string log)
      : socket_(std::move(socket)), args_(std::move(args)), log_(std::move(log)) {}
  // Stopped as Kubernetes stops it; a sanitizer build's report in its log
  // fails the test.
  ~CsiProcess() {
    Stop(SIGTERM);
    std::string text = log();
    EXPECT_EQ(text.find("Sanitizer"), std::string::npos) << text;
    EXPECT_EQ(text.find("runtime error"), std::string::npos) << text;
  }
  CsiProcess(const CsiProcess&) = delete;
  CsiProcess& operator=(const CsiProcess&) = delete;

  std::string endpoint() const { return "unix://" + socket_; }
  pid_t pid() const { return pid_; }

  // Starts it and waits until its socket accepts gRPC calls.
  bool Start() {
    std::vector<std::string> argv = {SEALFS_CSI_BIN, "--endpoint", endpoint()};
    argv.insert(argv.end(), args_.begin(), args_.end());
    pid_ = fork();
    if (pid_ == 0) {
      FILE* out = freopen(log_.c_str(), "a", stderr);
      (void)out;
      std::vector<char*> raw;
      for (const std::string& arg : argv) raw.push_back(const_cast<char*>(arg.c_str()));
      raw.push_back(nullptr);
      execv(raw[0], raw.data());
      _exit(127);
    }
    // A channel of its own connections: gRPC otherwise shares them between
    // channels to one address, and a new channel would first try the dead
    // connection of a process this one replaced.
    grpc::ChannelArguments arguments;
    arguments.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    channel_ = grpc::CreateCustomChannel(endpoint(), grpc::InsecureChannelCredentials(), arguments);
    for (int attempt = 0; attempt < 300; ++attempt) {
      if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = 0;
        return false;
      }
      if (std::filesystem::exists(socket_) &&
          channel_->WaitForConnected(std::chrono::system_clock::now() +
                                     std::chrono::milliseconds(100))) {
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }

  // Ends it with `signal_number` and waits for it.
  void Stop(int signal_number) {
    if (pid_ <= 0) return;
    kill(pid_, signal_number);
    waitpid(pid_, nullptr, 0);
    pid_ = 0;
  }

  std::shared_ptr<grpc::Channel> channel() const { return channel_; }
  std::string log() const { return ReadFile(log_); }

 private:
  std::string socket_;
  std::vector<std::string> args_;
  std::string log_;
  pid_t pid_ = 0;
  std::shared_ptr<grpc::Channel> channel_;
};

// A cluster (one metadata server, one data server) and sealfs-csi on it.
class CsiTestBed {
 public:
  enum class Layout {
    kBoth,         // one process: --mode both, running sealfs-fuse itself
    kWithMounter,  // --mode controller, --mode node and --mode mounter apart
  };

  explicit CsiTestBed(Layout layout = Layout::kBoth) : layout_(layout), cluster_(1) {}
  ~CsiTestBed() {
    // Whatever a failed test left mounted goes before the cluster does.
    for (const std::string& path : {dir() + "/pods", dir() + "/staging"}) {
      std::string command = "grep -o ' " + path + "[^ ]*' /proc/self/mountinfo | sort -r | " +
                            "xargs -r -n1 umount -l 2>/dev/null";
      if (std::system(command.c_str()) != 0) {
        // Nothing was mounted there.
      }
    }
  }

  // Starts the cluster and the plugin processes; false (and why, as a test
  // failure) when one does not come up.
  bool Start() {
    if (!cluster_.Start()) return false;
    EXPECT_TRUE(auth::WriteSecretFile(token_key_file(), auth::RandomSecret()).ok());
    std::vector<std::string> common = {"--meta",        cluster_.meta_address(),
                                       "--fuse-binary", SEALFS_FUSE_BIN,
                                       "--node-id",     "test-node"};
    if (fallback_secrets_) {
      common.insert(common.end(), {"--admin-credential-file", cluster_.admin_credential_file(),
                                   "--volume-token-key-file", token_key_file()});
    }
    auto with = [&](std::vector<std::string> extra) {
      extra.insert(extra.end(), common.begin(), common.end());
      return extra;
    };
    if (layout_ == Layout::kBoth) {
      plugin_ = std::make_unique<CsiProcess>(
          dir() + "/csi.sock", with({"--mode", "both", "--state-dir", node_state_dir()}),
          dir() + "/csi.log");
      return Check(*plugin_, "sealfs-csi --mode both");
    }
    mounter_ = std::make_unique<CsiProcess>(
        dir() + "/mounter.sock",
        std::vector<std::string>{"--mode", "mounter", "--state-dir", mounter_state_dir(),
                                 "--fuse-binary", SEALFS_FUSE_BIN},
        dir() + "/mounter.log");
    controller_ = std::make_unique<CsiProcess>(
        dir() + "/controller.sock", with({"--mode", "controller"}), dir() + "/controller.log");
    plugin_ = std::make_unique<CsiProcess>(dir() + "/node.sock",
                                           with({"--mode", "node", "--state-dir", node_state_dir(),
                                                 "--mounter-endpoint", mounter_->endpoint()}),
                                           dir() + "/node.log");
    return Check(*mounter_, "the mounter") && Check(*controller_, "the controller") &&
           Check(*plugin_, "the node plugin");
  }

  // Without the fallback files every request must carry its secrets.
  void set_fallback_secrets(bool given) { fallback_secrets_ = given; }
  // Arguments a further sealfs-csi process on this cluster needs.
  std::vector<std::string> ClusterArgs() const {
    return {"--meta",        cluster_.meta_address(), "--fuse-binary",
            SEALFS_FUSE_BIN, "--state-dir",           dir() + "/extra-state"};
  }
  TestCluster& cluster() { return cluster_; }
  const std::string& dir() const { return cluster_.root(); }
  std::string token_key_file() const { return dir() + "/volume-token.key"; }
  std::string token_key() const { return *auth::ReadSecretFile(token_key_file()); }
  std::string node_state_dir() const { return dir() + "/node-state"; }
  // Where token files are written: the mounter's state when there is one.
  std::string token_state_dir() const {
    return layout_ == Layout::kBoth ? node_state_dir() : mounter_state_dir();
  }
  std::string mounter_state_dir() const { return dir() + "/mounter-state"; }
  std::string staging(const std::string& name = "v") const { return dir() + "/staging/" + name; }
  std::string target(const std::string& pod = "p") const {
    return dir() + "/pods/" + pod + "/mount";
  }

  CsiProcess& node_process() { return *plugin_; }
  CsiProcess* mounter_process() { return mounter_.get(); }
  CsiProcess* controller_process() { return controller_.get(); }

  std::unique_ptr<v1::Identity::Stub> identity() { return v1::Identity::NewStub(node_channel()); }
  std::unique_ptr<v1::Controller::Stub> controller() {
    return v1::Controller::NewStub(controller_ ? controller_->channel() : plugin_->channel());
  }
  std::unique_ptr<v1::Node::Stub> node() { return v1::Node::NewStub(node_channel()); }
  std::shared_ptr<grpc::Channel> node_channel() { return plugin_->channel(); }

 private:
  static bool Check(CsiProcess& process, const std::string& what) {
    if (process.Start()) return true;
    ADD_FAILURE() << what << " did not start:\n" << process.log();
    return false;
  }

  Layout layout_;
  bool fallback_secrets_ = true;
  TestCluster cluster_;
  std::unique_ptr<CsiProcess> mounter_, controller_, plugin_;
};

inline v1::VolumeCapability MountCapability(Mode::Mode mode = Mode::SINGLE_NODE_WRITER) {
  v1::VolumeCapability capability;
  capability.mutable_mount();
  capability.mutable_access_mode()->set_mode(mode);
  return capability;
}

inline v1::VolumeCapability BlockCapability() {
  v1::VolumeCapability capability;
  capability.mutable_block();
  capability.mutable_access_mode()->set_mode(Mode::SINGLE_NODE_WRITER);
  return capability;
}

inline v1::CreateVolumeRequest CreateRequest(const std::string& name, int64_t required = 0,
                                             int64_t limit = 0) {
  v1::CreateVolumeRequest request;
  request.set_name(name);
  *request.add_volume_capabilities() = MountCapability();
  if (required || limit) {
    request.mutable_capacity_range()->set_required_bytes(required);
    request.mutable_capacity_range()->set_limit_bytes(limit);
  }
  return request;
}

inline v1::NodeStageVolumeRequest StageRequest(const std::string& volume_id,
                                               const std::string& staging) {
  v1::NodeStageVolumeRequest request;
  request.set_volume_id(volume_id);
  request.set_staging_target_path(staging);
  *request.mutable_volume_capability() = MountCapability();
  return request;
}

inline v1::NodePublishVolumeRequest PublishRequest(const std::string& volume_id,
                                                   const std::string& staging,
                                                   const std::string& target,
                                                   bool readonly = false) {
  v1::NodePublishVolumeRequest request;
  request.set_volume_id(volume_id);
  request.set_staging_target_path(staging);
  request.set_target_path(target);
  request.set_readonly(readonly);
  *request.mutable_volume_capability() = MountCapability();
  return request;
}

// Calls a unary gRPC method with a fresh context and a deadline.
template <typename Stub, typename Request, typename Response>
grpc::Status Call(Stub& stub,
                  grpc::Status (Stub::*method)(grpc::ClientContext*, const Request&, Response*),
                  const Request& request, Response* response) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
  // A restarted plugin is waited for rather than failed against.
  context.set_wait_for_ready(true);
  return (stub.*method)(&context, request, response);
}

// The status code of a call whose response the test does not need.
template <typename Stub, typename Request, typename Response>
grpc::StatusCode CodeOf(Stub& stub,
                        grpc::Status (Stub::*method)(grpc::ClientContext*, const Request&,
                                                     Response*),
                        const Request& request) {
  Response response;
  return Call(stub, method, request, &response).error_code();
}

// Lines of /proc/self/mountinfo that mention `path`.
inline std::vector<std::string> MountsMentioning(const std::string& path) {
  std::ifstream in("/proc/self/mountinfo");
  std::vector<std::string> found;
  for (std::string line; std::getline(in, line);) {
    if (line.find(" " + path + " ") != std::string::npos ||
        line.find(" " + path + "/") != std::string::npos) {
      found.push_back(line);
    }
  }
  return found;
}

inline pb::Volume* FindVolume(pb::VolumeListResponse& list, const std::string& name) {
  for (pb::Volume& volume : *list.mutable_volumes()) {
    if (volume.name() == name) return &volume;
  }
  return nullptr;
}

// The admin's volume list, or a test failure.
inline pb::VolumeListResponse AdminVolumes(TestCluster& cluster) {
  pb::VolumeListResponse response;
  auto admin = cluster.Admin();
  EXPECT_TRUE(admin.ok()) << admin.status().ToString();
  if (!admin.ok()) return response;
  Status listed = (*admin)->Meta(rpc::meta::kVolumeList, pb::VolumeListRequest{}, &response);
  EXPECT_TRUE(listed.ok()) << listed.ToString();
  return response;
}

}  // namespace sealfs::testing
