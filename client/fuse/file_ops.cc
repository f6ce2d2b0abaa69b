// File I/O: create, open, read, write, flush, fsync, release, fallocate.
//
// Writes go straight to the data servers; the new size and mtime stay in this
// mount's InodeState until flush/fsync/release/getattr commits them to the
// metadata server, which gives close-to-open consistency between mounts.
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include "fuse_fs.h"
#include "sealfs/rpc/limits.h"

namespace sealfs::fuse {

namespace {
int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}
}  // namespace

void FuseFs::NoteWritten(InodeState& state, uint64_t end, int64_t allocated_delta) {
  // The first uncommitted write remembers which truncates it came after.
  if (!state.dirty) state.write_epoch = state.data_epoch;
  state.allocated_delta += allocated_delta;
  state.size = std::max(state.size, end);
  state.mtime_ns = NowNs();
  state.dirty = true;
}

Result<pb::GetattrResponse> FuseFs::Refresh(uint64_t ino) {
  pb::GetattrRequest request;
  request.set_ino(ino);
  pb::GetattrResponse response;
  Status status = client_.Meta(rpc::meta::kGetattr, request, &response);
  if (!status.ok()) return status;
  Observe(response.attr(), &response.layout(), /*lookup=*/false);
  return response;
}

Result<pb::Layout> FuseFs::LayoutOf(uint64_t ino) {
  auto state = State(ino);
  {
    std::lock_guard<std::mutex> lock(state->mutex);
    if (state->layout.chains_size() > 0) return state->layout;
  }
  Result<pb::GetattrResponse> fresh = Refresh(ino);
  if (!fresh.ok()) return fresh.status();
  return fresh->layout();
}

void FuseFs::Create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
                    fuse_file_info* fi) {
  BeginDirectoryChange({ToServer(parent)});
  auto created =
      client_.CreateAndOpen(ToServer(parent), name, S_IFREG | (mode & 07777), CallerOf(req));
  EndDirectoryChange(ToServer(parent), created.ok() ? created->parent_attr() : pb::Attr{});
  if (!created.ok()) return ReplyStatus(req, created.status());
  const pb::Attr& attr = created->attr();
  fuse_entry_param entry = EntryParam(Observe(attr, &created->layout(), /*lookup=*/true));
  Result<uint64_t> handle =
      journal_.Add(attr.ino(), (fi->flags & O_ACCMODE) != O_RDONLY ? HandleKind::kFileWrite
                                                                   : HandleKind::kFileRead);
  if (!handle.ok()) {
    client_.Close(attr.ino());
    return ReplyStatus(req, handle.status());
  }
  auto state = State(attr.ino());
  {
    std::lock_guard<std::mutex> lock(state->mutex);
    ++state->opens;
    state->handles.push_back(*handle);
  }
  fi->fh = *handle;
  // The opener went away (interrupted): drop the open just taken.
  if (fuse_reply_create(req, &entry, fi) != 0) DropHandle(attr.ino(), *handle);
}

void FuseFs::Open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  uint64_t server_ino = ToServer(ino);
  bool write = (fi->flags & O_ACCMODE) != O_RDONLY;
  auto opened = client_.Open(server_ino, write);
  if (!opened.ok()) return ReplyStatus(req, opened.status());
  const pb::Attr& attr = opened->attr();
  if (!S_ISREG(attr.mode())) {
    client_.Close(server_ino);
    return ReplyStatus(req, Status(EINVAL, "not a regular file"));
  }
  Result<uint64_t> handle =
      journal_.Add(server_ino, write ? HandleKind::kFileWrite : HandleKind::kFileRead);
  if (!handle.ok()) {
    client_.Close(server_ino);
    return ReplyStatus(req, handle.status());
  }
  auto state = State(server_ino);
  bool changed;
  {
    std::lock_guard<std::mutex> lock(state->mutex);
    if (opened->layout().chains_size() > 0) state->layout = opened->layout();
    ++state->opens;
    state->handles.push_back(*handle);
    state->data_epoch = attr.data_epoch();
    if (!state->dirty) {
      state->size = attr.size();
      state->mtime_ns = attr.mtime_ns();
    }
    changed = !state->dirty &&
              (attr.size() != state->kernel_size || attr.mtime_ns() != state->kernel_mtime_ns);
  }
  if (changed && session_ != nullptr) {
    // Another client changed the file since the kernel cached its attributes:
    // make the kernel fetch them again (close-to-open).
    fuse_lowlevel_notify_inval_inode(session_, ino, -1, 0);
  }
  fi->keep_cache = changed ? 0 : 1;
  fi->fh = *handle;
  if (fuse_reply_open(req, fi) != 0) DropHandle(server_ino, *handle);
}

void FuseFs::Read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, fuse_file_info*) {
  uint64_t server_ino = ToServer(ino);
  auto state = State(server_ino);
  pb::Layout layout;
  uint64_t file_size;
  {
    std::lock_guard<std::mutex> lock(state->mutex);
    layout = state->layout;
    file_size = state->size;
  }
  if (offset < 0) return ReplyStatus(req, Status(EINVAL, "negative offset"));
  uint64_t start = static_cast<uint64_t>(offset);
  if (start >= file_size || size == 0) {
    fuse_reply_buf(req, nullptr, 0);
    return;
  }
  size_t length = static_cast<size_t>(std::min<uint64_t>(size, file_size - start));
  // Client::Read fills every byte (zeros for holes): no need to clear first.
  std::unique_ptr<char[]> buffer(new char[length]);
  Status status = client_.Read(server_ino, layout, start, length, buffer.get());
  if (!status.ok()) return ReplyStatus(req, status);
  fuse_reply_buf(req, buffer.get(), length);
}

void FuseFs::WriteBuf(fuse_req_t req, fuse_ino_t ino, fuse_bufvec* bufs, off_t offset,
                      fuse_file_info* fi) {
  uint64_t server_ino = ToServer(ino);
  if (offset < 0) return ReplyStatus(req, Status(EINVAL, "negative offset"));
  size_t size = fuse_buf_size(bufs);
  std::string_view data;
  std::string copied;
  if (bufs->count == 1 && !(bufs->buf[0].flags & FUSE_BUF_IS_FD)) {
    data = std::string_view(static_cast<const char*>(bufs->buf[0].mem), size);
  } else {
    copied.resize(size);
    fuse_bufvec destination = FUSE_BUFVEC_INIT(size);
    destination.buf[0].mem = copied.data();
    ssize_t got = fuse_buf_copy(&destination, bufs, static_cast<fuse_buf_copy_flags>(0));
    if (got < 0) return ReplyStatus(req, Status(static_cast<int>(-got), "reading write data"));
    copied.resize(static_cast<size_t>(got));
    data = copied;
  }
  // Like a local file system at its size limit: write what fits, and EFBIG
  // only when nothing does.
  if (static_cast<uint64_t>(offset) >= kMaxFileSize && !data.empty()) {
    return ReplyStatus(req, Status(EFBIG, "write beyond the largest file size"));
  }
  data = data.substr(0, std::min<uint64_t>(data.size(), kMaxFileSize - offset));
  uint64_t end = static_cast<uint64_t>(offset) + data.size();
  auto state = State(server_ino);
  pb::Layout layout;
  {
    std::lock_guard<std::mutex> lock(state->mutex);
    layout = state->layout;
  }
  // Noted before the data goes out, so a successor of a daemon that dies
  // mid-write still asks the servers how far the data got.
  NoteUncommittedEnd(fi->fh, end);
  int64_t allocated_delta = 0;
  Status status =
      client_.Write(server_ino, layout, static_cast<uint64_t>(offset), data, &allocated_delta);
  {
    std::lock_guard<std::mutex> lock(state->mutex);
    if (status.ok()) {
      NoteWritten(*state, end, allocated_delta);
      // Again under the lock: a commit that cleared the note meanwhile did
      // not include this write.
      NoteUncommittedEnd(fi->fh, end);
    } else {
      state->allocated_delta += allocated_delta;  // pieces that did land
    }
  }
  if (!status.ok()) return ReplyStatus(req, status);
  fuse_reply_write(req, data.size());
}

void FuseFs::Flush(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  Status status = CommitWrites(ToServer(ino), nullptr);
  if (status.code() == EAGAIN || status.code() == ENOENT) status = Status::Ok();
  ReplyStatus(req, status);
}

void FuseFs::Release(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  uint64_t server_ino = ToServer(ino);
  Status status = CommitWrites(server_ino, nullptr);
  if (status.code() == EAGAIN || status.code() == ENOENT) status = Status::Ok();
  Status closed = DropHandle(server_ino, fi->fh);
  ReplyStatus(req, status.ok() ? closed : status);
}

Status FuseFs::DropHandle(uint64_t server_ino, uint64_t fh) {
  if (auto state = FindState(server_ino)) {
    std::lock_guard<std::mutex> lock(state->mutex);
    if (state->opens > 0) --state->opens;
    std::erase(state->handles, fh);
  }
  journal_.Remove(fh);
  return client_.Close(server_ino);
}

void FuseFs::Fsync(fuse_req_t req, fuse_ino_t ino, int, fuse_file_info*) {
  uint64_t server_ino = ToServer(ino);
  // The data may have been written through another mount, or this mount may
  // have dropped the file's state: sync whatever the servers hold.
  Result<pb::Layout> layout = LayoutOf(server_ino);
  if (!layout.ok()) return ReplyStatus(req, layout.status());
  if (layout->chains_size() > 0) {
    Status synced = client_.FsyncData(server_ino, *layout);
    if (!synced.ok()) return ReplyStatus(req, synced);
  }
  Status status = CommitWrites(server_ino, nullptr, /*durable=*/true);
  // Nothing of this mount's to commit: the size may still have been
  // committed unsynced by another mount, so make the server sync.
  if (status.code() == EAGAIN || status.code() == ENOENT) status = client_.SyncMeta();
  ReplyStatus(req, status);
}

void FuseFs::Fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
                       fuse_file_info*) {
  if (offset < 0 || length <= 0) return ReplyStatus(req, Status(EINVAL, "bad range"));
  constexpr int kKnown = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE;
  if (mode & ~kKnown) return ReplyStatus(req, Status(EOPNOTSUPP, "unsupported fallocate mode"));
  const bool punch = mode & FALLOC_FL_PUNCH_HOLE;
  const bool zero = mode & FALLOC_FL_ZERO_RANGE;
  const bool keep_size = mode & FALLOC_FL_KEEP_SIZE;
  if ((punch && (!keep_size || zero))) {
    return ReplyStatus(req, Status(EOPNOTSUPP, "punch-hole needs KEEP_SIZE, alone"));
  }
  uint64_t start = static_cast<uint64_t>(offset);
  uint64_t end = start + static_cast<uint64_t>(length);
  if (end > kMaxFileSize || end < start) {
    return ReplyStatus(req, Status(EFBIG, "beyond the largest file size"));
  }
  uint64_t server_ino = ToServer(ino);
  // Earlier writes commit first: the servers decide on the size as it is.
  Status pending = CommitWrites(server_ino, nullptr);
  if (!pending.ok() && pending.code() != EAGAIN && pending.code() != ENOENT) {
    return ReplyStatus(req, pending);
  }
  Result<pb::GetattrResponse> fresh = Refresh(server_ino);
  if (!fresh.ok()) return ReplyStatus(req, fresh.status());
  if (punch || zero) {
    // Bytes inside the file become zeros, written like any data (so every
    // replica and checksum agrees); past the end they read as zeros anyway.
    uint64_t zero_end = std::min(end, fresh->attr().size());
    Status zeroed = WriteZeros(server_ino, fresh->layout(), start, zero_end);
    if (!zeroed.ok()) return ReplyStatus(req, zeroed);
    if (punch || (keep_size && zero_end == end)) return ReplyStatus(req, Status::Ok());
  }
  // The metadata server reserves quota for the range (EDQUOT) and grows
  // the size unless KEEP_SIZE.
  pb::FallocateRequest request;
  request.set_ino(server_ino);
  request.set_mode(keep_size ? FALLOC_FL_KEEP_SIZE : 0);
  request.set_offset(start);
  request.set_length(end - start);
  pb::FallocateResponse response;
  Status status = client_.Meta(rpc::meta::kFallocate, request, &response);
  if (!status.ok()) return ReplyStatus(req, status);
  auto state = State(server_ino);
  {
    std::lock_guard<std::mutex> lock(state->mutex);
    state->size = std::max(state->size, response.attr().size());
  }
  ReplyStatus(req, Status::Ok());
}

Status FuseFs::WriteZeros(uint64_t server_ino, const pb::Layout& layout, uint64_t start,
                          uint64_t end) {
  constexpr uint64_t kPiece = 1u << 20;
  static const std::string zeros(kPiece, '\0');
  while (start < end) {
    uint64_t length = std::min(kPiece, end - start);
    int64_t allocated = 0;
    SEALFS_RETURN_IF_ERROR(client_.Write(server_ino, layout, start,
                                         std::string_view(zeros.data(), length), &allocated));
    auto state = State(server_ino);
    {
      std::lock_guard<std::mutex> lock(state->mutex);
      NoteWritten(*state, start + length, allocated);
    }
    start += length;
  }
  Status committed = CommitWrites(server_ino, nullptr);
  return committed.code() == EAGAIN ? Status::Ok() : committed;
}

}  // namespace sealfs::fuse
