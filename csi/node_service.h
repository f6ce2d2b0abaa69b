// The CSI Node service: a volume is staged once per node (sealfs-fuse
// mounts it at the staging path, run by this process or by the mounter)
// and published into each pod by bind mounts of the staging path. Tokens
// sit in the state directory, never inside a mount.
#pragma once

#include <memory>

#include "csi.grpc.pb.h"
#include "fuse_mounts.h"
#include "plugin_options.h"
#include "volume_locks.h"
#include "volume_requests.h"

namespace sealfs::csi {

class NodeService final : public v1::Node::Service {
 public:
  NodeService(const PluginOptions& options, std::unique_ptr<FuseMounter> mounter)
      : options_(options), mounter_(std::move(mounter)) {}

  grpc::Status NodeStageVolume(grpc::ServerContext*, const v1::NodeStageVolumeRequest* request,
                               v1::NodeStageVolumeResponse* response) override;
  grpc::Status NodeUnstageVolume(grpc::ServerContext*, const v1::NodeUnstageVolumeRequest* request,
                                 v1::NodeUnstageVolumeResponse* response) override;
  grpc::Status NodePublishVolume(grpc::ServerContext*, const v1::NodePublishVolumeRequest* request,
                                 v1::NodePublishVolumeResponse* response) override;
  grpc::Status NodeUnpublishVolume(grpc::ServerContext*,
                                   const v1::NodeUnpublishVolumeRequest* request,
                                   v1::NodeUnpublishVolumeResponse* response) override;
  grpc::Status NodeGetVolumeStats(grpc::ServerContext*,
                                  const v1::NodeGetVolumeStatsRequest* request,
                                  v1::NodeGetVolumeStatsResponse* response) override;
  grpc::Status NodeGetCapabilities(grpc::ServerContext*, const v1::NodeGetCapabilitiesRequest*,
                                   v1::NodeGetCapabilitiesResponse* response) override;
  grpc::Status NodeGetInfo(grpc::ServerContext*, const v1::NodeGetInfoRequest*,
                           v1::NodeGetInfoResponse* response) override;

 private:
  // The volume's mount token: secret `token` (hex; volumes made outside
  // CSI), else derived from secret `volumeTokenKey` or the key file.
  Result<std::string> MountToken(const StringMap& secrets, const std::string& volume_id);

  const PluginOptions& options_;
  std::unique_ptr<FuseMounter> mounter_;
  VolumeLocks locks_;  // by volume id (stage) and by target path (publish)
};

}  // namespace sealfs::csi
