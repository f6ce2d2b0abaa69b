// NodeStageVolume and NodeUnstageVolume: the one FUSE mount of a volume on
// this node.
#include <filesystem>

#include "grpc_status.h"
#include "mount_table.h"
#include "node_service.h"
#include "sealfs/rpc/credentials.h"

namespace sealfs::csi {
namespace {

// How long a mount may take to answer statfs before it counts as broken.
constexpr std::chrono::seconds kHealthLimit{5};

grpc::Status Busy(const std::string& what) {
  return {grpc::StatusCode::ABORTED, "an operation on " + what + " is in progress"};
}

}  // namespace

Result<std::string> NodeService::MountToken(const StringMap& secrets,
                                            const std::string& volume_id) {
  if (secrets.contains(std::string(kTokenSecret))) {
    return SecretFromRequest(secrets, kTokenSecret, "", "");
  }
  Result<std::string> key = SecretFromRequest(
      secrets, kVolumeTokenKeySecret, options_.volume_token_key_file, "volume-token-key-file");
  if (!key.ok()) return key.status();
  return auth::DeriveVolumeToken(*key, volume_id);
}

grpc::Status NodeService::NodeStageVolume(grpc::ServerContext*,
                                          const v1::NodeStageVolumeRequest* request,
                                          v1::NodeStageVolumeResponse*) {
  const std::string& id = request->volume_id();
  if (id.empty()) return InvalidArgument("volume_id is required");
  if (request->staging_target_path().empty()) {
    return InvalidArgument("staging_target_path is required");
  }
  if (!request->has_volume_capability()) return InvalidArgument("volume_capability is required");
  if (std::string why = UnsupportedCapability(request->volume_capability()); !why.empty()) {
    return InvalidArgument(why);
  }
  VolumeLocks::Guard guard(locks_, id);
  if (!guard.held()) return Busy("volume '" + id + "'");
  std::string staging = CanonicalPath(request->staging_target_path());

  Result<std::vector<MountEntry>> table = ReadMountTable();
  if (!table.ok()) return ToGrpc(table.status());
  if (std::optional<MountEntry> mounted = MountAt(*table, staging)) {
    if (SealfsVolumeOf(*mounted) != id) {
      return {grpc::StatusCode::ALREADY_EXISTS,
              staging + " already holds another mount (" + mounted->source + ")"};
    }
    if (StatFileSystem(staging, kHealthLimit).ok()) return grpc::Status::OK;
    // Staged, but its daemon is gone or hangs: take the dead mount away
    // (lazily: it may be busy) and mount again below.
    if (Status removed = UnmountAll(staging, true); !removed.ok()) return ToGrpc(removed);
  }

  Result<std::string> token = MountToken(request->secrets(), id);
  if (!token.ok()) return ToGrpc(token.status());
  std::error_code ec;
  std::filesystem::create_directories(staging, ec);
  if (ec) return ToGrpc(Status(ec.value(), "creating " + staging + ": " + ec.message()));
  FuseMount mount{options_.meta_address + "/" + id,
                  staging,
                  {"allow_other", "default_permissions", "transport=" + options_.transport},
                  *token};
  if (Status mounted = mounter_->Mount(mount); !mounted.ok()) return ToGrpc(mounted);

  table = ReadMountTable();
  if (!table.ok()) return ToGrpc(table.status());
  std::optional<MountEntry> staged = MountAt(*table, staging);
  if (!staged || SealfsVolumeOf(*staged) != id) {
    return {grpc::StatusCode::INTERNAL,
            "sealfs-fuse reported success but " + staging + " does not show the mount"};
  }
  return grpc::Status::OK;
}

grpc::Status NodeService::NodeUnstageVolume(grpc::ServerContext*,
                                            const v1::NodeUnstageVolumeRequest* request,
                                            v1::NodeUnstageVolumeResponse*) {
  const std::string& id = request->volume_id();
  if (id.empty()) return InvalidArgument("volume_id is required");
  if (request->staging_target_path().empty()) {
    return InvalidArgument("staging_target_path is required");
  }
  VolumeLocks::Guard guard(locks_, id);
  if (!guard.held()) return Busy("volume '" + id + "'");
  std::string staging = CanonicalPath(request->staging_target_path());

  Result<std::vector<MountEntry>> table = ReadMountTable();
  if (!table.ok()) return ToGrpc(table.status());
  std::optional<MountEntry> mounted = MountAt(*table, staging);
  if (mounted && !SealfsVolumeOf(*mounted).empty() && SealfsVolumeOf(*mounted) != id) {
    return {grpc::StatusCode::FAILED_PRECONDITION,
            staging + " holds volume '" + SealfsVolumeOf(*mounted) + "', not '" + id + "'"};
  }
  // Also when nothing is mounted: the token file may still be there.
  if (Status unmounted = mounter_->Unmount(staging, id); !unmounted.ok()) {
    return ToGrpc(unmounted);
  }
  std::error_code ec;
  std::filesystem::remove(staging, ec);
  if (ec && ec != std::errc::no_such_file_or_directory) {
    return ToGrpc(Status(ec.value(), "removing " + staging + ": " + ec.message()));
  }
  return grpc::Status::OK;
}

}  // namespace sealfs::csi
