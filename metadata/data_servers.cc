// The calls that cut, measure or remove a file's data on its chains.
#include <cstdio>
#include <thread>

#include "sealfs/metadata/meta_service.h"
#include "sealfs/rpc/chain_errors.h"
#include "sealfs/rpc/methods.h"
#include "sealfs/rpc/parallel_calls.h"

namespace sealfs::metadata {

namespace {
constexpr auto kDataCallTimeout = std::chrono::seconds(20);

std::vector<uint32_t> DistinctChains(const pb::Layout& layout, uint64_t chunk_limit) {
  std::vector<uint32_t> chains;
  uint64_t count = std::min<uint64_t>(chunk_limit, static_cast<uint64_t>(layout.chains_size()));
  for (uint64_t i = 0; i < count; ++i) {
    uint32_t id = layout.chains(static_cast<int>(i));
    if (std::find(chains.begin(), chains.end(), id) == chains.end()) chains.push_back(id);
  }
  return chains;
}
}  // namespace

template <typename Request, typename Response>
Status MetaService::CallChains(const std::vector<uint32_t>& chain_ids, ChainEnd end,
                               rpc::Method<Request, Response> method, Request request,
                               std::function<void(const Response&)> on_reply) {
  // A chain that is changing (a member died, the lease has not run out yet)
  // is asked again until it settles: a server's lease plus some seconds.
  auto deadline = Clock::now() + options_.server_timeout + std::chrono::seconds(10);
  std::vector<uint32_t> pending = chain_ids;
  for (;;) {
    std::mutex mutex;
    std::vector<uint32_t> retry;
    Status failure;
    auto calls = rpc::ParallelCalls::Start(pending.size());
    for (uint32_t chain_id : pending) {
      auto note = [&mutex, &retry, &failure, chain_id](const Status& status) {
        std::lock_guard<std::mutex> lock(mutex);
        if (rpc::RetryableOnChain(status.code())) {
          retry.push_back(chain_id);
        } else if (failure.ok()) {
          failure = status;
        }
      };
      Result<ChainRoute> route = RouteToChain(chain_id, end);
      if (route.status().code() == ENODATA) {
        calls->Done(Status::Ok());  // nothing left there to change
        continue;
      }
      if (!route.ok()) {
        note(route.status());
        calls->Done(route.status());
        continue;
      }
      request.set_store_id(route->route.store_id);
      *request.mutable_chain() = route->ref;
      rpc::InvokeAsync(*route->route.channel, method, request, {},
                       rpc::CallOptions{kDataCallTimeout},
                       [calls, on_reply, note](Status status, Response& response, rpc::Payload&) {
                         if (status.ok() && on_reply) on_reply(response);
                         if (!status.ok()) note(status);
                         calls->Done(status);
                       });
    }
    Status last = calls->Wait();
    if (!failure.ok()) return failure;
    if (retry.empty()) return Status::Ok();
    if (Clock::now() > deadline) return last;
    pending = std::move(retry);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

Result<uint64_t> MetaService::TruncateData(const pb::Inode& inode, uint64_t size) {
  pb::TruncateFileRequest request;
  request.set_ino(inode.attr().ino());
  request.set_size(size);
  request.set_chunk_size(inode.layout().chunk_size());
  *request.mutable_stripe() = inode.layout().chains();
  std::atomic<uint64_t> allocated{0};
  Status status = CallChains<pb::TruncateFileRequest, pb::TruncateFileResponse>(
      DistinctChains(inode.layout(), UINT64_MAX), ChainEnd::kHead, rpc::data::kTruncateFile,
      request, [&allocated](const pb::TruncateFileResponse& response) {
        allocated += response.allocated_bytes();
      });
  if (!status.ok()) return Status(EIO, "truncating file data failed: " + status.ToString());
  return allocated.load();
}

bool MetaService::RemovePendingData() {
  Result<std::vector<std::pair<uint64_t, pb::Layout>>> removals = store_.PendingRemovals();
  if (!removals.ok() || removals->empty()) return false;
  // One call per target for a batch of files: each makes all its removals
  // durable with one sync. A file's removal is done once every member of
  // its chains has applied it; files with a member offline wait for it (a
  // member that returns drops removed files' chunks before it serves).
  constexpr size_t kBatch = 1024;
  std::map<uint32_t, Route> routes;
  std::map<uint32_t, std::vector<uint64_t>> per_target;
  std::map<uint64_t, std::vector<uint32_t>> targets_of;
  std::vector<std::pair<uint64_t, pb::Layout>> batch;
  for (auto& [ino, layout] : *removals) {
    if (batch.size() == kBatch) break;
    std::vector<Route> live = LiveTargetsOf(layout);
    if (live.size() != MembersOf(layout).size()) continue;
    for (Route& route : live) {
      per_target[route.target_id].push_back(ino);
      targets_of[ino].push_back(route.target_id);
      routes.emplace(route.target_id, std::move(route));
    }
    batch.emplace_back(ino, layout);
  }
  std::mutex mutex;
  std::map<uint32_t, Status> results;
  auto calls = rpc::ParallelCalls::Start(per_target.size());
  for (auto& [target, inos] : per_target) {
    const Route& route = routes.at(target);
    pb::RemoveFileRequest request;
    request.set_store_id(route.store_id);
    for (uint64_t ino : inos) request.add_more_inos(ino);
    rpc::InvokeAsync(
        *route.channel, rpc::data::kRemoveFile, request, {}, rpc::CallOptions{kDataCallTimeout},
        [&mutex, &results, target, calls](Status status, pb::RemoveFileResponse&, rpc::Payload&) {
          {
            std::lock_guard<std::mutex> lock(mutex);
            results[target] = status;
          }
          calls->Done(status);
        });
  }
  calls->Wait();  // every callback has run: `results` is complete
  std::vector<uint64_t> done;
  for (auto& [ino, layout] : batch) {
    bool removed = true;
    for (uint32_t target : targets_of[ino]) {
      auto result = results.find(target);
      removed = removed && result != results.end() && result->second.ok();
    }
    if (removed) done.push_back(ino);
  }
  Status recorded = store_.RemovalsDone(done);
  if (!recorded.ok()) {
    std::fprintf(stderr, "sealfs-meta: recording removals: %s\n", recorded.ToString().c_str());
  }
  // Only a full pass that all went through asks for another at once; what
  // failed waits for the next sweep.
  return batch.size() == kBatch && done.size() == batch.size();
}

Result<MetaService::DataUsage> MetaService::FileUsage(const pb::Inode& inode, uint64_t size,
                                                      std::chrono::milliseconds timeout) {
  const pb::Layout& layout = inode.layout();
  DataUsage usage;
  if (layout.chunk_size() == 0 || layout.chains_size() == 0 || size == 0) return usage;
  uint64_t chunk_limit = (size + layout.chunk_size() - 1) / layout.chunk_size();
  std::mutex mutex;
  // The tail of each chain holds exactly what the chain committed.
  std::vector<uint32_t> chain_ids = DistinctChains(layout, chunk_limit);
  auto calls = rpc::ParallelCalls::Start(chain_ids.size());
  for (uint32_t chain_id : chain_ids) {
    Result<ChainRoute> route = RouteToChain(chain_id, ChainEnd::kTail);
    if (!route.ok()) {
      calls->Done(route.status().code() == ENODATA ? Status::Ok() : route.status());
      continue;
    }
    pb::FileUsageRequest request;
    request.set_ino(inode.attr().ino());
    request.set_chunk_size(layout.chunk_size());
    request.set_index_limit(static_cast<uint32_t>(std::min<uint64_t>(chunk_limit, UINT32_MAX)));
    request.set_store_id(route->route.store_id);
    *request.mutable_chain() = route->ref;
    *request.mutable_stripe() = layout.chains();
    rpc::InvokeAsync(*route->route.channel, rpc::data::kFileUsage, request, {},
                     rpc::CallOptions{timeout},
                     [&, calls](Status status, pb::FileUsageResponse& response, rpc::Payload&) {
                       if (status.ok()) {
                         std::lock_guard<std::mutex> lock(mutex);
                         usage.data_end = std::max(usage.data_end, response.data_end());
                         usage.allocated_bytes += response.allocated_bytes();
                       }
                       calls->Done(status);
                     });
  }
  Status status = calls->Wait();
  if (!status.ok()) return status;
  return usage;
}

}  // namespace sealfs::metadata
