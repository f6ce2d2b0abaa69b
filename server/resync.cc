#include <algorithm>
#include <cstdio>
#include <set>

#include "sealfs/rpc/chain_table.h"
#include "sealfs/rpc/methods.h"
#include "sealfs/server/background.h"

namespace sealfs::server {

Resyncer::Resyncer(DataService& service, std::function<void()> report_now)
    : service_(service), report_now_(std::move(report_now)) {}

Resyncer::~Resyncer() { Stop(); }

void Resyncer::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void Resyncer::Stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wakeup_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::vector<pb::SyncProgress> Resyncer::Progress() {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<pb::SyncProgress> all;
  for (auto& [key, progress] : progress_) all.push_back(progress);
  return all;
}

void Resyncer::Note(const pb::SyncProgress& progress) {
  std::lock_guard<std::mutex> lock(mutex_);
  progress_[{progress.chain_id(), progress.target_id()}] = progress;
}

void Resyncer::Loop() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stopping_) {
    lock.unlock();
    RunOnce();
    lock.lock();
    wakeup_.wait_for(lock, std::chrono::milliseconds(300));
  }
}

void Resyncer::RunOnce() {
  if (!service_.view().LeaseValid()) return;
  std::set<std::pair<uint32_t, uint32_t>> wanted;
  for (const pb::Chain& chain : service_.view().Chains()) {
    std::vector<uint32_t> serving = chains::Serving(chain);
    if (serving.empty()) continue;
    StorageTarget* source = nullptr;
    for (StorageTarget* target : service_.targets()) {
      if (target->id == serving.back()) source = target;
    }
    if (!source) continue;
    for (uint32_t member : chains::WritePath(chain)) {
      if (std::find(serving.begin(), serving.end(), member) != serving.end()) continue;
      wanted.insert({chain.id(), member});
      {
        std::lock_guard<std::mutex> lock(mutex_);
        auto done = progress_.find({chain.id(), member});
        if (done != progress_.end() && done->second.finished() &&
            done->second.chain_version() == chain.version()) {
          continue;  // reported; the metadata service has yet to act on it
        }
        if (stopping_) return;
      }
      Status synced = SyncMember(*source, chain, member);
      if (!synced.ok()) {
        std::fprintf(stderr, "sealfs-data: resync of target %u in chain %u: %s\n", member,
                     chain.id(), synced.ToString().c_str());
      }
    }
  }
  // Members no longer syncing need no more reports.
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto it = progress_.begin(); it != progress_.end();) {
    it = wanted.count(it->first) ? std::next(it) : progress_.erase(it);
  }
}

Status Resyncer::SyncMember(StorageTarget& source, const pb::Chain& chain, uint32_t member) {
  Result<DataService::PeerRoute> route = service_.RouteToTarget(member);
  if (!route.ok()) return route.status();
  pb::ChainRef ref;
  ref.set_id(chain.id());
  ref.set_version(chain.version());
  rpc::CallOptions options{service_.view().lease()};
  std::vector<uint32_t> path = chains::WritePath(chain);
  const auto write_method =
      path.back() == member ? rpc::data::kChainWriteTail : rpc::data::kChainWrite;
  pb::ChainListRequest list_request;
  *list_request.mutable_chain() = ref;
  list_request.set_store_id(route->store_id);
  pb::ChainListResponse theirs_list;
  SEALFS_RETURN_IF_ERROR(rpc::Invoke(*route->channel, rpc::data::kChainList, list_request,
                                     &theirs_list, {}, nullptr, options));
  // Their version of each chunk; a chunk they hold uncommitted counts as
  // differing (kUncommitted), whatever its number.
  constexpr uint64_t kUncommitted = UINT64_MAX;
  std::map<std::pair<uint64_t, uint32_t>, uint64_t> theirs, held;
  for (const pb::ChunkVersion& chunk : theirs_list.chunks()) {
    auto key = std::make_pair(chunk.chunk().ino(), chunk.chunk().index());
    theirs[key] = chunk.version() == chunk.committed() ? chunk.version() : kUncommitted;
    held[key] = chunk.version();
  }
  std::vector<std::pair<uint64_t, uint32_t>> mine;
  SEALFS_RETURN_IF_ERROR(source.store->ForEachChunk(
      [&mine, &chain](uint64_t ino, uint32_t index, const ChunkRecord& record) {
        if (record.chain == chain.id()) mine.emplace_back(ino, index);
      }));
  std::sort(mine.begin(), mine.end());
  pb::SyncProgress progress;
  progress.set_chain_id(chain.id());
  progress.set_target_id(member);
  progress.set_chain_version(chain.version());
  uint64_t extra = 0;
  for (auto& [key, version] : theirs) {
    if (!std::binary_search(mine.begin(), mine.end(), key)) ++extra;
  }
  progress.set_total_chunks(mine.size() + extra);
  Note(progress);
  uint64_t copied = 0;
  auto step = [&] {
    progress.set_synced_chunks(progress.synced_chunks() + 1);
    if (progress.synced_chunks() % 64 == 0) Note(progress);
  };
  for (auto [ino, index] : mine) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stopping_) return Status(ESHUTDOWN, "stopping");
    }
    KeyedLocks::Guard file_lock = service_.LockFile(source.id, chain.id(), ino, false);
    KeyedLocks::Guard chunk_lock = service_.LockChunk(source.id, ino, index, true);
    Result<std::optional<ChunkRecord>> record = source.store->Version(ino, index);
    if (!record.ok()) return record.status();
    auto known = theirs.find({ino, index});
    if (*record && known != theirs.end() && known->second == (*record)->version) {
      step();
      continue;
    }
    if (!*record) {
      // Gone here since the listing: it must go there too.
      theirs[{ino, index}] = 0;
      continue;
    }
    std::string whole;
    SEALFS_RETURN_IF_ERROR(source.store->Read(ino, index, 0, kMaxChunkSize, &whole));
    pb::WriteRequest copy;
    copy.mutable_chunk()->set_ino(ino);
    copy.mutable_chunk()->set_index(index);
    copy.set_chunk_size(kMaxChunkSize);
    copy.set_store_id(route->store_id);
    *copy.mutable_chain() = ref;
    copy.set_chunk_version((*record)->version);
    copy.set_committed_version((*record)->committed);
    copy.set_whole(true);
    copy.set_base_version(held.count({ino, index}) ? held[{ino, index}] : 0);
    pb::WriteResponse response;
    Status sent;
    for (int round = 0; round < 3; ++round) {
      sent = rpc::Invoke(*route->channel, write_method, copy, &response, whole, nullptr, options);
      if (!sent.ok() || !response.need_whole()) break;
      copy.set_base_version(response.current_version());
      response.Clear();
    }
    // A file removed there but not yet here: its removal reaches us too.
    if (sent.code() != ENOENT) SEALFS_RETURN_IF_ERROR(sent);
    if (response.need_whole()) return Status(EAGAIN, "the member's chunk keeps changing");
    ++copied;
    step();
  }
  for (auto& [key, version] : theirs) {
    if (std::binary_search(mine.begin(), mine.end(), key) && version != 0) continue;
    KeyedLocks::Guard chunk_lock = service_.LockChunk(source.id, key.first, key.second, true);
    Result<std::optional<ChunkRecord>> record = source.store->Version(key.first, key.second);
    if (!record.ok()) return record.status();
    if (*record) continue;  // written meanwhile: the write reached the member too
    pb::ChainDropRequest drop;
    *drop.mutable_chain() = ref;
    drop.mutable_chunk()->set_ino(key.first);
    drop.mutable_chunk()->set_index(key.second);
    drop.set_store_id(route->store_id);
    pb::ChainDropResponse ignored;
    SEALFS_RETURN_IF_ERROR(
        rpc::Invoke(*route->channel, rpc::data::kChainDrop, drop, &ignored, {}, nullptr, options));
    step();
  }
  progress.set_finished(true);
  Note(progress);
  std::fprintf(stderr,
               "sealfs-data: target %u caught up with chain %u (version %llu): %llu of %llu "
               "chunks copied\n",
               member, chain.id(), static_cast<unsigned long long>(chain.version()),
               static_cast<unsigned long long>(copied),
               static_cast<unsigned long long>(mine.size()));
  if (report_now_) report_now_();
  return Status::Ok();
}

}  // namespace sealfs::server
