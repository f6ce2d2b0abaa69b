#include "grpc_status.h"

#include <cerrno>

namespace sealfs::csi {

grpc::StatusCode CodeOfErrno(int error) {
  switch (error) {
    case 0:
      return grpc::StatusCode::OK;
    case EINVAL:
    case ENAMETOOLONG:
    case ENOTDIR:
      return grpc::StatusCode::INVALID_ARGUMENT;
    case ENOENT:
      return grpc::StatusCode::NOT_FOUND;
    case EEXIST:
      return grpc::StatusCode::ALREADY_EXISTS;
    case EACCES:
    case EPERM:
      return grpc::StatusCode::PERMISSION_DENIED;
    case ERANGE:
      return grpc::StatusCode::OUT_OF_RANGE;
    case EDQUOT:
    case ENOSPC:
      return grpc::StatusCode::RESOURCE_EXHAUSTED;
    case EBUSY:
    case ENOKEY:  // the plugin lacks a key or credential it was configured with
      return grpc::StatusCode::FAILED_PRECONDITION;
    case EAGAIN:
      return grpc::StatusCode::ABORTED;
    case ETIMEDOUT:
      return grpc::StatusCode::DEADLINE_EXCEEDED;
    case ECONNREFUSED:
    case ECONNRESET:
    case EHOSTUNREACH:
    case ENETUNREACH:
    case ENOTCONN:
    case EPIPE:
      return grpc::StatusCode::UNAVAILABLE;
    case ENOSYS:
    case EOPNOTSUPP:
      return grpc::StatusCode::UNIMPLEMENTED;
    default:
      return grpc::StatusCode::INTERNAL;
  }
}

int ErrnoOfCode(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return 0;
    case grpc::StatusCode::INVALID_ARGUMENT:
      return EINVAL;
    case grpc::StatusCode::NOT_FOUND:
      return ENOENT;
    case grpc::StatusCode::ALREADY_EXISTS:
      return EEXIST;
    case grpc::StatusCode::PERMISSION_DENIED:
    case grpc::StatusCode::UNAUTHENTICATED:
      return EACCES;
    case grpc::StatusCode::OUT_OF_RANGE:
      return ERANGE;
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return ENOSPC;
    case grpc::StatusCode::FAILED_PRECONDITION:
      return EBUSY;
    case grpc::StatusCode::ABORTED:
      return EAGAIN;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return ETIMEDOUT;
    case grpc::StatusCode::UNAVAILABLE:
      return ECONNREFUSED;
    case grpc::StatusCode::UNIMPLEMENTED:
      return ENOSYS;
    default:
      return EIO;
  }
}

grpc::Status ToGrpc(const Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return {CodeOfErrno(status.code()), status.message()};
}

Status FromGrpc(const grpc::Status& status) {
  if (status.ok()) return Status::Ok();
  return Status(ErrnoOfCode(status.error_code()), status.error_message());
}

}  // namespace sealfs::csi
