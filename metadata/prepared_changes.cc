// A shard's side of changes that span shards (shard.proto): prepared
// changes are checked, recorded and held; the coordinator's decision
// applies or drops them. The intents of changes this shard coordinates are
// kept here too.
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>
#include <sys/stat.h>

#include <map>
#include <set>

#include "handles.h"
#include "keys.h"
#include "quota.h"
#include "sealfs/metadata/meta_store.h"

namespace sealfs::metadata {

namespace {

Status Changed(const std::string& what) {
  return Status(EAGAIN, what + " changed since the operation was planned");
}

// The inodes a change holds from prepare to decision: the directories
// whose entries it changes and the inodes it changes.
std::vector<uint64_t> HeldInodes(const pb::ShardChange& change) {
  std::set<uint64_t> inos;
  for (const pb::ShardStep& step : change.steps()) {
    bool entry =
        step.kind() == pb::ShardStep::ADD_ENTRY || step.kind() == pb::ShardStep::REMOVE_ENTRY;
    inos.insert(entry ? step.dir() : step.ino());
  }
  return {inos.begin(), inos.end()};
}

template <typename Message>
Result<std::optional<Message>> ReadRecord(rocksdb::DB& db, rocksdb::ColumnFamilyHandle* cf,
                                          const std::string& key) {
  std::string value;
  rocksdb::Status status = db.Get({}, cf, key, &value);
  if (status.IsNotFound()) return std::optional<Message>();
  if (!status.ok()) return Status(EIO, "reading " + key + " failed: " + status.ToString());
  Message message;
  if (!message.ParseFromString(value)) return Status(EIO, "record " + key + " is corrupt");
  return std::optional<Message>(std::move(message));
}

template <typename Message>
Result<std::vector<Message>> ReadRecords(rocksdb::DB& db, rocksdb::ColumnFamilyHandle* cf,
                                         std::string_view prefix,
                                         const rocksdb::ReadOptions& options = {}) {
  std::vector<Message> records;
  std::unique_ptr<rocksdb::Iterator> it(db.NewIterator(options, cf));
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    Message message;
    if (!message.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
      return Status(EIO, "record " + it->key().ToString(true) + " is corrupt");
    }
    records.push_back(std::move(message));
  }
  SEALFS_RETURN_IF_ERROR(IteratorStatus(*it));
  return records;
}

}  // namespace

Status MetaStore::CheckStep(const pb::ShardStep& step) {
  switch (step.kind()) {
    case pb::ShardStep::ADD_ENTRY:
    case pb::ShardStep::REMOVE_ENTRY: {
      if (ShardOf(step.dir()) != options_.shard) return Status(EXDEV, "directory of another shard");
      Result<pb::Inode> dir = LoadDirectory(step.dir());
      if (!dir.ok()) return dir.status();
      Result<uint64_t> current = LookupChild(step.dir(), step.name(), nullptr, nullptr);
      if (!current.ok() && current.status().code() != ENOENT) return current.status();
      uint64_t named = current.ok() ? *current : 0;
      if (step.kind() == pb::ShardStep::ADD_ENTRY) {
        SEALFS_RETURN_IF_ERROR(CheckName(step.name()));
        if (step.expect_ino() == 0 && named != 0) {
          return Status(EEXIST, "'" + step.name() + "' already exists");
        }
      }
      if (named != step.expect_ino()) return Changed("'" + step.name() + "'");
      return Status::Ok();
    }
    case pb::ShardStep::CREATE_INODE: {
      if (ShardOf(step.ino()) != options_.shard || step.inode().attr().ino() != step.ino()) {
        return Status(EINVAL, "a new inode of another shard");
      }
      Result<pb::Inode> existing = LoadInode(step.ino());
      if (existing.ok()) return Status(EEXIST, "inode " + std::to_string(step.ino()) + " exists");
      if (existing.status().code() != ENOENT) return existing.status();
      // The inode quota as this shard counts it; the commit charges it
      // (concurrent prepares can pass it by as many inodes as they are).
      QuotaBook::Entry volume = quotas_->Get(step.inode().volume_id());
      if (volume.quota_inodes > 0 &&
          volume.used.inodes + 1 > static_cast<int64_t>(volume.quota_inodes)) {
        return Status(EDQUOT, "the volume's inode quota is used up");
      }
      return Status::Ok();
    }
    case pb::ShardStep::ADJUST_INODE:
    case pb::ShardStep::DROP_LINK: {
      Result<pb::Inode> inode = LoadInode(step.ino());
      if (!inode.ok())
        return inode.status().code() == ENOENT ? Changed("an inode") : inode.status();
      const pb::Attr& attr = inode->attr();
      if ((attr.mode() & S_IFMT) != step.type()) return Changed("an inode");
      if (step.kind() == pb::ShardStep::DROP_LINK) {
        if (!IsDir(*inode)) return Status::Ok();
        Result<bool> empty = IsEmptyDirectory(step.ino());
        if (!empty.ok()) return empty.status();
        return *empty ? Status::Ok() : Status(ENOTEMPTY, "directory not empty");
      }
      if (step.links_delta() > 0 && attr.nlink() == 0) return Status(ENOENT, "file was removed");
      if (step.links_delta() > 0 && attr.nlink() + step.links_delta() >= 65000) {
        return Status(EMLINK, "too many links");
      }
      if (step.new_parent() != 0 && attr.parent() != step.expect_parent()) {
        return Changed("a directory's parent");
      }
      return Status::Ok();
    }
    default:
      return Status(EINVAL, "unknown step of a cross-shard change");
  }
}

Status MetaStore::Prepare(const pb::ShardChange& change) {
  if (change.shard() != options_.shard) {
    return Status(EINVAL, "change for shard " + std::to_string(change.shard()) + " sent to shard " +
                              std::to_string(options_.shard));
  }
  std::vector<uint64_t> inos = HeldInodes(change);
  LockSet lock(*locks_, inos, Locks::Held::kIgnore);
  for (uint64_t ino : inos) {
    uint64_t holder = locks_->HolderOf(ino);
    if (holder == change.txid()) return Status::Ok();  // prepared already (a repeat)
    if (holder != 0) return Status(EAGAIN, "another operation across shards holds an inode");
  }
  for (const pb::ShardStep& step : change.steps()) SEALFS_RETURN_IF_ERROR(CheckStep(step));
  rocksdb::WriteBatch batch;
  batch.Put(cf_->service, PreparedKey(change.txid()), change.SerializeAsString());
  SEALFS_RETURN_IF_ERROR(Commit(batch));
  locks_->Hold(inos, change.txid());
  return Status::Ok();
}

Result<std::vector<Unlinked>> MetaStore::CommitPrepared(uint64_t txid, const OpenCheck& is_open) {
  auto found = ReadRecord<pb::ShardChange>(*db_, cf_->service, PreparedKey(txid));
  if (!found.ok()) return found.status();
  if (!found->has_value()) return std::vector<Unlinked>{};  // applied (or dropped) already
  const pb::ShardChange change = std::move(**found);
  LockSet lock(*locks_, HeldInodes(change), Locks::Held::kIgnore);
  // Another commit of the same change may have run while this one locked.
  auto again = ReadRecord<pb::ShardChange>(*db_, cf_->service, PreparedKey(txid));
  if (!again.ok()) return again.status();
  if (!again->has_value()) return std::vector<Unlinked>{};

  rocksdb::WriteBatch batch;
  UsageChanges changes;
  std::vector<Unlinked> unlinked;
  std::map<uint64_t, pb::Inode> touched;  // what the steps changed, written at the end
  std::set<uint64_t> written;             // inodes DropLink wrote or freed itself
  auto inode_of = [&](uint64_t ino) -> Result<pb::Inode*> {
    auto it = touched.find(ino);
    if (it == touched.end()) {
      Result<pb::Inode> loaded = LoadInode(ino);
      if (!loaded.ok()) return loaded.status();
      it = touched.emplace(ino, std::move(*loaded)).first;
    }
    return &it->second;
  };
  const int64_t now = change.time_ns();
  for (const pb::ShardStep& step : change.steps()) {
    switch (step.kind()) {
      case pb::ShardStep::ADD_ENTRY:
      case pb::ShardStep::REMOVE_ENTRY: {
        Result<pb::Inode*> dir = inode_of(step.dir());
        if (!dir.ok()) return dir.status();
        uint64_t seq = 0;
        if (LookupChild(step.dir(), step.name(), nullptr, &seq).ok()) {
          RemoveEntry(batch, step.dir(), step.name(), seq);
        }
        if (step.kind() == pb::ShardStep::ADD_ENTRY) {
          AddEntry(batch, **dir, step.name(), step.ino(), step.type());
        }
        pb::Attr* attr = (*dir)->mutable_attr();
        attr->set_nlink(
            static_cast<uint32_t>(static_cast<int64_t>(attr->nlink()) + step.dir_links()));
        attr->set_mtime_ns(now);
        attr->set_ctime_ns(now);
        break;
      }
      case pb::ShardStep::CREATE_INODE:
        touched[step.ino()] = step.inode();
        changes.Change(nullptr, &step.inode());
        for (const auto& [name, value] : step.xattrs()) {
          batch.Put(cf_->xattrs, XattrKey(step.ino(), name), value);
        }
        break;
      case pb::ShardStep::ADJUST_INODE: {
        Result<pb::Inode*> inode = inode_of(step.ino());
        if (!inode.ok()) return inode.status();
        pb::Attr* attr = (*inode)->mutable_attr();
        attr->set_nlink(
            static_cast<uint32_t>(static_cast<int64_t>(attr->nlink()) + step.links_delta()));
        if (step.new_parent() != 0) attr->set_parent(step.new_parent());
        attr->set_ctime_ns(now);
        break;
      }
      case pb::ShardStep::DROP_LINK: {
        Result<pb::Inode*> inode = inode_of(step.ino());
        if (!inode.ok()) return inode.status();
        unlinked.push_back(DropLink(batch, **inode, is_open, now, changes));
        written.insert(step.ino());
        break;
      }
      default:
        return Status(EINVAL, "unknown step of a cross-shard change");
    }
  }
  for (const auto& [ino, inode] : touched) {
    if (!written.count(ino)) PutInode(batch, inode);
  }
  batch.Delete(cf_->service, PreparedKey(txid));
  // Quota was checked when the change was planned; what it frees or takes
  // is counted as it is.
  SEALFS_RETURN_IF_ERROR(CommitCharged(batch, changes, true, false));
  locks_->Release(txid);
  return unlinked;
}

Status MetaStore::AbortPrepared(uint64_t txid) {
  auto found = ReadRecord<pb::ShardChange>(*db_, cf_->service, PreparedKey(txid));
  if (!found.ok()) return found.status();
  if (!found->has_value()) return Status::Ok();
  LockSet lock(*locks_, HeldInodes(**found), Locks::Held::kIgnore);
  rocksdb::WriteBatch batch;
  batch.Delete(cf_->service, PreparedKey(txid));
  SEALFS_RETURN_IF_ERROR(Commit(batch));
  locks_->Release(txid);
  return Status::Ok();
}

Result<std::vector<pb::ShardChange>> MetaStore::PreparedChanges() {
  return ReadRecords<pb::ShardChange>(*db_, cf_->service, kPreparedPrefix);
}

Status MetaStore::HoldPrepared() {
  rocksdb::ReadOptions once;
  once.fill_cache = false;  // read once at open
  auto prepared = ReadRecords<pb::ShardChange>(*db_, cf_->service, kPreparedPrefix, once);
  if (!prepared.ok()) return prepared.status();
  for (const pb::ShardChange& change : *prepared) locks_->Hold(HeldInodes(change), change.txid());
  return Status::Ok();
}

// ---- intents

uint64_t MetaStore::NewTxid() { return next_txid_.fetch_add(1); }

Status MetaStore::PutIntent(const pb::Intent& intent) {
  rocksdb::WriteBatch batch;
  batch.Put(cf_->service, IntentKey(intent.txid()), intent.SerializeAsString());
  batch.Put(cf_->service, kTxidHighWaterKey, EncodeIno(intent.txid()));
  return Commit(batch);
}

Status MetaStore::DeleteIntent(uint64_t txid) {
  rocksdb::WriteBatch batch;
  batch.Delete(cf_->service, IntentKey(txid));
  return Commit(batch);
}

Result<std::optional<pb::Intent>> MetaStore::FindIntent(uint64_t txid) {
  return ReadRecord<pb::Intent>(*db_, cf_->service, IntentKey(txid));
}

Result<std::vector<pb::Intent>> MetaStore::Intents() {
  return ReadRecords<pb::Intent>(*db_, cf_->service, kIntentPrefix);
}

Status MetaStore::LoadTxidHighWater() {
  uint64_t next = (static_cast<uint64_t>(options_.shard) << kShardBits) + 1;
  std::string mark;
  rocksdb::ReadOptions once;
  once.fill_cache = false;
  if (db_->Get(once, cf_->service, kTxidHighWaterKey, &mark).ok() && mark.size() == 8) {
    next = std::max(next, DecodeIno(mark.data()) + 1);
  }
  next_txid_ = next;
  return Status::Ok();
}

}  // namespace sealfs::metadata
