// Namespace operations: lookups, attributes, creating, removing and renaming
// names, directory listings, statfs.
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "fuse_fs.h"

namespace sealfs::fuse {

namespace {
constexpr uint32_t kLinuxRenameNoreplace = 1;
constexpr uint32_t kLinuxRenameExchange = 2;
}  // namespace

void FuseFs::Init(fuse_conn_info* conn) {
  conn->max_write = 1u << 20;
  conn->max_readahead = 1u << 20;
  const unsigned wanted[] = {FUSE_CAP_SPLICE_WRITE,     FUSE_CAP_SPLICE_MOVE,
                             FUSE_CAP_SPLICE_READ,      FUSE_CAP_READDIRPLUS,
                             FUSE_CAP_READDIRPLUS_AUTO, FUSE_CAP_PARALLEL_DIROPS,
                             FUSE_CAP_EXPORT_SUPPORT,   FUSE_CAP_ASYNC_READ};
  for (unsigned capability : wanted) {
    if (conn->capable & capability) conn->want |= capability;
  }
  // Writes go straight to the data servers, so the kernel must not hold dirty
  // pages of its own; POSIX and BSD locks stay in the kernel (one mount).
  conn->want &= ~(FUSE_CAP_WRITEBACK_CACHE | FUSE_CAP_POSIX_LOCKS | FUSE_CAP_FLOCK_LOCKS);
  // O_TRUNC arrives as a separate SETATTR, which cuts the data on the servers.
  conn->want &= ~FUSE_CAP_ATOMIC_O_TRUNC;
  // The kernel enforces POSIX ACLs (this implies default_permissions); the
  // metadata server keeps mode and ACLs consistent and applies default ACLs.
  // With DONT_MASK the kernel sends the unmasked mode and the umask, so the
  // server applies the umask only where the directory has no default ACL.
  if ((conn->capable & FUSE_CAP_POSIX_ACL) && (conn->capable & FUSE_CAP_DONT_MASK)) {
    conn->want |= FUSE_CAP_POSIX_ACL | FUSE_CAP_DONT_MASK;
  }
}

void FuseFs::Lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  // The kernel looks up "." of a non-directory to turn a file handle back
  // into an inode (open_by_handle_at, NFS export); the server answers it.
  pb::LookupRequest request;
  request.set_parent(ToServer(parent));
  request.set_name(name);
  pb::LookupResponse response;
  Status status = client_.Meta(rpc::meta::kLookup, request, &response);
  if (!status.ok()) return ReplyStatus(req, status);
  ReplyEntry(req, response.attr(), &response.layout());
}

Status FuseFs::CommitWrites(uint64_t ino, pb::Attr* attr, bool durable) {
  auto state = FindState(ino);
  if (!state) return Status(ENOENT, "no state");
  uint64_t size;
  int64_t mtime;
  uint64_t epoch;
  int64_t allocated_delta;
  {
    std::lock_guard<std::mutex> lock(state->mutex);
    if (!state->dirty && !(durable && state->unsynced)) return Status(EAGAIN, "nothing to commit");
    size = state->size;
    mtime = state->mtime_ns;
    epoch = state->dirty ? state->write_epoch : state->data_epoch;
    allocated_delta = state->allocated_delta;
  }
  pb::CommitWriteRequest request;
  request.set_ino(ino);
  request.set_size(size);
  request.set_mtime_ns(mtime);
  request.set_durable(durable);
  request.set_data_epoch(epoch);
  request.set_allocated_delta(allocated_delta);
  pb::CommitWriteResponse response;
  Status status = client_.Meta(rpc::meta::kCommitWrite, request, &response);
  if (!status.ok()) return status;
  {
    std::lock_guard<std::mutex> lock(state->mutex);
    // Writes that landed meanwhile keep the state dirty.
    state->data_epoch = response.attr().data_epoch();
    state->allocated_delta -= allocated_delta;
    if (state->size == size && state->mtime_ns == mtime) {
      state->dirty = false;
      ClearUncommittedEnds(*state);
      state->unsynced = !durable;
      // The server may have held the size back (a truncate cut the data).
      state->size = response.attr().size();
    } else {
      state->size = std::max(state->size, response.attr().size());
    }
  }
  if (attr) *attr = response.attr();
  return Status::Ok();
}

void FuseFs::Getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  uint64_t server_ino = ToServer(ino);
  if (ReplyKnownDirectoryAttr(req, server_ino)) return;
  pb::Attr attr;
  Status committed = CommitWrites(server_ino, &attr);
  if (committed.ok()) return ReplyAttr(req, attr);
  if (committed.code() != EAGAIN && committed.code() != ENOENT) return ReplyStatus(req, committed);
  pb::GetattrRequest request;
  request.set_ino(server_ino);
  pb::GetattrResponse response;
  Status status = client_.Meta(rpc::meta::kGetattr, request, &response);
  if (status.code() == ENOENT) {
    // A directory removed while open: fstat still works on its descriptor
    // and shows no links, as on any local file system.
    if (auto state = FindState(server_ino)) {
      std::lock_guard<std::mutex> lock(state->mutex);
      if (state->directory_attr) {
        pb::Attr gone = *state->directory_attr;
        gone.set_nlink(0);
        struct stat st = ToStat(gone);
        fuse_reply_attr(req, &st, 0);
        return;
      }
    }
  }
  if (!status.ok()) return ReplyStatus(req, status);
  ReplyAttr(req, response.attr(), &response.layout());
}

void FuseFs::Setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set,
                     fuse_file_info*) {
  uint64_t server_ino = ToServer(ino);
  pb::SetattrRequest request;
  request.set_ino(server_ino);
  uint32_t valid = 0;
  if (to_set & FUSE_SET_ATTR_MODE) {
    valid |= pb::SETATTR_MODE;
    request.set_mode(attr->st_mode);
  }
  if (to_set & FUSE_SET_ATTR_UID) {
    valid |= pb::SETATTR_UID;
    request.set_uid(attr->st_uid);
  }
  if (to_set & FUSE_SET_ATTR_GID) {
    valid |= pb::SETATTR_GID;
    request.set_gid(attr->st_gid);
  }
  if (to_set & FUSE_SET_ATTR_SIZE) {
    valid |= pb::SETATTR_SIZE;
    request.set_size(static_cast<uint64_t>(attr->st_size));
    // Commit pending writes first so the server cuts everything past the new end.
    Status committed = CommitWrites(server_ino, nullptr);
    if (!committed.ok() && committed.code() != EAGAIN && committed.code() != ENOENT) {
      return ReplyStatus(req, committed);
    }
  }
  auto to_ns = [](const timespec& ts) {
    return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
  };
  if (to_set & FUSE_SET_ATTR_ATIME_NOW)
    valid |= pb::SETATTR_ATIME_NOW;
  else if (to_set & FUSE_SET_ATTR_ATIME) {
    valid |= pb::SETATTR_ATIME;
    request.set_atime_ns(to_ns(attr->st_atim));
  }
  if (to_set & FUSE_SET_ATTR_MTIME_NOW)
    valid |= pb::SETATTR_MTIME_NOW;
  else if (to_set & FUSE_SET_ATTR_MTIME) {
    valid |= pb::SETATTR_MTIME;
    request.set_mtime_ns(to_ns(attr->st_mtim));
  }
  if (to_set & FUSE_SET_ATTR_CTIME) {
    valid |= pb::SETATTR_CTIME;
    request.set_ctime_ns(to_ns(attr->st_ctim));
  }
  if ((valid & (pb::SETATTR_MTIME | pb::SETATTR_MTIME_NOW)) != 0) {
    // An explicit mtime wins over this mount's pending one.
    Status committed = CommitWrites(server_ino, nullptr);
    if (!committed.ok() && committed.code() != EAGAIN && committed.code() != ENOENT) {
      return ReplyStatus(req, committed);
    }
  }
  request.set_valid(valid);
  pb::SetattrResponse response;
  Status status = client_.Meta(rpc::meta::kSetattr, request, &response);
  if (!status.ok()) return ReplyStatus(req, status);
  if (auto state = FindState(server_ino)) {
    std::lock_guard<std::mutex> lock(state->mutex);
    if (valid & pb::SETATTR_SIZE) {
      state->size = response.attr().size();
      state->dirty = false;
      state->data_epoch = response.attr().data_epoch();
    }
    if (!state->dirty) state->mtime_ns = response.attr().mtime_ns();
  }
  ReplyAttr(req, response.attr());
}

void FuseFs::Mknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
  pb::MknodRequest request;
  request.set_parent(ToServer(parent));
  request.set_name(name);
  request.set_mode(mode);
  request.set_rdev(rdev);
  *request.mutable_caller() = CallerOf(req);
  pb::MknodResponse response;
  BeginDirectoryChange({request.parent()});
  Status status = client_.Meta(rpc::meta::kMknod, request, &response);
  EndDirectoryChange(request.parent(), response.parent_attr());
  if (!status.ok()) return ReplyStatus(req, status);
  ReplyEntry(req, response.attr(), &response.layout());
}

void FuseFs::Mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  pb::MkdirRequest request;
  request.set_parent(ToServer(parent));
  request.set_name(name);
  request.set_mode(mode);
  *request.mutable_caller() = CallerOf(req);
  pb::MkdirResponse response;
  BeginDirectoryChange({request.parent()});
  Status status = client_.Meta(rpc::meta::kMkdir, request, &response);
  EndDirectoryChange(request.parent(), response.parent_attr());
  if (!status.ok()) return ReplyStatus(req, status);
  ReplyEntry(req, response.attr(), nullptr);
}

void FuseFs::Symlink(fuse_req_t req, const char* target, fuse_ino_t parent, const char* name) {
  pb::SymlinkRequest request;
  request.set_parent(ToServer(parent));
  request.set_name(name);
  request.set_target(target);
  *request.mutable_caller() = CallerOf(req);
  pb::SymlinkResponse response;
  BeginDirectoryChange({request.parent()});
  Status status = client_.Meta(rpc::meta::kSymlink, request, &response);
  EndDirectoryChange(request.parent(), response.parent_attr());
  if (!status.ok()) return ReplyStatus(req, status);
  ReplyEntry(req, response.attr(), nullptr);
}

void FuseFs::Link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t new_parent, const char* new_name) {
  pb::LinkRequest request;
  request.set_ino(ToServer(ino));
  request.set_new_parent(ToServer(new_parent));
  request.set_new_name(new_name);
  pb::LinkResponse response;
  BeginDirectoryChange({request.new_parent()});
  Status status = client_.Meta(rpc::meta::kLink, request, &response);
  EndDirectoryChange(request.new_parent(), response.parent_attr());
  if (!status.ok()) return ReplyStatus(req, status);
  ReplyEntry(req, response.attr(), &response.layout());
}

void FuseFs::Unlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  pb::UnlinkRequest request;
  request.set_parent(ToServer(parent));
  request.set_name(name);
  pb::UnlinkResponse response;
  BeginDirectoryChange({request.parent()});
  Status status = client_.Meta(rpc::meta::kUnlink, request, &response);
  EndDirectoryChange(request.parent(), response.parent_attr());
  ReplyStatus(req, status);
}

void FuseFs::Rmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  pb::RmdirRequest request;
  request.set_parent(ToServer(parent));
  request.set_name(name);
  pb::RmdirResponse response;
  BeginDirectoryChange({request.parent()});
  Status status = client_.Meta(rpc::meta::kRmdir, request, &response);
  ForgetRemovedDirectory(response.removed_dir());
  EndDirectoryChange(request.parent(), response.parent_attr());
  ReplyStatus(req, status);
}

void FuseFs::Rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t new_parent,
                    const char* new_name, unsigned int flags) {
  if (flags & ~(kLinuxRenameNoreplace | kLinuxRenameExchange)) {
    return ReplyStatus(req, Status(EINVAL, "unsupported rename flags"));
  }
  pb::RenameRequest request;
  request.set_parent(ToServer(parent));
  request.set_name(name);
  request.set_new_parent(ToServer(new_parent));
  request.set_new_name(new_name);
  uint32_t wire_flags = 0;
  if (flags & kLinuxRenameNoreplace) wire_flags |= pb::RENAME_FLAG_NOREPLACE;
  if (flags & kLinuxRenameExchange) wire_flags |= pb::RENAME_FLAG_EXCHANGE;
  request.set_flags(wire_flags);
  pb::RenameResponse response;
  BeginDirectoryChange({request.parent(), request.new_parent()});
  Status status = client_.Meta(rpc::meta::kRename, request, &response);
  ForgetRemovedDirectory(response.replaced_dir());
  EndDirectoryChange(request.parent(), response.parent_attr());
  if (request.new_parent() != request.parent()) {
    EndDirectoryChange(request.new_parent(), response.new_parent_attr());
  }
  ReplyStatus(req, status);
}

void FuseFs::Readlink(fuse_req_t req, fuse_ino_t ino) {
  pb::ReadlinkRequest request;
  request.set_ino(ToServer(ino));
  pb::ReadlinkResponse response;
  Status status = client_.Meta(rpc::meta::kReadlink, request, &response);
  if (!status.ok()) return ReplyStatus(req, status);
  fuse_reply_readlink(req, response.target().c_str());
}

// A directory handle keeps the listing's start (its seq limit) in the
// journal, so that entries renamed into the directory while it is read
// cannot keep the listing going, even across a change of daemon.
void FuseFs::Opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Result<uint64_t> handle = journal_.Add(ToServer(ino), HandleKind::kDirectory);
  if (!handle.ok()) return ReplyStatus(req, handle.status());
  fi->fh = *handle;
  if (fuse_reply_open(req, fi) != 0) journal_.Remove(*handle);
}

void FuseFs::Releasedir(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  journal_.Remove(fi->fh);
  fuse_reply_err(req, 0);
}

void FuseFs::Readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, fuse_file_info* fi,
                     bool plus) {
  HandleSlot* handle = journal_.Find(fi->fh);
  pb::ReaddirRequest request;
  request.set_ino(ToServer(ino));
  request.set_cookie(static_cast<uint64_t>(offset));
  request.set_max_entries(static_cast<uint32_t>(std::max<size_t>(8, size / (plus ? 96 : 24))));
  request.set_with_attrs(plus);
  if (handle && offset != 0) request.set_seq_limit(handle->value.load());
  pb::ReaddirResponse response;
  Status status = client_.Meta(rpc::meta::kReaddir, request, &response);
  if (!status.ok()) return ReplyStatus(req, status);
  if (handle && request.seq_limit() == 0) {
    // This call started the listing (or restarted it: rewinddir).
    handle->value.store(response.seq_limit());
  }
  std::vector<char> buffer(size);
  size_t used = 0;
  for (const pb::DirEntry& entry : response.entries()) {
    size_t room = size - used;
    size_t needed;
    bool dot = entry.name() == "." || entry.name() == "..";
    if (plus) {
      fuse_entry_param param =
          EntryParam(dot ? entry.attr() : Observe(entry.attr(), &entry.layout(), false));
      param.ino = ToKernel(entry.ino());
      needed = fuse_add_direntry_plus(req, buffer.data() + used, room, entry.name().c_str(), &param,
                                      static_cast<off_t>(entry.cookie()));
      if (needed > room) break;
      // The kernel takes a lookup reference for every entry but . and ..
      if (!dot) AddLookup(entry.ino());
    } else {
      struct stat st {};
      st.st_ino = entry.ino();
      st.st_mode = entry.type();
      needed = fuse_add_direntry(req, buffer.data() + used, room, entry.name().c_str(), &st,
                                 static_cast<off_t>(entry.cookie()));
      if (needed > room) break;
    }
    used += needed;
  }
  fuse_reply_buf(req, buffer.data(), used);
}

void FuseFs::Statfs(fuse_req_t req, fuse_ino_t ino) {
  pb::StatfsRequest request;
  request.set_ino(ToServer(ino));
  pb::StatfsResponse response;
  Status status = client_.Meta(rpc::meta::kStatfs, request, &response);
  if (!status.ok()) return ReplyStatus(req, status);
  struct statvfs st {};
  uint32_t block = response.block_size() ? response.block_size() : 4096;
  st.f_bsize = block;
  st.f_frsize = block;
  st.f_blocks = response.total_bytes() / block;
  st.f_bfree = response.free_bytes() / block;
  st.f_bavail = st.f_bfree;
  st.f_files = response.total_inodes();
  st.f_ffree = response.total_inodes() - response.used_inodes();
  st.f_favail = st.f_ffree;
  st.f_namemax = response.name_max();
  fuse_reply_statfs(req, &st);
}

void FuseFs::Access(fuse_req_t req, fuse_ino_t ino, int mask) {
  pb::GetattrRequest request;
  request.set_ino(ToServer(ino));
  pb::GetattrResponse response;
  Status status = client_.Meta(rpc::meta::kGetattr, request, &response);
  if (!status.ok()) return ReplyStatus(req, status);
  if (mask == F_OK) return ReplyStatus(req, Status::Ok());
  const fuse_ctx* ctx = fuse_req_ctx(req);
  uint32_t mode = response.attr().mode();
  if (ctx->uid == 0) {
    // Root may do anything but execute a file nobody may execute.
    bool exec_ok = !(mask & X_OK) || S_ISDIR(mode) || (mode & 0111);
    fuse_reply_err(req, exec_ok ? 0 : EACCES);
    return;
  }
  uint32_t granted;
  if (ctx->uid == response.attr().uid()) {
    granted = (mode >> 6) & 7;
  } else {
    bool in_group = ctx->gid == response.attr().gid();
    if (!in_group) {
      gid_t groups[64];
      int count = fuse_req_getgroups(req, 64, groups);
      for (int i = 0; i < count && i < 64; ++i)
        in_group = in_group || groups[i] == response.attr().gid();
    }
    granted = in_group ? (mode >> 3) & 7 : mode & 7;
  }
  fuse_reply_err(req, (static_cast<uint32_t>(mask) & ~granted) ? EACCES : 0);
}

}  // namespace sealfs::fuse
