// At most one operation per volume at a time: a second one, while the
// first runs, is refused (the CSI spec's ABORTED) and the CO retries.
#pragma once

#include <mutex>
#include <set>
#include <string>

namespace sealfs::csi {

class VolumeLocks {
 public:
  class Guard {
   public:
    Guard(VolumeLocks& locks, std::string key) : locks_(locks), key_(std::move(key)) {
      std::lock_guard<std::mutex> lock(locks_.mutex_);
      held_ = locks_.busy_.insert(key_).second;
    }
    ~Guard() {
      if (!held_) return;
      std::lock_guard<std::mutex> lock(locks_.mutex_);
      locks_.busy_.erase(key_);
    }
    Guard(const Guard&) = delete;
    Guard& operator=(const Guard&) = delete;
    bool held() const { return held_; }

   private:
    VolumeLocks& locks_;
    std::string key_;
    bool held_ = false;
  };

 private:
  std::mutex mutex_;
  std::set<std::string> busy_;
};

}  // namespace sealfs::csi
