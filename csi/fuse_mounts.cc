#include "fuse_mounts.h"

#include <sys/mount.h>
#include <sys/stat.h>

#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <thread>

#include "child_processes.h"
#include "mount_table.h"
#include "sealfs/rpc/credentials.h"

namespace sealfs::csi {
namespace {

constexpr std::chrono::seconds kMountLimit{90};

Status MakePrivateDir(const std::string& path) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) return Status(ec.value(), "creating " + path + ": " + ec.message());
  if (chmod(path.c_str(), 0700) != 0) {
    return Status(errno, "chmod " + path + ": " + std::strerror(errno));
  }
  return Status::Ok();
}

// Replaces the token file atomically, so a daemon restarting from it never
// reads half a token.
Status WriteTokenFile(const std::string& path, const std::string& token) {
  std::string temporary = path + ".new";
  ::unlink(temporary.c_str());
  SEALFS_RETURN_IF_ERROR(auth::WriteSecretFile(temporary, token));
  if (::rename(temporary.c_str(), path.c_str()) != 0) {
    int error = errno;
    ::unlink(temporary.c_str());
    return Status(error, "renaming " + temporary + ": " + std::strerror(error));
  }
  return Status::Ok();
}

// sealfs-fuse reports a failed mount as "sealfs-fuse: <strerror>: why";
// the errno it names says what kind of failure it was.
int ErrnoOfFuseReport(const std::string& report) {
  for (int error : {ENOENT, EACCES, ECONNREFUSED, ETIMEDOUT, EHOSTUNREACH, ENOTDIR, EINVAL}) {
    const char* description = strerrordesc_np(error);
    if (description && report.find(description) != std::string::npos) return error;
  }
  return EIO;
}

std::string Trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

}  // namespace

std::string VolumeFileName(const std::string& volume) {
  return auth::ToHex(auth::HashSecret(volume));
}

std::string TokenFilePath(const std::string& state_dir, const std::string& volume) {
  return state_dir + "/tokens/" + VolumeFileName(volume);
}

Status LocalFuseMounter::Mount(const FuseMount& mount) {
  size_t slash = mount.source.find('/');
  if (slash == std::string::npos || slash + 1 == mount.source.size()) {
    return Status(EINVAL, "mount source '" + mount.source + "' is not HOST:PORT/VOLUME");
  }
  if (mount.target.empty() || mount.target.front() != '/') {
    return Status(EINVAL, "mount target '" + mount.target + "' is not an absolute path");
  }
  std::string volume = mount.source.substr(slash + 1);
  std::string options;
  for (const std::string& option : mount.options) {
    if (option.empty() || option.find(',') != std::string::npos ||
        option.starts_with("token_file=") || option.starts_with("credentials=") ||
        option.starts_with("log=")) {
      return Status(EINVAL, "mount option '" + option + "' is not allowed");
    }
    options += option + ",";
  }
  SEALFS_RETURN_IF_ERROR(MakePrivateDir(state_dir_));
  SEALFS_RETURN_IF_ERROR(MakePrivateDir(state_dir_ + "/tokens"));
  SEALFS_RETURN_IF_ERROR(MakePrivateDir(state_dir_ + "/logs"));
  std::string token_file = TokenFilePath(state_dir_, volume);
  SEALFS_RETURN_IF_ERROR(WriteTokenFile(token_file, mount.token));
  options += "token_file=" + token_file + ",log=" + state_dir_ + "/logs/" + VolumeFileName(volume) +
             ".log";
  Result<ChildProcesses::Outcome> ran = ChildProcesses::Instance().Run(
      {fuse_binary_, mount.source, mount.target, "-o", options}, kMountLimit);
  if (!ran.ok()) return ran.status();
  if (ran->exit_code == 127) {
    return Status(ENOENT, "cannot run " + fuse_binary_ + ": " + Trimmed(ran->output));
  }
  if (ran->exit_code != 0) {
    std::string report = Trimmed(ran->output);
    return Status(ErrnoOfFuseReport(report), "mounting " + volume + " at " + mount.target + ": " +
                                                 (report.empty() ? "sealfs-fuse failed" : report));
  }
  return Status::Ok();
}

Status LocalFuseMounter::Unmount(const std::string& target, const std::string& volume) {
  SEALFS_RETURN_IF_ERROR(UnmountAll(target));
  if (!volume.empty() && ::unlink(TokenFilePath(state_dir_, volume).c_str()) != 0 &&
      errno != ENOENT) {
    return Status(errno, "removing the token file of " + volume + ": " + std::strerror(errno));
  }
  return Status::Ok();
}

Status UnmountAll(const std::string& path, bool lazy) {
  std::string canonical = CanonicalPath(path);
  // Bounded: each round takes one mount off the stack.
  for (int round = 0; round < 16; ++round) {
    Result<std::vector<MountEntry>> table = ReadMountTable();
    if (!table.ok()) return table.status();
    if (!MountAt(*table, canonical)) return Status::Ok();
    if (umount2(canonical.c_str(), lazy ? MNT_DETACH : 0) == 0) continue;
    if (errno == EBUSY && umount2(canonical.c_str(), MNT_DETACH) == 0) continue;
    if (errno == EINVAL || errno == ENOENT) return Status::Ok();  // gone meanwhile
    return Status(errno, "unmounting " + canonical + ": " + std::strerror(errno));
  }
  return Status(EBUSY, "mounts keep appearing at " + canonical);
}

Result<struct statvfs> StatFileSystem(const std::string& path, std::chrono::milliseconds limit) {
  struct Outcome {
    std::mutex mutex;
    std::condition_variable done;
    bool finished = false;
    int error = 0;
    struct statvfs stats {};
  };
  auto outcome = std::make_shared<Outcome>();
  // Detached: if the file system never answers, the thread stays blocked
  // but the caller goes on.
  std::thread([outcome, path] {
    struct statvfs stats {};
    int error = statvfs(path.c_str(), &stats) == 0 ? 0 : errno;
    std::lock_guard<std::mutex> lock(outcome->mutex);
    outcome->stats = stats;
    outcome->error = error;
    outcome->finished = true;
    outcome->done.notify_all();
  }).detach();
  std::unique_lock<std::mutex> lock(outcome->mutex);
  if (!outcome->done.wait_for(lock, limit, [&] { return outcome->finished; })) {
    return Status(ETIMEDOUT, path + " does not answer");
  }
  if (outcome->error != 0) {
    return Status(outcome->error, "statfs " + path + ": " + std::strerror(outcome->error));
  }
  return outcome->stats;
}

}  // namespace sealfs::csi
