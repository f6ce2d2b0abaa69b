#include "local_cluster.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include "sealfs/client/client.h"
#include "sealfs/rpc/credentials.h"

namespace sealfs::cli {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

std::string ReadFirstLine(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

void WriteLine(const std::string& path, const std::string& line) {
  std::ofstream(path, std::ios::trunc) << line << "\n";
}

bool Alive(pid_t pid) { return pid > 0 && kill(pid, 0) == 0; }

// A process's command line, one argument per element; empty when it is gone.
std::vector<std::string> CommandLine(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
  std::vector<std::string> args;
  std::string arg;
  while (std::getline(in, arg, '\0')) args.push_back(arg);
  return args;
}

// One letter: R, S, D, Z (a zombie), ...; 0 when there is no such process.
char ProcessState(pid_t pid) {
  std::string stat = ReadFirstLine("/proc/" + std::to_string(pid) + "/stat");
  size_t end_of_name = stat.rfind(')');
  if (end_of_name == std::string::npos || end_of_name + 2 >= stat.size()) return 0;
  return stat[end_of_name + 2];
}

// A pid file (`<state path>.pid`) can outlive its server: the server may
// linger as a zombie its parent has not reaped yet, or its pid may now belong
// to another process. The recorded process is the server only if it runs and
// its command line names the state path it was started with.
bool ServerRunning(pid_t pid, const std::string& state_path) {
  if (!Alive(pid)) return false;
  char state = ProcessState(pid);
  if (state == 0 || state == 'Z' || state == 'X') return false;
  for (const std::string& arg : CommandLine(pid)) {
    if (arg == state_path) return true;
  }
  return false;
}

pid_t PidFrom(const std::string& path) {
  try {
    return static_cast<pid_t>(std::stol(ReadFirstLine(path)));
  } catch (...) {
    return 0;
  }
}

// Finds a sibling program: next to this binary (installed), in the build tree
// (../metadata, ../server, ../client), or on PATH.
std::string FindProgram(const std::string& name) {
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    fs::path dir = self.parent_path();
    for (const fs::path& candidate :
         {dir / name, dir.parent_path() / "metadata" / name, dir.parent_path() / "server" / name,
          dir.parent_path() / "client" / name}) {
      if (access(candidate.c_str(), X_OK) == 0) return candidate.string();
    }
  }
  return name;  // let execvp search PATH
}

// Starts a daemon detached from us, its output appended to `log`.
Result<pid_t> Spawn(const std::vector<std::string>& argv, const std::string& log) {
  pid_t pid = fork();
  if (pid < 0) return Status(errno, "fork failed");
  if (pid == 0) {
    setsid();
    int null_fd = open("/dev/null", O_RDONLY);
    int log_fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (null_fd >= 0) dup2(null_fd, 0);
    if (log_fd >= 0) {
      dup2(log_fd, 1);
      dup2(log_fd, 2);
    }
    std::vector<char*> args;
    for (const auto& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    std::fprintf(stderr, "cannot run %s: %s\n", args[0], std::strerror(errno));
    _exit(127);
  }
  return pid;
}

// Reaps our own children so a dead one does not linger as a zombie.
void Reap() {
  while (waitpid(-1, nullptr, WNOHANG) > 0) {
  }
}

Status WaitForFile(const std::string& path, pid_t pid, const std::string& what,
                   const std::string& log) {
  for (int i = 0; i < 200; ++i) {
    if (fs::exists(path) && !ReadFirstLine(path).empty()) return Status::Ok();
    Reap();
    if (!Alive(pid)) break;
    std::this_thread::sleep_for(50ms);
  }
  return Status(EIO, what + " did not start; see " + log);
}

bool IsMounted(const std::string& mountpoint) {
  std::ifstream mounts("/proc/self/mounts");
  std::string device, target, rest;
  std::error_code ec;
  std::string canonical = fs::weakly_canonical(mountpoint, ec).string();
  while (mounts >> device >> target && std::getline(mounts, rest)) {
    if (target == canonical || target == mountpoint) return true;
  }
  return false;
}

std::string DataDir(const std::string& state, int i) { return state + "/data" + std::to_string(i); }

}  // namespace

std::string TokenFileName(const std::string& volume) {
  std::string name = volume;
  std::replace(name.begin(), name.end(), '/', '_');
  return name + ".token";
}

std::string MetricsUrl(const std::string& port_file) {
  std::string port = ReadFirstLine(port_file);
  return port.empty() ? "" : "http://127.0.0.1:" + port + "/metrics";
}

std::string LocalMetaAddress(const std::string& state_dir) {
  return ReadFirstLine(state_dir + "/meta.address");
}

Status LocalUp(const LocalClusterOptions& o) {
  if (!rpc::ParseTransportKind(o.transport).ok()) {
    return Status(EINVAL, "--transport must be tcp, rdma or auto");
  }
  if (o.transport == "rdma") {
    std::string reason;
    if (!rpc::RdmaDeviceAvailable(&reason)) return Status(ENODEV, "--transport rdma: " + reason);
  }
  if (o.data_servers < 1 || o.data_servers > 64) {
    return Status(EINVAL, "--data-servers must be between 1 and 64");
  }
  if (o.replicas < 1 || o.replicas > 3 || o.replicas > o.data_servers) {
    return Status(EINVAL, "--replicas must be 1, 2 or 3, and at most the number of data servers");
  }
  std::error_code ec;
  fs::create_directories(o.state_dir + "/logs", ec);
  if (ec) return Status(ec.value(), "cannot create " + o.state_dir + ": " + ec.message());
  std::string state = fs::canonical(o.state_dir).string();
  std::string logs = state + "/logs";
  // The cluster's secrets, made once: the key servers share and the admin
  // credential the CLI finds here.
  for (const std::string& secret : {state + "/cluster.key", state + "/admin.credential"}) {
    if (!fs::exists(secret))
      SEALFS_RETURN_IF_ERROR(auth::WriteSecretFile(secret, auth::RandomSecret()));
  }
  const std::string token_file = state + "/" + TokenFileName(o.volume);

  // Metadata server: its port is fixed after the first start so that mounts
  // and data servers find it again after a restart.
  std::string meta_address = LocalMetaAddress(state);
  pid_t meta_pid = PidFrom(state + "/meta.pid");
  if (ServerRunning(meta_pid, state + "/meta")) {
    std::printf("metadata server already running (pid %d) on %s\n", meta_pid, meta_address.c_str());
  } else {
    std::string listen = meta_address.empty() ? "127.0.0.1:0" : meta_address;
    fs::remove(state + "/meta.port", ec);
    auto pid = Spawn({FindProgram("sealfs-meta"),
                      "--db",
                      state + "/meta",
                      "--listen",
                      listen,
                      "--port-file",
                      state + "/meta.port",
                      "--create-volume",
                      o.volume,
                      "--volume-token-file",
                      token_file,
                      "--cluster-key",
                      state + "/cluster.key",
                      "--admin-credential",
                      state + "/admin.credential",
                      "--metrics-address",
                      "127.0.0.1:0",
                      "--metrics-port-file",
                      state + "/meta.metrics-port",
                      "--chunk-size",
                      std::to_string(o.chunk_size),
                      "--replicas",
                      std::to_string(o.replicas),
                      "--transport",
                      o.transport},
                     logs + "/meta.log");
    if (!pid.ok()) return pid.status();
    WriteLine(state + "/meta.pid", std::to_string(*pid));
    SEALFS_RETURN_IF_ERROR(
        WaitForFile(state + "/meta.port", *pid, "metadata server", logs + "/meta.log"));
    meta_address = "127.0.0.1:" + ReadFirstLine(state + "/meta.port");
    WriteLine(state + "/meta.address", meta_address);
    std::printf("started metadata server (pid %d) on %s\n", *pid, meta_address.c_str());
  }

  for (int i = 0; i < o.data_servers; ++i) {
    std::string dir = DataDir(state, i);
    pid_t pid = PidFrom(dir + ".pid");
    if (ServerRunning(pid, dir)) {
      std::printf("data server %d already running (pid %d)\n", i, pid);
      continue;
    }
    std::string previous_port = ReadFirstLine(dir + ".port");
    std::string listen = "127.0.0.1:" + (previous_port.empty() ? std::string("0") : previous_port);
    fs::remove(dir + ".port", ec);
    auto spawned = Spawn({FindProgram("sealfs-data"), "--dir", dir, "--meta", meta_address,
                          "--listen", listen, "--port-file", dir + ".port", "--transport",
                          o.transport, "--cluster-key", state + "/cluster.key", "--metrics-address",
                          "127.0.0.1:0", "--metrics-port-file", dir + ".metrics-port"},
                         logs + "/data" + std::to_string(i) + ".log");
    if (!spawned.ok()) return spawned.status();
    WriteLine(dir + ".pid", std::to_string(*spawned));
    SEALFS_RETURN_IF_ERROR(WaitForFile(dir + ".port", *spawned, "data server " + std::to_string(i),
                                       logs + "/data" + std::to_string(i) + ".log"));
    std::printf("started data server %d (pid %d) on 127.0.0.1:%s\n", i, *spawned,
                ReadFirstLine(dir + ".port").c_str());
  }

  // Wait until every data server has registered and is heartbeating.
  client::ClientOptions admin;
  admin.meta_address = meta_address;
  admin.volume = "";
  admin.timeout = 5s;
  Result<std::string> credential = auth::ReadSecretFile(state + "/admin.credential");
  if (!credential.ok()) return credential.status();
  admin.admin_credential = *credential;
  int up = 0;
  for (int attempt = 0; attempt < 100; ++attempt) {
    auto connection = client::Client::Connect(admin);
    if (connection.ok()) {
      auto map = (*connection)->RefreshClusterMap();
      up = 0;
      if (map.ok()) {
        for (const auto& server : map->servers()) up += server.state() == "up";
      }
      if (up >= o.data_servers) break;
    }
    std::this_thread::sleep_for(100ms);
  }
  if (up < o.data_servers) {
    return Status(EIO, "only " + std::to_string(up) + " of " + std::to_string(o.data_servers) +
                           " data servers are up; see " + logs);
  }
  std::printf("%d data servers up\n", up);
  WriteLine(state + "/data-servers", std::to_string(o.data_servers));

  if (!o.mount) return Status::Ok();
  fs::create_directories(o.mountpoint, ec);
  std::string mountpoint = fs::canonical(o.mountpoint, ec).string();
  if (ec) return Status(ec.value(), "cannot create mountpoint " + o.mountpoint);
  WriteLine(state + "/mountpoint", mountpoint);
  if (IsMounted(mountpoint)) {
    struct stat st;
    if (stat(mountpoint.c_str(), &st) == 0) {
      std::printf("%s already mounted\n", mountpoint.c_str());
      return Status::Ok();
    }
    // A mount whose client died: clear it and mount again.
    umount2(mountpoint.c_str(), MNT_DETACH);
  }
  std::string command = "'" + FindProgram("sealfs-fuse") + "' '" + meta_address + "/" + o.volume +
                        "' '" + mountpoint +
                        "' -o allow_other,default_permissions,transport=" + o.transport +
                        ",token_file=" + token_file + ",log=" + logs + "/fuse.log";
  if (std::system(command.c_str()) != 0) {
    return Status(EIO, "mounting " + mountpoint + " failed; see " + logs + "/fuse.log");
  }
  std::printf("mounted volume '%s' at %s\n", o.volume.c_str(), mountpoint.c_str());
  return Status::Ok();
}

Status LocalDown(const LocalClusterOptions& o) {
  std::error_code ec;
  if (!fs::exists(o.state_dir)) return Status(ENOENT, "no local cluster in " + o.state_dir);
  std::string state = fs::canonical(o.state_dir).string();
  std::string mountpoint = ReadFirstLine(state + "/mountpoint");
  if (!mountpoint.empty() && IsMounted(mountpoint)) {
    if (umount2(mountpoint.c_str(), 0) != 0) {
      std::fprintf(stderr, "unmount of %s busy (%s); detaching it\n", mountpoint.c_str(),
                   std::strerror(errno));
      umount2(mountpoint.c_str(), MNT_DETACH);
    }
    std::printf("unmounted %s\n", mountpoint.c_str());
  }
  struct Recorded {
    std::string pid_file;
    std::string state_path;
    pid_t pid;
  };
  std::vector<Recorded> processes;
  for (const auto& entry : fs::directory_iterator(state, ec)) {
    if (entry.path().extension() == ".pid") {
      fs::path state_path = entry.path();
      state_path.replace_extension();
      processes.push_back(
          {entry.path().string(), state_path.string(), PidFrom(entry.path().string())});
    }
  }
  // Only our servers are signalled, never a process that inherited a pid.
  for (auto& process : processes) {
    if (ServerRunning(process.pid, process.state_path)) kill(process.pid, SIGTERM);
  }
  for (auto& process : processes) {
    for (int i = 0; i < 100 && ServerRunning(process.pid, process.state_path); ++i) {
      Reap();
      std::this_thread::sleep_for(50ms);
    }
    if (ServerRunning(process.pid, process.state_path)) kill(process.pid, SIGKILL);
    fs::remove(process.pid_file, ec);
  }
  std::printf("stopped %zu processes\n", processes.size());
  return Status::Ok();
}

Status LocalStatus(const LocalClusterOptions& o) {
  std::error_code ec;
  if (!fs::exists(o.state_dir + "/meta.pid")) {
    return Status(ENOENT, "no local cluster running in " + o.state_dir);
  }
  std::string state = fs::canonical(o.state_dir).string();
  bool all_up = true;
  pid_t meta = PidFrom(state + "/meta.pid");
  bool meta_up = ServerRunning(meta, state + "/meta");
  std::printf("metadata server  pid %-7d %-5s %-21s %s\n", meta, meta_up ? "up" : "DOWN",
              LocalMetaAddress(state).c_str(), MetricsUrl(state + "/meta.metrics-port").c_str());
  all_up = all_up && meta_up;
  for (int i = 0; fs::exists(DataDir(state, i) + ".pid"); ++i) {
    pid_t pid = PidFrom(DataDir(state, i) + ".pid");
    bool up = ServerRunning(pid, DataDir(state, i));
    std::string address = "127.0.0.1:" + ReadFirstLine(DataDir(state, i) + ".port");
    std::printf("data server %-4d pid %-7d %-5s %-21s %s\n", i, pid, up ? "up" : "DOWN",
                address.c_str(), MetricsUrl(DataDir(state, i) + ".metrics-port").c_str());
    all_up = all_up && up;
  }
  std::string mountpoint = ReadFirstLine(state + "/mountpoint");
  if (!mountpoint.empty()) {
    bool mounted = IsMounted(mountpoint);
    std::printf("mount            %s %s\n", mountpoint.c_str(),
                mounted ? "mounted" : "NOT MOUNTED");
    all_up = all_up && mounted;
  }
  return all_up ? Status::Ok() : Status(EIO, "some parts of the local cluster are down");
}

}  // namespace sealfs::cli
