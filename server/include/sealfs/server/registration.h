// Registration: keeps a data server registered with the metadata service.
// It registers the server's targets, heartbeats every `interval` (renewing
// the lease and fetching the cluster map when it changed), reports resync
// progress, and registers again whenever the metadata server forgot it.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "sealfs/rpc/tcp_transport.h"
#include "sealfs/server/data_service.h"

namespace sealfs::server {

class Registration {
 public:
  using Progress = std::function<std::vector<pb::SyncProgress>()>;
  using Stats = std::function<pb::ReplicationStats()>;
  using Traffic = std::function<std::vector<pb::VolumeTraffic>()>;
  Registration(std::shared_ptr<rpc::Channel> meta, std::vector<StorageTarget*> targets,
               ChainView& view, std::string advertised_address, std::chrono::milliseconds interval);
  ~Registration();
  // `progress` and `stats` are asked for resync and replication reports at
  // every heartbeat.
  void Start(Progress progress, Stats stats, Traffic traffic = nullptr);
  void Stop();
  // Heartbeats now (a resync finished).
  void Wakeup() { wakeup_.notify_all(); }
  uint32_t server_id() const { return server_id_; }

 private:
  void Loop();
  Status Register();
  Status Heartbeat();

  std::shared_ptr<rpc::Channel> meta_;
  std::vector<StorageTarget*> targets_;
  ChainView& view_;
  std::string advertised_address_;
  std::chrono::milliseconds interval_;
  Progress progress_;
  Stats stats_;
  Traffic traffic_;
  std::atomic<uint32_t> server_id_{0};
  std::mutex mutex_;
  std::condition_variable wakeup_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace sealfs::server
