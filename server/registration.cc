#include "sealfs/server/registration.h"

#include <cstdio>

#include "sealfs/rpc/methods.h"
#include "sealfs/rpc/rdma_transport.h"

namespace sealfs::server {

namespace {
ChunkStoreUsage TotalUsage(const std::vector<StorageTarget*>& targets) {
  ChunkStoreUsage total;
  for (StorageTarget* target : targets) {
    ChunkStoreUsage usage = target->store->Usage();
    total.capacity_bytes += usage.capacity_bytes;
    total.free_bytes += usage.free_bytes;
    total.used_bytes += usage.used_bytes;
    total.chunk_count += usage.chunk_count;
  }
  return total;
}

void Fill(const rpc::TransportCounters& counters, pb::TransportStats* stats) {
  stats->set_messages_sent(counters.messages_sent);
  stats->set_bytes_sent(counters.bytes_sent);
  stats->set_rdma_read_ops(counters.rdma_read_ops);
  stats->set_rdma_read_bytes(counters.rdma_read_bytes);
  stats->set_rdma_write_ops(counters.rdma_write_ops);
  stats->set_rdma_write_bytes(counters.rdma_write_bytes);
}

constexpr auto kCallTimeout = std::chrono::seconds(5);
}  // namespace

Registration::Registration(std::shared_ptr<rpc::Channel> meta, std::vector<StorageTarget*> targets,
                           ChainView& view, std::string advertised_address,
                           std::chrono::milliseconds interval)
    : meta_(std::move(meta)),
      targets_(std::move(targets)),
      view_(view),
      advertised_address_(std::move(advertised_address)),
      interval_(interval) {}

Registration::~Registration() { Stop(); }

void Registration::Start(Progress progress, Stats stats, Traffic traffic) {
  progress_ = std::move(progress);
  stats_ = std::move(stats);
  traffic_ = std::move(traffic);
  thread_ = std::thread([this] { Loop(); });
}

void Registration::Stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wakeup_.notify_all();
  if (thread_.joinable()) thread_.join();
}

Status Registration::Register() {
  ChunkStoreUsage usage = TotalUsage(targets_);
  pb::RegisterServerRequest request;
  request.set_address(advertised_address_);
  request.set_instance_id(targets_.front()->store->instance_id());
  for (StorageTarget* target : targets_) request.add_targets(target->store->instance_id());
  request.set_capacity_bytes(usage.capacity_bytes);
  request.set_free_bytes(usage.free_bytes);
  pb::RegisterServerResponse response;
  Status status = rpc::Invoke(*meta_, rpc::meta::kRegisterServer, request, &response, {}, nullptr,
                              rpc::CallOptions{kCallTimeout});
  if (!status.ok()) return status;
  if (response.target_ids_size() != static_cast<int>(targets_.size())) {
    return Status(EPROTO, "the metadata server named " +
                              std::to_string(response.target_ids_size()) + " targets for " +
                              std::to_string(targets_.size()));
  }
  for (size_t i = 0; i < targets_.size(); ++i) {
    targets_[i]->id = response.target_ids(static_cast<int>(i));
  }
  server_id_ = response.server_id();
  std::fprintf(stderr, "sealfs-data: registered as data server %u\n", server_id_.load());
  return view_.Refresh();
}

Status Registration::Heartbeat() {
  ChunkStoreUsage usage = TotalUsage(targets_);
  pb::HeartbeatRequest request;
  request.set_server_id(server_id_);
  request.set_capacity_bytes(usage.capacity_bytes);
  request.set_free_bytes(usage.free_bytes);
  request.set_used_bytes(usage.used_bytes);
  request.set_chunk_count(usage.chunk_count);
  Fill(rpc::TcpCounters(), request.mutable_tcp());
  Fill(rpc::RdmaCounters(), request.mutable_rdma());
  if (stats_) *request.mutable_replication() = stats_();
  if (traffic_) {
    for (pb::VolumeTraffic& traffic : traffic_()) *request.add_traffic() = std::move(traffic);
  }
  if (progress_) {
    for (pb::SyncProgress& progress : progress_()) *request.add_sync() = std::move(progress);
  }
  pb::HeartbeatResponse response;
  auto sent = ChainView::Clock::now();
  Status status = rpc::Invoke(*meta_, rpc::meta::kHeartbeat, request, &response, {}, nullptr,
                              rpc::CallOptions{kCallTimeout});
  if (!status.ok()) return status;
  if (response.map_version() > view_.version()) SEALFS_RETURN_IF_ERROR(view_.Refresh());
  view_.LeaseRenewed(sent, std::chrono::milliseconds(response.lease_ms()));
  return Status::Ok();
}

void Registration::Loop() {
  std::string last_error;
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stopping_) {
    lock.unlock();
    Status status = server_id_ == 0 ? Register() : Status::Ok();
    if (status.ok()) {
      status = Heartbeat();
      if (status.code() == ENOENT) server_id_ = 0;  // forgotten: register again at once
    }
    if (!status.ok() && status.ToString() != last_error) {
      std::fprintf(stderr, "sealfs-data: metadata server: %s\n", status.ToString().c_str());
    }
    last_error = status.ok() ? "" : status.ToString();
    lock.lock();
    if (server_id_ == 0 && status.code() == ENOENT) continue;
    wakeup_.wait_for(lock, interval_);
  }
}

}  // namespace sealfs::server
