#include "sealfs/metadata/meta_store.h"

#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/table.h>
#include <rocksdb/utilities/options_util.h>
#include <rocksdb/write_batch.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <ctime>
#include <deque>
#include <set>
#include <unordered_set>

#include "handles.h"
#include "keys.h"
#include "posix_acl.h"
#include "quota.h"
#include "sealfs/rpc/credentials.h"

namespace sealfs::metadata {

namespace {

constexpr uint64_t kFirstIno = 16;  // 1 is the FUSE root id; never a real inode

}  // namespace

Status IteratorStatus(const rocksdb::Iterator& it) {
  if (it.status().ok()) return Status::Ok();
  return Status(EIO, "reading metadata failed: " + it.status().ToString());
}

namespace {

Status NotFound(uint64_t ino) {
  return Status(ENOENT, "inode " + std::to_string(ino) + " not found");
}

}  // namespace

void Touch(pb::Attr* attr, int64_t now, bool mtime) {
  if (mtime) attr->set_mtime_ns(now);
  attr->set_ctime_ns(now);
}

int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

Status CheckName(const std::string& name) {
  if (name.size() > kNameMax) {
    return Status(ENAMETOOLONG, "name of " + std::to_string(name.size()) + " bytes is too long");
  }
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos ||
      name.find('\0') != std::string::npos) {
    return Status(EINVAL, "'" + name + "' is not a valid name");
  }
  return Status::Ok();
}

Status CheckRename(const std::string& name, const std::string& new_name, uint32_t flags) {
  if (name.size() > kNameMax) return Status(ENAMETOOLONG, "name too long");
  SEALFS_RETURN_IF_ERROR(CheckName(new_name));
  if (flags & ~uint32_t{pb::RENAME_FLAG_EXCHANGE | pb::RENAME_FLAG_NOREPLACE}) {
    return Status(EINVAL, "unknown rename flags");
  }
  if ((flags & pb::RENAME_FLAG_EXCHANGE) && (flags & pb::RENAME_FLAG_NOREPLACE)) {
    return Status(EINVAL, "RENAME_EXCHANGE with RENAME_NOREPLACE");
  }
  return Status::Ok();
}

MetaStore::MetaStore(MetaStoreOptions options)
    : options_(std::move(options)),
      cf_(std::make_unique<Handles>()),
      locks_(std::make_unique<Locks>()),
      quotas_(std::make_unique<QuotaBook>()) {}

MetaStore::~MetaStore() {
  if (db_) {
    for (auto* handle :
         {cf_->inodes, cf_->dentries, cf_->dirindex, cf_->xattrs, cf_->service, cf_->default_cf}) {
      if (handle) db_->DestroyColumnFamilyHandle(handle);
    }
    db_->Close();
  }
}

Result<std::unique_ptr<MetaStore>> MetaStore::Open(const MetaStoreOptions& options) {
  std::unique_ptr<MetaStore> store(new MetaStore(options));
  rocksdb::DBOptions db_options;
  db_options.create_if_missing = true;
  if (options.env) db_options.env = options.env;
  db_options.create_missing_column_families = true;
  db_options.max_background_jobs = 2;
  db_options.IncreaseParallelism(2);
  rocksdb::ColumnFamilyOptions cf_options;
  rocksdb::BlockBasedTableOptions table;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  table.block_cache = rocksdb::NewLRUCache(256u << 20);
  cf_options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  cf_options.OptimizeLevelStyleCompaction(64u << 20);
  rocksdb::ColumnFamilyOptions service_options = cf_options;
  service_options.merge_operator = UsageMergeOperator();
  std::vector<rocksdb::ColumnFamilyDescriptor> families = {
      {rocksdb::kDefaultColumnFamilyName, cf_options},
      {"inodes", cf_options},
      {"dentries", cf_options},
      {"dirindex", cf_options},
      {"xattrs", cf_options},
      {"service", service_options},
  };
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* db = nullptr;
  rocksdb::Status status = rocksdb::DB::Open(db_options, options.path, families, &handles, &db);
  if (!status.ok()) {
    return Status(EIO, "cannot open metadata store at " + options.path + ": " + status.ToString());
  }
  store->db_.reset(db);
  store->cf_->default_cf = handles[0];
  store->cf_->inodes = handles[1];
  store->cf_->dentries = handles[2];
  store->cf_->dirindex = handles[3];
  store->cf_->xattrs = handles[4];
  store->cf_->service = handles[5];

  SEALFS_RETURN_IF_ERROR(store->CheckFormat());
  SEALFS_RETURN_IF_ERROR(store->LoadQuotaBook());
  SEALFS_RETURN_IF_ERROR(store->HoldPrepared());
  SEALFS_RETURN_IF_ERROR(store->LoadTxidHighWater());

  // The next inode id follows the largest one this shard has handed out.
  uint64_t shard_base = static_cast<uint64_t>(options.shard) << kShardBits;
  uint64_t next = shard_base + kFirstIno;
  std::unique_ptr<rocksdb::Iterator> it(store->db_->NewIterator({}, store->cf_->inodes));
  it->SeekForPrev(EncodeIno(shard_base + ((uint64_t{1} << kShardBits) - 1)));
  if (!it->status().ok()) {
    return Status(
        EIO, "cannot read the metadata store at " + options.path + ": " + it->status().ToString());
  }
  if (it->Valid() && it->key().size() == 8) {
    uint64_t last = DecodeIno(it->key().data());
    if (ShardOf(last) == options.shard) next = std::max(next, last + 1);
  }
  // Freed inodes may have held higher ids; remember the high-water mark too.
  std::string mark;
  if (store->db_->Get({}, store->cf_->service, kInoHighWaterKey, &mark).ok() && mark.size() == 8) {
    next = std::max(next, DecodeIno(mark.data()) + 1);
  }
  store->next_ino_ = next;
  return store;
}

Status MetaStore::Commit(rocksdb::WriteBatch& batch, bool sync) {
  // A numbered client request records itself with its changes (RequestLog).
  if (PendingRequest* request = CurrentRequest()) {
    batch.Put(cf_->service, AppliedKey(request->key),
              EncodeApplied({request->result_ino, auth::WallClockNs()}));
  }
  rocksdb::WriteOptions write_options;
  write_options.sync = sync;
  rocksdb::Status status = db_->Write(write_options, &batch);
  if (!status.ok()) return Status(EIO, "metadata write failed: " + status.ToString());
  return Status::Ok();
}

Status MetaStore::CommitCharged(rocksdb::WriteBatch& batch, const UsageChanges& changes, bool sync,
                                bool enforced) {
  if (!changes.empty()) {
    SEALFS_RETURN_IF_ERROR(quotas_->Take(changes, enforced));
    for (const auto& [volume, usage] : changes.by_volume()) {
      // A volume deleted meanwhile gets no usage record back.
      if (quotas_->Known(volume)) batch.Merge(cf_->service, UsageKey(volume), EncodeUsage(usage));
    }
  }
  Status status = Commit(batch, sync);
  if (!status.ok()) {
    quotas_->Untake(changes);
    return status;
  }
  quotas_->ApplyShrink(changes);
  return Status::Ok();
}

uint64_t MetaStore::AllocateIno() { return next_ino_.fetch_add(1); }

Result<pb::Inode> MetaStore::LoadInode(uint64_t ino) {
  std::string value;
  rocksdb::Status status = db_->Get({}, cf_->inodes, EncodeIno(ino), &value);
  if (status.IsNotFound()) return NotFound(ino);
  if (!status.ok()) return Status(EIO, "reading inode failed: " + status.ToString());
  pb::Inode inode;
  if (!inode.ParseFromString(value))
    return Status(EIO, "inode " + std::to_string(ino) + " is corrupt");
  return inode;
}

Result<pb::Inode> MetaStore::LoadDirectory(uint64_t ino) {
  Result<pb::Inode> inode = LoadInode(ino);
  if (!inode.ok()) return inode;
  if (!IsDir(*inode))
    return Status(ENOTDIR, "inode " + std::to_string(ino) + " is not a directory");
  if (inode->attr().nlink() == 0) return Status(ENOENT, "directory was removed");
  return inode;
}

Result<uint64_t> MetaStore::LookupChild(uint64_t parent, const std::string& name, uint32_t* type,
                                        uint64_t* seq) {
  std::string value;
  rocksdb::Status status = db_->Get({}, cf_->dentries, DentryKey(parent, name), &value);
  if (status.IsNotFound()) return Status(ENOENT, "'" + name + "' not found");
  if (!status.ok()) return Status(EIO, "reading entry failed: " + status.ToString());
  DentryValue entry = DecodeDentry(value);
  if (type) *type = entry.type;
  if (seq) *seq = entry.seq;
  return entry.ino;
}

Result<MetaStore::LockedEntry> MetaStore::LockEntry(uint64_t parent, const std::string& name) {
  for (;;) {
    Result<uint64_t> child = LookupChild(parent, name, nullptr, nullptr);
    if (!child.ok()) {
      Result<pb::Inode> dir = LoadDirectory(parent);
      return dir.ok() ? child.status() : dir.status();
    }
    LockedEntry entry;
    entry.lock =
        std::make_unique<LockSet>(*locks_, std::initializer_list<uint64_t>{parent, *child});
    Result<uint64_t> again = LookupChild(parent, name, nullptr, &entry.seq);
    if (!again.ok() || *again != *child) continue;  // changed while we locked
    Result<pb::Inode> dir = LoadDirectory(parent);
    if (!dir.ok()) return dir.status();
    Result<pb::Inode> inode = LoadInode(*child);
    if (!inode.ok()) return inode.status();
    entry.dir = std::move(*dir);
    entry.inode = std::move(*inode);
    return entry;
  }
}

Result<bool> MetaStore::IsEmptyDirectory(uint64_t ino) {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, cf_->dirindex));
  it->Seek(EncodeIno(ino));
  // An I/O error ends the scan as if the directory were empty: never trust
  // an iterator that stopped without checking why.
  SEALFS_RETURN_IF_ERROR(IteratorStatus(*it));
  return !(it->Valid() && it->key().starts_with(EncodeIno(ino)));
}

void MetaStore::PutInode(rocksdb::WriteBatch& batch, const pb::Inode& inode) {
  batch.Put(cf_->inodes, EncodeIno(inode.attr().ino()), inode.SerializeAsString());
}

void MetaStore::AddEntry(rocksdb::WriteBatch& batch, pb::Inode& parent, const std::string& name,
                         uint64_t ino, uint32_t mode) {
  uint64_t seq = std::max<uint64_t>(parent.next_dir_seq(), kFirstDirSeq);
  parent.set_next_dir_seq(seq + 1);
  uint32_t type = mode & S_IFMT;
  batch.Put(cf_->dentries, DentryKey(parent.attr().ino(), name), EncodeDentry({ino, seq, type}));
  batch.Put(cf_->dirindex, IndexKey(parent.attr().ino(), seq), EncodeIndex(ino, type, name));
}

void MetaStore::RemoveEntry(rocksdb::WriteBatch& batch, uint64_t parent, const std::string& name,
                            uint64_t seq) {
  batch.Delete(cf_->dentries, DentryKey(parent, name));
  batch.Delete(cf_->dirindex, IndexKey(parent, seq));
}

void MetaStore::FreeInode(rocksdb::WriteBatch& batch, const pb::Inode& inode,
                          UsageChanges& changes) {
  uint64_t ino = inode.attr().ino();
  changes.Change(&inode, nullptr);
  batch.Delete(cf_->service, ReserveKey(ino));
  batch.Delete(cf_->inodes, EncodeIno(ino));
  batch.DeleteRange(cf_->xattrs, EncodeIno(ino), EncodeIno(ino + 1));
  batch.Delete(cf_->service, OrphanKey(ino));
  batch.Put(cf_->service, kInoHighWaterKey, EncodeIno(next_ino_.load()));
  if (S_ISREG(inode.attr().mode()) && inode.layout().chains_size() > 0) {
    batch.Put(cf_->service, RemovalKey(ino), inode.layout().SerializeAsString());
  }
}

Unlinked MetaStore::DropLink(rocksdb::WriteBatch& batch, pb::Inode inode, const OpenCheck& is_open,
                             int64_t now, UsageChanges& changes) {
  Unlinked result;
  pb::Attr* attr = inode.mutable_attr();
  attr->set_nlink(IsDir(inode) ? 0 : (attr->nlink() > 0 ? attr->nlink() - 1 : 0));
  attr->set_ctime_ns(now);
  if (attr->nlink() > 0) {
    PutInode(batch, inode);
  } else if (!IsDir(inode) && is_open && is_open(attr->ino())) {
    PutInode(batch, inode);
    batch.Put(cf_->service, OrphanKey(attr->ino()), "");
    result.orphaned = true;
  } else {
    FreeInode(batch, inode, changes);
    result.freed = true;
  }
  result.inode = std::move(inode);
  return result;
}

// ---------------------------------------------------------------- lookups

Result<pb::Inode> MetaStore::Lookup(uint64_t parent, const std::string& name) {
  if (name.size() > kNameMax) return Status(ENAMETOOLONG, "name too long");
  // "." of any inode is the inode itself: how the kernel turns a file
  // handle (name_to_handle_at, NFS export) back into an inode.
  if (name == ".") {
    Result<pb::Inode> self = LoadInode(parent);
    if (self.ok() && IsDir(*self) && self->attr().nlink() == 0)
      return Status(ENOENT, "directory was removed");
    return self;
  }
  Result<pb::Inode> dir = LoadDirectory(parent);
  if (!dir.ok()) return dir.status();
  if (name == ".") return dir;
  if (name == "..") {
    uint64_t up = dir->attr().parent();
    return up == 0 ? dir : LoadInode(up);
  }
  Result<uint64_t> child = LookupChild(parent, name, nullptr, nullptr);
  if (!child.ok()) return child.status();
  return LoadInode(*child);
}

Result<pb::Inode> MetaStore::Getattr(uint64_t ino) { return LoadInode(ino); }

Result<pb::Inode> MetaStore::OpenInode(uint64_t ino, const std::function<void()>& register_open) {
  LockSet lock(*locks_, {ino});
  Result<pb::Inode> inode = LoadInode(ino);
  if (!inode.ok()) return inode;
  // An unlink of the last name holds this lock while it decides between
  // freeing and orphaning, so it sees this open or the open sees no inode.
  register_open();
  return inode;
}

Result<std::string> MetaStore::Readlink(uint64_t ino) {
  Result<pb::Inode> inode = LoadInode(ino);
  if (!inode.ok()) return inode.status();
  if (!S_ISLNK(inode->attr().mode())) return Status(EINVAL, "not a symbolic link");
  return inode->symlink_target();
}

// ---------------------------------------------------------------- creation

// The inode a create in `dir` makes, not yet written: its mode cut by the
// umask, or by the directory's default ACL (which `inherited` receives).
Result<pb::Inode> MetaStore::NewInode(const pb::Inode& dir, uint64_t ino, uint32_t mode,
                                      uint64_t rdev, const pb::Caller& caller,
                                      const std::vector<uint32_t>& chains,
                                      const std::string& target, InheritedAcls* inherited) {
  // A default ACL on the directory takes the place of the umask (posix_acl_create).
  if (!S_ISLNK(mode)) {
    std::string parent_default;
    rocksdb::Status read =
        db_->Get({}, cf_->xattrs, XattrKey(dir.attr().ino(), kAclDefaultXattr), &parent_default);
    if (read.ok()) {
      Result<InheritedAcls> acls = InheritDefaultAcl(parent_default, mode);
      if (!acls.ok()) return acls.status();
      *inherited = std::move(*acls);
      mode = inherited->mode;
    } else if (read.IsNotFound()) {
      mode &= ~(caller.umask() & 0777);
    } else {
      return Status(EIO, "reading the default ACL failed: " + read.ToString());
    }
  }
  int64_t now = NowNs();
  pb::Inode inode;
  pb::Attr* attr = inode.mutable_attr();
  attr->set_ino(ino);
  bool parent_setgid = dir.attr().mode() & S_ISGID;
  if (S_ISDIR(mode) && parent_setgid) mode |= S_ISGID;
  attr->set_mode(mode);
  attr->set_uid(caller.uid());
  attr->set_gid(parent_setgid ? dir.attr().gid() : caller.gid());
  attr->set_nlink(S_ISDIR(mode) ? 2 : 1);
  attr->set_size(S_ISLNK(mode) ? target.size() : 0);
  attr->set_atime_ns(now);
  attr->set_mtime_ns(now);
  attr->set_ctime_ns(now);
  attr->set_rdev(rdev);
  attr->set_xattrs(static_cast<uint32_t>(!inherited->access.empty()) +
                   static_cast<uint32_t>(!inherited->default_acl.empty()));
  if (S_ISREG(mode)) attr->set_blocks(0);  // nothing stored yet
  inode.set_volume_id(dir.volume_id());
  if (S_ISDIR(mode)) {
    inode.set_stripe_width(dir.stripe_width());
    attr->set_parent(dir.attr().ino());
    inode.set_next_dir_seq(kFirstDirSeq);
  }
  if (S_ISLNK(mode)) inode.set_symlink_target(target);
  if (S_ISREG(mode)) {
    pb::Layout* layout = inode.mutable_layout();
    layout->set_chunk_size(options_.chunk_size);
    // The volume's stripe width (at most kMaxStripeWidth chains), rotated by
    // inode so that files start on different chains.
    size_t width = std::min(chains.size(),
                            dir.stripe_width() > 0 ? size_t{dir.stripe_width()} : kMaxStripeWidth);
    for (size_t i = 0; i < width; ++i) {
      layout->add_chains(chains[(ino + i) % chains.size()]);
    }
  }
  return inode;
}

Result<pb::Inode> MetaStore::NewDirectory(uint64_t parent, uint32_t mode, const pb::Caller& caller,
                                          uint64_t ino,
                                          std::map<std::string, std::string>* xattrs) {
  Result<pb::Inode> dir = LoadDirectory(parent);
  if (!dir.ok()) return dir.status();
  InheritedAcls inherited;
  Result<pb::Inode> inode =
      NewInode(*dir, ino, S_IFDIR | (mode & 07777), 0, caller, {}, {}, &inherited);
  if (!inode.ok()) return inode.status();
  if (!inherited.access.empty()) (*xattrs)[std::string(kAclAccessXattr)] = inherited.access;
  if (!inherited.default_acl.empty()) {
    (*xattrs)[std::string(kAclDefaultXattr)] = inherited.default_acl;
  }
  return inode;
}

Result<pb::Inode> MetaStore::CreateNode(uint64_t parent, const std::string& name, uint32_t mode,
                                        uint64_t rdev, const pb::Caller& caller,
                                        const std::vector<uint32_t>& chains,
                                        const std::string& target, const OnCreated& on_created,
                                        Reservation first_reservation) {
  SEALFS_RETURN_IF_ERROR(CheckName(name));
  LockSet lock(*locks_, {parent});
  Result<pb::Inode> dir = LoadDirectory(parent);
  if (!dir.ok()) return dir.status();
  if (LookupChild(parent, name, nullptr, nullptr).ok()) {
    return Status(EEXIST, "'" + name + "' already exists");
  }
  InheritedAcls inherited;
  uint64_t ino = AllocateIno();
  NoteResultIno(ino);
  Result<pb::Inode> made = NewInode(*dir, ino, mode, rdev, caller, chains, target, &inherited);
  if (!made.ok()) return made.status();
  pb::Inode inode = std::move(*made);
  mode = inode.attr().mode();
  const int64_t now = inode.attr().ctime_ns();
  if (S_ISDIR(mode)) dir->mutable_attr()->set_nlink(dir->attr().nlink() + 1);
  Touch(dir->mutable_attr(), now, true);
  // A file's first reservation commits with it (one write for both); if the
  // quota has no room for it, the file is made without one.
  const bool reserve = S_ISREG(mode) && first_reservation.end > 0;
  for (int attempt = reserve ? 0 : 1;; ++attempt) {
    if (attempt == 0) {
      inode.set_reserved_end(first_reservation.end);
      inode.set_reserved_until_ns(first_reservation.until_ns);
    } else {
      inode.clear_reserved_end();
      inode.clear_reserved_until_ns();
    }
    pb::Inode parent_inode = *dir;
    rocksdb::WriteBatch batch;
    PutInode(batch, inode);
    AddEntry(batch, parent_inode, name, ino, mode);
    if (!inherited.access.empty()) {
      batch.Put(cf_->xattrs, XattrKey(ino, kAclAccessXattr), inherited.access);
    }
    if (!inherited.default_acl.empty()) {
      batch.Put(cf_->xattrs, XattrKey(ino, kAclDefaultXattr), inherited.default_acl);
    }
    if (attempt == 0) batch.Put(cf_->service, ReserveKey(ino), "");
    PutInode(batch, parent_inode);
    UsageChanges changes;
    changes.Change(nullptr, &inode);
    Status committed = CommitCharged(batch, changes);
    if (committed.ok()) break;
    if (committed.code() != EDQUOT || attempt == 1) return committed;
  }
  // Still under the directory's lock: nobody can unlink the new name before
  // the creator's open is registered.
  if (on_created) on_created(ino);
  return inode;
}

Result<pb::Inode> MetaStore::Mknod(uint64_t parent, const std::string& name, uint32_t mode,
                                   uint64_t rdev, const pb::Caller& caller,
                                   const std::vector<uint32_t>& chains, const OnCreated& on_created,
                                   Reservation first_reservation) {
  uint32_t type = mode & S_IFMT;
  if (type == 0) mode |= S_IFREG;
  if (type == S_IFDIR || type == S_IFLNK) return Status(EINVAL, "mknod cannot make this type");
  return CreateNode(parent, name, mode, rdev, caller, chains, {}, on_created, first_reservation);
}

Result<pb::Inode> MetaStore::Mkdir(uint64_t parent, const std::string& name, uint32_t mode,
                                   const pb::Caller& caller) {
  return CreateNode(parent, name, S_IFDIR | (mode & 07777), 0, caller, {}, {}, nullptr);
}

Result<pb::Inode> MetaStore::Symlink(uint64_t parent, const std::string& name,
                                     const std::string& target, const pb::Caller& caller) {
  if (target.empty()) return Status(ENOENT, "empty symlink target");
  if (target.size() > kSymlinkMax) return Status(ENAMETOOLONG, "symlink target too long");
  return CreateNode(parent, name, S_IFLNK | 0777, 0, caller, {}, target, nullptr);
}

Result<pb::Inode> MetaStore::Link(uint64_t ino, uint64_t new_parent, const std::string& new_name) {
  SEALFS_RETURN_IF_ERROR(CheckName(new_name));
  LockSet lock(*locks_, {ino, new_parent});
  Result<pb::Inode> dir = LoadDirectory(new_parent);
  if (!dir.ok()) return dir.status();
  Result<pb::Inode> inode = LoadInode(ino);
  if (!inode.ok()) return inode.status();
  if (IsDir(*inode)) return Status(EPERM, "cannot hard-link a directory");
  if (inode->attr().nlink() == 0) return Status(ENOENT, "file was removed");
  if (inode->attr().nlink() >= 65000) return Status(EMLINK, "too many links");
  if (LookupChild(new_parent, new_name, nullptr, nullptr).ok()) {
    return Status(EEXIST, "'" + new_name + "' already exists");
  }
  if (inode->volume_id() != dir->volume_id()) return Status(EXDEV, "cannot link between volumes");
  int64_t now = NowNs();
  rocksdb::WriteBatch batch;
  inode->mutable_attr()->set_nlink(inode->attr().nlink() + 1);
  inode->mutable_attr()->set_ctime_ns(now);
  PutInode(batch, *inode);
  AddEntry(batch, *dir, new_name, ino, inode->attr().mode());
  Touch(dir->mutable_attr(), now, true);
  PutInode(batch, *dir);
  SEALFS_RETURN_IF_ERROR(Commit(batch));
  return inode;
}

// ---------------------------------------------------------------- attributes

Result<pb::Inode> MetaStore::Setattr(const pb::SetattrRequest& request,
                                     std::optional<uint64_t> allocated_bytes) {
  if ((request.valid() & pb::SETATTR_SIZE) && request.size() > kMaxFileSize) {
    return Status(EFBIG, "size " + std::to_string(request.size()) + " exceeds the largest file (" +
                             std::to_string(kMaxFileSize) + " bytes)");
  }
  LockSet lock(*locks_, {request.ino()});
  Result<pb::Inode> inode = LoadInode(request.ino());
  if (!inode.ok()) return inode.status();
  const pb::Inode before = *inode;
  pb::Attr* attr = inode->mutable_attr();
  uint32_t valid = request.valid();
  int64_t now = NowNs();
  if (valid & pb::SETATTR_SIZE) {
    if (IsDir(*inode)) return Status(EISDIR, "cannot truncate a directory");
    if (!S_ISREG(attr->mode())) return Status(EINVAL, "cannot truncate this file type");
    attr->set_size(request.size());
    if (inode->fallocated_end() > request.size()) inode->set_fallocated_end(request.size());
    attr->set_mtime_ns(now);
    // Size commits of writes that began before this truncate are checked
    // against the data that is left (see CommitWrite).
    attr->set_data_epoch(attr->data_epoch() + 1);
    if (allocated_bytes) {
      attr->set_blocks(*allocated_bytes / 512);
    } else {
      attr->clear_blocks();
    }
  }
  std::string access_acl;  // the access ACL rewritten for the new mode, if the inode has one
  if (valid & pb::SETATTR_MODE) {
    attr->set_mode((attr->mode() & S_IFMT) | (request.mode() & 07777));
    std::string stored;
    rocksdb::Status read =
        db_->Get({}, cf_->xattrs, XattrKey(request.ino(), kAclAccessXattr), &stored);
    if (read.ok()) {
      Result<std::string> updated = ChmodAccessAcl(stored, attr->mode());
      if (!updated.ok()) return updated.status();
      access_acl = std::move(*updated);
    } else if (!read.IsNotFound()) {
      return Status(EIO, "reading the access ACL failed: " + read.ToString());
    }
  }
  if (valid & pb::SETATTR_UID) attr->set_uid(request.uid());
  if (valid & pb::SETATTR_GID) attr->set_gid(request.gid());
  if (valid & pb::SETATTR_ATIME_NOW)
    attr->set_atime_ns(now);
  else if (valid & pb::SETATTR_ATIME)
    attr->set_atime_ns(request.atime_ns());
  if (valid & pb::SETATTR_MTIME_NOW)
    attr->set_mtime_ns(now);
  else if (valid & pb::SETATTR_MTIME)
    attr->set_mtime_ns(request.mtime_ns());
  attr->set_ctime_ns((valid & pb::SETATTR_CTIME) ? request.ctime_ns() : now);
  rocksdb::WriteBatch batch;
  PutInode(batch, *inode);
  if (!access_acl.empty()) {
    batch.Put(cf_->xattrs, XattrKey(request.ino(), kAclAccessXattr), access_acl);
  }
  UsageChanges changes;
  changes.Change(&before, &*inode);
  SEALFS_RETURN_IF_ERROR(CommitCharged(batch, changes));
  return inode;
}

Result<pb::Inode> MetaStore::CommitWrite(const WriteCommit& commit) {
  if (commit.size > kMaxFileSize) return Status(EFBIG, "file would exceed the largest size");
  LockSet lock(*locks_, {commit.ino});
  Result<pb::Inode> inode = LoadInode(commit.ino);
  if (!inode.ok()) return inode.status();
  if (!S_ISREG(inode->attr().mode())) return Status(EINVAL, "not a regular file");
  const pb::Inode before = *inode;
  pb::Attr* attr = inode->mutable_attr();
  if (commit.expected_epoch && *commit.expected_epoch != attr->data_epoch()) {
    return Status(EAGAIN, "the file was truncated meanwhile");
  }
  if (commit.size > attr->size()) attr->set_size(commit.size);
  // mtime is the writer's (it wrote the data then); ctime is always this
  // server's clock, so it never goes backwards.
  if (commit.mtime_ns > 0) attr->set_mtime_ns(commit.mtime_ns);
  attr->set_ctime_ns(std::max(NowNs(), attr->ctime_ns()));
  if (commit.allocated_bytes) {
    attr->set_blocks(*commit.allocated_bytes / 512);
  } else if (attr->has_blocks()) {
    int64_t bytes = static_cast<int64_t>(attr->blocks()) * 512 + commit.allocated_delta;
    attr->set_blocks(static_cast<uint64_t>(std::max<int64_t>(0, bytes)) / 512);
  }
  rocksdb::WriteBatch batch;
  PutInode(batch, *inode);
  UsageChanges changes;
  changes.Change(&before, &*inode);
  SEALFS_RETURN_IF_ERROR(CommitCharged(batch, changes, commit.durable));
  return inode;
}

Status MetaStore::Sync() {
  rocksdb::Status status = db_->SyncWAL();
  if (!status.ok()) return Status(EIO, "syncing the metadata log failed: " + status.ToString());
  return Status::Ok();
}

}  // namespace sealfs::metadata
