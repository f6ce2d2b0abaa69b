// Namespace operations as changes per shard. What a plan reads may change
// before its changes are prepared; every step states what it expects, and
// a prepare that finds otherwise answers EAGAIN so the caller plans again.
#include <sys/stat.h>

#include <map>

#include "keys.h"
#include "sealfs/metadata/cross_shard.h"

namespace sealfs::metadata {

namespace {

constexpr int kMaxDepth = 4096;

// Steps gathered by the shard that applies them.
class ChangeSet {
 public:
  pb::ShardStep& Add(uint32_t shard, pb::ShardStep::Kind kind) {
    pb::ShardChange& change = changes_[shard];
    change.set_shard(shard);
    pb::ShardStep* step = change.add_steps();
    step->set_kind(kind);
    return *step;
  }
  pb::ShardStep& AddEntry(uint64_t dir, const std::string& name, uint64_t ino, uint32_t type,
                          uint64_t replaces, int dir_links) {
    pb::ShardStep& step = Add(ShardOf(dir), pb::ShardStep::ADD_ENTRY);
    step.set_dir(dir);
    step.set_name(name);
    step.set_ino(ino);
    step.set_type(type);
    step.set_expect_ino(replaces);
    step.set_dir_links(dir_links);
    return step;
  }
  void RemoveEntry(uint64_t dir, const std::string& name, uint64_t ino, int dir_links) {
    pb::ShardStep& step = Add(ShardOf(dir), pb::ShardStep::REMOVE_ENTRY);
    step.set_dir(dir);
    step.set_name(name);
    step.set_expect_ino(ino);
    step.set_dir_links(dir_links);
  }
  pb::ShardStep& OnInode(pb::ShardStep::Kind kind, const pb::Inode& inode) {
    pb::ShardStep& step = Add(ShardOf(inode.attr().ino()), kind);
    step.set_ino(inode.attr().ino());
    step.set_type(inode.attr().mode() & S_IFMT);
    return step;
  }
  std::vector<pb::ShardChange> Take() {
    std::vector<pb::ShardChange> out;
    for (auto& [shard, change] : changes_) out.push_back(std::move(change));
    return out;
  }

 private:
  std::map<uint32_t, pb::ShardChange> changes_;
};

uint32_t TypeOf(const pb::Inode& inode) { return inode.attr().mode() & S_IFMT; }

Result<pb::Inode> Directory(ShardReader& reader, uint64_t ino) {
  Result<pb::Inode> dir = reader.Getattr(ino);
  if (!dir.ok()) return dir;
  if (!IsDir(*dir)) return Status(ENOTDIR, "inode " + std::to_string(ino) + " is not a directory");
  if (dir->attr().nlink() == 0) return Status(ENOENT, "directory was removed");
  return dir;
}

// The inode `name` in `parent` names, read from its own shard.
Result<pb::Inode> Named(ShardReader& reader, uint64_t parent, const std::string& name) {
  Result<uint64_t> ino = reader.FindEntry(parent, name);
  if (!ino.ok()) return ino.status();
  Result<pb::Inode> inode = reader.Getattr(*ino);
  // An entry whose inode is gone reads as a name being removed right now.
  if (!inode.ok() && inode.status().code() == ENOENT) return Status(EAGAIN, "entry changed");
  return inode;
}

// Whether `ancestor` is `ino` or above it. Directory moves between
// directories are serialised by the caller, so parents do not change
// while this walks them.
Result<bool> IsAncestor(ShardReader& reader, uint64_t ancestor, uint64_t ino) {
  for (int depth = 0; depth < kMaxDepth; ++depth) {
    if (ino == ancestor) return true;
    Result<pb::Inode> inode = reader.Getattr(ino);
    if (!inode.ok()) return inode.status();
    uint64_t up = inode->attr().parent();
    if (up == 0 || up == ino) return false;
    ino = up;
  }
  return Status(ELOOP, "directory tree too deep");
}

}  // namespace

std::vector<pb::ShardChange> PlanMkdir(uint64_t parent, const std::string& name,
                                       const pb::Inode& new_dir,
                                       const std::map<std::string, std::string>& xattrs) {
  ChangeSet set;
  set.AddEntry(parent, name, new_dir.attr().ino(), S_IFDIR, 0, +1);
  pb::ShardStep& create = set.OnInode(pb::ShardStep::CREATE_INODE, new_dir);
  *create.mutable_inode() = new_dir;
  create.mutable_xattrs()->insert(xattrs.begin(), xattrs.end());
  return set.Take();
}

Result<std::vector<pb::ShardChange>> PlanRmdir(ShardReader& reader, uint64_t parent,
                                               const std::string& name) {
  Result<pb::Inode> dir = Named(reader, parent, name);
  if (!dir.ok()) return dir.status();
  if (!IsDir(*dir)) return Status(ENOTDIR, "'" + name + "' is not a directory");
  ChangeSet set;
  set.RemoveEntry(parent, name, dir->attr().ino(), -1);
  set.OnInode(pb::ShardStep::DROP_LINK, *dir);
  return set.Take();
}

Result<std::vector<pb::ShardChange>> PlanUnlink(ShardReader& reader, uint64_t parent,
                                                const std::string& name) {
  Result<pb::Inode> inode = Named(reader, parent, name);
  if (!inode.ok()) return inode.status();
  if (IsDir(*inode)) return Status(EISDIR, "'" + name + "' is a directory");
  ChangeSet set;
  set.RemoveEntry(parent, name, inode->attr().ino(), 0);
  set.OnInode(pb::ShardStep::DROP_LINK, *inode);
  return set.Take();
}

Result<std::vector<pb::ShardChange>> PlanLink(ShardReader& reader, uint64_t ino,
                                              uint64_t new_parent, const std::string& new_name) {
  SEALFS_RETURN_IF_ERROR(CheckName(new_name));
  Result<pb::Inode> dir = Directory(reader, new_parent);
  if (!dir.ok()) return dir.status();
  Result<pb::Inode> inode = reader.Getattr(ino);
  if (!inode.ok()) return inode.status();
  if (IsDir(*inode)) return Status(EPERM, "cannot hard-link a directory");
  if (inode->volume_id() != dir->volume_id()) return Status(EXDEV, "cannot link between volumes");
  ChangeSet set;
  set.AddEntry(new_parent, new_name, ino, TypeOf(*inode), 0, 0);
  set.OnInode(pb::ShardStep::ADJUST_INODE, *inode).set_links_delta(+1);
  return set.Take();
}

Result<std::vector<pb::ShardChange>> PlanRename(ShardReader& reader, uint64_t parent,
                                                const std::string& name, uint64_t new_parent,
                                                const std::string& new_name, uint32_t flags) {
  SEALFS_RETURN_IF_ERROR(CheckRename(name, new_name, flags));
  const bool exchange = flags & pb::RENAME_FLAG_EXCHANGE;
  const bool noreplace = flags & pb::RENAME_FLAG_NOREPLACE;
  Result<pb::Inode> from_dir = Directory(reader, parent);
  if (!from_dir.ok()) return from_dir.status();
  Result<pb::Inode> to_dir = Directory(reader, new_parent);
  if (!to_dir.ok()) return to_dir.status();
  Result<pb::Inode> source = Named(reader, parent, name);
  if (!source.ok()) return source.status();
  if (source->volume_id() != to_dir->volume_id()) {
    return Status(EXDEV, "cannot rename between volumes");
  }
  std::optional<pb::Inode> target;
  Result<pb::Inode> named = Named(reader, new_parent, new_name);
  if (named.ok()) {
    target = std::move(*named);
  } else if (named.status().code() != ENOENT) {
    return named.status();
  }
  if (exchange && !target) return Status(ENOENT, "'" + new_name + "' not found");
  if (noreplace && target) return Status(EEXIST, "'" + new_name + "' already exists");
  const uint64_t x = source->attr().ino();
  if (target && target->attr().ino() == x) return std::vector<pb::ShardChange>{};
  const bool x_dir = IsDir(*source);
  const bool y_dir = target && IsDir(*target);
  if (parent != new_parent) {
    if (x_dir) {
      Result<bool> inside = IsAncestor(reader, x, new_parent);
      if (!inside.ok()) return inside.status();
      if (*inside) return Status(EINVAL, "cannot move a directory under itself");
    }
    if (exchange && y_dir) {
      Result<bool> inside = IsAncestor(reader, target->attr().ino(), parent);
      if (!inside.ok()) return inside.status();
      if (*inside) return Status(EINVAL, "cannot move a directory under itself");
    }
  }
  if (!exchange && target) {
    if (x_dir && !y_dir) return Status(ENOTDIR, "'" + new_name + "' is not a directory");
    if (!x_dir && y_dir) return Status(EISDIR, "'" + new_name + "' is a directory");
  }
  const uint64_t y = target ? target->attr().ino() : 0;
  ChangeSet set;
  pb::ShardStep& moved = set.OnInode(pb::ShardStep::ADJUST_INODE, *source);
  if (x_dir && parent != new_parent) {
    moved.set_new_parent(new_parent);
    moved.set_expect_parent(parent);
  }
  if (exchange) {
    set.AddEntry(parent, name, y, TypeOf(*target), x, int{y_dir} - int{x_dir});
    set.AddEntry(new_parent, new_name, x, TypeOf(*source), y, int{x_dir} - int{y_dir});
    pb::ShardStep& other = set.OnInode(pb::ShardStep::ADJUST_INODE, *target);
    if (y_dir && parent != new_parent) {
      other.set_new_parent(parent);
      other.set_expect_parent(new_parent);
    }
    return set.Take();
  }
  set.RemoveEntry(parent, name, x, x_dir ? -1 : 0);
  set.AddEntry(new_parent, new_name, x, TypeOf(*source), y, int{x_dir} - int{y_dir});
  if (target) set.OnInode(pb::ShardStep::DROP_LINK, *target);
  return set.Take();
}

}  // namespace sealfs::metadata
