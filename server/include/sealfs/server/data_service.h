// DataService: the data RPC service over a server's storage targets (one
// ChunkStore each), replicating every change down the target's chains.
//
// A request names the store it expects (the target's instance id in the
// cluster map) and the chain and chain version it is about. A request for a
// store this server does not hold fails with ESTALE; one for a chain version
// other than this server's, a chain the target is not a member of in the
// required role, or reaching a server whose lease ran out fails with
// rpc::kStaleChain: the sender refreshes its map and retries (fencing).
//
// Writes enter at the chain's head, which gives each change of a chunk the
// next chunk version, applies it and forwards it to its successor; the
// tail commits, and each member marks the version committed as the
// acknowledgement comes back. A forwarded change names the version it
// applies to; a member holding another one applies nothing and asks for the
// whole chunk instead (need_whole).
// Reads are served by any serving member; one holding a version the chain
// has not committed asks the tail (CRAQ) and otherwise sends the reader
// there (rpc::kNotCommitted). A chunk whose checksum fails is fetched whole
// from another serving member and repaired before it is served.
#pragma once

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>

#include "sealfs/rpc/durable_counters.h"
#include "sealfs/rpc/rdma_transport.h"
#include "sealfs/rpc/service.h"
#include "sealfs/rpc/tcp_transport.h"
#include "sealfs/server/chain_view.h"
#include "sealfs/server/chunk_store.h"
#include "sealfs/server/keyed_locks.h"

namespace sealfs::server {

// One storage target: its store and the target id the metadata gave it.
struct StorageTarget {
  ChunkStore* store = nullptr;
  std::atomic<uint32_t> id{0};
};

// What this server counts of replication (reported in heartbeats and logs).
struct ReplicationCounters {
  std::atomic<uint64_t> forwarded_writes{0};
  std::atomic<uint64_t> forwarded_bytes{0};
  std::atomic<uint64_t> whole_chunk_copies{0};
  std::atomic<uint64_t> repaired_chunks{0};
  std::atomic<uint64_t> checksum_failures{0};
  std::atomic<uint64_t> scrubbed_bytes{0};
};

// The version a chunk gets from its next change, under chain version
// `chain_version`: never one the chunk, or a dropped earlier chunk of that
// index, had before.
uint64_t NextChunkVersion(uint64_t current, uint64_t chain_version);

class DataService {
 public:
  // `cluster_key` checks capabilities and other servers' proofs;
  // `traffic_file` keeps the per-volume traffic counts across restarts.
  DataService(std::vector<StorageTarget*> targets, ChainView& view, rpc::IoThreads& io,
              rpc::TransportKind peer_transport, std::string cluster_key, std::string traffic_file);
  // Client methods go to `clients`; changes forwarded to a member that
  // forwards them further to `members`; the rest between members (to a
  // tail, repairs, resync) to `leaves`, whose workers never wait on another
  // server. So a wait only ever goes from one pool to a later one: no cycle
  // of servers waiting on each other can form.
  void RegisterHandlers(rpc::Dispatcher& clients, rpc::Dispatcher& members,
                        rpc::Dispatcher& leaves);

  // The whole chunk and its record, read from a serving member of `chain`
  // other than `target` (repairs and resync).
  Status FetchWhole(const pb::Chain& chain, uint32_t target, uint64_t ino, uint32_t index,
                    std::string* data, ChunkRecord* record);
  // Repairs the target's copy of a chunk from another serving member.
  Status RepairChunk(StorageTarget& target, uint32_t chain_id, uint64_t ino, uint32_t index);

  const std::vector<StorageTarget*>& targets() const { return targets_; }
  ChainView& view() { return view_; }
  ReplicationCounters& counters() { return counters_; }
  pb::ReplicationStats Stats() const;
  // Saves the traffic counted per volume and returns it: what is reported
  // (heartbeats, metrics) is always what a restart starts again from, so a
  // count never goes back.
  std::vector<pb::VolumeTraffic> SaveTraffic();
  // Locks a chunk the way a write does (resync copies under it).
  KeyedLocks::Guard LockFile(uint32_t target, uint32_t chain, uint64_t ino, bool exclusive);
  KeyedLocks::Guard LockChunk(uint32_t target, uint64_t ino, uint32_t index, bool exclusive);
  // A channel to a peer data server.
  std::shared_ptr<rpc::Channel> PeerChannel(const std::string& address);
  // How to reach a target: its server's channel and its store id.
  struct PeerRoute {
    std::shared_ptr<rpc::Channel> channel;
    std::string store_id;
  };
  Result<PeerRoute> RouteToTarget(uint32_t target_id);

 private:
  enum class Role { kHead, kMember, kServing };
  // Where the target stands in a chain at the version the request names.
  struct Position {
    pb::Chain chain;
    uint32_t successor = 0;  // next member of the write path; 0 at the tail
    uint32_t tail = 0;       // last member of the write path
    bool is_tail = false;
  };
  Result<StorageTarget*> FindTarget(const std::string& store_id);
  Result<Position> CheckChain(const pb::ChainRef& ref, uint32_t target, Role role);
  // A request's target and its place in the chain, once both checks passed.
  struct Admitted {
    StorageTarget* target = nullptr;
    Position position;
  };
  Result<Admitted> Admit(const std::string& store_id, const pb::ChainRef& ref, Role role);

  // access.cc: EACCES unless the request comes from a server, or carries a
  // valid capability for `ino` with `right`.
  Status CheckServer(const pb::Auth& auth);
  Status CheckCapability(const pb::Capability& cap, uint64_t ino, uint32_t right);
  // EACCES unless `chain` holds chunk `index` of the capability's file (any
  // of its chains when index is nullopt).
  Status CheckChainOf(const pb::Capability& cap, const pb::ChainRef& chain,
                      std::optional<uint32_t> index);
  void CountTraffic(uint64_t volume_id, bool write, uint64_t bytes);
  void LoadTraffic();

  // chain_ops.cc
  Status Write(const pb::WriteRequest& req, std::string_view payload, bool forwarded,
               pb::WriteResponse* resp);
  Status Forward(const Position& position, pb::WriteRequest req, std::string_view payload,
                 StorageTarget& target);
  Status Read(const pb::ReadRequest& req, rpc::RequestContext& context);
  // The committed-version rule: OK when the chain committed the version this
  // member holds (asking the tail if need be), else kNotCommitted.
  Status CheckCommitted(const pb::ReadRequest& req, const Position& position,
                        StorageTarget& target);
  Status Truncate(const pb::TruncateFileRequest& req, bool forwarded,
                  pb::TruncateFileResponse* resp);
  // One chunk's part of a truncate, if the chunk is in the state it was cut from.
  Status ApplyCut(StorageTarget& target, const pb::TruncateFileRequest& req,
                  const pb::ChunkChange& change, bool is_tail);
  Status Fsync(const pb::FsyncFileRequest& req, bool forwarded);
  Status FileUsage(const pb::FileUsageRequest& req, pb::FileUsageResponse* resp);
  Status ListChain(const pb::ChainListRequest& req, pb::ChainListResponse* resp);
  Status Fetch(const pb::ChainFetchRequest& req, pb::ChainFetchResponse* resp,
               rpc::RequestContext& context);
  Status DropChunk(const pb::ChainDropRequest& req);
  Status CommittedVersion(const pb::CommittedVersionRequest& req,
                          pb::CommittedVersionResponse* resp);

  std::vector<StorageTarget*> targets_;
  ChainView& view_;
  rpc::IoThreads& io_;
  rpc::TransportKind peer_transport_;
  KeyedLocks locks_;
  ReplicationCounters counters_;
  std::mutex peers_mutex_;
  std::unordered_map<std::string, std::shared_ptr<rpc::Channel>> peers_;
  const std::string cluster_key_;
  const std::string traffic_file_;
  std::mutex traffic_mutex_;
  std::map<uint64_t, pb::VolumeTraffic> traffic_;
  std::mutex save_mutex_;
  std::vector<pb::VolumeTraffic> saved_traffic_;  // as last saved
  std::string saved_bytes_;                       // ... and as written
};

// Publishes a data server's metrics: durable request counts, traffic by
// volume, its targets' space, its lease.
void CollectDataMetrics(metrics::Registry& registry, metrics::DurableCounters& counters,
                        DataService& service);

// Sends each request to the dispatcher of its kind (see RegisterHandlers).
class MethodSplitter : public rpc::RequestSink {
 public:
  MethodSplitter(rpc::RequestSink& clients, rpc::RequestSink& members, rpc::RequestSink& leaves)
      : clients_(clients), members_(members), leaves_(leaves) {}
  void Submit(rpc::Message request, rpc::RequestOrigin origin,
              std::function<void(rpc::Message)> respond) override;

 private:
  rpc::RequestSink& clients_;
  rpc::RequestSink& members_;
  rpc::RequestSink& leaves_;
};

}  // namespace sealfs::server
