// NodePublishVolume and NodeUnpublishVolume (bind mounts of the staged
// volume into pods), volume statistics and what the node offers.
#include <sys/mount.h>

#include <cstring>
#include <filesystem>

#include "grpc_status.h"
#include "mount_table.h"
#include "node_service.h"

namespace sealfs::csi {
namespace {

constexpr std::chrono::seconds kStatsLimit{5};

Status BindMount(const std::string& staging, const std::string& target, bool read_only) {
  if (mount(staging.c_str(), target.c_str(), nullptr, MS_BIND, nullptr) != 0) {
    return Status(errno, "bind-mounting " + staging + " at " + target + ": " + strerror(errno));
  }
  // A bind mount takes its read-only flag only from a remount.
  if (read_only &&
      mount(nullptr, target.c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr) != 0) {
    int error = errno;
    umount2(target.c_str(), MNT_DETACH);
    return Status(error, "making " + target + " read-only: " + strerror(error));
  }
  return Status::Ok();
}

void AddUsage(v1::NodeGetVolumeStatsResponse* response, v1::VolumeUsage::Unit unit, uint64_t total,
              uint64_t free, uint64_t available) {
  v1::VolumeUsage* usage = response->add_usage();
  usage->set_unit(unit);
  usage->set_total(static_cast<int64_t>(total));
  usage->set_used(static_cast<int64_t>(total - std::min(total, free)));
  usage->set_available(static_cast<int64_t>(available));
}

}  // namespace

grpc::Status NodeService::NodePublishVolume(grpc::ServerContext*,
                                            const v1::NodePublishVolumeRequest* request,
                                            v1::NodePublishVolumeResponse*) {
  const std::string& id = request->volume_id();
  if (id.empty()) return InvalidArgument("volume_id is required");
  if (request->target_path().empty()) return InvalidArgument("target_path is required");
  if (!request->has_volume_capability()) return InvalidArgument("volume_capability is required");
  if (request->staging_target_path().empty()) {
    return InvalidArgument("staging_target_path is required (the volume is staged first)");
  }
  if (std::string why = UnsupportedCapability(request->volume_capability()); !why.empty()) {
    return InvalidArgument(why);
  }
  bool read_only =
      request->readonly() || IsReaderOnly(request->volume_capability().access_mode().mode());
  std::string staging = CanonicalPath(request->staging_target_path());
  std::string target = CanonicalPath(request->target_path());
  VolumeLocks::Guard guard(locks_, target);
  if (!guard.held()) {
    return {grpc::StatusCode::ABORTED, "an operation on " + target + " is in progress"};
  }

  Result<std::vector<MountEntry>> table = ReadMountTable();
  if (!table.ok()) return ToGrpc(table.status());
  std::optional<MountEntry> staged = MountAt(*table, staging);
  if (!staged || SealfsVolumeOf(*staged) != id) {
    return {grpc::StatusCode::FAILED_PRECONDITION,
            "volume '" + id + "' is not staged at " + staging};
  }
  if (std::optional<MountEntry> present = MountAt(*table, target)) {
    if (SealfsVolumeOf(*present) == id && present->read_only == read_only) {
      return grpc::Status::OK;
    }
    return {grpc::StatusCode::ALREADY_EXISTS,
            target + " is already mounted (" + present->source +
                (present->read_only ? ", read-only" : ", read-write") + ")"};
  }
  std::error_code ec;
  std::filesystem::create_directories(target, ec);
  if (ec) return ToGrpc(Status(ec.value(), "creating " + target + ": " + ec.message()));
  return ToGrpc(BindMount(staging, target, read_only));
}

grpc::Status NodeService::NodeUnpublishVolume(grpc::ServerContext*,
                                              const v1::NodeUnpublishVolumeRequest* request,
                                              v1::NodeUnpublishVolumeResponse*) {
  if (request->volume_id().empty()) return InvalidArgument("volume_id is required");
  if (request->target_path().empty()) return InvalidArgument("target_path is required");
  std::string target = CanonicalPath(request->target_path());
  VolumeLocks::Guard guard(locks_, target);
  if (!guard.held()) {
    return {grpc::StatusCode::ABORTED, "an operation on " + target + " is in progress"};
  }
  // Bind mounts need no daemon: this process takes them down itself.
  if (Status unmounted = UnmountAll(target); !unmounted.ok()) return ToGrpc(unmounted);
  std::error_code ec;
  std::filesystem::remove(target, ec);
  if (ec && ec != std::errc::no_such_file_or_directory) {
    return ToGrpc(Status(ec.value(), "removing " + target + ": " + ec.message()));
  }
  return grpc::Status::OK;
}

grpc::Status NodeService::NodeGetVolumeStats(grpc::ServerContext*,
                                             const v1::NodeGetVolumeStatsRequest* request,
                                             v1::NodeGetVolumeStatsResponse* response) {
  const std::string& id = request->volume_id();
  if (id.empty()) return InvalidArgument("volume_id is required");
  if (request->volume_path().empty()) return InvalidArgument("volume_path is required");
  std::string path = CanonicalPath(request->volume_path());
  Result<std::vector<MountEntry>> table = ReadMountTable();
  if (!table.ok()) return ToGrpc(table.status());
  std::optional<MountEntry> mounted = MountAt(*table, path);
  if (!mounted || SealfsVolumeOf(*mounted) != id) {
    return NotFound("volume '" + id + "' is not staged or published at " + path);
  }
  v1::VolumeCondition* condition = response->mutable_volume_condition();
  Result<struct statvfs> stats = StatFileSystem(path, kStatsLimit);
  if (!stats.ok()) {
    condition->set_abnormal(true);
    condition->set_message(stats.status().ToString());
    return grpc::Status::OK;
  }
  // SealFS reports the volume's quota as the size and its usage as used.
  uint64_t block = stats->f_frsize ? stats->f_frsize : stats->f_bsize;
  AddUsage(response, v1::VolumeUsage::BYTES, stats->f_blocks * block, stats->f_bfree * block,
           stats->f_bavail * block);
  AddUsage(response, v1::VolumeUsage::INODES, stats->f_files, stats->f_ffree, stats->f_favail);
  condition->set_abnormal(false);
  condition->set_message("volume answers");
  return grpc::Status::OK;
}

grpc::Status NodeService::NodeGetCapabilities(grpc::ServerContext*,
                                              const v1::NodeGetCapabilitiesRequest*,
                                              v1::NodeGetCapabilitiesResponse* response) {
  using Rpc = v1::NodeServiceCapability::RPC;
  for (Rpc::Type type : {Rpc::STAGE_UNSTAGE_VOLUME, Rpc::GET_VOLUME_STATS, Rpc::VOLUME_CONDITION,
                         Rpc::SINGLE_NODE_MULTI_WRITER}) {
    response->add_capabilities()->mutable_rpc()->set_type(type);
  }
  return grpc::Status::OK;
}

grpc::Status NodeService::NodeGetInfo(grpc::ServerContext*, const v1::NodeGetInfoRequest*,
                                      v1::NodeGetInfoResponse* response) {
  response->set_node_id(options_.node_id);
  response->set_max_volumes_per_node(0);
  return grpc::Status::OK;
}

}  // namespace sealfs::csi
