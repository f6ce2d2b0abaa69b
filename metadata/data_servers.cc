// The metadata service's view of the data servers: their live state, the
// cluster map, and the calls that cut, measure or remove a file's data.
#include <cstdio>
#include <thread>

#include "sealfs/metadata/meta_service.h"
#include "sealfs/rpc/methods.h"
#include "sealfs/rpc/parallel_calls.h"

namespace sealfs::metadata {

namespace {
constexpr auto kDataCallTimeout = std::chrono::seconds(20);

// The distinct servers holding chunks [0, chunk_limit) of a layout.
std::vector<uint32_t> ServersOfChunks(const pb::Layout& layout, uint64_t chunk_limit) {
  std::vector<uint32_t> servers;
  uint64_t count = std::min<uint64_t>(chunk_limit, static_cast<uint64_t>(layout.servers_size()));
  for (uint64_t i = 0; i < count; ++i) {
    uint32_t id = layout.servers(static_cast<int>(i));
    if (std::find(servers.begin(), servers.end(), id) == servers.end()) servers.push_back(id);
  }
  return servers;
}
}  // namespace

void MetaService::LoadServers() {
  Result<std::vector<pb::DataServer>> servers = store_.ListServers();
  if (!servers.ok()) {
    std::fprintf(stderr, "sealfs-meta: reading data servers: %s\n",
                 servers.status().ToString().c_str());
    return;
  }
  std::lock_guard<std::mutex> lock(servers_mutex_);
  for (const pb::DataServer& server : *servers) servers_[server.id()].record = server;
}

std::vector<uint32_t> MetaService::PlacementServers() {
  // Right after this server started it has heard from nobody yet: wait a
  // little (heartbeats come every couple of seconds) rather than place data
  // on a server that may be gone for good.
  constexpr auto kStartupWait = std::chrono::seconds(5);
  for (;;) {
    std::vector<uint32_t> up;
    bool everyone_heard = true;
    {
      std::lock_guard<std::mutex> lock(servers_mutex_);
      auto now = Clock::now();
      for (auto& [id, state] : servers_) {
        if (state.heard && now - state.last_heartbeat < options_.server_timeout) {
          up.push_back(id);
        } else {
          everyone_heard = false;
        }
      }
    }
    if (everyone_heard || Clock::now() - started_ >
                              std::min<Clock::duration>(kStartupWait, options_.server_timeout)) {
      return up;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

pb::ClusterMapResponse MetaService::ClusterMap() {
  pb::ClusterMapResponse map;
  std::lock_guard<std::mutex> lock(servers_mutex_);
  auto now = Clock::now();
  bool changed = false;
  for (auto& [id, state] : servers_) {
    bool up = state.heard && now - state.last_heartbeat < options_.server_timeout;
    std::string new_state = up ? "up" : "down";
    if (state.record.state() != new_state) {
      state.record.set_state(new_state);
      changed = true;
    }
    *map.add_servers() = state.record;
  }
  if (changed) ++map_version_;
  map.set_version(map_version_);
  return map;
}

Result<MetaService::Route> MetaService::RouteTo(uint32_t server_id) {
  std::lock_guard<std::mutex> lock(servers_mutex_);
  auto server = servers_.find(server_id);
  if (server == servers_.end()) {
    return Status(EIO, "data server " + std::to_string(server_id) + " is unknown");
  }
  const std::string& address = server->second.record.address();
  auto& channel = channels_[address];
  if (!channel) channel = rpc::MakeTcpChannel(io_, address);
  return Route{server_id, channel, server->second.record.instance_id()};
}

template <typename Request, typename Response>
Status MetaService::CallServers(const std::vector<uint32_t>& servers,
                                rpc::Method<Request, Response> method, Request request,
                                std::chrono::milliseconds timeout,
                                std::function<void(const Response&)> on_reply) {
  std::vector<Route> routes;
  for (uint32_t id : servers) {
    Result<Route> route = RouteTo(id);
    if (!route.ok()) return route.status();
    routes.push_back(std::move(*route));
  }
  auto calls = rpc::ParallelCalls::Start(routes.size());
  for (const Route& route : routes) {
    request.set_store_id(route.store_id);
    rpc::InvokeAsync(*route.channel, method, request, {}, rpc::CallOptions{timeout},
                     [calls, on_reply](Status status, Response& response, rpc::Payload&) {
                       if (status.ok() && on_reply) on_reply(response);
                       calls->Done(status);
                     });
  }
  return calls->Wait();
}

Result<uint64_t> MetaService::TruncateData(const pb::Inode& inode, uint64_t size) {
  pb::TruncateFileRequest request;
  request.set_ino(inode.attr().ino());
  request.set_size(size);
  request.set_chunk_size(inode.layout().chunk_size());
  std::atomic<uint64_t> allocated{0};
  Status status = CallServers<pb::TruncateFileRequest, pb::TruncateFileResponse>(
      ServersOfChunks(inode.layout(), UINT64_MAX), rpc::data::kTruncateFile, request,
      kDataCallTimeout, [&allocated](const pb::TruncateFileResponse& response) {
        allocated += response.allocated_bytes();
      });
  if (!status.ok()) return Status(EIO, "truncating file data failed: " + status.ToString());
  return allocated.load();
}

void MetaService::RemovePendingData() {
  Result<std::vector<std::pair<uint64_t, pb::Layout>>> removals = store_.PendingRemovals();
  if (!removals.ok() || removals->empty()) return;
  constexpr size_t kBatch = 1024;
  if (removals->size() > kBatch) removals->resize(kBatch);
  // One call per server for the whole batch: each server makes all its
  // removals durable with one sync. A store that was replaced took the
  // files' chunks with it: nothing to ask it.
  std::map<uint32_t, std::vector<uint64_t>> per_server;
  std::map<uint32_t, bool> replaced;
  for (auto& [ino, layout] : *removals) {
    for (uint32_t id : ServersOfChunks(layout, UINT64_MAX)) {
      auto known = replaced.try_emplace(id, false);
      if (known.second) known.first->second = StoreReplaced(id);
      if (!known.first->second) per_server[id].push_back(ino);
    }
  }
  std::mutex mutex;
  std::map<uint32_t, Status> results;
  auto calls = rpc::ParallelCalls::Start(per_server.size());
  for (auto& [id, inos] : per_server) {
    Result<Route> route = RouteTo(id);
    if (!route.ok()) {
      {
        std::lock_guard<std::mutex> lock(mutex);  // callbacks may be running
        results[id] = route.status();
      }
      calls->Done(route.status());
      continue;
    }
    pb::RemoveFileRequest request;
    request.set_store_id(route->store_id);
    for (uint64_t ino : inos) request.add_more_inos(ino);
    rpc::InvokeAsync(
        *route->channel, rpc::data::kRemoveFile, request, {}, rpc::CallOptions{kDataCallTimeout},
        [&mutex, &results, id, calls](Status status, pb::RemoveFileResponse&, rpc::Payload&) {
          {
            std::lock_guard<std::mutex> lock(mutex);
            results[id] = status;
          }
          calls->Done(status);
        });
  }
  calls->Wait();  // every callback has run: `results` is complete
  std::vector<uint64_t> done;
  for (auto& [ino, layout] : *removals) {
    bool removed = true;
    for (uint32_t id : ServersOfChunks(layout, UINT64_MAX)) {
      if (replaced[id]) continue;
      auto result = results.find(id);
      removed = removed && result != results.end() && result->second.ok();
    }
    if (removed) done.push_back(ino);
  }
  Status recorded = store_.RemovalsDone(done);
  if (!recorded.ok()) {
    std::fprintf(stderr, "sealfs-meta: recording removals: %s\n", recorded.ToString().c_str());
  }
}

bool MetaService::StoreReplaced(uint32_t server_id) {
  std::lock_guard<std::mutex> lock(servers_mutex_);
  auto server = servers_.find(server_id);
  if (server == servers_.end()) return true;
  for (auto& [id, other] : servers_) {
    if (id != server_id && other.heard && other.record.address() == server->second.record.address())
      return true;
  }
  return false;
}

Result<MetaService::DataUsage> MetaService::FileUsage(const pb::Inode& inode, uint64_t size,
                                                      std::chrono::milliseconds timeout) {
  const pb::Layout& layout = inode.layout();
  DataUsage usage;
  if (layout.chunk_size() == 0 || layout.servers_size() == 0 || size == 0) return usage;
  uint64_t chunk_limit = (size + layout.chunk_size() - 1) / layout.chunk_size();
  pb::FileUsageRequest request;
  request.set_ino(inode.attr().ino());
  request.set_chunk_size(layout.chunk_size());
  request.set_index_limit(static_cast<uint32_t>(std::min<uint64_t>(chunk_limit, UINT32_MAX)));
  std::mutex mutex;
  Status status = CallServers<pb::FileUsageRequest, pb::FileUsageResponse>(
      ServersOfChunks(layout, chunk_limit), rpc::data::kFileUsage, request, timeout,
      [&](const pb::FileUsageResponse& response) {
        std::lock_guard<std::mutex> lock(mutex);
        usage.data_end = std::max(usage.data_end, response.data_end());
        usage.allocated_bytes += response.allocated_bytes();
      });
  if (!status.ok()) return status;
  return usage;
}

}  // namespace sealfs::metadata
