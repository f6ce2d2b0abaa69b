// The operation table, per-inode state and reply helpers of FuseFs.
#include "fuse_fs.h"

#include <sys/stat.h>

#include <chrono>
#include <cstdio>

namespace sealfs::fuse {

namespace {
FuseFs* Fs(fuse_req_t req) { return static_cast<FuseFs*>(fuse_req_userdata(req)); }

timespec ToTimespec(int64_t ns) {
  timespec ts;
  ts.tv_sec = ns / 1'000'000'000;
  ts.tv_nsec = ns % 1'000'000'000;
  if (ts.tv_nsec < 0) {
    ts.tv_nsec += 1'000'000'000;
    --ts.tv_sec;
  }
  return ts;
}
}  // namespace

const fuse_lowlevel_ops& FuseFs::Operations() {
  static const fuse_lowlevel_ops ops = [] {
    fuse_lowlevel_ops o{};
    o.init = [](void* userdata, fuse_conn_info* conn) {
      static_cast<FuseFs*>(userdata)->Init(conn);
    };
    o.lookup = [](fuse_req_t r, fuse_ino_t p, const char* n) { Fs(r)->Lookup(r, p, n); };
    o.forget = [](fuse_req_t r, fuse_ino_t i, uint64_t n) {
      Fs(r)->Forget(i, n);
      fuse_reply_none(r);
    };
    o.forget_multi = [](fuse_req_t r, size_t count, fuse_forget_data* forgets) {
      for (size_t k = 0; k < count; ++k) Fs(r)->Forget(forgets[k].ino, forgets[k].nlookup);
      fuse_reply_none(r);
    };
    o.getattr = [](fuse_req_t r, fuse_ino_t i, fuse_file_info* f) { Fs(r)->Getattr(r, i, f); };
    o.setattr = [](fuse_req_t r, fuse_ino_t i, struct stat* a, int s, fuse_file_info* f) {
      Fs(r)->Setattr(r, i, a, s, f);
    };
    o.readlink = [](fuse_req_t r, fuse_ino_t i) { Fs(r)->Readlink(r, i); };
    o.mknod = [](fuse_req_t r, fuse_ino_t p, const char* n, mode_t m, dev_t d) {
      Fs(r)->Mknod(r, p, n, m, d);
    };
    o.mkdir = [](fuse_req_t r, fuse_ino_t p, const char* n, mode_t m) { Fs(r)->Mkdir(r, p, n, m); };
    o.unlink = [](fuse_req_t r, fuse_ino_t p, const char* n) { Fs(r)->Unlink(r, p, n); };
    o.rmdir = [](fuse_req_t r, fuse_ino_t p, const char* n) { Fs(r)->Rmdir(r, p, n); };
    o.symlink = [](fuse_req_t r, const char* t, fuse_ino_t p, const char* n) {
      Fs(r)->Symlink(r, t, p, n);
    };
    o.rename = [](fuse_req_t r, fuse_ino_t p, const char* n, fuse_ino_t np, const char* nn,
                  unsigned int f) { Fs(r)->Rename(r, p, n, np, nn, f); };
    o.link = [](fuse_req_t r, fuse_ino_t i, fuse_ino_t p, const char* n) {
      Fs(r)->Link(r, i, p, n);
    };
    o.open = [](fuse_req_t r, fuse_ino_t i, fuse_file_info* f) { Fs(r)->Open(r, i, f); };
    o.read = [](fuse_req_t r, fuse_ino_t i, size_t s, off_t o2, fuse_file_info* f) {
      Fs(r)->Read(r, i, s, o2, f);
    };
    o.write_buf = [](fuse_req_t r, fuse_ino_t i, fuse_bufvec* b, off_t o2, fuse_file_info* f) {
      Fs(r)->WriteBuf(r, i, b, o2, f);
    };
    o.flush = [](fuse_req_t r, fuse_ino_t i, fuse_file_info* f) { Fs(r)->Flush(r, i, f); };
    o.release = [](fuse_req_t r, fuse_ino_t i, fuse_file_info* f) { Fs(r)->Release(r, i, f); };
    o.fsync = [](fuse_req_t r, fuse_ino_t i, int d, fuse_file_info* f) {
      Fs(r)->Fsync(r, i, d, f);
    };
    o.opendir = [](fuse_req_t r, fuse_ino_t i, fuse_file_info* f) { Fs(r)->Opendir(r, i, f); };
    o.readdir = [](fuse_req_t r, fuse_ino_t i, size_t s, off_t o2, fuse_file_info* f) {
      Fs(r)->Readdir(r, i, s, o2, f, false);
    };
    o.readdirplus = [](fuse_req_t r, fuse_ino_t i, size_t s, off_t o2, fuse_file_info* f) {
      Fs(r)->Readdir(r, i, s, o2, f, true);
    };
    o.releasedir = [](fuse_req_t r, fuse_ino_t i, fuse_file_info* f) {
      Fs(r)->Releasedir(r, i, f);
    };
    // Metadata is durable when each call returns, so there is nothing to sync.
    o.fsyncdir = [](fuse_req_t r, fuse_ino_t, int, fuse_file_info*) { fuse_reply_err(r, 0); };
    o.statfs = [](fuse_req_t r, fuse_ino_t i) { Fs(r)->Statfs(r, i); };
    o.setxattr = [](fuse_req_t r, fuse_ino_t i, const char* n, const char* v, size_t s, int f) {
      Fs(r)->Setxattr(r, i, n, v, s, f);
    };
    o.getxattr = [](fuse_req_t r, fuse_ino_t i, const char* n, size_t s) {
      Fs(r)->Getxattr(r, i, n, s);
    };
    o.listxattr = [](fuse_req_t r, fuse_ino_t i, size_t s) { Fs(r)->Listxattr(r, i, s); };
    o.removexattr = [](fuse_req_t r, fuse_ino_t i, const char* n) { Fs(r)->Removexattr(r, i, n); };
    o.access = [](fuse_req_t r, fuse_ino_t i, int m) { Fs(r)->Access(r, i, m); };
    o.create = [](fuse_req_t r, fuse_ino_t p, const char* n, mode_t m, fuse_file_info* f) {
      Fs(r)->Create(r, p, n, m, f);
    };
    o.fallocate = [](fuse_req_t r, fuse_ino_t i, int m, off_t o2, off_t l, fuse_file_info* f) {
      Fs(r)->Fallocate(r, i, m, o2, l, f);
    };
    // getlk/setlk/flock are left unset on purpose: the kernel then keeps POSIX
    // and BSD locks itself, which is exact within one mount.
    return o;
  }();
  return ops;
}

std::shared_ptr<InodeState> FuseFs::State(uint64_t ino) {
  std::lock_guard<std::mutex> lock(table_mutex_);
  auto& state = inodes_[ino];
  if (!state) state = std::make_shared<InodeState>();
  return state;
}

std::shared_ptr<InodeState> FuseFs::FindState(uint64_t ino) {
  std::lock_guard<std::mutex> lock(table_mutex_);
  auto found = inodes_.find(ino);
  return found == inodes_.end() ? nullptr : found->second;
}

int64_t FuseFs::SteadyNowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void FuseFs::BeginDirectoryChange(std::initializer_list<uint64_t> dirs) {
  for (const uint64_t* dir = dirs.begin(); dir != dirs.end(); ++dir) {
    if (dir != dirs.begin() && *dir == *dirs.begin()) continue;  // a rename within one directory
    auto state = State(*dir);
    std::lock_guard<std::mutex> lock(state->mutex);
    if (state->changes_in_flight++ > 0) state->changes_overlapped = true;
    state->attr_known_until_ns = 0;
  }
}

void FuseFs::EndDirectoryChange(uint64_t dir, const pb::Attr& after) {
  auto state = State(dir);
  std::lock_guard<std::mutex> lock(state->mutex);
  if (state->changes_in_flight > 0) --state->changes_in_flight;
  if (state->changes_in_flight > 0) return;
  if (!state->changes_overlapped && !state->removed && after.ino() == dir &&
      S_ISDIR(after.mode())) {
    state->directory_attr = after;
    state->attr_known_until_ns = SteadyNowNs() + AttrTimeoutNs();
  }
  state->changes_overlapped = false;
}

void FuseFs::ForgetRemovedDirectory(uint64_t dir) {
  if (dir == 0) return;
  auto state = FindState(dir);
  if (!state) return;  // never seen here: nothing known of it
  std::lock_guard<std::mutex> lock(state->mutex);
  state->removed = true;
  state->attr_known_until_ns = 0;
}

bool FuseFs::ReplyKnownDirectoryAttr(fuse_req_t req, uint64_t ino) {
  auto state = FindState(ino);
  if (!state) return false;
  struct stat st {};
  double timeout = 0;
  {
    std::lock_guard<std::mutex> lock(state->mutex);
    int64_t left_ns = state->attr_known_until_ns - SteadyNowNs();
    if (left_ns <= 0 || !state->directory_attr || state->removed) return false;
    st = ToStat(*state->directory_attr);
    timeout = static_cast<double>(left_ns) / 1e9;
  }
  fuse_reply_attr(req, &st, timeout);
  return true;
}

pb::Attr FuseFs::Observe(const pb::Attr& attr, const pb::Layout* layout, bool lookup) {
  auto state = State(attr.ino());
  pb::Attr shown = attr;
  std::lock_guard<std::mutex> lock(state->mutex);
  if (layout && layout->chains_size() > 0) state->layout = *layout;
  state->data_epoch = attr.data_epoch();
  if (S_ISDIR(attr.mode())) {
    state->directory_attr = attr;    // copied in place
    state->attr_known_until_ns = 0;  // of unknown age: the kernel's getattr asks
  }
  state->no_xattrs_until_ns =
      attr.has_xattrs() && attr.xattrs() == 0 ? SteadyNowNs() + AttrTimeoutNs() : 0;
  if (state->dirty) {
    // This mount's writes are newer than what the server has recorded.
    state->size = std::max(state->size, attr.size());
    shown.set_size(state->size);
    shown.set_mtime_ns(state->mtime_ns);
  } else {
    state->size = attr.size();
    state->mtime_ns = attr.mtime_ns();
  }
  if (lookup) ++state->lookups;
  state->kernel_size = shown.size();
  state->kernel_mtime_ns = shown.mtime_ns();
  return shown;
}

void FuseFs::AddLookup(uint64_t ino) {
  auto state = State(ino);
  std::lock_guard<std::mutex> lock(state->mutex);
  ++state->lookups;
}

void FuseFs::Forget(fuse_ino_t ino, uint64_t nlookup) {
  uint64_t server_ino = ToServer(ino);
  std::lock_guard<std::mutex> lock(table_mutex_);
  auto found = inodes_.find(server_ino);
  if (found == inodes_.end()) return;
  InodeState& state = *found->second;
  std::lock_guard<std::mutex> state_lock(state.mutex);
  state.lookups = state.lookups > nlookup ? state.lookups - nlookup : 0;
  if (state.lookups == 0 && state.opens == 0 && !state.dirty) inodes_.erase(found);
}

struct stat FuseFs::ToStat(const pb::Attr& attr) const {
  struct stat st {};
  st.st_ino = attr.ino();
  st.st_mode = attr.mode();
  st.st_nlink = attr.nlink();
  st.st_uid = attr.uid();
  st.st_gid = attr.gid();
  st.st_rdev = attr.rdev();
  st.st_size = static_cast<off_t>(attr.size());
  st.st_blksize = 65536;
  // What the data servers store, so holes in sparse files show as holes.
  // Not known: count the file as fully stored, never as one big hole (which
  // would make backup tools store zeros for its data).
  st.st_blocks =
      static_cast<blkcnt_t>(attr.has_blocks() ? attr.blocks() : (attr.size() + 511) / 512);
  st.st_atim = ToTimespec(attr.atime_ns());
  st.st_mtim = ToTimespec(attr.mtime_ns());
  st.st_ctim = ToTimespec(attr.ctime_ns());
  return st;
}

void FuseFs::ReplyEntry(fuse_req_t req, const pb::Attr& attr, const pb::Layout* layout) {
  fuse_entry_param entry = EntryParam(Observe(attr, layout, /*lookup=*/true));
  fuse_reply_entry(req, &entry);
}

fuse_entry_param FuseFs::EntryParam(const pb::Attr& shown) const {
  fuse_entry_param entry{};
  entry.ino = ToKernel(shown.ino());
  entry.generation = 1;
  entry.attr = ToStat(shown);
  entry.attr_timeout = options_.attr_timeout;
  entry.entry_timeout = options_.entry_timeout;
  return entry;
}

void FuseFs::ReplyAttr(fuse_req_t req, const pb::Attr& attr, const pb::Layout* layout) {
  struct stat st = ToStat(Observe(attr, layout, /*lookup=*/false));
  fuse_reply_attr(req, &st, options_.attr_timeout);
}

void FuseFs::ReplyStatus(fuse_req_t req, const Status& raw) {
  // Transport failures reach applications as EIO; the log keeps the detail.
  Status status = client::ToFileError(raw);
  if (!status.ok() && (status.code() == EIO || status.code() == ENOSPC)) {
    std::fprintf(stderr, "sealfs-fuse: %s\n", status.ToString().c_str());
  }
  fuse_reply_err(req, status.ok() ? 0 : status.code());
}

pb::Caller FuseFs::CallerOf(fuse_req_t req) {
  const fuse_ctx* ctx = fuse_req_ctx(req);
  pb::Caller caller;
  caller.set_uid(ctx->uid);
  caller.set_gid(ctx->gid);
  caller.set_umask(ctx->umask);
  return caller;
}

}  // namespace sealfs::fuse
