// KeyedLocks: reader-writer locks by exact key, made on demand and freed
// when unused. Two keys never share a lock: a shared stripe could let a
// member waiting on its successor in one chain block a request of another
// chain, and the waits of two chains could then cross and deadlock.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>

namespace sealfs::server {

class KeyedLocks {
 public:
  struct Key {
    uint64_t high = 0;
    uint64_t low = 0;
    bool operator==(const Key&) const = default;
  };

  // Holds one lock until destroyed (or moved from).
  class Guard {
   public:
    Guard() = default;
    Guard(KeyedLocks* owner, Key key, bool exclusive)
        : owner_(owner), key_(key), exclusive_(exclusive) {}
    Guard(Guard&& other) noexcept { *this = std::move(other); }
    Guard& operator=(Guard&& other) noexcept {
      Release();
      owner_ = other.owner_;
      key_ = other.key_;
      exclusive_ = other.exclusive_;
      other.owner_ = nullptr;
      return *this;
    }
    ~Guard() { Release(); }
    void Release() {
      if (owner_) owner_->Unlock(key_, exclusive_);
      owner_ = nullptr;
    }

   private:
    KeyedLocks* owner_ = nullptr;
    Key key_;
    bool exclusive_ = false;
  };

  Guard Lock(Key key, bool exclusive) {
    Entry* entry;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto& slot = entries_[key];
      if (!slot) slot = std::make_unique<Entry>();
      ++slot->users;
      entry = slot.get();
    }
    if (exclusive) {
      entry->mutex.lock();
    } else {
      entry->mutex.lock_shared();
    }
    return Guard(this, key, exclusive);
  }

 private:
  struct Entry {
    std::shared_mutex mutex;
    int users = 0;
  };
  struct KeyHash {
    size_t operator()(const Key& key) const {
      return std::hash<uint64_t>()(key.high * 0x9E3779B97F4A7C15ull ^ key.low);
    }
  };

  void Unlock(Key key, bool exclusive) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto found = entries_.find(key);
    if (exclusive) {
      found->second->mutex.unlock();
    } else {
      found->second->mutex.unlock_shared();
    }
    if (--found->second->users == 0) entries_.erase(found);
  }

  std::mutex mutex_;
  std::unordered_map<Key, std::unique_ptr<Entry>, KeyHash> entries_;
};

}  // namespace sealfs::server
