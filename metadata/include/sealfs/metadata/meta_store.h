// MetaStore: one metadata shard's namespace on RocksDB.
//
// Column families:
//   inodes   : ino (8 bytes, big-endian)            -> pb::Inode
//   dentries : parent ino + name                    -> child ino, type, sequence
//   dirindex : parent ino + sequence                -> child ino, type, name
//   xattrs   : ino + name                           -> value
//   service  : volumes, data servers, orphans, pending chunk removals
//
// Inode ids carry their shard in the high 16 bits. A directory listing walks
// dirindex in sequence order, so a readdir cookie (the sequence) stays valid
// while entries are added and removed. Every mutation is one WriteBatch,
// written with sync before the call returns.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "meta.pb.h"
#include "sealfs/metadata/request_log.h"
#include "sealfs/rpc/limits.h"
#include "sealfs/rpc/status.h"
#include "shard.pb.h"

namespace rocksdb {
class DB;
class Env;
class Iterator;
class ColumnFamilyHandle;
class WriteBatch;
}  // namespace rocksdb

namespace sealfs::metadata {

class QuotaBook;
class UsageChanges;
struct NamespaceFacts;
struct Finding;
struct InheritedAcls;

inline constexpr size_t kNameMax = 255;
inline constexpr size_t kSymlinkMax = 4095;
inline constexpr size_t kXattrNameMax = 255;
inline constexpr size_t kXattrValueMax = 65536;
inline constexpr uint32_t kDefaultChunkSize = 4u << 20;
// A file stripes over at most this many chains.
inline constexpr size_t kMaxStripeWidth = 16;
// Volume names: paths of components, long enough for tenants/NAMESPACE/NAME
// with a CSI volume name of up to 128 characters.
inline constexpr size_t kMaxVolumeNameBytes = 255;
inline constexpr int kShardBits = 48;
// With chunks of at least kMinChunkSize, every chunk index of a file up to
// kMaxFileSize fits in 32 bits.
inline constexpr uint32_t kMinChunkSize = 256u << 10;
static_assert(kMaxFileSize / kMinChunkSize <= (uint64_t{1} << 32));
inline constexpr uint32_t kReaddirMaxEntries = 65536;
inline constexpr size_t kReaddirReplyBytes = 1u << 20;

inline uint32_t ShardOf(uint64_t ino) { return static_cast<uint32_t>(ino >> kShardBits); }

struct MetaStoreOptions {
  std::string path;
  uint32_t shard = 0;
  uint32_t chunk_size = kDefaultChunkSize;
  // The file system RocksDB runs on (tests inject I/O errors); default: the OS.
  rocksdb::Env* env = nullptr;
};

// Who changes an xattr, when the client says: setting an access ACL keeps
// the setgid bit only for root and members of the file's group.
struct XattrCaller {
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::vector<uint32_t> groups;  // supplementary groups
};

// What an unlink or a replacing rename did to the inode that lost a name.
struct Unlinked {
  pb::Inode inode;
  bool orphaned = false;  // nlink reached 0 but the file is open: kept until closed
  bool freed = false;     // inode removed; its chunks are queued for removal
};

// Quota a new file reserves for writing (see MetaStore::Reserve), held
// until until_ns (wall clock).
struct Reservation {
  uint64_t end = 0;
  int64_t until_ns = 0;
};

class MetaStore {
 public:
  // Tells whether any client holds the file open.
  using OpenCheck = std::function<bool(uint64_t ino)>;
  // Runs after a create committed, before the new name can be removed.
  using OnCreated = std::function<void(uint64_t ino)>;

  // The on-disk layout this code reads, recorded in the store. A store of
  // another version is refused at Open with ENOTSUP and a message naming it.
  // Format 2: layouts name chains of the chain table (format 1 named servers).
  static constexpr uint64_t kFormatVersion = 2;
  static Result<std::unique_ptr<MetaStore>> Open(const MetaStoreOptions& options);
  ~MetaStore();

  // ---- namespace
  Result<pb::Inode> Lookup(uint64_t parent, const std::string& name);
  Result<pb::Inode> Getattr(uint64_t ino);
  // Loads the inode and runs `register_open` under its lock, atomically with
  // any unlink deciding whether the file is still open.
  Result<pb::Inode> OpenInode(uint64_t ino, const std::function<void()>& register_open);
  // Size changes only update metadata; the caller cuts the data first and
  // passes what the data servers still hold, if it knows.
  Result<pb::Inode> Setattr(const pb::SetattrRequest& request,
                            std::optional<uint64_t> allocated_bytes = std::nullopt);
  Result<pb::Inode> Mknod(uint64_t parent, const std::string& name, uint32_t mode, uint64_t rdev,
                          const pb::Caller& caller, const std::vector<uint32_t>& chains,
                          const OnCreated& on_created = nullptr,
                          Reservation first_reservation = {});
  Result<pb::Inode> Mkdir(uint64_t parent, const std::string& name, uint32_t mode,
                          const pb::Caller& caller);
  Result<pb::Inode> Symlink(uint64_t parent, const std::string& name, const std::string& target,
                            const pb::Caller& caller);
  Result<pb::Inode> Link(uint64_t ino, uint64_t new_parent, const std::string& new_name);
  Result<Unlinked> Unlink(uint64_t parent, const std::string& name, const OpenCheck& is_open);
  // `removed`, if given, receives the inode of the directory removed.
  Status Rmdir(uint64_t parent, const std::string& name, uint64_t* removed = nullptr);
  // flags: 0, pb::RENAME_FLAG_NOREPLACE or pb::RENAME_FLAG_EXCHANGE.
  Result<Unlinked> Rename(uint64_t parent, const std::string& name, uint64_t new_parent,
                          const std::string& new_name, uint32_t flags, const OpenCheck& is_open);
  Result<std::string> Readlink(uint64_t ino);
  // Lists entries after `cookie`, up to max_entries (at most
  // kReaddirMaxEntries) and about kReaddirReplyBytes. `seq_limit` is the
  // listing's start (0: this call starts it; the reply says where).
  Result<pb::ReaddirResponse> Readdir(uint64_t ino, uint64_t cookie, uint32_t max_entries,
                                      bool with_attrs, uint64_t seq_limit = 0);
  // Grows the size to at least `size` and sets mtime (data was written).
  // Synced to disk only when `durable` (the client's fsync). With
  // `expected_epoch`, fails with EAGAIN if a truncate happened since.
  struct WriteCommit {
    uint64_t ino = 0;
    uint64_t size = 0;
    int64_t mtime_ns = 0;
    bool durable = true;
    std::optional<uint64_t> expected_epoch;
    // What the data servers hold of the file, when they were asked; else the
    // change the writes reported, added to a known count.
    std::optional<uint64_t> allocated_bytes;
    int64_t allocated_delta = 0;
  };
  Result<pb::Inode> CommitWrite(const WriteCommit& commit);
  Result<pb::Inode> CommitWrite(uint64_t ino, uint64_t size, int64_t mtime_ns,
                                bool durable = true) {
    return CommitWrite(WriteCommit{ino, size, mtime_ns, durable, std::nullopt, std::nullopt, 0});
  }
  // Makes every acknowledged change durable (what an fsync promises).
  Status Sync();

  // ---- extended attributes (flags: XATTR_CREATE / XATTR_REPLACE)
  // system.posix_acl_access and system.posix_acl_default are validated and
  // kept consistent with the mode (see posix_acl.h).
  Status Setxattr(uint64_t ino, const std::string& name, const std::string& value, uint32_t flags,
                  const XattrCaller* caller = nullptr);
  Result<std::string> Getxattr(uint64_t ino, const std::string& name);
  Result<std::vector<std::string>> Listxattr(uint64_t ino);
  Status Removexattr(uint64_t ino, const std::string& name);

  // ---- orphans and chunk removal
  Result<std::vector<uint64_t>> Orphans();
  // Frees an orphan whose last opener closed it, unless `is_open` says it is
  // open (checked under the inode's lock, so no open can slip in between).
  Status ReleaseOrphan(uint64_t ino, const OpenCheck& is_open = nullptr);
  // Files whose chunks still have to be removed from data servers.
  Result<std::vector<std::pair<uint64_t, pb::Layout>>> PendingRemovals();
  Status RemovalDone(uint64_t ino) { return RemovalsDone({ino}); }
  Status RemovalsDone(const std::vector<uint64_t>& inos);

  // ---- client sessions known to exist (their open files survive a restart)
  Status PutSession(uint64_t session_id, const pb::SessionRecord& record);
  Status DeleteSession(uint64_t session_id);
  Result<std::vector<std::pair<uint64_t, pb::SessionRecord>>> Sessions();

  // ---- volumes
  struct VolumeSpec {
    std::string name;
    std::string tenant;
    uint32_t stripe_width = 0;  // chains each file stripes over (0: all, at most kMaxStripeWidth)
    uint64_t quota_bytes = 0;   // 0: no limit
    uint64_t quota_inodes = 0;
    uint32_t uid = 0, gid = 0;  // owner of the root directory
    // The mount token to use; empty: a random one. At least kSecretBytes.
    std::string token;
  };
  // The volume and its mount token (the store keeps only the token's hash).
  Result<std::pair<pb::Volume, std::string>> CreateVolume(const VolumeSpec& spec);
  // A volume of tenant "default" without quotas, its token discarded (tests, benchmarks).
  Result<pb::Volume> CreateVolume(const std::string& name, uint32_t uid, uint32_t gid,
                                  uint32_t stripe_width = 0) {
    auto created = CreateVolume(VolumeSpec{name, "default", stripe_width, 0, 0, uid, gid, {}});
    if (!created.ok()) return created.status();
    return created->first;
  }
  Result<pb::Volume> GetVolume(const std::string& name);
  Result<pb::Volume> GetVolumeById(uint64_t id);
  // Volumes with their current usage filled in.
  Result<std::vector<pb::Volume>> ListVolumes();
  // Removes the volume and everything in it; chunk removal is queued.
  Status DeleteVolume(const std::string& name);
  Result<pb::Volume> SetVolumeQuota(const std::string& name, std::optional<uint64_t> quota_bytes,
                                    std::optional<uint64_t> quota_inodes);
  // A new mount token; the old one stops working.
  Result<std::string> RotateVolumeToken(const std::string& name);

  // ---- quotas
  struct VolumeUsage {
    uint64_t used_bytes = 0, used_inodes = 0, quota_bytes = 0, quota_inodes = 0;
  };
  VolumeUsage UsageOf(uint64_t volume_id);
  // Reserves quota so that the file may be written below need_end (and up
  // to want_end where the quota allows), and covers its current size too;
  // the reservation is held until at least need_until_ns (wall clock): when
  // it has to be written, until hold_until_ns. EDQUOT when need_end does
  // not fit.
  Result<pb::Inode> Reserve(uint64_t ino, uint64_t need_end, uint64_t want_end,
                            int64_t need_until_ns, int64_t hold_until_ns);
  // Files whose reservation's hold ran out at now_ns.
  Result<std::vector<pb::Inode>> ExpiredReservations(int64_t now_ns);
  // Releases the file's reservation unless it was renewed; bytes the data
  // servers hold below `data_end` stay charged, even past the quota.
  Status ReleaseReservation(uint64_t ino, int64_t now_ns, uint64_t data_end);
  // The file's last open handle closed: the part of its reservation past
  // what was written and committed stops counting at once (returned_end
  // keeps it for the check when its capabilities expire). `closed` is asked
  // under the file's lock, where a new writer's reservation waits.
  Status ReturnReservation(uint64_t ino, const std::function<bool()>& closed);
  // fallocate(2) mode 0 or FALLOC_FL_KEEP_SIZE: reserves quota for the range
  // (for good: it stays charged) and grows the size unless KEEP_SIZE.
  Result<pb::Inode> Fallocate(uint64_t ino, uint32_t mode, uint64_t offset, uint64_t length);
  // Recounts every volume's usage from the namespace, beside what the
  // usage records say (one consistent snapshot).
  Result<std::vector<pb::VolumeRecount>> RecountUsage();

  // ---- billing ledger
  // Appends one sample per volume, and the latest traffic per data server.
  Status AppendLedger(const std::vector<std::pair<uint64_t, pb::LedgerSample>>& samples);
  Result<std::vector<pb::LedgerSample>> ReadLedger(uint64_t volume_id, int64_t from_ns,
                                                   int64_t to_ns);
  // The traffic each data server last reported per volume (kept so that
  // sums survive a restart of this server).
  Status PutTraffic(uint32_t server_id, const std::vector<pb::VolumeTraffic>& traffic);
  Result<std::vector<std::pair<uint32_t, pb::VolumeTraffic>>> LoadTraffic();
  // The totals of this server's durable counters (metrics).
  Result<pb::CounterSnapshot> LoadCounters();
  Status SaveCounters(const pb::CounterSnapshot& counters);

  // ---- data server registry and chain table
  Status PutServer(const pb::DataServer& server);
  Result<std::vector<pb::DataServer>> ListServers();
  // The chain table, empty before the first data server registered.
  Result<pb::ChainTable> LoadChainTable();
  Status SaveChainTable(const pb::ChainTable& table);
  uint64_t UsedInodes();

  // ---- applied_requests.cc (RequestLog's durable records)
  Result<std::optional<AppliedRequest>> FindApplied(const RequestKey& key);
  // Deletes the records made before `before_ns`; returns how many.
  Result<size_t> ForgetAppliedBefore(int64_t before_ns);

  // ---- changes across shards (prepared_changes.cc; shard.proto says how they run)
  // Checks every step of `change` against this shard, records it durably
  // and holds the inodes it names until CommitPrepared or AbortPrepared
  // (again after a restart). EAGAIN when another prepared change holds one
  // of them or what a step expects changed; the step's errno (EEXIST,
  // ENOTEMPTY, ...) when it cannot be made. Preparing it again is a no-op.
  Status Prepare(const pb::ShardChange& change);
  // Applies a prepared change durably and releases its inodes. A change not
  // prepared here was applied or dropped already: nothing to do.
  Result<std::vector<Unlinked>> CommitPrepared(uint64_t txid, const OpenCheck& is_open);
  Status AbortPrepared(uint64_t txid);
  // Changes prepared here and not yet decided.
  Result<std::vector<pb::ShardChange>> PreparedChanges();
  // Intents of the changes this shard coordinates (ids unique per shard).
  uint64_t NewTxid();
  Status PutIntent(const pb::Intent& intent);
  Status DeleteIntent(uint64_t txid);
  Result<std::optional<pb::Intent>> FindIntent(uint64_t txid);
  Result<std::vector<pb::Intent>> Intents();
  uint32_t shard() const { return options_.shard; }
  // A new inode id of this shard (for a directory made through another shard).
  uint64_t NewIno() { return AllocateIno(); }
  // The inode of a directory that `parent` (of this shard) makes with id
  // `ino` of another shard, and the ACL xattrs it inherits. Nothing is
  // written: PlanMkdir carries both to the shard of `ino`.
  Result<pb::Inode> NewDirectory(uint64_t parent, uint32_t mode, const pb::Caller& caller,
                                 uint64_t ino, std::map<std::string, std::string>* xattrs);
  // The inode `name` in directory `parent` names; the inode may live on
  // another shard.
  Result<uint64_t> FindEntry(uint64_t parent, const std::string& name) {
    return LookupChild(parent, name, nullptr, nullptr);
  }

  // ---- fsck (fsck_store.cc; the checks are in fsck.h)
  // What the namespace holds, read in one snapshot.
  Result<NamespaceFacts> CollectFacts();
  // Mends one finding of CheckNamespace if it still holds in the live store
  // (checked again under the locks of what it changes); says what it did.
  Result<std::string> Repair(const Finding& finding);

  // Opaque internals, declared here so implementation files can share them.
  struct Handles;
  class Locks;

 private:
  explicit MetaStore(MetaStoreOptions options);

  Result<pb::Inode> LoadInode(uint64_t ino);
  Result<uint64_t> LookupChild(uint64_t parent, const std::string& name, uint32_t* type,
                               uint64_t* seq);
  Result<pb::Inode> LoadDirectory(uint64_t ino);
  // Finds `name` in `parent` and returns it locked together with its
  // directory, both loaded; looks again if the entry changed while locking.
  struct LockedEntry;
  Result<LockedEntry> LockEntry(uint64_t parent, const std::string& name);
  Result<bool> IsEmptyDirectory(uint64_t ino);
  Status Commit(rocksdb::WriteBatch& batch, bool sync = true);
  // Commits a batch that changes volumes' usage: growth is taken from the
  // quota book first (EDQUOT), the usage records change in the same batch.
  Status CommitCharged(rocksdb::WriteBatch& batch, const UsageChanges& changes, bool sync = true,
                       bool enforced = true);
  Status LoadQuotaBook();
  Status CheckFormat();
  uint64_t AllocateIno();
  void PutInode(rocksdb::WriteBatch& batch, const pb::Inode& inode);
  void AddEntry(rocksdb::WriteBatch& batch, pb::Inode& parent, const std::string& name,
                uint64_t ino, uint32_t mode);
  void RemoveEntry(rocksdb::WriteBatch& batch, uint64_t parent, const std::string& name,
                   uint64_t seq);
  // Drops one link of `inode`; frees or orphans it when none are left.
  Unlinked DropLink(rocksdb::WriteBatch& batch, pb::Inode inode, const OpenCheck& is_open,
                    int64_t now, UsageChanges& changes);
  void FreeInode(rocksdb::WriteBatch& batch, const pb::Inode& inode, UsageChanges& changes);
  Result<pb::Inode> CreateNode(uint64_t parent, const std::string& name, uint32_t mode,
                               uint64_t rdev, const pb::Caller& caller,
                               const std::vector<uint32_t>& chains, const std::string& target,
                               const OnCreated& on_created, Reservation first_reservation = {});
  Status IsAncestor(uint64_t ancestor, uint64_t ino, bool* result);
  Result<pb::Inode> NewInode(const pb::Inode& dir, uint64_t ino, uint32_t mode, uint64_t rdev,
                             const pb::Caller& caller, const std::vector<uint32_t>& chains,
                             const std::string& target, InheritedAcls* inherited);
  Result<std::string> Reattach(const Finding& finding);
  Status CheckStep(const pb::ShardStep& step);
  Status HoldPrepared();
  Status LoadTxidHighWater();

  MetaStoreOptions options_;
  std::unique_ptr<rocksdb::DB> db_;
  std::unique_ptr<Handles> cf_;
  std::unique_ptr<Locks> locks_;
  std::unique_ptr<QuotaBook> quotas_;
  std::atomic<uint64_t> next_ino_{0};
  std::atomic<uint64_t> next_txid_{0};
  std::mutex rename_mutex_;    // serializes directory moves between parents
  std::mutex registry_mutex_;  // volumes and servers
};

// EIO if a RocksDB iterator stopped on an error rather than at the end.
Status IteratorStatus(const rocksdb::Iterator& it);
// Validates a single path component; EINVAL or ENAMETOOLONG.
Status CheckName(const std::string& name);
// Checks a rename's names and flags (local or across shards alike).
Status CheckRename(const std::string& name, const std::string& new_name, uint32_t flags);
int64_t NowNs();
// A change at `now`: ctime, and mtime if the contents changed.
void Touch(pb::Attr* attr, int64_t now, bool mtime);

}  // namespace sealfs::metadata
