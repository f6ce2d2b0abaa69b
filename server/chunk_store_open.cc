// ChunkStore, part two: how a chunk's files are opened and cached, how a
// chunk interrupted mid-change is recovered, and the clean/dirty protocol
// (chunk_file.h) that keeps data and checksums consistent across crashes and
// I/O errors. The data path and whole-file operations are in chunk_store.cc.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <vector>

#include "chunk_file.h"
#include "chunk_index.h"
#include "sealfs/server/chunk_store.h"

namespace sealfs::server {

namespace fs = std::filesystem;
using namespace chunk_file;

namespace {
// Closes a file descriptor when it goes out of scope.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }

 private:
  int fd_;
};
}  // namespace

ChunkStore::OpenChunk::~OpenChunk() {
  if (data_fd >= 0) ::close(data_fd);
  if (sum_fd >= 0) ::close(sum_fd);
}

// ---- Directories ----

void ChunkStore::NoteDirsChanged(uint64_t ino, uint8_t dirs) {
  std::lock_guard<std::mutex> lock(dirs_mutex_);
  unsynced_dirs_[ino] |= dirs;
}

Status ChunkStore::CreateDirs(uint64_t ino) {
  // Under dirs_mutex_, so that whoever finds a directory already there also
  // finds it noted as unsynced until it is.
  std::lock_guard<std::mutex> lock(dirs_mutex_);
  std::string dir = FileDir(ino);
  if (::mkdir(dir.c_str(), 0755) == 0) {
    unsynced_dirs_[ino] |= kShardDirChanged;
    return Status::Ok();
  }
  if (errno == EEXIST) return Status::Ok();
  if (errno != ENOENT) return IoError("create " + dir);
  std::string shard = fs::path(dir).parent_path().string();
  if (::mkdir(shard.c_str(), 0755) == 0) {
    unsynced_dirs_[ino] |= kChunksDirChanged;
  } else if (errno != EEXIST) {
    return IoError("create " + shard);
  }
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return IoError("create " + dir);
  unsynced_dirs_[ino] |= kShardDirChanged;
  return Status::Ok();
}

Status ChunkStore::SyncDirs(uint64_t ino) {
  uint8_t dirs = 0;
  {
    std::lock_guard<std::mutex> lock(dirs_mutex_);
    auto found = unsynced_dirs_.find(ino);
    if (found == unsynced_dirs_.end()) return Status::Ok();
    dirs = found->second;
  }
  auto sync = [](const std::string& path) -> Status {
    Fd dir(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dir.valid()) return IoError("open " + path);
    if (::fsync(dir.get()) != 0) return IoError("fsync " + path);
    return Status::Ok();
  };
  std::string file_dir = FileDir(ino);
  Status status;
  if (dirs & (kFileDirChanged | kShardDirChanged)) status = sync(file_dir);
  if (status.ok() && (dirs & kShardDirChanged)) {
    status = sync(fs::path(file_dir).parent_path().string());
  }
  if (status.ok() && (dirs & kChunksDirChanged)) status = sync(root_ + "/chunks");
  if (status.ok()) {
    // Forgotten only once synced: a concurrent fsync of the same file must
    // not find nothing to do while this sync is still running.
    std::lock_guard<std::mutex> lock(dirs_mutex_);
    auto found = unsynced_dirs_.find(ino);
    if (found != unsynced_dirs_.end() && (found->second &= ~dirs) == 0) unsynced_dirs_.erase(found);
  }
  return status;
}

// ---- Opening chunks and the descriptor cache ----

std::shared_ptr<ChunkStore::OpenChunk> ChunkStore::Cached(uint64_t ino, uint32_t index) {
  std::lock_guard<std::mutex> lock(open_mutex_);
  auto found = open_chunks_.find({ino, index});
  if (found == open_chunks_.end()) return nullptr;
  open_lru_.splice(open_lru_.begin(), open_lru_, found->second);
  return found->second->second;
}

void ChunkStore::Uncache(uint64_t ino, uint32_t index) {
  std::lock_guard<std::mutex> lock(open_mutex_);
  auto found = open_chunks_.find({ino, index});
  if (found == open_chunks_.end()) return;
  open_lru_.erase(found->second);
  open_chunks_.erase(found);
}

void ChunkStore::ForgetFiles(uint64_t ino) {
  std::lock_guard<std::mutex> lock(open_mutex_);
  for (auto it = open_lru_.begin(); it != open_lru_.end();) {
    if (it->first.first == ino) {
      open_chunks_.erase(it->first);
      it = open_lru_.erase(it);
    } else {
      ++it;
    }
  }
}

void ChunkStore::EvictSome(ChunkKey keep, size_t count) {
  // A victim's stripe lock is only tried, never waited for: this thread
  // already holds the lock of `keep`, and waiting here could deadlock.
  std::vector<std::pair<std::shared_mutex*, std::shared_ptr<OpenChunk>>> victims;
  std::shared_mutex* kept = &LockFor(keep.first, keep.second);
  {
    std::lock_guard<std::mutex> lock(open_mutex_);
    for (auto it = open_lru_.rbegin(); it != open_lru_.rend() && victims.size() < count;) {
      std::shared_mutex* stripe = &LockFor(it->first.first, it->first.second);
      bool taken = stripe == kept || std::any_of(victims.begin(), victims.end(),
                                                 [&](auto& v) { return v.first == stripe; });
      if (taken || !stripe->try_lock()) {
        ++it;
        continue;
      }
      victims.emplace_back(stripe, it->second);
      open_chunks_.erase(it->first);
      it = Lru::reverse_iterator(open_lru_.erase(std::next(it).base()));
    }
  }
  // One syncfs makes the data, checksums and directories of every dirty
  // victim durable at once, instead of two or three fsyncs per chunk; each is
  // then marked clean. Should it fail, each chunk is cleaned on its own.
  bool any_dirty = std::any_of(victims.begin(), victims.end(),
                               [](auto& victim) { return victim.second->dirty; });
  bool synced = any_dirty && ::syncfs(victims.front().second->data_fd) == 0;
  for (auto& [stripe, chunk] : victims) {
    Status cleaned = synced && chunk->dirty ? MarkCleanAfterSync(*chunk) : Clean(*chunk);
    if (!cleaned.ok()) {
      std::fprintf(stderr, "chunk store: %s stays marked dirty, to be recovered when opened: %s\n",
                   ChunkPath(chunk->ino, chunk->index).c_str(), cleaned.ToString().c_str());
    }
    chunk.reset();  // closes its files
    stripe->unlock();
  }
}

Result<std::shared_ptr<ChunkStore::OpenChunk>> ChunkStore::OpenFiles(uint64_t ino, uint32_t index,
                                                                     bool create) {
  if (auto cached = Cached(ino, index)) return cached;
  auto opened = OpenFromDisk(ino, index, create);
  if (!opened.ok() && (opened.status().code() == EMFILE || opened.status().code() == ENFILE)) {
    // Out of descriptors: close some cached chunks and try once more.
    EvictSome({ino, index}, std::max<size_t>(1, open_chunk_limit_ / 4));
    opened = OpenFromDisk(ino, index, create);
  }
  if (!opened.ok() || !*opened) return opened;
  size_t excess = 0;
  {
    std::lock_guard<std::mutex> lock(open_mutex_);
    auto found = open_chunks_.find({ino, index});
    if (found != open_chunks_.end()) return found->second->second;
    open_lru_.emplace_front(ChunkKey{ino, index}, *opened);
    open_chunks_[{ino, index}] = open_lru_.begin();
    if (open_lru_.size() > open_chunk_limit_) excess = open_lru_.size() - open_chunk_limit_;
  }
  // Evict in batches, so that one sync serves many chunks.
  if (excess > 0) EvictSome({ino, index}, std::max(excess, open_chunk_limit_ / 8));
  return opened;
}

Result<std::shared_ptr<ChunkStore::OpenChunk>> ChunkStore::OpenFromDisk(uint64_t ino,
                                                                        uint32_t index,
                                                                        bool create) {
  const std::string path = ChunkPath(ino, index);
  const std::string sum_path = SumPath(path);
  auto chunk = std::make_shared<OpenChunk>();
  chunk->ino = ino;
  chunk->index = index;
  chunk->data_fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (chunk->data_fd < 0) {
    if (errno != ENOENT) return IoError("open " + path);
    if (!create) return std::shared_ptr<OpenChunk>();
    // A new chunk: the only place that asks whether its file was removed,
    // or whether the chunk existed and its data is lost — then a write must
    // not turn the rest of it into zeros.
    auto removed = index_->IsRemoved(ino);
    if (!removed.ok()) return removed.status();
    if (*removed) {
      return Status(ENOENT, "file was removed: inode " + std::to_string(ino) +
                                " has no data on this server any more");
    }
    auto known = index_->HasChunk(ino, index);
    if (!known.ok()) return known.status();
    if (*known) {
      std::fprintf(stderr, "chunk store: chunk %u of inode %llu is lost: %s is missing\n", index,
                   static_cast<unsigned long long>(ino), path.c_str());
      return Status(EIO, "chunk " + std::to_string(index) + " of inode " + std::to_string(ino) +
                             " is lost: its data file " + path + " is missing");
    }
    SEALFS_RETURN_IF_ERROR(CreateDirs(ino));
    // The sidecar first, fresh and dirty: a crash at any point can never pair
    // a stale sidecar (left by an interrupted removal) with the new data.
    chunk->sum_fd = ::open(sum_path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (chunk->sum_fd < 0) return IoError("create checksums of " + path);
    SEALFS_RETURN_IF_ERROR(WriteSumState(chunk->sum_fd, SumState::kDirty));
    chunk->dirty = true;
    chunk->data_fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (chunk->data_fd < 0) return IoError("create " + path);
    NoteDirsChanged(ino, kFileDirChanged);
    Status recorded = index_->AddChunk(ino, index);
    if (!recorded.ok()) {
      ::unlink(path.c_str());
      return recorded;
    }
    ++chunk_count_;
    return chunk;
  }
  chunk->sum_fd = ::open(sum_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (chunk->sum_fd < 0) return IoError("open checksums of " + path);
  struct stat data_stat, sum_stat;
  if (::fstat(chunk->data_fd, &data_stat) != 0 || ::fstat(chunk->sum_fd, &sum_stat) != 0) {
    return IoError("stat " + path);
  }
  chunk->size = static_cast<uint64_t>(data_stat.st_size);
  chunk->allocated = static_cast<uint64_t>(data_stat.st_blocks) * 512;
  SumState state = ReadSumState(chunk->sum_fd);
  if (state == SumState::kClean &&
      static_cast<uint64_t>(sum_stat.st_size) <= SumFileSize(chunk->size)) {
    return chunk;
  }
  SEALFS_RETURN_IF_ERROR(RecoverSums(*chunk, state == SumState::kDirty ? "a change was cut short"
                                             : state == SumState::kUnknown
                                                 ? "its checksum file is missing or damaged"
                                                 : "its checksum file runs past the data"));
  return chunk;
}

Status ChunkStore::RecoverSums(OpenChunk& chunk, const char* why) {
  std::string path = ChunkPath(chunk.ino, chunk.index);
  std::fprintf(stderr, "chunk store: recomputing the checksums of %s (%llu bytes): %s\n",
               path.c_str(), static_cast<unsigned long long>(chunk.size), why);
  Status status = WriteSumState(chunk.sum_fd, SumState::kDirty);
  if (status.ok()) {
    status = RecomputeSums(chunk.data_fd, chunk.sum_fd, chunk.size, 0, BlockCount(chunk.size));
  }
  if (status.ok()) status = Truncate(ChunkFile::kSums, chunk.sum_fd, SumFileSize(chunk.size));
  if (!status.ok()) {
    return Status(status.code(), "recovering the checksums of " + path + ": " + status.message());
  }
  chunk.dirty = true;
  // The change cut short may have landed in part: the chunk's version is
  // unknown now (0), so its chain copies it whole at its next change or resync.
  auto record = index_->Record(chunk.ino, chunk.index);
  if (record.ok() && *record && (*record)->version != 0) {
    SEALFS_RETURN_IF_ERROR(
        index_->PutRecord(chunk.ino, chunk.index, ChunkRecord{0, 0, (*record)->chain}));
  }
  // Whether its directories were ever synced is unknown: sync them at the next fsync.
  NoteDirsChanged(chunk.ino, kFileDirChanged | kShardDirChanged | kChunksDirChanged);
  return Status::Ok();
}

// ---- Clean and dirty ----

Status ChunkStore::MarkDirty(OpenChunk& chunk) {
  if (chunk.dirty) return Status::Ok();
  SEALFS_RETURN_IF_ERROR(WriteSumState(chunk.sum_fd, SumState::kDirty));
  if (::fdatasync(chunk.sum_fd) != 0) {
    return IoError("sync checksums of " + ChunkPath(chunk.ino, chunk.index));
  }
  chunk.dirty = true;
  return Status::Ok();
}

Status ChunkStore::MarkCleanAfterSync(OpenChunk& chunk) {
  SEALFS_RETURN_IF_ERROR(WriteSumState(chunk.sum_fd, SumState::kClean));
  chunk.dirty = false;
  return Status::Ok();
}

Status ChunkStore::Clean(OpenChunk& chunk) {
  if (!chunk.dirty) return Status::Ok();
  // Linux reports a failed writeback once: a later fdatasync succeeds though
  // the pages never reached the disk. So a chunk whose sync failed keeps
  // failing every sync until it is reopened and its checksums recovered.
  if (chunk.sync_failed) {
    return Status(EIO, "an earlier sync of " + ChunkPath(chunk.ino, chunk.index) + " failed");
  }
  if (::fdatasync(chunk.data_fd) != 0 || ::fdatasync(chunk.sum_fd) != 0) {
    chunk.sync_failed = true;
    return IoError("fsync " + ChunkPath(chunk.ino, chunk.index));
  }
  SEALFS_RETURN_IF_ERROR(SyncDirs(chunk.ino));
  SEALFS_RETURN_IF_ERROR(WriteSumState(chunk.sum_fd, SumState::kClean));
  chunk.dirty = false;
  return Status::Ok();
}

void ChunkStore::Repair(const std::shared_ptr<OpenChunk>& chunk, uint64_t first, uint64_t end,
                        uint64_t old_size) {
  struct stat st;
  Status status = ::fstat(chunk->data_fd, &st) == 0 ? Status::Ok() : IoError("stat");
  uint64_t size = chunk->size;
  if (status.ok()) {
    size = static_cast<uint64_t>(st.st_size);
    // What a failed write appended goes again, freeing its space.
    if (size > old_size && Truncate(ChunkFile::kData, chunk->data_fd, old_size).ok()) {
      size = old_size;
    }
    status = Truncate(ChunkFile::kSums, chunk->sum_fd, SumFileSize(size));
  }
  if (status.ok()) status = RecomputeSums(chunk->data_fd, chunk->sum_fd, size, first, end);
  used_bytes_ += static_cast<int64_t>(size) - static_cast<int64_t>(chunk->size);
  chunk->size = size;
  if (!status.ok()) {
    std::fprintf(stderr,
                 "chunk store: cannot repair %s after a failed change (%s); it will be "
                 "recovered when next opened\n",
                 ChunkPath(chunk->ino, chunk->index).c_str(), status.ToString().c_str());
    Uncache(chunk->ino, chunk->index);  // its sidecar still says dirty
  }
}

}  // namespace sealfs::server
