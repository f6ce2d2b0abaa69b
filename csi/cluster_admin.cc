#include "cluster_admin.h"

#include "volume_requests.h"

namespace sealfs::csi {

Result<ClusterAdmin> ClusterAdmin::Connect(const std::string& meta_address,
                                           const std::string& admin_credential,
                                           std::chrono::milliseconds timeout) {
  client::ClientOptions options;
  options.meta_address = meta_address;
  options.volume = "";
  options.timeout = timeout;
  options.io_threads = 1;
  options.admin_credential = admin_credential;
  auto connected = client::Client::Connect(options);
  if (!connected.ok()) {
    return Status(connected.status().code(),
                  "metadata server " + meta_address + ": " + connected.status().message());
  }
  return ClusterAdmin(std::move(*connected));
}

Result<std::optional<pb::Volume>> ClusterAdmin::FindVolume(const std::string& name) {
  pb::VolumeListRequest request;
  request.set_tenant(TenantOf(name));
  pb::VolumeListResponse response;
  SEALFS_RETURN_IF_ERROR(client_->Meta(rpc::meta::kVolumeList, request, &response));
  for (const pb::Volume& volume : response.volumes()) {
    if (volume.name() == name) return std::optional<pb::Volume>(volume);
  }
  return std::optional<pb::Volume>();
}

Result<std::vector<pb::Volume>> ClusterAdmin::ListVolumes() {
  pb::VolumeListResponse response;
  SEALFS_RETURN_IF_ERROR(client_->Meta(rpc::meta::kVolumeList, pb::VolumeListRequest{}, &response));
  return std::vector<pb::Volume>(response.volumes().begin(), response.volumes().end());
}

Result<pb::VolumeCreateResponse> ClusterAdmin::CreateVolume(
    const pb::VolumeCreateRequest& request) {
  pb::VolumeCreateResponse response;
  SEALFS_RETURN_IF_ERROR(client_->Meta(rpc::meta::kVolumeCreate, request, &response));
  return response;
}

Status ClusterAdmin::DeleteVolume(const std::string& name) {
  pb::VolumeDeleteRequest request;
  request.set_name(name);
  request.set_force(true);
  pb::VolumeDeleteResponse response;
  return client_->Meta(rpc::meta::kVolumeDelete, request, &response);
}

Result<pb::Volume> ClusterAdmin::SetByteQuota(const std::string& name, uint64_t quota_bytes) {
  pb::VolumeSetQuotaRequest request;
  request.set_name(name);
  request.set_quota_bytes(quota_bytes);
  pb::VolumeSetQuotaResponse response;
  SEALFS_RETURN_IF_ERROR(client_->Meta(rpc::meta::kVolumeSetQuota, request, &response));
  return response.volume();
}

Result<pb::ClusterMapResponse> ClusterAdmin::ClusterMap() { return client_->RefreshClusterMap(); }

}  // namespace sealfs::csi
