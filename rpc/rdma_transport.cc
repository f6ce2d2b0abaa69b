// RDMA transport. Every connection's state lives on one strand: completion
// events, CM events and calls all run there, so no lock guards it.
//
// A SEND buffer holds:
//   u32 credits returned | frame header | RdmaExt | body | inline payload
// RdmaExt describes memory the peer may access one-sided: in a request, the
// payload for the server to RDMA-READ and a buffer for it to RDMA-WRITE the
// reply payload into.
#include "sealfs/rpc/rdma_transport.h"

#include <fcntl.h>
#include <infiniband/verbs.h>
#include <netdb.h>
#include <rdma/rdma_cma.h>

#include <asio.hpp>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <deque>
#include <future>
#include <map>
#include <optional>
#include <unordered_map>

namespace sealfs::rpc {
namespace {

constexpr size_t kRecvDepth = 32;
constexpr size_t kSendBuffers = 32;
constexpr size_t kMessageSize = 128 * 1024;
constexpr size_t kMaxBulkInFlight = 16;  // RDMA READ/WRITE per connection
constexpr uint32_t kSendQueueDepth = kSendBuffers + kMaxBulkInFlight + 8;
constexpr uint8_t kFlagPayloadPlaced = 2;  // reply payload was RDMA-written
constexpr uint8_t kFlagCreditsOnly = 4;    // no frame, only returned credits
constexpr int kResolveTimeoutMs = 2000;

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

enum WorkType : uint64_t { kRecvWork = 1, kSendWork = 2, kBulkWork = 3 };
uint64_t WorkId(WorkType type, uint64_t index) { return (uint64_t{type} << 56) | index; }
WorkType TypeOf(uint64_t wr_id) { return static_cast<WorkType>(wr_id >> 56); }
uint64_t IndexOf(uint64_t wr_id) { return wr_id & ((uint64_t{1} << 56) - 1); }

using Strand = asio::strand<asio::io_context::executor_type>;

// A registered memory region.
struct Registered {
  char* data = nullptr;
  size_t size = 0;
  ibv_mr* mr = nullptr;
};

// Registered buffers of one protection domain, reused by size class.
class BufferPool {
 public:
  BufferPool(ibv_pd* pd, int access) : pd_(pd), access_(access) {}
  ~BufferPool() {
    for (auto& [size, list] : free_) {
      for (Registered& buffer : list) Destroy(buffer);
    }
  }
  Result<Registered> Acquire(size_t size) {
    size_t rounded = 64 * 1024;
    while (rounded < size) rounded *= 2;
    auto& list = free_[rounded];
    if (!list.empty()) {
      Registered buffer = list.back();
      list.pop_back();
      return buffer;
    }
    Registered buffer;
    buffer.size = rounded;
    buffer.data = static_cast<char*>(std::aligned_alloc(4096, rounded));
    if (buffer.data == nullptr) return Status(ENOMEM, "cannot allocate an RDMA buffer");
    buffer.mr = ibv_reg_mr(pd_, buffer.data, rounded, access_);
    if (buffer.mr == nullptr) {
      std::free(buffer.data);
      return Status(errno ? errno : ENOMEM, "cannot register RDMA memory");
    }
    return buffer;
  }
  void Release(Registered buffer) {
    auto& list = free_[buffer.size];
    if (list.size() < 8)
      list.push_back(buffer);
    else
      Destroy(buffer);
  }

 private:
  static void Destroy(Registered& buffer) {
    if (buffer.mr) ibv_dereg_mr(buffer.mr);
    std::free(buffer.data);
  }
  ibv_pd* pd_;
  int access_;
  std::map<size_t, std::vector<Registered>> free_;
};

void Put32(char* out, uint32_t value) { std::memcpy(out, &value, 4); }
uint32_t Get32(const char* in) {
  uint32_t value;
  std::memcpy(&value, in, 4);
  return value;
}

// One reliable-connected queue pair with its buffers, credits and
// outstanding one-sided operations. Used by both clients and servers.
class RdmaConnection : public std::enable_shared_from_this<RdmaConnection> {
 public:
  RdmaConnection(Strand strand, rdma_cm_id* id) : strand_(strand), id_(id), cq_watch_(strand) {}
  ~RdmaConnection() { Destroy(); }

  std::function<void(Message, RdmaExt)> on_message;
  std::function<void(Status)> on_failure;

  Status Setup() {
    ibv_context* verbs = id_->verbs;
    if (verbs == nullptr) return Status(ENODEV, "no RDMA device for this address");
    pd_ = ibv_alloc_pd(verbs);
    if (!pd_) return Status(ENOMEM, "ibv_alloc_pd failed");
    channel_ = ibv_create_comp_channel(verbs);
    if (!channel_) return Status(ENOMEM, "ibv_create_comp_channel failed");
    int cq_depth = static_cast<int>(kRecvDepth + kSendQueueDepth);
    cq_ = ibv_create_cq(verbs, cq_depth, nullptr, channel_, 0);
    if (!cq_) return Status(ENOMEM, "ibv_create_cq failed");
    if (ibv_req_notify_cq(cq_, 0) != 0) return Status(EIO, "ibv_req_notify_cq failed");
    ibv_qp_init_attr attr{};
    attr.send_cq = cq_;
    attr.recv_cq = cq_;
    attr.qp_type = IBV_QPT_RC;
    attr.cap.max_send_wr = kSendQueueDepth;
    attr.cap.max_recv_wr = kRecvDepth;
    attr.cap.max_send_sge = 1;
    attr.cap.max_recv_sge = 1;
    if (rdma_create_qp(id_, pd_, &attr) != 0) {
      return Status(errno ? errno : EIO,
                    std::string("rdma_create_qp failed: ") + std::strerror(errno));
    }
    qp_created_ = true;
    bulk_pool_ = std::make_unique<BufferPool>(
        pd_, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_WRITE);
    message_area_.resize((kRecvDepth + kSendBuffers) * kMessageSize);
    message_mr_ =
        ibv_reg_mr(pd_, message_area_.data(), message_area_.size(), IBV_ACCESS_LOCAL_WRITE);
    if (!message_mr_) return Status(ENOMEM, "cannot register message buffers");
    for (size_t i = 0; i < kRecvDepth; ++i) SEALFS_RETURN_IF_ERROR(PostRecv(i));
    for (size_t i = 0; i < kSendBuffers; ++i) free_send_.push_back(i);
    peer_credits_ = kRecvDepth;
    int flags = fcntl(channel_->fd, F_GETFL);
    fcntl(channel_->fd, F_SETFL, flags | O_NONBLOCK);
    cq_watch_.assign(channel_->fd);
    WatchCompletions();
    return Status::Ok();
  }

  rdma_cm_id* id() const { return id_; }
  bool failed() const { return failed_; }
  BufferPool& pool() { return *bulk_pool_; }

  // Queues a message; it goes out when a send buffer and a peer credit exist.
  void Send(FrameHeader header, std::string body, std::string inline_payload, RdmaExt ext) {
    if (failed_) return;
    header.body_length = static_cast<uint32_t>(body.size());
    if (!(header.flags & kFlagPayloadPlaced)) {
      header.payload_length = static_cast<uint32_t>(inline_payload.size());
    }
    queue_.push_back(Outgoing{header, std::move(body), std::move(inline_payload), ext, false});
    Pump();
  }

  // Runs `start` once fewer than kMaxBulkInFlight one-sided transfers are out.
  void WithBulkSlot(std::function<void()> start) {
    if (bulk_in_flight_ < kMaxBulkInFlight) {
      ++bulk_in_flight_;
      start();
    } else {
      bulk_waiting_.push_back(std::move(start));
    }
  }

  // RDMA READ of `length` bytes at the peer's (addr, rkey) into `local`.
  void Read(uint64_t addr, uint32_t rkey, uint32_t length, Registered local,
            std::function<void(Status)> done) {
    PostBulk(IBV_WR_RDMA_READ, local, length, addr, rkey, std::move(done));
    RdmaCounters().rdma_read_ops++;
    RdmaCounters().rdma_read_bytes += length;
  }
  // RDMA WRITE of `length` bytes from `local` to the peer's (addr, rkey).
  void Write(Registered local, uint32_t length, uint64_t addr, uint32_t rkey,
             std::function<void(Status)> done) {
    PostBulk(IBV_WR_RDMA_WRITE, local, length, addr, rkey, std::move(done));
    RdmaCounters().rdma_write_ops++;
    RdmaCounters().rdma_write_bytes += length;
  }

  void Fail(const Status& status) {
    if (failed_) return;
    failed_ = true;
    queue_.clear();
    auto ops = std::move(bulk_ops_);
    bulk_ops_.clear();
    for (auto& [id, done] : ops) done(status);
    bulk_waiting_.clear();
    if (on_failure) on_failure(status);
  }

  void Disconnect() {
    if (id_ && !disconnected_) {
      disconnected_ = true;
      rdma_disconnect(id_);
    }
  }

  // Frees verbs resources; the cm id is destroyed by its owner.
  void Destroy() {
    if (destroyed_) return;
    destroyed_ = true;
    asio::error_code ignored;
    if (cq_watch_.is_open()) {
      cq_watch_.cancel(ignored);
      cq_watch_.release();
    }
    if (qp_created_) rdma_destroy_qp(id_);
    qp_created_ = false;
    bulk_pool_.reset();
    if (message_mr_) ibv_dereg_mr(message_mr_);
    message_mr_ = nullptr;
    if (cq_) ibv_destroy_cq(cq_);
    cq_ = nullptr;
    if (channel_) ibv_destroy_comp_channel(channel_);
    channel_ = nullptr;
    if (pd_) ibv_dealloc_pd(pd_);
    pd_ = nullptr;
  }

 private:
  struct Outgoing {
    FrameHeader header;
    std::string body;
    std::string payload;
    RdmaExt ext;
    bool credits_only;
  };

  char* Slot(size_t index) { return message_area_.data() + index * kMessageSize; }

  Status PostRecv(size_t index) {
    ibv_sge sge{reinterpret_cast<uint64_t>(Slot(index)), static_cast<uint32_t>(kMessageSize),
                message_mr_->lkey};
    ibv_recv_wr wr{};
    wr.wr_id = WorkId(kRecvWork, index);
    wr.sg_list = &sge;
    wr.num_sge = 1;
    ibv_recv_wr* bad = nullptr;
    if (ibv_post_recv(id_->qp, &wr, &bad) != 0) return Status(EIO, "ibv_post_recv failed");
    return Status::Ok();
  }

  void PostBulk(ibv_wr_opcode opcode, Registered local, uint32_t length, uint64_t addr,
                uint32_t rkey, std::function<void(Status)> done) {
    uint64_t op = ++next_bulk_op_;
    bulk_ops_[op] = std::move(done);
    ibv_sge sge{reinterpret_cast<uint64_t>(local.data), length, local.mr->lkey};
    ibv_send_wr wr{};
    wr.wr_id = WorkId(kBulkWork, op);
    wr.opcode = opcode;
    wr.sg_list = &sge;
    wr.num_sge = 1;
    wr.send_flags = IBV_SEND_SIGNALED;
    wr.wr.rdma.remote_addr = addr;
    wr.wr.rdma.rkey = rkey;
    ibv_send_wr* bad = nullptr;
    if (ibv_post_send(id_->qp, &wr, &bad) != 0) {
      Fail(Status(EIO, "posting a one-sided transfer failed"));
    }
  }

  void Pump() {
    while (!failed_ && !queue_.empty() && !free_send_.empty()) {
      Outgoing& next = queue_.front();
      // One credit stays reserved for returning credits, so two peers that
      // both ran out can always tell each other.
      if (next.credits_only ? peer_credits_ < 1 : peer_credits_ < 2) return;
      size_t slot = free_send_.back();
      free_send_.pop_back();
      --peer_credits_;
      char* out = Slot(kRecvDepth + slot);
      Put32(out, static_cast<uint32_t>(to_return_));
      to_return_ = 0;
      size_t length = 4;
      if (next.credits_only) {
        FrameHeader marker;
        marker.flags = kFlagCreditsOnly;
        EncodedHeader header = EncodeHeader(marker);
        std::memcpy(out + 4, header.data(), header.size());
        length = 4 + kFrameHeaderSize;
      } else {
        EncodedHeader header = EncodeHeader(next.header);
        std::memcpy(out + 4, header.data(), header.size());
        std::memcpy(out + 4 + kFrameHeaderSize, &next.ext, sizeof(RdmaExt));
        std::memcpy(out + kPrefix, next.body.data(), next.body.size());
        std::memcpy(out + kPrefix + next.body.size(), next.payload.data(), next.payload.size());
        length = kPrefix + next.body.size() + next.payload.size();
        RdmaCounters().messages_sent++;
        RdmaCounters().bytes_sent += length;
      }
      queue_.pop_front();
      ibv_sge sge{reinterpret_cast<uint64_t>(out), static_cast<uint32_t>(length),
                  message_mr_->lkey};
      ibv_send_wr wr{};
      wr.wr_id = WorkId(kSendWork, slot);
      wr.opcode = IBV_WR_SEND;
      wr.sg_list = &sge;
      wr.num_sge = 1;
      wr.send_flags = IBV_SEND_SIGNALED;
      ibv_send_wr* bad = nullptr;
      if (ibv_post_send(id_->qp, &wr, &bad) != 0) {
        Fail(Status(EIO, "ibv_post_send failed"));
        return;
      }
    }
  }

  void WatchCompletions() {
    cq_watch_.async_wait(asio::posix::stream_descriptor::wait_read,
                         [self = shared_from_this()](const asio::error_code& error) {
                           if (error || self->destroyed_) return;
                           ibv_cq* event_cq = nullptr;
                           void* context = nullptr;
                           while (ibv_get_cq_event(self->channel_, &event_cq, &context) == 0) {
                             ibv_ack_cq_events(event_cq, 1);
                           }
                           ibv_req_notify_cq(self->cq_, 0);
                           self->PollCompletions();
                           if (!self->destroyed_) self->WatchCompletions();
                         });
  }

  void PollCompletions() {
    ibv_wc completions[16];
    int n;
    while (!destroyed_ && (n = ibv_poll_cq(cq_, 16, completions)) > 0) {
      for (int i = 0; i < n && !destroyed_; ++i) HandleCompletion(completions[i]);
    }
  }

  void HandleCompletion(const ibv_wc& wc) {
    WorkType type = TypeOf(wc.wr_id);
    uint64_t index = IndexOf(wc.wr_id);
    if (wc.status != IBV_WC_SUCCESS) {
      if (type == kBulkWork) {
        auto op = bulk_ops_.find(index);
        if (op != bulk_ops_.end()) {
          auto done = std::move(op->second);
          bulk_ops_.erase(op);
          done(Status(EIO,
                      std::string("one-sided transfer failed: ") + ibv_wc_status_str(wc.status)));
        }
      }
      Fail(Status(wc.status == IBV_WC_WR_FLUSH_ERR ? ECONNRESET : EIO,
                  std::string("RDMA work completion: ") + ibv_wc_status_str(wc.status)));
      return;
    }
    switch (type) {
      case kRecvWork:
        HandleReceive(index, wc.byte_len);
        break;
      case kSendWork:
        free_send_.push_back(index);
        Pump();
        break;
      case kBulkWork: {
        auto op = bulk_ops_.find(index);
        if (op == bulk_ops_.end()) break;
        auto done = std::move(op->second);
        bulk_ops_.erase(op);
        --bulk_in_flight_;
        if (!bulk_waiting_.empty()) {
          auto start = std::move(bulk_waiting_.front());
          bulk_waiting_.pop_front();
          ++bulk_in_flight_;
          start();
        }
        done(Status::Ok());
        break;
      }
    }
  }

  void HandleReceive(size_t slot, uint32_t length) {
    const char* in = Slot(slot);
    if (length < 4 + kFrameHeaderSize) {
      Fail(Status(EPROTO, "RDMA message too short"));
      return;
    }
    peer_credits_ += Get32(in);
    Result<FrameHeader> header = DecodeHeader(in + 4, kFrameHeaderSize);
    if (!header.ok()) {
      Fail(Status(EPROTO, "bad RDMA message: " + header.status().message()));
      return;
    }
    std::optional<Message> message;
    RdmaExt ext;
    if (!(header->flags & kFlagCreditsOnly)) {
      size_t inline_payload = (header->flags & kFlagPayloadPlaced) ? 0 : header->payload_length;
      if (length < kPrefix || header->body_length + inline_payload > length - kPrefix) {
        Fail(Status(EPROTO, "RDMA message lengths do not match"));
        return;
      }
      std::memcpy(&ext, in + 4 + kFrameHeaderSize, sizeof ext);
      message.emplace();
      message->header = *header;
      message->body.assign(in + kPrefix, header->body_length);
      message->payload.assign(in + kPrefix + header->body_length, inline_payload);
    }
    if (!PostRecv(slot).ok()) {
      Fail(Status(EIO, "reposting a receive buffer failed"));
      return;
    }
    ++to_return_;
    if (to_return_ >= kRecvDepth / 2 && !credit_update_queued()) {
      queue_.push_front(Outgoing{{}, {}, {}, {}, true});
    }
    Pump();
    if (message && on_message) on_message(std::move(*message), ext);
  }

  bool credit_update_queued() const { return !queue_.empty() && queue_.front().credits_only; }

  Strand strand_;
  rdma_cm_id* id_;
  asio::posix::stream_descriptor cq_watch_;
  ibv_pd* pd_ = nullptr;
  ibv_comp_channel* channel_ = nullptr;
  ibv_cq* cq_ = nullptr;
  bool qp_created_ = false;
  ibv_mr* message_mr_ = nullptr;
  std::vector<char> message_area_;
  std::unique_ptr<BufferPool> bulk_pool_;
  std::vector<size_t> free_send_;
  std::deque<Outgoing> queue_;
  size_t peer_credits_ = 0;
  size_t to_return_ = 0;
  size_t bulk_in_flight_ = 0;
  std::deque<std::function<void()>> bulk_waiting_;
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
  Status Open() {
    channel_ = rdma_create_event_channel();
    if (!channel_)
      return Status(ENODEV, std::string("rdma_create_event_channel: ") + std::strerror(errno));
    int flags = fcntl(channel_->fd, F_GETFL);
    fcntl(channel_->fd, F_SETFL, flags | O_NONBLOCK);
    watch_.assign(channel_->fd);
    return Status::Ok();
  }
  rdma_event_channel* channel() { return channel_; }
  // Calls on_event for each event until it returns false or the channel closes.
  void Watch(std::function<void(rdma_cm_event*)> on_event) {
    on_event_ = std::move(on_event);
    Arm();
  }
  void Close() {
    if (!channel_) return;
    asio::error_code ignored;
    watch_.cancel(ignored);
    watch_.release();
    rdma_destroy_event_channel(channel_);
    channel_ = nullptr;
  }

 private:
  void Arm() {
    watch_.async_wait(asio::posix::stream_descriptor::wait_read,
                      [this, alive = alive_](const asio::error_code& error) {
                        if (error || !*alive || !channel_) return;
                        rdma_cm_event* event = nullptr;
                        while (*alive && channel_ && rdma_get_cm_event(channel_, &event) == 0)
                          on_event_(event);
                        if (channel_ && *alive) Arm();
                      });
  }
  asio::posix::stream_descriptor watch_;
  rdma_event_channel* channel_ = nullptr;
  std::function<void(rdma_cm_event*)> on_event_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);

 public:
  void Kill() { *alive_ = false; }
};

Result<sockaddr_storage> Resolve(const std::string& address) {
  auto parsed = ParseAddress(address);
  if (!parsed.ok()) return parsed.status();
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* result = nullptr;
  if (getaddrinfo(parsed->first.c_str(), std::to_string(parsed->second).c_str(), &hints, &result) !=
          0 ||
      result == nullptr) {
    return Status(EHOSTUNREACH, "cannot resolve " + address);
  }
  sockaddr_storage storage{};
  std::memcpy(&storage, result->ai_addr, result->ai_addrlen);
  freeaddrinfo(result);
  return storage;
}

const char* kNoDevice = "no RDMA device on this host";

}  // namespace

bool RdmaDeviceAvailable(std::string* reason) {
  int count = 0;
  ibv_device** devices = ibv_get_device_list(&count);
  if (devices) ibv_free_device_list(devices);
  if (count > 0) return true;
  if (reason) *reason = kNoDevice;
  return false;
}

namespace {

// ---------------------------------------------------------------- client side

class RdmaChannel : public Channel, public std::enable_shared_from_this<RdmaChannel> {
 public:
  RdmaChannel(asio::io_context& io, std::string address)
      : strand_(asio::make_strand(io)), address_(std::move(address)) {}
  ~RdmaChannel() override { Teardown(); }

  const std::string& address() const override { return address_; }

  void CallAsync(ServiceId service, uint16_t method, std::string body, std::string_view payload,
                 CallOptions options, ReplyCallback on_reply) override {
    if (body.size() > kMaxInline || payload.size() > kMaxPayloadSize) {
      on_reply(Status(EMSGSIZE, "request exceeds the RDMA message or payload limits"));
      return;
    }
    asio::post(strand_, [self = shared_from_this(), service, method, body = std::move(body),
                         payload, options, on_reply = std::move(on_reply)]() mutable {
      self->StartCall(service, method, std::move(body), payload, options, std::move(on_reply));
    });
  }

 private:
  struct Pending {
    ReplyCallback on_reply;
    std::unique_ptr<asio::steady_timer> timer;
    std::optional<Registered> source;  // request payload the server reads
    std::optional<Registered> reply;   // buffer the server writes
    // Not yet sent: waiting for the connection.
    std::optional<std::function<void()>> send;
  };

  void StartCall(ServiceId service, uint16_t method, std::string body, std::string_view payload,
                 CallOptions options, ReplyCallback on_reply) {
    uint64_t id = ++next_request_id_;
    Pending pending;
    pending.on_reply = std::move(on_reply);
    pending.timer = std::make_unique<asio::steady_timer>(strand_, options.timeout);
    pending.timer->async_wait([self = shared_from_this(), id](const asio::error_code& error) {
      if (!error)
        self->Complete(id, Status(ETIMEDOUT, "no reply from " + self->address_ + " in time"));
    });
    FrameHeader header;
    header.service = static_cast<uint16_t>(service);
    header.method = method;
    header.request_id = id;
    header.payload_length = static_cast<uint32_t>(payload.size());
    size_t hint = options.reply_payload_hint;
    // `payload` stays valid until the call completes, and Complete drops this
    // closure first, so the bytes are copied once: into the message, or into
    // the registered buffer the server will RDMA-READ.
    pending.send = [this, id, header, body = std::move(body), payload, hint]() mutable {
      auto found = pending_.find(id);
      if (found == pending_.end()) return;
      RdmaExt ext;
      std::string inline_payload;
      if (body.size() + payload.size() <= kMaxInline) {
        inline_payload.assign(payload);
      } else {
        auto buffer = connection_->pool().Acquire(payload.size());
        if (!buffer.ok()) return Complete(id, buffer.status());
        std::memcpy(buffer->data, payload.data(), payload.size());
        ext.src_addr = reinterpret_cast<uint64_t>(buffer->data);
        ext.src_rkey = buffer->mr->rkey;
        ext.src_length = static_cast<uint32_t>(payload.size());
        found->second.source = *buffer;
      }
      if (hint > kMaxInline - 4096) {
        auto buffer = connection_->pool().Acquire(hint);
        if (!buffer.ok()) return Complete(id, buffer.status());
        ext.dst_addr = reinterpret_cast<uint64_t>(buffer->data);
        ext.dst_rkey = buffer->mr->rkey;
        ext.dst_capacity = static_cast<uint32_t>(hint);
        found->second.reply = *buffer;
      }
      connection_->Send(header, std::move(body), std::move(inline_payload), ext);
    };
    pending_.emplace(id, std::move(pending));
    if (state_ == State::kConnected) {
      auto send = std::move(*pending_[id].send);
      pending_[id].send.reset();
      send();
    } else if (state_ == State::kIdle) {
      Connect();
    }
  }

  void Complete(uint64_t id, Result<Message> result) {
    auto found = pending_.find(id);
    if (found == pending_.end()) return;
    Pending pending = std::move(found->second);
    pending_.erase(found);
    pending.timer->cancel();
    // Buffers the server may still touch are dropped with the connection,
    // never reused while a transfer could be in flight.
    bool settled = result.ok();
    if (connection_ && settled) {
      if (pending.source) connection_->pool().Release(*pending.source);
      if (pending.reply) connection_->pool().Release(*pending.reply);
    } else {
      if (pending.source) quarantine_.push_back(*pending.source);
      if (pending.reply) quarantine_.push_back(*pending.reply);
    }
    pending.on_reply(std::move(result));
  }

  void FailAll(const Status& status) {
    std::vector<uint64_t> ids;
    for (auto& [id, pending] : pending_) ids.push_back(id);
    for (uint64_t id : ids) Complete(id, status);
    Teardown();
    state_ = State::kIdle;
  }

  void Connect() {
    std::string reason;
    if (!RdmaDeviceAvailable(&reason)) return FailAll(Status(ENODEV, reason));
    auto address = Resolve(address_);
    if (!address.ok()) return FailAll(address.status());
    state_ = State::kConnecting;
    events_ = std::make_unique<CmEvents>(strand_);
    Status opened = events_->Open();
    if (!opened.ok()) return FailAll(opened);
    if (rdma_create_id(events_->channel(), &id_, nullptr, RDMA_PS_TCP) != 0) {
      return FailAll(Status(errno, "rdma_create_id failed"));
    }
    std::weak_ptr<RdmaChannel> weak = shared_from_this();
    events_->Watch([weak](rdma_cm_event* event) {
      auto self = weak.lock();
      rdma_cm_event copy = *event;
      rdma_ack_cm_event(event);
      if (self) self->OnEvent(copy);
    });
    if (rdma_resolve_addr(id_, nullptr, reinterpret_cast<sockaddr*>(&*address),
                          kResolveTimeoutMs) != 0) {
      return FailAll(Status(
          EHOSTUNREACH, "cannot resolve RDMA address " + address_ + ": " + std::strerror(errno)));
    }
  }

  void OnEvent(const rdma_cm_event& event) {
    switch (event.event) {
      case RDMA_CM_EVENT_ADDR_RESOLVED:
        if (rdma_resolve_route(id_, kResolveTimeoutMs) != 0) {
          FailAll(Status(EHOSTUNREACH, "cannot resolve an RDMA route to " + address_));
        }
        break;
      case RDMA_CM_EVENT_ROUTE_RESOLVED: {
        connection_ = std::make_shared<RdmaConnection>(strand_, id_);
        Status setup = connection_->Setup();
        if (!setup.ok()) return FailAll(setup);
        std::weak_ptr<RdmaChannel> weak = shared_from_this();
        connection_->on_message = [weak](Message message, RdmaExt) {
          if (auto self = weak.lock()) self->OnReply(std::move(message));
        };
        connection_->on_failure = [weak](Status status) {
          if (auto self = weak.lock()) {
            asio::post(self->strand_, [self, status] { self->FailAll(status); });
          }
        };
        rdma_conn_param param{};
        param.initiator_depth = 16;
        param.responder_resources = 16;
        param.retry_count = 7;
        param.rnr_retry_count = 7;
        if (rdma_connect(id_, &param) != 0) FailAll(Status(ECONNREFUSED, "rdma_connect failed"));
        break;
      }
      case RDMA_CM_EVENT_ESTABLISHED: {
        state_ = State::kConnected;
        std::vector<std::function<void()>> sends;
        for (auto& [id, pending] : pending_) {
          if (pending.send) {
            sends.push_back(std::move(*pending.send));
            pending.send.reset();
          }
        }
        for (auto& send : sends) send();
        break;
      }
      case RDMA_CM_EVENT_REJECTED:
        FailAll(Status(ECONNREFUSED, "RDMA connection to " + address_ + " refused"));
        break;
      case RDMA_CM_EVENT_DISCONNECTED:
      case RDMA_CM_EVENT_DEVICE_REMOVAL:
        FailAll(Status(ECONNRESET, "RDMA connection to " + address_ + " lost"));
        break;
      case RDMA_CM_EVENT_ADDR_ERROR:
      case RDMA_CM_EVENT_ROUTE_ERROR:
      case RDMA_CM_EVENT_UNREACHABLE:
      case RDMA_CM_EVENT_CONNECT_ERROR:
        FailAll(Status(EHOSTUNREACH, std::string("RDMA connection to ") + address_ +
                                         " failed: " + rdma_event_str(event.event)));
        break;
      default:
        break;
    }
  }

  void OnReply(Message message) {
    auto found = pending_.find(message.header.request_id);
    if (found == pending_.end()) return;
    if (message.header.flags & kFlagPayloadPlaced) {
      if (!found->second.reply || message.header.payload_length > found->second.reply->size) {
        return Complete(found->first,
                        Status(EPROTO, "server placed a reply payload we did not offer"));
      }
      message.payload.assign(found->second.reply->data, message.header.payload_length);
    }
    Complete(found->first, std::move(message));
  }

  void Teardown() {
    if (connection_) {
      connection_->on_failure = nullptr;
      connection_->on_message = nullptr;
      connection_->Disconnect();
    }
    // The queue pair is disconnected: the server can no longer reach these.
    for (Registered& buffer : quarantine_) {
      ibv_dereg_mr(buffer.mr);
      std::free(buffer.data);
    }
    quarantine_.clear();
    if (connection_) {
      connection_->Destroy();
      connection_.reset();
    }
    if (events_) {
      events_->Kill();
      // We may be running inside its callback: destroy it afterwards.
      asio::post(strand_, [retired = std::shared_ptr<CmEvents>(std::move(events_))] {});
    }
    if (id_) {
      rdma_destroy_id(id_);
      id_ = nullptr;
    }
  }

  enum class State { kIdle, kConnecting, kConnected };
  Strand strand_;
  std::string address_;
  State state_ = State::kIdle;
  uint64_t next_request_id_ = 0;
  std::unique_ptr<CmEvents> events_;
  rdma_cm_id* id_ = nullptr;
  std::shared_ptr<RdmaConnection> connection_;
  std::unordered_map<uint64_t, Pending> pending_;
  std::vector<Registered> quarantine_;
};

// ---------------------------------------------------------------- server side

class RdmaServer : public ServerTransport {
 public:
  RdmaServer(asio::io_context& io, RequestSink& sink)
      : io_(io), strand_(asio::make_strand(io)), sink_(sink) {}
  ~RdmaServer() override { Stop(); }

  Status Listen(const std::string& host, uint16_t port) override {
    std::string reason;
    if (!RdmaDeviceAvailable(&reason)) return Status(ENODEV, reason);
    auto address = Resolve(host + ":" + std::to_string(port));
    if (!address.ok()) return address.status();
    events_ = std::make_unique<CmEvents>(strand_);
    SEALFS_RETURN_IF_ERROR(events_->Open());
    if (rdma_create_id(events_->channel(), &listen_id_, nullptr, RDMA_PS_TCP) != 0) {
      return Status(errno, "rdma_create_id failed");
    }
    if (rdma_bind_addr(listen_id_, reinterpret_cast<sockaddr*>(&*address)) != 0) {
      return Status(errno, "cannot bind RDMA listener to " + host + ":" + std::to_string(port) +
                               ": " + std::strerror(errno));
    }
    if (rdma_listen(listen_id_, 64) != 0) return Status(errno, "rdma_listen failed");
    port_ = ntohs(rdma_get_src_port(listen_id_));
    events_->Watch([this](rdma_cm_event* event) { OnEvent(event); });
    return Status::Ok();
  }

  uint16_t port() const override { return port_; }

  void Stop() override {
    if (!events_) return;
    std::promise<void> done;
    auto future = done.get_future();
    auto stop = [this, &done] {
      for (auto& [id, connection] : connections_) {
        connection->Disconnect();
        connection->Destroy();
        rdma_destroy_id(id);
      }
      connections_.clear();
      if (events_) events_->Kill();
      if (listen_id_) rdma_destroy_id(listen_id_);
      listen_id_ = nullptr;
      events_.reset();
      done.set_value();
    };
    // Once the event loop has stopped nothing else runs: stop inline.
    if (io_.stopped())
      stop();
    else
      asio::post(strand_, stop);
    future.wait();
  }

 private:
  void OnEvent(rdma_cm_event* event) {
    rdma_cm_id* id = event->id;
    switch (event->event) {
      case RDMA_CM_EVENT_CONNECT_REQUEST: {
        auto connection = std::make_shared<RdmaConnection>(strand_, id);
        Status setup = connection->Setup();
        rdma_ack_cm_event(event);
        if (!setup.ok()) {
          std::fprintf(stderr, "rdma: refusing a connection: %s\n", setup.ToString().c_str());
          connection->Destroy();
          rdma_reject(id, nullptr, 0);
          rdma_destroy_id(id);
          return;
        }
        std::weak_ptr<RdmaConnection> weak = connection;
        connection->on_message = [this, weak](Message message, RdmaExt ext) {
          if (auto connection = weak.lock()) OnRequest(connection, std::move(message), ext);
        };
        connection->on_failure = [this, id](Status status) {
          std::fprintf(stderr, "rdma: connection failed: %s\n", status.ToString().c_str());
          asio::post(strand_, [this, id] { Drop(id); });
        };
        rdma_conn_param param{};
        param.initiator_depth = 16;
        param.responder_resources = 16;
        param.rnr_retry_count = 7;
        if (rdma_accept(id, &param) != 0) {
          connection->Destroy();
          rdma_destroy_id(id);
          return;
        }
        connections_[id] = connection;
        return;
      }
      case RDMA_CM_EVENT_DISCONNECTED:
      case RDMA_CM_EVENT_DEVICE_REMOVAL:
        rdma_ack_cm_event(event);
        Drop(id);
        return;
      default:
        rdma_ack_cm_event(event);
        return;
    }
  }

  void Drop(rdma_cm_id* id) {
    auto found = connections_.find(id);
    if (found == connections_.end()) return;
    auto connection = found->second;
    connections_.erase(found);
    connection->on_message = nullptr;
    connection->on_failure = nullptr;
    connection->Disconnect();
    connection->Destroy();
    rdma_destroy_id(id);
  }

  void OnRequest(std::shared_ptr<RdmaConnection> connection, Message request, RdmaExt ext) {
    if (request.header.is_response()) {
      connection->Fail(Status(EPROTO, "server received a response"));
      return;
    }
    if (ext.src_length == 0) return Dispatch(connection, std::move(request), ext);
    if (ext.src_length > kMaxPayloadSize) {
      connection->Fail(Status(EMSGSIZE, "request payload exceeds the limit"));
      return;
    }
    // Pull the payload from the client's memory, then run the request.
    auto shared_request = std::make_shared<Message>(std::move(request));
    std::weak_ptr<RdmaConnection> weak = connection;
    connection->WithBulkSlot([this, weak, shared_request, ext] {
      auto connection = weak.lock();
      if (!connection) return;
      auto buffer = connection->pool().Acquire(ext.src_length);
      if (!buffer.ok()) return connection->Fail(buffer.status());
      Registered local = *buffer;
      connection->Read(ext.src_addr, ext.src_rkey, ext.src_length, local,
                       [this, weak, shared_request, ext, local](Status status) {
                         auto connection = weak.lock();
                         if (!connection) return;
                         if (!status.ok()) return;  // the connection has failed
                         shared_request->payload.assign(local.data, ext.src_length);
                         connection->pool().Release(local);
                         Dispatch(connection, std::move(*shared_request), ext);
                       });
    });
  }

  void Dispatch(std::shared_ptr<RdmaConnection> connection, Message request, RdmaExt ext) {
    std::weak_ptr<RdmaConnection> weak = connection;
    sink_.Submit(std::move(request), "rdma", [this, weak, ext](Message reply) {
      asio::post(strand_, [this, weak, ext, reply = std::move(reply)]() mutable {
        if (auto connection = weak.lock()) SendReply(connection, std::move(reply), ext);
      });
    });
  }

  void SendReply(std::shared_ptr<RdmaConnection> connection, Message reply, RdmaExt ext) {
    if (connection->failed()) return;
    if (reply.body.size() + reply.payload.size() <= kMaxInline) {
      connection->Send(reply.header, std::move(reply.body), std::move(reply.payload), {});
      return;
    }
    if (reply.payload.size() > ext.dst_capacity || reply.body.size() > kMaxInline) {
      Message error;
      error.header = reply.header;
      error.header.status = EMSGSIZE;
      connection->Send(error.header, "reply payload larger than the buffer the client offered", {},
                       {});
      return;
    }
    // Push the payload into the client's buffer, then send the reply frame.
    auto shared_reply = std::make_shared<Message>(std::move(reply));
    std::weak_ptr<RdmaConnection> weak = connection;
    connection->WithBulkSlot([weak, shared_reply, ext] {
      auto connection = weak.lock();
      if (!connection) return;
      auto buffer = connection->pool().Acquire(shared_reply->payload.size());
      if (!buffer.ok()) return connection->Fail(buffer.status());
      Registered local = *buffer;
      std::memcpy(local.data, shared_reply->payload.data(), shared_reply->payload.size());
      uint32_t length = static_cast<uint32_t>(shared_reply->payload.size());
      connection->Write(local, length, ext.dst_addr, ext.dst_rkey,
                        [weak, shared_reply, local, length](Status status) {
                          auto connection = weak.lock();
                          if (!connection || !status.ok()) return;
                          connection->pool().Release(local);
                          FrameHeader header = shared_reply->header;
                          header.flags |= kFlagPayloadPlaced;
                          header.payload_length = length;
                          connection->Send(header, std::move(shared_reply->body), {}, {});
                        });
    });
  }

  asio::io_context& io_;
  Strand strand_;
  RequestSink& sink_;
  std::unique_ptr<CmEvents> events_;
  rdma_cm_id* listen_id_ = nullptr;
  uint16_t port_ = 0;
  std::map<rdma_cm_id*, std::shared_ptr<RdmaConnection>> connections_;
};

// Tries RDMA first; after a connection-level failure uses TCP for good.
class AutoChannel : public Channel, public std::enable_shared_from_this<AutoChannel> {
 public:
  AutoChannel(IoThreads& io, std::string address)
      : address_(std::move(address)), tcp_(MakeTcpChannel(io, address_)) {
    std::string reason;
    if (RdmaDeviceAvailable(&reason)) rdma_ = MakeRdmaChannel(io, address_);
    use_rdma_ = rdma_ != nullptr;
  }
  const std::string& address() const override { return address_; }
  void CallAsync(ServiceId service, uint16_t method, std::string body, std::string_view payload,
                 CallOptions options, ReplyCallback on_reply) override {
    if (!use_rdma_.load()) {
      return tcp_->CallAsync(service, method, std::move(body), payload, options,
                             std::move(on_reply));
    }
    auto self = shared_from_this();
    std::string body_copy = body;
    rdma_->CallAsync(service, method, std::move(body), payload, options,
                     [self, service, method, body_copy = std::move(body_copy), payload, options,
                      on_reply = std::move(on_reply)](Result<Message> reply) mutable {
                       int code = reply.ok() ? 0 : reply.status().code();
                       if (code == ENODEV || code == ECONNREFUSED || code == EHOSTUNREACH) {
                         self->use_rdma_ = false;
                         return self->tcp_->CallAsync(service, method, std::move(body_copy),
                                                      payload, options, std::move(on_reply));
                       }
                       on_reply(std::move(reply));
                     });
  }

 private:
  std::string address_;
  std::shared_ptr<Channel> tcp_;
  std::shared_ptr<Channel> rdma_;
  std::atomic<bool> use_rdma_{false};
};

}  // namespace

std::shared_ptr<Channel> MakeRdmaChannel(IoThreads& io, const std::string& address) {
  return std::make_shared<RdmaChannel>(io.context(), address);
}

std::unique_ptr<ServerTransport> MakeRdmaServer(IoThreads& io, RequestSink& sink) {
  return std::make_unique<RdmaServer>(io.context(), sink);
}

std::shared_ptr<Channel> MakeChannel(IoThreads& io, const std::string& address,
                                     TransportKind kind) {
  switch (kind) {
    case TransportKind::kRdma:
      return MakeRdmaChannel(io, address);
    case TransportKind::kAuto: {
      auto channel = std::make_shared<AutoChannel>(io, address);
      return channel;
    }
    case TransportKind::kTcp:
    default:
      return MakeTcpChannel(io, address);
  }
}

Status Listeners::Listen(IoThreads& io, RequestSink& sink, const std::string& host, uint16_t port,
                         TransportKind kind) {
  tcp_ = MakeTcpServer(io, sink);
  SEALFS_RETURN_IF_ERROR(tcp_->Listen(host, port));
  if (kind == TransportKind::kTcp) return Status::Ok();
  std::string reason;
  if (kind == TransportKind::kAuto && !RdmaDeviceAvailable(&reason)) return Status::Ok();
  rdma_ = MakeRdmaServer(io, sink);
  Status listening = rdma_->Listen(host, tcp_->port());
  if (!listening.ok()) {
    rdma_.reset();
    if (kind == TransportKind::kRdma) return listening;
  }
  return Status::Ok();
}

void Listeners::Stop() {
  if (tcp_) tcp_->Stop();
  if (rdma_) rdma_->Stop();
}

}  // namespace sealfs::rpc
