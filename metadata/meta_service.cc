#include "sealfs/metadata/meta_service.h"

#include <sys/stat.h>

#include <cstdio>
#include <random>

#include "sealfs/rpc/methods.h"
#include "sealfs/rpc/parallel_calls.h"

namespace sealfs::metadata {

namespace {
using Clock = std::chrono::steady_clock;
constexpr auto kDataCallTimeout = std::chrono::seconds(20);

}  // namespace

MetaService::MetaService(MetaStore& store, rpc::IoThreads& io, MetaServiceOptions options)
    : store_(store), io_(io), options_(options) {
  for (const pb::DataServer& server : store_.ListServers()) {
    servers_[server.id()].record = server;
  }
}

MetaService::~MetaService() { Stop(); }

void MetaService::Start() {
  sweeper_ = std::thread([this] {
    std::unique_lock<std::mutex> lock(sweep_mutex_);
    while (!stopping_) {
      sweep_wakeup_.wait_for(lock, options_.sweep_interval);
      if (stopping_) break;
      lock.unlock();
      SweepOnce();
      lock.lock();
    }
  });
}

void MetaService::Stop() {
  {
    std::lock_guard<std::mutex> lock(sweep_mutex_);
    stopping_ = true;
  }
  sweep_wakeup_.notify_all();
  if (sweeper_.joinable()) sweeper_.join();
}

// ---------------------------------------------------------------- sessions

void MetaService::TouchSession(uint64_t session_id) {
  if (session_id == 0) return;
  std::lock_guard<std::mutex> lock(sessions_mutex_);
  sessions_[session_id].last_seen = Clock::now();
}

void MetaService::OpenFile(uint64_t session_id, uint64_t ino) {
  std::lock_guard<std::mutex> lock(sessions_mutex_);
  Session& session = sessions_[session_id];
  session.last_seen = Clock::now();
  ++session.open_counts[ino];
  ++open_totals_[ino];
}

bool MetaService::CloseFile(uint64_t session_id, uint64_t ino) {
  std::lock_guard<std::mutex> lock(sessions_mutex_);
  auto session = sessions_.find(session_id);
  if (session == sessions_.end()) return !open_totals_.contains(ino);
  session->second.last_seen = Clock::now();
  auto count = session->second.open_counts.find(ino);
  if (count == session->second.open_counts.end()) return !open_totals_.contains(ino);
  if (--count->second == 0) session->second.open_counts.erase(count);
  auto total = open_totals_.find(ino);
  if (total != open_totals_.end() && --total->second <= 0) {
    open_totals_.erase(total);
    return true;
  }
  return false;
}

bool MetaService::IsOpen(uint64_t ino) {
  std::lock_guard<std::mutex> lock(sessions_mutex_);
  return open_totals_.contains(ino);
}

void MetaService::AfterUnlink(const Unlinked& unlinked) {
  if (unlinked.freed) sweep_wakeup_.notify_all();
}

void MetaService::SweepOnce() {
  // Expire sessions whose client stopped sending keepalives.
  {
    std::lock_guard<std::mutex> lock(sessions_mutex_);
    auto now = Clock::now();
    for (auto it = sessions_.begin(); it != sessions_.end();) {
      if (now - it->second.last_seen > options_.session_timeout) {
        for (auto& [ino, count] : it->second.open_counts) {
          auto total = open_totals_.find(ino);
          if (total != open_totals_.end() && (total->second -= count) <= 0)
            open_totals_.erase(total);
        }
        it = sessions_.erase(it);
      } else {
        ++it;
      }
    }
  }
  // Orphans nobody holds open any more. After a restart, wait one session
  // timeout so that clients can re-announce the files they hold.
  if (Clock::now() - started_ > options_.session_timeout) {
    for (uint64_t ino : store_.Orphans()) {
      if (!IsOpen(ino)) store_.ReleaseOrphan(ino);
    }
  }
  // Remove chunks of freed files; a server that is down is retried later.
  for (auto& [ino, layout] : store_.PendingRemovals()) {
    pb::RemoveFileRequest request;
    request.set_ino(ino);
    if (CallEveryServer(layout, rpc::data::kRemoveFile, request, std::chrono::seconds(5)).ok()) {
      store_.RemovalDone(ino);
    }
  }
}

// ---------------------------------------------------------------- data servers

std::vector<uint32_t> MetaService::ServerIds() {
  std::lock_guard<std::mutex> lock(servers_mutex_);
  std::vector<uint32_t> ids;
  for (auto& [id, state] : servers_) ids.push_back(id);
  return ids;
}

std::shared_ptr<rpc::Channel> MetaService::ChannelTo(uint32_t server_id) {
  std::lock_guard<std::mutex> lock(servers_mutex_);
  auto server = servers_.find(server_id);
  if (server == servers_.end()) return nullptr;
  const std::string& address = server->second.record.address();
  auto& channel = channels_[address];
  if (!channel) channel = rpc::MakeTcpChannel(io_, address);
  return channel;
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

// Sends `request` to every data server of `layout` at once; returns the first
// error after all have answered.
template <typename Request, typename Response>
Status MetaService::CallEveryServer(const pb::Layout& layout, rpc::Method<Request, Response> method,
                                    const Request& request, std::chrono::milliseconds timeout) {
  std::vector<std::shared_ptr<rpc::Channel>> channels;
  for (uint32_t id : layout.servers()) {
    auto channel = ChannelTo(id);
    if (!channel) return Status(EIO, "data server " + std::to_string(id) + " is unknown");
    channels.push_back(channel);
  }
  auto calls = rpc::ParallelCalls::Start(channels.size());
  for (auto& channel : channels) {
    rpc::InvokeAsync(*channel, method, request, {}, rpc::CallOptions{timeout},
                     [calls](Status status, Response&, std::string&) { calls->Done(status); });
  }
  return calls->Wait();
}

Status MetaService::TruncateData(const pb::Inode& inode, uint64_t size) {
  pb::TruncateFileRequest request;
  request.set_ino(inode.attr().ino());
  request.set_size(size);
  request.set_chunk_size(inode.layout().chunk_size());
  Status status =
      CallEveryServer(inode.layout(), rpc::data::kTruncateFile, request, kDataCallTimeout);
  if (!status.ok()) return Status(EIO, "truncating file data failed: " + status.ToString());
  return Status::Ok();
}

// ---------------------------------------------------------------- handlers

void MetaService::RegisterHandlers(rpc::Dispatcher& d) {
  using namespace rpc::meta;
  d.Register(kMount, {[this](const pb::MountRequest& req, pb::MountResponse* resp,
                             rpc::RequestContext&) -> Status {
               Result<pb::Volume> volume = store_.GetVolume(req.volume());
               if (!volume.ok()) return volume.status();
               Result<pb::Inode> root = store_.Getattr(volume->root_ino());
               if (!root.ok()) return root.status();
               uint64_t session = req.session_id();
               while (session == 0)
                 session = std::random_device{}() * 0x100000001ull ^
                           Clock::now().time_since_epoch().count();
               TouchSession(session);
               *resp->mutable_volume() = *volume;
               *resp->mutable_root() = root->attr();
               resp->set_session_id(session);
               return Status::Ok();
             }});
  d.Register(kLookup, {[this](const pb::LookupRequest& req, pb::LookupResponse* resp,
                              rpc::RequestContext&) -> Status {
               Result<pb::Inode> inode = store_.Lookup(req.parent(), req.name());
               if (!inode.ok()) return inode.status();
               *resp->mutable_attr() = inode->attr();
               *resp->mutable_layout() = inode->layout();
               return Status::Ok();
             }});
  d.Register(kGetattr, {[this](const pb::GetattrRequest& req, pb::GetattrResponse* resp,
                               rpc::RequestContext&) -> Status {
               Result<pb::Inode> inode = store_.Getattr(req.ino());
               if (!inode.ok()) return inode.status();
               *resp->mutable_attr() = inode->attr();
               *resp->mutable_layout() = inode->layout();
               return Status::Ok();
             }});
  d.Register(kSetattr, {[this](const pb::SetattrRequest& req, pb::SetattrResponse* resp,
                               rpc::RequestContext&) -> Status {
               if (req.valid() & pb::SETATTR_SIZE) {
                 Result<pb::Inode> inode = store_.Getattr(req.ino());
                 if (!inode.ok()) return inode.status();
                 if (S_ISDIR(inode->attr().mode()))
                   return Status(EISDIR, "cannot truncate a directory");
                 // Always cut: servers may hold bytes past the recorded size from
                 // writes whose size was never committed.
                 if (S_ISREG(inode->attr().mode())) {
                   SEALFS_RETURN_IF_ERROR(TruncateData(*inode, req.size()));
                 }
               }
               Result<pb::Inode> inode = store_.Setattr(req);
               if (!inode.ok()) return inode.status();
               *resp->mutable_attr() = inode->attr();
               return Status::Ok();
             }});
  d.Register(kMknod, {[this](const pb::MknodRequest& req, pb::MknodResponse* resp,
                             rpc::RequestContext&) -> Status {
               std::vector<uint32_t> servers = ServerIds();
               if (S_ISREG(req.mode()) && servers.empty()) {
                 return Status(ENOSPC, "no data servers are registered");
               }
               Result<pb::Inode> inode = store_.Mknod(req.parent(), req.name(), req.mode(),
                                                      req.rdev(), req.caller(), servers);
               if (!inode.ok()) return inode.status();
               if (req.open_session() != 0) OpenFile(req.open_session(), inode->attr().ino());
               *resp->mutable_attr() = inode->attr();
               *resp->mutable_layout() = inode->layout();
               return Status::Ok();
             }});
  d.Register(kMkdir, {[this](const pb::MkdirRequest& req, pb::MkdirResponse* resp,
                             rpc::RequestContext&) -> Status {
               Result<pb::Inode> inode =
                   store_.Mkdir(req.parent(), req.name(), req.mode(), req.caller());
               if (!inode.ok()) return inode.status();
               *resp->mutable_attr() = inode->attr();
               return Status::Ok();
             }});
  d.Register(kSymlink, {[this](const pb::SymlinkRequest& req, pb::SymlinkResponse* resp,
                               rpc::RequestContext&) -> Status {
               Result<pb::Inode> inode =
                   store_.Symlink(req.parent(), req.name(), req.target(), req.caller());
               if (!inode.ok()) return inode.status();
               *resp->mutable_attr() = inode->attr();
               return Status::Ok();
             }});
  d.Register(kLink, {[this](const pb::LinkRequest& req, pb::LinkResponse* resp,
                            rpc::RequestContext&) -> Status {
               Result<pb::Inode> inode = store_.Link(req.ino(), req.new_parent(), req.new_name());
               if (!inode.ok()) return inode.status();
               *resp->mutable_attr() = inode->attr();
               *resp->mutable_layout() = inode->layout();
               return Status::Ok();
             }});
  d.Register(kUnlink, {[this](const pb::UnlinkRequest& req, pb::UnlinkResponse* resp,
                              rpc::RequestContext&) -> Status {
               Result<Unlinked> result = store_.Unlink(
                   req.parent(), req.name(), [this](uint64_t ino) { return IsOpen(ino); });
               if (!result.ok()) return result.status();
               AfterUnlink(*result);
               *resp->mutable_attr() = result->inode.attr();
               return Status::Ok();
             }});
  d.Register(kRmdir, {[this](const pb::RmdirRequest& req, pb::RmdirResponse*, rpc::RequestContext&)
                          -> Status { return store_.Rmdir(req.parent(), req.name()); }});
  d.Register(kRename, {[this](const pb::RenameRequest& req, pb::RenameResponse*,
                              rpc::RequestContext&) -> Status {
               Result<Unlinked> result =
                   store_.Rename(req.parent(), req.name(), req.new_parent(), req.new_name(),
                                 req.flags(), [this](uint64_t ino) { return IsOpen(ino); });
               if (!result.ok()) return result.status();
               AfterUnlink(*result);
               return Status::Ok();
             }});
  d.Register(kReadlink, {[this](const pb::ReadlinkRequest& req, pb::ReadlinkResponse* resp,
                                rpc::RequestContext&) -> Status {
               Result<std::string> target = store_.Readlink(req.ino());
               if (!target.ok()) return target.status();
               resp->set_target(*target);
               return Status::Ok();
             }});
  d.Register(kReaddir, {[this](const pb::ReaddirRequest& req, pb::ReaddirResponse* resp,
                               rpc::RequestContext&) -> Status {
               Result<pb::ReaddirResponse> result =
                   store_.Readdir(req.ino(), req.cookie(), req.max_entries(), req.with_attrs());
               if (!result.ok()) return result.status();
               *resp = std::move(*result);
               return Status::Ok();
             }});
  d.Register(kStatfs, {[this](const pb::StatfsRequest&, pb::StatfsResponse* resp,
                              rpc::RequestContext&) -> Status {
               uint64_t total = 0, free = 0;
               pb::ClusterMapResponse map = ClusterMap();
               for (const pb::DataServer& server : map.servers()) {
                 total += server.capacity_bytes();
                 free += server.free_bytes();
               }
               uint64_t used_inodes = store_.UsedInodes();
               resp->set_total_bytes(total);
               resp->set_free_bytes(free);
               resp->set_used_inodes(used_inodes);
               resp->set_total_inodes(used_inodes + (uint64_t{1} << 32));
               resp->set_block_size(4096);
               resp->set_name_max(kNameMax);
               return Status::Ok();
             }});
  d.Register(kSetxattr, {[this](const pb::SetxattrRequest& req, pb::SetxattrResponse*,
                                rpc::RequestContext&) -> Status {
               return store_.Setxattr(req.ino(), req.name(), req.value(), req.flags());
             }});
  d.Register(kGetxattr, {[this](const pb::GetxattrRequest& req, pb::GetxattrResponse* resp,
                                rpc::RequestContext&) -> Status {
               Result<std::string> value = store_.Getxattr(req.ino(), req.name());
               if (!value.ok()) return value.status();
               resp->set_value(*value);
               return Status::Ok();
             }});
  d.Register(kListxattr, {[this](const pb::ListxattrRequest& req, pb::ListxattrResponse* resp,
                                 rpc::RequestContext&) -> Status {
               Result<std::vector<std::string>> names = store_.Listxattr(req.ino());
               if (!names.ok()) return names.status();
               for (auto& name : *names) resp->add_names(name);
               return Status::Ok();
             }});
  d.Register(kRemovexattr, {[this](const pb::RemovexattrRequest& req, pb::RemovexattrResponse*,
                                   rpc::RequestContext&) -> Status {
               return store_.Removexattr(req.ino(), req.name());
             }});
  d.Register(kOpen, {[this](const pb::OpenRequest& req, pb::OpenResponse* resp,
                            rpc::RequestContext&) -> Status {
               Result<pb::Inode> inode = store_.Getattr(req.ino());
               if (!inode.ok()) return inode.status();
               OpenFile(req.session_id(), req.ino());
               *resp->mutable_attr() = inode->attr();
               *resp->mutable_layout() = inode->layout();
               return Status::Ok();
             }});
  d.Register(kClose, {[this](const pb::CloseRequest& req, pb::CloseResponse*,
                             rpc::RequestContext&) -> Status {
               if (CloseFile(req.session_id(), req.ino())) {
                 Result<pb::Inode> inode = store_.Getattr(req.ino());
                 if (inode.ok() && inode->attr().nlink() == 0) {
                   SEALFS_RETURN_IF_ERROR(store_.ReleaseOrphan(req.ino()));
                   sweep_wakeup_.notify_all();
                 }
               }
               return Status::Ok();
             }});
  d.Register(kCommitWrite, {[this](const pb::CommitWriteRequest& req, pb::CommitWriteResponse* resp,
                                   rpc::RequestContext&) -> Status {
               Result<pb::Inode> inode =
                   store_.CommitWrite(req.ino(), req.size(), req.mtime_ns(), req.durable());
               if (!inode.ok()) return inode.status();
               *resp->mutable_attr() = inode->attr();
               return Status::Ok();
             }});
  d.Register(kSessionKeepalive,
             {[this](const pb::SessionKeepaliveRequest& req, pb::SessionKeepaliveResponse*,
                     rpc::RequestContext&) -> Status {
               // The client's list is authoritative: it re-announces its open files,
               // which also restores them after this server restarts.
               std::lock_guard<std::mutex> lock(sessions_mutex_);
               Session& session = sessions_[req.session_id()];
               for (auto& [ino, count] : session.open_counts) {
                 auto total = open_totals_.find(ino);
                 if (total != open_totals_.end() && (total->second -= count) <= 0)
                   open_totals_.erase(total);
               }
               session.open_counts.clear();
               for (uint64_t ino : req.open_inodes()) {
                 ++session.open_counts[ino];
                 ++open_totals_[ino];
               }
               session.last_seen = Clock::now();
               return Status::Ok();
             }});
  d.Register(kVolumeCreate,
             {[this](const pb::VolumeCreateRequest& req, pb::VolumeCreateResponse* resp,
                     rpc::RequestContext&) -> Status {
               Result<pb::Volume> volume = store_.CreateVolume(req.name(), 0, 0);
               if (!volume.ok()) return volume.status();
               *resp->mutable_volume() = *volume;
               return Status::Ok();
             }});
  d.Register(kVolumeList, {[this](const pb::VolumeListRequest&, pb::VolumeListResponse* resp,
                                  rpc::RequestContext&) -> Status {
               for (auto& volume : store_.ListVolumes()) *resp->add_volumes() = volume;
               return Status::Ok();
             }});
  d.Register(kVolumeDelete, {[this](const pb::VolumeDeleteRequest& req, pb::VolumeDeleteResponse*,
                                    rpc::RequestContext&) -> Status {
               Status status = store_.DeleteVolume(req.name());
               sweep_wakeup_.notify_all();
               return status;
             }});
  d.Register(kRegisterServer,
             {[this](const pb::RegisterServerRequest& req, pb::RegisterServerResponse* resp,
                     rpc::RequestContext&) -> Status {
               if (req.instance_id().empty())
                 return Status(EINVAL, "a data server needs an instance id");
               if (!rpc::ParseAddress(req.address()).ok())
                 return Status(EINVAL, "bad server address");
               Result<uint32_t> id = store_.RegisterServer(req.address(), req.instance_id());
               if (!id.ok()) return id.status();
               std::lock_guard<std::mutex> lock(servers_mutex_);
               ServerState& state = servers_[*id];
               state.record.set_id(*id);
               state.record.set_address(req.address());
               state.record.set_instance_id(req.instance_id());
               state.record.set_capacity_bytes(req.capacity_bytes());
               state.record.set_free_bytes(req.free_bytes());
               state.last_heartbeat = Clock::now();
               state.heard = true;
               ++map_version_;
               resp->set_server_id(*id);
               return Status::Ok();
             }});
  d.Register(kHeartbeat, {[this](const pb::HeartbeatRequest& req, pb::HeartbeatResponse*,
                                 rpc::RequestContext&) -> Status {
               std::lock_guard<std::mutex> lock(servers_mutex_);
               auto found = servers_.find(req.server_id());
               if (found == servers_.end())
                 return Status(ENOENT, "unknown data server; register again");
               ServerState& state = found->second;
               state.record.set_capacity_bytes(req.capacity_bytes());
               state.record.set_free_bytes(req.free_bytes());
               state.record.set_used_bytes(req.used_bytes());
               state.record.set_chunk_count(req.chunk_count());
               *state.record.mutable_tcp() = req.tcp();
               *state.record.mutable_rdma() = req.rdma();
               state.record.set_last_heartbeat_ns(NowNs());
               state.last_heartbeat = Clock::now();
               state.heard = true;
               return Status::Ok();
             }});
  d.Register(kClusterMap, {[this](const pb::ClusterMapRequest&, pb::ClusterMapResponse* resp,
                                  rpc::RequestContext&) -> Status {
               *resp = ClusterMap();
               return Status::Ok();
             }});
}

}  // namespace sealfs::metadata
