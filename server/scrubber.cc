#include <cstdio>

#include "sealfs/server/background.h"

namespace sealfs::server {

Scrubber::Scrubber(DataService& service, uint64_t rate_bytes, std::chrono::milliseconds interval)
    : service_(service), rate_bytes_(rate_bytes), interval_(interval) {}

Scrubber::~Scrubber() { Stop(); }

void Scrubber::Start() {
  if (rate_bytes_ == 0) return;
  thread_ = std::thread([this] { Loop(); });
}

void Scrubber::Stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wakeup_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool Scrubber::Sleep(std::chrono::steady_clock::duration duration) {
  std::unique_lock<std::mutex> lock(mutex_);
  wakeup_.wait_for(lock, duration, [this] { return stopping_; });
  return !stopping_;
}

void Scrubber::Loop() {
  while (Sleep(interval_)) {
    for (StorageTarget* target : service_.targets()) {
      if (target->id != 0) ScrubTarget(*target);
    }
  }
}

void Scrubber::ScrubTarget(StorageTarget& target) {
  std::vector<std::tuple<uint64_t, uint32_t, uint32_t>> chunks;
  Status listed = target.store->ForEachChunk(
      [&chunks](uint64_t ino, uint32_t index, const ChunkRecord& record) {
        chunks.emplace_back(ino, index, record.chain);
      });
  if (!listed.ok()) return;
  for (auto [ino, index, chain] : chunks) {
    auto started = std::chrono::steady_clock::now();
    uint64_t bytes = 0;
    Status verified;
    {
      KeyedLocks::Guard lock = service_.LockChunk(target.id, ino, index, false);
      verified = target.store->Verify(ino, index, &bytes);
    }
    service_.counters().scrubbed_bytes += bytes;
    if (verified.code() == EIO) {
      std::fprintf(stderr, "sealfs-data: scrub found chunk %u of inode %llu damaged: %s\n", index,
                   static_cast<unsigned long long>(ino), verified.ToString().c_str());
      Status repaired = service_.RepairChunk(target, chain, ino, index);
      if (!repaired.ok()) {
        std::fprintf(stderr, "sealfs-data: repair failed: %s\n", repaired.ToString().c_str());
      }
    }
    // Pace: this chunk's bytes take bytes / rate seconds.
    auto budget = std::chrono::microseconds(bytes * 1000000 / rate_bytes_);
    auto spent = std::chrono::steady_clock::now() - started;
    if (spent < budget && !Sleep(budget - spent)) return;
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) return;
  }
}

}  // namespace sealfs::server
