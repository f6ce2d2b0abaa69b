// The billing ledger of a MetaStore: per-volume usage samples by time, and
// the traffic each data server last reported per volume.
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include "handles.h"
#include "keys.h"
#include "sealfs/metadata/meta_store.h"

namespace sealfs::metadata {

Status MetaStore::AppendLedger(const std::vector<std::pair<uint64_t, pb::LedgerSample>>& samples) {
  rocksdb::WriteBatch batch;
  for (const auto& [volume, sample] : samples) {
    batch.Put(cf_->service, LedgerKey(volume, sample.time_ns()), sample.SerializeAsString());
  }
  return Commit(batch);
}

Result<std::vector<pb::LedgerSample>> MetaStore::ReadLedger(uint64_t volume_id, int64_t from_ns,
                                                            int64_t to_ns) {
  std::vector<pb::LedgerSample> samples;
  std::string prefix = std::string(kLedgerPrefix) + EncodeIno(volume_id);
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, cf_->service));
  // The last sample before `from` too: it says what was in force at `from`.
  it->SeekForPrev(LedgerKey(volume_id, from_ns));
  if (!it->Valid() || !it->key().starts_with(prefix)) it->Seek(prefix);
  for (; it->Valid() && it->key().starts_with(prefix); it->Next()) {
    pb::LedgerSample sample;
    if (!sample.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
      return Status(EIO, "a ledger record is corrupt");
    }
    if (sample.time_ns() > to_ns) break;
    samples.push_back(std::move(sample));
  }
  SEALFS_RETURN_IF_ERROR(IteratorStatus(*it));
  return samples;
}

Status MetaStore::PutTraffic(uint32_t server_id, const std::vector<pb::VolumeTraffic>& traffic) {
  if (traffic.empty()) return Status::Ok();
  rocksdb::WriteBatch batch;
  for (const pb::VolumeTraffic& volume : traffic) {
    batch.Put(cf_->service, TrafficKey(server_id, volume.volume_id()), volume.SerializeAsString());
  }
  return Commit(batch, /*sync=*/false);
}

Result<std::vector<std::pair<uint32_t, pb::VolumeTraffic>>> MetaStore::LoadTraffic() {
  std::vector<std::pair<uint32_t, pb::VolumeTraffic>> result;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, cf_->service));
  for (it->Seek(kTrafficPrefix); it->Valid() && it->key().starts_with(kTrafficPrefix); it->Next()) {
    if (it->key().size() != kTrafficPrefix.size() + 16) continue;
    pb::VolumeTraffic traffic;
    if (!traffic.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) continue;
    result.emplace_back(static_cast<uint32_t>(DecodeIno(it->key().data() + kTrafficPrefix.size())),
                        traffic);
  }
  SEALFS_RETURN_IF_ERROR(IteratorStatus(*it));
  return result;
}

Result<pb::CounterSnapshot> MetaStore::LoadCounters() {
  std::string value;
  pb::CounterSnapshot counters;
  rocksdb::Status read = db_->Get({}, cf_->service, kCountersKey, &value);
  if (read.IsNotFound()) return counters;
  if (!read.ok()) return Status(EIO, "reading counters: " + read.ToString());
  if (!counters.ParseFromString(value)) return Status(EIO, "the counters record is corrupt");
  return counters;
}

Status MetaStore::SaveCounters(const pb::CounterSnapshot& counters) {
  rocksdb::WriteBatch batch;
  batch.Put(cf_->service, kCountersKey, counters.SerializeAsString());
  // Not synced: a process crash keeps it; a machine crash may lose the last
  // interval, which is what the WAL sync policy of every other record allows.
  return Commit(batch, /*sync=*/false);
}

}  // namespace sealfs::metadata
