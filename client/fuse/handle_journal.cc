#include "handle_journal.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

namespace sealfs::fuse {

Result<int> HandleJournal::CreateMemory() {
  int fd = memfd_create("sealfs-handles", MFD_CLOEXEC);
  if (fd < 0) return Status(errno, std::string("memfd_create: ") + std::strerror(errno));
  if (ftruncate(fd, static_cast<off_t>(kBytes)) != 0) {
    int error = errno;
    close(fd);
    return Status(error, std::string("sizing the handle journal: ") + std::strerror(error));
  }
  return fd;
}

Result<std::unique_ptr<HandleJournal>> HandleJournal::Map(int fd) {
  off_t size = lseek(fd, 0, SEEK_END);
  if (size != static_cast<off_t>(kBytes)) {
    return Status(EINVAL, "the handle journal has the wrong size");
  }
  void* memory = mmap(nullptr, kBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (memory == MAP_FAILED) return Status(errno, std::string("mmap: ") + std::strerror(errno));
  return std::unique_ptr<HandleJournal>(new HandleJournal(static_cast<HandleSlot*>(memory)));
}

HandleJournal::HandleJournal(HandleSlot* slots) : slots_(slots) {
  // Slots a predecessor left in use stay taken; low indexes are handed out
  // first, so a mount touches few pages of the journal.
  free_.reserve(kSlots);
  for (uint32_t index = kSlots; index-- > 0;) {
    if (slots_[index].kind.load(std::memory_order_acquire) ==
        static_cast<uint32_t>(HandleKind::kFree)) {
      free_.push_back(index);
    }
  }
}

HandleJournal::~HandleJournal() { munmap(slots_, kBytes); }

Result<uint64_t> HandleJournal::Add(uint64_t ino, HandleKind kind) {
  uint32_t index;
  {
    std::lock_guard<std::mutex> lock(free_mutex_);
    if (free_.empty()) return Status(EMFILE, "too many open files on this mount");
    index = free_.back();
    free_.pop_back();
  }
  HandleSlot& slot = slots_[index];
  slot.value.store(0, std::memory_order_relaxed);
  slot.ino.store(ino, std::memory_order_relaxed);
  // Published last: a slot with a kind is complete.
  slot.kind.store(static_cast<uint32_t>(kind), std::memory_order_release);
  return uint64_t{index} + 1;
}

HandleSlot* HandleJournal::Find(uint64_t fh) {
  if (fh == 0 || fh > kSlots) return nullptr;
  HandleSlot& slot = slots_[fh - 1];
  if (slot.kind.load(std::memory_order_acquire) == static_cast<uint32_t>(HandleKind::kFree)) {
    return nullptr;
  }
  return &slot;
}

void HandleJournal::Remove(uint64_t fh) {
  HandleSlot* slot = Find(fh);
  if (slot == nullptr) return;
  slot->kind.store(static_cast<uint32_t>(HandleKind::kFree), std::memory_order_release);
  slot->ino.store(0, std::memory_order_relaxed);
  slot->value.store(0, std::memory_order_relaxed);
  std::lock_guard<std::mutex> lock(free_mutex_);
  free_.push_back(static_cast<uint32_t>(fh - 1));
}

std::vector<HandleJournal::Live> HandleJournal::LiveHandles() const {
  std::vector<Live> live;
  for (uint32_t index = 0; index < kSlots; ++index) {
    uint32_t kind = slots_[index].kind.load(std::memory_order_acquire);
    if (kind == static_cast<uint32_t>(HandleKind::kFree)) continue;
    live.push_back(Live{uint64_t{index} + 1, slots_[index].ino.load(std::memory_order_relaxed),
                        static_cast<HandleKind>(kind),
                        slots_[index].value.load(std::memory_order_relaxed)});
  }
  return live;
}

}  // namespace sealfs::fuse
