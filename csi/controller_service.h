// The CSI Controller service: SealFS volumes as Kubernetes persistent
// volumes. Every call reaches the metadata server through the client
// library with the admin credential (from the request's secrets, else the
// configured file); volume ids are the SealFS volume names.
#pragma once

#include "csi.grpc.pb.h"
#include "plugin_options.h"
#include "volume_locks.h"
#include "volume_requests.h"

namespace sealfs::csi {

class ControllerService final : public v1::Controller::Service {
 public:
  explicit ControllerService(const PluginOptions& options) : options_(options) {}

  grpc::Status CreateVolume(grpc::ServerContext*, const v1::CreateVolumeRequest* request,
                            v1::CreateVolumeResponse* response) override;
  grpc::Status DeleteVolume(grpc::ServerContext*, const v1::DeleteVolumeRequest* request,
                            v1::DeleteVolumeResponse* response) override;
  grpc::Status ControllerExpandVolume(grpc::ServerContext*,
                                      const v1::ControllerExpandVolumeRequest* request,
                                      v1::ControllerExpandVolumeResponse* response) override;
  grpc::Status ValidateVolumeCapabilities(
      grpc::ServerContext*, const v1::ValidateVolumeCapabilitiesRequest* request,
      v1::ValidateVolumeCapabilitiesResponse* response) override;
  grpc::Status ListVolumes(grpc::ServerContext*, const v1::ListVolumesRequest* request,
                           v1::ListVolumesResponse* response) override;
  grpc::Status GetCapacity(grpc::ServerContext*, const v1::GetCapacityRequest* request,
                           v1::GetCapacityResponse* response) override;
  grpc::Status ControllerGetCapabilities(grpc::ServerContext*,
                                         const v1::ControllerGetCapabilitiesRequest* request,
                                         v1::ControllerGetCapabilitiesResponse* response) override;

 private:
  const PluginOptions& options_;
  VolumeLocks locks_;
};

}  // namespace sealfs::csi
