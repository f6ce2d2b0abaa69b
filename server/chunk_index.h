// ChunkIndex: which chunks this data server holds and which files were
// removed, in a small RocksDB under <root>/chunkdb.
//
// A chunk is recorded when its data file is first created and forgotten when
// it is cut away or its file removed. A chunk whose data file is missing but
// which is recorded was lost, and reads fail with EIO instead of inventing
// zeros. A removed file leaves a record of its own (inode ids are never
// reused), so a late write cannot bring its chunks back.
//
// Keys: a chunk is its inode (8 bytes, big-endian) and index (4 bytes,
// big-endian); a removed file is its inode alone (8 bytes), so it sorts just
// before the chunks of that inode. A removed file's value is empty; a
// chunk's is its record (ChunkRecord, 20 bytes: version, committed version,
// chain), empty for a chunk whose record was never written.
//
// Records are written without sync (the WAL survives a process crash); Sync()
// makes them survive a power cut.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "sealfs/rpc/status.h"
#include "sealfs/server/chunk_store.h"

namespace rocksdb {
class DB;
}

namespace sealfs::server {

class ChunkIndex {
 public:
  static Result<std::unique_ptr<ChunkIndex>> Open(const std::string& path);
  ~ChunkIndex();

  Result<bool> HasChunk(uint64_t ino, uint32_t index);
  Status AddChunk(uint64_t ino, uint32_t index);
  Status RemoveChunk(uint64_t ino, uint32_t index);
  // The chunk's record; nullopt when the chunk is not recorded.
  Result<std::optional<ChunkRecord>> Record(uint64_t ino, uint32_t index);
  Status PutRecord(uint64_t ino, uint32_t index, const ChunkRecord& record);
  // Calls visit(ino, index, record) for every recorded chunk.
  Status ForEachChunk(const std::function<void(uint64_t, uint32_t, const ChunkRecord&)>& visit);
  // The recorded chunk indexes of a file, ascending.
  Result<std::vector<uint32_t>> Chunks(uint64_t ino);

  Result<bool> IsRemoved(uint64_t ino);
  // Marks the file removed and forgets its chunks, in one atomic batch.
  Status MarkRemoved(uint64_t ino);

  // Makes every record written so far durable.
  Status Sync();

  // Whether the chunks that were on disk when the index was made have all
  // been recorded (a store from before the index is recorded once, at open).
  Result<bool> IsComplete();
  Status MarkComplete();

 private:
  explicit ChunkIndex(std::string path);
  std::string path_;
  std::unique_ptr<rocksdb::DB> db_;
};

}  // namespace sealfs::server
