// ChunkStore: a data server's chunks of file data in a local directory.
//
// Chunk (ino, index) lives in <root>/chunks/<ino % 256>/<ino>/<index>.dat with
// a sidecar <index>.sum holding one 64-bit xxHash3 per 4 KiB block. Each stored
// checksum is XORed with the checksum of an all-zero block, so a block never
// written (a hole, or a sidecar slot never filled) reads as zeros and checks
// out, while any other byte change fails the check. Every read verifies the
// blocks it touches; a mismatch is EIO and a log line, never returned as data.
#pragma once

#include <atomic>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "sealfs/rpc/status.h"

namespace sealfs::server {

inline constexpr uint32_t kChecksumBlock = 4096;
inline constexpr uint32_t kMaxChunkSize = 64u << 20;

struct ChunkStoreUsage {
  uint64_t capacity_bytes = 0;
  uint64_t free_bytes = 0;
  uint64_t used_bytes = 0;
  uint64_t chunk_count = 0;
};

class ChunkStore {
 public:
  static Result<std::unique_ptr<ChunkStore>> Open(const std::string& root);
  ~ChunkStore();

  // An id kept in the store, so a restarted server is recognized.
  const std::string& instance_id() const { return instance_id_; }

  Status Write(uint64_t ino, uint32_t index, uint32_t offset, std::string_view data);
  // Reads up to `length` bytes at `offset` into *out; *out is shorter when the
  // chunk ends first, and empty when the chunk does not exist.
  Status Read(uint64_t ino, uint32_t index, uint32_t offset, uint32_t length, std::string* out);
  // Cuts this store's chunks of a file to a file size of `size`.
  Status TruncateFile(uint64_t ino, uint64_t size, uint32_t chunk_size);
  Status RemoveFile(uint64_t ino);
  Status FsyncFile(uint64_t ino);
  ChunkStoreUsage Usage();

  // Path of a chunk's data file (tests corrupt it on purpose).
  std::string ChunkPath(uint64_t ino, uint32_t index) const;

 private:
  // A chunk's open files and size, cached so that small I/O costs no
  // open/fstat/close. Guarded by the chunk's stripe lock.
  struct OpenChunk {
    ~OpenChunk();
    int data_fd = -1;
    int sum_fd = -1;
    uint64_t size = 0;
  };
  // Returns the chunk's files; with `create` false, nullptr if it does not exist.
  Result<std::shared_ptr<OpenChunk>> OpenFiles(uint64_t ino, uint32_t index, bool create);
  void ForgetFiles(uint64_t ino);

  explicit ChunkStore(std::string root);
  std::string FileDir(uint64_t ino) const;
  std::shared_mutex& LockFor(uint64_t ino, uint32_t index);
  Status TruncateChunk(uint64_t ino, uint32_t index, uint64_t length);

  std::string root_;
  std::string instance_id_;
  std::unique_ptr<std::shared_mutex[]> locks_;
  std::atomic<int64_t> used_bytes_{0};
  std::atomic<int64_t> chunk_count_{0};

  static constexpr size_t kOpenChunkLimit = 512;
  struct KeyHash {
    size_t operator()(const std::pair<uint64_t, uint32_t>& key) const {
      return std::hash<uint64_t>()(key.first * 0x9E3779B97F4A7C15ull ^ key.second);
    }
  };
  using Lru = std::list<std::pair<std::pair<uint64_t, uint32_t>, std::shared_ptr<OpenChunk>>>;
  std::mutex open_mutex_;
  Lru open_lru_;  // most recently used first
  std::unordered_map<std::pair<uint64_t, uint32_t>, Lru::iterator, KeyHash> open_chunks_;
};

}  // namespace sealfs::server
