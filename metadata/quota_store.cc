// The quota side of a MetaStore: usage records, reservations, fallocate,
// and recounting usage from the namespace.
#include <fcntl.h>
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>
#include <sys/stat.h>

#include <map>

#include "handles.h"
#include "keys.h"
#include "quota.h"
#include "sealfs/metadata/meta_store.h"

namespace sealfs::metadata {

namespace {
uint64_t RoundDown(uint64_t value) { return value / kQuotaBlock * kQuotaBlock; }
}  // namespace

Status MetaStore::LoadQuotaBook() {
  // Read past the block cache: opening should not warm it for later scans.
  rocksdb::ReadOptions options;
  options.fill_cache = false;
  std::vector<pb::Volume> volumes;
  {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(options, cf_->service));
    for (it->Seek(kVolumePrefix); it->Valid() && it->key().starts_with(kVolumePrefix); it->Next()) {
      pb::Volume volume;
      if (volume.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
        volumes.push_back(std::move(volume));
      }
    }
    SEALFS_RETURN_IF_ERROR(IteratorStatus(*it));
  }
  std::vector<pb::Volume> uncounted;
  for (const pb::Volume& volume : volumes) {
    std::string value;
    rocksdb::Status read = db_->Get(options, cf_->service, UsageKey(volume.id()), &value);
    if (read.IsNotFound()) {
      uncounted.push_back(volume);
      continue;
    }
    if (!read.ok()) return Status(EIO, "reading volume usage: " + read.ToString());
    quotas_->Set(volume.id(), {DecodeUsage(value), volume.quota_bytes(), volume.quota_inodes()});
  }
  if (uncounted.empty()) return Status::Ok();
  // Volumes made before usage was recorded: count them once now.
  Result<std::vector<pb::VolumeRecount>> counted = RecountUsage();
  if (!counted.ok()) return counted.status();
  rocksdb::WriteBatch batch;
  for (const pb::Volume& volume : uncounted) {
    Usage usage;
    for (const pb::VolumeRecount& recount : *counted) {
      if (recount.volume() == volume.name()) {
        usage = {static_cast<int64_t>(recount.counted_bytes()),
                 static_cast<int64_t>(recount.counted_inodes())};
      }
    }
    batch.Put(cf_->service, UsageKey(volume.id()), EncodeUsage(usage));
    quotas_->Set(volume.id(), {usage, volume.quota_bytes(), volume.quota_inodes()});
  }
  return Commit(batch);
}

MetaStore::VolumeUsage MetaStore::UsageOf(uint64_t volume_id) {
  QuotaBook::Entry entry = quotas_->Get(volume_id);
  return {static_cast<uint64_t>(std::max<int64_t>(0, entry.used.bytes)),
          static_cast<uint64_t>(std::max<int64_t>(0, entry.used.inodes)), entry.quota_bytes,
          entry.quota_inodes};
}

Result<pb::Inode> MetaStore::Reserve(uint64_t ino, uint64_t need_end, uint64_t want_end,
                                     int64_t need_until_ns, int64_t hold_until_ns) {
  if (need_end > kMaxFileSize) return Status(EFBIG, "file would exceed the largest size");
  want_end = std::min(std::max(want_end, need_end), kMaxFileSize);
  LockSet lock(*locks_, {ino});
  Result<pb::Inode> loaded = LoadInode(ino);
  if (!loaded.ok()) return loaded.status();
  if (!S_ISREG(loaded->attr().mode())) return Status(EINVAL, "not a regular file");
  const pb::Inode before = std::move(*loaded);
  uint64_t base = std::max({before.attr().size(), before.reserved_end(), need_end});
  if (base == before.reserved_end() && before.reserved_until_ns() >= need_until_ns &&
      want_end <= base) {
    return before;  // already covered
  }
  // Grow to want_end where the quota leaves room; otherwise just to base.
  uint64_t target = base;
  if (want_end > base) {
    uint64_t left = quotas_->BytesLeft(before.volume_id());
    uint64_t charged = ChargedBytes(before);
    uint64_t room = left > kMaxFileSize ? kMaxFileSize : RoundDown(charged + left);
    target = std::max(base, std::min(want_end, room));
  }
  for (;;) {
    pb::Inode inode = before;
    inode.set_reserved_end(target);
    inode.set_reserved_until_ns(std::max(before.reserved_until_ns(), hold_until_ns));
    UsageChanges changes;
    changes.Change(&before, &inode);
    rocksdb::WriteBatch batch;
    PutInode(batch, inode);
    batch.Put(cf_->service, ReserveKey(ino), "");
    Status committed = CommitCharged(batch, changes);
    if (committed.ok()) return inode;
    // Another writer took the room meanwhile: settle for what is needed.
    if (committed.code() != EDQUOT || target == base) return committed;
    target = base;
  }
}

Result<std::vector<pb::Inode>> MetaStore::ExpiredReservations(int64_t now_ns) {
  std::vector<pb::Inode> expired;
  std::vector<uint64_t> gone;
  {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, cf_->service));
    for (it->Seek(kReservePrefix); it->Valid() && it->key().starts_with(kReservePrefix);
         it->Next()) {
      if (it->key().size() != kReservePrefix.size() + 8) continue;
      uint64_t ino = DecodeIno(it->key().data() + kReservePrefix.size());
      Result<pb::Inode> inode = LoadInode(ino);
      if (inode.ok() && inode->reserved_until_ns() <= now_ns) expired.push_back(*inode);
      if (!inode.ok() && inode.status().code() == ENOENT) gone.push_back(ino);
    }
    SEALFS_RETURN_IF_ERROR(IteratorStatus(*it));
  }
  if (!gone.empty()) {
    rocksdb::WriteBatch batch;
    for (uint64_t ino : gone) batch.Delete(cf_->service, ReserveKey(ino));
    SEALFS_RETURN_IF_ERROR(Commit(batch, /*sync=*/false));
  }
  return expired;
}

Status MetaStore::ReleaseReservation(uint64_t ino, int64_t now_ns, uint64_t data_end) {
  LockSet lock(*locks_, {ino});
  Result<pb::Inode> inode = LoadInode(ino);
  rocksdb::WriteBatch batch;
  UsageChanges changes;
  if (inode.ok()) {
    // Renewed meanwhile: a capability naming it may be in use.
    if (inode->reserved_until_ns() > now_ns) return Status::Ok();
    const pb::Inode before = *inode;
    // Bytes written past the size but never committed stay charged (like
    // fallocated space) until a truncate below them.
    uint64_t written = std::min(data_end, std::max(inode->reserved_end(), inode->returned_end()));
    if (written > std::max(inode->attr().size(), inode->fallocated_end())) {
      inode->set_fallocated_end(written);
    }
    inode->clear_reserved_end();
    inode->clear_reserved_until_ns();
    inode->clear_returned_end();
    changes.Change(&before, &*inode);
    PutInode(batch, *inode);
  } else if (inode.status().code() != ENOENT) {
    return inode.status();
  }
  batch.Delete(cf_->service, ReserveKey(ino));
  // What was written is on the disks already: it is charged, quota or not.
  return CommitCharged(batch, changes, /*sync=*/false, /*enforced=*/false);
}

Status MetaStore::ReturnReservation(uint64_t ino, const std::function<bool()>& closed) {
  LockSet lock(*locks_, {ino});
  if (!closed()) return Status::Ok();
  Result<pb::Inode> inode = LoadInode(ino);
  if (!inode.ok()) return inode.status().code() == ENOENT ? Status::Ok() : inode.status();
  if (!S_ISREG(inode->attr().mode())) return Status::Ok();
  if (inode->reserved_end() <= std::max(inode->attr().size(), inode->fallocated_end())) {
    return Status::Ok();  // nothing unwritten is held
  }
  const pb::Inode before = *inode;
  // The expiry sweep (ReserveKey and reserved_until_ns stay) still asks the
  // data servers what was written below it.
  inode->set_returned_end(std::max(inode->returned_end(), inode->reserved_end()));
  inode->clear_reserved_end();
  UsageChanges changes;
  changes.Change(&before, &*inode);
  rocksdb::WriteBatch batch;
  PutInode(batch, *inode);
  return CommitCharged(batch, changes, /*sync=*/false);
}

Result<pb::Inode> MetaStore::Fallocate(uint64_t ino, uint32_t mode, uint64_t offset,
                                       uint64_t length) {
  if (mode & ~static_cast<uint32_t>(FALLOC_FL_KEEP_SIZE)) {
    return Status(EOPNOTSUPP, "only mode 0 and FALLOC_FL_KEEP_SIZE reserve space");
  }
  if (length == 0) return Status(EINVAL, "fallocate of zero bytes");
  if (offset > kMaxFileSize || length > kMaxFileSize - offset) {
    return Status(EFBIG, "file would exceed the largest size");
  }
  uint64_t end = offset + length;
  LockSet lock(*locks_, {ino});
  Result<pb::Inode> inode = LoadInode(ino);
  if (!inode.ok()) return inode.status();
  if (IsDir(*inode)) return Status(EISDIR, "cannot fallocate a directory");
  if (!S_ISREG(inode->attr().mode())) return Status(ENODEV, "not a regular file");
  const pb::Inode before = *inode;
  if (end > inode->fallocated_end()) inode->set_fallocated_end(end);
  int64_t now = NowNs();
  if (!(mode & FALLOC_FL_KEEP_SIZE) && end > inode->attr().size()) {
    inode->mutable_attr()->set_size(end);
    inode->mutable_attr()->set_mtime_ns(now);
  }
  inode->mutable_attr()->set_ctime_ns(now);
  UsageChanges changes;
  changes.Change(&before, &*inode);
  rocksdb::WriteBatch batch;
  PutInode(batch, *inode);
  SEALFS_RETURN_IF_ERROR(CommitCharged(batch, changes));
  return inode;
}

Result<std::vector<pb::VolumeRecount>> MetaStore::RecountUsage() {
  // One snapshot for the namespace and the records, so that a change
  // committing meanwhile is in both or in neither.
  const rocksdb::Snapshot* snapshot = db_->GetSnapshot();
  rocksdb::ReadOptions read;
  read.snapshot = snapshot;
  std::map<uint64_t, Usage> counted;
  Status status = Status::Ok();
  {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read, cf_->inodes));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      pb::Inode inode;
      if (!inode.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
        status = Status(EIO, "an inode record is corrupt");
        break;
      }
      Usage& usage = counted[inode.volume_id()];
      usage.bytes += static_cast<int64_t>(ChargedBytes(inode));
      usage.inodes += 1;
    }
    if (status.ok()) status = IteratorStatus(*it);
  }
  std::vector<pb::VolumeRecount> result;
  if (status.ok()) {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read, cf_->service));
    for (it->Seek(kVolumePrefix); it->Valid() && it->key().starts_with(kVolumePrefix); it->Next()) {
      pb::Volume volume;
      if (!volume.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
        continue;
      }
      pb::VolumeRecount recount;
      recount.set_volume(volume.name());
      Usage count = counted[volume.id()];
      recount.set_counted_bytes(static_cast<uint64_t>(count.bytes));
      recount.set_counted_inodes(static_cast<uint64_t>(count.inodes));
      std::string value;
      if (db_->Get(read, cf_->service, UsageKey(volume.id()), &value).ok()) {
        Usage recorded = DecodeUsage(value);
        recount.set_recorded_bytes(static_cast<uint64_t>(recorded.bytes));
        recount.set_recorded_inodes(static_cast<uint64_t>(recorded.inodes));
      }
      result.push_back(std::move(recount));
    }
    status = IteratorStatus(*it);
  }
  db_->ReleaseSnapshot(snapshot);
  if (!status.ok()) return status;
  return result;
}

}  // namespace sealfs::metadata
