// TestCluster: real sealfs-meta and sealfs-data processes on loopback, under a
// fresh temporary directory, for integration and end-to-end tests.
#pragma once

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "sealfs/client/client.h"
#include "sealfs/rpc/credentials.h"

namespace sealfs::testing {

// Deterministic pseudo-random bytes: `seed` picks the sequence.
inline std::string Pattern(size_t size, unsigned seed) {
  std::mt19937_64 random(seed);
  std::string data(size, '\0');
  size_t i = 0;
  for (; i + 8 <= size; i += 8) {
    uint64_t value = random();
    std::memcpy(&data[i], &value, 8);
  }
  for (; i < size; ++i) data[i] = static_cast<char>(random() >> 56);
  return data;
}

// Creates a regular file in the client's volume root through the metadata
// service (no data yet); fails the test if it cannot.
inline pb::MknodResponse CreateFile(client::Client& client, const std::string& name) {
  pb::MknodRequest request;
  request.set_parent(client.root_ino());
  request.set_name(name);
  request.set_mode(S_IFREG | 0644);
  pb::MknodResponse response;
  Status status = client.Meta(rpc::meta::kMknod, request, &response);
  EXPECT_TRUE(status.ok()) << status.ToString();
  return response;
}

// The sealfs command's exit and standard output.
struct CliRun {
  int wait_status = -1;  // as from waitpid
  std::string output;    // stdout
  bool ExitedWith(int code) const {
    return WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == code;
  }
};

inline CliRun RunCli(const std::string& arguments) {
  CliRun run;
  std::string command = std::string(SEALFS_CLI_BIN) + " " + arguments + " 2>/dev/null";
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return run;
  char buffer[4096];
  size_t got;
  while ((got = fread(buffer, 1, sizeof buffer, pipe)) > 0) run.output.append(buffer, got);
  run.wait_status = pclose(pipe);
  return run;
}

class TestCluster {
 public:
  explicit TestCluster(int data_servers, uint32_t chunk_size = 4u << 20)
      : data_servers_(data_servers), chunk_size_(chunk_size) {
    char pattern[] = "/tmp/sealfs-test-XXXXXX";
    root_ = mkdtemp(pattern);
    admin_credential_ = auth::RandomSecret();
    EXPECT_TRUE(auth::WriteSecretFile(cluster_key_file(), auth::RandomSecret()).ok());
    EXPECT_TRUE(auth::WriteSecretFile(admin_credential_file(), admin_credential_).ok());
    data_pids_.assign(data_servers, 0);
    data_ports_.assign(data_servers, "0");
  }

  ~TestCluster() {
    for (const std::string& mountpoint : mounts_) Unmount(mountpoint);
    StopAll(SIGKILL);
    std::error_code ec;
    std::filesystem::remove_all(root_, ec);
  }

  // Extra arguments for sealfs-meta (e.g. {"--session-timeout", "3"}), used
  // from the next StartMeta on.
  void set_meta_args(std::vector<std::string> args) { meta_args_ = std::move(args); }
  // A command that data servers run under (e.g. {"/usr/bin/prlimit",
  // "--nofile=256:256", "--"}), used from the next StartData on.
  void set_data_wrapper(std::vector<std::string> wrapper) { data_wrapper_ = std::move(wrapper); }
  // The address every server listens on (default loopback), and for data
  // server i another one with its own wrapper (e.g. `ip netns exec NS`), for
  // tests that put servers in network namespaces of their own.
  void set_host(std::string host) { host_ = std::move(host); }
  void set_data_host(int i, std::string host, std::vector<std::string> wrapper) {
    data_hosts_[i] = std::move(host);
    data_wrappers_[i] = std::move(wrapper);
  }
  // Extra arguments for sealfs-data, used from the next StartData on.
  void set_data_args(std::vector<std::string> args) { data_args_ = std::move(args); }
  pid_t meta_pid() const { return meta_pid_; }
  pid_t data_pid(int i) const { return data_pids_[i]; }
  const std::string& DataPort(int i) const { return data_ports_[i]; }

  const std::string& root() const { return root_; }
  std::string cluster_key_file() const { return root_ + "/cluster.key"; }
  std::string admin_credential_file() const { return root_ + "/admin.credential"; }
  const std::string& admin_credential() const { return admin_credential_; }
  // The mount token of the "default" volume, which the metadata server
  // makes at its first start.
  std::string token_file() const { return root_ + "/default.token"; }
  std::string token() const {
    Result<std::string> token = auth::ReadSecretFile(token_file());
    return token.ok() ? *token : std::string();
  }
  std::string meta_address() const { return host_ + ":" + meta_port_; }
  std::string DataDir(int i) const { return root_ + "/data" + std::to_string(i); }

  // Starts (or restarts, on the same ports and state) every process.
  bool Start() {
    if (!StartMeta()) return false;
    for (int i = 0; i < data_servers_; ++i) {
      if (!StartData(i)) return false;
    }
    return WaitForServersUp(data_servers_);
  }

  bool StartMeta() {
    std::string port_file = root_ + "/meta.port";
    std::filesystem::remove(port_file);
    std::vector<std::string> argv = {SEALFS_META_BIN,
                                     "--db",
                                     root_ + "/meta",
                                     "--listen",
                                     host_ + ":" + meta_port_,
                                     "--port-file",
                                     port_file,
                                     "--create-volume",
                                     "default",
                                     "--volume-token-file",
                                     token_file(),
                                     "--cluster-key",
                                     cluster_key_file(),
                                     "--admin-credential",
                                     admin_credential_file(),
                                     "--chunk-size",
                                     std::to_string(chunk_size_)};
    argv.insert(argv.end(), meta_args_.begin(), meta_args_.end());
    meta_pid_ = Spawn(argv, root_ + "/meta.log");
    meta_port_ = WaitForLine(port_file, meta_pid_);
    return !meta_port_.empty();
  }

  bool StartData(int i) {
    std::string port_file = DataDir(i) + ".port";
    std::filesystem::remove(port_file);
    std::vector<std::string> argv = data_wrappers_.count(i) ? data_wrappers_[i] : data_wrapper_;
    const std::string& host = data_hosts_.count(i) ? data_hosts_[i] : host_;
    for (std::string arg :
         {std::string(SEALFS_DATA_BIN), std::string("--dir"), DataDir(i), std::string("--meta"),
          meta_address(), std::string("--listen"), host + ":" + data_ports_[i],
          std::string("--port-file"), port_file, std::string("--heartbeat-ms"), std::string("200"),
          std::string("--cluster-key"), cluster_key_file()}) {
      argv.push_back(arg);
    }
    argv.insert(argv.end(), data_args_.begin(), data_args_.end());
    data_pids_[i] = Spawn(argv, DataDir(i) + ".log");
    data_ports_[i] = WaitForLine(port_file, data_pids_[i]);
    return !data_ports_[i].empty();
  }

  // Which of this cluster's data servers holds member `member` of chain
  // `chain_id` (in the chain's member list), or -1.
  int ServerOfChainMember(const pb::ClusterMapResponse& map, uint32_t chain_id, int member = 0) {
    for (const pb::Chain& chain : map.chains()) {
      if (chain.id() != chain_id || member >= chain.members_size()) continue;
      uint32_t target_id = chain.members(member).target_id();
      for (const pb::Target& target : map.targets()) {
        if (target.id() != target_id) continue;
        for (const pb::DataServer& server : map.servers()) {
          if (server.id() != target.server_id()) continue;
          for (int i = 0; i < data_servers_; ++i) {
            if (server.address().ends_with(":" + data_ports_[i])) return i;
          }
        }
      }
    }
    return -1;
  }

  // Waits until every chain has all its members serving (resyncs done).
  bool WaitForChainsServing(std::chrono::seconds limit = std::chrono::seconds(120)) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      auto admin = Admin();
      if (admin.ok()) {
        auto map = (*admin)->RefreshClusterMap();
        bool all = map.ok() && map->chains_size() > 0;
        if (map.ok()) {
          for (const pb::Chain& chain : map->chains()) {
            for (const pb::ChainMember& member : chain.members()) {
              all = all && member.state() == "serving";
            }
          }
        }
        if (all) return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

  // Where data server i keeps chunk `index` of inode `ino` (its only target).
  std::string ChunkFile(int i, uint64_t ino, uint32_t index) const {
    char dir[64];
    std::snprintf(dir, sizeof dir, "/chunks/%02x/%016llx/", static_cast<unsigned>(ino & 0xff),
                  static_cast<unsigned long long>(ino));
    return DataDir(i) + dir + std::to_string(index) + ".dat";
  }

  bool WaitForServersUp(int count) {
    for (int attempt = 0; attempt < 200; ++attempt) {
      auto admin = Admin();
      if (admin.ok()) {
        auto map = (*admin)->RefreshClusterMap();
        int up = 0;
        if (map.ok()) {
          for (const auto& server : map->servers()) up += server.state() == "up";
        }
        if (up >= count) return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }

  void StopAll(int signal_number) {
    for (pid_t& pid : data_pids_) Kill(pid, signal_number);
    Kill(meta_pid_, signal_number);
  }
  void KillData(int i, int signal_number = SIGKILL) { Kill(data_pids_[i], signal_number); }
  void KillMeta(int signal_number = SIGKILL) { Kill(meta_pid_, signal_number); }
  // Freezes the metadata server (SIGSTOP) and lets it go on (SIGCONT).
  void PauseMeta() { kill(meta_pid_, SIGSTOP); }
  void ResumeMeta() { kill(meta_pid_, SIGCONT); }

  Result<std::unique_ptr<client::Client>> Admin() {
    client::ClientOptions options;
    options.meta_address = meta_address();
    options.volume = "";
    options.timeout = std::chrono::seconds(5);
    options.admin_credential = admin_credential_;
    return client::Client::Connect(options);
  }

  // io_wait: how long chunk I/O waits for a chain with no serving member.
  Result<std::unique_ptr<client::Client>> Mount(
      const std::string& volume = "default",
      std::chrono::milliseconds io_wait = std::chrono::seconds(60)) {
    client::ClientOptions options;
    options.meta_address = meta_address();
    options.volume = volume;
    options.timeout = std::chrono::seconds(10);
    options.io_wait = io_wait;
    // The admin may mount any volume; tests of tokens mount with MountWithToken.
    options.admin_credential = admin_credential_;
    return client::Client::Connect(options);
  }

  // Mounts `volume` as a tenant does: with its token only.
  Result<std::unique_ptr<client::Client>> MountWithToken(const std::string& volume,
                                                         const std::string& token) {
    client::ClientOptions options;
    options.meta_address = meta_address();
    options.volume = volume;
    options.timeout = std::chrono::seconds(10);
    options.token = token;
    return client::Client::Connect(options);
  }

  // Mounts a volume with sealfs-fuse at a new directory; "" on failure.
  // Without a token file, the "default" volume's.
  std::string FuseMount(const std::string& name, const std::string& extra_options = "",
                        const std::string& volume = "default",
                        const std::string& volume_token_file = "") {
    std::string mountpoint = root_ + "/" + name;
    std::filesystem::create_directories(mountpoint);
    std::string command = std::string(SEALFS_FUSE_BIN) + " " + meta_address() + "/" + volume + " " +
                          mountpoint +
                          " -o allow_other,default_permissions,attr_timeout=1,token_file=" +
                          (volume_token_file.empty() ? token_file() : volume_token_file) +
                          ",log=" + root_ + "/" + name + ".log" + extra_options;
    if (std::system(command.c_str()) != 0) return "";
    mounts_.push_back(mountpoint);
    return mountpoint;
  }

  static void Unmount(const std::string& mountpoint) {
    std::string command = "umount -l " + mountpoint + " 2>/dev/null";
    if (std::system(command.c_str()) != 0) {
      // Already gone.
    }
  }

 private:
  static pid_t Spawn(const std::vector<std::string>& argv, const std::string& log) {
    pid_t pid = fork();
    if (pid == 0) {
      FILE* out = freopen(log.c_str(), "a", stderr);
      (void)out;
      std::vector<char*> args;
      for (const auto& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
    return pid;
  }

  static std::string WaitForLine(const std::string& path, pid_t pid) {
    for (int attempt = 0; attempt < 400; ++attempt) {
      std::ifstream in(path);
      std::string line;
      if (std::getline(in, line) && !line.empty()) return line;
      if (waitpid(pid, nullptr, WNOHANG) == pid) return "";
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    return "";
  }

  static void Kill(pid_t& pid, int signal_number) {
    if (pid <= 0) return;
    kill(pid, signal_number);
    waitpid(pid, nullptr, 0);
    pid = 0;
  }

  int data_servers_;
  uint32_t chunk_size_;
  std::string root_;
  std::string admin_credential_;
  pid_t meta_pid_ = 0;
  std::string meta_port_ = "0";
  std::vector<pid_t> data_pids_;
  std::vector<std::string> data_ports_;
  std::vector<std::string> mounts_;
  std::vector<std::string> meta_args_;
  std::vector<std::string> data_wrapper_;
  std::vector<std::string> data_args_;
  std::string host_ = "127.0.0.1";
  std::map<int, std::string> data_hosts_;
  std::map<int, std::vector<std::string>> data_wrappers_;
};

}  // namespace sealfs::testing
