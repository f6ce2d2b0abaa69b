// The CSI Identity service: who the plugin is, what it serves, and whether
// it can reach the cluster.
#pragma once

#include "csi.grpc.pb.h"
#include "plugin_options.h"
#include "volume_requests.h"

namespace sealfs::csi {

class IdentityService final : public v1::Identity::Service {
 public:
  explicit IdentityService(const PluginOptions& options) : options_(options) {}

  grpc::Status GetPluginInfo(grpc::ServerContext*, const v1::GetPluginInfoRequest*,
                             v1::GetPluginInfoResponse* response) override;
  grpc::Status GetPluginCapabilities(grpc::ServerContext*, const v1::GetPluginCapabilitiesRequest*,
                                     v1::GetPluginCapabilitiesResponse* response) override;
  // Ready when the metadata server answers a cheap call (the cluster map,
  // refused for want of a credential) in a short time. Not reaching it is no failure of the plugin
  // itself: it answers ready=false and the CO asks again.
  grpc::Status Probe(grpc::ServerContext*, const v1::ProbeRequest*,
                     v1::ProbeResponse* response) override;

 private:
  const PluginOptions& options_;
};

}  // namespace sealfs::csi
