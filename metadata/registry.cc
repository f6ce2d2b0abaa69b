// Volumes and the data server registry: the service records of a shard.
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>
#include <sys/stat.h>

#include <deque>
#include <unordered_set>

#include "handles.h"
#include "keys.h"
#include "sealfs/metadata/meta_store.h"

namespace sealfs::metadata {

namespace {
bool ValidVolumeName(const std::string& name) {
  if (name.empty() || name.size() > 128 || name == "." || name == "..") return false;
  for (char c : name) {
    if (!(isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' || c == '/')) {
      return false;
    }
  }
  return true;
}
}  // namespace

Result<pb::Volume> MetaStore::CreateVolume(const std::string& name, uint32_t uid, uint32_t gid,
                                           uint32_t stripe_width) {
  if (stripe_width > kMaxStripeWidth) {
    return Status(EINVAL, "a stripe width is 1 to " + std::to_string(kMaxStripeWidth) +
                              " chains (0: all, up to " + std::to_string(kMaxStripeWidth) + ")");
  }
  if (!ValidVolumeName(name)) {
    return Status(EINVAL, "volume name '" + name +
                              "' must be 1-128 characters of letters, digits, '-', '_', '.', '/'");
  }
  std::lock_guard<std::mutex> guard(registry_mutex_);
  std::string existing;
  if (db_->Get({}, cf_->service, VolumeKey(name), &existing).ok()) {
    return Status(EEXIST, "volume '" + name + "' already exists");
  }
  std::string next_id;
  uint64_t id = 1;
  if (db_->Get({}, cf_->service, kNextVolumeIdKey, &next_id).ok() && next_id.size() == 8) {
    id = DecodeIno(next_id.data());
  }
  int64_t now = NowNs();
  pb::Inode root;
  pb::Attr* attr = root.mutable_attr();
  uint64_t ino = AllocateIno();
  attr->set_ino(ino);
  attr->set_mode(S_IFDIR | 0755);
  attr->set_uid(uid);
  attr->set_gid(gid);
  attr->set_nlink(2);
  attr->set_atime_ns(now);
  attr->set_mtime_ns(now);
  attr->set_ctime_ns(now);
  attr->set_parent(ino);
  root.set_next_dir_seq(3);
  root.set_volume_id(id);
  root.set_stripe_width(stripe_width);
  pb::Volume volume;
  volume.set_name(name);
  volume.set_id(id);
  volume.set_root_ino(ino);
  volume.set_created_ns(now);
  volume.set_stripe_width(stripe_width);
  rocksdb::WriteBatch batch;
  PutInode(batch, root);
  batch.Put(cf_->service, VolumeKey(name), volume.SerializeAsString());
  batch.Put(cf_->service, kNextVolumeIdKey, EncodeIno(id + 1));
  SEALFS_RETURN_IF_ERROR(Commit(batch));
  return volume;
}

Result<pb::Volume> MetaStore::GetVolume(const std::string& name) {
  std::string value;
  if (!db_->Get({}, cf_->service, VolumeKey(name), &value).ok()) {
    return Status(ENOENT, "volume '" + name + "' does not exist");
  }
  pb::Volume volume;
  if (!volume.ParseFromString(value)) return Status(EIO, "volume record is corrupt");
  return volume;
}

Result<std::vector<pb::Volume>> MetaStore::ListVolumes() {
  std::vector<pb::Volume> volumes;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, cf_->service));
  for (it->Seek(kVolumePrefix); it->Valid() && it->key().starts_with(kVolumePrefix); it->Next()) {
    pb::Volume volume;
    if (volume.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
      volumes.push_back(std::move(volume));
    }
  }
  SEALFS_RETURN_IF_ERROR(IteratorStatus(*it));
  return volumes;
}

Status MetaStore::DeleteVolume(const std::string& name) {
  std::lock_guard<std::mutex> guard(registry_mutex_);
  Result<pb::Volume> volume = GetVolume(name);
  if (!volume.ok()) return volume.status();
  // Walk the whole subtree; every inode, entry and xattr goes in one batch.
  rocksdb::WriteBatch batch;
  std::deque<uint64_t> directories{volume->root_ino()};
  std::unordered_set<uint64_t> freed;
  while (!directories.empty()) {
    uint64_t dir = directories.front();
    directories.pop_front();
    std::string prefix = EncodeIno(dir);
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, cf_->dirindex));
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
      IndexValue entry = DecodeIndex(it->value());
      batch.Delete(cf_->dentries, DentryKey(dir, entry.name));
      if (S_ISDIR(entry.type)) directories.push_back(entry.ino);
      if (!freed.insert(entry.ino).second) continue;
      Result<pb::Inode> inode = LoadInode(entry.ino);
      if (inode.ok()) FreeInode(batch, *inode);
    }
    SEALFS_RETURN_IF_ERROR(IteratorStatus(*it));
    batch.DeleteRange(cf_->dirindex, prefix, EncodeIno(dir + 1));
  }
  Result<pb::Inode> root = LoadInode(volume->root_ino());
  if (root.ok()) FreeInode(batch, *root);
  batch.Delete(cf_->service, VolumeKey(name));
  return Commit(batch);
}

Status MetaStore::PutServer(const pb::DataServer& server) {
  rocksdb::WriteBatch batch;
  batch.Put(cf_->service, ServerKey(server.id()), server.SerializeAsString());
  return Commit(batch);
}

Result<pb::ChainTable> MetaStore::LoadChainTable() {
  std::string value;
  pb::ChainTable table;
  rocksdb::Status read = db_->Get({}, cf_->service, kChainTableKey, &value);
  if (read.IsNotFound()) return table;
  if (!read.ok()) return Status(EIO, "reading the chain table: " + read.ToString());
  if (!table.ParseFromString(value)) return Status(EIO, "the chain table record is corrupt");
  return table;
}

Status MetaStore::SaveChainTable(const pb::ChainTable& table) {
  rocksdb::WriteBatch batch;
  batch.Put(cf_->service, kChainTableKey, table.SerializeAsString());
  return Commit(batch);
}

Result<std::vector<pb::DataServer>> MetaStore::ListServers() {
  std::vector<pb::DataServer> servers;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, cf_->service));
  for (it->Seek(kServerPrefix); it->Valid() && it->key().starts_with(kServerPrefix); it->Next()) {
    pb::DataServer server;
    if (server.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
      servers.push_back(std::move(server));
    }
  }
  SEALFS_RETURN_IF_ERROR(IteratorStatus(*it));
  return servers;
}

Status MetaStore::PutSession(uint64_t session_id) {
  rocksdb::WriteBatch batch;
  batch.Put(cf_->service, SessionKey(session_id), "");
  return Commit(batch);
}

Status MetaStore::DeleteSession(uint64_t session_id) {
  rocksdb::WriteBatch batch;
  batch.Delete(cf_->service, SessionKey(session_id));
  return Commit(batch, /*sync=*/false);
}

Result<std::vector<uint64_t>> MetaStore::Sessions() {
  std::vector<uint64_t> sessions;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, cf_->service));
  for (it->Seek(kSessionPrefix); it->Valid() && it->key().starts_with(kSessionPrefix); it->Next()) {
    if (it->key().size() == kSessionPrefix.size() + 8) {
      sessions.push_back(DecodeIno(it->key().data() + kSessionPrefix.size()));
    }
  }
  SEALFS_RETURN_IF_ERROR(IteratorStatus(*it));
  return sessions;
}

}  // namespace sealfs::metadata
