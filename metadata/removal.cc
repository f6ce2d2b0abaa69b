// Removing names: unlink, rmdir and rename (which may replace its target).
#include <sys/stat.h>

#include "handles.h"
#include "keys.h"
#include "quota.h"
#include "sealfs/metadata/meta_store.h"

namespace sealfs::metadata {

namespace {
constexpr int kMaxDepth = 4096;  // deeper than any directory tree may be
}  // namespace

Result<Unlinked> MetaStore::Unlink(uint64_t parent, const std::string& name,
                                   const OpenCheck& is_open) {
  if (name.size() > kNameMax) return Status(ENAMETOOLONG, "name too long");
  Result<LockedEntry> entry = LockEntry(parent, name);
  if (!entry.ok()) return entry.status();
  if (IsDir(entry->inode)) return Status(EISDIR, "'" + name + "' is a directory");
  int64_t now = NowNs();
  rocksdb::WriteBatch batch;
  RemoveEntry(batch, parent, name, entry->seq);
  Touch(entry->dir.mutable_attr(), now, true);
  PutInode(batch, entry->dir);
  UsageChanges changes;
  Unlinked result = DropLink(batch, std::move(entry->inode), is_open, now, changes);
  SEALFS_RETURN_IF_ERROR(CommitCharged(batch, changes));
  return result;
}

Status MetaStore::Rmdir(uint64_t parent, const std::string& name, uint64_t* removed) {
  if (name.size() > kNameMax) return Status(ENAMETOOLONG, "name too long");
  if (name == ".") return Status(EINVAL, "cannot remove '.'");
  if (name == "..") return Status(ENOTEMPTY, "cannot remove '..'");
  Result<LockedEntry> entry = LockEntry(parent, name);
  if (!entry.ok()) return entry.status();
  if (!IsDir(entry->inode)) return Status(ENOTDIR, "'" + name + "' is not a directory");
  Result<bool> empty = IsEmptyDirectory(entry->inode.attr().ino());
  if (!empty.ok()) return empty.status();
  if (!*empty) return Status(ENOTEMPTY, "directory '" + name + "' is not empty");
  int64_t now = NowNs();
  rocksdb::WriteBatch batch;
  RemoveEntry(batch, parent, name, entry->seq);
  entry->dir.mutable_attr()->set_nlink(entry->dir.attr().nlink() - 1);
  Touch(entry->dir.mutable_attr(), now, true);
  PutInode(batch, entry->dir);
  UsageChanges changes;
  FreeInode(batch, entry->inode, changes);
  SEALFS_RETURN_IF_ERROR(CommitCharged(batch, changes));
  if (removed) *removed = entry->inode.attr().ino();
  return Status::Ok();
}

Status MetaStore::IsAncestor(uint64_t ancestor, uint64_t ino, bool* result) {
  *result = false;
  for (int depth = 0; depth < kMaxDepth; ++depth) {
    if (ino == ancestor) {
      *result = true;
      return Status::Ok();
    }
    Result<pb::Inode> inode = LoadInode(ino);
    if (!inode.ok()) return inode.status();
    uint64_t up = inode->attr().parent();
    if (up == 0 || up == ino) return Status::Ok();
    ino = up;
  }
  return Status(ELOOP, "directory tree too deep");
}

Result<Unlinked> MetaStore::Rename(uint64_t parent, const std::string& name, uint64_t new_parent,
                                   const std::string& new_name, uint32_t flags,
                                   const OpenCheck& is_open) {
  SEALFS_RETURN_IF_ERROR(CheckRename(name, new_name, flags));
  const bool exchange = flags & pb::RENAME_FLAG_EXCHANGE;
  const bool noreplace = flags & pb::RENAME_FLAG_NOREPLACE;
  // Moves between directories are serialized so that two of them cannot
  // together create a cycle that each ancestry check alone misses.
  std::unique_lock<std::mutex> tree_lock(rename_mutex_, std::defer_lock);
  if (parent != new_parent) tree_lock.lock();
  for (;;) {
    uint64_t src_seq = 0, dst_seq = 0;
    Result<uint64_t> src = LookupChild(parent, name, nullptr, nullptr);
    if (!src.ok()) {
      Result<pb::Inode> dir = LoadDirectory(parent);
      return dir.ok() ? src.status() : dir.status();
    }
    Result<uint64_t> dst = LookupChild(new_parent, new_name, nullptr, nullptr);
    uint64_t dst_ino = dst.ok() ? *dst : 0;
    LockSet lock(*locks_, {parent, new_parent, *src, dst_ino});
    Result<uint64_t> src_again = LookupChild(parent, name, nullptr, &src_seq);
    Result<uint64_t> dst_again = LookupChild(new_parent, new_name, nullptr, &dst_seq);
    if (!src_again.ok() || *src_again != *src || dst_again.ok() != dst.ok() ||
        (dst.ok() && *dst_again != dst_ino)) {
      continue;
    }
    Result<pb::Inode> src_dir = LoadDirectory(parent);
    if (!src_dir.ok()) return src_dir.status();
    Result<pb::Inode> dst_dir_storage = parent == new_parent ? src_dir : LoadDirectory(new_parent);
    if (!dst_dir_storage.ok()) return dst_dir_storage.status();
    pb::Inode& from_dir = *src_dir;
    pb::Inode& to_dir = parent == new_parent ? *src_dir : *dst_dir_storage;
    if (from_dir.volume_id() != to_dir.volume_id()) {
      return Status(EXDEV, "cannot rename between volumes");
    }
    Result<pb::Inode> src_inode = LoadInode(*src);
    if (!src_inode.ok()) return src_inode.status();
    pb::Inode dst_inode;
    if (dst_ino != 0) {
      Result<pb::Inode> loaded = LoadInode(dst_ino);
      if (!loaded.ok()) return loaded.status();
      dst_inode = std::move(*loaded);
    }
    if (noreplace && dst_ino != 0) return Status(EEXIST, "'" + new_name + "' exists");
    if (exchange && dst_ino == 0) return Status(ENOENT, "'" + new_name + "' does not exist");
    if (dst_ino == *src) return Unlinked{};  // both names already link the same inode
    const bool src_is_dir = IsDir(*src_inode);
    const bool dst_is_dir = dst_ino != 0 && IsDir(dst_inode);
    if (parent != new_parent) {
      bool inside = false;
      if (src_is_dir) {
        SEALFS_RETURN_IF_ERROR(IsAncestor(*src, new_parent, &inside));
        if (inside) return Status(EINVAL, "cannot move a directory under itself");
      }
      if (exchange && dst_is_dir) {
        SEALFS_RETURN_IF_ERROR(IsAncestor(dst_ino, parent, &inside));
        if (inside) return Status(EINVAL, "cannot move a directory under itself");
      }
    }
    if (!exchange && dst_ino != 0) {
      if (src_is_dir && !dst_is_dir)
        return Status(ENOTDIR, "'" + new_name + "' is not a directory");
      if (!src_is_dir && dst_is_dir) return Status(EISDIR, "'" + new_name + "' is a directory");
      if (dst_is_dir) {
        Result<bool> empty = IsEmptyDirectory(dst_ino);
        if (!empty.ok()) return empty.status();
        if (!*empty) return Status(ENOTEMPTY, "'" + new_name + "' is not empty");
      }
    }

    int64_t now = NowNs();
    rocksdb::WriteBatch batch;
    UsageChanges changes;
    Unlinked replaced;
    auto adjust_nlink = [](pb::Inode& dir, int delta) {
      dir.mutable_attr()->set_nlink(dir.attr().nlink() + delta);
    };
    if (exchange) {
      uint32_t src_type = src_inode->attr().mode() & S_IFMT;
      uint32_t dst_type = dst_inode.attr().mode() & S_IFMT;
      batch.Put(cf_->dentries, DentryKey(parent, name), EncodeDentry({dst_ino, src_seq, dst_type}));
      batch.Put(cf_->dirindex, IndexKey(parent, src_seq), EncodeIndex(dst_ino, dst_type, name));
      batch.Put(cf_->dentries, DentryKey(new_parent, new_name),
                EncodeDentry({*src, dst_seq, src_type}));
      batch.Put(cf_->dirindex, IndexKey(new_parent, dst_seq),
                EncodeIndex(*src, src_type, new_name));
      if (parent != new_parent) {
        if (src_is_dir) src_inode->mutable_attr()->set_parent(new_parent);
        if (dst_is_dir) dst_inode.mutable_attr()->set_parent(parent);
        int delta = (src_is_dir ? 1 : 0) - (dst_is_dir ? 1 : 0);
        adjust_nlink(to_dir, delta);
        adjust_nlink(from_dir, -delta);
      }
      dst_inode.mutable_attr()->set_ctime_ns(now);
      PutInode(batch, dst_inode);
    } else {
      RemoveEntry(batch, parent, name, src_seq);
      if (dst_ino != 0) {
        uint32_t src_type = src_inode->attr().mode() & S_IFMT;
        batch.Put(cf_->dentries, DentryKey(new_parent, new_name),
                  EncodeDentry({*src, dst_seq, src_type}));
        batch.Put(cf_->dirindex, IndexKey(new_parent, dst_seq),
                  EncodeIndex(*src, src_type, new_name));
        if (dst_is_dir) adjust_nlink(to_dir, -1);
        replaced = DropLink(batch, dst_inode, is_open, now, changes);
      } else if (parent == new_parent) {
        // A name changed within a directory keeps its place in the listing,
        // so a listing that renames what it reads still comes to an end.
        uint32_t src_type = src_inode->attr().mode() & S_IFMT;
        batch.Put(cf_->dentries, DentryKey(new_parent, new_name),
                  EncodeDentry({*src, src_seq, src_type}));
        batch.Put(cf_->dirindex, IndexKey(new_parent, src_seq),
                  EncodeIndex(*src, src_type, new_name));
      } else {
        AddEntry(batch, to_dir, new_name, *src, src_inode->attr().mode());
      }
      if (src_is_dir) {
        src_inode->mutable_attr()->set_parent(new_parent);
        adjust_nlink(from_dir, -1);
        adjust_nlink(to_dir, +1);
      }
    }
    src_inode->mutable_attr()->set_ctime_ns(now);
    PutInode(batch, *src_inode);
    Touch(from_dir.mutable_attr(), now, true);
    PutInode(batch, from_dir);
    if (parent != new_parent) {
      Touch(to_dir.mutable_attr(), now, true);
      PutInode(batch, to_dir);
    }
    SEALFS_RETURN_IF_ERROR(CommitCharged(batch, changes));
    return replaced;
  }
}

}  // namespace sealfs::metadata
