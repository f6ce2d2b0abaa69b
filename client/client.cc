#include "sealfs/client/client.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <thread>

#include "sealfs/rpc/chain_errors.h"
#include "sealfs/rpc/chain_table.h"
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
    case ESTALE:
    case rpc::kStaleChain:
    case rpc::kNotCommitted:
      return Status(EIO, status.ToString());
    default:
      return status;
  }
}

Client::MetaRetry::MetaRetry(std::chrono::milliseconds wait)
    : deadline_(std::chrono::steady_clock::now() + wait) {}

bool Client::MetaRetry::Again(const Status& status) {
  if (!rpc::PeerUnreachable(status.code())) return false;
  auto now = std::chrono::steady_clock::now();
  if (now >= deadline_) return false;
  std::this_thread::sleep_for(
      std::min<std::chrono::steady_clock::duration>(pause_, deadline_ - now));
  pause_ = std::min(pause_ * 2, std::chrono::milliseconds(1000));
  return true;
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
  client->meta_raw_ = rpc::MakeChannel(client->io_, options.meta_address, options.transport);
  pb::Auth admin;
  if (!options.admin_credential.empty()) admin.set_admin_key(options.admin_credential);
  client->meta_auth_ = auth::WithAuth(client->meta_raw_, admin);
  client->meta_ = auth::AsChannel(client->meta_auth_);
  if (!options.volume.empty()) {
    if (options.token.empty() && options.admin_credential.empty()) {
      return Status(
          EACCES, "mounting volume '" + options.volume + "' needs its token (-o token_file=PATH)");
    }
    Status status = client->Mount();
    if (!status.ok()) return status;
  }
  Result<pb::ClusterMapResponse> map = client->RefreshClusterMap();
  if (!map.ok()) return map.status();
  if (!options.volume.empty()) {
    client->keepalive_ = std::thread([raw = client.get()] { raw->KeepaliveLoop(); });
  }
  return client;
}

Status Client::Remount(uint64_t ended_session) {
  std::lock_guard<std::mutex> lock(mount_mutex_);
  // Another thread mounted again already: its session serves this call too.
  if (session_id_ != ended_session) return Status::Ok();
  return MountLocked();
}

Status Client::Mount() {
  std::lock_guard<std::mutex> lock(mount_mutex_);
  return MountLocked();
}

Status Client::MountLocked() {
  pb::MountRequest request;
  request.set_volume(options_.volume);
  request.set_token(options_.token);
  pb::Auth admin;
  if (!options_.admin_credential.empty()) admin.set_admin_key(options_.admin_credential);
  // Not over meta_: its requests carry the session being replaced.
  auto channel = auth::AsChannel(auth::WithAuth(meta_raw_, admin));
  pb::MountResponse response;
  Status status =
      rpc::Invoke(*channel, rpc::meta::kMount, request, &response, {}, nullptr, call_options());
  if (!status.ok()) return status;
  if (volume_.id() != 0 && response.volume().id() != volume_.id()) {
    return Status(ESTALE, "volume '" + options_.volume + "' was deleted and made again");
  }
  // Set once: other threads read it (the same volume mounts again after).
  if (volume_.id() == 0) volume_ = response.volume();
  session_id_ = response.session_id();
  pb::Auth session;
  session.set_session_id(response.session_id());
  session.set_session_key(response.session_key());
  auth::SetAuth(*meta_auth_, session);
  // Keepalives must come well within the server's session timeout.
  if (response.session_timeout_ms() > 0) {
    auto limit = std::chrono::milliseconds(response.session_timeout_ms() / 3);
    options_.keepalive_interval =
        std::max(std::chrono::milliseconds(100), std::min(options_.keepalive_interval, limit));
  }
  return Status::Ok();
}

namespace {
// How far ahead a writer reserves quota: the common case (a file written
// front to back) asks again only every few megabytes, or every eighth of
// the file's size, up to 64 MiB.
uint64_t ReservationEnd(uint64_t end) {
  uint64_t extent = std::clamp<uint64_t>(end / 8, 4u << 20, 64u << 20);
  return end + extent;
}
}  // namespace

void Client::KeepCapability(const pb::Capability& cap) {
  if (cap.mac().empty()) return;
  int64_t left_ns = cap.expires_ns() - auth::WallClockNs();
  auto renew_at = std::chrono::steady_clock::now() + std::chrono::nanoseconds(left_ns / 2);
  std::lock_guard<std::mutex> lock(caps_mutex_);
  caps_[cap.ino()] = HeldCapability{cap, renew_at};
}

Status Client::RenewIfExpired(uint64_t ino, const Status& status) {
  // Clocks differ between machines: a capability this client thought
  // valid expired at the server. Drop it and retry with a fresh one.
  if (status.code() != EACCES || status.message().find("expired") == std::string::npos) {
    return status;
  }
  DropCapability(ino);
  return Status(rpc::kStaleChain, status.message());
}

void Client::DropCapability(uint64_t ino) {
  std::lock_guard<std::mutex> lock(caps_mutex_);
  caps_.erase(ino);
}

Result<pb::Capability> Client::Capability(uint64_t ino, bool write, uint64_t end) {
  {
    std::lock_guard<std::mutex> lock(caps_mutex_);
    auto held = caps_.find(ino);
    if (held != caps_.end() && std::chrono::steady_clock::now() < held->second.renew_at &&
        (!write ||
         ((held->second.cap.rights() & pb::CAP_WRITE) && end <= held->second.cap.write_limit()))) {
      return held->second.cap;
    }
  }
  pb::ReserveRequest request;
  request.set_ino(ino);
  request.set_write(write);
  if (write) {
    request.set_need_end(end);
    request.set_want_end(ReservationEnd(end));
  }
  pb::ReserveResponse response;
  Status status = Meta(rpc::meta::kReserve, request, &response);
  if (!status.ok()) return status;
  KeepCapability(response.cap());
  return response.cap();
}

Result<pb::ClusterMapResponse> Client::RefreshClusterMap() {
  pb::ClusterMapResponse map;
  Status status = Meta(rpc::meta::kClusterMap, pb::ClusterMapRequest{}, &map);
  if (!status.ok()) return status;
  std::lock_guard<std::mutex> lock(map_mutex_);
  if (map.version() >= map_.version()) map_ = map;
  return map;
}

Result<Client::Route> Client::RouteToChain(uint32_t chain_id, Target which) {
  std::lock_guard<std::mutex> lock(map_mutex_);
  const pb::Chain* chain = nullptr;
  for (const pb::Chain& candidate : map_.chains()) {
    if (candidate.id() == chain_id) chain = &candidate;
  }
  if (!chain) {
    return Status(rpc::kStaleChain, "chain " + std::to_string(chain_id) + " is not in the map");
  }
  if (chain->lost()) {
    return Status(
        EIO, "chain " + std::to_string(chain_id) + " lost its data: no member holds it any more");
  }
  std::vector<uint32_t> serving = chains::Serving(*chain);
  if (serving.empty()) {
    return Status(rpc::kStaleChain, "chain " + std::to_string(chain_id) + " has no serving member");
  }
  uint32_t target_id = serving.front();
  if (which == Target::kTail) target_id = serving.back();
  // Reads spread over the replicas.
  if (which == Target::kAnyReplica) target_id = serving[next_replica_++ % serving.size()];
  for (const pb::Target& target : map_.targets()) {
    if (target.id() != target_id) continue;
    for (const pb::DataServer& server : map_.servers()) {
      if (server.id() != target.server_id()) continue;
      auto& channel = channels_[server.address()];
      if (!channel) channel = rpc::MakeChannel(io_, server.address(), options_.transport);
      pb::ChainRef ref;
      ref.set_id(chain_id);
      ref.set_version(chain->version());
      return Route{channel, target.instance_id(), ref};
    }
  }
  return Status(rpc::kStaleChain, "target " + std::to_string(target_id) + " is not in the map");
}

rpc::CallOptions Client::data_call_options() {
  // Longer than a head waits for its successor (a lease), so that the head
  // answers why before we give up on it.
  std::lock_guard<std::mutex> lock(map_mutex_);
  auto lease = std::chrono::milliseconds(map_.lease_ms() > 0 ? map_.lease_ms() : 10000);
  return rpc::CallOptions{lease + std::chrono::seconds(5)};
}

namespace {

// One piece of a file range that falls inside a single chunk.
struct Piece {
  uint32_t chunk_index;
  uint32_t offset_in_chunk;
  uint64_t offset_in_request;
  uint32_t length;
  uint32_t chain;
};

Result<std::vector<Piece>> SplitRange(const pb::Layout& layout, uint64_t offset, uint64_t length) {
  if (layout.chains_size() == 0 || layout.chunk_size() == 0) {
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
                           layout.chains(static_cast<int>(index % layout.chains_size()))});
    done += size;
  }
  return pieces;
}

}  // namespace

// Runs issue(i, target, done) for every item, all in parallel, and again
// for items that failed in a way a fresher map may cure, until all succeed,
// one fails otherwise, or options_.io_wait has passed (then EIO).
template <typename Issue>
Status Client::WithRetries(size_t count, Target target, Issue issue) {
  auto deadline = std::chrono::steady_clock::now() + options_.io_wait;
  std::vector<size_t> pending(count);
  for (size_t i = 0; i < count; ++i) pending[i] = i;
  std::vector<Target> targets(count, target);
  auto backoff = std::chrono::milliseconds(20);
  for (;;) {
    std::vector<Status> results(count);
    auto calls = rpc::ParallelCalls::Start(pending.size());
    for (size_t i : pending) {
      issue(i, targets[i], [calls, &results, i](const Status& status) {
        results[i] = status;
        calls->Done(status);
      });
    }
    calls->Wait();  // every callback has run: `results` is complete
    std::vector<size_t> again;
    Status last;
    for (size_t i : pending) {
      if (results[i].ok()) continue;
      last = results[i];
      if ((results[i].code() == rpc::kNotCommitted || results[i].code() == EIO) &&
          targets[i] == Target::kAnyReplica) {
        // The tail holds what the chain committed (and another copy, where
        // this one could not be read or repaired).
        targets[i] = Target::kTail;
      } else if (!rpc::RetryableOnChain(results[i].code()) &&
                 results[i].code() != rpc::kNotCommitted) {
        return results[i];
      } else if (results[i].code() == rpc::kNotCommitted) {
        targets[i] = Target::kTail;
      }
      again.push_back(i);
    }
    if (again.empty()) return Status::Ok();
    if (std::chrono::steady_clock::now() > deadline) {
      return Status(EIO, "no member of the file's chains answered within " +
                             std::to_string(options_.io_wait.count() / 1000) +
                             " s: " + last.ToString());
    }
    pending = std::move(again);
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, std::chrono::milliseconds(500));
    RefreshClusterMap();
  }
}

Status Client::Write(uint64_t ino, const pb::Layout& layout, uint64_t offset, std::string_view data,
                     int64_t* allocated_delta) {
  auto pieces = SplitRange(layout, offset, data.size());
  if (!pieces.ok()) return pieces.status();
  const uint64_t end = offset + data.size();
  std::atomic<int64_t> allocated{0};
  rpc::CallOptions options = data_call_options();
  Status status =
      WithRetries(pieces->size(), Target::kHead, [&](size_t i, Target which, auto done) {
        const Piece& piece = (*pieces)[i];
        Result<Route> route = RouteToChain(piece.chain, which);
        if (!route.ok()) return done(route.status());
        // Asked on every attempt: retries may outlast a capability.
        Result<pb::Capability> cap = Capability(ino, true, end);
        if (!cap.ok()) return done(cap.status());
        pb::WriteRequest request;
        request.mutable_chunk()->set_ino(ino);
        request.mutable_chunk()->set_index(piece.chunk_index);
        request.set_offset(piece.offset_in_chunk);
        request.set_chunk_size(layout.chunk_size());
        request.set_store_id(route->store_id);
        *request.mutable_chain() = route->chain;
        *request.mutable_cap() = *cap;
        rpc::InvokeAsync(*route->channel, rpc::data::kWrite, request,
                         data.substr(piece.offset_in_request, piece.length), options,
                         [this, ino, done, &allocated](Status status, pb::WriteResponse& response,
                                                       rpc::Payload&) {
                           if (status.ok()) allocated += response.allocated_delta();
                           done(RenewIfExpired(ino, status));
                         });
      });
  // Every piece has answered by now (the count is right even after an error).
  if (allocated_delta) *allocated_delta = allocated.load();
  return status;
}

Status Client::Read(uint64_t ino, const pb::Layout& layout, uint64_t offset, size_t length,
                    char* out) {
  auto pieces = SplitRange(layout, offset, length);
  if (!pieces.ok()) return pieces.status();
  rpc::CallOptions options = data_call_options();
  return WithRetries(pieces->size(), Target::kAnyReplica, [&](size_t i, Target which, auto done) {
    const Piece& piece = (*pieces)[i];
    Result<Route> route = RouteToChain(piece.chain, which);
    if (!route.ok()) return done(route.status());
    Result<pb::Capability> cap = Capability(ino, false, 0);
    if (!cap.ok()) return done(cap.status());
    pb::ReadRequest request;
    request.mutable_chunk()->set_ino(ino);
    request.mutable_chunk()->set_index(piece.chunk_index);
    request.set_offset(piece.offset_in_chunk);
    request.set_length(piece.length);
    request.set_store_id(route->store_id);
    *request.mutable_chain() = route->chain;
    *request.mutable_cap() = *cap;
    rpc::CallOptions call = options;
    call.reply_payload_hint = piece.length;
    char* destination = out + piece.offset_in_request;
    uint32_t wanted = piece.length;
    rpc::InvokeAsync(*route->channel, rpc::data::kRead, request, {}, call,
                     [this, ino, done, destination, wanted](Status status, pb::ReadResponse&,
                                                            rpc::Payload& payload) {
                       if (status.ok()) {
                         size_t got = std::min<size_t>(payload.size(), wanted);
                         std::memcpy(destination, payload.data(), got);
                         std::memset(destination + got, 0, wanted - got);  // a hole reads as zeros
                       }
                       done(RenewIfExpired(ino, status));
                     });
  });
}

Status Client::FsyncData(uint64_t ino, const pb::Layout& layout) {
  std::vector<uint32_t> chain_ids(layout.chains().begin(), layout.chains().end());
  std::sort(chain_ids.begin(), chain_ids.end());
  chain_ids.erase(std::unique(chain_ids.begin(), chain_ids.end()), chain_ids.end());
  rpc::CallOptions options = data_call_options();
  return WithRetries(chain_ids.size(), Target::kHead, [&](size_t i, Target which, auto done) {
    Result<Route> route = RouteToChain(chain_ids[i], which);
    if (!route.ok()) return done(route.status());
    Result<pb::Capability> cap = Capability(ino, false, 0);
    if (!cap.ok()) return done(cap.status());
    pb::FsyncFileRequest request;
    request.set_ino(ino);
    request.set_store_id(route->store_id);
    *request.mutable_chain() = route->chain;
    *request.mutable_cap() = *cap;
    rpc::InvokeAsync(*route->channel, rpc::data::kFsyncFile, request, {}, options,
                     [this, ino, done](Status status, pb::FsyncFileResponse&, rpc::Payload&) {
                       done(RenewIfExpired(ino, status));
                     });
  });
}

Status Client::SyncMeta() {
  pb::SyncResponse response;
  return Meta(rpc::meta::kSync, pb::SyncRequest{}, &response);
}

Result<pb::OpenResponse> Client::Open(uint64_t ino, bool write) {
  std::shared_lock<std::shared_mutex> announce(announce_mutex_);
  pb::OpenRequest request;
  request.set_ino(ino);
  request.set_session_id(session_id_);
  request.set_write(write);
  pb::OpenResponse response;
  Status status = Meta(rpc::meta::kOpen, request, &response);
  if (!status.ok()) return status;
  KeepCapability(response.cap());
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
  KeepCapability(response.cap());
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
    if (found != open_counts_.end() && --found->second <= 0) {
      open_counts_.erase(found);
      DropCapability(ino);
    }
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
