// MetaService: the metadata RPC service over a MetaStore. It adds what needs
// more than one shard's store: client sessions and their open files, the
// live state of data servers, and cutting, measuring or removing file data
// on them.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "sealfs/metadata/meta_store.h"
#include "sealfs/rpc/durable_counters.h"
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
  // The cluster key (capabilities, server proofs) and a hash of the admin
  // credential. Both are required.
  std::string cluster_key;
  std::string admin_hash;
  // How long a capability is valid; clients renew it at half of it.
  std::chrono::seconds capability_ttl{30};
  // How often each volume's usage is recorded in the billing ledger.
  std::chrono::seconds ledger_interval{60};
};

// Quota a new file reserves with its first capability, so that writing
// its first bytes needs no round trip of its own.
inline constexpr uint64_t kFirstReservation = 1u << 20;

// Who a request comes from, as its Auth proved.
struct Principal {
  enum class Kind { kNobody, kSession, kAdmin, kServer };
  Kind kind = Kind::kNobody;
  uint64_t session_id = 0;
  uint64_t volume_id = 0;  // sessions: the volume they mounted
};

// What a method requires of its caller.
enum class Access {
  kMount,   // nothing (the request proves itself: a mount token)
  kClient,  // a session (only inodes of its volume) or the admin
  kAdmin,   // the admin
  kServer,  // a SealFS server
  kAnyone,  // any of session, admin or server
};

class MetaService {
 public:
  MetaService(MetaStore& store, rpc::IoThreads& io, MetaServiceOptions options = {});
  ~MetaService();

  void RegisterHandlers(rpc::Dispatcher& dispatcher);
  // Publishes this server's metrics into `registry` (volumes' usage and
  // traffic, operations by volume, data servers and chains), counting into
  // `counters`. Call before RegisterHandlers.
  void AttachMetrics(metrics::Registry& registry, metrics::DurableCounters& counters);
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
  // What authenticates a session (kept apart from the open-file state, which
  // a restart loses while this is recorded in the store).
  struct SessionAuth {
    uint64_t volume_id = 0;
    std::string key_hash;
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

  // ---- access.cc
  Result<Principal> Authenticate(const pb::Auth& auth, Access access);
  // EACCES unless every inode belongs to the session's volume (admin and
  // servers may name any); ENOENT for one that does not exist.
  Status CheckInodes(const Principal& who, std::initializer_list<uint64_t> inos);
  // A session for `volume_id`: its id and key.
  Result<std::pair<uint64_t, std::string>> NewSession(uint64_t volume_id);
  // Ends every session of the volume; returns how many there were.
  size_t EndSessionsOf(uint64_t volume_id);
  size_t SessionsOf(uint64_t volume_id);
  // A capability for the file: read, and with `write` also writing below
  // need_end (reserving quota up to want_end where it allows).
  Result<pb::Capability> IssueCapability(uint64_t ino, uint64_t session_id, bool write,
                                         uint64_t need_end, uint64_t want_end);
  int64_t CapabilityTtlNs() const;
  // How long a reservation made at `now` lasts: two capability lifetimes, so
  // that a capability issued under it expires first.
  int64_t ReservationUntilNs(int64_t now) const;
  // Registers `method` with an access rule: `handler(principal, request,
  // response)` runs only for a caller the rule admits.
  template <typename Request, typename Response, typename Handler>
  void Serve(rpc::Dispatcher& d, rpc::Method<Request, Response> method, Access access,
             Handler handler, rpc::Runs runs = rpc::Runs::kOnWorker) {
    d.Register(method,
               {[this, access, handler, name = method.name](
                    const Request& request, Response* response, rpc::RequestContext&) -> Status {
                 Result<Principal> who = Authenticate(request.auth(), access);
                 if (!who.ok()) return who.status();
                 if (who->kind == Principal::Kind::kSession) CountOperation(who->volume_id, name);
                 return handler(*who, request, response);
               }},
               runs);
  }
  // Registers a change that a retry must not apply twice (RequestLog): a
  // numbered request of a session that was applied already gets the first
  // answer, or, once that is gone from memory (a restart), the one
  // `replay(principal, request, applied, response)` rebuilds from the
  // state the change left.
  template <typename Request, typename Response, typename Handler, typename Replay>
  void ServeOnce(rpc::Dispatcher& d, rpc::Method<Request, Response> method, Handler handler,
                 Replay replay) {
    Serve(d, method, Access::kClient,
          [this, handler, replay](const Principal& who, const Request& request,
                                  Response* response) -> Status {
            uint64_t seq = request.auth().request_seq();
            if (who.kind != Principal::Kind::kSession || seq == 0) {
              return handler(who, request, response);
            }
            RequestKey key{who.session_id, seq};
            RequestLog::Scope scope(request_log_, key);
            if (std::optional<std::string> answer = request_log_.Answer(key)) {
              return response->ParseFromString(*answer)
                         ? Status::Ok()
                         : Status(EIO, "a kept answer does not parse");
            }
            Result<std::optional<AppliedRequest>> applied = store_.FindApplied(key);
            if (!applied.ok()) return applied.status();
            if (applied->has_value()) return replay(who, request, **applied, response);
            Status status = handler(who, request, response);
            if (status.ok()) request_log_.RememberAnswer(key, response->SerializeAsString());
            return status;
          });
  }
  void RegisterNamespaceHandlers(rpc::Dispatcher& d);
  void RegisterFileHandlers(rpc::Dispatcher& d);
  void RegisterAdminHandlers(rpc::Dispatcher& d);

  // ---- billing.cc (metering and billing)
  void CountOperation(uint64_t volume_id, const char* method);
  void CollectMetrics(metrics::Registry& registry);
  void RecordLedger();
  void NoteTraffic(uint32_t server_id, const std::vector<pb::VolumeTraffic>& traffic);
  // Sum over data servers of the traffic they counted for each volume.
  std::map<uint64_t, pb::VolumeTraffic> TrafficByVolume();

  // ---- sessions.cc
  // Returns true when the session was not known before.
  bool TouchSession(uint64_t session_id);
  void OpenFile(uint64_t session_id, uint64_t ino);
  // Returns true when this was the last open of the file anywhere.
  bool CloseFile(uint64_t session_id, uint64_t ino);
  void AnnounceOpenFiles(uint64_t session_id, const std::vector<uint64_t>& inos);
  void ExpireSessions();
  bool InRestartGrace();

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
  // One pass over freed files; true if more are waiting than one pass takes.
  bool RemovePendingData();
  // Forgets records of applied requests older than any retry.
  void ForgetOldRequests();
  // What the servers hold of the file's first `size` bytes.
  Result<DataUsage> FileUsage(const pb::Inode& inode, uint64_t size,
                              std::chrono::milliseconds timeout);
  void ReleaseOrphanIfClosed(uint64_t ino);
  // The attributes of a directory after a change a request made in it, for
  // the reply: the kernel asks for them after every change.
  void DirectoryAfter(uint64_t dir, pb::Attr* out);
  // Has the sweeper remove freed files' chunks when an unlink freed one.
  void AfterUnlink(const Unlinked& unlinked);
  // Removes freed files' chunks shortly: the removals of a burst of unlinks
  // go to the data servers in one pass, off the unlinks' path.
  void RemoveDataSoon();
  static constexpr std::chrono::milliseconds kRemovalDelay{50};

  // ---- meta_service.cc
  Result<pb::Inode> CommitWrite(const pb::CommitWriteRequest& request);
  void ReleaseReservations();

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
  std::unordered_map<uint64_t, SessionAuth> session_auth_;  // under sessions_mutex_

  metrics::DurableCounters* counters_ = nullptr;
  std::mutex labels_mutex_;
  std::unordered_map<uint64_t, metrics::Labels> volume_labels_;  // volume and tenant by id
  std::mutex traffic_mutex_;
  std::map<uint32_t, std::map<uint64_t, pb::VolumeTraffic>> traffic_;  // server -> volume
  Clock::time_point last_ledger_{};
  RequestLog request_log_;
  Clock::time_point last_request_sweep_{};

  std::mutex servers_mutex_;  // servers, chain table, lost data
  std::map<uint32_t, ServerState> servers_;
  pb::ChainTable chain_table_;
  std::set<uint32_t> lost_data_;  // targets whose store was replaced
  std::unordered_map<std::string, std::shared_ptr<rpc::Channel>> channels_;
  std::atomic<uint64_t> map_version_{1};

  std::mutex sweep_mutex_;
  std::condition_variable sweep_wakeup_;
  bool stopping_ = false;
  std::optional<Clock::time_point> removal_due_;  // when a removal pass is wanted
  std::thread sweeper_;
};

}  // namespace sealfs::metadata
