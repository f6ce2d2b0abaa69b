// The metadata store's on-disk format version, checked at open.
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include "handles.h"
#include "keys.h"
#include "sealfs/metadata/meta_store.h"

namespace sealfs::metadata {

// A new store is stamped with today's format. A store from before the
// format was recorded (format 1, with volumes or servers in it) and any
// other version are refused, never misread.
Status MetaStore::CheckFormat() {
  std::string stored;
  // Read once at open: no reason to keep its block in the cache.
  rocksdb::ReadOptions once;
  once.fill_cache = false;
  rocksdb::Status read = db_->Get(once, cf_->service, kFormatVersionKey, &stored);
  if (read.IsNotFound()) {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(once, cf_->service));
    it->SeekToFirst();
    if (it->Valid()) {
      return Status(ENOTSUP, "metadata store at " + options_.path +
                                 " has on-disk format version 1 (layouts that name servers); "
                                 "this sealfs-meta reads format version " +
                                 std::to_string(kFormatVersion) + " only");
    }
    rocksdb::WriteBatch batch;
    batch.Put(cf_->service, kFormatVersionKey, EncodeIno(kFormatVersion));
    return Commit(batch, /*sync=*/true);
  }
  if (!read.ok()) {
    return Status(EIO,
                  "cannot read the metadata store at " + options_.path + ": " + read.ToString());
  }
  uint64_t version = stored.size() == 8 ? DecodeIno(stored.data()) : 0;
  if (version != kFormatVersion) {
    return Status(ENOTSUP, "metadata store at " + options_.path + " has on-disk format version " +
                               (stored.size() == 8 ? std::to_string(version) : "unreadable") +
                               "; this sealfs-meta reads format version " +
                               std::to_string(kFormatVersion) + " only");
  }
  return Status::Ok();
}

}  // namespace sealfs::metadata
