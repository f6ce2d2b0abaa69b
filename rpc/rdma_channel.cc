// The RDMA client: one channel, one connection at a time, every call and
// event on the channel's strand.
#include <cstring>
#include <optional>
#include <unordered_map>
#include <utility>

#include "rdma_connection.h"
#include "sealfs/rpc/rdma_transport.h"

namespace sealfs::rpc::rdma {
namespace {

// Buffers of calls that timed out while the server may still touch them are
// held until the server answers late or the connection goes; past this many
// bytes the channel reconnects, which frees them all.
constexpr size_t kMaxQuarantineBytes = 64u << 20;

// Spreads client completion queues over the device's vectors.
std::atomic<unsigned> next_comp_vector{0};

class RdmaChannel : public Channel, public std::enable_shared_from_this<RdmaChannel> {
 public:
  RdmaChannel(asio::io_context& io, std::string address)
      : io_(io), strand_(asio::make_strand(io)), address_(std::move(address)) {}
  ~RdmaChannel() override { TeardownFromDestructor(); }

  const std::string& address() const override { return address_; }

  void CallAsync(ServiceId service, uint16_t method, std::string body, std::string_view payload,
                 CallOptions options, ReplyCallback on_reply) override {
    if (body.size() > kMaxInline || payload.size() > kMaxPayloadSize) {
      on_reply(Status(EMSGSIZE, "request exceeds the RDMA message or payload limits"));
      return;
    }
    if (options.reply_payload_hint > kMaxPayloadSize) {
      on_reply(Status(EMSGSIZE, "reply payload hint of " +
                                    std::to_string(options.reply_payload_hint) +
                                    " bytes exceeds the payload limit"));
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
    // Not yet handed to the connection: waiting for it to be established.
    std::optional<std::function<void()>> send;
  };
  struct Quarantined {
    BufferUse use;
    Registered buffer;
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
    // `payload` stays valid until the call completes, and Complete takes a
    // still-queued message back, so the bytes are copied once: into the send
    // buffer, or into the registered buffer the server will RDMA-READ.
    pending.send = [this, id, header, body = std::move(body), payload, hint]() mutable {
      auto found = pending_.find(id);
      if (found == pending_.end() || !connection_) return;
      RdmaExt ext;
      std::string_view inline_payload;
      if (body.size() + payload.size() <= kMaxInline) {
        inline_payload = payload;
      } else {
        auto buffer = connection_->AcquireBuffer(BufferUse::kPeerReads, payload.size());
        if (!buffer.ok()) return Complete(id, buffer.status());
        std::memcpy(buffer->data, payload.data(), payload.size());
        ext.src_addr = reinterpret_cast<uint64_t>(buffer->data);
        ext.src_rkey = buffer->mr->rkey;
        ext.src_length = static_cast<uint32_t>(payload.size());
        found->second.source = *buffer;
      }
      if (hint > kMaxInline - 4096) {
        auto buffer = connection_->AcquireBuffer(BufferUse::kPeerWrites, hint);
        if (!buffer.ok()) return Complete(id, buffer.status());
        ext.dst_addr = reinterpret_cast<uint64_t>(buffer->data);
        ext.dst_rkey = buffer->mr->rkey;
        ext.dst_capacity = static_cast<uint32_t>(hint);
        found->second.reply = *buffer;
      }
      connection_->Send(header, std::move(body), {}, ext, inline_payload);
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
    bool handed_over = !pending.send.has_value();
    // A request still queued is taken back: it is never sent, and the server
    // never saw its buffers.
    bool server_done =
        result.ok() || !handed_over || !connection_ || (connection_ && connection_->Cancel(id));
    if (connection_ && server_done) {
      if (pending.source) connection_->ReleaseBuffer(BufferUse::kPeerReads, *pending.source);
      if (pending.reply) connection_->ReleaseBuffer(BufferUse::kPeerWrites, *pending.reply);
    } else if (connection_) {
      // The server may still read or write these: never reuse them until it
      // answers or the connection is gone.
      auto& held = quarantine_[id];
      if (pending.source) held.push_back({BufferUse::kPeerReads, *pending.source});
      if (pending.reply) held.push_back({BufferUse::kPeerWrites, *pending.reply});
      for (auto& entry : held) quarantine_bytes_ += entry.buffer.size;
      if (held.empty()) quarantine_.erase(id);
      if (quarantine_bytes_ > kMaxQuarantineBytes) ScheduleReconnect();
    }
    pending.on_reply(std::move(result));
  }

  void ScheduleReconnect() {
    asio::post(strand_, [self = shared_from_this(), generation = generation_] {
      if (self->generation_ != generation || self->quarantine_bytes_ <= kMaxQuarantineBytes) return;
      self->FailAll(
          Status(ECONNRESET, "RDMA connection to " + self->address_ +
                                 " reset: too much memory held for calls that timed out"));
    });
  }

  void ReleaseQuarantined(uint64_t id) {
    auto found = quarantine_.find(id);
    if (found == quarantine_.end()) return;
    for (auto& entry : found->second) {
      quarantine_bytes_ -= entry.buffer.size;
      connection_->ReleaseBuffer(entry.use, entry.buffer);
    }
    quarantine_.erase(found);
  }

  void FailAll(const Status& status) {
    std::vector<uint64_t> ids;
    for (auto& [id, pending] : pending_) ids.push_back(id);
    for (uint64_t id : ids) Complete(id, status);
    Teardown();
    state_ = State::kIdle;
  }

  void Connect() {
    ++generation_;
    std::string reason;
    if (!RdmaDeviceAvailable(&reason)) return FailAll(Status(ENODEV, reason));
    auto address = Resolve(address_);
    if (!address.ok()) return FailAll(address.status());
    state_ = State::kConnecting;
    events_ = std::make_unique<CmEvents>(strand_);
    Status opened = events_->Open();
    if (!opened.ok()) return FailAll(opened);
    if (rdma_create_id(events_->channel(), &id_, nullptr, RDMA_PS_TCP) != 0) {
      id_ = nullptr;
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
        Status setup = connection_->Setup(next_comp_vector++);
        if (!setup.ok()) return FailAll(setup);
        std::weak_ptr<RdmaChannel> weak = shared_from_this();
        connection_->on_message = [weak](Message message, RdmaExt) {
          if (auto self = weak.lock()) self->OnReply(std::move(message));
        };
        // Runs inside the connection: fail the calls once it has returned,
        // and only if this is still the connection of that attempt.
        connection_->on_failure = [weak, generation = generation_](Status status) {
          if (auto self = weak.lock()) {
            asio::post(self->strand_, [self, generation, status] {
              if (self->generation_ == generation) self->FailAll(status);
            });
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
    uint64_t id = message.header.request_id;
    auto found = pending_.find(id);
    if (found == pending_.end()) {
      // A late answer to a call that timed out: the server is done with its
      // buffers (its RDMA WRITE precedes this SEND on the queue pair).
      ReleaseQuarantined(id);
      return;
    }
    if (message.header.flags & kFlagPayloadPlaced) {
      if (!found->second.reply || message.header.payload_length > found->second.reply->size) {
        return Complete(id, Status(EPROTO, "server placed a reply payload we did not offer"));
      }
      // The reply is read where the server wrote it; the buffer comes back
      // to the pool once the caller is done with the payload.
      message.payload = connection_->domain()->Lend(BufferUse::kPeerWrites, *found->second.reply,
                                                    message.header.payload_length);
      found->second.reply.reset();
    }
    Complete(id, std::move(message));
  }

  // What one connection attempt holds, torn down in order when dropped: the
  // queue pair stops before the buffers it could reach are freed, and the
  // cm id is destroyed before its event channel.
  struct Retired {
    std::shared_ptr<RdmaConnection> connection;
    rdma_cm_id* id = nullptr;
    std::unique_ptr<CmEvents> events;
    std::unordered_map<uint64_t, std::vector<Quarantined>> quarantine;
    ~Retired() {
      if (connection) connection->Disconnect();
      for (auto& [request, held] : quarantine) {
        for (auto& entry : held) FreeRegistered(entry.buffer);
      }
      if (connection) connection->Destroy();
      if (id) rdma_destroy_id(id);
      // Safe inside the watcher's own callback: it calls a copy of itself.
      events.reset();
    }
  };

  std::shared_ptr<Retired> Retire() {
    auto retired = std::make_shared<Retired>();
    if (connection_) {
      connection_->on_failure = nullptr;
      connection_->on_message = nullptr;
    }
    retired->connection = std::move(connection_);
    retired->id = std::exchange(id_, nullptr);
    retired->events = std::move(events_);
    retired->quarantine = std::move(quarantine_);
    quarantine_.clear();
    quarantine_bytes_ = 0;
    return retired;
  }

  // On the strand.
  void Teardown() { Retire(); }

  // The last owner may let go on any thread: the connection's own handlers
  // may still be running on the strand, so the teardown runs there; once the
  // event loop has stopped nothing runs and it happens here.
  void TeardownFromDestructor() {
    auto retired = Retire();
    if (!io_.stopped() && !strand_.running_in_this_thread()) {
      asio::post(strand_, [retired = std::move(retired)] {});
    }
  }

  enum class State { kIdle, kConnecting, kConnected };
  asio::io_context& io_;
  Strand strand_;
  std::string address_;
  State state_ = State::kIdle;
  uint64_t next_request_id_ = 0;
  // Counts connection attempts; late callbacks of an earlier one are ignored.
  uint64_t generation_ = 0;
  std::unique_ptr<CmEvents> events_;
  rdma_cm_id* id_ = nullptr;
  std::shared_ptr<RdmaConnection> connection_;
  std::unordered_map<uint64_t, Pending> pending_;
  std::unordered_map<uint64_t, std::vector<Quarantined>> quarantine_;
  size_t quarantine_bytes_ = 0;
};

}  // namespace

std::shared_ptr<Channel> NewRdmaChannel(asio::io_context& io, const std::string& address) {
  return std::make_shared<RdmaChannel>(io, address);
}

}  // namespace sealfs::rpc::rdma
