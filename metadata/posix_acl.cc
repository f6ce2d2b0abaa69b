#include "posix_acl.h"

#include <sys/stat.h>

#include <algorithm>
#include <set>

namespace sealfs::metadata {

namespace {

constexpr size_t kHeaderSize = 4;
constexpr size_t kEntrySize = 8;
constexpr uint16_t kPermBits = 07;

uint32_t LoadLe(const char* bytes, int width) {
  uint32_t value = 0;
  for (int i = width - 1; i >= 0; --i) value = (value << 8) | static_cast<uint8_t>(bytes[i]);
  return value;
}

void StoreLe(std::string& out, uint32_t value, int width) {
  for (int i = 0; i < width; ++i) out.push_back(static_cast<char>(value >> (8 * i)));
}

bool Named(uint16_t tag) { return tag == kAclUser || tag == kAclGroup; }

Status Invalid(const std::string& why) { return Status(EINVAL, "invalid POSIX ACL: " + why); }

}  // namespace

Result<PosixAcl> PosixAcl::Parse(std::string_view value) {
  if (value.size() < kHeaderSize) return Invalid("shorter than its header");
  if (LoadLe(value.data(), 4) != kAclVersion) return Invalid("unknown version");
  if ((value.size() - kHeaderSize) % kEntrySize != 0) {
    return Invalid("size is not a whole number of entries");
  }
  std::vector<AclEntry> entries;
  entries.reserve((value.size() - kHeaderSize) / kEntrySize);
  for (size_t at = kHeaderSize; at < value.size(); at += kEntrySize) {
    AclEntry entry;
    entry.tag = static_cast<uint16_t>(LoadLe(value.data() + at, 2));
    entry.perm = static_cast<uint16_t>(LoadLe(value.data() + at + 2, 2));
    entry.id = LoadLe(value.data() + at + 4, 4);
    entries.push_back(entry);
  }
  return FromEntries(std::move(entries));
}

Result<PosixAcl> PosixAcl::FromEntries(std::vector<AclEntry> entries) {
  int user_obj = 0, group_obj = 0, mask = 0, other = 0, named = 0;
  std::set<std::pair<uint16_t, uint32_t>> ids;
  for (const AclEntry& entry : entries) {
    if (entry.perm & ~kPermBits) return Invalid("permission bits beyond rwx");
    switch (entry.tag) {
      case kAclUserObj:
        ++user_obj;
        break;
      case kAclGroupObj:
        ++group_obj;
        break;
      case kAclMask:
        ++mask;
        break;
      case kAclOther:
        ++other;
        break;
      case kAclUser:
      case kAclGroup:
        ++named;
        if (entry.id == kAclUndefinedId) return Invalid("a named entry without an id");
        if (!ids.insert({entry.tag, entry.id}).second) {
          return Invalid("id " + std::to_string(entry.id) + " appears twice");
        }
        break;
      default:
        return Invalid("unknown tag " + std::to_string(entry.tag));
    }
    if (!Named(entry.tag) && entry.id != kAclUndefinedId) {
      return Invalid("an owner, group, mask or other entry carries an id");
    }
  }
  if (user_obj != 1 || group_obj != 1 || other != 1) {
    return Invalid("needs exactly one owner, group and other entry");
  }
  if (mask > 1) return Invalid("more than one mask entry");
  if (named > 0 && mask == 0) return Invalid("named users or groups need a mask entry");
  std::sort(entries.begin(), entries.end(), [](const AclEntry& a, const AclEntry& b) {
    return a.tag != b.tag ? a.tag < b.tag : a.id < b.id;
  });
  return PosixAcl(std::move(entries));
}

PosixAcl PosixAcl::FromMode(uint32_t mode) {
  return PosixAcl({{kAclUserObj, static_cast<uint16_t>((mode >> 6) & 7), kAclUndefinedId},
                   {kAclGroupObj, static_cast<uint16_t>((mode >> 3) & 7), kAclUndefinedId},
                   {kAclOther, static_cast<uint16_t>(mode & 7), kAclUndefinedId}});
}

std::string PosixAcl::Encode() const {
  std::string out;
  out.reserve(kHeaderSize + kEntrySize * entries_.size());
  StoreLe(out, kAclVersion, 4);
  for (const AclEntry& entry : entries_) {
    StoreLe(out, entry.tag, 2);
    StoreLe(out, entry.perm, 2);
    StoreLe(out, entry.id, 4);
  }
  return out;
}

AclEntry* PosixAcl::Find(uint16_t tag) {
  for (AclEntry& entry : entries_) {
    if (entry.tag == tag) return &entry;
  }
  return nullptr;
}

bool PosixAcl::EquivalentToMode() const {
  return std::none_of(entries_.begin(), entries_.end(), [](const AclEntry& entry) {
    return Named(entry.tag) || entry.tag == kAclMask;
  });
}

uint32_t PosixAcl::PermissionBits() const {
  uint32_t owner = 0, group = 0, mask = 0, other = 0;
  bool has_mask = false;
  for (const AclEntry& entry : entries_) {
    if (entry.tag == kAclUserObj) owner = entry.perm;
    if (entry.tag == kAclGroupObj) group = entry.perm;
    if (entry.tag == kAclOther) other = entry.perm;
    if (entry.tag == kAclMask) {
      mask = entry.perm;
      has_mask = true;
    }
  }
  return owner << 6 | (has_mask ? mask : group) << 3 | other;
}

void PosixAcl::Chmod(uint32_t mode) {
  // A valid ACL always has these; FromEntries checked.
  Find(kAclUserObj)->perm = (mode >> 6) & 7;
  AclEntry* group = Find(kAclMask);
  if (group == nullptr) group = Find(kAclGroupObj);
  group->perm = (mode >> 3) & 7;
  Find(kAclOther)->perm = mode & 7;
}

uint32_t PosixAcl::MaskForCreate(uint32_t mode) {
  uint32_t bits = mode & 0777;
  AclEntry* owner = Find(kAclUserObj);
  owner->perm &= (bits >> 6) & 7;
  AclEntry* other = Find(kAclOther);
  other->perm &= bits & 7;
  // The group class is limited by the mask when there is one; named entries
  // keep their perms, the mask caps them.
  AclEntry* group = Find(kAclMask);
  if (group == nullptr) group = Find(kAclGroupObj);
  group->perm &= (bits >> 3) & 7;
  uint32_t granted = uint32_t{owner->perm} << 6 | uint32_t{group->perm} << 3 | other->perm;
  return (mode & ~0777u) | granted;
}

bool IsAclXattr(std::string_view name) {
  return name == kAclAccessXattr || name == kAclDefaultXattr;
}

Result<AclXattrChange> SetAclXattr(std::string_view name, std::string_view value, uint32_t mode,
                                   bool keep_setgid) {
  AclXattrChange change;
  change.mode = mode;
  if (S_ISLNK(mode)) return Status(EOPNOTSUPP, "symbolic links take no ACLs");
  if (value.empty()) return change;
  const bool access = name == kAclAccessXattr;
  if (!access && !S_ISDIR(mode)) return Status(EACCES, "only directories take a default ACL");
  Result<PosixAcl> acl = PosixAcl::Parse(value);
  if (!acl.ok()) return acl.status();
  if (!access) {
    // Even a three-entry default ACL matters: it stands in for the umask.
    change.value = acl->Encode();
    return change;
  }
  change.mode = (mode & ~0777u) | acl->PermissionBits();
  if (!keep_setgid) change.mode &= ~static_cast<uint32_t>(S_ISGID);
  if (!acl->EquivalentToMode()) change.value = acl->Encode();
  return change;
}

Result<std::string> ChmodAccessAcl(std::string_view stored, uint32_t mode) {
  Result<PosixAcl> acl = PosixAcl::Parse(stored);
  if (!acl.ok()) return Status(EIO, "stored access ACL is corrupt: " + acl.status().message());
  acl->Chmod(mode);
  return acl->Encode();
}

Result<InheritedAcls> InheritDefaultAcl(std::string_view parent_default, uint32_t mode) {
  Result<PosixAcl> acl = PosixAcl::Parse(parent_default);
  if (!acl.ok()) return Status(EIO, "stored default ACL is corrupt: " + acl.status().message());
  InheritedAcls inherited;
  if (S_ISDIR(mode)) inherited.default_acl = acl->Encode();
  inherited.mode = acl->MaskForCreate(mode);
  if (!acl->EquivalentToMode()) inherited.access = acl->Encode();
  return inherited;
}

bool MayKeepSetgid(uint32_t uid, uint32_t gid, const std::vector<uint32_t>& groups,
                   uint32_t file_gid) {
  return uid == 0 || gid == file_gid ||
         std::find(groups.begin(), groups.end(), file_gid) != groups.end();
}

}  // namespace sealfs::metadata
