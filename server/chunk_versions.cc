// ChunkStore, part three: what chain replication needs of a store — chunk
// records (versions and chain), whole-chunk copies and drops, verification.
#include <unistd.h>

#include <mutex>

#include "chunk_file.h"
#include "chunk_index.h"
#include "sealfs/server/chunk_store.h"
#include "writer_first_lock.h"

namespace sealfs::server {

using namespace chunk_file;

Result<std::optional<ChunkRecord>> ChunkStore::Version(uint64_t ino, uint32_t index) {
  {
    std::shared_lock<WriterFirstLock> inode_lock(InodeLock(ino));
    std::unique_lock<std::shared_mutex> lock(LockFor(ino, index));
    auto opened = OpenFiles(ino, index, false);
    if (!opened.ok() && opened.status().code() != ENOENT) return opened.status();
  }
  return index_->Record(ino, index);
}

Result<std::vector<uint32_t>> ChunkStore::ChunkIndexes(uint64_t ino) {
  std::shared_lock<WriterFirstLock> inode_lock(InodeLock(ino));
  return IndexesLocked(ino);
}

Status ChunkStore::Cut(uint64_t ino, uint32_t index, uint64_t length, bool* shortened) {
  *shortened = false;
  std::shared_lock<WriterFirstLock> inode_lock(InodeLock(ino));
  return TruncateChunk(ino, index, length, shortened);
}

Status ChunkStore::SyncRecords() { return index_->Sync(); }

Status ChunkStore::SetVersion(uint64_t ino, uint32_t index, const ChunkRecord& record) {
  return index_->PutRecord(ino, index, record);
}

Status ChunkStore::ForEachChunk(
    const std::function<void(uint64_t, uint32_t, const ChunkRecord&)>& visit) {
  return index_->ForEachChunk(visit);
}

Status ChunkStore::Replace(uint64_t ino, uint32_t index, std::string_view whole) {
  SEALFS_RETURN_IF_ERROR(Drop(ino, index));
  if (!whole.empty()) return Write(ino, index, 0, whole);
  // An empty chunk still exists (a file cut to a chunk boundary keeps it).
  std::shared_lock<WriterFirstLock> inode_lock(InodeLock(ino));
  std::unique_lock<std::shared_mutex> lock(LockFor(ino, index));
  auto opened = OpenFiles(ino, index, true);
  return opened.ok() ? Status::Ok() : opened.status();
}

Status ChunkStore::Drop(uint64_t ino, uint32_t index) {
  std::shared_lock<WriterFirstLock> inode_lock(InodeLock(ino));
  return DropChunk(ino, index);
}

namespace {
// Counts what a verification read, and keeps nothing.
class CountingTarget : public ChunkStore::ReadTarget {
 public:
  char* Reserve(size_t size) override {
    buffer_.resize(size);
    return buffer_.data();
  }
  void Keep(size_t, size_t length) override { kept_ += length; }
  size_t kept() const { return kept_; }

 private:
  std::string buffer_;
  size_t kept_ = 0;
};
}  // namespace

Status ChunkStore::Verify(uint64_t ino, uint32_t index, uint64_t* bytes_read) {
  CountingTarget target;
  Status status = Read(ino, index, 0, kMaxChunkSize, &target);
  if (bytes_read) *bytes_read = target.kept();
  return status;
}

}  // namespace sealfs::server
