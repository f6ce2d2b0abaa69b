// FuseFs: the FUSE low-level file system over libsealfs. Per-inode state lives
// in one table; every operation answers through the Reply* helpers, which
// turn a Status into fuse_reply_err so no path can forget to reply.
#pragma once

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "handle_journal.h"
#include "sealfs/client/client.h"

namespace sealfs::fuse {

struct FuseOptions {
  double attr_timeout = 1.0;
  double entry_timeout = 1.0;
};

// What this mount knows of one inode beyond what the kernel caches.
struct InodeState {
  std::mutex mutex;
  pb::Layout layout;
  uint64_t size = 0;  // size including this mount's uncommitted writes
  int64_t mtime_ns = 0;
  bool dirty = false;           // written here, size/mtime not yet committed
  bool unsynced = false;        // committed without sync since the last fsync
  uint64_t data_epoch = 0;      // the file's truncate count, as last seen
  uint64_t write_epoch = 0;     // data_epoch when the uncommitted writes began
  int64_t allocated_delta = 0;  // disk space the uncommitted writes added
  uint64_t lookups = 0;         // the kernel's lookup count (forget lowers it)
  int opens = 0;
  std::vector<uint64_t> handles;  // this mount's open file handles of the inode
  // The kernel asks for security.capability before every write; a recent
  // "none" answer is kept until this time (steady clock, ns).
  int64_t no_capability_until_ns = 0;
  // The server said the inode has no extended attributes at all: getxattr
  // and listxattr answer so until this time (`ls -l` asks for two on every
  // file), as long as attributes are trusted.
  int64_t no_xattrs_until_ns = 0;
  // What the kernel was last told, to notice changes made by other clients.
  uint64_t kernel_size = 0;
  int64_t kernel_mtime_ns = 0;
  // Directories: the last attributes seen, for fstat on a descriptor of a
  // directory removed meanwhile (link count 0, like any removed directory).
  std::optional<pb::Attr> directory_attr;
  // Directories: this mount's changes in flight in it, whether two of them
  // overlapped, and until when the attributes the server sent back with the
  // last one answer the kernel's getattr (it asks after every change).
  int changes_in_flight = 0;
  bool changes_overlapped = false;
  int64_t attr_known_until_ns = 0;
  // Directories: removed by this mount (rmdir, or replaced by a rename): its
  // attributes are never known again (inode numbers are not reused).
  bool removed = false;
};

class FuseFs {
 public:
  // Open files and directories are recorded in `journal`, which outlives
  // this daemon when a keeper holds it.
  FuseFs(client::Client& client, FuseOptions options, HandleJournal& journal)
      : client_(client), options_(options), journal_(journal) {}

  static const fuse_lowlevel_ops& Operations();
  void set_session(fuse_session* session) { session_ = session; }

  // ---- handle_recovery.cc
  // Takes over the handles a dead predecessor left in the journal: opens
  // their files again under this daemon's session and commits the size of
  // writes it had not committed. Returns how many handles were taken over.
  size_t AdoptHandles();

  // ---- namespace_ops.cc
  void Init(fuse_conn_info* conn);
  void Lookup(fuse_req_t req, fuse_ino_t parent, const char* name);
  void Forget(fuse_ino_t ino, uint64_t nlookup);
  void Getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  void Setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info* fi);
  void Mknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev);
  void Mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode);
  void Unlink(fuse_req_t req, fuse_ino_t parent, const char* name);
  void Rmdir(fuse_req_t req, fuse_ino_t parent, const char* name);
  void Symlink(fuse_req_t req, const char* target, fuse_ino_t parent, const char* name);
  void Readlink(fuse_req_t req, fuse_ino_t ino);
  void Rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t new_parent,
              const char* new_name, unsigned int flags);
  void Link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t new_parent, const char* new_name);
  void Opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  void Readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, fuse_file_info* fi,
               bool plus);
  void Releasedir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  void Statfs(fuse_req_t req, fuse_ino_t ino);
  void Access(fuse_req_t req, fuse_ino_t ino, int mask);

  // ---- file_ops.cc
  void Create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, fuse_file_info* fi);
  void Open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  void Read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, fuse_file_info* fi);
  void WriteBuf(fuse_req_t req, fuse_ino_t ino, fuse_bufvec* bufs, off_t offset,
                fuse_file_info* fi);
  void Flush(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  void Release(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  void Fsync(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi);
  // Writes zeros over [start, end) of the file (punch-hole, zero-range).
  Status WriteZeros(uint64_t server_ino, const pb::Layout& layout, uint64_t start, uint64_t end);
  void Fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
                 fuse_file_info* fi);

  // ---- xattr_ops.cc
  void Setxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size,
                int flags);
  void Getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size);
  void Listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);
  void Removexattr(fuse_req_t req, fuse_ino_t ino, const char* name);

 private:
  // Kernel node id <-> server inode id: only the root differs.
  uint64_t ToServer(fuse_ino_t ino) const { return ino == FUSE_ROOT_ID ? client_.root_ino() : ino; }
  fuse_ino_t ToKernel(uint64_t ino) const { return ino == client_.root_ino() ? FUSE_ROOT_ID : ino; }

  std::shared_ptr<InodeState> State(uint64_t ino);
  std::shared_ptr<InodeState> FindState(uint64_t ino);
  // Records attributes from the server and returns what the kernel should be
  // shown: this mount's unwritten size and mtime win. Optionally counts a
  // kernel lookup reference.
  pb::Attr Observe(const pb::Attr& attr, const pb::Layout* layout, bool lookup);
  static int64_t SteadyNowNs();
  int64_t AttrTimeoutNs() const { return static_cast<int64_t>(options_.attr_timeout * 1e9); }
  // Around a change this mount makes in directories: the attributes the
  // server returned with it answer the kernel's next getattr, unless another
  // change overlapped it (its attributes could then be older than the other's).
  void BeginDirectoryChange(std::initializer_list<uint64_t> dirs);
  void EndDirectoryChange(uint64_t dir, const pb::Attr& after);
  // Answers a getattr of a directory from its known attributes, if recent.
  bool ReplyKnownDirectoryAttr(fuse_req_t req, uint64_t ino);
  // This mount removed the directory: its known attributes are not used
  // (a removed directory shows no links at once).
  void ForgetRemovedDirectory(uint64_t dir);
  // Whether the server recently said the inode has no extended attributes.
  bool KnownWithoutXattrs(uint64_t ino);
  // This mount changes the inode's extended attributes: forget what it knew
  // of them and of its attributes.
  void ForgetXattrsKnown(uint64_t ino, bool capability);
  void AddLookup(uint64_t ino);
  // Commits this mount's writes to the file's size and mtime.
  Status CommitWrites(uint64_t ino, pb::Attr* attr, bool durable = false);
  // Marks the file as written here up to `end` (caller holds state.mutex).
  static void NoteWritten(InodeState& state, uint64_t end, int64_t allocated_delta = 0);
  // Fetches the inode's attributes and layout from the server into this
  // mount's state (Observe).
  Result<pb::GetattrResponse> Refresh(uint64_t ino);
  // The file's layout, from this mount's state or else from the server.
  Result<pb::Layout> LayoutOf(uint64_t ino);

  struct stat ToStat(const pb::Attr& attr) const;
  void ReplyEntry(fuse_req_t req, const pb::Attr& attr, const pb::Layout* layout);
  fuse_entry_param EntryParam(const pb::Attr& shown) const;
  void ReplyAttr(fuse_req_t req, const pb::Attr& attr, const pb::Layout* layout = nullptr);
  static void ReplyStatus(fuse_req_t req, const Status& status);
  static pb::Caller CallerOf(fuse_req_t req);

  // Records that writes through handle `fh` reach `end` and are not yet
  // committed, and forgets it again once they are.
  void NoteUncommittedEnd(uint64_t fh, uint64_t end);
  // Forgets an open file handle: the kernel released it (or never got it).
  Status DropHandle(uint64_t server_ino, uint64_t fh);
  void ClearUncommittedEnds(InodeState& state);

  client::Client& client_;
  FuseOptions options_;
  HandleJournal& journal_;
  fuse_session* session_ = nullptr;
  std::mutex table_mutex_;
  std::unordered_map<uint64_t, std::shared_ptr<InodeState>> inodes_;
};

}  // namespace sealfs::fuse
