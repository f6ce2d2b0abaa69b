// The durable records of RequestLog in the service column family.
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include "handles.h"
#include "sealfs/metadata/meta_store.h"

namespace sealfs::metadata {

Result<std::optional<AppliedRequest>> MetaStore::FindApplied(const RequestKey& key) {
  std::string value;
  rocksdb::Status read = db_->Get(rocksdb::ReadOptions(), cf_->service, AppliedKey(key), &value);
  if (read.IsNotFound()) return std::optional<AppliedRequest>();
  if (!read.ok()) return Status(EIO, "reading a request record failed: " + read.ToString());
  return DecodeApplied(value);
}

Result<size_t> MetaStore::ForgetAppliedBefore(int64_t before_ns) {
  rocksdb::WriteBatch batch;
  size_t forgotten = 0;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cf_->service));
  for (it->Seek(kAppliedPrefix); it->Valid() && it->key().starts_with(kAppliedPrefix); it->Next()) {
    std::optional<AppliedRequest> applied = DecodeApplied(it->value().ToStringView());
    if (applied && applied->applied_ns >= before_ns) continue;
    batch.Delete(cf_->service, it->key());
    ++forgotten;
  }
  if (!it->status().ok()) return Status(EIO, "reading request records failed");
  if (forgotten == 0) return forgotten;
  // Not synced: a record that comes back after a crash is only forgotten later.
  rocksdb::WriteOptions write_options;
  rocksdb::Status status = db_->Write(write_options, &batch);
  if (!status.ok()) return Status(EIO, "forgetting request records failed: " + status.ToString());
  return forgotten;
}

}  // namespace sealfs::metadata
