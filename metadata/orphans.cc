// Orphans (unlinked files still open) and the chunk removals a MetaStore
// owes the data servers.
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include "handles.h"
#include "keys.h"
#include "quota.h"
#include "sealfs/metadata/meta_store.h"

namespace sealfs::metadata {

Result<std::vector<uint64_t>> MetaStore::Orphans() {
  std::vector<uint64_t> result;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, cf_->service));
  for (it->Seek(kOrphanPrefix); it->Valid() && it->key().starts_with(kOrphanPrefix); it->Next()) {
    result.push_back(DecodeIno(it->key().data() + kOrphanPrefix.size()));
  }
  SEALFS_RETURN_IF_ERROR(IteratorStatus(*it));
  return result;
}

Status MetaStore::ReleaseOrphan(uint64_t ino, const OpenCheck& is_open) {
  LockSet lock(*locks_, {ino});
  if (is_open && is_open(ino)) return Status::Ok();  // opened again meanwhile
  Result<pb::Inode> inode = LoadInode(ino);
  rocksdb::WriteBatch batch;
  if (!inode.ok()) {
    batch.Delete(cf_->service, OrphanKey(ino));
    return Commit(batch);
  }
  if (inode->attr().nlink() > 0) {
    batch.Delete(cf_->service, OrphanKey(ino));  // linked again: no longer an orphan
    return Commit(batch);
  }
  UsageChanges changes;
  FreeInode(batch, *inode, changes);
  return CommitCharged(batch, changes);
}

Result<std::vector<std::pair<uint64_t, pb::Layout>>> MetaStore::PendingRemovals() {
  std::vector<std::pair<uint64_t, pb::Layout>> result;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, cf_->service));
  for (it->Seek(kRemovalPrefix); it->Valid() && it->key().starts_with(kRemovalPrefix); it->Next()) {
    pb::Layout layout;
    layout.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()));
    result.emplace_back(DecodeIno(it->key().data() + kRemovalPrefix.size()), layout);
  }
  SEALFS_RETURN_IF_ERROR(IteratorStatus(*it));
  return result;
}

Status MetaStore::RemovalsDone(const std::vector<uint64_t>& inos) {
  if (inos.empty()) return Status::Ok();
  rocksdb::WriteBatch batch;
  for (uint64_t ino : inos) batch.Delete(cf_->service, RemovalKey(ino));
  return Commit(batch);
}

uint64_t MetaStore::UsedInodes() {
  uint64_t count = 0;
  db_->GetIntProperty(cf_->inodes, "rocksdb.estimate-num-keys", &count);
  return count;
}

}  // namespace sealfs::metadata
