// Methods for the admin (volumes, quotas, usage) and for data servers
// (registration, heartbeats), and the cluster map everyone reads.
#include "sealfs/metadata/fsck.h"
#include "sealfs/metadata/meta_service.h"
#include "sealfs/rpc/methods.h"

namespace sealfs::metadata {

void MetaService::RegisterAdminHandlers(rpc::Dispatcher& d) {
  using namespace rpc::meta;
  Serve(d, kVolumeCreate, Access::kAdmin,
        [this](const Principal&, const pb::VolumeCreateRequest& req,
               pb::VolumeCreateResponse* resp) -> Status {
          MetaStore::VolumeSpec spec;
          spec.name = req.name();
          spec.tenant = req.tenant().empty() ? "default" : req.tenant();
          spec.stripe_width = req.stripe_width();
          spec.quota_bytes = req.quota_bytes();
          spec.quota_inodes = req.quota_inodes();
          spec.token = req.token();
          auto created = store_.CreateVolume(spec);
          if (!created.ok()) return created.status();
          *resp->mutable_volume() = created->first;
          resp->set_token(created->second);
          return Status::Ok();
        });
  Serve(d, kVolumeList, Access::kAdmin,
        [this](const Principal&, const pb::VolumeListRequest& req,
               pb::VolumeListResponse* resp) -> Status {
          Result<std::vector<pb::Volume>> volumes = store_.ListVolumes();
          if (!volumes.ok()) return volumes.status();
          for (pb::Volume& volume : *volumes) {
            if (!req.tenant().empty() && volume.tenant() != req.tenant()) continue;
            volume.clear_token_hash();
            volume.set_mounts(static_cast<uint32_t>(SessionsOf(volume.id())));
            *resp->add_volumes() = std::move(volume);
          }
          return Status::Ok();
        });
  Serve(d, kVolumeDelete, Access::kAdmin,
        [this](const Principal&, const pb::VolumeDeleteRequest& req,
               pb::VolumeDeleteResponse*) -> Status {
          Result<pb::Volume> volume = store_.GetVolume(req.name());
          if (!volume.ok()) return volume.status();
          size_t mounts = SessionsOf(volume->id());
          if (mounts > 0 && !req.force()) {
            return Status(EBUSY, "volume '" + req.name() + "' is mounted by " +
                                     std::to_string(mounts) +
                                     " client(s); unmount them, or delete with --force");
          }
          // Fence the mounts first: their next request fails, nothing of
          // theirs lands in a volume being removed.
          EndSessionsOf(volume->id());
          Status status = store_.DeleteVolume(req.name());
          RemoveDataSoon();
          return status;
        });
  Serve(d, kVolumeSetQuota, Access::kAdmin,
        [this](const Principal&, const pb::VolumeSetQuotaRequest& req,
               pb::VolumeSetQuotaResponse* resp) -> Status {
          std::optional<uint64_t> bytes, inodes;
          if (req.has_quota_bytes()) bytes = req.quota_bytes();
          if (req.has_quota_inodes()) inodes = req.quota_inodes();
          Result<pb::Volume> volume = store_.SetVolumeQuota(req.name(), bytes, inodes);
          if (!volume.ok()) return volume.status();
          MetaStore::VolumeUsage usage = store_.UsageOf(volume->id());
          volume->set_used_bytes(usage.used_bytes);
          volume->set_used_inodes(usage.used_inodes);
          *resp->mutable_volume() = *volume;
          return Status::Ok();
        });
  Serve(d, kVolumeRotateToken, Access::kAdmin,
        [this](const Principal&, const pb::VolumeRotateTokenRequest& req,
               pb::VolumeRotateTokenResponse* resp) -> Status {
          Result<std::string> token = store_.RotateVolumeToken(req.name());
          if (!token.ok()) return token.status();
          if (req.end_mounts()) {
            Result<pb::Volume> volume = store_.GetVolume(req.name());
            if (volume.ok()) EndSessionsOf(volume->id());
          }
          resp->set_token(*token);
          return Status::Ok();
        });
  Serve(d, kUsage, Access::kAdmin,
        [this](const Principal&, const pb::UsageRequest& req, pb::UsageResponse* resp) -> Status {
          Result<std::vector<pb::Volume>> volumes = store_.ListVolumes();
          if (!volumes.ok()) return volumes.status();
          int64_t to = req.to_ns() > 0 ? req.to_ns() : INT64_MAX;
          for (const pb::Volume& volume : *volumes) {
            if (!req.tenant().empty() && volume.tenant() != req.tenant()) continue;
            if (!req.volume().empty() && volume.name() != req.volume()) continue;
            auto samples = store_.ReadLedger(volume.id(), req.from_ns(), to);
            if (!samples.ok()) return samples.status();
            pb::VolumeLedger* ledger = resp->add_volumes();
            ledger->set_volume(volume.name());
            ledger->set_tenant(volume.tenant());
            ledger->set_volume_id(volume.id());
            for (auto& sample : *samples) *ledger->add_samples() = std::move(sample);
          }
          return Status::Ok();
        });
  Serve(d, kUsageVerify, Access::kAdmin,
        [this](const Principal&, const pb::UsageVerifyRequest&,
               pb::UsageVerifyResponse* resp) -> Status {
          auto recounts = store_.RecountUsage();
          if (!recounts.ok()) return recounts.status();
          for (auto& recount : *recounts) *resp->add_volumes() = std::move(recount);
          return Status::Ok();
        });
  Serve(d, kFsck, Access::kAdmin,
        [this](const Principal&, const pb::FsckRequest& req, pb::FsckResponse* resp) -> Status {
          return RunFsck(store_, req.repair(), resp);
        });
  Serve(d, kRegisterServer, Access::kServer,
        [this](const Principal&, const pb::RegisterServerRequest& req,
               pb::RegisterServerResponse* resp) -> Status { return RegisterServer(req, resp); });
  Serve(d, kHeartbeat, Access::kServer,
        [this](const Principal&, const pb::HeartbeatRequest& req,
               pb::HeartbeatResponse* resp) -> Status {
          SEALFS_RETURN_IF_ERROR(Heartbeat(req, resp));
          NoteTraffic(req.server_id(),
                      std::vector<pb::VolumeTraffic>(req.traffic().begin(), req.traffic().end()));
          return Status::Ok();
        });
  Serve(d, kClusterMap, Access::kAnyone,
        [this](const Principal&, const pb::ClusterMapRequest&,
               pb::ClusterMapResponse* resp) -> Status {
          *resp = ClusterMap();
          return Status::Ok();
        });
}

}  // namespace sealfs::metadata
