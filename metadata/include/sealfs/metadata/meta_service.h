// MetaService: the metadata RPC service over a MetaStore. It adds what needs
// more than one shard's store: client sessions and their open files, the
// live state of data servers, and cutting, measuring or removing file data
// on them.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>

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
  // True when a client holds the file open — or may: right after a restart,
  // until every session known before it has announced its open files again.
  bool IsOpen(uint64_t ino);

 private:
  using Clock = std::chrono::steady_clock;
  struct Session {
    Clock::time_point last_seen;
    std::unordered_map<uint64_t, int> open_counts;
  };
  struct ServerState {
    pb::DataServer record;
    Clock::time_point last_heartbeat;
    bool heard = false;
  };
  // How to reach one data server: its channel and the store it must hold.
  struct Route {
    uint32_t server_id = 0;
    std::shared_ptr<rpc::Channel> channel;
    std::string store_id;
  };
  // What the data servers hold of one file.
  struct DataUsage {
    uint64_t data_end = 0;
    uint64_t allocated_bytes = 0;
  };

  // ---- sessions.cc
  // Returns true when the session was not known before.
  bool TouchSession(uint64_t session_id);
  void OpenFile(uint64_t session_id, uint64_t ino);
  // Returns true when this was the last open of the file anywhere.
  bool CloseFile(uint64_t session_id, uint64_t ino);
  void AnnounceOpenFiles(uint64_t session_id, const std::vector<uint64_t>& inos);
  void ExpireSessions();
  bool InRestartGrace();
  void RememberSession(uint64_t session_id);

  // ---- data_servers.cc
  void LoadServers();
  std::vector<uint32_t> PlacementServers();
  pb::ClusterMapResponse ClusterMap();
  Result<Route> RouteTo(uint32_t server_id);
  // Sends `request` (with each server's store id) to `servers` at once and
  // hands every reply to `on_reply`; returns the first error after all answered.
  template <typename Request, typename Response>
  Status CallServers(const std::vector<uint32_t>& servers, rpc::Method<Request, Response> method,
                     Request request, std::chrono::milliseconds timeout,
                     std::function<void(const Response&)> on_reply = nullptr);
  // Cuts the file's data; returns what the servers still hold.
  Result<uint64_t> TruncateData(const pb::Inode& inode, uint64_t size);
  // Removes the chunks of freed files (a batch of them) from the data servers.
  void RemovePendingData();
  // True when another store now answers at the server's address (its disk
  // was replaced) or the server is unknown.
  bool StoreReplaced(uint32_t server_id);
  // What the servers hold of the file's first `size` bytes.
  Result<DataUsage> FileUsage(const pb::Inode& inode, uint64_t size,
                              std::chrono::milliseconds timeout);
  void ReleaseOrphanIfClosed(uint64_t ino);
  // Wakes the sweeper when an unlink freed a file whose chunks must go.
  void AfterUnlink(const Unlinked& unlinked);

  // ---- meta_service.cc
  Result<pb::Inode> CommitWrite(const pb::CommitWriteRequest& request);

  MetaStore& store_;
  rpc::IoThreads& io_;
  MetaServiceOptions options_;
  const Clock::time_point started_ = Clock::now();

  std::mutex sessions_mutex_;
  std::unordered_map<uint64_t, Session> sessions_;
  std::unordered_map<uint64_t, int> open_totals_;
  // Sessions recorded before this start that have not announced themselves
  // since: until they do (or time out), any file may be open.
  std::unordered_set<uint64_t> unannounced_sessions_;

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
