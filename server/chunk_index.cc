#include "chunk_index.h"

#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include <cstring>

namespace sealfs::server {

namespace {

std::string InodeKey(uint64_t ino) {
  std::string key(8, '\0');
  for (int i = 0; i < 8; ++i) key[i] = static_cast<char>(ino >> (56 - 8 * i));
  return key;
}

std::string ChunkKey(uint64_t ino, uint32_t index) {
  std::string key = InodeKey(ino);
  for (int i = 0; i < 4; ++i) key.push_back(static_cast<char>(index >> (24 - 8 * i)));
  return key;
}

uint32_t IndexOf(const rocksdb::Slice& key) {
  uint32_t index = 0;
  for (int i = 8; i < 12; ++i) index = (index << 8) | static_cast<uint8_t>(key[i]);
  return index;
}

uint64_t InoOf(const rocksdb::Slice& key) {
  uint64_t ino = 0;
  for (int i = 0; i < 8; ++i) ino = (ino << 8) | static_cast<uint8_t>(key[i]);
  return ino;
}

constexpr size_t kRecordSize = 20;

std::string EncodeRecord(const ChunkRecord& record) {
  std::string value(kRecordSize, '\0');
  std::memcpy(value.data(), &record.version, 8);
  std::memcpy(value.data() + 8, &record.committed, 8);
  std::memcpy(value.data() + 16, &record.chain, 4);
  return value;
}

// A chunk recorded before records existed reads as version 0 of no chain.
ChunkRecord DecodeRecord(const rocksdb::Slice& value) {
  ChunkRecord record;
  if (value.size() == kRecordSize) {
    std::memcpy(&record.version, value.data(), 8);
    std::memcpy(&record.committed, value.data() + 8, 8);
    std::memcpy(&record.chain, value.data() + 16, 4);
  }
  return record;
}

}  // namespace

ChunkIndex::ChunkIndex(std::string path) : path_(std::move(path)) {}

ChunkIndex::~ChunkIndex() {
  if (db_) db_->Close();
}

Result<std::unique_ptr<ChunkIndex>> ChunkIndex::Open(const std::string& path) {
  std::unique_ptr<ChunkIndex> index(new ChunkIndex(path));
  rocksdb::Options options;
  options.create_if_missing = true;
  // A small database beside the chunks: keep its files, threads and
  // descriptors few, and never preallocate (on a nearly full disk the chunks
  // need that space).
  options.max_background_jobs = 1;
  options.max_open_files = 64;
  options.write_buffer_size = 4u << 20;
  options.allow_fallocate = false;
  options.manifest_preallocation_size = 64u << 10;
  options.keep_log_file_num = 2;
  options.stats_dump_period_sec = 0;
  options.stats_persist_period_sec = 0;
  rocksdb::DB* db = nullptr;
  rocksdb::Status status = rocksdb::DB::Open(options, path, &db);
  if (!status.ok()) {
    return Status(EIO, "cannot open the chunk index at " + path + ": " + status.ToString());
  }
  index->db_.reset(db);
  return index;
}

namespace {
Status Failed(const char* what, const rocksdb::Status& status) {
  return Status(status.IsNoSpace() ? ENOSPC : EIO,
                std::string("chunk index: ") + what + ": " + status.ToString());
}
}  // namespace

Result<bool> ChunkIndex::HasChunk(uint64_t ino, uint32_t index) {
  std::string value;
  rocksdb::Status status = db_->Get({}, ChunkKey(ino, index), &value);
  if (status.IsNotFound()) return false;
  if (!status.ok()) return Failed("lookup", status);
  return true;
}

Status ChunkIndex::AddChunk(uint64_t ino, uint32_t index) {
  rocksdb::Status status = db_->Put({}, ChunkKey(ino, index), "");
  return status.ok() ? Status::Ok() : Failed("recording a chunk", status);
}

Result<std::optional<ChunkRecord>> ChunkIndex::Record(uint64_t ino, uint32_t index) {
  std::string value;
  rocksdb::Status status = db_->Get({}, ChunkKey(ino, index), &value);
  if (status.IsNotFound()) return std::optional<ChunkRecord>();
  if (!status.ok()) return Failed("lookup", status);
  return std::optional<ChunkRecord>(DecodeRecord(value));
}

Status ChunkIndex::PutRecord(uint64_t ino, uint32_t index, const ChunkRecord& record) {
  rocksdb::Status status = db_->Put({}, ChunkKey(ino, index), EncodeRecord(record));
  return status.ok() ? Status::Ok() : Failed("recording a chunk version", status);
}

Status ChunkIndex::ForEachChunk(
    const std::function<void(uint64_t, uint32_t, const ChunkRecord&)>& visit) {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    if (it->key().size() == 12)
      visit(InoOf(it->key()), IndexOf(it->key()), DecodeRecord(it->value()));
  }
  if (!it->status().ok()) return Failed("listing chunks", it->status());
  return Status::Ok();
}

Status ChunkIndex::RemoveChunk(uint64_t ino, uint32_t index) {
  rocksdb::Status status = db_->Delete({}, ChunkKey(ino, index));
  return status.ok() ? Status::Ok() : Failed("forgetting a chunk", status);
}

Result<std::vector<uint32_t>> ChunkIndex::Chunks(uint64_t ino) {
  std::string prefix = InodeKey(ino);
  std::vector<uint32_t> indexes;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}));
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    if (it->key().size() == 12) indexes.push_back(IndexOf(it->key()));
  }
  if (!it->status().ok()) return Failed("listing chunks", it->status());
  return indexes;
}

Result<bool> ChunkIndex::IsRemoved(uint64_t ino) {
  std::string value;
  rocksdb::Status status = db_->Get({}, InodeKey(ino), &value);
  if (status.IsNotFound()) return false;
  if (!status.ok()) return Failed("lookup", status);
  return true;
}

Status ChunkIndex::MarkRemoved(uint64_t ino) {
  auto chunks = Chunks(ino);
  if (!chunks.ok()) return chunks.status();
  rocksdb::WriteBatch batch;
  batch.Put(InodeKey(ino), "");
  for (uint32_t index : *chunks) batch.Delete(ChunkKey(ino, index));
  rocksdb::Status status = db_->Write({}, &batch);
  return status.ok() ? Status::Ok() : Failed("recording a removal", status);
}

namespace {
// Neither 8 (a removed file) nor 12 bytes (a chunk) long, so never taken for one.
const std::string kCompleteKey =
    "\xff\xff"
    "index-complete";
}  // namespace

Result<bool> ChunkIndex::IsComplete() {
  std::string value;
  rocksdb::Status status = db_->Get({}, kCompleteKey, &value);
  if (status.IsNotFound()) return false;
  if (!status.ok()) return Failed("lookup", status);
  return true;
}

Status ChunkIndex::MarkComplete() {
  rocksdb::WriteOptions options;
  options.sync = true;
  rocksdb::Status status = db_->Put(options, kCompleteKey, "");
  return status.ok() ? Status::Ok() : Failed("recording the index complete", status);
}

Status ChunkIndex::Sync() {
  rocksdb::Status status = db_->SyncWAL();
  return status.ok() ? Status::Ok() : Failed("sync", status);
}

}  // namespace sealfs::server
