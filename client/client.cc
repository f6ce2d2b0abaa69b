#include "sealfs/client/client.h"

#include <atomic>
#include <cstdio>
#include <random>

#include "sealfs/rpc/parallel_calls.h"

namespace sealfs::client {

Status ToFileError(const Status& status) {
  switch (status.code()) {
    case ECONNREFUSED:
    case ECONNRESET:
    case ETIMEDOUT:
    case EHOSTUNREACH:
    case EPIPE:
    case EPROTO:
    case ESHUTDOWN:
    case EBADMSG:
    case ECONNABORTED:
    case ENETUNREACH:
    case ESTALE:  // the data server's store was replaced: the data is lost
      return Status(EIO, status.ToString());
    default:
      return status;
  }
}

Client::Client(ClientOptions options) : options_(std::move(options)), io_(options_.io_threads) {}

Client::~Client() {
  {
    std::lock_guard<std::mutex> lock(keepalive_mutex_);
    stopping_ = true;
  }
  keepalive_wakeup_.notify_all();
  if (keepalive_.joinable()) keepalive_.join();
  io_.Stop();
}

Result<std::unique_ptr<Client>> Client::Connect(const ClientOptions& options) {
  if (!rpc::ParseAddress(options.meta_address).ok()) {
    return Status(EINVAL,
                  "metadata server address '" + options.meta_address + "' is not host:port");
  }
  std::unique_ptr<Client> client(new Client(options));
  client->meta_ = rpc::MakeChannel(client->io_, options.meta_address, options.transport);
  if (!options.volume.empty()) {
    std::random_device random;
    pb::MountRequest request;
    request.set_volume(options.volume);
    request.set_session_id((uint64_t{random()} << 32) | random() | 1);
    pb::MountResponse response;
    Status status = client->Meta(rpc::meta::kMount, request, &response);
    if (!status.ok()) return status;
    client->volume_ = response.volume();
    client->session_id_ = response.session_id();
    // Keepalives must come well within the server's session timeout.
    if (response.session_timeout_ms() > 0) {
      auto limit = std::chrono::milliseconds(response.session_timeout_ms() / 3);
      client->options_.keepalive_interval = std::max(
          std::chrono::milliseconds(100), std::min(client->options_.keepalive_interval, limit));
    }
  }
  Result<pb::ClusterMapResponse> map = client->RefreshClusterMap();
  if (!map.ok()) return map.status();
  if (!options.volume.empty()) {
    client->keepalive_ = std::thread([raw = client.get()] { raw->KeepaliveLoop(); });
  }
  return client;
}

Result<pb::ClusterMapResponse> Client::RefreshClusterMap() {
  pb::ClusterMapResponse map;
  Status status = Meta(rpc::meta::kClusterMap, pb::ClusterMapRequest{}, &map);
  if (!status.ok()) return status;
  std::lock_guard<std::mutex> lock(map_mutex_);
  for (const pb::DataServer& server : map.servers()) servers_[server.id()] = server;
  return map;
}

Result<Client::Route> Client::RouteTo(uint32_t server_id) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    {
      std::lock_guard<std::mutex> lock(map_mutex_);
      auto found = servers_.find(server_id);
      if (found != servers_.end()) {
        const std::string& address = found->second.address();
        auto& channel = channels_[address];
        if (!channel) channel = rpc::MakeChannel(io_, address, options_.transport);
        return Route{channel, found->second.instance_id()};
      }
    }
    if (attempt == 0) {
      auto map = RefreshClusterMap();
      if (!map.ok()) return map.status();
    }
  }
  return Status(EIO, "data server " + std::to_string(server_id) + " is not in the cluster map");
}

namespace {

// One piece of a file range that falls inside a single chunk.
struct Piece {
  uint32_t chunk_index;
  uint32_t offset_in_chunk;
  uint64_t offset_in_request;
  uint32_t length;
  uint32_t server;
};

Result<std::vector<Piece>> SplitRange(const pb::Layout& layout, uint64_t offset, uint64_t length) {
  if (layout.servers_size() == 0 || layout.chunk_size() == 0) {
    return Status(EIO, "file has no data layout");
  }
  std::vector<Piece> pieces;
  uint64_t chunk_size = layout.chunk_size();
  uint64_t done = 0;
  while (done < length) {
    uint64_t position = offset + done;
    uint64_t index = position / chunk_size;
    if (index > UINT32_MAX) return Status(EFBIG, "offset beyond the largest file");
    uint64_t in_chunk = position % chunk_size;
    uint64_t size = std::min(chunk_size - in_chunk, length - done);
    pieces.push_back(Piece{static_cast<uint32_t>(index), static_cast<uint32_t>(in_chunk), done,
                           static_cast<uint32_t>(size),
                           layout.servers(static_cast<int>(index % layout.servers_size()))});
    done += size;
  }
  return pieces;
}

std::vector<uint32_t> ServersOf(const std::vector<Piece>& pieces) {
  std::vector<uint32_t> servers;
  for (const Piece& piece : pieces) servers.push_back(piece.server);
  return servers;
}

}  // namespace

Result<std::vector<Client::Route>> Client::RoutesTo(const std::vector<uint32_t>& servers) {
  std::vector<Route> routes;
  for (uint32_t server : servers) {
    auto route = RouteTo(server);
    if (!route.ok()) return route.status();
    routes.push_back(std::move(*route));
  }
  return routes;
}

template <typename Issue>
Status Client::ForEachPiece(const pb::Layout& layout, uint64_t offset, uint64_t length,
                            Issue issue) {
  auto pieces = SplitRange(layout, offset, length);
  if (!pieces.ok()) return pieces.status();
  auto routes = RoutesTo(ServersOf(*pieces));
  if (!routes.ok()) return routes.status();
  auto calls = rpc::ParallelCalls::Start(pieces->size());
  for (size_t i = 0; i < pieces->size(); ++i) issue((*pieces)[i], (*routes)[i], calls);
  return calls->Wait();
}

Status Client::Write(uint64_t ino, const pb::Layout& layout, uint64_t offset, std::string_view data,
                     int64_t* allocated_delta) {
  std::atomic<int64_t> allocated{0};
  Status status = ForEachPiece(
      layout, offset, data.size(), [&](const Piece& piece, const Route& route, auto calls) {
        pb::WriteRequest request;
        request.mutable_chunk()->set_ino(ino);
        request.mutable_chunk()->set_index(piece.chunk_index);
        request.set_offset(piece.offset_in_chunk);
        request.set_chunk_size(layout.chunk_size());
        request.set_store_id(route.store_id);
        rpc::InvokeAsync(
            *route.channel, rpc::data::kWrite, request,
            data.substr(piece.offset_in_request, piece.length), call_options(),
            [calls, &allocated](Status status, pb::WriteResponse& response, rpc::Payload&) {
              if (status.ok()) allocated += response.allocated_delta();
              calls->Done(status);
            });
      });
  // Every piece has answered by now (the count is right even after an error).
  if (allocated_delta) *allocated_delta = allocated.load();
  return status;
}

Status Client::Read(uint64_t ino, const pb::Layout& layout, uint64_t offset, size_t length,
                    char* out) {
  return ForEachPiece(
      layout, offset, length, [&](const Piece& piece, const Route& route, auto calls) {
        pb::ReadRequest request;
        request.mutable_chunk()->set_ino(ino);
        request.mutable_chunk()->set_index(piece.chunk_index);
        request.set_offset(piece.offset_in_chunk);
        request.set_length(piece.length);
        request.set_store_id(route.store_id);
        rpc::CallOptions options = call_options();
        options.reply_payload_hint = piece.length;
        char* destination = out + piece.offset_in_request;
        uint32_t wanted = piece.length;
        rpc::InvokeAsync(
            *route.channel, rpc::data::kRead, request, {}, options,
            [calls, destination, wanted](Status status, pb::ReadResponse&, rpc::Payload& payload) {
              if (status.ok()) {
                size_t got = std::min<size_t>(payload.size(), wanted);
                std::memcpy(destination, payload.data(), got);
                std::memset(destination + got, 0, wanted - got);  // a hole reads as zeros
              }
              calls->Done(status);
            });
      });
}

Status Client::FsyncData(uint64_t ino, const pb::Layout& layout) {
  std::vector<uint32_t> servers(layout.servers().begin(), layout.servers().end());
  std::sort(servers.begin(), servers.end());
  servers.erase(std::unique(servers.begin(), servers.end()), servers.end());
  auto routes = RoutesTo(servers);
  if (!routes.ok()) return routes.status();
  auto calls = rpc::ParallelCalls::Start(routes->size());
  for (const Route& route : *routes) {
    pb::FsyncFileRequest request;
    request.set_ino(ino);
    request.set_store_id(route.store_id);
    rpc::InvokeAsync(
        *route.channel, rpc::data::kFsyncFile, request, {}, call_options(),
        [calls](Status status, pb::FsyncFileResponse&, rpc::Payload&) { calls->Done(status); });
  }
  return calls->Wait();
}

Status Client::SyncMeta() {
  pb::SyncResponse response;
  return Meta(rpc::meta::kSync, pb::SyncRequest{}, &response);
}

Result<pb::OpenResponse> Client::Open(uint64_t ino) {
  std::shared_lock<std::shared_mutex> announce(announce_mutex_);
  pb::OpenRequest request;
  request.set_ino(ino);
  request.set_session_id(session_id_);
  pb::OpenResponse response;
  Status status = Meta(rpc::meta::kOpen, request, &response);
  if (!status.ok()) return status;
  NoteOpen(ino);
  return response;
}

Result<pb::MknodResponse> Client::CreateAndOpen(uint64_t parent, const std::string& name,
                                                uint32_t mode, const pb::Caller& caller) {
  std::shared_lock<std::shared_mutex> announce(announce_mutex_);
  pb::MknodRequest request;
  request.set_parent(parent);
  request.set_name(name);
  request.set_mode(mode);
  *request.mutable_caller() = caller;
  request.set_open_session(session_id_);
  pb::MknodResponse response;
  Status status = Meta(rpc::meta::kMknod, request, &response);
  if (!status.ok()) return status;
  NoteOpen(response.attr().ino());
  return response;
}

void Client::NoteOpen(uint64_t ino) {
  std::lock_guard<std::mutex> lock(open_mutex_);
  ++open_counts_[ino];
}

Status Client::Close(uint64_t ino) {
  std::shared_lock<std::shared_mutex> announce(announce_mutex_);
  {
    std::lock_guard<std::mutex> lock(open_mutex_);
    auto found = open_counts_.find(ino);
    if (found != open_counts_.end() && --found->second <= 0) open_counts_.erase(found);
  }
  pb::CloseRequest request;
  request.set_ino(ino);
  request.set_session_id(session_id_);
  pb::CloseResponse response;
  return Meta(rpc::meta::kClose, request, &response);
}

void Client::KeepaliveLoop() {
  std::unique_lock<std::mutex> lock(keepalive_mutex_);
  while (!stopping_) {
    keepalive_wakeup_.wait_for(lock, options_.keepalive_interval);
    if (stopping_) break;
    lock.unlock();
    std::unique_lock<std::shared_mutex> announce(announce_mutex_);
    pb::SessionKeepaliveRequest request;
    request.set_session_id(session_id_);
    {
      std::lock_guard<std::mutex> open_lock(open_mutex_);
      for (auto& [ino, count] : open_counts_) {
        for (int i = 0; i < count; ++i) request.add_open_inodes(ino);
      }
    }
    pb::SessionKeepaliveResponse response;
    Meta(rpc::meta::kSessionKeepalive, request, &response);
    announce.unlock();
    RefreshClusterMap();
    lock.lock();
  }
}

}  // namespace sealfs::client
