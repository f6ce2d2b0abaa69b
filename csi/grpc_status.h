// The one place where SealFS errors (errno values) become gRPC status codes
// and back, so every CSI method reports a failure the same way.
#pragma once

#include <grpcpp/support/status.h>

#include <string>

#include "sealfs/rpc/status.h"

namespace sealfs::csi {

grpc::StatusCode CodeOfErrno(int error);
// The errno a gRPC code stands for (for errors relayed by the mounter).
int ErrnoOfCode(grpc::StatusCode code);

grpc::Status ToGrpc(const Status& status);
Status FromGrpc(const grpc::Status& status);

inline grpc::Status InvalidArgument(const std::string& message) {
  return {grpc::StatusCode::INVALID_ARGUMENT, message};
}
inline grpc::Status NotFound(const std::string& message) {
  return {grpc::StatusCode::NOT_FOUND, message};
}

}  // namespace sealfs::csi
