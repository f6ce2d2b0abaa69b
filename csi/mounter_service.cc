#include "mounter_service.h"

#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include "grpc_status.h"

namespace sealfs::csi {
namespace {

// Long enough for sealfs-fuse to give up on an unreachable cluster itself.
constexpr std::chrono::seconds kMounterCallLimit{120};

void SetDeadline(grpc::ClientContext& context) {
  context.set_deadline(std::chrono::system_clock::now() + kMounterCallLimit);
}

Status FromMounter(const grpc::Status& status) {
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE) {
    return Status(ECONNREFUSED, "the mounter does not answer: " + status.error_message());
  }
  return FromGrpc(status);
}

}  // namespace

grpc::Status MounterService::Mount(grpc::ServerContext*, const MountRequest* request,
                                   MountResponse*) {
  FuseMount mount{request->source(),
                  request->target(),
                  {request->options().begin(), request->options().end()},
                  request->token()};
  return ToGrpc(mounter_.Mount(mount));
}

grpc::Status MounterService::Unmount(grpc::ServerContext*, const UnmountRequest* request,
                                     UnmountResponse*) {
  if (request->target().empty() || request->target().front() != '/') {
    return InvalidArgument("target must be an absolute path");
  }
  return ToGrpc(mounter_.Unmount(request->target(), request->volume()));
}

RemoteFuseMounter::RemoteFuseMounter(const std::string& endpoint)
    : stub_(Mounter::NewStub(grpc::CreateChannel(endpoint, grpc::InsecureChannelCredentials()))) {}

Status RemoteFuseMounter::Mount(const FuseMount& mount) {
  MountRequest request;
  request.set_source(mount.source);
  request.set_target(mount.target);
  for (const std::string& option : mount.options) request.add_options(option);
  request.set_token(mount.token);
  MountResponse response;
  grpc::ClientContext context;
  SetDeadline(context);
  return FromMounter(stub_->Mount(&context, request, &response));
}

Status RemoteFuseMounter::Unmount(const std::string& target, const std::string& volume) {
  UnmountRequest request;
  request.set_target(target);
  request.set_volume(volume);
  UnmountResponse response;
  grpc::ClientContext context;
  SetDeadline(context);
  return FromMounter(stub_->Unmount(&context, request, &response));
}

}  // namespace sealfs::csi
