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
#include <set>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "sealfs/metadata/meta_store.h"
#include "sealfs/rpc/service.h"
#include "sealfs/rpc/tcp_transport.h"

namespace sealfs::metadata {

struct MetaServiceOptions {
  std::chrono::seconds session_timeout{30};
  // A data server's lease: unheard for longer, its targets leave their chains.
  std::chrono::seconds server_timeout{10};
  // Copies of each chunk, for a new cluster (an existing one keeps its own).
  uint32_t replicas = 1;
  bool replicas_given = false;
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
  // How to reach one target: its server's channel and the store it holds.
  struct Route {
    uint32_t target_id = 0;
    std::shared_ptr<rpc::Channel> channel;
    std::string store_id;
  };
  // A member of a chain and the chain version to name.
  struct ChainRoute {
    Route route;
    pb::ChainRef ref;
  };
  enum class ChainEnd { kHead, kTail };
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

  // ---- chains.cc
  void LoadServers();
  bool ServerUp(const ServerState& state, Clock::time_point now) const;
  // With servers_mutex_ held: takes targets whose server's lease ran out
  // out of their chains and brings returning ones back; saves and publishes
  // a changed table. Returns whether it changed.
  bool ReconcileLocked();
  void SaveTableLocked();
  // The sweeper's lease check.
  void CheckLeases();
  Status RegisterServer(const pb::RegisterServerRequest& req, pb::RegisterServerResponse* resp);
  Status Heartbeat(const pb::HeartbeatRequest& req, pb::HeartbeatResponse* resp);
  // The chains new files stripe over (laying chains out first if needed).
  std::vector<uint32_t> PlacementChains();
  pb::ClusterMapResponse ClusterMap();
  Result<Route> RouteToTarget(uint32_t target_id);
  // The chain's first or last serving member; kStaleChain when it has none.
  Result<ChainRoute> RouteToChain(uint32_t chain_id, ChainEnd end);
  // Every member in a write path of the layout's chains; every member at all.
  std::vector<Route> LiveTargetsOf(const pb::Layout& layout);
  std::set<uint32_t> MembersOf(const pb::Layout& layout);

  // ---- data_servers.cc
  // Sends `request` (naming each chain and its member's store) to one end
  // of every chain at once, again for chains that are changing, and hands
  // every reply to `on_reply`; returns the first error.
  template <typename Request, typename Response>
  Status CallChains(const std::vector<uint32_t>& chain_ids, ChainEnd end,
                    rpc::Method<Request, Response> method, Request request,
                    std::function<void(const Response&)> on_reply = nullptr);
  // Cuts the file's data; returns what the servers still hold.
  Result<uint64_t> TruncateData(const pb::Inode& inode, uint64_t size);
  // Removes the chunks of freed files (a batch of them) from the data servers.
  void RemovePendingData();
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

  std::mutex servers_mutex_;  // servers, chain table, lost data
  std::map<uint32_t, ServerState> servers_;
  pb::ChainTable chain_table_;
  std::set<uint32_t> lost_data_;  // targets whose store was replaced
  std::unordered_map<std::string, std::shared_ptr<rpc::Channel>> channels_;
  std::atomic<uint64_t> map_version_{1};

  std::mutex sweep_mutex_;
  std::condition_variable sweep_wakeup_;
  bool stopping_ = false;
  std::thread sweeper_;
};

}  // namespace sealfs::metadata
