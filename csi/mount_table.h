// The mounts this process sees (/proc/self/mountinfo), and what a SealFS
// FUSE mount looks like there.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "sealfs/rpc/status.h"

namespace sealfs::csi {

struct MountEntry {
  std::string mount_point;  // unescaped
  std::string root;         // the subtree of the file system mounted here
  std::string fs_type;      // e.g. fuse.sealfs
  std::string source;       // e.g. sealfs:HOST:PORT/VOLUME
  bool read_only = false;   // the mount's own flag (a read-only bind)
};

Result<std::vector<MountEntry>> ReadMountTable(const std::string& path = "/proc/self/mountinfo");

// The last (topmost) mount at `path`, compared as canonical paths.
std::optional<MountEntry> MountAt(const std::vector<MountEntry>& table, const std::string& path);

// The SealFS volume a mount serves, or "" when it is not a SealFS mount.
std::string SealfsVolumeOf(const MountEntry& entry);

// `path` with symlinks resolved as far as it exists, and no trailing '/'.
std::string CanonicalPath(const std::string& path);

}  // namespace sealfs::csi
