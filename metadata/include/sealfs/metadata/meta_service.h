// MetaService: the metadata RPC service over a MetaStore. It adds what needs
// more than one shard's store: client sessions and their open files, the
// live state of data servers, and cutting or removing file data on them.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "sealfs/metadata/meta_store.h"
#include "sealfs/rpc/service.h"
#include "sealfs/rpc/tcp_transport.h"

namespace sealfs::metadata {

struct MetaServiceOptions {
  std::chrono::seconds session_timeout{30};
  std::chrono::seconds server_timeout{10};
  std::chrono::milliseconds sweep_interval{1000};
};

class MetaService {
 public:
  MetaService(MetaStore& store, rpc::IoThreads& io, MetaServiceOptions options = {});
  ~MetaService();

  void RegisterHandlers(rpc::Dispatcher& dispatcher);
  // Starts the background sweeper: chunk removal, session expiry, orphans.
  void Start();
  void Stop();

  // Runs one sweep now (tests use it instead of waiting).
  void SweepOnce();
  bool IsOpen(uint64_t ino);

 private:
  struct Session {
    std::chrono::steady_clock::time_point last_seen;
    std::unordered_map<uint64_t, int> open_counts;
  };
  struct ServerState {
    pb::DataServer record;
    std::chrono::steady_clock::time_point last_heartbeat;
    bool heard = false;
  };

  void TouchSession(uint64_t session_id);
  void OpenFile(uint64_t session_id, uint64_t ino);
  // Returns true when this was the last open of the file anywhere.
  bool CloseFile(uint64_t session_id, uint64_t ino);
  void AfterUnlink(const Unlinked& unlinked);
  Status TruncateData(const pb::Inode& inode, uint64_t size);
  std::vector<uint32_t> ServerIds();
  pb::ClusterMapResponse ClusterMap();
  std::shared_ptr<rpc::Channel> ChannelTo(uint32_t server_id);
  template <typename Request, typename Response>
  Status CallEveryServer(const pb::Layout& layout, rpc::Method<Request, Response> method,
                         const Request& request, std::chrono::milliseconds timeout);

  MetaStore& store_;
  rpc::IoThreads& io_;
  MetaServiceOptions options_;
  const std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();

  std::mutex sessions_mutex_;
  std::unordered_map<uint64_t, Session> sessions_;
  std::unordered_map<uint64_t, int> open_totals_;

  std::mutex servers_mutex_;
  std::map<uint32_t, ServerState> servers_;
  std::unordered_map<std::string, std::shared_ptr<rpc::Channel>> channels_;
  std::atomic<uint64_t> map_version_{1};

  std::mutex sweep_mutex_;
  std::condition_variable sweep_wakeup_;
  bool stopping_ = false;
  std::thread sweeper_;
};

}  // namespace sealfs::metadata
