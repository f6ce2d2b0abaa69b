// Mounting SealFS volumes with sealfs-fuse and taking mounts down: the code
// both the node plugin (running sealfs-fuse itself) and the mounter process
// use. Token files live under STATE/tokens (0700, files 0600) and daemon
// logs under STATE/logs: never inside a mount.
#pragma once

#include <sys/statvfs.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "sealfs/rpc/status.h"

namespace sealfs::csi {

struct FuseMount {
  std::string source;                // HOST:PORT/VOLUME
  std::string target;                // an existing directory
  std::vector<std::string> options;  // sealfs-fuse -o options (none with ',')
  std::string token;                 // the volume's mount token
};

// Runs sealfs-fuse daemons: in this process, or through a mounter.
class FuseMounter {
 public:
  virtual ~FuseMounter() = default;
  // Returns once the volume is mounted at the target (the daemon detached
  // into a session of its own), or why not.
  virtual Status Mount(const FuseMount& mount) = 0;
  // Unmounts whatever is mounted at `target` and removes the token file of
  // `volume` (when given).
  virtual Status Unmount(const std::string& target, const std::string& volume) = 0;
};

class LocalFuseMounter final : public FuseMounter {
 public:
  LocalFuseMounter(std::string fuse_binary, std::string state_dir)
      : fuse_binary_(std::move(fuse_binary)), state_dir_(std::move(state_dir)) {}
  Status Mount(const FuseMount& mount) override;
  Status Unmount(const std::string& target, const std::string& volume) override;

 private:
  std::string fuse_binary_;
  std::string state_dir_;
};

// A file name for a volume's state: the hex BLAKE2b of its name.
std::string VolumeFileName(const std::string& volume);
// STATE/tokens/<VolumeFileName>.
std::string TokenFilePath(const std::string& state_dir, const std::string& volume);

// Unmounts every mount stacked at `path` (umount2; a busy one detached
// lazily, and everything lazily with `lazy`). Nothing mounted is success.
Status UnmountAll(const std::string& path, bool lazy = false);

// statvfs of `path`, or ETIMEDOUT when the file system does not answer in
// `limit` (a FUSE mount whose daemon hangs would block the caller forever).
Result<struct statvfs> StatFileSystem(const std::string& path, std::chrono::milliseconds limit);

}  // namespace sealfs::csi
