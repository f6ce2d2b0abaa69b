// ChunkStore, part one: opening the store, the data path (write, read) and
// whole-file operations (truncate, remove, fsync, usage). Opening chunk files,
// the descriptor cache and the clean/dirty protocol are in chunk_store_open.cc.
#include "sealfs/server/chunk_store.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <vector>

#include "chunk_file.h"
#include "chunk_index.h"
#include "sealfs/rpc/process.h"
#include "writer_first_lock.h"

namespace sealfs::server {

namespace fs = std::filesystem;
using namespace chunk_file;

namespace {

constexpr size_t kLockStripes = 1024;
constexpr size_t kInodeLockStripes = 256;

Status ChecksumMismatch(const std::string& path, uint64_t ino, uint32_t index, uint64_t block) {
  std::fprintf(stderr, "chunk store: checksum mismatch in %s block %llu\n", path.c_str(),
               static_cast<unsigned long long>(block));
  return Status(EIO, "checksum mismatch in chunk " + std::to_string(index) + " of inode " +
                         std::to_string(ino));
}

// The chunk indexes that have a data file in `dir`; none when it is missing.
Result<std::vector<uint32_t>> ListChunkFiles(const std::string& dir) {
  std::vector<uint32_t> indexes;
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec) {
    if (ec == std::errc::no_such_file_or_directory) return indexes;
    return Status(ec.value(), "listing " + dir + ": " + ec.message());
  }
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    if (it->path().extension() != ".dat") continue;
    const std::string stem = it->path().stem().string();
    char* end = nullptr;
    unsigned long index = std::strtoul(stem.c_str(), &end, 10);
    if (!stem.empty() && *end == '\0' && index <= UINT32_MAX) {
      indexes.push_back(static_cast<uint32_t>(index));
    }
  }
  if (ec) return Status(ec.value(), "listing " + dir + ": " + ec.message());
  std::sort(indexes.begin(), indexes.end());
  return indexes;
}

// How many chunks may keep their two descriptors open: a quarter of the
// descriptor limit, leaving the rest to sockets and RocksDB.
size_t OpenChunkLimit() {
  struct rlimit limit;
  rlim_t soft = 1024;
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY) {
    soft = limit.rlim_cur;
  }
  return std::clamp<size_t>(soft / 4 / 2, 8, 4096);
}

constexpr std::string_view kFormatLine = "sealfs chunk store format ";

}  // namespace

ChunkStore::ChunkStore(std::string root)
    : root_(std::move(root)),
      inode_locks_(new WriterFirstLock[kInodeLockStripes]),
      locks_(new std::shared_mutex[kLockStripes]),
      open_chunk_limit_(OpenChunkLimit()) {}

ChunkStore::~ChunkStore() {
  for (auto& [key, chunk] : open_lru_) {
    Status cleaned = Clean(*chunk);
    if (!cleaned.ok()) {
      std::fprintf(stderr, "chunk store: %s stays marked dirty: %s\n",
                   ChunkPath(key.first, key.second).c_str(), cleaned.ToString().c_str());
    }
  }
  open_chunks_.clear();
  open_lru_.clear();
  if (index_) index_->Sync();
}

// The FORMAT file names the layout of everything under a store's root. A
// new store is stamped with today's format; any other version (also a store
// from before the file existed, format 1) is refused, never misread.
Status CheckFormat(const std::string& root) {
  std::string path = root + "/FORMAT";
  std::ifstream file(path);
  if (!file) {
    std::error_code ec;
    if (fs::exists(fs::path(root) / "INSTANCE", ec)) {
      return Status(ENOTSUP, "chunk store at " + root +
                                 " has on-disk format version 1 (chunks without versions); this "
                                 "sealfs-data reads format version " +
                                 std::to_string(ChunkStore::kFormatVersion) + " only");
    }
    return WriteFileAtomically(
        path, std::string(kFormatLine) + std::to_string(ChunkStore::kFormatVersion) + "\n");
  }
  std::string line;
  std::getline(file, line);
  unsigned version = 0;
  if (line.rfind(kFormatLine, 0) != 0 ||
      std::sscanf(line.c_str() + kFormatLine.size(), "%u", &version) != 1) {
    return Status(ENOTSUP, "chunk store at " + root + " has an unreadable format file " + path +
                               " (\"" + line + "\"); refusing to read a store it does not know");
  }
  if (version != ChunkStore::kFormatVersion) {
    return Status(ENOTSUP, "chunk store at " + root + " has on-disk format version " +
                               std::to_string(version) +
                               "; this sealfs-data reads format version " +
                               std::to_string(ChunkStore::kFormatVersion) + " only");
  }
  return Status::Ok();
}

Result<std::unique_ptr<ChunkStore>> ChunkStore::Open(const std::string& root) {
  std::error_code ec;
  fs::create_directories(fs::path(root) / "chunks", ec);
  if (ec) return Status(ec.value(), "cannot create " + root + ": " + ec.message());
  SEALFS_RETURN_IF_ERROR(CheckFormat(root));
  std::unique_ptr<ChunkStore> store(new ChunkStore(root));
  std::string id_path = root + "/INSTANCE";
  std::ifstream id_file(id_path);
  if (!(id_file >> store->instance_id_)) {
    std::random_device random;
    char id[33];
    std::snprintf(id, sizeof id, "%08x%08x%08x%08x", random(), random(), random(), random());
    store->instance_id_ = id;
    SEALFS_RETURN_IF_ERROR(WriteFileAtomically(id_path, store->instance_id_ + "\n"));
  }
  auto index = ChunkIndex::Open(root + "/chunkdb");
  if (!index.ok()) return index.status();
  store->index_ = std::move(*index);
  // A store from before the chunk index existed (or whose recording was cut
  // short) gets every chunk on disk recorded, then the index marked complete.
  auto complete = store->index_->IsComplete();
  if (!complete.ok()) return complete.status();
  const bool new_index = !*complete;
  // Every shard directory exists from the start and is durable, so that an
  // fsync of a file needs to sync only the file's own directory.
  for (unsigned shard = 0; shard < 256; ++shard) {
    char name[8];
    std::snprintf(name, sizeof name, "/%02x", shard);
    std::string path = root + "/chunks" + name;
    if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) return IoError("create " + path);
  }
  for (const std::string& dir : {root + "/chunks", root}) {
    int handle = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    bool synced = handle >= 0 && ::fsync(handle) == 0;
    Status failure = synced ? Status::Ok() : IoError("fsync " + dir);
    if (handle >= 0) ::close(handle);
    SEALFS_RETURN_IF_ERROR(failure);
  }
  // Count what is stored, for usage reports.
  for (auto it = fs::recursive_directory_iterator(fs::path(root) / "chunks", ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_regular_file(ec) && it->path().extension() == ".dat") {
      store->used_bytes_ += static_cast<int64_t>(it->file_size(ec));
      ++store->chunk_count_;
      if (new_index) {
        uint64_t ino = std::strtoull(it->path().parent_path().filename().c_str(), nullptr, 16);
        uint32_t chunk =
            static_cast<uint32_t>(std::strtoul(it->path().stem().c_str(), nullptr, 10));
        SEALFS_RETURN_IF_ERROR(store->index_->AddChunk(ino, chunk));
      }
    }
  }
  if (new_index) SEALFS_RETURN_IF_ERROR(store->index_->MarkComplete());
  return store;
}

std::string ChunkStore::FileDir(uint64_t ino) const {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "/chunks/%02x/%016llx", static_cast<unsigned>(ino & 0xff),
                static_cast<unsigned long long>(ino));
  return root_ + buffer;
}

std::string ChunkStore::ChunkPath(uint64_t ino, uint32_t index) const {
  return FileDir(ino) + "/" + std::to_string(index) + ".dat";
}

WriterFirstLock& ChunkStore::InodeLock(uint64_t ino) {
  return inode_locks_[((ino * 0x9E3779B97F4A7C15ull) >> 32) % kInodeLockStripes];
}

std::shared_mutex& ChunkStore::LockFor(uint64_t ino, uint32_t index) {
  uint64_t key = (ino * 0x9E3779B97F4A7C15ull) ^ (index * 0xC2B2AE3D27D4EB4Full);
  return locks_[(key >> 32) % kLockStripes];
}

// ---- Data path ----

Status ChunkStore::Write(uint64_t ino, uint32_t index, uint32_t offset, std::string_view data,
                         int64_t* allocated_delta) {
  if (allocated_delta) *allocated_delta = 0;
  if (static_cast<uint64_t>(offset) + data.size() > kMaxChunkSize) {
    return Status(EINVAL, "write past the largest chunk size");
  }
  if (data.empty()) return Status::Ok();
  std::shared_lock<WriterFirstLock> inode_lock(InodeLock(ino));
  std::unique_lock<std::shared_mutex> lock(LockFor(ino, index));
  auto opened = OpenFiles(ino, index, true);
  if (!opened.ok()) return opened.status();
  const std::shared_ptr<OpenChunk>& chunk = *opened;
  const int data_fd = chunk->data_fd;
  const int sum_fd = chunk->sum_fd;
  const uint64_t old_size = chunk->size;
  const uint64_t end = offset + data.size();
  const uint64_t first_block = offset / kChecksumBlock;
  const uint64_t last_block = (end - 1) / kChecksumBlock;
  std::vector<uint64_t> new_sums(last_block - first_block + 1);

  // Blocks the write covers only partly are merged with what is on disk,
  // after checking that what is on disk is intact.
  auto merged_sum = [&](uint64_t block, uint64_t* sum) -> Status {
    uint64_t block_start = block * kChecksumBlock;
    char buffer[kChecksumBlock] = {};
    size_t got = 0;
    if (block_start < old_size) {
      SEALFS_RETURN_IF_ERROR(PreadFull(data_fd, buffer, kChecksumBlock, block_start, &got));
      uint64_t stored = 0;
      size_t sum_got = 0;
      SEALFS_RETURN_IF_ERROR(
          PreadFull(sum_fd, reinterpret_cast<char*>(&stored), 8, SumOffset(block), &sum_got));
      if (BlockSum(buffer, got) != stored) {
        return ChecksumMismatch(ChunkPath(ino, index), ino, index, block);
      }
    }
    uint64_t copy_from = std::max<uint64_t>(offset, block_start);
    uint64_t copy_to = std::min<uint64_t>(end, block_start + kChecksumBlock);
    std::memcpy(buffer + (copy_from - block_start), data.data() + (copy_from - offset),
                copy_to - copy_from);
    size_t valid = std::max<uint64_t>(got, copy_to - block_start);
    *sum = BlockSum(buffer, valid);
    return Status::Ok();
  };
  for (uint64_t block = first_block; block <= last_block; ++block) {
    uint64_t block_start = block * kChecksumBlock;
    uint64_t block_end = block_start + kChecksumBlock;
    uint64_t& sum = new_sums[block - first_block];
    bool whole = block_start >= offset && block_end <= end;
    bool covers_to_eof = block_start >= offset && end >= old_size && block_start >= old_size;
    if (whole || covers_to_eof) {
      uint64_t size = std::min(block_end, end) - block_start;
      sum = BlockSum(data.data() + (block_start - offset), size);
    } else {
      SEALFS_RETURN_IF_ERROR(merged_sum(block, &sum));
    }
  }
  SEALFS_RETURN_IF_ERROR(MarkDirty(*chunk));
  Status status = PwriteFull(ChunkFile::kData, data_fd, data.data(), data.size(), offset);
  if (status.ok()) {
    status = PwriteFull(ChunkFile::kSums, sum_fd, reinterpret_cast<const char*>(new_sums.data()),
                        new_sums.size() * 8, SumOffset(first_block));
  }
  if (!status.ok()) {
    Repair(chunk, first_block, last_block + 1, old_size);
    return status;
  }
  if (end > old_size) {
    chunk->size = end;
    used_bytes_ += static_cast<int64_t>(end - old_size);
  }
  // Clients add these up, so the metadata server can count a file's stored
  // blocks without asking every data server.
  // A write inside a chunk that has no holes allocates nothing: no fstat.
  const bool may_allocate =
      end > old_size ||
      chunk->allocated < (old_size + kChecksumBlock - 1) / kChecksumBlock * kChecksumBlock;
  struct stat st;
  if (allocated_delta && may_allocate && ::fstat(data_fd, &st) == 0) {
    uint64_t allocated = static_cast<uint64_t>(st.st_blocks) * 512;
    *allocated_delta = static_cast<int64_t>(allocated) - static_cast<int64_t>(chunk->allocated);
    chunk->allocated = allocated;
  }
  return Status::Ok();
}

namespace {
class StringTarget : public ChunkStore::ReadTarget {
 public:
  explicit StringTarget(std::string* out) : out_(out) { out_->clear(); }
  ~StringTarget() override { out_->resize(kept_); }
  char* Reserve(size_t size) override {
    out_->resize(size);
    return out_->data();
  }
  void Keep(size_t offset, size_t length) override {
    if (offset > 0) out_->erase(0, offset);
    kept_ = length;
  }

 private:
  std::string* out_;
  size_t kept_ = 0;
};
}  // namespace

Status ChunkStore::Read(uint64_t ino, uint32_t index, uint32_t offset, uint32_t length,
                        std::string* out) {
  StringTarget target(out);
  return Read(ino, index, offset, length, &target);
}

Status ChunkStore::Read(uint64_t ino, uint32_t index, uint32_t offset, uint32_t length,
                        ReadTarget* out) {
  if (length == 0) return Status::Ok();
  std::shared_lock<WriterFirstLock> inode_lock(InodeLock(ino));
  std::shared_mutex& stripe = LockFor(ino, index);
  {
    std::shared_lock<std::shared_mutex> lock(stripe);
    if (auto chunk = Cached(ino, index)) return ReadChunk(*chunk, offset, length, out);
  }
  // Opening may recover the chunk's checksums: that needs it to ourselves.
  std::unique_lock<std::shared_mutex> lock(stripe);
  auto chunk = OpenFiles(ino, index, false);
  if (!chunk.ok()) return chunk.status();
  if (*chunk) return ReadChunk(**chunk, offset, length, out);
  auto recorded = index_->HasChunk(ino, index);
  if (!recorded.ok()) return recorded.status();
  if (!*recorded) {
    auto removed = index_->IsRemoved(ino);
    if (!removed.ok()) return removed.status();
    if (*removed) {
      return Status(ENOENT, "file was removed: inode " + std::to_string(ino) +
                                " has no data on this server any more");
    }
    return Status::Ok();  // never written: a hole
  }
  std::string path = ChunkPath(ino, index);
  std::fprintf(stderr, "chunk store: chunk %u of inode %llu is lost: %s is missing\n", index,
               static_cast<unsigned long long>(ino), path.c_str());
  return Status(EIO, "chunk " + std::to_string(index) + " of inode " + std::to_string(ino) +
                         " is lost: this server stored it, but its data file " + path +
                         " is missing");
}

Status ChunkStore::ReadChunk(const OpenChunk& chunk, uint32_t offset, uint32_t length,
                             ReadTarget* out) {
  const uint64_t size = chunk.size;
  if (offset >= size) return Status::Ok();
  uint64_t end = std::min<uint64_t>(size, static_cast<uint64_t>(offset) + length);
  uint64_t first_block = offset / kChecksumBlock;
  uint64_t aligned_start = first_block * kChecksumBlock;
  uint64_t aligned_end =
      std::min<uint64_t>(size, (end + kChecksumBlock - 1) / kChecksumBlock * kChecksumBlock);
  // Read whole blocks so each can be verified; the head is cut off after.
  char* room = out->Reserve(aligned_end - aligned_start);
  size_t got = 0;
  SEALFS_RETURN_IF_ERROR(
      PreadFull(chunk.data_fd, room, aligned_end - aligned_start, aligned_start, &got));
  uint64_t blocks = (got + kChecksumBlock - 1) / kChecksumBlock;
  std::vector<uint64_t> stored(blocks, 0);
  size_t sum_got = 0;
  SEALFS_RETURN_IF_ERROR(PreadFull(chunk.sum_fd, reinterpret_cast<char*>(stored.data()), blocks * 8,
                                   SumOffset(first_block), &sum_got));
  for (uint64_t i = 0; i < blocks; ++i) {
    size_t block_size = std::min<size_t>(kChecksumBlock, got - i * kChecksumBlock);
    if (BlockSum(room + i * kChecksumBlock, block_size) != stored[i]) {
      return ChecksumMismatch(ChunkPath(chunk.ino, chunk.index), chunk.ino, chunk.index,
                              first_block + i);
    }
  }
  uint64_t head = offset - aligned_start;
  uint64_t wanted = std::min<uint64_t>(end - offset, got > head ? got - head : 0);
  out->Keep(wanted > 0 ? head : 0, wanted);
  return Status::Ok();
}

// ---- Whole files ----

Status ChunkStore::TruncateChunk(uint64_t ino, uint32_t index, uint64_t length, bool* shortened) {
  std::unique_lock<std::shared_mutex> lock(LockFor(ino, index));
  auto opened = OpenFiles(ino, index, false);
  if (!opened.ok()) return opened.status();
  if (!*opened) return Status::Ok();
  const std::shared_ptr<OpenChunk>& chunk = *opened;
  const uint64_t old_size = chunk->size;
  if (length >= old_size) return Status::Ok();
  if (shortened) *shortened = true;
  const uint64_t tail = length % kChecksumBlock;
  const uint64_t last_block = length / kChecksumBlock;
  uint64_t tail_sum = 0;
  if (tail != 0) {
    // The new last block shrinks: verify it, then checksum what remains.
    char buffer[kChecksumBlock] = {};
    size_t got = 0;
    SEALFS_RETURN_IF_ERROR(
        PreadFull(chunk->data_fd, buffer, kChecksumBlock, last_block * kChecksumBlock, &got));
    uint64_t stored = 0;
    size_t sum_got = 0;
    SEALFS_RETURN_IF_ERROR(PreadFull(chunk->sum_fd, reinterpret_cast<char*>(&stored), 8,
                                     SumOffset(last_block), &sum_got));
    if (BlockSum(buffer, got) != stored) {
      return ChecksumMismatch(ChunkPath(ino, index), ino, index, last_block);
    }
    tail_sum = BlockSum(buffer, tail);
  }
  SEALFS_RETURN_IF_ERROR(MarkDirty(*chunk));
  Status status;
  if (tail != 0) {
    status = PwriteFull(ChunkFile::kSums, chunk->sum_fd, reinterpret_cast<const char*>(&tail_sum),
                        8, SumOffset(last_block));
  }
  if (status.ok()) status = Truncate(ChunkFile::kData, chunk->data_fd, length);
  if (status.ok()) status = Truncate(ChunkFile::kSums, chunk->sum_fd, SumFileSize(length));
  if (!status.ok()) {
    Repair(chunk, last_block, last_block + 1, old_size);
    return Status(status.code(), "truncating " + ChunkPath(ino, index) + ": " + status.message());
  }
  chunk->size = length;
  used_bytes_ -= static_cast<int64_t>(old_size - length);
  struct stat st;
  if (::fstat(chunk->data_fd, &st) == 0)
    chunk->allocated = static_cast<uint64_t>(st.st_blocks) * 512;
  return Status::Ok();
}

Result<std::vector<uint32_t>> ChunkStore::IndexesLocked(uint64_t ino) {
  auto indexes = ListChunkFiles(FileDir(ino));
  if (!indexes.ok()) return indexes.status();
  auto recorded = index_->Chunks(ino);
  if (!recorded.ok()) return recorded.status();
  indexes->insert(indexes->end(), recorded->begin(), recorded->end());
  std::sort(indexes->begin(), indexes->end());
  indexes->erase(std::unique(indexes->begin(), indexes->end()), indexes->end());
  return indexes;
}

Status ChunkStore::UnlinkDataFile(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) {
    used_bytes_ -= st.st_size;
    --chunk_count_;
  }
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return IoError("remove " + path);
  return Status::Ok();
}

Status ChunkStore::DropChunk(uint64_t ino, uint32_t index) {
  std::unique_lock<std::shared_mutex> lock(LockFor(ino, index));
  Uncache(ino, index);
  std::string path = ChunkPath(ino, index);
  // The record goes first: an interrupted drop leaves an unrecorded chunk
  // (still a valid chunk, cut again by the next truncate), never a recorded
  // one without data, which would read as lost. Data before checksums: at
  // most a sidecar stays, which the next creation of this chunk replaces.
  SEALFS_RETURN_IF_ERROR(index_->RemoveChunk(ino, index));
  SEALFS_RETURN_IF_ERROR(UnlinkDataFile(path));
  if (::unlink(SumPath(path).c_str()) != 0 && errno != ENOENT) {
    return IoError("remove checksums of " + path);
  }
  return Status::Ok();
}

Status ChunkStore::TruncateFile(uint64_t ino, uint64_t size, uint32_t chunk_size,
                                uint64_t* allocated_bytes) {
  if (chunk_size == 0 || chunk_size > kMaxChunkSize) return Status(EINVAL, "bad chunk size");
  std::shared_lock<WriterFirstLock> inode_lock(InodeLock(ino));
  // Chunks with a data file, and recorded chunks whose file is lost.
  auto indexes = IndexesLocked(ino);
  if (!indexes.ok()) return indexes.status();
  bool dropped = false;
  for (uint32_t index : *indexes) {
    uint64_t start = static_cast<uint64_t>(index) * chunk_size;
    if (start >= size) {
      SEALFS_RETURN_IF_ERROR(DropChunk(ino, index));
      dropped = true;
    } else {
      SEALFS_RETURN_IF_ERROR(TruncateChunk(ino, index, size - start));
    }
  }
  if (dropped) SEALFS_RETURN_IF_ERROR(index_->Sync());
  if (allocated_bytes != nullptr) {
    auto usage = UsageLocked(ino, chunk_size, UINT32_MAX, nullptr);
    if (!usage.ok()) return usage.status();
    *allocated_bytes = usage->allocated_bytes;
  }
  return Status::Ok();
}

Status ChunkStore::RemoveFiles(const std::vector<uint64_t>& inos) {
  for (uint64_t ino : inos) SEALFS_RETURN_IF_ERROR(RemoveOneFile(ino));
  // The removal records must outlive a power cut, or a late write could
  // bring the files' chunks back: one sync for all of them.
  return index_->Sync();
}

Status ChunkStore::RemoveOneFile(uint64_t ino) {
  // Exclusive: no chunk I/O of this file runs meanwhile, and none creates
  // chunks after it (the removal record refuses them).
  std::unique_lock<WriterFirstLock> inode_lock(InodeLock(ino));
  ForgetFiles(ino);
  SEALFS_RETURN_IF_ERROR(index_->MarkRemoved(ino));
  std::string dir = FileDir(ino);
  auto indexes = ListChunkFiles(dir);
  if (!indexes.ok()) return indexes.status();
  for (uint32_t index : *indexes) SEALFS_RETURN_IF_ERROR(UnlinkDataFile(ChunkPath(ino, index)));
  std::error_code ec;
  fs::remove_all(dir, ec);
  if (ec) return Status(ec.value(), "removing file data: " + ec.message());
  std::lock_guard<std::mutex> lock(dirs_mutex_);
  unsynced_dirs_.erase(ino);
  return Status::Ok();
}

Status ChunkStore::FsyncFile(uint64_t ino) {
  std::shared_lock<WriterFirstLock> inode_lock(InodeLock(ino));
  auto indexes = ListChunkFiles(FileDir(ino));
  if (!indexes.ok()) return indexes.status();
  if (indexes->empty()) return Status::Ok();
  for (uint32_t index : *indexes) {
    std::unique_lock<std::shared_mutex> lock(LockFor(ino, index));
    auto chunk = OpenFiles(ino, index, false);
    if (!chunk.ok()) return chunk.status();
    if (*chunk) SEALFS_RETURN_IF_ERROR(Clean(**chunk));
  }
  SEALFS_RETURN_IF_ERROR(SyncDirs(ino));
  return index_->Sync();
}

Result<FileUsageInfo> ChunkStore::FileUsage(uint64_t ino, uint32_t chunk_size, uint32_t index_limit,
                                            const std::function<bool(uint32_t)>& owned) {
  if (chunk_size == 0 || chunk_size > kMaxChunkSize) return Status(EINVAL, "bad chunk size");
  std::shared_lock<WriterFirstLock> inode_lock(InodeLock(ino));
  return UsageLocked(ino, chunk_size, index_limit, owned);
}

Result<FileUsageInfo> ChunkStore::UsageLocked(uint64_t ino, uint32_t chunk_size,
                                              uint32_t index_limit,
                                              const std::function<bool(uint32_t)>& owned) {
  auto indexes = ListChunkFiles(FileDir(ino));
  if (!indexes.ok()) return indexes.status();
  FileUsageInfo usage;
  for (uint32_t index : *indexes) {
    if (index >= index_limit) break;  // ascending
    if (owned && !owned(index)) continue;
    std::string path = ChunkPath(ino, index);
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) {
      if (errno == ENOENT) continue;  // removed meanwhile
      return IoError("stat " + path);
    }
    usage.allocated_bytes += static_cast<uint64_t>(st.st_blocks) * 512;
    if (st.st_size > 0) {
      usage.data_end = std::max<uint64_t>(usage.data_end,
                                          static_cast<uint64_t>(index) * chunk_size + st.st_size);
    }
  }
  return usage;
}

ChunkStoreUsage ChunkStore::Usage() {
  ChunkStoreUsage usage;
  struct statvfs vfs;
  if (::statvfs(root_.c_str(), &vfs) == 0) {
    usage.capacity_bytes = static_cast<uint64_t>(vfs.f_blocks) * vfs.f_frsize;
    usage.free_bytes = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
  }
  usage.used_bytes = static_cast<uint64_t>(std::max<int64_t>(0, used_bytes_.load()));
  usage.chunk_count = static_cast<uint64_t>(std::max<int64_t>(0, chunk_count_.load()));
  return usage;
}

}  // namespace sealfs::server
