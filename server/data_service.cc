// DataService: its handlers, the checks every request passes (store,
// chain, version, lease) and the routes to other members of a chain. The
// replication itself is in chain_ops.cc.
#include "sealfs/server/data_service.h"

#include <cstdio>

#include "sealfs/rpc/chain_errors.h"
#include "sealfs/rpc/chain_table.h"
#include "sealfs/rpc/credentials.h"
#include "sealfs/rpc/methods.h"

namespace sealfs::server {

DataService::DataService(std::vector<StorageTarget*> targets, ChainView& view, rpc::IoThreads& io,
                         rpc::TransportKind peer_transport, std::string cluster_key,
                         std::string traffic_file)
    : targets_(std::move(targets)),
      view_(view),
      io_(io),
      peer_transport_(peer_transport),
      cluster_key_(std::move(cluster_key)),
      traffic_file_(std::move(traffic_file)) {
  LoadTraffic();
}

Result<StorageTarget*> DataService::FindTarget(const std::string& store_id) {
  if (store_id.empty()) return Status(EINVAL, "request names no store");
  for (StorageTarget* target : targets_) {
    if (target->store->instance_id() == store_id) {
      if (target->id == 0) {
        return Status(rpc::kStaleChain, "this server has not registered its targets yet");
      }
      return target;
    }
  }
  // ESTALE: whatever the request is about went with the store it names.
  return Status(ESTALE, "store mismatch: this server does not hold store " + store_id +
                            " (its data is not here)");
}

Result<DataService::Position> DataService::CheckChain(const pb::ChainRef& ref, uint32_t target,
                                                      Role role) {
  if (!view_.LeaseValid()) {
    return Status(rpc::kStaleChain,
                  "this server's lease ran out: it may have been taken out of its chains");
  }
  std::optional<pb::Chain> chain = view_.Chain(ref.id());
  if (!chain || chain->version() < ref.version()) {
    Status refreshed = view_.Refresh();
    if (!refreshed.ok())
      return Status(rpc::kStaleChain, "refreshing the cluster map: " + refreshed.ToString());
    chain = view_.Chain(ref.id());
  }
  if (!chain)
    return Status(rpc::kStaleChain, "chain " + std::to_string(ref.id()) + " is unknown here");
  if (chain->version() != ref.version()) {
    return Status(rpc::kStaleChain, "chain " + std::to_string(ref.id()) + " is at version " +
                                        std::to_string(chain->version()) +
                                        ", the request names version " +
                                        std::to_string(ref.version()));
  }
  std::vector<uint32_t> path = chains::WritePath(*chain);
  auto at = std::find(path.begin(), path.end(), target);
  if (at == path.end()) {
    return Status(rpc::kStaleChain, "target " + std::to_string(target) + " is not in chain " +
                                        std::to_string(ref.id()) + " at version " +
                                        std::to_string(ref.version()));
  }
  std::vector<uint32_t> serving = chains::Serving(*chain);
  bool is_serving = std::find(serving.begin(), serving.end(), target) != serving.end();
  if (role == Role::kHead && at != path.begin()) {
    return Status(rpc::kStaleChain, "target " + std::to_string(target) +
                                        " is not the head of chain " + std::to_string(ref.id()));
  }
  if (role == Role::kServing && !is_serving) {
    return Status(rpc::kStaleChain, "target " + std::to_string(target) + " does not serve chain " +
                                        std::to_string(ref.id()) + " yet");
  }
  Position position;
  position.chain = std::move(*chain);
  position.successor = at + 1 == path.end() ? 0 : *(at + 1);
  position.tail = path.back();
  position.is_tail = position.successor == 0;
  return position;
}

Result<DataService::Admitted> DataService::Admit(const std::string& store_id,
                                                 const pb::ChainRef& ref, Role role) {
  Result<StorageTarget*> target = FindTarget(store_id);
  if (!target.ok()) return target.status();
  Result<Position> position = CheckChain(ref, (*target)->id, role);
  if (!position.ok()) return position.status();
  return Admitted{*target, std::move(*position)};
}

std::shared_ptr<rpc::Channel> DataService::PeerChannel(const std::string& address) {
  std::lock_guard<std::mutex> lock(peers_mutex_);
  auto& channel = peers_[address];
  if (!channel) {
    channel = auth::AsChannel(auth::WithAuth(rpc::MakeChannel(io_, address, peer_transport_),
                                             auth::ServerAuth(cluster_key_)));
  }
  return channel;
}

Result<DataService::PeerRoute> DataService::RouteToTarget(uint32_t target_id) {
  auto address = view_.TargetAddress(target_id);
  if (!address) {
    view_.Refresh();
    address = view_.TargetAddress(target_id);
  }
  if (!address)
    return Status(rpc::kStaleChain, "target " + std::to_string(target_id) + " is unknown");
  return PeerRoute{PeerChannel(address->first), address->second};
}

KeyedLocks::Guard DataService::LockFile(uint32_t target, uint32_t chain, uint64_t ino,
                                        bool exclusive) {
  return locks_.Lock({(uint64_t{target} << 32) | chain, ino}, exclusive);
}

KeyedLocks::Guard DataService::LockChunk(uint32_t target, uint64_t ino, uint32_t index,
                                         bool exclusive) {
  return locks_.Lock({(uint64_t{1} << 63) | (uint64_t{target} << 32) | index, ino}, exclusive);
}

pb::ReplicationStats DataService::Stats() const {
  pb::ReplicationStats stats;
  stats.set_forwarded_writes(counters_.forwarded_writes);
  stats.set_forwarded_bytes(counters_.forwarded_bytes);
  stats.set_whole_chunk_copies(counters_.whole_chunk_copies);
  stats.set_repaired_chunks(counters_.repaired_chunks);
  stats.set_checksum_failures(counters_.checksum_failures);
  stats.set_scrubbed_bytes(counters_.scrubbed_bytes);
  return stats;
}

void MethodSplitter::Submit(rpc::Message request, rpc::RequestOrigin origin,
                            std::function<void(rpc::Message)> respond) {
  rpc::RequestSink* sink = &clients_;
  if (request.header.service == static_cast<uint16_t>(rpc::ServiceId::kData) &&
      request.header.method >= pb::DATA_CHAIN_WRITE) {
    bool forwards = request.header.method == pb::DATA_CHAIN_WRITE ||
                    request.header.method == pb::DATA_CHAIN_TRUNCATE ||
                    request.header.method == pb::DATA_CHAIN_FSYNC;
    sink = forwards ? &members_ : &leaves_;
  }
  sink->Submit(std::move(request), std::move(origin), std::move(respond));
}

void DataService::RegisterHandlers(rpc::Dispatcher& clients, rpc::Dispatcher& members,
                                   rpc::Dispatcher& leaves) {
  using namespace rpc::data;
  clients.Register(
      kWrite, {[this](const pb::WriteRequest& req, pb::WriteResponse* resp,
                      rpc::RequestContext& context) -> Status {
        uint64_t end = uint64_t{req.chunk().index()} * req.cap().chunk_size() + req.offset() +
                       context.payload.size();
        SEALFS_RETURN_IF_ERROR(CheckCapability(req.cap(), req.chunk().ino(), pb::CAP_WRITE));
        SEALFS_RETURN_IF_ERROR(CheckChainOf(req.cap(), req.chain(), req.chunk().index()));
        if (req.chunk_size() != req.cap().chunk_size()) {
          return Status(EACCES, "the write names another chunk size than its file's");
        }
        if (end > req.cap().write_limit()) {
          return Status(EACCES, "the write ends at byte " + std::to_string(end) + ", past the " +
                                    std::to_string(req.cap().write_limit()) +
                                    " its capability reserves");
        }
        SEALFS_RETURN_IF_ERROR(Write(req, context.payload, /*forwarded=*/false, resp));
        CountTraffic(req.cap().volume_id(), true, context.payload.size());
        return Status::Ok();
      }});
  for (auto [pool, method] : {std::pair{&members, kChainWrite}, {&leaves, kChainWriteTail}}) {
    pool->Register(method, {[this](const pb::WriteRequest& req, pb::WriteResponse* resp,
                                   rpc::RequestContext& context) -> Status {
                     SEALFS_RETURN_IF_ERROR(CheckServer(req.auth()));
                     return Write(req, context.payload, /*forwarded=*/true, resp);
                   }});
  }
  clients.Register(
      kRead, {[this](const pb::ReadRequest& req, pb::ReadResponse*,
                     rpc::RequestContext& context) -> Status {
        SEALFS_RETURN_IF_ERROR(CheckCapability(req.cap(), req.chunk().ino(), pb::CAP_READ));
        SEALFS_RETURN_IF_ERROR(CheckChainOf(req.cap(), req.chain(), req.chunk().index()));
        SEALFS_RETURN_IF_ERROR(Read(req, context));
        CountTraffic(req.cap().volume_id(), false,
                     context.reply_room.size() + context.reply_payload.size());
        return Status::Ok();
      }});
  clients.Register(kTruncateFile,
                   {[this](const pb::TruncateFileRequest& req, pb::TruncateFileResponse* resp,
                           rpc::RequestContext&) -> Status {
                     SEALFS_RETURN_IF_ERROR(CheckServer(req.auth()));
                     return Truncate(req, false, resp);
                   }});
  for (auto [pool, method] : {std::pair{&members, kChainTruncate}, {&leaves, kChainTruncateTail}}) {
    pool->Register(method, {[this](const pb::TruncateFileRequest& req,
                                   pb::TruncateFileResponse* resp, rpc::RequestContext&) -> Status {
                     SEALFS_RETURN_IF_ERROR(CheckServer(req.auth()));
                     return Truncate(req, true, resp);
                   }});
  }
  clients.Register(kFsyncFile, {[this](const pb::FsyncFileRequest& req, pb::FsyncFileResponse*,
                                       rpc::RequestContext&) -> Status {
                     SEALFS_RETURN_IF_ERROR(CheckCapability(req.cap(), req.ino(), pb::CAP_READ));
                     SEALFS_RETURN_IF_ERROR(CheckChainOf(req.cap(), req.chain(), std::nullopt));
                     return Fsync(req, false);
                   }});
  for (auto [pool, method] : {std::pair{&members, kChainFsync}, {&leaves, kChainFsyncTail}}) {
    pool->Register(method, {[this](const pb::FsyncFileRequest& req, pb::FsyncFileResponse*,
                                   rpc::RequestContext&) -> Status {
                     SEALFS_RETURN_IF_ERROR(CheckServer(req.auth()));
                     return Fsync(req, true);
                   }});
  }
  clients.Register(kFileUsage, {[this](const pb::FileUsageRequest& req, pb::FileUsageResponse* resp,
                                       rpc::RequestContext&) -> Status {
                     SEALFS_RETURN_IF_ERROR(CheckServer(req.auth()));
                     return FileUsage(req, resp);
                   }});
  clients.Register(kRemoveFile, {[this](const pb::RemoveFileRequest& req, pb::RemoveFileResponse*,
                                        rpc::RequestContext&) -> Status {
                     SEALFS_RETURN_IF_ERROR(CheckServer(req.auth()));
                     // A removed file never comes back, whatever the order
                     // in which its chains' members hear of it.
                     Result<StorageTarget*> target = FindTarget(req.store_id());
                     if (!target.ok()) return target.status();
                     std::vector<uint64_t> inos(req.more_inos().begin(), req.more_inos().end());
                     if (req.ino() != 0) inos.push_back(req.ino());
                     return (*target)->store->RemoveFiles(inos);
                   }});
  clients.Register(kStat, {[this](const pb::StatRequest& req, pb::StatResponse* resp,
                                  rpc::RequestContext&) -> Status {
                     SEALFS_RETURN_IF_ERROR(CheckServer(req.auth()));
                     for (StorageTarget* target : targets_) {
                       ChunkStoreUsage usage = target->store->Usage();
                       resp->set_capacity_bytes(resp->capacity_bytes() + usage.capacity_bytes);
                       resp->set_free_bytes(resp->free_bytes() + usage.free_bytes);
                       resp->set_used_bytes(resp->used_bytes() + usage.used_bytes);
                       resp->set_chunk_count(resp->chunk_count() + usage.chunk_count);
                     }
                     return Status::Ok();
                   }});
  leaves.Register(kChainList, {[this](const pb::ChainListRequest& req, pb::ChainListResponse* resp,
                                      rpc::RequestContext&) -> Status {
                    SEALFS_RETURN_IF_ERROR(CheckServer(req.auth()));
                    return ListChain(req, resp);
                  }});
  leaves.Register(kChainFetch,
                  {[this](const pb::ChainFetchRequest& req, pb::ChainFetchResponse* resp,
                          rpc::RequestContext& context) -> Status {
                    SEALFS_RETURN_IF_ERROR(CheckServer(req.auth()));
                    return Fetch(req, resp, context);
                  }});
  leaves.Register(kChainDrop, {[this](const pb::ChainDropRequest& req, pb::ChainDropResponse*,
                                      rpc::RequestContext&) -> Status {
                    SEALFS_RETURN_IF_ERROR(CheckServer(req.auth()));
                    return DropChunk(req);
                  }});
  leaves.Register(kCommittedVersion,
                  {[this](const pb::CommittedVersionRequest& req,
                          pb::CommittedVersionResponse* resp, rpc::RequestContext&) -> Status {
                    SEALFS_RETURN_IF_ERROR(CheckServer(req.auth()));
                    return CommittedVersion(req, resp);
                  }});
}

}  // namespace sealfs::server
