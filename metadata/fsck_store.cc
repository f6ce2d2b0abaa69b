// What fsck reads from a MetaStore and how it mends what the checker found.
// A repair runs against the live store, which may have changed since the
// snapshot the check read: each one checks again, under the locks of what
// it changes, that the damage is still there, and otherwise does nothing.
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>
#include <sys/stat.h>

#include "handles.h"
#include "keys.h"
#include "meta.pb.h"
#include "sealfs/metadata/fsck.h"
#include "sealfs/metadata/meta_store.h"

namespace sealfs::metadata {

namespace {

Status Changed() { return Status(EAGAIN, "changed since the check; left alone"); }

// A snapshot released when the scan ends.
class SnapshotRead {
 public:
  explicit SnapshotRead(rocksdb::DB& db) : db_(db), snapshot_(db.GetSnapshot()) {
    options_.snapshot = snapshot_;
  }
  ~SnapshotRead() { db_.ReleaseSnapshot(snapshot_); }
  const rocksdb::ReadOptions& options() const { return options_; }

 private:
  rocksdb::DB& db_;
  const rocksdb::Snapshot* snapshot_;
  rocksdb::ReadOptions options_;
};

}  // namespace

Result<NamespaceFacts> MetaStore::CollectFacts() {
  SnapshotRead read(*db_);
  NamespaceFacts facts;
  {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read.options(), cf_->inodes));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      pb::Inode inode;
      if (it->key().size() != 8 ||
          !inode.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
        return Status(EIO, "inode record " + it->key().ToString(true) + " is corrupt");
      }
      facts.inodes.push_back({DecodeIno(it->key().data()), inode.attr().mode(),
                              inode.attr().nlink(), inode.attr().parent(), inode.volume_id(),
                              inode.attr().has_xattrs() ? int64_t{inode.attr().xattrs()} : -1});
    }
    SEALFS_RETURN_IF_ERROR(IteratorStatus(*it));
  }
  {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read.options(), cf_->dentries));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      if (it->key().size() < 8) return Status(EIO, "a directory entry key is corrupt");
      DentryValue value = DecodeDentry(it->value().ToStringView());
      facts.entries.push_back({DecodeIno(it->key().data()),
                               std::string(it->key().data() + 8, it->key().size() - 8), value.ino,
                               value.type, value.seq});
    }
    SEALFS_RETURN_IF_ERROR(IteratorStatus(*it));
  }
  {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read.options(), cf_->xattrs));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      if (it->key().size() < 8) return Status(EIO, "an extended attribute key is corrupt");
      ++facts.xattrs[DecodeIno(it->key().data())];
    }
    SEALFS_RETURN_IF_ERROR(IteratorStatus(*it));
  }
  {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read.options(), cf_->dirindex));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      if (it->key().size() != 16) return Status(EIO, "a listing record key is corrupt");
      IndexValue value = DecodeIndex(it->value());
      facts.index.push_back({DecodeIno(it->key().data()), DecodeIno(it->key().data() + 8),
                             value.ino, value.type, std::move(value.name)});
    }
    SEALFS_RETURN_IF_ERROR(IteratorStatus(*it));
  }
  {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read.options(), cf_->service));
    for (it->Seek(kVolumePrefix); it->Valid() && it->key().starts_with(kVolumePrefix); it->Next()) {
      pb::Volume volume;
      if (!volume.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
        return Status(EIO, "volume record " + it->key().ToString() + " is corrupt");
      }
      facts.volumes.push_back({volume.id(), volume.name(), volume.root_ino()});
    }
    SEALFS_RETURN_IF_ERROR(IteratorStatus(*it));
    for (it->Seek(kOrphanPrefix); it->Valid() && it->key().starts_with(kOrphanPrefix); it->Next()) {
      facts.orphans.insert(DecodeIno(it->key().data() + kOrphanPrefix.size()));
    }
    SEALFS_RETURN_IF_ERROR(IteratorStatus(*it));
  }
  return facts;
}

Result<std::string> MetaStore::Repair(const Finding& f) {
  rocksdb::WriteBatch batch;
  switch (f.problem) {
    case Problem::kDanglingEntry:
    case Problem::kEntryInMissingDirectory:
    case Problem::kDirectoryNames: {
      LockSet lock(*locks_, {f.parent, f.ino});
      uint64_t seq = 0;
      Result<uint64_t> named = LookupChild(f.parent, f.name, nullptr, &seq);
      if (!named.ok() || *named != f.ino) return Changed();
      Result<pb::Inode> dir = LoadDirectory(f.parent);
      Result<pb::Inode> inode = LoadInode(f.ino);
      if (f.problem == Problem::kDanglingEntry && inode.ok()) return Changed();
      if (f.problem == Problem::kEntryInMissingDirectory && dir.ok()) return Changed();
      if (f.problem == Problem::kDirectoryNames &&
          (!inode.ok() || inode->attr().parent() == f.parent)) {
        return Changed();
      }
      RemoveEntry(batch, f.parent, f.name, seq);
      SEALFS_RETURN_IF_ERROR(Commit(batch));
      return "removed the entry '" + f.name + "'";
    }
    case Problem::kEntryType:
    case Problem::kMissingIndex: {
      // The entry is written again, with its inode's type and a new listing
      // record (a new sequence, so it cannot collide with another's).
      LockSet lock(*locks_, {f.parent, f.ino});
      uint64_t seq = 0;
      Result<uint64_t> named = LookupChild(f.parent, f.name, nullptr, &seq);
      if (!named.ok() || *named != f.ino) return Changed();
      Result<pb::Inode> dir = LoadDirectory(f.parent);
      if (!dir.ok()) return dir.status();
      Result<pb::Inode> inode = LoadInode(f.ino);
      if (!inode.ok()) return inode.status();
      std::string record;
      if (db_->Get({}, cf_->dirindex, IndexKey(f.parent, seq), &record).ok() &&
          DecodeIndex(record).name == f.name) {
        batch.Delete(cf_->dirindex, IndexKey(f.parent, seq));
      }
      AddEntry(batch, *dir, f.name, f.ino, inode->attr().mode());
      PutInode(batch, *dir);
      SEALFS_RETURN_IF_ERROR(Commit(batch));
      return "wrote the entry '" + f.name + "' again with its listing record";
    }
    case Problem::kStrayIndex: {
      LockSet lock(*locks_, {f.parent});
      uint64_t seq = 0;
      Result<uint64_t> named = LookupChild(f.parent, f.name, nullptr, &seq);
      if (named.ok() && seq == f.seq) return Changed();
      batch.Delete(cf_->dirindex, IndexKey(f.parent, f.seq));
      SEALFS_RETURN_IF_ERROR(Commit(batch));
      return "removed listing record " + std::to_string(f.seq);
    }
    case Problem::kLinkCount:
    case Problem::kDirectoryParent: {
      LockSet lock(*locks_, {f.ino});
      Result<pb::Inode> inode = LoadInode(f.ino);
      if (!inode.ok()) return inode.status();
      pb::Attr* attr = inode->mutable_attr();
      if (f.problem == Problem::kLinkCount) {
        if (attr->nlink() != f.found) return Changed();
        attr->set_nlink(static_cast<uint32_t>(f.expected));
      } else {
        if (attr->parent() != f.found) return Changed();
        attr->set_parent(f.expected);
      }
      PutInode(batch, *inode);
      SEALFS_RETURN_IF_ERROR(Commit(batch));
      return f.problem == Problem::kLinkCount
                 ? "set the link count to " + std::to_string(f.expected)
                 : "set the parent to the directory that names it";
    }
    case Problem::kXattrCount: {
      // Counted again under the inode's lock, which every xattr change holds.
      LockSet lock(*locks_, {f.ino});
      Result<pb::Inode> inode = LoadInode(f.ino);
      if (!inode.ok()) return inode.status();
      if (!inode->attr().has_xattrs() || inode->attr().xattrs() != f.found) return Changed();
      Result<std::vector<std::string>> names = Listxattr(f.ino);
      if (!names.ok()) return names.status();
      inode->mutable_attr()->set_xattrs(static_cast<uint32_t>(names->size()));
      PutInode(batch, *inode);
      SEALFS_RETURN_IF_ERROR(Commit(batch));
      return "set the count of extended attributes to " + std::to_string(names->size());
    }
    case Problem::kUnreachable:
      return Reattach(f);
    case Problem::kStrayOrphan: {
      LockSet lock(*locks_, {f.ino});
      Result<pb::Inode> inode = LoadInode(f.ino);
      if (inode.ok() && inode->attr().nlink() == 0) return Changed();
      batch.Delete(cf_->service, OrphanKey(f.ino));
      SEALFS_RETURN_IF_ERROR(Commit(batch));
      return std::string("removed the orphan record");
    }
    case Problem::kMissingRoot:
    case Problem::kVolumeMismatch:
      break;
  }
  return Status(ENOTSUP, "not repaired: it needs a person to decide (nothing is safe to remove)");
}

// Links an inode nothing names into its volume's lost+found as "#INO", as
// e2fsck does: its data stays, and a person decides what it was.
Result<std::string> MetaStore::Reattach(const Finding& f) {
  Result<pb::Volume> volume = GetVolumeById(f.volume_id);
  if (!volume.ok()) return Status(ENOENT, "its volume no longer exists; left alone");
  const std::string kLostFound = "lost+found";
  Result<uint64_t> found_ino = LookupChild(volume->root_ino(), kLostFound, nullptr, nullptr);
  if (!found_ino.ok()) {
    pb::Caller root;
    Result<pb::Inode> made = Mkdir(volume->root_ino(), kLostFound, 0700, root);
    if (!made.ok() && made.status().code() != EEXIST) return made.status();
    found_ino = LookupChild(volume->root_ino(), kLostFound, nullptr, nullptr);
    if (!found_ino.ok()) return found_ino.status();
  }
  LockSet lock(*locks_, {*found_ino, f.ino});
  Result<pb::Inode> dir = LoadDirectory(*found_ino);
  if (!dir.ok()) return dir.status();
  Result<pb::Inode> inode = LoadInode(f.ino);
  if (!inode.ok()) return inode.status();
  if (inode->attr().nlink() != f.found) return Changed();
  const std::string name = "#" + std::to_string(f.ino);
  if (LookupChild(*found_ino, name, nullptr, nullptr).ok()) return Changed();
  rocksdb::WriteBatch batch;
  if (IsDir(*inode)) {
    inode->mutable_attr()->set_parent(*found_ino);
    dir->mutable_attr()->set_nlink(dir->attr().nlink() + 1);
  } else {
    inode->mutable_attr()->set_nlink(1);
  }
  AddEntry(batch, *dir, name, f.ino, inode->attr().mode());
  PutInode(batch, *dir);
  PutInode(batch, *inode);
  batch.Delete(cf_->service, OrphanKey(f.ino));
  SEALFS_RETURN_IF_ERROR(Commit(batch));
  return "linked it as lost+found/" + name;
}

namespace {

constexpr int kMaxRounds = 8;
constexpr int kMaxListed = 1000;

pb::FsckFinding Report(const Finding& finding) {
  pb::FsckFinding out;
  out.set_problem(ProblemName(finding.problem));
  out.set_description(Describe(finding));
  out.set_ino(finding.ino);
  return out;
}

}  // namespace

Status RunFsck(MetaStore& store, bool repair, pb::FsckResponse* response) {
  for (int round = 1; round <= kMaxRounds; ++round) {
    Result<NamespaceFacts> facts = store.CollectFacts();
    if (!facts.ok()) return facts.status();
    CheckSummary summary;
    std::vector<Finding> findings = CheckNamespace(*facts, &summary);
    response->set_rounds(round);
    response->clear_remaining();
    response->set_remaining_count(findings.size());
    for (const Finding& finding : findings) {
      if (response->remaining_size() < kMaxListed) *response->add_remaining() = Report(finding);
    }
    if (round == 1) {
      response->set_volumes(summary.volumes);
      response->set_directories(summary.directories);
      response->set_files(summary.files);
      response->set_entries(summary.entries);
      response->set_orphans(summary.orphans);
    }
    if (!repair && round == 1) response->set_found_count(findings.size());
    if (!repair || findings.empty() || round == kMaxRounds) break;
    bool mended = false;
    for (const Finding& finding : findings) {
      response->set_found_count(response->found_count() + 1);
      Result<std::string> done = store.Repair(finding);
      mended = mended || done.ok();
      if (response->found_size() >= kMaxListed) continue;
      pb::FsckFinding* listed = response->add_found();
      *listed = Report(finding);
      listed->set_repaired(done.ok());
      listed->set_repair(done.ok() ? *done : done.status().message());
    }
    if (!mended) break;
  }
  if (!repair) *response->mutable_found() = response->remaining();
  return Status::Ok();
}

}  // namespace sealfs::metadata
