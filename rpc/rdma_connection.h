// Private to the RDMA transport: the wire layout of a SEND, registered buffer
// pools, one reliable-connected queue pair (RdmaConnection) and the watcher of
// a CM event channel. The client (rdma_channel.cc) and the server
// (rdma_server.cc) are built from these.
//
// A SEND buffer holds:
//   u32 credits returned | frame header | RdmaExt | body | inline payload
// RdmaExt describes memory the peer may access one-sided: in a request, the
// payload for the server to RDMA-READ and a buffer for it to RDMA-WRITE the
// reply payload into.
#pragma once

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>
#include <sys/socket.h>

#include <asio.hpp>
#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "sealfs/rpc/frame.h"
#include "sealfs/rpc/payload.h"
#include "sealfs/rpc/status.h"
#include "sealfs/rpc/transport.h"

namespace sealfs::rpc::rdma {

constexpr size_t kRecvDepth = 32;
constexpr size_t kSendBuffers = 32;
constexpr size_t kMessageSize = 128 * 1024;
constexpr size_t kMaxBulkInFlight = 16;  // RDMA READ/WRITE per connection
// A reply's RDMA WRITE and its SEND both sit in the send queue.
constexpr uint32_t kSendQueueDepth = kSendBuffers + kMaxBulkInFlight + 8;
constexpr uint8_t kFlagPayloadPlaced = 2;  // reply payload was RDMA-written
constexpr uint8_t kFlagCreditsOnly = 4;    // no frame, only returned credits
constexpr int kResolveTimeoutMs = 2000;
// Smallest bulk buffer; every size class is a power of two from here.
constexpr size_t kMinBulkBuffer = 64 * 1024;
// Registered memory one connection may have lent out to requests waiting in
// the server's workers and their replies (as TCP bounds a connection's
// queued requests to 256 MiB).
constexpr size_t kMaxLentBytes = 256u << 20;

struct RdmaExt {
  uint64_t src_addr = 0;
  uint32_t src_rkey = 0;
  uint32_t src_length = 0;
  uint64_t dst_addr = 0;
  uint32_t dst_rkey = 0;
  uint32_t dst_capacity = 0;
};
constexpr size_t kPrefix = 4 + kFrameHeaderSize + sizeof(RdmaExt);
constexpr size_t kMaxInline = kMessageSize - kPrefix;

using Strand = asio::strand<asio::io_context::executor_type>;

// A registered memory region.
struct Registered {
  char* data = nullptr;
  size_t size = 0;
  ibv_mr* mr = nullptr;
};

// Registers and deregisters memory, keeping the process-wide count of
// registered bytes (RdmaRegisteredBytes) exact.
ibv_mr* RegisterMemory(ibv_pd* pd, void* data, size_t size, int access);
void DeregisterMemory(ibv_mr* mr);
void FreeRegistered(Registered& buffer);

// Cached registered buffers of one access mode, by size class (a power of
// two from kMinBulkBuffer). Keeps at most kMaxBulkInFlight buffers per class
// and `max_cached_bytes` in all, so an idle connection pins little. Not
// thread-safe: its Domain guards it.
class BufferPool {
 public:
  explicit BufferPool(size_t max_cached_bytes) : max_cached_bytes_(max_cached_bytes) {}
  ~BufferPool();
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;

  static size_t SizeClass(size_t size);
  std::optional<Registered> TakeCached(size_t size_class);
  // False when the cache is full: the caller frees the buffer.
  bool Keep(Registered buffer);

 private:
  size_t max_cached_bytes_;
  size_t cached_bytes_ = 0;
  std::map<size_t, std::vector<Registered>> free_;
};

// Who may touch a bulk buffer besides this host's CPU: nobody (the server's
// own buffers), the peer reading it (a client's request payload), or the
// peer writing it (a client's reply buffer).
enum class BufferUse { kLocal, kPeerReads, kPeerWrites };

// A protection domain with its pools of registered buffers. Shared by its
// connection and by every buffer lent out as a Payload, so memory can be
// given back from any thread, also after the connection is gone; the domain
// is deallocated once the last holder lets go, never while memory of it is
// still registered.
class Domain : public std::enable_shared_from_this<Domain> {
 public:
  // `on_returned` runs, on whatever thread gives it back, after a lent
  // buffer came back.
  Domain(ibv_pd* pd, std::function<void()> on_returned)
      : pd_(pd), on_returned_(std::move(on_returned)) {}
  ~Domain();
  Domain(const Domain&) = delete;
  Domain& operator=(const Domain&) = delete;

  ibv_pd* pd() const { return pd_; }
  // EMSGSIZE for anything above kMaxPayloadSize, before allocating. New
  // memory is registered outside the lock.
  Result<Registered> Acquire(BufferUse use, size_t size);
  void Release(BufferUse use, Registered buffer);
  // From now on no buffer is reused: cached ones and every one given back
  // are deregistered and freed at once (the connection failed).
  void Retire();

  // The first `size` bytes of `buffer` as a payload; the buffer comes back
  // to this domain when the payload's last copy goes.
  Payload Lend(BufferUse use, Registered buffer, size_t size);
  // The buffer behind a payload this domain lent, or nullptr.
  const Registered* Lent(const Payload& payload) const;
  // Bytes of the buffers lent out now.
  size_t lent_bytes() const { return lent_bytes_.load(); }

 private:
  friend struct Loan;
  void Returned(BufferUse use, Registered buffer);

  ibv_pd* pd_;
  const std::function<void()> on_returned_;
  std::mutex mutex_;
  bool retired_ = false;
  std::unique_ptr<BufferPool> pools_[3];
  std::atomic<size_t> lent_bytes_{0};
};

// One reliable-connected queue pair with its buffers, credits and
// outstanding one-sided operations. Used by both clients and servers. All of
// its methods run on its strand.
class RdmaConnection : public std::enable_shared_from_this<RdmaConnection> {
 public:
  RdmaConnection(Strand strand, rdma_cm_id* id) : strand_(strand), id_(id), cq_watch_(strand) {}
  ~RdmaConnection() { Destroy(); }

  std::function<void(Message, RdmaExt)> on_message;
  std::function<void(Status)> on_failure;

  // `comp_vector_hint` spreads completion interrupts over the device's vectors.
  Status Setup(unsigned comp_vector_hint);

  const Strand& strand() const { return strand_; }
  rdma_cm_id* id() const { return id_; }
  // Failed or destroyed: nothing more is sent, read or written.
  bool failed() const { return failed_; }

  Result<Registered> AcquireBuffer(BufferUse use, size_t size);
  // Back to its pool; freed outright once the connection failed.
  void ReleaseBuffer(BufferUse use, Registered buffer);
  // Null once destroyed. The copy is safe to keep and use from any thread.
  std::shared_ptr<Domain> domain() const { return domain_; }

  // Runs `start` with a bulk slot (as WithBulkSlot) once the memory lent out
  // of this connection leaves room for `size` more bytes, so requests waiting
  // for the server's workers pin a bounded amount.
  void WithRoom(size_t size, std::function<void()> start);

  // Queues a message; it goes out when a send buffer and a peer credit exist.
  // `borrowed_payload` is copied into the send buffer when the message goes
  // out: it must stay valid until then or until Cancel(request_id). `on_sent`
  // runs once the SEND completed or the connection failed.
  void Send(FrameHeader header, std::string body, std::string inline_payload, RdmaExt ext,
            std::string_view borrowed_payload = {}, std::function<void()> on_sent = nullptr);

  // Removes a message with this request id that has not been posted yet.
  // True when it was still queued: the peer never saw it.
  bool Cancel(uint64_t request_id);

  // Runs `start` once fewer than kMaxBulkInFlight one-sided transfers are
  // out; `start` must call FinishBulk once its transfer is over.
  void WithBulkSlot(std::function<void()> start);
  void FinishBulk();

  // RDMA READ of `length` bytes at the peer's (addr, rkey) into `local`.
  // `done` runs exactly once: on completion or when the connection fails.
  void Read(uint64_t addr, uint32_t rkey, uint32_t length, Registered local,
            std::function<void(Status)> done);
  // RDMA WRITE of `length` bytes at `data` (inside `local`), posted
  // unsignalled: RC ordering delivers it before any SEND posted after it, so
  // the caller sends the reply right away and keeps the memory until that
  // SEND completes.
  bool WriteThenSend(const Registered& local, const char* data, uint32_t length, uint64_t addr,
                     uint32_t rkey);

  void Fail(const Status& status);
  void Disconnect();
  // Frees verbs resources (the queue pair first, so no transfer touches
  // memory being freed); the cm id is destroyed by its owner.
  void Destroy();

 private:
  struct Outgoing {
    FrameHeader header;
    std::string body;
    std::string payload;
    std::string_view borrowed;
    RdmaExt ext;
    bool credits_only = false;
    std::function<void()> on_sent;
  };

  char* Slot(size_t index) { return message_area_ + index * kMessageSize; }
  Status PostRecv(size_t index);
  // Posts one RDMA READ or WRITE of `length` bytes at `data` (inside `local`)
  // against the peer's (addr, rkey).
  bool PostOneSided(ibv_wr_opcode opcode, const Registered& local, const char* data,
                    uint32_t length, uint64_t addr, uint32_t rkey, uint64_t work_id, bool signaled);
  void PostBulk(ibv_wr_opcode opcode, Registered local, uint32_t length, uint64_t addr,
                uint32_t rkey, std::function<void(Status)> done);
  void Pump();
  void WatchCompletions();
  // Handles what the completion queue holds; how many completions that was.
  size_t PollCompletions();
  void HandleCompletion(const ibv_wc& wc);
  void HandleReceive(size_t slot, uint32_t length);
  // A signalled SEND completed: it and every unsignalled SEND posted before
  // it are done (a send queue completes in order).
  void SendsDone(size_t slot);
  bool credit_update_queued() const { return !queue_.empty() && queue_.front().credits_only; }
  void RunSentCallbacks();
  void StartWaitingForRoom();
  // Polls the completion queue again from a posted handler until `deadline`,
  // so a completion that follows shortly is handled without sleeping while
  // other work on the strand still runs in between.
  void PollSoon(std::chrono::steady_clock::time_point deadline, int rounds_left);

  Strand strand_;
  rdma_cm_id* id_;
  asio::posix::stream_descriptor cq_watch_;
  std::shared_ptr<Domain> domain_;
  ibv_comp_channel* channel_ = nullptr;
  ibv_cq* cq_ = nullptr;
  bool qp_created_ = false;
  uint32_t max_inline_ = 0;
  ibv_mr* message_mr_ = nullptr;
  char* message_area_ = nullptr;
  std::vector<size_t> free_send_;
  // Send slots posted and not yet known complete, in posting order; only
  // every few SENDs ask for a completion.
  std::deque<size_t> sends_in_flight_;
  size_t unsignalled_in_a_row_ = 0;
  std::vector<std::function<void()>> sent_callbacks_;  // per send slot
  std::deque<Outgoing> queue_;
  size_t peer_credits_ = 0;
  size_t to_return_ = 0;
  size_t bulk_in_flight_ = 0;
  std::deque<std::function<void()>> bulk_waiting_;
  std::deque<std::pair<size_t, std::function<void()>>> room_waiting_;
  std::atomic<bool> waiting_for_room_{false};  // read by threads giving memory back
  std::unordered_map<uint64_t, std::function<void(Status)>> bulk_ops_;
  uint64_t next_bulk_op_ = 0;
  bool failed_ = false;
  bool disconnected_ = false;
  bool destroyed_ = false;
};

// Watches a CM event channel from the event loop.
class CmEvents {
 public:
  explicit CmEvents(Strand strand) : watch_(strand) {}
  ~CmEvents() { Close(); }
  Status Open();
  rdma_event_channel* channel() { return channel_; }
  // Calls on_event for each event until Kill or Close.
  void Watch(std::function<void(rdma_cm_event*)> on_event);
  // Stops delivering events; safe inside on_event.
  void Kill() { *alive_ = false; }
  // Destroys the channel: every cm id on it must be destroyed already.
  void Close();

 private:
  void Arm();
  asio::posix::stream_descriptor watch_;
  rdma_event_channel* channel_ = nullptr;
  std::function<void(rdma_cm_event*)> on_event_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

Result<sockaddr_storage> Resolve(const std::string& address);

// The client (rdma_channel.cc) and the server (rdma_server.cc).
std::shared_ptr<Channel> NewRdmaChannel(asio::io_context& io, const std::string& address);
std::unique_ptr<ServerTransport> NewRdmaServer(asio::io_context& io, RequestSink& sink);

}  // namespace sealfs::rpc::rdma
