#include "sealfs/server/chunk_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <xxhash.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <vector>

#include "sealfs/rpc/process.h"

namespace sealfs::server {

namespace fs = std::filesystem;

namespace {

constexpr size_t kLockStripes = 1024;

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

uint64_t ZeroBlockHash() {
  static const uint64_t hash = [] {
    std::string zeros(kChecksumBlock, '\0');
    return XXH3_64bits(zeros.data(), zeros.size());
  }();
  return hash;
}

// Checksum of one block as stored: zero for an all-zero block.
uint64_t BlockSum(const char* data, size_t size) {
  if (size == kChecksumBlock) return XXH3_64bits(data, size) ^ ZeroBlockHash();
  char padded[kChecksumBlock] = {};
  std::memcpy(padded, data, size);
  return XXH3_64bits(padded, kChecksumBlock) ^ ZeroBlockHash();
}

Status IoError(const std::string& what) {
  return Status(errno ? errno : EIO, what + ": " + std::strerror(errno));
}

Status PreadFull(int fd, char* buffer, size_t size, off_t offset, size_t* got) {
  size_t done = 0;
  while (done < size) {
    ssize_t n = ::pread(fd, buffer + done, size - done, offset + static_cast<off_t>(done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return IoError("read");
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  *got = done;
  return Status::Ok();
}

Status PwriteFull(int fd, const char* buffer, size_t size, off_t offset) {
  size_t done = 0;
  while (done < size) {
    ssize_t n = ::pwrite(fd, buffer + done, size - done, offset + static_cast<off_t>(done));
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == ENOSPC || errno == EDQUOT) return Status(ENOSPC, "data disk is full");
      return IoError("write");
    }
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

std::string SumPath(const std::string& data_path) {
  return data_path.substr(0, data_path.size() - 4) + ".sum";
}

}  // namespace

ChunkStore::ChunkStore(std::string root)
    : root_(std::move(root)), locks_(new std::shared_mutex[kLockStripes]) {}

ChunkStore::~ChunkStore() = default;

Result<std::unique_ptr<ChunkStore>> ChunkStore::Open(const std::string& root) {
  std::error_code ec;
  fs::create_directories(fs::path(root) / "chunks", ec);
  if (ec) return Status(ec.value(), "cannot create " + root + ": " + ec.message());
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
  // Count what is stored, for usage reports.
  for (auto it = fs::recursive_directory_iterator(fs::path(root) / "chunks", ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_regular_file(ec) && it->path().extension() == ".dat") {
      store->used_bytes_ += static_cast<int64_t>(it->file_size(ec));
      ++store->chunk_count_;
    }
  }
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

std::shared_mutex& ChunkStore::LockFor(uint64_t ino, uint32_t index) {
  uint64_t key = (ino * 0x9E3779B97F4A7C15ull) ^ (index * 0xC2B2AE3D27D4EB4Full);
  return locks_[(key >> 32) % kLockStripes];
}

ChunkStore::OpenChunk::~OpenChunk() {
  if (data_fd >= 0) ::close(data_fd);
  if (sum_fd >= 0) ::close(sum_fd);
}

Result<std::shared_ptr<ChunkStore::OpenChunk>> ChunkStore::OpenFiles(uint64_t ino, uint32_t index,
                                                                     bool create) {
  auto key = std::make_pair(ino, index);
  {
    std::lock_guard<std::mutex> lock(open_mutex_);
    auto found = open_chunks_.find(key);
    if (found != open_chunks_.end()) {
      open_lru_.splice(open_lru_.begin(), open_lru_, found->second);
      return found->second->second;
    }
  }
  std::string path = ChunkPath(ino, index);
  int flags = create ? (O_RDWR | O_CREAT | O_CLOEXEC) : (O_RDWR | O_CLOEXEC);
  int fd = ::open(path.c_str(), flags, 0644);
  if (fd < 0 && errno == ENOENT && create) {
    std::error_code ec;
    fs::create_directories(FileDir(ino), ec);
    fd = ::open(path.c_str(), flags, 0644);
  }
  if (fd < 0) {
    if (errno == ENOENT && !create) return std::shared_ptr<OpenChunk>();
    return IoError("open " + path);
  }
  auto chunk = std::make_shared<OpenChunk>();
  chunk->data_fd = fd;
  chunk->sum_fd = ::open(SumPath(path).c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (chunk->sum_fd < 0) return IoError("open checksums of " + path);
  struct stat st;
  if (::fstat(fd, &st) != 0) return IoError("stat " + path);
  chunk->size = static_cast<uint64_t>(st.st_size);
  std::lock_guard<std::mutex> lock(open_mutex_);
  auto found = open_chunks_.find(key);
  if (found != open_chunks_.end()) return found->second->second;  // another thread won
  open_lru_.emplace_front(key, chunk);
  open_chunks_[key] = open_lru_.begin();
  if (open_lru_.size() > kOpenChunkLimit) {
    open_chunks_.erase(open_lru_.back().first);
    open_lru_.pop_back();
  }
  return chunk;
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

Status ChunkStore::Write(uint64_t ino, uint32_t index, uint32_t offset, std::string_view data) {
  if (static_cast<uint64_t>(offset) + data.size() > kMaxChunkSize) {
    return Status(EINVAL, "write past the largest chunk size");
  }
  if (data.empty()) return Status::Ok();
  std::unique_lock<std::shared_mutex> lock(LockFor(ino, index));
  std::string path = ChunkPath(ino, index);
  auto chunk = OpenFiles(ino, index, true);
  if (!chunk.ok()) return chunk.status();
  const int data_fd = (*chunk)->data_fd;
  const int sum_fd = (*chunk)->sum_fd;
  const uint64_t old_size = (*chunk)->size;
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
          PreadFull(sum_fd, reinterpret_cast<char*>(&stored), 8, block * 8, &sum_got));
      if (BlockSum(buffer, got) != stored) {
        std::fprintf(stderr, "chunk store: checksum mismatch in %s block %llu\n", path.c_str(),
                     static_cast<unsigned long long>(block));
        return Status(EIO, "checksum mismatch in chunk " + std::to_string(index) + " of inode " +
                               std::to_string(ino));
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
  SEALFS_RETURN_IF_ERROR(PwriteFull(data_fd, data.data(), data.size(), offset));
  SEALFS_RETURN_IF_ERROR(PwriteFull(sum_fd, reinterpret_cast<const char*>(new_sums.data()),
                                    new_sums.size() * 8, first_block * 8));
  if (end > old_size) {
    (*chunk)->size = end;
    used_bytes_ += static_cast<int64_t>(end - old_size);
    if (old_size == 0) ++chunk_count_;
  }
  return Status::Ok();
}

Status ChunkStore::Read(uint64_t ino, uint32_t index, uint32_t offset, uint32_t length,
                        std::string* out) {
  out->clear();
  if (length == 0) return Status::Ok();
  std::shared_lock<std::shared_mutex> lock(LockFor(ino, index));
  std::string path = ChunkPath(ino, index);
  auto chunk = OpenFiles(ino, index, false);
  if (!chunk.ok()) return chunk.status();
  if (!*chunk) return Status::Ok();  // never written: a hole
  const int data_fd = (*chunk)->data_fd;
  const uint64_t size = (*chunk)->size;
  if (offset >= size) return Status::Ok();
  uint64_t end = std::min<uint64_t>(size, static_cast<uint64_t>(offset) + length);
  uint64_t first_block = offset / kChecksumBlock;
  uint64_t aligned_start = first_block * kChecksumBlock;
  uint64_t aligned_end =
      std::min<uint64_t>(size, (end + kChecksumBlock - 1) / kChecksumBlock * kChecksumBlock);
  // Read whole blocks so each can be verified; the head is cut off after.
  out->resize(aligned_end - aligned_start);
  size_t got = 0;
  SEALFS_RETURN_IF_ERROR(PreadFull(data_fd, out->data(), out->size(), aligned_start, &got));
  out->resize(got);
  uint64_t blocks = (got + kChecksumBlock - 1) / kChecksumBlock;
  std::vector<uint64_t> stored(blocks, 0);
  size_t sum_got = 0;
  SEALFS_RETURN_IF_ERROR(PreadFull((*chunk)->sum_fd, reinterpret_cast<char*>(stored.data()),
                                   blocks * 8, first_block * 8, &sum_got));
  for (uint64_t i = 0; i < blocks; ++i) {
    size_t block_size = std::min<size_t>(kChecksumBlock, got - i * kChecksumBlock);
    if (BlockSum(out->data() + i * kChecksumBlock, block_size) != stored[i]) {
      std::fprintf(stderr, "chunk store: checksum mismatch in %s block %llu\n", path.c_str(),
                   static_cast<unsigned long long>(first_block + i));
      out->clear();
      return Status(EIO, "checksum mismatch in chunk " + std::to_string(index) + " of inode " +
                             std::to_string(ino));
    }
  }
  uint64_t head = offset - aligned_start;
  uint64_t wanted = std::min<uint64_t>(end - offset, got > head ? got - head : 0);
  if (head > 0) out->erase(0, head);
  out->resize(wanted);
  return Status::Ok();
}

Status ChunkStore::TruncateChunk(uint64_t ino, uint32_t index, uint64_t length) {
  std::unique_lock<std::shared_mutex> lock(LockFor(ino, index));
  std::string path = ChunkPath(ino, index);
  auto chunk = OpenFiles(ino, index, false);
  if (!chunk.ok()) return chunk.status();
  if (!*chunk) return Status::Ok();
  const int data_fd = (*chunk)->data_fd;
  const int sum_fd = (*chunk)->sum_fd;
  uint64_t old_size = (*chunk)->size;
  if (length >= old_size) return Status::Ok();
  uint64_t tail = length % kChecksumBlock;
  uint64_t last_block = length / kChecksumBlock;
  if (tail != 0) {
    // The new last block shrinks: verify it, then checksum what remains.
    char buffer[kChecksumBlock] = {};
    size_t got = 0;
    SEALFS_RETURN_IF_ERROR(
        PreadFull(data_fd, buffer, kChecksumBlock, last_block * kChecksumBlock, &got));
    uint64_t stored = 0;
    size_t sum_got = 0;
    SEALFS_RETURN_IF_ERROR(
        PreadFull(sum_fd, reinterpret_cast<char*>(&stored), 8, last_block * 8, &sum_got));
    if (BlockSum(buffer, got) != stored) {
      return Status(EIO, "checksum mismatch in chunk " + std::to_string(index) + " of inode " +
                             std::to_string(ino));
    }
    uint64_t sum = BlockSum(buffer, tail);
    SEALFS_RETURN_IF_ERROR(
        PwriteFull(sum_fd, reinterpret_cast<const char*>(&sum), 8, last_block * 8));
  }
  if (::ftruncate(data_fd, static_cast<off_t>(length)) != 0) return IoError("truncate " + path);
  if (::ftruncate(sum_fd, static_cast<off_t>((length + kChecksumBlock - 1) / kChecksumBlock * 8)) !=
      0) {
    return IoError("truncate checksums of " + path);
  }
  (*chunk)->size = length;
  used_bytes_ -= static_cast<int64_t>(old_size - length);
  return Status::Ok();
}

Status ChunkStore::TruncateFile(uint64_t ino, uint64_t size, uint32_t chunk_size) {
  if (chunk_size == 0 || chunk_size > kMaxChunkSize) return Status(EINVAL, "bad chunk size");
  std::error_code ec;
  fs::directory_iterator it(FileDir(ino), ec);
  if (ec)
    return ec == std::errc::no_such_file_or_directory ? Status::Ok()
                                                      : Status(ec.value(), ec.message());
  std::vector<uint32_t> indexes;
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    if (it->path().extension() != ".dat") continue;
    try {
      indexes.push_back(static_cast<uint32_t>(std::stoul(it->path().stem().string())));
    } catch (...) {
    }
  }
  for (uint32_t index : indexes) {
    uint64_t start = static_cast<uint64_t>(index) * chunk_size;
    if (start >= size) {
      std::unique_lock<std::shared_mutex> lock(LockFor(ino, index));
      {
        // Drop the cached files of this chunk before it goes.
        std::lock_guard<std::mutex> open_lock(open_mutex_);
        auto found = open_chunks_.find({ino, index});
        if (found != open_chunks_.end()) {
          open_lru_.erase(found->second);
          open_chunks_.erase(found);
        }
      }
      std::string path = ChunkPath(ino, index);
      struct stat st;
      if (::stat(path.c_str(), &st) == 0) {
        used_bytes_ -= st.st_size;
        --chunk_count_;
      }
      ::unlink(path.c_str());
      ::unlink(SumPath(path).c_str());
    } else {
      SEALFS_RETURN_IF_ERROR(TruncateChunk(ino, index, size - start));
    }
  }
  return Status::Ok();
}

Status ChunkStore::RemoveFile(uint64_t ino) {
  ForgetFiles(ino);
  std::error_code ec;
  fs::directory_iterator it(FileDir(ino), ec);
  if (ec) return Status::Ok();
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    if (it->path().extension() == ".dat") {
      used_bytes_ -= static_cast<int64_t>(it->file_size(ec));
      --chunk_count_;
    }
  }
  fs::remove_all(FileDir(ino), ec);
  if (ec) return Status(ec.value(), "removing file data: " + ec.message());
  return Status::Ok();
}

Status ChunkStore::FsyncFile(uint64_t ino) {
  std::error_code ec;
  std::string dir = FileDir(ino);
  fs::directory_iterator it(dir, ec);
  if (ec) return Status::Ok();
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    Fd file(::open(it->path().c_str(), O_RDONLY | O_CLOEXEC));
    if (file.valid() && ::fdatasync(file.get()) != 0)
      return IoError("fsync " + it->path().string());
  }
  Fd directory(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (directory.valid()) ::fsync(directory.get());
  return Status::Ok();
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
