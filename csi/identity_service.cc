#include "identity_service.h"

#include "cluster_admin.h"

namespace sealfs::csi {

grpc::Status IdentityService::GetPluginInfo(grpc::ServerContext*, const v1::GetPluginInfoRequest*,
                                            v1::GetPluginInfoResponse* response) {
  response->set_name(options_.driver_name);
  response->set_vendor_version(SEALFS_VERSION);
  return grpc::Status::OK;
}

grpc::Status IdentityService::GetPluginCapabilities(grpc::ServerContext*,
                                                    const v1::GetPluginCapabilitiesRequest*,
                                                    v1::GetPluginCapabilitiesResponse* response) {
  if (options_.serves_controller()) {
    response->add_capabilities()->mutable_service()->set_type(
        v1::PluginCapability::Service::CONTROLLER_SERVICE);
  }
  // A quota grows while the volume is mounted; nothing on the node changes.
  response->add_capabilities()->mutable_volume_expansion()->set_type(
      v1::PluginCapability::VolumeExpansion::ONLINE);
  return grpc::Status::OK;
}

grpc::Status IdentityService::Probe(grpc::ServerContext*, const v1::ProbeRequest*,
                                    v1::ProbeResponse* response) {
  // Asked without a credential, the metadata server refuses the cluster
  // map: that refusal is its answer, and proves it serves.
  Result<ClusterAdmin> reached =
      ClusterAdmin::Connect(options_.meta_address, "", std::chrono::seconds(3));
  response->mutable_ready()->set_value(reached.ok() || reached.status().code() == EACCES);
  return grpc::Status::OK;
}

}  // namespace sealfs::csi
