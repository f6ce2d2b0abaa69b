#include "chunk_file.h"

#include <unistd.h>
#include <xxhash.h>

#include <cstring>
#include <vector>

namespace sealfs::server {

namespace {
ChunkIoHooks& Hooks() {
  static ChunkIoHooks hooks;
  return hooks;
}

constexpr char kSumMagic[8] = {'S', 'F', 'S', 'U', 'M', 'S', '0', '1'};
constexpr uint64_t kStateClean = 0x434c45414e;  // "CLEAN"
constexpr uint64_t kStateDirty = 0x4449525459;  // "DIRTY"
}  // namespace

void SetChunkIoHooks(ChunkIoHooks hooks) { Hooks() = std::move(hooks); }

namespace chunk_file {

namespace {
uint64_t ZeroBlockHash() {
  static const uint64_t hash = [] {
    std::string zeros(kChecksumBlock, '\0');
    return XXH3_64bits(zeros.data(), zeros.size());
  }();
  return hash;
}
}  // namespace

uint64_t BlockSum(const char* data, size_t size) {
  if (size == kChecksumBlock) return XXH3_64bits(data, size) ^ ZeroBlockHash();
  char padded[kChecksumBlock] = {};
  std::memcpy(padded, data, size);
  return XXH3_64bits(padded, kChecksumBlock) ^ ZeroBlockHash();
}

Status IoError(const std::string& what) {
  int code = errno ? errno : EIO;
  return Status(code, what + ": " + std::strerror(code));
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

Status PwriteFull(ChunkFile file, int fd, const char* buffer, size_t size, off_t offset) {
  const auto& hook = Hooks().pwrite;
  size_t done = 0;
  while (done < size) {
    off_t at = offset + static_cast<off_t>(done);
    ssize_t n = hook ? hook(file, fd, buffer + done, size - done, at)
                     : ::pwrite(fd, buffer + done, size - done, at);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == ENOSPC || errno == EDQUOT) return Status(ENOSPC, "data disk is full");
      return IoError("write");
    }
    if (n == 0) return Status(EIO, "write made no progress");
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

Status Truncate(ChunkFile file, int fd, uint64_t length) {
  const auto& hook = Hooks().ftruncate;
  int result = hook ? hook(file, fd, static_cast<off_t>(length))
                    : ::ftruncate(fd, static_cast<off_t>(length));
  return result == 0 ? Status::Ok() : IoError("truncate");
}

SumState ReadSumState(int sum_fd) {
  char header[kSumHeaderSize];
  size_t got = 0;
  if (!PreadFull(sum_fd, header, sizeof header, 0, &got).ok() || got < sizeof header ||
      std::memcmp(header, kSumMagic, sizeof kSumMagic) != 0) {
    return SumState::kUnknown;
  }
  uint64_t state;
  std::memcpy(&state, header + 8, 8);
  if (state == kStateClean) return SumState::kClean;
  if (state == kStateDirty) return SumState::kDirty;
  return SumState::kUnknown;
}

Status WriteSumState(int sum_fd, SumState state) {
  char header[kSumHeaderSize];
  std::memcpy(header, kSumMagic, sizeof kSumMagic);
  uint64_t word = state == SumState::kClean ? kStateClean : kStateDirty;
  std::memcpy(header + 8, &word, 8);
  return PwriteFull(ChunkFile::kSums, sum_fd, header, sizeof header, 0);
}

Status RecomputeSums(int data_fd, int sum_fd, uint64_t data_size, uint64_t first, uint64_t end) {
  end = std::min(end, BlockCount(data_size));
  constexpr uint64_t kBlocksPerPass = 256;  // 1 MiB of data at a time
  std::vector<char> data(kBlocksPerPass * kChecksumBlock);
  std::vector<uint64_t> sums(kBlocksPerPass);
  for (uint64_t block = first; block < end; block += kBlocksPerPass) {
    uint64_t count = std::min(kBlocksPerPass, end - block);
    size_t got = 0;
    SEALFS_RETURN_IF_ERROR(PreadFull(data_fd, data.data(), count * kChecksumBlock,
                                     static_cast<off_t>(block * kChecksumBlock), &got));
    uint64_t complete = (got + kChecksumBlock - 1) / kChecksumBlock;
    for (uint64_t i = 0; i < complete; ++i) {
      sums[i] = BlockSum(data.data() + i * kChecksumBlock,
                         std::min<size_t>(kChecksumBlock, got - i * kChecksumBlock));
    }
    SEALFS_RETURN_IF_ERROR(PwriteFull(ChunkFile::kSums, sum_fd,
                                      reinterpret_cast<const char*>(sums.data()), complete * 8,
                                      SumOffset(block)));
    if (complete < count) break;  // the file is shorter than it was said to be
  }
  return Status::Ok();
}

}  // namespace chunk_file
}  // namespace sealfs::server
