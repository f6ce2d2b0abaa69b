// HandleJournal: the open files and directories of a mount, kept in shared
// memory that the mount's keeper process holds. The kernel names an open
// file by the handle (fh) the daemon gave it; when a daemon dies, its
// successor on the same kernel mount reads this journal to know what every
// handle the kernel still uses refers to, which files were written but not
// committed, and where each directory listing started.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "sealfs/rpc/status.h"

namespace sealfs::fuse {

enum class HandleKind : uint32_t { kFree = 0, kFileRead = 1, kFileWrite = 2, kDirectory = 3 };

// One handle, written only by the daemon serving the mount. Each field is a
// lock-free atomic so a successor never reads a torn value.
struct HandleSlot {
  std::atomic<uint64_t> ino;
  std::atomic<uint32_t> kind;
  std::atomic<uint32_t> unused;
  // Files: the end of writes through this mount not yet committed to the
  // metadata server (0: none). Directories: the listing's start (seq limit).
  std::atomic<uint64_t> value;
  std::atomic<uint64_t> reserved;
};
static_assert(sizeof(HandleSlot) == 32);
static_assert(std::atomic<uint64_t>::is_always_lock_free);

class HandleJournal {
 public:
  static constexpr uint32_t kSlots = 1u << 16;
  static constexpr size_t kBytes = sizeof(HandleSlot) * kSlots;

  // Creates the shared memory (a memfd) a keeper hands to each daemon.
  static Result<int> CreateMemory();
  // Maps a journal from its memfd; the fd stays the caller's.
  static Result<std::unique_ptr<HandleJournal>> Map(int fd);
  ~HandleJournal();
  HandleJournal(const HandleJournal&) = delete;
  HandleJournal& operator=(const HandleJournal&) = delete;

  // A new handle (never 0) for `ino`; EMFILE when every slot is taken.
  Result<uint64_t> Add(uint64_t ino, HandleKind kind);
  void Remove(uint64_t fh);
  // The slot of a live handle, or nullptr for a handle this journal never
  // gave out (0, out of range, freed).
  HandleSlot* Find(uint64_t fh);

  struct Live {
    uint64_t fh;
    uint64_t ino;
    HandleKind kind;
    uint64_t value;
  };
  // Every handle in use, as a predecessor left them.
  std::vector<Live> LiveHandles() const;

 private:
  explicit HandleJournal(HandleSlot* slots);
  HandleSlot* slots_;
  std::mutex free_mutex_;
  std::vector<uint32_t> free_;  // free slot indexes, taken from the back
};

}  // namespace sealfs::fuse
