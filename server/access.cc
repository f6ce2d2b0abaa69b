// What a data server lets in: other servers (by their proof of the cluster
// key) and clients with a capability the metadata server signed; and the
// per-volume traffic counts that metering and billing read.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "sealfs/rpc/credentials.h"
#include "sealfs/rpc/durable_counters.h"
#include "sealfs/rpc/process.h"
#include "sealfs/server/data_service.h"

namespace sealfs::server {

Status DataService::CheckServer(const pb::Auth& auth) {
  if (auth::IsServerProof(cluster_key_, auth.server_proof())) return Status::Ok();
  return Status(EACCES, auth.server_proof().empty()
                            ? "only SealFS servers may make this request"
                            : "the server proof is wrong (another cluster key?)");
}

Status DataService::CheckCapability(const pb::Capability& cap, uint64_t ino, uint32_t right) {
  SEALFS_RETURN_IF_ERROR(auth::VerifyCapability(cap, cluster_key_, auth::WallClockNs()));
  if (cap.ino() != ino) {
    return Status(EACCES, "the capability is for inode " + std::to_string(cap.ino()) + ", not " +
                              std::to_string(ino));
  }
  if ((cap.rights() & right) != right) {
    return Status(EACCES, right == pb::CAP_WRITE ? "the capability does not allow writing"
                                                 : "the capability does not allow reading");
  }
  return Status::Ok();
}

Status DataService::CheckChainOf(const pb::Capability& cap, const pb::ChainRef& chain,
                                 std::optional<uint32_t> index) {
  const auto& stripe = cap.stripe();
  bool allowed = false;
  if (index && !stripe.empty()) {
    allowed = static_cast<uint32_t>(stripe[static_cast<int>(*index % stripe.size())]) == chain.id();
  } else if (!index) {
    allowed = std::find(stripe.begin(), stripe.end(), chain.id()) != stripe.end();
  }
  if (allowed) return Status::Ok();
  return Status(EACCES, "chain " + std::to_string(chain.id()) +
                            " does not hold this chunk of the capability's file");
}

void DataService::CountTraffic(uint64_t volume_id, bool write, uint64_t bytes) {
  std::lock_guard<std::mutex> lock(traffic_mutex_);
  pb::VolumeTraffic& traffic = traffic_[volume_id];
  traffic.set_volume_id(volume_id);
  if (write) {
    traffic.set_bytes_written(traffic.bytes_written() + bytes);
    traffic.set_write_ops(traffic.write_ops() + 1);
  } else {
    traffic.set_bytes_read(traffic.bytes_read() + bytes);
    traffic.set_read_ops(traffic.read_ops() + 1);
  }
}

void DataService::LoadTraffic() {
  if (traffic_file_.empty()) return;
  std::ifstream in(traffic_file_, std::ios::binary);
  if (!in) return;  // nothing counted yet
  std::stringstream text;
  text << in.rdbuf();
  pb::HeartbeatRequest saved;  // its `traffic` list is the file's format
  if (!saved.ParseFromString(text.str())) {
    std::fprintf(stderr, "sealfs-data: %s is corrupt; traffic counts start again from zero\n",
                 traffic_file_.c_str());
    return;
  }
  std::lock_guard<std::mutex> lock(traffic_mutex_);
  for (const pb::VolumeTraffic& traffic : saved.traffic()) traffic_[traffic.volume_id()] = traffic;
  saved_traffic_.assign(saved.traffic().begin(), saved.traffic().end());
}

std::vector<pb::VolumeTraffic> DataService::SaveTraffic() {
  // One saver at a time, so that a slower one never overwrites newer counts.
  std::lock_guard<std::mutex> saving(save_mutex_);
  pb::HeartbeatRequest snapshot;
  {
    std::lock_guard<std::mutex> lock(traffic_mutex_);
    for (const auto& [id, traffic] : traffic_) *snapshot.add_traffic() = traffic;
  }
  std::string bytes = snapshot.SerializeAsString();
  // Unchanged since the last save (an idle server): no write, no fsync.
  if (bytes == saved_bytes_) return saved_traffic_;
  if (!traffic_file_.empty()) {
    Status saved = WriteFileAtomically(traffic_file_, bytes);
    if (!saved.ok()) {
      // Report what a restart would start from, never more.
      std::fprintf(stderr, "sealfs-data: saving traffic counts: %s\n", saved.ToString().c_str());
      return saved_traffic_;
    }
  }
  saved_traffic_.assign(snapshot.traffic().begin(), snapshot.traffic().end());
  saved_bytes_ = std::move(bytes);
  return saved_traffic_;
}

void CollectDataMetrics(metrics::Registry& r, metrics::DurableCounters& counters,
                        DataService& service) {
  Status saved = counters.Publish(r);
  if (!saved.ok()) {
    std::fprintf(stderr, "sealfs-data: saving counters: %s\n", saved.ToString().c_str());
  }
  // Traffic as saved (SaveTraffic): what a restart starts from.
  for (const pb::VolumeTraffic& traffic : service.SaveTraffic()) {
    metrics::Labels labels{{"volume_id", std::to_string(traffic.volume_id())}};
    auto counter = [&](const char* name, const char* help, uint64_t value) {
      metrics::Counter& c = r.GetCounter(name, help, labels);
      if (value > c.value()) c.Add(value - c.value());
    };
    counter("sealfs_data_volume_read_bytes_total", "Bytes clients read, by volume.",
            traffic.bytes_read());
    counter("sealfs_data_volume_written_bytes_total", "Bytes clients wrote, by volume.",
            traffic.bytes_written());
    counter("sealfs_data_volume_read_ops_total", "Chunk reads, by volume.", traffic.read_ops());
    counter("sealfs_data_volume_write_ops_total", "Chunk writes, by volume.", traffic.write_ops());
  }
  for (StorageTarget* target : service.targets()) {
    ChunkStoreUsage usage = target->store->Usage();
    metrics::Labels labels{{"target", std::to_string(target->id.load())}};
    r.GetGauge("sealfs_target_capacity_bytes", "A storage target's disk size.", labels)
        .Set(static_cast<double>(usage.capacity_bytes));
    r.GetGauge("sealfs_target_free_bytes", "Free space on a storage target's disk.", labels)
        .Set(static_cast<double>(usage.free_bytes));
    r.GetGauge("sealfs_target_used_bytes", "Bytes a storage target's chunks take.", labels)
        .Set(static_cast<double>(usage.used_bytes));
    r.GetGauge("sealfs_target_chunks", "Chunks on a storage target.", labels)
        .Set(static_cast<double>(usage.chunk_count));
  }
  r.GetGauge("sealfs_data_lease_valid",
             "1 while this server's lease from the metadata service holds.")
      .Set(service.view().LeaseValid() ? 1 : 0);
}

}  // namespace sealfs::server
