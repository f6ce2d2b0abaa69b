// Extended attributes, stored by the metadata server next to the inode.
#include <sys/xattr.h>

#include <algorithm>
#include <cstring>

#include "fuse_fs.h"

namespace sealfs::fuse {

namespace {
constexpr const char* kCapability = "security.capability";
constexpr const char* kAclAccess = "system.posix_acl_access";
constexpr int kMaxGroups = 256;
}  // namespace

bool FuseFs::KnownWithoutXattrs(uint64_t ino) {
  auto state = State(ino);
  std::lock_guard<std::mutex> lock(state->mutex);
  return state->no_xattrs_until_ns > SteadyNowNs();
}

void FuseFs::ForgetXattrsKnown(uint64_t ino, bool capability) {
  auto state = State(ino);
  std::lock_guard<std::mutex> lock(state->mutex);
  state->no_xattrs_until_ns = 0;
  state->attr_known_until_ns = 0;  // an ACL changes the mode
  if (capability) state->no_capability_until_ns = 0;
}

void FuseFs::Setxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value,
                      size_t size, int flags) {
  pb::SetxattrRequest request;
  request.set_ino(ToServer(ino));
  request.set_name(name);
  request.set_value(std::string(value, size));
  request.set_flags(static_cast<uint32_t>(flags));
  *request.mutable_caller() = CallerOf(req);
  if (std::strcmp(name, kAclAccess) == 0) {
    // The server clears the setgid bit unless the caller is in the file's group.
    gid_t groups[kMaxGroups];
    int count = fuse_req_getgroups(req, kMaxGroups, groups);
    for (int i = 0; i < std::min(count, kMaxGroups); ++i) request.add_caller_groups(groups[i]);
  }
  // Forgotten again after the reply: attributes read before the change may
  // have arrived meanwhile.
  const bool capability = std::strcmp(name, kCapability) == 0;
  ForgetXattrsKnown(ToServer(ino), capability);
  pb::SetxattrResponse response;
  Status status = client_.Meta(rpc::meta::kSetxattr, request, &response);
  ForgetXattrsKnown(ToServer(ino), capability);
  ReplyStatus(req, status);
}

void FuseFs::Getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  if (KnownWithoutXattrs(ToServer(ino)))
    return ReplyStatus(req, Status(ENODATA, "no such attribute"));
  const bool capability = std::strcmp(name, kCapability) == 0;
  if (capability) {
    auto state = State(ToServer(ino));
    std::lock_guard<std::mutex> lock(state->mutex);
    if (state->no_capability_until_ns > SteadyNowNs()) {
      return ReplyStatus(req, Status(ENODATA, "no such attribute"));
    }
  }
  pb::GetxattrRequest request;
  request.set_ino(ToServer(ino));
  request.set_name(name);
  pb::GetxattrResponse response;
  Status status = client_.Meta(rpc::meta::kGetxattr, request, &response);
  if (capability && status.code() == ENODATA) {
    auto state = State(ToServer(ino));
    std::lock_guard<std::mutex> lock(state->mutex);
    state->no_capability_until_ns = SteadyNowNs() + AttrTimeoutNs();
  }
  if (!status.ok()) return ReplyStatus(req, status);
  if (size == 0) {
    fuse_reply_xattr(req, response.value().size());
    return;
  }
  if (response.value().size() > size) return ReplyStatus(req, Status(ERANGE, "buffer too small"));
  fuse_reply_buf(req, response.value().data(), response.value().size());
}

void FuseFs::Listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  if (KnownWithoutXattrs(ToServer(ino))) {
    if (size == 0) return static_cast<void>(fuse_reply_xattr(req, 0));
    return static_cast<void>(fuse_reply_buf(req, nullptr, 0));
  }
  pb::ListxattrRequest request;
  request.set_ino(ToServer(ino));
  pb::ListxattrResponse response;
  Status status = client_.Meta(rpc::meta::kListxattr, request, &response);
  if (!status.ok()) return ReplyStatus(req, status);
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
  const bool capability = std::strcmp(name, kCapability) == 0;
  ForgetXattrsKnown(ToServer(ino), capability);
  pb::RemovexattrRequest request;
  request.set_ino(ToServer(ino));
  request.set_name(name);
  pb::RemovexattrResponse response;
  Status status = client_.Meta(rpc::meta::kRemovexattr, request, &response);
  ForgetXattrsKnown(ToServer(ino), capability);
  ReplyStatus(req, status);
}

}  // namespace sealfs::fuse
