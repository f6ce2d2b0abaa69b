#include "mount_table.h"

#include <filesystem>
#include <fstream>
#include <sstream>

namespace sealfs::csi {
namespace {

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string Unescape(const std::string& field) {
  std::string out;
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size() && isdigit(field[i + 1]) &&
        isdigit(field[i + 2]) && isdigit(field[i + 3])) {
      out.push_back(static_cast<char>((field[i + 1] - '0') * 64 + (field[i + 2] - '0') * 8 +
                                      (field[i + 3] - '0')));
      i += 3;
    } else {
      out.push_back(field[i]);
    }
  }
  return out;
}

bool HasOption(const std::string& options, const std::string& option) {
  std::stringstream list(options);
  std::string item;
  while (std::getline(list, item, ',')) {
    if (item == option) return true;
  }
  return false;
}

}  // namespace

std::string CanonicalPath(const std::string& path) {
  // Only the parent is resolved: the path itself may be a FUSE mount whose
  // daemon does not answer, and a stat of it would hang.
  std::filesystem::path normal = std::filesystem::path(path).lexically_normal();
  if (!normal.has_filename()) normal = normal.parent_path();
  std::error_code ec;
  std::filesystem::path parent = std::filesystem::weakly_canonical(normal.parent_path(), ec);
  if (ec || normal.parent_path().empty()) return normal.string();
  return (parent / normal.filename()).string();
}

Result<std::vector<MountEntry>> ReadMountTable(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status(errno, "cannot read " + path);
  std::vector<MountEntry> table;
  std::string line;
  // id parent major:minor root mount-point options [optional...] - fstype source super-options
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, device, root, mount_point, options, field;
    fields >> id >> parent >> device >> root >> mount_point >> options;
    while (fields >> field && field != "-") {
    }
    MountEntry entry;
    fields >> entry.fs_type >> entry.source;
    if (entry.fs_type.empty()) continue;
    entry.root = Unescape(root);
    entry.mount_point = Unescape(mount_point);
    entry.source = Unescape(entry.source);
    entry.read_only = HasOption(options, "ro");
    table.push_back(std::move(entry));
  }
  return table;
}

std::optional<MountEntry> MountAt(const std::vector<MountEntry>& table, const std::string& path) {
  std::string wanted = CanonicalPath(path);
  std::optional<MountEntry> found;
  for (const MountEntry& entry : table) {
    if (entry.mount_point == wanted) found = entry;
  }
  return found;
}

std::string SealfsVolumeOf(const MountEntry& entry) {
  // sealfs-fuse names its mounts sealfs:HOST:PORT/VOLUME.
  if (entry.fs_type != "fuse.sealfs" || !entry.source.starts_with("sealfs:")) return "";
  size_t slash = entry.source.find('/');
  if (slash == std::string::npos) return "";
  return entry.source.substr(slash + 1);
}

}  // namespace sealfs::csi
