// Volumes and the data server registry: the service records of a shard.
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>
#include <sys/stat.h>

#include <deque>
#include <unordered_set>

#include "handles.h"
#include "keys.h"
#include "quota.h"
#include "sealfs/metadata/meta_store.h"
#include "sealfs/rpc/credentials.h"

namespace sealfs::metadata {

namespace {
// Volume names are paths of components (tenants/NAMESPACE/PV): no empty,
// "." or ".." component.
Status CheckVolumeName(const std::string& name) {
  auto invalid = [&name](const std::string& why) {
    return Status(EINVAL, "volume name '" + name + "' " + why);
  };
  if (name.empty() || name.size() > kMaxVolumeNameBytes) {
    return invalid("must be 1-" + std::to_string(kMaxVolumeNameBytes) + " characters");
  }
  for (char c : name) {
    if (!(isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' || c == '/')) {
      return invalid("may hold only letters, digits, '-', '_', '.' and '/'");
    }
  }
  size_t start = 0;
  while (start <= name.size()) {
    size_t end = name.find('/', start);
    if (end == std::string::npos) end = name.size();
    std::string_view component(name.data() + start, end - start);
    if (component.empty() || component == "." || component == "..") {
      return invalid("has an empty, '.' or '..' component");
    }
    start = end + 1;
  }
  return Status::Ok();
}

Status CheckTenant(const std::string& tenant) {
  if (tenant.empty() || tenant.size() > 128) {
    return Status(EINVAL, "a tenant name is 1-128 characters");
  }
  for (char c : tenant) {
    if (!(isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) {
      return Status(EINVAL, "tenant '" + tenant + "' may hold only letters, digits, '-', '_', '.'");
    }
  }
  return Status::Ok();
}

pb::Volume ParseVolume(const rocksdb::Slice& value, bool* ok) {
  pb::Volume volume;
  *ok = volume.ParseFromArray(value.data(), static_cast<int>(value.size()));
  return volume;
}
}  // namespace

Result<std::pair<pb::Volume, std::string>> MetaStore::CreateVolume(const VolumeSpec& spec) {
  const std::string& name = spec.name;
  if (spec.stripe_width > kMaxStripeWidth) {
    return Status(EINVAL, "a stripe width is 1 to " + std::to_string(kMaxStripeWidth) +
                              " chains (0: all, up to " + std::to_string(kMaxStripeWidth) + ")");
  }
  SEALFS_RETURN_IF_ERROR(CheckVolumeName(name));
  SEALFS_RETURN_IF_ERROR(CheckTenant(spec.tenant));
  if (!spec.token.empty() && spec.token.size() < auth::kSecretBytes) {
    return Status(EINVAL, "a chosen mount token must be at least " +
                              std::to_string(auth::kSecretBytes) + " bytes (it has " +
                              std::to_string(spec.token.size()) + ")");
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
  attr->set_uid(spec.uid);
  attr->set_gid(spec.gid);
  attr->set_nlink(2);
  attr->set_atime_ns(now);
  attr->set_mtime_ns(now);
  attr->set_ctime_ns(now);
  attr->set_parent(ino);
  attr->set_xattrs(0);
  root.set_next_dir_seq(3);
  root.set_volume_id(id);
  root.set_stripe_width(spec.stripe_width);
  std::string token = spec.token.empty() ? auth::RandomSecret() : spec.token;
  pb::Volume volume;
  volume.set_name(name);
  volume.set_id(id);
  volume.set_root_ino(ino);
  volume.set_created_ns(now);
  volume.set_stripe_width(spec.stripe_width);
  volume.set_tenant(spec.tenant);
  volume.set_quota_bytes(spec.quota_bytes);
  volume.set_quota_inodes(spec.quota_inodes);
  volume.set_token_hash(auth::HashSecret(token));
  rocksdb::WriteBatch batch;
  PutInode(batch, root);
  batch.Put(cf_->service, VolumeKey(name), volume.SerializeAsString());
  batch.Put(cf_->service, kNextVolumeIdKey, EncodeIno(id + 1));
  batch.Put(cf_->service, UsageKey(id), EncodeUsage({0, 1}));
  SEALFS_RETURN_IF_ERROR(Commit(batch));
  quotas_->Set(id, {{0, 1}, spec.quota_bytes, spec.quota_inodes});
  volume.clear_token_hash();
  return std::make_pair(volume, token);
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

Result<pb::Volume> MetaStore::GetVolumeById(uint64_t id) {
  Result<std::vector<pb::Volume>> volumes = ListVolumes();
  if (!volumes.ok()) return volumes.status();
  for (pb::Volume& volume : *volumes) {
    if (volume.id() == id) return std::move(volume);
  }
  return Status(ENOENT, "volume " + std::to_string(id) + " does not exist");
}

Result<std::vector<pb::Volume>> MetaStore::ListVolumes() {
  std::vector<pb::Volume> volumes;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, cf_->service));
  for (it->Seek(kVolumePrefix); it->Valid() && it->key().starts_with(kVolumePrefix); it->Next()) {
    bool ok = false;
    pb::Volume volume = ParseVolume(it->value(), &ok);
    if (!ok) continue;
    QuotaBook::Entry entry = quotas_->Get(volume.id());
    volume.set_used_bytes(static_cast<uint64_t>(std::max<int64_t>(0, entry.used.bytes)));
    volume.set_used_inodes(static_cast<uint64_t>(std::max<int64_t>(0, entry.used.inodes)));
    volumes.push_back(std::move(volume));
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
  UsageChanges changes;  // only for the freed inodes' side records
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
      if (inode.ok()) FreeInode(batch, *inode, changes);
    }
    SEALFS_RETURN_IF_ERROR(IteratorStatus(*it));
    batch.DeleteRange(cf_->dirindex, prefix, EncodeIno(dir + 1));
  }
  Result<pb::Inode> root = LoadInode(volume->root_ino());
  if (root.ok()) FreeInode(batch, *root, changes);
  // Files unlinked while open are in no directory: free them too.
  {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, cf_->service));
    for (it->Seek(kOrphanPrefix); it->Valid() && it->key().starts_with(kOrphanPrefix); it->Next()) {
      if (it->key().size() != kOrphanPrefix.size() + 8) continue;
      uint64_t ino = DecodeIno(it->key().data() + kOrphanPrefix.size());
      Result<pb::Inode> orphan = LoadInode(ino);
      if (orphan.ok() && orphan->volume_id() == volume->id() && freed.insert(ino).second) {
        FreeInode(batch, *orphan, changes);
      }
    }
    SEALFS_RETURN_IF_ERROR(IteratorStatus(*it));
  }
  batch.Delete(cf_->service, VolumeKey(name));
  // The usage record goes with the volume (orphans still open stay
  // charged to nobody); its ledger stays for billing.
  batch.Delete(cf_->service, UsageKey(volume->id()));
  SEALFS_RETURN_IF_ERROR(Commit(batch));
  quotas_->Forget(volume->id());
  return Status::Ok();
}

Result<pb::Volume> MetaStore::SetVolumeQuota(const std::string& name,
                                             std::optional<uint64_t> quota_bytes,
                                             std::optional<uint64_t> quota_inodes) {
  std::lock_guard<std::mutex> guard(registry_mutex_);
  Result<pb::Volume> volume = GetVolume(name);
  if (!volume.ok()) return volume.status();
  if (quota_bytes) volume->set_quota_bytes(*quota_bytes);
  if (quota_inodes) volume->set_quota_inodes(*quota_inodes);
  rocksdb::WriteBatch batch;
  batch.Put(cf_->service, VolumeKey(name), volume->SerializeAsString());
  SEALFS_RETURN_IF_ERROR(Commit(batch));
  quotas_->SetQuota(volume->id(), volume->quota_bytes(), volume->quota_inodes());
  volume->clear_token_hash();
  return volume;
}

Result<std::string> MetaStore::RotateVolumeToken(const std::string& name) {
  std::lock_guard<std::mutex> guard(registry_mutex_);
  Result<pb::Volume> volume = GetVolume(name);
  if (!volume.ok()) return volume.status();
  std::string token = auth::RandomSecret();
  volume->set_token_hash(auth::HashSecret(token));
  rocksdb::WriteBatch batch;
  batch.Put(cf_->service, VolumeKey(name), volume->SerializeAsString());
  SEALFS_RETURN_IF_ERROR(Commit(batch));
  return token;
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

Status MetaStore::PutSession(uint64_t session_id, const pb::SessionRecord& record) {
  rocksdb::WriteBatch batch;
  batch.Put(cf_->service, SessionKey(session_id), record.SerializeAsString());
  return Commit(batch);
}

Status MetaStore::DeleteSession(uint64_t session_id) {
  rocksdb::WriteBatch batch;
  batch.Delete(cf_->service, SessionKey(session_id));
  return Commit(batch, /*sync=*/false);
}

Result<std::vector<std::pair<uint64_t, pb::SessionRecord>>> MetaStore::Sessions() {
  std::vector<std::pair<uint64_t, pb::SessionRecord>> sessions;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, cf_->service));
  for (it->Seek(kSessionPrefix); it->Valid() && it->key().starts_with(kSessionPrefix); it->Next()) {
    if (it->key().size() != kSessionPrefix.size() + 8) continue;
    pb::SessionRecord record;
    // Sessions recorded before sessions had keys parse as empty records:
    // their clients mount again.
    record.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()));
    sessions.emplace_back(DecodeIno(it->key().data() + kSessionPrefix.size()), record);
  }
  SEALFS_RETURN_IF_ERROR(IteratorStatus(*it));
  return sessions;
}

}  // namespace sealfs::metadata
