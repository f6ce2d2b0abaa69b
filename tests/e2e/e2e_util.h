// Small helpers for end-to-end tests that use a real FUSE mount.
#pragma once

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>

namespace sealfs::testing {

inline bool CanMount() { return geteuid() == 0 && access("/dev/fuse", R_OK | W_OK) == 0; }

inline bool WriteFile(const std::string& path, const std::string& data,
                      int flags = O_CREAT | O_TRUNC) {
  int fd = open(path.c_str(), O_WRONLY | flags, 0644);
  if (fd < 0) return false;
  bool ok = write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size());
  return close(fd) == 0 && ok;
}

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Reads a whole file through an O_DIRECT descriptor, so the bytes come from
// the servers and not from any page cache. On failure, says why instead.
inline std::string ReadDirect(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_DIRECT);
  if (fd < 0) return "<cannot open " + path + " with O_DIRECT: " + strerror(errno) + ">";
  constexpr size_t kBlock = 1 << 20;
  void* block = nullptr;
  if (posix_memalign(&block, 4096, kBlock) != 0) {
    close(fd);
    return "<out of memory>";
  }
  std::string contents;
  for (;;) {
    ssize_t got = pread(fd, block, kBlock, static_cast<off_t>(contents.size()));
    if (got < 0) {
      contents = "<O_DIRECT read of " + path + " failed: " + strerror(errno) + ">";
      break;
    }
    if (got == 0) break;
    contents.append(static_cast<char*>(block), static_cast<size_t>(got));
  }
  free(block);
  close(fd);
  return contents;
}

// Drops the kernel's clean page cache, dentries and inodes.
inline void DropCaches() {
  sync();
  std::ofstream drop("/proc/sys/vm/drop_caches");
  drop << "3\n";
}

}  // namespace sealfs::testing
