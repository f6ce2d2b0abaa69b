// Mounting, sessions, open files, and what clients need to write file data:
// capabilities, quota reservations and size commits.
#include <sys/stat.h>

#include <cstdio>

#include "sealfs/metadata/meta_service.h"
#include "sealfs/rpc/credentials.h"
#include "sealfs/rpc/methods.h"

namespace sealfs::metadata {

void MetaService::RegisterFileHandlers(rpc::Dispatcher& d) {
  using namespace rpc::meta;
  Serve(
      d, kMount, Access::kMount,
      [this](const Principal& who, const pb::MountRequest& req, pb::MountResponse* resp) -> Status {
        Result<pb::Volume> volume = store_.GetVolume(req.volume());
        if (!volume.ok()) return volume.status();
        // The admin may mount any volume; anyone else needs its token.
        if (who.kind != Principal::Kind::kAdmin) {
          if (req.token().empty()) {
            return Status(EACCES, "mounting volume '" + req.volume() + "' needs its token");
          }
          if (volume->token_hash().empty()) {
            return Status(EACCES, "volume '" + req.volume() +
                                      "' was made before mount tokens: give it one with "
                                      "sealfs volume token rotate " +
                                      req.volume());
          }
          if (!auth::SecretMatches(volume->token_hash(), req.token())) {
            return Status(EACCES, "wrong token for volume '" + req.volume() + "'");
          }
        }
        Result<pb::Inode> root = store_.Getattr(volume->root_ino());
        if (!root.ok()) return root.status();
        Result<std::pair<uint64_t, std::string>> session = NewSession(volume->id());
        if (!session.ok()) return session.status();
        volume->clear_token_hash();
        *resp->mutable_volume() = *volume;
        *resp->mutable_root() = root->attr();
        resp->set_session_id(session->first);
        resp->set_session_key(session->second);
        resp->set_session_timeout_ms(static_cast<uint32_t>(
            std::chrono::duration_cast<std::chrono::milliseconds>(options_.session_timeout)
                .count()));
        return Status::Ok();
      });
  Serve(d, kOpen, Access::kClient,
        [this](const Principal& who, const pb::OpenRequest& req, pb::OpenResponse* resp) -> Status {
          SEALFS_RETURN_IF_ERROR(CheckInodes(who, {req.ino()}));
          uint64_t session =
              who.kind == Principal::Kind::kSession ? who.session_id : req.session_id();
          Result<pb::Inode> inode =
              store_.OpenInode(req.ino(), [&] { OpenFile(session, req.ino()); });
          if (!inode.ok()) return inode.status();
          *resp->mutable_attr() = inode->attr();
          *resp->mutable_layout() = inode->layout();
          if (S_ISREG(inode->attr().mode())) {
            Result<pb::Capability> cap = IssueCapability(req.ino(), session, req.write(), 0, 0);
            if (!cap.ok()) {
              CloseFile(session, req.ino());
              return cap.status();
            }
            *resp->mutable_cap() = *cap;
          }
          return Status::Ok();
        });
  Serve(d, kReserve, Access::kClient,
        [this](const Principal& who, const pb::ReserveRequest& req,
               pb::ReserveResponse* resp) -> Status {
          SEALFS_RETURN_IF_ERROR(CheckInodes(who, {req.ino()}));
          Result<pb::Capability> cap = IssueCapability(req.ino(), who.session_id, req.write(),
                                                       req.need_end(), req.want_end());
          if (!cap.ok()) return cap.status();
          *resp->mutable_cap() = *cap;
          return Status::Ok();
        });
  Serve(d, kFallocate, Access::kClient,
        [this](const Principal& who, const pb::FallocateRequest& req,
               pb::FallocateResponse* resp) -> Status {
          SEALFS_RETURN_IF_ERROR(CheckInodes(who, {req.ino()}));
          Result<pb::Inode> inode =
              store_.Fallocate(req.ino(), req.mode(), req.offset(), req.length());
          if (!inode.ok()) return inode.status();
          *resp->mutable_attr() = inode->attr();
          return Status::Ok();
        });
  Serve(d, kClose, Access::kClient,
        [this](const Principal& who, const pb::CloseRequest& req, pb::CloseResponse*) -> Status {
          SEALFS_RETURN_IF_ERROR(CheckInodes(who, {req.ino()}));
          uint64_t session =
              who.kind == Principal::Kind::kSession ? who.session_id : req.session_id();
          if (CloseFile(session, req.ino())) {
            Result<pb::Inode> inode = store_.Getattr(req.ino());
            if (inode.ok() && inode->attr().nlink() == 0) {
              ReleaseOrphanIfClosed(req.ino());
              RemoveDataSoon();
            } else if (inode.ok()) {
              // Nobody writes any more: space reserved and not written goes
              // back to the volume now, not when the capabilities expire.
              Status returned =
                  store_.ReturnReservation(req.ino(), [&] { return !IsOpen(req.ino()); });
              if (!returned.ok()) {
                std::fprintf(stderr, "sealfs-meta: returning a reservation: %s\n",
                             returned.ToString().c_str());
              }
            }
          }
          return Status::Ok();
        });
  Serve(d, kCommitWrite, Access::kClient,
        [this](const Principal& who, const pb::CommitWriteRequest& req,
               pb::CommitWriteResponse* resp) -> Status {
          SEALFS_RETURN_IF_ERROR(CheckInodes(who, {req.ino()}));
          Result<pb::Inode> inode = CommitWrite(req);
          if (!inode.ok()) return inode.status();
          *resp->mutable_attr() = inode->attr();
          return Status::Ok();
        });
  Serve(d, kSessionKeepalive, Access::kClient,
        [this](const Principal& who, const pb::SessionKeepaliveRequest& req,
               pb::SessionKeepaliveResponse*) -> Status {
          uint64_t session =
              who.kind == Principal::Kind::kSession ? who.session_id : req.session_id();
          if (session == 0) return Status(EINVAL, "no session id");
          // Only files of the session's own volume count as held open by it.
          std::vector<uint64_t> open;
          for (uint64_t ino : req.open_inodes()) {
            if (CheckInodes(who, {ino}).ok()) open.push_back(ino);
          }
          AnnounceOpenFiles(session, open);
          return Status::Ok();
        });
  Serve(d, kSync, Access::kClient,
        [this](const Principal&, const pb::SyncRequest&, pb::SyncResponse*) -> Status {
          return store_.Sync();
        });
}

}  // namespace sealfs::metadata
