// ParallelCalls: waits for a set of asynchronous calls and keeps the first
// error among them.
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>

#include "sealfs/rpc/transport.h"

namespace sealfs::rpc {

// Collects the first error of calls running in parallel. Callbacks hold it
// through a shared_ptr, so it outlives the last one.
class ParallelCalls {
 public:
  static std::shared_ptr<ParallelCalls> Start(size_t count) {
    auto calls = std::make_shared<ParallelCalls>();
    calls->pending_ = count;
    return calls;
  }
  void Done(const Status& status) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!status.ok() && first_error_.ok()) first_error_ = status;
    if (--pending_ == 0) {
      finished_.store(true, std::memory_order_release);
      all_done_.notify_one();
    }
  }
  Status Wait() {
    SpinUntil([this] { return finished_.load(std::memory_order_acquire); });
    std::unique_lock<std::mutex> lock(mutex_);
    all_done_.wait(lock, [this] { return pending_ == 0; });
    return first_error_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable all_done_;
  size_t pending_ = 0;
  std::atomic<bool> finished_{false};
  Status first_error_;
};

}  // namespace sealfs::rpc
