// Internals of a MetaStore shared by its implementation files: the column
// family handles and the striped inode locks.
#pragma once

#include <rocksdb/db.h>

#include <array>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <set>
#include <unordered_map>
#include <vector>

#include "sealfs/metadata/meta_store.h"

namespace sealfs::metadata {

struct MetaStore::Handles {
  rocksdb::ColumnFamilyHandle* inodes = nullptr;
  rocksdb::ColumnFamilyHandle* dentries = nullptr;
  rocksdb::ColumnFamilyHandle* dirindex = nullptr;
  rocksdb::ColumnFamilyHandle* xattrs = nullptr;
  rocksdb::ColumnFamilyHandle* service = nullptr;
  rocksdb::ColumnFamilyHandle* default_cf = nullptr;
};

// Striped inode locks. A LockSet takes its stripes in index order, so two
// operations that lock overlapping inode sets never deadlock.
//
// Inodes a prepared cross-shard change holds stay held between its prepare
// and the coordinator's decision, which may be seconds apart (or a restart
// apart). A LockSet naming a held inode lets go of its stripes and waits
// for the release, so a held inode never blocks others on its stripe.
class MetaStore::Locks {
 public:
  enum class Held {
    kWait,    // wait until no prepared change holds the inodes
    kIgnore,  // take the stripes only (prepare checks holds itself; commit owns them)
  };
  class LockSet {
   public:
    LockSet(Locks& locks, std::initializer_list<uint64_t> inos, Held held = Held::kWait)
        : LockSet(locks, std::vector<uint64_t>(inos), held) {}
    LockSet(Locks& locks, const std::vector<uint64_t>& inos, Held held = Held::kWait)
        : locks_(locks) {
      for (uint64_t ino : inos) {
        if (ino != 0) {
          inos_.push_back(ino);
          stripes_.insert(Stripe(ino));
        }
      }
      for (;;) {
        for (size_t stripe : stripes_) locks_.mutexes_[stripe].lock();
        if (held == Held::kIgnore || !locks_.AnyHeld(inos_)) break;
        Unlock();
        locks_.WaitForRelease(inos_);
      }
    }
    ~LockSet() { Unlock(); }

   private:
    void Unlock() {
      for (auto it = stripes_.rbegin(); it != stripes_.rend(); ++it) locks_.mutexes_[*it].unlock();
    }
    Locks& locks_;
    std::vector<uint64_t> inos_;
    std::set<size_t> stripes_;
  };

  // The prepared change (txid) holding the inode, or 0.
  uint64_t HolderOf(uint64_t ino) {
    std::lock_guard<std::mutex> guard(held_mutex_);
    auto it = held_.find(ino);
    return it == held_.end() ? 0 : it->second;
  }
  void Hold(const std::vector<uint64_t>& inos, uint64_t txid) {
    std::lock_guard<std::mutex> guard(held_mutex_);
    for (uint64_t ino : inos) held_[ino] = txid;
    held_count_ = held_.size();
  }
  void Release(uint64_t txid) {
    {
      std::lock_guard<std::mutex> guard(held_mutex_);
      std::erase_if(held_, [txid](const auto& item) { return item.second == txid; });
      held_count_ = held_.size();
    }
    released_.notify_all();
  }

 private:
  static size_t Stripe(uint64_t ino) { return (ino * 0x9E3779B97F4A7C15ull) >> 52; }
  bool AnyHeld(const std::vector<uint64_t>& inos) {
    if (held_count_.load(std::memory_order_acquire) == 0) return false;  // the common case
    std::lock_guard<std::mutex> guard(held_mutex_);
    for (uint64_t ino : inos) {
      if (held_.count(ino)) return true;
    }
    return false;
  }
  void WaitForRelease(const std::vector<uint64_t>& inos) {
    std::unique_lock<std::mutex> guard(held_mutex_);
    released_.wait(guard, [&] {
      for (uint64_t ino : inos) {
        if (held_.count(ino)) return false;
      }
      return true;
    });
  }

  std::array<std::mutex, 4096> mutexes_;
  std::mutex held_mutex_;
  std::condition_variable released_;
  std::unordered_map<uint64_t, uint64_t> held_;  // ino -> txid
  std::atomic<size_t> held_count_{0};
};

using LockSet = MetaStore::Locks::LockSet;

// A directory entry found and locked with its directory (LockEntry).
struct MetaStore::LockedEntry {
  std::unique_ptr<LockSet> lock;
  uint64_t seq = 0;
  pb::Inode dir;
  pb::Inode inode;
};

}  // namespace sealfs::metadata
