// ChunkStore: a data server's chunks of file data in a local directory.
//
// Chunk (ino, index) lives in <root>/chunks/<ino % 256>/<ino>/<index>.dat with
// a sidecar <index>.sum holding one 64-bit xxHash3 per 4 KiB block (see
// chunk_file.h for its layout and the clean/dirty protocol that keeps data
// and checksums consistent across crashes and I/O errors). Every read
// verifies the blocks it touches; a mismatch is EIO and a log line, never
// returned as data.
//
// A small RocksDB under <root>/chunkdb records which chunks the store holds
// and which files were removed (chunk_index.h): a recorded chunk whose data
// file is gone reads as EIO, not zeros, and a removed file's chunks are never
// created again.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "sealfs/rpc/status.h"

namespace sealfs::server {

class ChunkIndex;
class WriterFirstLock;

inline constexpr uint32_t kChecksumBlock = 4096;
inline constexpr uint32_t kMaxChunkSize = 64u << 20;

struct ChunkStoreUsage {
  uint64_t capacity_bytes = 0;
  uint64_t free_bytes = 0;
  uint64_t used_bytes = 0;
  uint64_t chunk_count = 0;
};

// What the store holds of one file.
struct FileUsageInfo {
  uint64_t data_end = 0;         // largest index * chunk_size + chunk length
  uint64_t allocated_bytes = 0;  // disk space of its data files
};

// What a store knows of one chunk's place in its replication chain: the
// version of the last change applied to it, the last version the chain
// committed, and the chain (0: recorded before chains, or not yet known).
struct ChunkRecord {
  uint64_t version = 0;
  uint64_t committed = 0;
  uint32_t chain = 0;
  bool operator==(const ChunkRecord&) const = default;
};

class ChunkStore {
 public:
  // The on-disk layout this code reads, kept in <root>/FORMAT. A store of
  // another version is refused at Open with ENOTSUP and a message naming it.
  // Format 2 added chunk records (versions and chain) to the chunk index.
  static constexpr unsigned kFormatVersion = 2;
  static Result<std::unique_ptr<ChunkStore>> Open(const std::string& root);
  // Makes every chunk changed since its last fsync durable and marks it clean.
  ~ChunkStore();

  // An id kept in the store, so a restarted server is recognized.
  const std::string& instance_id() const { return instance_id_; }

  // ENOENT when the file was removed. *allocated_delta (if given) is how much
  // the disk space the chunk takes changed.
  Status Write(uint64_t ino, uint32_t index, uint32_t offset, std::string_view data,
               int64_t* allocated_delta = nullptr);
  // Room for a read's answer, given by the caller, so the bytes land once in
  // memory of the caller's choosing (a transport's registered buffer):
  // Reserve(n) gives n bytes to fill, and the answer is then the `length`
  // bytes at `offset` of them. Without a Keep call the answer is empty.
  class ReadTarget {
   public:
    virtual ~ReadTarget() = default;
    virtual char* Reserve(size_t size) = 0;
    virtual void Keep(size_t offset, size_t length) = 0;
  };
  // Reads up to `length` bytes at `offset` into *out; the answer is shorter
  // when the chunk ends first, and empty when the chunk was never written. EIO
  // when the chunk was written but its data is gone.
  Status Read(uint64_t ino, uint32_t index, uint32_t offset, uint32_t length, ReadTarget* out);
  Status Read(uint64_t ino, uint32_t index, uint32_t offset, uint32_t length, std::string* out);
  // Cuts this store's chunks of a file to a file size of `size`; reports the
  // disk space the file still takes here.
  Status TruncateFile(uint64_t ino, uint64_t size, uint32_t chunk_size,
                      uint64_t* allocated_bytes = nullptr);
  // Removes files' chunks for good: later writes to them fail with ENOENT.
  // Durable when it returns.
  Status RemoveFile(uint64_t ino) { return RemoveFiles({ino}); }
  Status RemoveFiles(const std::vector<uint64_t>& inos);
  // Makes the file's chunks, their directories and their records durable.
  Status FsyncFile(uint64_t ino);
  // The file's chunks below `index_limit` (those `owned` accepts, if given).
  Result<FileUsageInfo> FileUsage(uint64_t ino, uint32_t chunk_size, uint32_t index_limit,
                                  const std::function<bool(uint32_t)>& owned = nullptr);

  // ---- Chain replication (chunk_versions.cc)
  // The chunk's record; nullopt when this store does not hold the chunk. The
  // chunk is opened first, so that a change a crash cut short has marked its
  // version unknown (0) before anyone reads it.
  Result<std::optional<ChunkRecord>> Version(uint64_t ino, uint32_t index);
  // The indexes of the file's chunks: with a data file, or recorded.
  Result<std::vector<uint32_t>> ChunkIndexes(uint64_t ino);
  // Cuts one chunk to `length` bytes; *shortened says whether it was longer.
  Status Cut(uint64_t ino, uint32_t index, uint64_t length, bool* shortened);
  // Makes the chunk records written so far durable.
  Status SyncRecords();
  Status SetVersion(uint64_t ino, uint32_t index, const ChunkRecord& record);
  // Calls visit(ino, index, record) for every chunk the store holds.
  Status ForEachChunk(const std::function<void(uint64_t, uint32_t, const ChunkRecord&)>& visit);
  // Makes the chunk hold exactly `whole`, creating it if needed (a copy from
  // another replica). ENOENT when the file was removed here.
  Status Replace(uint64_t ino, uint32_t index, std::string_view whole);
  // Removes one chunk; the file lives on.
  Status Drop(uint64_t ino, uint32_t index);
  // Reads every block of the chunk and checks it (the scrubber).
  Status Verify(uint64_t ino, uint32_t index, uint64_t* bytes_read);
  ChunkStoreUsage Usage();

  // Path of a chunk's data file (tests corrupt it on purpose).
  std::string ChunkPath(uint64_t ino, uint32_t index) const;
  // How many chunks keep their files open at once (two descriptors each).
  size_t open_chunk_limit() const { return open_chunk_limit_; }

 private:
  // A chunk's open files and size, cached so that small I/O costs no
  // open/fstat/close. Guarded by the chunk's stripe lock.
  struct OpenChunk {
    ~OpenChunk();
    uint64_t ino = 0;
    uint32_t index = 0;
    int data_fd = -1;
    int sum_fd = -1;
    uint64_t size = 0;
    uint64_t allocated = 0;  // disk space of the data file, st_blocks * 512
    // The sidecar says dirty: changed since data and checksums were last durable.
    bool dirty = false;
    // A sync of its files failed: they may have lost data (see Clean).
    bool sync_failed = false;
  };
  using ChunkKey = std::pair<uint64_t, uint32_t>;

  explicit ChunkStore(std::string root);
  std::string FileDir(uint64_t ino) const;
  WriterFirstLock& InodeLock(uint64_t ino);
  std::shared_mutex& LockFor(uint64_t ino, uint32_t index);

  // The chunk's files, from the cache or opened; with `create` false, nullptr
  // if it does not exist. Needs the chunk's stripe lock held exclusively,
  // unless the chunk is cached (Cached() under a shared lock finds it).
  Result<std::shared_ptr<OpenChunk>> OpenFiles(uint64_t ino, uint32_t index, bool create);
  Result<std::shared_ptr<OpenChunk>> OpenFromDisk(uint64_t ino, uint32_t index, bool create);
  Status CreateDirs(uint64_t ino);
  Status RecoverSums(OpenChunk& chunk, const char* why);
  std::shared_ptr<OpenChunk> Cached(uint64_t ino, uint32_t index);
  void Uncache(uint64_t ino, uint32_t index);
  void ForgetFiles(uint64_t ino);
  // Closes up to `count` least recently used chunks other than `keep`,
  // cleaning them first. Skips chunks in use right now.
  void EvictSome(ChunkKey keep, size_t count);

  // Marks a clean chunk dirty, durably, before its first change.
  Status MarkDirty(OpenChunk& chunk);
  // Makes a dirty chunk durable (data, checksums, new directories) and clean.
  Status Clean(OpenChunk& chunk);
  // Marks a chunk clean whose data, checksums and directories a syncfs of
  // its file system has just made durable.
  Status MarkCleanAfterSync(OpenChunk& chunk);
  // After a failed change: makes checksums of blocks [first, end) and the
  // cached size agree with the data on disk, cutting back what a failed write
  // appended past `old_size`. When even that fails, the chunk leaves the cache
  // still marked dirty, so that the next open recovers it.
  void Repair(const std::shared_ptr<OpenChunk>& chunk, uint64_t first, uint64_t end,
              uint64_t old_size);
  Status ReadChunk(const OpenChunk& chunk, uint32_t offset, uint32_t length, ReadTarget* out);
  Status TruncateChunk(uint64_t ino, uint32_t index, uint64_t length, bool* shortened = nullptr);
  Result<FileUsageInfo> UsageLocked(uint64_t ino, uint32_t chunk_size, uint32_t index_limit,
                                    const std::function<bool(uint32_t)>& owned);
  Status DropChunk(uint64_t ino, uint32_t index);
  Result<std::vector<uint32_t>> IndexesLocked(uint64_t ino);
  // Removes one file's chunks, not yet durably.
  Status RemoveOneFile(uint64_t ino);
  // Removes a chunk's data file and takes it out of the usage counts.
  Status UnlinkDataFile(const std::string& path);

  // Directories that got new entries since they were last synced, per inode.
  static constexpr uint8_t kFileDirChanged = 1, kShardDirChanged = 2, kChunksDirChanged = 4;
  void NoteDirsChanged(uint64_t ino, uint8_t dirs);
  Status SyncDirs(uint64_t ino);

  std::string root_;
  std::string instance_id_;
  std::unique_ptr<ChunkIndex> index_;
  // Shared by chunk I/O of a file, exclusive for its removal.
  std::unique_ptr<WriterFirstLock[]> inode_locks_;
  std::unique_ptr<std::shared_mutex[]> locks_;
  std::atomic<int64_t> used_bytes_{0};
  std::atomic<int64_t> chunk_count_{0};

  std::mutex dirs_mutex_;
  std::unordered_map<uint64_t, uint8_t> unsynced_dirs_;

  struct KeyHash {
    size_t operator()(const ChunkKey& key) const {
      return std::hash<uint64_t>()(key.first * 0x9E3779B97F4A7C15ull ^ key.second);
    }
  };
  using Lru = std::list<std::pair<ChunkKey, std::shared_ptr<OpenChunk>>>;
  size_t open_chunk_limit_ = 128;
  std::mutex open_mutex_;
  Lru open_lru_;  // most recently used first
  std::unordered_map<ChunkKey, Lru::iterator, KeyHash> open_chunks_;
};

}  // namespace sealfs::server
