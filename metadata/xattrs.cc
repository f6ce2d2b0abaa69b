// Extended attributes of a MetaStore, POSIX ACLs among them (kept
// consistent with the mode, see posix_acl.h).
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include "handles.h"
#include "keys.h"
#include "posix_acl.h"
#include "sealfs/metadata/meta_store.h"

namespace sealfs::metadata {

Status MetaStore::Setxattr(uint64_t ino, const std::string& name, const std::string& value,
                           uint32_t flags, const XattrCaller* caller) {
  if (name.empty()) return Status(EINVAL, "empty attribute name");
  if (name.size() > kXattrNameMax) return Status(ERANGE, "attribute name too long");
  if (value.size() > kXattrValueMax) return Status(E2BIG, "attribute value too large");
  LockSet lock(*locks_, {ino});
  Result<pb::Inode> inode = LoadInode(ino);
  if (!inode.ok()) return inode.status();
  std::string existing;
  bool exists = db_->Get({}, cf_->xattrs, XattrKey(ino, name), &existing).ok();
  if ((flags & XATTR_CREATE) && exists) return Status(EEXIST, "attribute exists");
  if ((flags & XATTR_REPLACE) && !exists) return Status(ENODATA, "no such attribute");
  rocksdb::WriteBatch batch;
  pb::Attr* attr = inode->mutable_attr();
  bool stored = true;  // whether the attribute exists afterwards
  if (IsAclXattr(name)) {
    // A caller unknown to us (a client that does not send one) keeps the bit.
    bool keep_setgid =
        caller == nullptr || MayKeepSetgid(caller->uid, caller->gid, caller->groups, attr->gid());
    Result<AclXattrChange> change = SetAclXattr(name, value, attr->mode(), keep_setgid);
    if (!change.ok()) return change.status();
    attr->set_mode(change->mode);
    stored = change->value.has_value();
    if (stored) {
      batch.Put(cf_->xattrs, XattrKey(ino, name), *change->value);
    } else {
      batch.Delete(cf_->xattrs, XattrKey(ino, name));
    }
  } else {
    batch.Put(cf_->xattrs, XattrKey(ino, name), value);
  }
  if (attr->has_xattrs())
    attr->set_xattrs(attr->xattrs() + (stored && !exists) - (exists && !stored));
  attr->set_ctime_ns(NowNs());
  PutInode(batch, *inode);
  return Commit(batch);
}

Result<std::string> MetaStore::Getxattr(uint64_t ino, const std::string& name) {
  if (name.size() > kXattrNameMax) return Status(ERANGE, "attribute name too long");
  std::string value;
  rocksdb::Status status = db_->Get({}, cf_->xattrs, XattrKey(ino, name), &value);
  if (status.IsNotFound()) {
    Result<pb::Inode> inode = LoadInode(ino);
    if (!inode.ok()) return inode.status();
    return Status(ENODATA, "no such attribute");
  }
  if (!status.ok()) return Status(EIO, status.ToString());
  return value;
}

Result<std::vector<std::string>> MetaStore::Listxattr(uint64_t ino) {
  Result<pb::Inode> inode = LoadInode(ino);
  if (!inode.ok()) return inode.status();
  std::vector<std::string> names;
  std::string prefix = EncodeIno(ino);
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, cf_->xattrs));
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    names.emplace_back(it->key().data() + 8, it->key().size() - 8);
  }
  SEALFS_RETURN_IF_ERROR(IteratorStatus(*it));
  return names;
}

Status MetaStore::Removexattr(uint64_t ino, const std::string& name) {
  if (name.size() > kXattrNameMax) return Status(ERANGE, "attribute name too long");
  LockSet lock(*locks_, {ino});
  Result<pb::Inode> inode = LoadInode(ino);
  if (!inode.ok()) return inode.status();
  std::string existing;
  if (!db_->Get({}, cf_->xattrs, XattrKey(ino, name), &existing).ok()) {
    return Status(ENODATA, "no such attribute");
  }
  rocksdb::WriteBatch batch;
  batch.Delete(cf_->xattrs, XattrKey(ino, name));
  pb::Attr* attr = inode->mutable_attr();
  if (attr->has_xattrs() && attr->xattrs() > 0) attr->set_xattrs(attr->xattrs() - 1);
  attr->set_ctime_ns(NowNs());
  PutInode(batch, *inode);
  return Commit(batch);
}

}  // namespace sealfs::metadata
