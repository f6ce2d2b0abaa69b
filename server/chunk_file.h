// The files of one chunk: its data file and its checksum sidecar, and the
// rules that keep the two consistent.
//
// Sidecar layout: a 16-byte header (8-byte magic, 8-byte state word), then one
// 64-bit xxHash3 per 4 KiB block of the data file. Each stored checksum is
// XORed with the checksum of an all-zero block, so a block never written (a
// hole, or a sidecar slot never filled) reads as zeros and checks out.
//
// The state word is "dirty" while data and checksums may disagree on disk: it
// is made durable before the first change to a clean chunk and set back to
// "clean" only after data and checksums are durable. A sidecar found dirty,
// missing, short or foreign when a chunk is opened means a change was cut
// short; its checksums are then recomputed from the data, since that change
// was never acknowledged and whatever bytes reached the disk are a valid
// outcome. Slots past the data's end are kept absent, never stale.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "sealfs/rpc/status.h"
#include "sealfs/server/chunk_io.h"
#include "sealfs/server/chunk_store.h"

namespace sealfs::server::chunk_file {

inline constexpr uint64_t kSumHeaderSize = 16;

// Where block `block`'s checksum sits in the sidecar.
inline off_t SumOffset(uint64_t block) { return static_cast<off_t>(kSumHeaderSize + block * 8); }
// The sidecar length that covers a data file of `data_size` bytes.
inline uint64_t SumFileSize(uint64_t data_size) {
  return kSumHeaderSize + (data_size + kChecksumBlock - 1) / kChecksumBlock * 8;
}
inline uint64_t BlockCount(uint64_t data_size) {
  return (data_size + kChecksumBlock - 1) / kChecksumBlock;
}

// The sidecar of a data file: <index>.dat -> <index>.sum.
inline std::string SumPath(const std::string& data_path) {
  return data_path.substr(0, data_path.size() - 4) + ".sum";
}

// Checksum of one block (up to kChecksumBlock bytes, zero-padded) as stored.
uint64_t BlockSum(const char* data, size_t size);

// errno (EIO when unset) and `what` with its description.
Status IoError(const std::string& what);

// Reads until `size` bytes or end of file; *got is how many arrived.
Status PreadFull(int fd, char* buffer, size_t size, off_t offset, size_t* got);
// Writes all of `size` bytes through the ChunkIo hooks.
Status PwriteFull(ChunkFile file, int fd, const char* buffer, size_t size, off_t offset);
// ftruncate through the ChunkIo hooks.
Status Truncate(ChunkFile file, int fd, uint64_t length);

enum class SumState { kClean, kDirty, kUnknown };  // unknown: missing, short or foreign header
SumState ReadSumState(int sum_fd);
// Writes the header with the given state (not synced).
Status WriteSumState(int sum_fd, SumState state);

// Recomputes the stored checksums of blocks [first, end) from a data file of
// `data_size` bytes.
Status RecomputeSums(int data_fd, int sum_fd, uint64_t data_size, uint64_t first, uint64_t end);

}  // namespace sealfs::server::chunk_file
