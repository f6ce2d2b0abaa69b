// Extended attributes, stored by the metadata server next to the inode.
#include <sys/xattr.h>

#include "fuse_fs.h"

namespace sealfs::fuse {

void FuseFs::Setxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value,
                      size_t size, int flags) {
  pb::SetxattrRequest request;
  request.set_ino(ToServer(ino));
  request.set_name(name);
  request.set_value(std::string(value, size));
  request.set_flags(static_cast<uint32_t>(flags));
  pb::SetxattrResponse response;
  ReplyStatus(req, client::ToFileError(client_.Meta(rpc::meta::kSetxattr, request, &response)));
}

void FuseFs::Getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  pb::GetxattrRequest request;
  request.set_ino(ToServer(ino));
  request.set_name(name);
  pb::GetxattrResponse response;
  Status status = client_.Meta(rpc::meta::kGetxattr, request, &response);
  if (!status.ok()) return ReplyStatus(req, client::ToFileError(status));
  if (size == 0) {
    fuse_reply_xattr(req, response.value().size());
    return;
  }
  if (response.value().size() > size) return ReplyStatus(req, Status(ERANGE, "buffer too small"));
  fuse_reply_buf(req, response.value().data(), response.value().size());
}

void FuseFs::Listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  pb::ListxattrRequest request;
  request.set_ino(ToServer(ino));
  pb::ListxattrResponse response;
  Status status = client_.Meta(rpc::meta::kListxattr, request, &response);
  if (!status.ok()) return ReplyStatus(req, client::ToFileError(status));
  std::string names;
  for (const std::string& name : response.names()) {
    names.append(name);
    names.push_back('\0');
  }
  if (size == 0) {
    fuse_reply_xattr(req, names.size());
    return;
  }
  if (names.size() > size) return ReplyStatus(req, Status(ERANGE, "buffer too small"));
  fuse_reply_buf(req, names.data(), names.size());
}

void FuseFs::Removexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  pb::RemovexattrRequest request;
  request.set_ino(ToServer(ino));
  request.set_name(name);
  pb::RemovexattrResponse response;
  ReplyStatus(req, client::ToFileError(client_.Meta(rpc::meta::kRemovexattr, request, &response)));
}

}  // namespace sealfs::fuse
