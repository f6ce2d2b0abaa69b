// DataService, the replication: writes, truncates and fsyncs flowing down a
// chain, reads by the committed-version rule, repair of a damaged copy, and
// what a resyncing predecessor asks of a member.
#include <cstdio>

#include "sealfs/rpc/chain_errors.h"
#include "sealfs/rpc/chain_table.h"
#include "sealfs/rpc/methods.h"
#include "sealfs/server/data_service.h"

namespace sealfs::server {

namespace {
// A write stays inside its chunk as the file's layout cuts it: bytes past the
// chunk size would belong to the next chunk, on another chain.
Status CheckWriteRange(uint64_t offset, uint64_t length, uint32_t chunk_size) {
  if (chunk_size == 0 || chunk_size > kMaxChunkSize) {
    return Status(EINVAL, "bad chunk size " + std::to_string(chunk_size));
  }
  if (offset + length > chunk_size) {
    return Status(EINVAL, "range " + std::to_string(offset) + "+" + std::to_string(length) +
                              " lies outside a chunk of " + std::to_string(chunk_size) + " bytes");
  }
  return Status::Ok();
}

Status CheckRange(uint64_t offset, uint64_t length) {
  if (offset + length > kMaxChunkSize) {
    return Status(EINVAL, "range " + std::to_string(offset) + "+" + std::to_string(length) +
                              " lies outside any chunk");
  }
  return Status::Ok();
}

// A read's answer lands in the reply payload's room, which the transport may
// send as it is (RDMA-registered memory): no copy between disk and wire.
class ReplyTarget : public ChunkStore::ReadTarget {
 public:
  explicit ReplyTarget(rpc::RequestContext& context) : context_(context) {}
  ~ReplyTarget() override {
    if (reserved_ && !kept_) context_.KeepReply(0, 0);
  }
  char* Reserve(size_t size) override {
    reserved_ = true;
    return context_.ReserveReply(size);
  }
  void Keep(size_t offset, size_t length) override {
    kept_ = true;
    context_.KeepReply(offset, length);
  }

 private:
  rpc::RequestContext& context_;
  bool reserved_ = false;
  bool kept_ = false;
};

// Whether chunk `index` of a file striped over `stripe` is on chain `chain`.
std::function<bool(uint32_t)> OwnedBy(const google::protobuf::RepeatedField<uint32_t>& stripe,
                                      uint32_t chain) {
  std::vector<uint32_t> chains(stripe.begin(), stripe.end());
  if (chains.empty()) return nullptr;
  return [chains, chain](uint32_t index) { return chains[index % chains.size()] == chain; };
}

std::string ChunkName(uint64_t ino, uint32_t index) {
  return "chunk " + std::to_string(index) + " of inode " + std::to_string(ino);
}
}  // namespace

Status DataService::Write(const pb::WriteRequest& req, std::string_view payload, bool forwarded,
                          pb::WriteResponse* resp) {
  const Role role = forwarded ? Role::kMember : Role::kHead;
  Result<StorageTarget*> found = FindTarget(req.store_id());
  if (!found.ok()) return found.status();
  StorageTarget& target = **found;
  SEALFS_RETURN_IF_ERROR(CheckWriteRange(req.offset(), payload.size(), req.chunk_size()));
  if (req.whole() && req.offset() != 0) return Status(EINVAL, "a whole chunk starts at 0");
  const uint64_t ino = req.chunk().ino();
  const uint32_t index = req.chunk().index();
  // Changes of one chunk pass every member in the head's order: the head
  // holds the chunk from applying a change until its successor answered.
  KeyedLocks::Guard file_lock = LockFile(target.id, req.chain().id(), ino, false);
  KeyedLocks::Guard chunk_lock = LockChunk(target.id, ino, index, true);
  // Checked under the chunk's lock: the chain may change while we wait for it.
  Result<Position> position = CheckChain(req.chain(), target.id, role);
  if (!position.ok()) return position.status();
  Result<std::optional<ChunkRecord>> record = target.store->Version(ino, index);
  if (!record.ok()) return record.status();
  const ChunkRecord current = record->value_or(ChunkRecord{});
  uint64_t version = NextChunkVersion(current.version, req.chain().version());
  if (forwarded) {
    if (current.version != req.base_version()) {
      // This member missed a change (or the request is late): nothing applied.
      resp->set_need_whole(true);
      resp->set_current_version(current.version);
      return Status::Ok();
    }
    version = req.chunk_version();
  }
  int64_t allocated_delta = 0;
  if (req.whole()) {
    SEALFS_RETURN_IF_ERROR(target.store->Replace(ino, index, payload));
    ++counters_.whole_chunk_copies;
  } else {
    SEALFS_RETURN_IF_ERROR(
        target.store->Write(ino, index, req.offset(), payload, &allocated_delta));
  }
  ChunkRecord applied{version, current.committed, req.chain().id()};
  if (req.whole()) applied.committed = std::min(version, req.committed_version());
  if (position->is_tail) applied.committed = version;
  SEALFS_RETURN_IF_ERROR(target.store->SetVersion(ino, index, applied));
  if (!position->is_tail) {
    pb::WriteRequest next = req;
    next.set_chunk_version(version);
    next.set_base_version(current.version);
    next.set_committed_version(applied.committed);
    SEALFS_RETURN_IF_ERROR(Forward(*position, std::move(next), payload, target));
    applied.committed = version;
    SEALFS_RETURN_IF_ERROR(target.store->SetVersion(ino, index, applied));
  }
  resp->set_allocated_delta(allocated_delta);
  return Status::Ok();
}

uint64_t NextChunkVersion(uint64_t current, uint64_t chain_version) {
  // The chain version in the high bits: a version is never given twice to
  // different contents of a chunk, not even after the chunk was dropped and
  // written again, since every membership change starts a new range.
  const uint64_t first = chain_version << 32;
  return current >= first ? current + 1 : first | 1;
}

Status DataService::Forward(const Position& position, pb::WriteRequest req,
                            std::string_view payload, StorageTarget& target) {
  Result<PeerRoute> route = RouteToTarget(position.successor);
  if (!route.ok()) return route.status();
  req.set_store_id(route->store_id);
  const auto method =
      position.successor == position.tail ? rpc::data::kChainWriteTail : rpc::data::kChainWrite;
  // Less than a client waits for us, so that it hears why.
  rpc::CallOptions options{view_.lease()};
  pb::WriteResponse response;
  Status status = rpc::Invoke(*route->channel, method, req, &response, payload, nullptr, options);
  size_t sent = payload.size();
  // The successor missed a change of this chunk: it gets all of it, named
  // against the version it holds. A few rounds at most: only a late request
  // of an earlier holder of this chunk can move its version meanwhile.
  std::string whole;
  for (int round = 0; status.ok() && response.need_whole() && round < 3; ++round) {
    if (!req.whole()) {
      SEALFS_RETURN_IF_ERROR(
          target.store->Read(req.chunk().ino(), req.chunk().index(), 0, kMaxChunkSize, &whole));
      req.set_whole(true);
      req.set_offset(0);
      req.set_chunk_size(kMaxChunkSize);
      payload = whole;
    }
    req.set_base_version(response.current_version());
    response.Clear();
    status = rpc::Invoke(*route->channel, method, req, &response, payload, nullptr, options);
    sent += payload.size();
  }
  ++counters_.forwarded_writes;
  counters_.forwarded_bytes += sent;
  if (status.ok() && response.need_whole()) {
    return Status(rpc::kStaleChain, "the successor's copy of " +
                                        ChunkName(req.chunk().ino(), req.chunk().index()) +
                                        " keeps changing under it");
  }
  return status;
}

Status DataService::Read(const pb::ReadRequest& req, rpc::RequestContext& context) {
  SEALFS_RETURN_IF_ERROR(CheckRange(req.offset(), req.length()));
  for (int attempt = 0;; ++attempt) {
    Result<Admitted> admitted = Admit(req.store_id(), req.chain(), Role::kServing);
    if (!admitted.ok()) return admitted.status();
    StorageTarget& target = *admitted->target;
    const uint64_t ino = req.chunk().ino();
    const uint32_t index = req.chunk().index();
    KeyedLocks::Guard chunk_lock = LockChunk(target.id, ino, index, false);
    SEALFS_RETURN_IF_ERROR(CheckCommitted(req, admitted->position, target));
    Status status;
    {
      ReplyTarget reply(context);
      status = target.store->Read(ino, index, req.offset(), req.length(), &reply);
    }
    // Whatever was read, it goes out only if this server still serves the
    // chain at that version: a pause during the read may have ended both.
    Result<Position> still = CheckChain(req.chain(), target.id, Role::kServing);
    if (!still.ok()) return still.status();
    if (status.code() != EIO || attempt > 0 || chains::Serving(still->chain).size() < 2) {
      return status;
    }
    // A damaged or lost copy: repaired from another replica, then read again.
    chunk_lock.Release();
    Status repaired = RepairChunk(target, req.chain().id(), ino, index);
    if (!repaired.ok()) {
      std::fprintf(stderr, "sealfs-data: repairing %s failed: %s\n", ChunkName(ino, index).c_str(),
                   repaired.ToString().c_str());
      return status;
    }
  }
}

Status DataService::CheckCommitted(const pb::ReadRequest& req, const Position& position,
                                   StorageTarget& target) {
  const uint64_t ino = req.chunk().ino();
  const uint32_t index = req.chunk().index();
  Result<std::optional<ChunkRecord>> record = target.store->Version(ino, index);
  if (!record.ok()) return record.status();
  if (!*record || (*record)->version == (*record)->committed || position.is_tail) {
    return Status::Ok();
  }
  // A change this member applied was never acknowledged to it: whether the
  // chain committed it, only the tail knows.
  pb::CommittedVersionResponse committed;
  Result<PeerRoute> tail = RouteToTarget(position.tail);
  Status asked = tail.status();
  if (tail.ok()) {
    pb::CommittedVersionRequest question;
    *question.mutable_chain() = req.chain();
    *question.mutable_chunk() = req.chunk();
    question.set_store_id(tail->store_id);
    asked = rpc::Invoke(*tail->channel, rpc::data::kCommittedVersion, question, &committed, {},
                        nullptr, rpc::CallOptions{view_.lease()});
  }
  if (!asked.ok() || committed.committed() != (*record)->version) {
    return Status(rpc::kNotCommitted, ChunkName(ino, index) + " holds version " +
                                          std::to_string((*record)->version) +
                                          ", which the chain has not committed: read it at "
                                          "the tail");
  }
  ChunkRecord now_committed = **record;
  now_committed.committed = now_committed.version;
  return target.store->SetVersion(ino, index, now_committed);
}

Status DataService::FetchWhole(const pb::Chain& chain, uint32_t target, uint64_t ino,
                               uint32_t index, std::string* data, ChunkRecord* record) {
  Status last(EIO, "no other serving member holds " + ChunkName(ino, index));
  for (uint32_t source : chains::Serving(chain)) {
    if (source == target) continue;
    Result<PeerRoute> route = RouteToTarget(source);
    if (!route.ok()) {
      last = route.status();
      continue;
    }
    pb::ChainFetchRequest request;
    request.mutable_chain()->set_id(chain.id());
    request.mutable_chain()->set_version(chain.version());
    request.mutable_chunk()->set_ino(ino);
    request.mutable_chunk()->set_index(index);
    request.set_store_id(route->store_id);
    pb::ChainFetchResponse response;
    last = rpc::Invoke(*route->channel, rpc::data::kChainFetch, request, &response, {}, data,
                       rpc::CallOptions{view_.lease()});
    if (!last.ok()) continue;
    if (!response.exists()) return Status(ENOENT, ChunkName(ino, index) + " is not on the chain");
    *record = ChunkRecord{response.version().version(), response.version().committed(), chain.id()};
    return Status::Ok();
  }
  return last;
}

Status DataService::RepairChunk(StorageTarget& target, uint32_t chain_id, uint64_t ino,
                                uint32_t index) {
  std::optional<pb::Chain> chain = view_.Chain(chain_id);
  if (!chain) return Status(rpc::kStaleChain, "chain " + std::to_string(chain_id) + " is unknown");
  ++counters_.checksum_failures;
  Result<std::optional<ChunkRecord>> before = target.store->Version(ino, index);
  if (!before.ok()) return before.status();
  if (!*before) return Status(ENOENT, ChunkName(ino, index) + " is not held here");
  std::string whole;
  ChunkRecord fetched;
  SEALFS_RETURN_IF_ERROR(FetchWhole(*chain, target.id, ino, index, &whole, &fetched));
  // Only the same version from a replica is the same content; and nothing
  // may have changed here while it was fetched.
  KeyedLocks::Guard chunk_lock = LockChunk(target.id, ino, index, true);
  Result<std::optional<ChunkRecord>> now = target.store->Version(ino, index);
  if (!now.ok()) return now.status();
  if (*now != *before) return Status(EAGAIN, ChunkName(ino, index) + " changed during its repair");
  if (fetched.version != (*before)->version) {
    return Status(EIO, "the replica holds version " + std::to_string(fetched.version) + " of " +
                           ChunkName(ino, index) + ", this copy is version " +
                           std::to_string((*before)->version) + ": not repaired from it");
  }
  SEALFS_RETURN_IF_ERROR(target.store->Replace(ino, index, whole));
  SEALFS_RETURN_IF_ERROR(target.store->SetVersion(ino, index, **before));
  ++counters_.repaired_chunks;
  std::fprintf(stderr, "sealfs-data: repaired %s on target %u from a replica (%zu bytes)\n",
               ChunkName(ino, index).c_str(), target.id.load(), whole.size());
  return Status::Ok();
}

Status DataService::Truncate(const pb::TruncateFileRequest& req, bool forwarded,
                             pb::TruncateFileResponse* resp) {
  const Role role = forwarded ? Role::kMember : Role::kHead;
  Result<StorageTarget*> found = FindTarget(req.store_id());
  if (!found.ok()) return found.status();
  StorageTarget& target = **found;
  if (req.chunk_size() == 0 || req.chunk_size() > kMaxChunkSize) {
    return Status(EINVAL, "bad chunk size " + std::to_string(req.chunk_size()));
  }
  // No write of the file passes this member meanwhile, so every member cuts
  // at the same point of the file's changes.
  KeyedLocks::Guard file_lock = LockFile(target.id, req.chain().id(), req.ino(), true);
  // Checked under the file's lock: the chain may change while we wait for it.
  Result<Position> position = CheckChain(req.chain(), target.id, role);
  if (!position.ok()) return position.status();
  const uint32_t chain_id = req.chain().id();
  pb::TruncateFileRequest next = req;
  next.clear_changes();
  if (forwarded) {
    for (const pb::ChunkChange& change : req.changes()) {
      SEALFS_RETURN_IF_ERROR(ApplyCut(target, req, change, position->is_tail));
    }
    next = req;
  } else {
    auto owned = OwnedBy(req.stripe(), chain_id);
    Result<std::vector<uint32_t>> indexes = target.store->ChunkIndexes(req.ino());
    if (!indexes.ok()) return indexes.status();
    for (uint32_t index : *indexes) {
      uint64_t start = uint64_t{index} * req.chunk_size();
      if ((owned && !owned(index)) || start + req.chunk_size() <= req.size()) continue;
      Result<std::optional<ChunkRecord>> record = target.store->Version(req.ino(), index);
      if (!record.ok()) return record.status();
      ChunkRecord current = record->value_or(ChunkRecord{});
      pb::ChunkChange change;
      change.set_index(index);
      change.set_base_version(current.version);
      change.set_drop(start >= req.size());
      change.set_version(NextChunkVersion(current.version, req.chain().version()));
      SEALFS_RETURN_IF_ERROR(ApplyCut(target, req, change, position->is_tail));
      *next.add_changes() = change;
    }
  }
  SEALFS_RETURN_IF_ERROR(target.store->SyncRecords());
  if (!position->is_tail) {
    Result<PeerRoute> route = RouteToTarget(position->successor);
    if (!route.ok()) return route.status();
    next.set_store_id(route->store_id);
    pb::TruncateFileResponse ignored;
    SEALFS_RETURN_IF_ERROR(
        rpc::Invoke(*route->channel,
                    position->successor == position->tail ? rpc::data::kChainTruncateTail
                                                          : rpc::data::kChainTruncate,
                    next, &ignored, {}, nullptr, rpc::CallOptions{view_.lease()}));
    // Acknowledged by every member: the cut chunks' versions are committed.
    for (const pb::ChunkChange& change : next.changes()) {
      if (change.drop()) continue;
      Result<std::optional<ChunkRecord>> record = target.store->Version(req.ino(), change.index());
      if (!record.ok()) return record.status();
      if (*record && (*record)->version == change.version()) {
        SEALFS_RETURN_IF_ERROR(target.store->SetVersion(
            req.ino(), change.index(), {change.version(), change.version(), chain_id}));
      }
    }
  }
  auto usage = target.store->FileUsage(req.ino(), req.chunk_size(), UINT32_MAX,
                                       OwnedBy(req.stripe(), chain_id));
  if (!usage.ok()) return usage.status();
  resp->set_allocated_bytes(usage->allocated_bytes);
  return Status::Ok();
}

Status DataService::ApplyCut(StorageTarget& target, const pb::TruncateFileRequest& req,
                             const pb::ChunkChange& change, bool is_tail) {
  const uint64_t ino = req.ino();
  const uint32_t index = change.index();
  KeyedLocks::Guard chunk_lock = LockChunk(target.id, ino, index, true);
  Result<std::optional<ChunkRecord>> record = target.store->Version(ino, index);
  if (!record.ok()) return record.status();
  ChunkRecord current = record->value_or(ChunkRecord{});
  // Already past this change: a late or repeated request changes nothing.
  if (current.version > change.base_version() && current.version >= change.version()) {
    return Status::Ok();
  }
  if (change.drop()) return target.store->Drop(ino, index);
  if (!*record) return Status::Ok();
  bool shortened = false;
  uint64_t start = uint64_t{index} * req.chunk_size();
  SEALFS_RETURN_IF_ERROR(target.store->Cut(ino, index, req.size() - start, &shortened));
  // A chunk held in another state than the head's is unknown from now on.
  ChunkRecord cut{change.version(), is_tail ? change.version() : current.committed,
                  req.chain().id()};
  if (current.version != change.base_version()) cut = ChunkRecord{0, 0, req.chain().id()};
  return target.store->SetVersion(ino, index, cut);
}

Status DataService::Fsync(const pb::FsyncFileRequest& req, bool forwarded) {
  Result<Admitted> admitted =
      Admit(req.store_id(), req.chain(), forwarded ? Role::kMember : Role::kHead);
  if (!admitted.ok()) return admitted.status();
  StorageTarget& target = *admitted->target;
  const Position* position = &admitted->position;
  SEALFS_RETURN_IF_ERROR(target.store->FsyncFile(req.ino()));
  if (position->is_tail) return Status::Ok();
  Result<PeerRoute> route = RouteToTarget(position->successor);
  if (!route.ok()) return route.status();
  pb::FsyncFileRequest next = req;
  next.set_store_id(route->store_id);
  pb::FsyncFileResponse ignored;
  return rpc::Invoke(
      *route->channel,
      position->successor == position->tail ? rpc::data::kChainFsyncTail : rpc::data::kChainFsync,
      next, &ignored, {}, nullptr, rpc::CallOptions{view_.lease()});
}

Status DataService::FileUsage(const pb::FileUsageRequest& req, pb::FileUsageResponse* resp) {
  Result<Admitted> admitted = Admit(req.store_id(), req.chain(), Role::kServing);
  if (!admitted.ok()) return admitted.status();
  StorageTarget& target = *admitted->target;
  auto usage = target.store->FileUsage(req.ino(), req.chunk_size(), req.index_limit(),
                                       OwnedBy(req.stripe(), req.chain().id()));
  if (!usage.ok()) return usage.status();
  resp->set_data_end(usage->data_end);
  resp->set_allocated_bytes(usage->allocated_bytes);
  return Status::Ok();
}

Status DataService::ListChain(const pb::ChainListRequest& req, pb::ChainListResponse* resp) {
  Result<Admitted> admitted = Admit(req.store_id(), req.chain(), Role::kMember);
  if (!admitted.ok()) return admitted.status();
  StorageTarget& target = *admitted->target;
  const uint32_t chain = req.chain().id();
  return target.store->ForEachChunk(
      [resp, chain](uint64_t ino, uint32_t index, const ChunkRecord& record) {
        if (record.chain != chain) return;
        pb::ChunkVersion* entry = resp->add_chunks();
        entry->mutable_chunk()->set_ino(ino);
        entry->mutable_chunk()->set_index(index);
        entry->set_version(record.version);
        entry->set_committed(record.committed);
      });
}

Status DataService::Fetch(const pb::ChainFetchRequest& req, pb::ChainFetchResponse* resp,
                          rpc::RequestContext& context) {
  Result<Admitted> admitted = Admit(req.store_id(), req.chain(), Role::kServing);
  if (!admitted.ok()) return admitted.status();
  StorageTarget& target = *admitted->target;
  const uint64_t ino = req.chunk().ino();
  const uint32_t index = req.chunk().index();
  KeyedLocks::Guard chunk_lock = LockChunk(target.id, ino, index, false);
  Result<std::optional<ChunkRecord>> record = target.store->Version(ino, index);
  if (!record.ok()) return record.status();
  if (!*record) return Status::Ok();
  resp->set_exists(true);
  *resp->mutable_version()->mutable_chunk() = req.chunk();
  resp->mutable_version()->set_version((*record)->version);
  resp->mutable_version()->set_committed((*record)->committed);
  ReplyTarget reply(context);
  return target.store->Read(ino, index, 0, kMaxChunkSize, &reply);
}

Status DataService::DropChunk(const pb::ChainDropRequest& req) {
  Result<Admitted> admitted = Admit(req.store_id(), req.chain(), Role::kMember);
  if (!admitted.ok()) return admitted.status();
  StorageTarget& target = *admitted->target;
  KeyedLocks::Guard chunk_lock = LockChunk(target.id, req.chunk().ino(), req.chunk().index(), true);
  return target.store->Drop(req.chunk().ino(), req.chunk().index());
}

Status DataService::CommittedVersion(const pb::CommittedVersionRequest& req,
                                     pb::CommittedVersionResponse* resp) {
  Result<Admitted> admitted = Admit(req.store_id(), req.chain(), Role::kMember);
  if (!admitted.ok()) return admitted.status();
  StorageTarget& target = *admitted->target;
  const Position* position = &admitted->position;
  KeyedLocks::Guard chunk_lock =
      LockChunk(target.id, req.chunk().ino(), req.chunk().index(), false);
  Result<std::optional<ChunkRecord>> record =
      target.store->Version(req.chunk().ino(), req.chunk().index());
  if (!record.ok()) return record.status();
  if (*record) {
    // At the tail, whatever is applied is committed.
    resp->set_committed(position->is_tail ? (*record)->version : (*record)->committed);
  }
  return Status::Ok();
}

}  // namespace sealfs::server
