// ChunkIo: the system calls through which ChunkStore changes chunk files.
//
// Tests replace them to make a real change fail part-way, the way a full or
// failing disk or a crash would: fail the Nth call with EIO, come up short, or
// _exit() between a chunk's data and its checksums. Unset hooks are the plain
// system calls. Set them only while no store does I/O (they are not guarded).
#pragma once

#include <sys/types.h>

#include <functional>

namespace sealfs::server {

// Which file of a chunk a call touches.
enum class ChunkFile { kData, kSums };

struct ChunkIoHooks {
  // Same contract as pwrite(2).
  std::function<ssize_t(ChunkFile, int fd, const void* buffer, size_t size, off_t offset)> pwrite;
  // Same contract as ftruncate(2).
  std::function<int(ChunkFile, int fd, off_t length)> ftruncate;
};

// Installs hooks for every ChunkStore in this process; {} restores the system calls.
void SetChunkIoHooks(ChunkIoHooks hooks);

}  // namespace sealfs::server
