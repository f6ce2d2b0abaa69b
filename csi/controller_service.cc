#include "controller_service.h"

#include <algorithm>

#include "cluster_admin.h"
#include "grpc_status.h"
#include "sealfs/rpc/credentials.h"
#include "volume_requests.h"

namespace sealfs::csi {
namespace {

constexpr std::chrono::seconds kMetaTimeout{10};

grpc::Status Busy(const std::string& volume) {
  return {grpc::StatusCode::ABORTED, "an operation on volume '" + volume + "' is in progress"};
}

// The CSI view of a SealFS volume: its quota is its capacity, and its
// context says nothing secret.
void DescribeVolume(const pb::Volume& volume, v1::Volume* out) {
  out->set_volume_id(volume.name());
  out->set_capacity_bytes(static_cast<int64_t>(volume.quota_bytes()));
  (*out->mutable_volume_context())["tenant"] = volume.tenant();
}

Result<ClusterAdmin> ConnectAsAdmin(const PluginOptions& options, const StringMap& secrets) {
  Result<std::string> credential = SecretFromRequest(
      secrets, kAdminCredentialSecret, options.admin_credential_file, "admin-credential-file");
  if (!credential.ok()) return credential.status();
  return ClusterAdmin::Connect(options.meta_address, *credential, kMetaTimeout);
}

// For the methods that carry no secrets: only the configured file serves.
Result<ClusterAdmin> ConnectWithFile(const PluginOptions& options, const std::string& method) {
  if (options.admin_credential_file.empty()) {
    return Status(ENOKEY, method + " needs sealfs-csi started with --admin-credential-file");
  }
  return ConnectAsAdmin(options, StringMap());
}

// An existing volume answers a CreateVolume only if it is what was asked.
std::string Incompatibility(const pb::Volume& volume, const CapacityBounds& bounds,
                            const VolumeParameters& parameters) {
  if (!bounds.Admits(volume.quota_bytes())) {
    return "volume '" + volume.name() + "' exists with a capacity of " +
           std::to_string(volume.quota_bytes()) + " bytes, outside the requested range";
  }
  if (volume.stripe_width() != parameters.stripe_width ||
      volume.quota_inodes() != parameters.quota_inodes) {
    return "volume '" + volume.name() + "' exists with other parameters (stripeWidth " +
           std::to_string(volume.stripe_width()) + ", inodes " +
           std::to_string(volume.quota_inodes()) + ")";
  }
  return "";
}

// The cluster keeps a fixed number of copies of every chunk (its chains'
// length); a StorageClass asking for another is a mistake to report.
Status CheckReplication(ClusterAdmin& admin, const VolumeParameters& parameters) {
  if (!parameters.replication) return Status::Ok();
  Result<pb::ClusterMapResponse> map = admin.ClusterMap();
  if (!map.ok()) return map.status();
  if (map->replicas() != *parameters.replication) {
    return Status(EINVAL, "parameter replication=" + std::to_string(*parameters.replication) +
                              ", but this cluster keeps " + std::to_string(map->replicas()) +
                              " copies of every chunk");
  }
  return Status::Ok();
}

}  // namespace

grpc::Status ControllerService::CreateVolume(grpc::ServerContext*,
                                             const v1::CreateVolumeRequest* request,
                                             v1::CreateVolumeResponse* response) {
  if (request->name().empty()) return InvalidArgument("name is required");
  if (request->volume_capabilities().empty()) {
    return InvalidArgument("volume_capabilities are required");
  }
  if (std::string why = UnsupportedCapabilities(request->volume_capabilities()); !why.empty()) {
    return InvalidArgument(why);
  }
  if (request->has_volume_content_source()) {
    return InvalidArgument("SealFS volumes cannot be made from snapshots or other volumes");
  }
  Result<VolumeParameters> parameters = ParseVolumeParameters(request->parameters());
  if (!parameters.ok()) return ToGrpc(parameters.status());
  CapacityBounds bounds;
  if (request->has_capacity_range()) {
    Result<CapacityBounds> parsed = ParseCapacityRange(request->capacity_range());
    if (!parsed.ok()) return ToGrpc(parsed.status());
    bounds = *parsed;
  }
  Result<std::string> name = VolumeNameFor(parameters->tenant, request->name());
  if (!name.ok()) return ToGrpc(name.status());
  VolumeLocks::Guard guard(locks_, *name);
  if (!guard.held()) return Busy(*name);

  Result<std::string> token_key =
      SecretFromRequest(request->secrets(), kVolumeTokenKeySecret, options_.volume_token_key_file,
                        "volume-token-key-file");
  if (!token_key.ok()) return ToGrpc(token_key.status());
  Result<ClusterAdmin> admin = ConnectAsAdmin(options_, request->secrets());
  if (!admin.ok()) return ToGrpc(admin.status());
  if (Status checked = CheckReplication(*admin, *parameters); !checked.ok()) {
    return ToGrpc(checked);
  }

  Result<std::optional<pb::Volume>> existing = admin->FindVolume(*name);
  if (!existing.ok()) return ToGrpc(existing.status());
  if (!existing->has_value()) {
    pb::VolumeCreateRequest create;
    create.set_name(*name);
    create.set_tenant(parameters->tenant);
    create.set_quota_bytes(bounds.required ? bounds.required
                           : bounds.limit  ? bounds.limit
                                           : kDefaultCapacityBytes);
    create.set_quota_inodes(parameters->quota_inodes);
    create.set_stripe_width(parameters->stripe_width);
    create.set_token(auth::DeriveVolumeToken(*token_key, *name));
    Result<pb::VolumeCreateResponse> created = admin->CreateVolume(create);
    if (created.ok()) {
      DescribeVolume(created->volume(), response->mutable_volume());
      return grpc::Status::OK;
    }
    // Made meanwhile by someone else: judge it like any existing volume.
    if (created.status().code() != EEXIST) return ToGrpc(created.status());
    existing = admin->FindVolume(*name);
    if (!existing.ok()) return ToGrpc(existing.status());
    if (!existing->has_value()) return ToGrpc(created.status());
  }
  const pb::Volume& volume = **existing;
  if (std::string why = Incompatibility(volume, bounds, *parameters); !why.empty()) {
    return {grpc::StatusCode::ALREADY_EXISTS, why};
  }
  DescribeVolume(volume, response->mutable_volume());
  return grpc::Status::OK;
}

grpc::Status ControllerService::DeleteVolume(grpc::ServerContext*,
                                             const v1::DeleteVolumeRequest* request,
                                             v1::DeleteVolumeResponse*) {
  const std::string& id = request->volume_id();
  if (id.empty()) return InvalidArgument("volume_id is required");
  // Only volumes this plugin made are its to delete; any other id names
  // no volume of ours, which the spec treats as already deleted.
  if (TenantOf(id).empty()) return grpc::Status::OK;
  VolumeLocks::Guard guard(locks_, id);
  if (!guard.held()) return Busy(id);
  Result<ClusterAdmin> admin = ConnectAsAdmin(options_, request->secrets());
  if (!admin.ok()) return ToGrpc(admin.status());
  Status deleted = admin->DeleteVolume(id);
  if (!deleted.ok() && deleted.code() != ENOENT) return ToGrpc(deleted);
  return grpc::Status::OK;
}

grpc::Status ControllerService::ControllerExpandVolume(
    grpc::ServerContext*, const v1::ControllerExpandVolumeRequest* request,
    v1::ControllerExpandVolumeResponse* response) {
  const std::string& id = request->volume_id();
  if (id.empty()) return InvalidArgument("volume_id is required");
  if (!request->has_capacity_range()) return InvalidArgument("capacity_range is required");
  Result<CapacityBounds> bounds = ParseCapacityRange(request->capacity_range());
  if (!bounds.ok()) return ToGrpc(bounds.status());
  if (request->has_volume_capability()) {
    if (std::string why = UnsupportedCapability(request->volume_capability()); !why.empty()) {
      return InvalidArgument(why);
    }
  }
  VolumeLocks::Guard guard(locks_, id);
  if (!guard.held()) return Busy(id);
  Result<ClusterAdmin> admin = ConnectAsAdmin(options_, request->secrets());
  if (!admin.ok()) return ToGrpc(admin.status());
  Result<std::optional<pb::Volume>> volume = admin->FindVolume(id);
  if (!volume.ok()) return ToGrpc(volume.status());
  if (!volume->has_value()) return NotFound("volume '" + id + "' does not exist");
  uint64_t current = (*volume)->quota_bytes();
  // A quota of 0 means no limit: there is nothing to raise.
  if (current == 0) {
    response->set_capacity_bytes(0);
    response->set_node_expansion_required(false);
    return grpc::Status::OK;
  }
  uint64_t wanted = bounds->required ? bounds->required : bounds->limit;
  if (bounds->limit != 0 && current > bounds->limit) {
    return {grpc::StatusCode::OUT_OF_RANGE,
            "volume '" + id + "' already holds " + std::to_string(current) +
                " bytes, more than the limit asked for; a quota is never lowered"};
  }
  // Expansion only grows a volume: a smaller request keeps the quota.
  uint64_t capacity = current;
  if (wanted > current) {
    Result<pb::Volume> raised = admin->SetByteQuota(id, wanted);
    if (!raised.ok()) return ToGrpc(raised.status());
    capacity = raised->quota_bytes();
  }
  response->set_capacity_bytes(static_cast<int64_t>(capacity));
  response->set_node_expansion_required(false);
  return grpc::Status::OK;
}

grpc::Status ControllerService::ValidateVolumeCapabilities(
    grpc::ServerContext*, const v1::ValidateVolumeCapabilitiesRequest* request,
    v1::ValidateVolumeCapabilitiesResponse* response) {
  const std::string& id = request->volume_id();
  if (id.empty()) return InvalidArgument("volume_id is required");
  if (request->volume_capabilities().empty()) {
    return InvalidArgument("volume_capabilities are required");
  }
  Result<ClusterAdmin> admin = ConnectAsAdmin(options_, request->secrets());
  if (!admin.ok()) return ToGrpc(admin.status());
  Result<std::optional<pb::Volume>> volume = admin->FindVolume(id);
  if (!volume.ok()) return ToGrpc(volume.status());
  if (!volume->has_value()) return NotFound("volume '" + id + "' does not exist");

  if (std::string why = UnsupportedCapabilities(request->volume_capabilities()); !why.empty()) {
    response->set_message(why);
    return grpc::Status::OK;
  }
  Result<VolumeParameters> parameters = ParseVolumeParameters(request->parameters());
  if (!parameters.ok()) {
    response->set_message(parameters.status().message());
    return grpc::Status::OK;
  }
  auto tenant = request->volume_context().find("tenant");
  if (tenant != request->volume_context().end() && tenant->second != (*volume)->tenant()) {
    response->set_message("volume_context names tenant '" + tenant->second +
                          "', the volume's is '" + (*volume)->tenant() + "'");
    return grpc::Status::OK;
  }
  auto* confirmed = response->mutable_confirmed();
  *confirmed->mutable_volume_context() = request->volume_context();
  *confirmed->mutable_volume_capabilities() = request->volume_capabilities();
  *confirmed->mutable_parameters() = request->parameters();
  return grpc::Status::OK;
}

grpc::Status ControllerService::ListVolumes(grpc::ServerContext*,
                                            const v1::ListVolumesRequest* request,
                                            v1::ListVolumesResponse* response) {
  if (request->max_entries() < 0) return InvalidArgument("max_entries must not be negative");
  // A token is the id of the last volume of the previous page: the listing
  // goes on after it, whether or not that volume still exists.
  const std::string& token = request->starting_token();
  if (!token.empty() && TenantOf(token).empty()) {
    return {grpc::StatusCode::ABORTED,
            "starting_token '" + token + "' was not made by ListVolumes"};
  }
  Result<ClusterAdmin> admin = ConnectWithFile(options_, "ListVolumes");
  if (!admin.ok()) return ToGrpc(admin.status());
  Result<std::vector<pb::Volume>> volumes = admin->ListVolumes();
  if (!volumes.ok()) return ToGrpc(volumes.status());
  std::vector<pb::Volume> ours;
  for (pb::Volume& volume : *volumes) {
    if (!TenantOf(volume.name()).empty() && volume.name() > token)
      ours.push_back(std::move(volume));
  }
  std::sort(ours.begin(), ours.end(),
            [](const pb::Volume& a, const pb::Volume& b) { return a.name() < b.name(); });
  size_t count = ours.size();
  if (request->max_entries() > 0) count = std::min(count, size_t(request->max_entries()));
  for (size_t i = 0; i < count; ++i) {
    DescribeVolume(ours[i], response->add_entries()->mutable_volume());
  }
  if (count < ours.size()) response->set_next_token(ours[count - 1].name());
  return grpc::Status::OK;
}

grpc::Status ControllerService::GetCapacity(grpc::ServerContext*,
                                            const v1::GetCapacityRequest* request,
                                            v1::GetCapacityResponse* response) {
  Result<VolumeParameters> parameters = ParseVolumeParameters(request->parameters());
  if (!parameters.ok()) return ToGrpc(parameters.status());
  Result<ClusterAdmin> admin = ConnectWithFile(options_, "GetCapacity");
  if (!admin.ok()) return ToGrpc(admin.status());
  Result<pb::ClusterMapResponse> map = admin->ClusterMap();
  if (!map.ok()) return ToGrpc(map.status());
  // Capacities the volumes could not be used with count as none.
  bool usable = UnsupportedCapabilities(request->volume_capabilities()).empty() &&
                (!parameters->replication || *parameters->replication == map->replicas());
  uint64_t free_bytes = 0;
  for (const pb::DataServer& server : map->servers()) {
    if (server.state() == "up") free_bytes += server.free_bytes();
  }
  // Every chunk is kept replicas times: that much raw space per byte stored.
  uint64_t copies = std::max<uint32_t>(map->replicas(), 1);
  response->set_available_capacity(usable ? static_cast<int64_t>(free_bytes / copies) : 0);
  return grpc::Status::OK;
}

grpc::Status ControllerService::ControllerGetCapabilities(
    grpc::ServerContext*, const v1::ControllerGetCapabilitiesRequest*,
    v1::ControllerGetCapabilitiesResponse* response) {
  using Rpc = v1::ControllerServiceCapability::RPC;
  for (Rpc::Type type : {Rpc::CREATE_DELETE_VOLUME, Rpc::EXPAND_VOLUME, Rpc::LIST_VOLUMES,
                         Rpc::GET_CAPACITY, Rpc::SINGLE_NODE_MULTI_WRITER}) {
    response->add_capabilities()->mutable_rpc()->set_type(type);
  }
  return grpc::Status::OK;
}

}  // namespace sealfs::csi
