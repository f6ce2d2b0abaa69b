// MetaStore: listing a directory, in the order of its entries' sequence
// numbers (readdir cookies), with attributes when asked (readdirplus).
#include <rocksdb/db.h>
#include <sys/stat.h>

#include <algorithm>

#include "handles.h"
#include "keys.h"
#include "sealfs/metadata/meta_store.h"

namespace sealfs::metadata {

Result<pb::ReaddirResponse> MetaStore::Readdir(uint64_t ino, uint64_t cookie, uint32_t max_entries,
                                               bool with_attrs, uint64_t seq_limit) {
  Result<pb::Inode> dir = LoadInode(ino);
  if (!dir.ok()) return dir.status();
  if (!IsDir(*dir)) return Status(ENOTDIR, "not a directory");
  if (max_entries == 0) max_entries = 1024;
  max_entries = std::min(max_entries, kReaddirMaxEntries);
  pb::ReaddirResponse response;
  // A listing shows only entries older than its start: names added later
  // (renamed in from elsewhere, or created) cannot keep it going for ever.
  if (seq_limit == 0) seq_limit = std::max<uint64_t>(dir->next_dir_seq(), kFirstDirSeq);
  response.set_seq_limit(seq_limit);
  size_t reply_bytes = 0;
  auto add_dot = [&](const char* name, uint64_t target, uint64_t entry_cookie) -> Status {
    pb::DirEntry* entry = response.add_entries();
    entry->set_name(name);
    entry->set_ino(target);
    entry->set_type(S_IFDIR);
    entry->set_cookie(entry_cookie);
    if (with_attrs) {
      Result<pb::Inode> inode = target == ino ? dir : LoadInode(target);
      if (!inode.ok()) return inode.status();
      *entry->mutable_attr() = inode->attr();
    }
    return Status::Ok();
  };
  if (cookie < 1) SEALFS_RETURN_IF_ERROR(add_dot(".", ino, 1));
  if (cookie < 2) {
    uint64_t up = dir->attr().parent() == 0 ? ino : dir->attr().parent();
    SEALFS_RETURN_IF_ERROR(add_dot("..", up, 2));
  }
  rocksdb::ReadOptions read_options;
  std::string prefix = EncodeIno(ino);
  std::string upper = EncodeIno(ino + 1);
  rocksdb::Slice upper_slice(upper);
  read_options.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read_options, cf_->dirindex));
  bool full = false;
  for (it->Seek(IndexKey(ino, std::max<uint64_t>(cookie + 1, kFirstDirSeq))); it->Valid();
       it->Next()) {
    if (DecodeIno(it->key().data() + 8) >= seq_limit) break;  // added after the start
    if (static_cast<uint32_t>(response.entries_size()) >= max_entries ||
        reply_bytes >= kReaddirReplyBytes) {
      full = true;
      break;
    }
    IndexValue value = DecodeIndex(it->value());
    pb::DirEntry* entry = response.add_entries();
    entry->set_name(value.name);
    entry->set_ino(value.ino);
    entry->set_type(value.type);
    entry->set_cookie(DecodeIno(it->key().data() + 8));
    if (with_attrs) {
      Result<pb::Inode> inode = LoadInode(value.ino);
      if (inode.status().code() == ENOENT) {
        response.mutable_entries()->RemoveLast();  // removed since the scan began
        continue;
      }
      if (!inode.ok()) return inode.status();
      *entry->mutable_attr() = inode->attr();
      *entry->mutable_layout() = inode->layout();
    }
    reply_bytes += entry->ByteSizeLong() + 8;
  }
  SEALFS_RETURN_IF_ERROR(IteratorStatus(*it));
  response.set_end(!full);
  return response;
}

}  // namespace sealfs::metadata
