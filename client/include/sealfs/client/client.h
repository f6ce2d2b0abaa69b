// libsealfs: the client library. It routes namespace calls to the metadata
// server and chunk I/O to data servers (in parallel over all servers a
// request touches), keeps the cluster map, and keeps this client's session
// alive so that files it holds open survive being unlinked.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <unordered_map>

#include "sealfs/rpc/credentials.h"
#include "sealfs/rpc/methods.h"
#include "sealfs/rpc/rdma_transport.h"
#include "sealfs/rpc/tcp_transport.h"

namespace sealfs::client {

struct ClientOptions {
  std::string meta_address = "127.0.0.1:7400";
  std::string volume = "default";
  std::chrono::milliseconds timeout{std::chrono::seconds(30)};
  // How long chunk I/O waits for a chain with no serving member (or one
  // that is changing) before it fails with EIO.
  std::chrono::milliseconds io_wait{std::chrono::seconds(60)};
  std::chrono::milliseconds keepalive_interval{std::chrono::seconds(5)};
  // How long a metadata call is retried while the metadata server cannot be
  // reached (down, restarting, not answering) before it fails; 0: at once.
  // A retried change is applied once: the server knows it by its number.
  std::chrono::milliseconds meta_wait{0};
  int io_threads = 2;
  rpc::TransportKind transport = rpc::TransportKind::kTcp;
  // The volume's mount token, or the cluster's admin credential (which may
  // mount any volume and make admin requests): the secrets themselves.
  std::string token;
  std::string admin_credential;
};

class Client {
 public:
  // Connects to the metadata server. With a volume name, mounts that volume
  // (fails with ENOENT if it does not exist); with an empty one, admin only.
  static Result<std::unique_ptr<Client>> Connect(const ClientOptions& options);
  ~Client();

  const pb::Volume& volume() const { return volume_; }
  uint64_t root_ino() const { return volume_.root_ino(); }
  uint64_t session_id() const { return session_id_; }

  // Calls a metadata method. A session the server ended (it expired while
  // this client was cut off) is mounted again and the call repeated.
  // While the server cannot be reached, the call is repeated (same request
  // number) for up to ClientOptions::meta_wait.
  template <typename Request, typename Response>
  Status Meta(rpc::Method<Request, Response> method, const Request& request, Response* response) {
    Request numbered = request;
    // A caller may number the request itself (to repeat one on purpose).
    if (numbered.auth().request_seq() == 0) {
      numbered.mutable_auth()->set_request_seq(next_request_seq_.fetch_add(1));
    }
    MetaRetry retry(options_.meta_wait);
    for (;;) {
      uint64_t session = session_id_;
      Status status = rpc::Invoke(*meta_, method, numbered, response, {}, nullptr, call_options());
      if (status.code() == EKEYEXPIRED && !options_.volume.empty() && Remount(session).ok()) {
        status = rpc::Invoke(*meta_, method, numbered, response, {}, nullptr, call_options());
      }
      if (!retry.Again(status)) return status;
    }
  }

  // Chunk I/O over a file's layout. Read fills `out` with `length` bytes,
  // zeros where nothing was written; the caller clamps to the file size.
  // *allocated_delta (if given) adds up how the disk space the file takes
  // changed, as the data servers report it; CommitWrite carries it on.
  Status Write(uint64_t ino, const pb::Layout& layout, uint64_t offset, std::string_view data,
               int64_t* allocated_delta = nullptr);
  Status Read(uint64_t ino, const pb::Layout& layout, uint64_t offset, size_t length, char* out);
  // Makes the file's written data durable on every data server holding it.
  Status FsyncData(uint64_t ino, const pb::Layout& layout);
  // Makes every metadata change the server acknowledged durable.
  Status SyncMeta();

  // Open files this client holds, re-announced with every keepalive.
  // `write`: the file is opened for writing (its capability allows it).
  Result<pb::OpenResponse> Open(uint64_t ino, bool write = true);
  // Creates a regular file (or fails with EEXIST) and opens it, in one call.
  Result<pb::MknodResponse> CreateAndOpen(uint64_t parent, const std::string& name, uint32_t mode,
                                          const pb::Caller& caller);
  void NoteOpen(uint64_t ino);
  Status Close(uint64_t ino);

  Result<pb::ClusterMapResponse> RefreshClusterMap();

  // The capability for a file's data: reading, or with `write` writing
  // below `end` (reserving quota ahead; EDQUOT when the volume is full).
  // Cached, and renewed at half its life.
  Result<pb::Capability> Capability(uint64_t ino, bool write, uint64_t end);
  void KeepCapability(const pb::Capability& cap);
  void DropCapability(uint64_t ino);

 private:
  // Mounts the volume (again): a new session, whose key the metadata
  // channel sends from then on. Remount only if `ended_session` is still
  // the current one.
  Status Mount();
  Status Remount(uint64_t ended_session);
  Status MountLocked();
  // A chunk request refused for an expired capability becomes retryable.
  Status RenewIfExpired(uint64_t ino, const Status& status);
  explicit Client(ClientOptions options);
  rpc::CallOptions call_options() const { return rpc::CallOptions{options_.timeout}; }
  rpc::CallOptions data_call_options();
  // How to reach a member of a chain: its server's channel, its store and
  // the chain version to name.
  struct Route {
    std::shared_ptr<rpc::Channel> channel;
    std::string store_id;
    pb::ChainRef chain;
  };
  enum class Target { kHead, kTail, kAnyReplica };
  Result<Route> RouteToChain(uint32_t chain_id, Target which);
  template <typename Issue>
  Status WithRetries(size_t count, Target target, Issue issue);
  void KeepaliveLoop();

  // Paces the retries of one metadata call and says when to give up.
  class MetaRetry {
   public:
    explicit MetaRetry(std::chrono::milliseconds wait);
    // Waits before the next attempt and returns true, or returns false when
    // `status` is final: success, an answer of the server, or out of time.
    bool Again(const Status& status);

   private:
    std::chrono::steady_clock::time_point deadline_;
    std::chrono::milliseconds pause_{50};
  };

  ClientOptions options_;
  std::atomic<uint64_t> next_request_seq_{1};
  rpc::IoThreads io_;
  std::shared_ptr<rpc::Channel> meta_raw_;
  std::shared_ptr<auth::AuthChannel> meta_auth_;
  std::shared_ptr<rpc::Channel> meta_;
  pb::Volume volume_;
  std::atomic<uint64_t> session_id_{0};
  std::mutex mount_mutex_;

  struct HeldCapability {
    pb::Capability cap;
    std::chrono::steady_clock::time_point renew_at;
  };
  std::mutex caps_mutex_;
  std::unordered_map<uint64_t, HeldCapability> caps_;

  std::mutex map_mutex_;
  pb::ClusterMapResponse map_;
  uint64_t next_replica_ = 0;
  std::unordered_map<std::string, std::shared_ptr<rpc::Channel>> channels_;

  // Opens and closes hold it shared across their call, a keepalive holds it
  // exclusively, so a keepalive's list never misses a file being opened.
  std::shared_mutex announce_mutex_;
  std::mutex open_mutex_;
  std::unordered_map<uint64_t, int> open_counts_;

  std::mutex keepalive_mutex_;
  std::condition_variable keepalive_wakeup_;
  bool stopping_ = false;
  std::thread keepalive_;
};

// Errors of the transport (connection refused, reset, timed out) as an
// application sees them: EIO, with the detail kept in the message. The
// library itself returns the transport's own errors.
Status ToFileError(const Status& status);

}  // namespace sealfs::client
