// Metering for billing: the traffic data servers count per volume, and the
// ledger sample recorded for every volume at a fixed interval.
#include <cstdio>

#include "sealfs/metadata/meta_service.h"
#include "sealfs/rpc/credentials.h"

namespace sealfs::metadata {

void MetaService::NoteTraffic(uint32_t server_id, const std::vector<pb::VolumeTraffic>& traffic) {
  if (traffic.empty()) return;
  {
    std::lock_guard<std::mutex> lock(traffic_mutex_);
    auto& known = traffic_[server_id];
    for (const pb::VolumeTraffic& volume : traffic) known[volume.volume_id()] = volume;
  }
  // Kept so that the sums never go back after this server restarts.
  Status saved = store_.PutTraffic(server_id, traffic);
  if (!saved.ok()) {
    std::fprintf(stderr, "sealfs-meta: recording traffic: %s\n", saved.ToString().c_str());
  }
}

std::map<uint64_t, pb::VolumeTraffic> MetaService::TrafficByVolume() {
  std::map<uint64_t, pb::VolumeTraffic> sums;
  std::lock_guard<std::mutex> lock(traffic_mutex_);
  for (const auto& [server, volumes] : traffic_) {
    for (const auto& [id, traffic] : volumes) {
      pb::VolumeTraffic& sum = sums[id];
      sum.set_volume_id(id);
      sum.set_bytes_read(sum.bytes_read() + traffic.bytes_read());
      sum.set_bytes_written(sum.bytes_written() + traffic.bytes_written());
      sum.set_read_ops(sum.read_ops() + traffic.read_ops());
      sum.set_write_ops(sum.write_ops() + traffic.write_ops());
    }
  }
  return sums;
}

void MetaService::RecordLedger() {
  Result<std::vector<pb::Volume>> volumes = store_.ListVolumes();
  if (!volumes.ok()) return;
  std::map<uint64_t, pb::VolumeTraffic> traffic = TrafficByVolume();
  int64_t now = auth::WallClockNs();
  std::vector<std::pair<uint64_t, pb::LedgerSample>> samples;
  for (const pb::Volume& volume : *volumes) {
    pb::LedgerSample sample;
    sample.set_time_ns(now);
    sample.set_used_bytes(volume.used_bytes());
    sample.set_used_inodes(volume.used_inodes());
    const pb::VolumeTraffic& moved = traffic[volume.id()];
    sample.set_bytes_read(moved.bytes_read());
    sample.set_bytes_written(moved.bytes_written());
    sample.set_read_ops(moved.read_ops());
    sample.set_write_ops(moved.write_ops());
    samples.emplace_back(volume.id(), sample);
  }
  Status saved = store_.AppendLedger(samples);
  if (!saved.ok()) {
    std::fprintf(stderr, "sealfs-meta: recording the ledger: %s\n", saved.ToString().c_str());
  }
}

void MetaService::CountOperation(uint64_t volume_id, const char* method) {
  if (counters_ == nullptr) return;
  metrics::Labels labels;
  {
    std::lock_guard<std::mutex> lock(labels_mutex_);
    auto found = volume_labels_.find(volume_id);
    if (found != volume_labels_.end()) labels = found->second;
  }
  if (labels.empty()) {
    Result<pb::Volume> volume = store_.GetVolumeById(volume_id);
    if (!volume.ok()) return;
    labels = {{"volume", volume->name()}, {"tenant", volume->tenant()}};
    std::lock_guard<std::mutex> lock(labels_mutex_);
    volume_labels_[volume_id] = labels;
  }
  labels.emplace_back("op", method);
  counters_->Add("sealfs_volume_operations_total", labels);
}

void MetaService::AttachMetrics(metrics::Registry& registry, metrics::DurableCounters& counters) {
  counters_ = &counters;
  registry.AddCollector([this](metrics::Registry& r) { CollectMetrics(r); });
}

void MetaService::CollectMetrics(metrics::Registry& r) {
  Status saved = counters_->Publish(r);
  if (!saved.ok()) {
    std::fprintf(stderr, "sealfs-meta: saving counters: %s\n", saved.ToString().c_str());
  }
  Result<std::vector<pb::Volume>> volumes = store_.ListVolumes();
  std::map<uint64_t, pb::VolumeTraffic> traffic = TrafficByVolume();
  if (volumes.ok()) {
    for (const pb::Volume& volume : *volumes) {
      metrics::Labels labels{{"volume", volume.name()}, {"tenant", volume.tenant()}};
      auto gauge = [&](const char* name, const char* help, uint64_t value) {
        r.GetGauge(name, help, labels).Set(static_cast<double>(value));
      };
      gauge("sealfs_volume_used_bytes", "Bytes a volume is charged (sizes rounded up to 4 KiB).",
            volume.used_bytes());
      gauge("sealfs_volume_used_inodes", "Inodes of a volume.", volume.used_inodes());
      gauge("sealfs_volume_quota_bytes", "A volume's byte quota (0: none).", volume.quota_bytes());
      gauge("sealfs_volume_quota_inodes", "A volume's inode quota (0: none).",
            volume.quota_inodes());
      gauge("sealfs_volume_mounts", "Sessions mounting a volume.", SessionsOf(volume.id()));
      // Sums of what data servers saved: they never go back.
      const pb::VolumeTraffic& moved = traffic[volume.id()];
      auto counter = [&](const char* name, const char* help, uint64_t value) {
        metrics::Counter& c = r.GetCounter(name, help, labels);
        if (value > c.value()) c.Add(value - c.value());
      };
      counter("sealfs_volume_read_bytes_total", "Bytes clients read from a volume.",
              moved.bytes_read());
      counter("sealfs_volume_written_bytes_total", "Bytes clients wrote to a volume.",
              moved.bytes_written());
      counter("sealfs_volume_read_ops_total", "Chunk reads of a volume.", moved.read_ops());
      counter("sealfs_volume_write_ops_total", "Chunk writes of a volume.", moved.write_ops());
    }
  }
  pb::ClusterMapResponse map = ClusterMap();
  std::map<std::string, int> servers_by_state{{"up", 0}, {"down", 0}};
  uint64_t capacity = 0, free = 0;
  for (const pb::DataServer& server : map.servers()) {
    ++servers_by_state[server.state()];
    capacity += server.capacity_bytes();
    free += server.free_bytes();
  }
  for (const auto& [state, count] : servers_by_state) {
    r.GetGauge("sealfs_data_servers", "Data servers by state.", {{"state", state}}).Set(count);
  }
  r.GetGauge("sealfs_cluster_capacity_bytes", "Raw capacity of every data server's disks.")
      .Set(static_cast<double>(capacity));
  r.GetGauge("sealfs_cluster_free_bytes", "Raw free space of every data server's disks.")
      .Set(static_cast<double>(free));
  std::map<std::string, int> members_by_state{{"serving", 0}, {"syncing", 0}, {"offline", 0}};
  int lost = 0;
  for (const pb::Chain& chain : map.chains()) {
    lost += chain.lost();
    for (const pb::ChainMember& member : chain.members()) ++members_by_state[member.state()];
  }
  for (const auto& [state, count] : members_by_state) {
    r.GetGauge("sealfs_chain_members", "Members of replication chains by state.",
               {{"state", state}})
        .Set(count);
  }
  r.GetGauge("sealfs_chains_lost", "Chains no member holds the data of any more.").Set(lost);
}

}  // namespace sealfs::metadata
