// The namespace methods of the metadata service. A session names only
// inodes of the volume it mounted: every inode a request names is checked.
#include <sys/stat.h>

#include "sealfs/metadata/meta_service.h"
#include "sealfs/rpc/credentials.h"
#include "sealfs/rpc/methods.h"

namespace sealfs::metadata {

void MetaService::DirectoryAfter(uint64_t dir, pb::Attr* out) {
  Result<pb::Inode> inode = store_.Getattr(dir);
  if (inode.ok()) *out = inode->attr();
}

void MetaService::RegisterNamespaceHandlers(rpc::Dispatcher& d) {
  // Replays of changes applied before: the answer is rebuilt from the state
  // they left. Changes that answer nothing but success need no state.
  auto succeeded = [](const Principal&, const auto&, const AppliedRequest&, auto*) {
    return Status::Ok();
  };
  auto created = [this](const Principal&, const auto&, const AppliedRequest& applied,
                        auto* resp) -> Status {
    Result<pb::Inode> inode = store_.Getattr(applied.result_ino);
    if (!inode.ok()) return inode.status();  // removed again since
    *resp->mutable_attr() = inode->attr();
    return Status::Ok();
  };

  using namespace rpc::meta;
  // Reads (lookup, getattr, readlink, xattrs) touch RocksDB's cache and take
  // only short locks: they run on the transport thread, a round trip with
  // two thread wake-ups fewer. Changes wait for synced writes: on workers.
  Serve(
      d, kLookup, Access::kClient,
      [this](const Principal& who, const pb::LookupRequest& req,
             pb::LookupResponse* resp) -> Status {
        SEALFS_RETURN_IF_ERROR(CheckInodes(who, {req.parent()}));
        Result<pb::Inode> inode = store_.Lookup(req.parent(), req.name());
        if (!inode.ok()) return inode.status();
        *resp->mutable_attr() = inode->attr();
        *resp->mutable_layout() = inode->layout();
        return Status::Ok();
      },
      rpc::Runs::kInline);
  Serve(
      d, kGetattr, Access::kClient,
      [this](const Principal& who, const pb::GetattrRequest& req,
             pb::GetattrResponse* resp) -> Status {
        Result<pb::Inode> inode = store_.Getattr(req.ino());
        if (!inode.ok()) return inode.status();
        if (who.kind == Principal::Kind::kSession && inode->volume_id() != who.volume_id) {
          return Status(EACCES, "inode is not in the mounted volume");
        }
        *resp->mutable_attr() = inode->attr();
        *resp->mutable_layout() = inode->layout();
        return Status::Ok();
      },
      rpc::Runs::kInline);
  Serve(d, kSetattr, Access::kClient,
        [this](const Principal& who, const pb::SetattrRequest& req,
               pb::SetattrResponse* resp) -> Status {
          SEALFS_RETURN_IF_ERROR(CheckInodes(who, {req.ino()}));
          std::optional<uint64_t> allocated;
          if (req.valid() & pb::SETATTR_SIZE) {
            if (req.size() > kMaxFileSize) return Status(EFBIG, "size exceeds the largest file");
            Result<pb::Inode> inode = store_.Getattr(req.ino());
            if (!inode.ok()) return inode.status();
            if (S_ISDIR(inode->attr().mode())) return Status(EISDIR, "cannot truncate a directory");
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
        });
  ServeOnce(
      d, kMknod,
      [this](const Principal& who, const pb::MknodRequest& req, pb::MknodResponse* resp) -> Status {
        SEALFS_RETURN_IF_ERROR(CheckInodes(who, {req.parent()}));
        // New data goes only where it can be written.
        std::vector<uint32_t> chains;
        if (S_ISREG(req.mode()) || (req.mode() & S_IFMT) == 0) {
          chains = PlacementChains();
          if (chains.empty())
            return Status(ENOSPC,
                          "no chain can take data: too few data servers are up "
                          "for the cluster's replication factor");
        }
        uint64_t session = req.open_session();
        if (session != 0 && who.kind == Principal::Kind::kSession) session = who.session_id;
        // The creator writes next: its first reservation commits with the
        // file (one synced write), so the capability below finds it covered.
        Reservation first;
        if (session != 0) {
          first.end = kFirstReservation;
          first.until_ns = ReservationUntilNs(auth::WallClockNs());
        }
        Result<pb::Inode> inode = store_.Mknod(
            req.parent(), req.name(), req.mode(), req.rdev(), req.caller(), chains,
            [this, session](uint64_t ino) {
              if (session != 0) OpenFile(session, ino);
            },
            first);
        if (!inode.ok()) return inode.status();
        *resp->mutable_attr() = inode->attr();
        *resp->mutable_layout() = inode->layout();
        DirectoryAfter(req.parent(), resp->mutable_parent_attr());
        if (session != 0 && S_ISREG(inode->attr().mode())) {
          Result<pb::Capability> cap =
              IssueCapability(inode->attr().ino(), session, true, 0, kFirstReservation);
          if (cap.ok()) *resp->mutable_cap() = *cap;
        }
        return Status::Ok();
      },
      [this](const Principal& who, const pb::MknodRequest& req, const AppliedRequest& applied,
             pb::MknodResponse* resp) -> Status {
        Result<pb::Inode> inode = store_.Getattr(applied.result_ino);
        if (!inode.ok()) return inode.status();
        *resp->mutable_attr() = inode->attr();
        *resp->mutable_layout() = inode->layout();
        uint64_t session = req.open_session();
        if (session != 0 && who.kind == Principal::Kind::kSession) session = who.session_id;
        if (session != 0 && S_ISREG(inode->attr().mode())) {
          OpenFile(session, inode->attr().ino());
          Result<pb::Capability> cap =
              IssueCapability(inode->attr().ino(), session, true, 0, kFirstReservation);
          if (cap.ok()) *resp->mutable_cap() = *cap;
        }
        return Status::Ok();
      });
  ServeOnce(
      d, kMkdir,
      [this](const Principal& who, const pb::MkdirRequest& req, pb::MkdirResponse* resp) -> Status {
        SEALFS_RETURN_IF_ERROR(CheckInodes(who, {req.parent()}));
        Result<pb::Inode> inode = store_.Mkdir(req.parent(), req.name(), req.mode(), req.caller());
        if (!inode.ok()) return inode.status();
        *resp->mutable_attr() = inode->attr();
        DirectoryAfter(req.parent(), resp->mutable_parent_attr());
        return Status::Ok();
      },
      created);
  ServeOnce(
      d, kSymlink,
      [this](const Principal& who, const pb::SymlinkRequest& req,
             pb::SymlinkResponse* resp) -> Status {
        SEALFS_RETURN_IF_ERROR(CheckInodes(who, {req.parent()}));
        Result<pb::Inode> inode =
            store_.Symlink(req.parent(), req.name(), req.target(), req.caller());
        if (!inode.ok()) return inode.status();
        *resp->mutable_attr() = inode->attr();
        DirectoryAfter(req.parent(), resp->mutable_parent_attr());
        return Status::Ok();
      },
      created);
  ServeOnce(
      d, kLink,
      [this](const Principal& who, const pb::LinkRequest& req, pb::LinkResponse* resp) -> Status {
        SEALFS_RETURN_IF_ERROR(CheckInodes(who, {req.ino(), req.new_parent()}));
        Result<pb::Inode> inode = store_.Link(req.ino(), req.new_parent(), req.new_name());
        if (!inode.ok()) return inode.status();
        *resp->mutable_attr() = inode->attr();
        *resp->mutable_layout() = inode->layout();
        DirectoryAfter(req.new_parent(), resp->mutable_parent_attr());
        return Status::Ok();
      },
      [this](const Principal&, const pb::LinkRequest& req, const AppliedRequest&,
             pb::LinkResponse* resp) -> Status {
        Result<pb::Inode> inode = store_.Getattr(req.ino());
        if (!inode.ok()) return inode.status();
        *resp->mutable_attr() = inode->attr();
        *resp->mutable_layout() = inode->layout();
        return Status::Ok();
      });
  ServeOnce(
      d, kUnlink,
      [this](const Principal& who, const pb::UnlinkRequest& req,
             pb::UnlinkResponse* resp) -> Status {
        SEALFS_RETURN_IF_ERROR(CheckInodes(who, {req.parent()}));
        Result<Unlinked> result =
            store_.Unlink(req.parent(), req.name(), [this](uint64_t ino) { return IsOpen(ino); });
        if (!result.ok()) return result.status();
        AfterUnlink(*result);
        *resp->mutable_attr() = result->inode.attr();
        DirectoryAfter(req.parent(), resp->mutable_parent_attr());
        return Status::Ok();
      },
      succeeded);
  ServeOnce(
      d, kRmdir,
      [this](const Principal& who, const pb::RmdirRequest& req, pb::RmdirResponse* resp) -> Status {
        SEALFS_RETURN_IF_ERROR(CheckInodes(who, {req.parent()}));
        uint64_t removed = 0;
        SEALFS_RETURN_IF_ERROR(store_.Rmdir(req.parent(), req.name(), &removed));
        resp->set_removed_dir(removed);
        DirectoryAfter(req.parent(), resp->mutable_parent_attr());
        return Status::Ok();
      },
      succeeded);
  ServeOnce(
      d, kRename,
      [this](const Principal& who, const pb::RenameRequest& req,
             pb::RenameResponse* resp) -> Status {
        SEALFS_RETURN_IF_ERROR(CheckInodes(who, {req.parent(), req.new_parent()}));
        Result<Unlinked> result =
            store_.Rename(req.parent(), req.name(), req.new_parent(), req.new_name(), req.flags(),
                          [this](uint64_t ino) { return IsOpen(ino); });
        if (!result.ok()) return result.status();
        AfterUnlink(*result);
        if (S_ISDIR(result->inode.attr().mode()))
          resp->set_replaced_dir(result->inode.attr().ino());
        DirectoryAfter(req.parent(), resp->mutable_parent_attr());
        if (req.new_parent() != req.parent()) {
          DirectoryAfter(req.new_parent(), resp->mutable_new_parent_attr());
        }
        return Status::Ok();
      },
      succeeded);
  Serve(
      d, kReadlink, Access::kClient,
      [this](const Principal& who, const pb::ReadlinkRequest& req,
             pb::ReadlinkResponse* resp) -> Status {
        SEALFS_RETURN_IF_ERROR(CheckInodes(who, {req.ino()}));
        Result<std::string> target = store_.Readlink(req.ino());
        if (!target.ok()) return target.status();
        resp->set_target(*target);
        return Status::Ok();
      },
      rpc::Runs::kInline);
  Serve(d, kReaddir, Access::kClient,
        [this](const Principal& who, const pb::ReaddirRequest& req,
               pb::ReaddirResponse* resp) -> Status {
          SEALFS_RETURN_IF_ERROR(CheckInodes(who, {req.ino()}));
          Result<pb::ReaddirResponse> result = store_.Readdir(
              req.ino(), req.cookie(), req.max_entries(), req.with_attrs(), req.seq_limit());
          if (!result.ok()) return result.status();
          *resp = std::move(*result);
          return Status::Ok();
        });
  Serve(d, kStatfs, Access::kClient,
        [this](const Principal& who, const pb::StatfsRequest& req,
               pb::StatfsResponse* resp) -> Status {
          SEALFS_RETURN_IF_ERROR(CheckInodes(who, {req.ino()}));
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
          uint64_t total_inodes = used_inodes + (uint64_t{1} << 32);
          // A volume's quota is its size and its usage the used part.
          Result<pb::Inode> inode = store_.Getattr(req.ino());
          if (inode.ok()) {
            MetaStore::VolumeUsage usage = store_.UsageOf(inode->volume_id());
            used_inodes = usage.used_inodes;
            if (usage.quota_bytes != 0) {
              total = usage.quota_bytes;
              free =
                  std::min(free, usage.quota_bytes - std::min(usage.quota_bytes, usage.used_bytes));
            } else {
              total = std::max(total, usage.used_bytes + free);
            }
            total_inodes = usage.quota_inodes != 0 ? std::max(usage.quota_inodes, used_inodes)
                                                   : used_inodes + (uint64_t{1} << 32);
          }
          resp->set_total_bytes(total);
          resp->set_free_bytes(free);
          resp->set_used_inodes(used_inodes);
          resp->set_total_inodes(total_inodes);
          resp->set_block_size(4096);
          resp->set_name_max(kNameMax);
          return Status::Ok();
        });
  ServeOnce(
      d, kSetxattr,
      [this](const Principal& who, const pb::SetxattrRequest& req,
             pb::SetxattrResponse*) -> Status {
        SEALFS_RETURN_IF_ERROR(CheckInodes(who, {req.ino()}));
        if (!req.has_caller()) {
          return store_.Setxattr(req.ino(), req.name(), req.value(), req.flags());
        }
        XattrCaller caller;
        caller.uid = req.caller().uid();
        caller.gid = req.caller().gid();
        caller.groups.assign(req.caller_groups().begin(), req.caller_groups().end());
        return store_.Setxattr(req.ino(), req.name(), req.value(), req.flags(), &caller);
      },
      succeeded);
  Serve(
      d, kGetxattr, Access::kClient,
      [this](const Principal& who, const pb::GetxattrRequest& req,
             pb::GetxattrResponse* resp) -> Status {
        SEALFS_RETURN_IF_ERROR(CheckInodes(who, {req.ino()}));
        Result<std::string> value = store_.Getxattr(req.ino(), req.name());
        if (!value.ok()) return value.status();
        resp->set_value(*value);
        return Status::Ok();
      },
      rpc::Runs::kInline);
  Serve(
      d, kListxattr, Access::kClient,
      [this](const Principal& who, const pb::ListxattrRequest& req,
             pb::ListxattrResponse* resp) -> Status {
        SEALFS_RETURN_IF_ERROR(CheckInodes(who, {req.ino()}));
        Result<std::vector<std::string>> names = store_.Listxattr(req.ino());
        if (!names.ok()) return names.status();
        for (auto& name : *names) resp->add_names(name);
        return Status::Ok();
      },
      rpc::Runs::kInline);
  ServeOnce(
      d, kRemovexattr,
      [this](const Principal& who, const pb::RemovexattrRequest& req,
             pb::RemovexattrResponse*) -> Status {
        SEALFS_RETURN_IF_ERROR(CheckInodes(who, {req.ino()}));
        return store_.Removexattr(req.ino(), req.name());
      },
      succeeded);
}

}  // namespace sealfs::metadata
