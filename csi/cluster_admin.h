// The controller's view of the cluster: admin requests to the metadata
// server through the client library (an admin-only client, no volume).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "sealfs/client/client.h"

namespace sealfs::csi {

class ClusterAdmin {
 public:
  // An empty credential reaches only what anyone may ask (the cluster map).
  static Result<ClusterAdmin> Connect(const std::string& meta_address,
                                      const std::string& admin_credential,
                                      std::chrono::milliseconds timeout);

  // The volume named `name`, or nullopt when there is none.
  Result<std::optional<pb::Volume>> FindVolume(const std::string& name);
  Result<std::vector<pb::Volume>> ListVolumes();
  Result<pb::VolumeCreateResponse> CreateVolume(const pb::VolumeCreateRequest& request);
  // Ends the volume's mounts first, so its data goes with it.
  Status DeleteVolume(const std::string& name);
  Result<pb::Volume> SetByteQuota(const std::string& name, uint64_t quota_bytes);
  Result<pb::ClusterMapResponse> ClusterMap();

 private:
  explicit ClusterAdmin(std::unique_ptr<client::Client> client) : client_(std::move(client)) {}
  std::unique_ptr<client::Client> client_;
};

}  // namespace sealfs::csi
