// POSIX ACLs as Linux stores them in the system.posix_acl_access and
// system.posix_acl_default xattrs, and the rules that keep an inode's mode and
// its ACLs consistent.
//
// The kernel checks permissions against the ACLs (FUSE_CAP_POSIX_ACL); the
// file system owns what a local file system does in posix_acl_update_mode,
// posix_acl_chmod and posix_acl_create. These are pure functions so the store
// can apply their result in the same WriteBatch as the change that caused it.
//
// Wire format: le32 version (2), then entries of le16 tag, le16 perm, le32 id.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sealfs/rpc/status.h"

namespace sealfs::metadata {

inline constexpr std::string_view kAclAccessXattr = "system.posix_acl_access";
inline constexpr std::string_view kAclDefaultXattr = "system.posix_acl_default";
inline constexpr uint32_t kAclVersion = 2;
// The id of entries that name no user or group (the *_OBJ, MASK and OTHER entries).
inline constexpr uint32_t kAclUndefinedId = 0xffffffffu;

enum AclTag : uint16_t {
  kAclUserObj = 0x01,
  kAclUser = 0x02,
  kAclGroupObj = 0x04,
  kAclGroup = 0x08,
  kAclMask = 0x10,
  kAclOther = 0x20,
};

struct AclEntry {
  uint16_t tag = 0;
  uint16_t perm = 0;  // rwx as 4|2|1
  uint32_t id = kAclUndefinedId;
  friend bool operator==(const AclEntry&, const AclEntry&) = default;
};

// A valid ACL: one USER_OBJ, GROUP_OBJ and OTHER entry, a MASK when it names
// users or groups, each named id once. Entries are kept in the kernel's order
// (by tag, then id), so Encode gives the canonical value.
class PosixAcl {
 public:
  // EINVAL, saying why, for anything that is not such an ACL.
  static Result<PosixAcl> Parse(std::string_view value);
  static Result<PosixAcl> FromEntries(std::vector<AclEntry> entries);
  // The three-entry ACL that says what `mode` says.
  static PosixAcl FromMode(uint32_t mode);

  std::string Encode() const;
  const std::vector<AclEntry>& entries() const { return entries_; }

  // Only the three base entries: the mode says everything, no xattr is needed.
  bool EquivalentToMode() const;
  // The 0777 bits of the mode this ACL implies: the group bits are the MASK
  // when there is one, else GROUP_OBJ.
  uint32_t PermissionBits() const;
  // chmod: USER_OBJ, MASK (or GROUP_OBJ without one) and OTHER take the mode's bits.
  void Chmod(uint32_t mode);
  // posix_acl_create: masks the inherited entries by the requested mode and
  // returns that mode with its permission bits cut to what the ACL grants.
  uint32_t MaskForCreate(uint32_t mode);

 private:
  explicit PosixAcl(std::vector<AclEntry> entries) : entries_(std::move(entries)) {}
  AclEntry* Find(uint16_t tag);

  std::vector<AclEntry> entries_;
};

bool IsAclXattr(std::string_view name);

// What setting an ACL xattr does to an inode of `mode`.
struct AclXattrChange {
  uint32_t mode = 0;                 // the inode's new mode
  std::optional<std::string> value;  // what to store; none: remove the xattr
};
// The access ACL sets the mode's permission bits and is stored only when the
// mode alone cannot say it; `keep_setgid` false (the caller is neither root
// nor in the file's group) clears S_ISGID, as posix_acl_update_mode does.
// A default ACL is only for directories (EACCES). An empty value removes the
// ACL. Symlinks take no ACLs (EOPNOTSUPP).
Result<AclXattrChange> SetAclXattr(std::string_view name, std::string_view value, uint32_t mode,
                                   bool keep_setgid);

// The stored access ACL after a chmod to `mode`.
Result<std::string> ChmodAccessAcl(std::string_view stored, uint32_t mode);

// What a node created in a directory with a default ACL starts with.
struct InheritedAcls {
  uint32_t mode = 0;        // requested mode cut by the ACL (the umask is not applied)
  std::string access;       // empty: equivalent to the mode, nothing to store
  std::string default_acl;  // directories only: the parent's default ACL
};
// `mode` carries the file type; symlinks take no ACLs and are not passed here.
Result<InheritedAcls> InheritDefaultAcl(std::string_view parent_default, uint32_t mode);

// Whether a caller may keep S_ISGID when changing the access ACL of a file
// owned by group `file_gid`: root, or a member of that group.
bool MayKeepSetgid(uint32_t uid, uint32_t gid, const std::vector<uint32_t>& groups,
                   uint32_t file_gid);

}  // namespace sealfs::metadata
