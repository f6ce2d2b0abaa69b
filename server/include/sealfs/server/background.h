// The data server's background work on its targets:
//
// Resyncer: for every chain where one of this server's targets is the last
// serving member and a member behind it is syncing, copies to that member
// every chunk whose version differs from its own and drops the chunks it
// no longer has, each under the chunk's write lock so that it interleaves
// correctly with new writes (which already flow through the syncing member);
// then reports the member caught up. Progress goes out with heartbeats.
//
// Scrubber: re-reads every chunk of every target at a bounded rate and has
// a chunk whose checksum fails repaired from another replica.
#pragma once

#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include "sealfs/server/data_service.h"

namespace sealfs::server {

class Resyncer {
 public:
  Resyncer(DataService& service, std::function<void()> report_now);
  ~Resyncer();
  void Start();
  void Stop();
  // What to tell the metadata service: progress of running resyncs, and
  // those finished under the chain version they ran at.
  std::vector<pb::SyncProgress> Progress();

 private:
  void Loop();
  void RunOnce();
  Status SyncMember(StorageTarget& source, const pb::Chain& chain, uint32_t member);
  void Note(const pb::SyncProgress& progress);

  DataService& service_;
  std::function<void()> report_now_;
  std::mutex mutex_;
  std::condition_variable wakeup_;
  bool stopping_ = false;
  std::map<std::pair<uint32_t, uint32_t>, pb::SyncProgress> progress_;  // by (chain, member)
  std::thread thread_;
};

class Scrubber {
 public:
  // Reads at most `rate_bytes` per second; a pass starts every `interval`.
  Scrubber(DataService& service, uint64_t rate_bytes, std::chrono::milliseconds interval);
  ~Scrubber();
  void Start();
  void Stop();

 private:
  void Loop();
  void ScrubTarget(StorageTarget& target);
  bool Sleep(std::chrono::steady_clock::duration duration);

  DataService& service_;
  uint64_t rate_bytes_;
  std::chrono::milliseconds interval_;
  std::mutex mutex_;
  std::condition_variable wakeup_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace sealfs::server
