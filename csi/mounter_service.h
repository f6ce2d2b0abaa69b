// The mounter over gRPC: the service a `--mode mounter` process serves, and
// the FuseMounter the node plugin uses to reach it.
#pragma once

#include <grpcpp/channel.h>

#include <memory>

#include "fuse_mounts.h"
#include "mounter.grpc.pb.h"

namespace sealfs::csi {

class MounterService final : public Mounter::Service {
 public:
  explicit MounterService(LocalFuseMounter& mounter) : mounter_(mounter) {}
  grpc::Status Mount(grpc::ServerContext*, const MountRequest* request,
                     MountResponse* response) override;
  grpc::Status Unmount(grpc::ServerContext*, const UnmountRequest* request,
                       UnmountResponse* response) override;

 private:
  LocalFuseMounter& mounter_;
};

class RemoteFuseMounter final : public FuseMounter {
 public:
  // `endpoint`: unix:///PATH of the mounter.
  explicit RemoteFuseMounter(const std::string& endpoint);
  Status Mount(const FuseMount& mount) override;
  Status Unmount(const std::string& target, const std::string& volume) override;

 private:
  std::unique_ptr<Mounter::Stub> stub_;
};

}  // namespace sealfs::csi
