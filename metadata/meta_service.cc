#include "sealfs/metadata/meta_service.h"

#include <sys/stat.h>

#include <cstdio>
#include <random>

#include "sealfs/rpc/methods.h"
#include "sealfs/rpc/parallel_calls.h"

namespace sealfs::metadata {

MetaService::MetaService(MetaStore& store, rpc::IoThreads& io, MetaServiceOptions options)
    : store_(store), io_(io), options_(options) {
  LoadServers();
  Result<std::vector<uint64_t>> sessions = store_.Sessions();
  if (sessions.ok()) {
    unannounced_sessions_.insert(sessions->begin(), sessions->end());
  } else {
    std::fprintf(stderr, "sealfs-meta: reading sessions: %s\n",
                 sessions.status().ToString().c_str());
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

void MetaService::AfterUnlink(const Unlinked& unlinked) {
  if (unlinked.freed) sweep_wakeup_.notify_all();
}

void MetaService::ReleaseOrphanIfClosed(uint64_t ino) {
  Status status = store_.ReleaseOrphan(ino, [this](uint64_t id) { return IsOpen(id); });
  if (!status.ok()) {
    std::fprintf(stderr, "sealfs-meta: releasing orphan %llu: %s\n",
                 static_cast<unsigned long long>(ino), status.ToString().c_str());
  }
}

void MetaService::SweepOnce() {
  ExpireSessions();
  // Orphans nobody holds open any more (IsOpen says yes to every file while
  // sessions from before a restart may still announce theirs).
  Result<std::vector<uint64_t>> orphans = store_.Orphans();
  if (orphans.ok()) {
    for (uint64_t ino : *orphans) ReleaseOrphanIfClosed(ino);
  }
  CheckLeases();
  // Remove chunks of freed files; a server that is down is retried later.
  RemovePendingData();
}

Result<pb::Inode> MetaService::CommitWrite(const pb::CommitWriteRequest& req) {
  for (int attempt = 0;; ++attempt) {
    Result<pb::Inode> inode = store_.Getattr(req.ino());
    if (!inode.ok()) return inode.status();
    if (!S_ISREG(inode->attr().mode())) return Status(EINVAL, "not a regular file");
    MetaStore::WriteCommit commit{req.ino(),
                                  req.size(),
                                  req.mtime_ns(),
                                  req.durable(),
                                  inode->attr().data_epoch(),
                                  std::nullopt,
                                  req.allocated_delta()};
    // Writes that began before a truncate may have been cut by it: then the
    // size may only grow as far as the data the servers really hold, and the
    // stored blocks are counted afresh. Otherwise the data servers are not
    // asked at all: the writes' own reports keep the count.
    bool truncated_since = req.data_epoch() != inode->attr().data_epoch();
    if (truncated_since) {
      Result<DataUsage> usage =
          FileUsage(*inode, std::min(std::max(req.size(), inode->attr().size()), kMaxFileSize),
                    std::chrono::seconds(20));
      if (!usage.ok()) {
        return Status(
            EIO, "cannot check the file's data after a truncate: " + usage.status().ToString());
      }
      commit.allocated_bytes = usage->allocated_bytes;
      if (req.size() > inode->attr().size()) {
        commit.size = std::max(inode->attr().size(), std::min(req.size(), usage->data_end));
      }
    }
    Result<pb::Inode> committed = store_.CommitWrite(commit);
    if (committed.status().code() == EAGAIN && attempt < 8) continue;  // truncated meanwhile
    return committed;
  }
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
               resp->set_session_timeout_ms(static_cast<uint32_t>(
                   std::chrono::duration_cast<std::chrono::milliseconds>(options_.session_timeout)
                       .count()));
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
               std::optional<uint64_t> allocated;
               if (req.valid() & pb::SETATTR_SIZE) {
                 if (req.size() > kMaxFileSize)
                   return Status(EFBIG, "size exceeds the largest file");
                 Result<pb::Inode> inode = store_.Getattr(req.ino());
                 if (!inode.ok()) return inode.status();
                 if (S_ISDIR(inode->attr().mode()))
                   return Status(EISDIR, "cannot truncate a directory");
                 // Always cut: servers may hold bytes past the recorded size from
                 // writes whose size was never committed.
                 if (S_ISREG(inode->attr().mode()) && inode->layout().chains_size() > 0) {
                   Result<uint64_t> left = TruncateData(*inode, req.size());
                   if (!left.ok()) return left.status();
                   allocated = *left;
                 }
               }
               Result<pb::Inode> inode = store_.Setattr(req, allocated);
               if (!inode.ok()) return inode.status();
               *resp->mutable_attr() = inode->attr();
               return Status::Ok();
             }});
  d.Register(kMknod, {[this](const pb::MknodRequest& req, pb::MknodResponse* resp,
                             rpc::RequestContext&) -> Status {
               // New data goes only where it can be written.
               std::vector<uint32_t> chains;
               if (S_ISREG(req.mode())) {
                 chains = PlacementChains();
                 if (chains.empty())
                   return Status(ENOSPC,
                                 "no chain can take data: too few data servers are up "
                                 "for the cluster's replication factor");
               }
               uint64_t session = req.open_session();
               Result<pb::Inode> inode =
                   store_.Mknod(req.parent(), req.name(), req.mode(), req.rdev(), req.caller(),
                                chains, [this, session](uint64_t ino) {
                                  if (session != 0) OpenFile(session, ino);
                                });
               if (!inode.ok()) return inode.status();
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
               Result<pb::ReaddirResponse> result = store_.Readdir(
                   req.ino(), req.cookie(), req.max_entries(), req.with_attrs(), req.seq_limit());
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
               // Every byte is stored once per replica.
               total /= std::max<uint32_t>(1, map.replicas());
               free /= std::max<uint32_t>(1, map.replicas());
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
               if (!req.has_caller()) {
                 return store_.Setxattr(req.ino(), req.name(), req.value(), req.flags());
               }
               XattrCaller caller;
               caller.uid = req.caller().uid();
               caller.gid = req.caller().gid();
               caller.groups.assign(req.caller_groups().begin(), req.caller_groups().end());
               return store_.Setxattr(req.ino(), req.name(), req.value(), req.flags(), &caller);
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
               Result<pb::Inode> inode =
                   store_.OpenInode(req.ino(), [&] { OpenFile(req.session_id(), req.ino()); });
               if (!inode.ok()) return inode.status();
               *resp->mutable_attr() = inode->attr();
               *resp->mutable_layout() = inode->layout();
               return Status::Ok();
             }});
  d.Register(kClose, {[this](const pb::CloseRequest& req, pb::CloseResponse*,
                             rpc::RequestContext&) -> Status {
               if (CloseFile(req.session_id(), req.ino())) {
                 Result<pb::Inode> inode = store_.Getattr(req.ino());
                 if (inode.ok() && inode->attr().nlink() == 0) {
                   ReleaseOrphanIfClosed(req.ino());
                   sweep_wakeup_.notify_all();
                 }
               }
               return Status::Ok();
             }});
  d.Register(kCommitWrite, {[this](const pb::CommitWriteRequest& req, pb::CommitWriteResponse* resp,
                                   rpc::RequestContext&) -> Status {
               Result<pb::Inode> inode = CommitWrite(req);
               if (!inode.ok()) return inode.status();
               *resp->mutable_attr() = inode->attr();
               return Status::Ok();
             }});
  d.Register(kSessionKeepalive,
             {[this](const pb::SessionKeepaliveRequest& req, pb::SessionKeepaliveResponse*,
                     rpc::RequestContext&) -> Status {
               if (req.session_id() == 0) return Status(EINVAL, "no session id");
               AnnounceOpenFiles(req.session_id(), std::vector<uint64_t>(req.open_inodes().begin(),
                                                                         req.open_inodes().end()));
               return Status::Ok();
             }});
  d.Register(kSync, {[this](const pb::SyncRequest&, pb::SyncResponse*,
                            rpc::RequestContext&) -> Status { return store_.Sync(); }});
  d.Register(
      kVolumeCreate, {[this](const pb::VolumeCreateRequest& req, pb::VolumeCreateResponse* resp,
                             rpc::RequestContext&) -> Status {
        Result<pb::Volume> volume = store_.CreateVolume(req.name(), 0, 0, req.stripe_width());
        if (!volume.ok()) return volume.status();
        *resp->mutable_volume() = *volume;
        return Status::Ok();
      }});
  d.Register(kVolumeList, {[this](const pb::VolumeListRequest&, pb::VolumeListResponse* resp,
                                  rpc::RequestContext&) -> Status {
               Result<std::vector<pb::Volume>> volumes = store_.ListVolumes();
               if (!volumes.ok()) return volumes.status();
               for (auto& volume : *volumes) *resp->add_volumes() = volume;
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
                     rpc::RequestContext&) -> Status { return RegisterServer(req, resp); }});
  d.Register(kHeartbeat, {[this](const pb::HeartbeatRequest& req, pb::HeartbeatResponse* resp,
                                 rpc::RequestContext&) -> Status { return Heartbeat(req, resp); }});
  d.Register(kClusterMap, {[this](const pb::ClusterMapRequest&, pb::ClusterMapResponse* resp,
                                  rpc::RequestContext&) -> Status {
               *resp = ClusterMap();
               return Status::Ok();
             }});
}

}  // namespace sealfs::metadata
