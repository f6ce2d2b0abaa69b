// DataService: the data RPC service over a ChunkStore, plus the loop that
// registers this server with the metadata server and heartbeats to it.
//
// Every request about file data names the store it expects (its instance id
// in the cluster map); a request for another store, as after this server's
// directory was wiped and it registered again at the same address, fails with
// EIO instead of being answered from data this store never had.
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "sealfs/rpc/service.h"
#include "sealfs/rpc/tcp_transport.h"
#include "sealfs/server/chunk_store.h"

namespace sealfs::server {

class DataService {
 public:
  explicit DataService(ChunkStore& store) : store_(store) {}
  void RegisterHandlers(rpc::Dispatcher& dispatcher);

 private:
  Status CheckStore(const std::string& store_id) const;

  ChunkStore& store_;
};

// Keeps this server registered: registers, then heartbeats every `interval`,
// registering again whenever the metadata server has forgotten it.
class Registration {
 public:
  Registration(rpc::IoThreads& io, ChunkStore& store, std::string meta_address,
               std::string advertised_address, std::chrono::milliseconds interval);
  ~Registration();
  void Start();
  void Stop();
  uint32_t server_id() const { return server_id_; }

 private:
  void Loop();

  ChunkStore& store_;
  std::shared_ptr<rpc::Channel> meta_;
  std::string advertised_address_;
  std::chrono::milliseconds interval_;
  std::atomic<uint32_t> server_id_{0};
  std::mutex mutex_;
  std::condition_variable wakeup_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace sealfs::server
