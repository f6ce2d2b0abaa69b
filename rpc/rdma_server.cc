// The RDMA server: a listener whose CM events run on one strand, and one
// strand per connection for its completions, transfers and replies, so
// connections are served in parallel.
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <future>
#include <map>
#include <mutex>

#include "rdma_connection.h"
#include "sealfs/rpc/rdma_transport.h"

namespace sealfs::rpc::rdma {
namespace {

// Tears down one connection on its strand, exactly once: by the posted
// handler, or by Stop once the event loop no longer runs handlers.
class Retirement {
 public:
  Retirement(std::shared_ptr<RdmaConnection> connection, rdma_cm_id* id)
      : connection_(std::move(connection)), id_(id) {}
  void Run() {
    std::lock_guard lock(mutex_);
    if (!connection_) return;
    connection_->Disconnect();
    connection_->Destroy();
    rdma_destroy_id(id_);
    connection_.reset();
  }

 private:
  std::mutex mutex_;
  std::shared_ptr<RdmaConnection> connection_;
  rdma_cm_id* id_;
};

// Retirements not yet run; Stop waits for them before it closes the event
// channel their cm ids belong to.
class Retirements {
 public:
  void Add(const std::shared_ptr<Retirement>& retirement) {
    std::lock_guard lock(mutex_);
    open_.push_back(retirement);
  }
  void Done(const std::shared_ptr<Retirement>& retirement) {
    std::lock_guard lock(mutex_);
    std::erase(open_, retirement);
    if (open_.empty()) idle_.notify_all();
  }
  void WaitIdle() {
    std::unique_lock lock(mutex_);
    idle_.wait(lock, [this] { return open_.empty(); });
  }
  // Only once no handler runs any more.
  void RunAll() {
    std::vector<std::shared_ptr<Retirement>> open;
    {
      std::lock_guard lock(mutex_);
      open.swap(open_);
    }
    for (auto& retirement : open) retirement->Run();
  }

 private:
  std::mutex mutex_;
  std::condition_variable idle_;
  std::vector<std::shared_ptr<Retirement>> open_;
};

void SendReply(const std::shared_ptr<RdmaConnection>& connection, Message reply, RdmaExt ext);

// A handler may reserve a little more than the client offered and keep only
// part of it (a data server reads whole 4 KiB checksum blocks around the
// range asked for).
constexpr size_t kReplyRoomSlack = 64 * 1024;

// Reply payloads above what fits a message are read straight into this
// connection's registered memory, which the reply's RDMA WRITE then sends.
ReplyAllocator AllocatorFor(const std::shared_ptr<RdmaConnection>& connection, RdmaExt ext) {
  if (ext.dst_capacity == 0) return nullptr;
  std::weak_ptr<Domain> weak = connection->domain();
  size_t largest = size_t{ext.dst_capacity} + kReplyRoomSlack;
  return [weak, largest](size_t size) -> Payload {
    auto domain = weak.lock();
    // Past the connection's bound of lent memory the reply is built in
    // ordinary memory and copied when it is sent, one bulk slot at a time.
    if (!domain || size <= kMaxInline || size > largest ||
        domain->lent_bytes() + size > kMaxLentBytes) {
      return {};
    }
    auto buffer = domain->Acquire(BufferUse::kLocal, size);
    if (!buffer.ok()) return {};
    return domain->Lend(BufferUse::kLocal, *buffer, size);
  };
}

void Dispatch(RequestSink* sink, const std::shared_ptr<RdmaConnection>& connection, Message request,
              RdmaExt ext) {
  std::weak_ptr<RdmaConnection> weak = connection;
  Strand strand = connection->strand();
  sink->Submit(std::move(request), {"rdma", AllocatorFor(connection, ext)},
               [weak, strand, ext](Message reply) {
                 // The connection may be gone by now, or failed: SendReply checks.
                 asio::post(strand, [weak, ext, reply = std::move(reply)]() mutable {
                   if (auto connection = weak.lock()) {
                     SendReply(connection, std::move(reply), ext);
                   }
                 });
               });
}

void OnRequest(RequestSink* sink, const std::shared_ptr<RdmaConnection>& connection,
               Message request, RdmaExt ext) {
  if (request.header.is_response()) {
    connection->Fail(Status(EPROTO, "server received a response"));
    return;
  }
  if (ext.src_length == 0) return Dispatch(sink, connection, std::move(request), ext);
  if (ext.src_length > kMaxPayloadSize) {
    connection->Fail(Status(EMSGSIZE, "request payload exceeds the limit"));
    return;
  }
  // Pull the payload from the client's memory into a registered buffer that
  // the handler then reads in place.
  auto shared_request = std::make_shared<Message>(std::move(request));
  std::weak_ptr<RdmaConnection> weak = connection;
  connection->WithRoom(ext.src_length, [sink, weak, shared_request, ext] {
    auto connection = weak.lock();
    if (!connection) return;
    auto buffer = connection->AcquireBuffer(BufferUse::kLocal, ext.src_length);
    if (!buffer.ok()) {
      // Out of registered memory: this call fails, the connection stays.
      connection->FinishBulk();
      FrameHeader header = shared_request->header;
      header.flags = kFlagResponse;
      header.payload_length = 0;
      header.status = buffer.status().code();
      connection->Send(
          header, "server cannot take the request payload: " + buffer.status().message(), {}, {});
      return;
    }
    Registered local = *buffer;
    // The payload owns the buffer from here on, whatever becomes of the call.
    shared_request->payload = connection->domain()->Lend(BufferUse::kLocal, local, ext.src_length);
    connection->Read(ext.src_addr, ext.src_rkey, ext.src_length, local,
                     [sink, weak, shared_request, ext](Status status) {
                       auto connection = weak.lock();
                       if (!connection || !status.ok() || connection->failed()) return;
                       Dispatch(sink, connection, std::move(*shared_request), ext);
                     });
  });
}

void SendReply(const std::shared_ptr<RdmaConnection>& connection, Message reply, RdmaExt ext) {
  if (connection->failed()) return;
  if (reply.body.size() + reply.payload.size() <= kMaxInline) {
    connection->Send(reply.header, std::move(reply.body), reply.payload.TakeString(), {});
    return;
  }
  if (reply.payload.size() > ext.dst_capacity || reply.body.size() > kMaxInline) {
    FrameHeader header = reply.header;
    header.status = EMSGSIZE;
    connection->Send(header, "reply payload larger than the buffer the client offered", {}, {});
    return;
  }
  // Write the payload into the client's buffer and send the reply right
  // behind it: RC ordering makes the payload land first.
  auto shared_reply = std::make_shared<Message>(std::move(reply));
  std::weak_ptr<RdmaConnection> weak = connection;
  connection->WithBulkSlot([weak, shared_reply, ext] {
    auto connection = weak.lock();
    if (!connection) return;
    Payload& payload = shared_reply->payload;
    const Registered* lent = connection->domain()->Lent(payload);
    if (lent == nullptr) {
      // Not read into this connection's memory (a handler that built a
      // string): one copy into a registered buffer.
      auto buffer = connection->AcquireBuffer(BufferUse::kLocal, payload.size());
      if (!buffer.ok()) {
        connection->FinishBulk();
        return connection->Fail(buffer.status());
      }
      Payload copy = connection->domain()->Lend(BufferUse::kLocal, *buffer, payload.size());
      std::memcpy(copy.mutable_data(), payload.data(), payload.size());
      payload = std::move(copy);
      lent = connection->domain()->Lent(payload);
    }
    uint32_t length = static_cast<uint32_t>(payload.size());
    if (!connection->WriteThenSend(*lent, payload.data(), length, ext.dst_addr, ext.dst_rkey)) {
      connection->FinishBulk();
      return;
    }
    FrameHeader header = shared_reply->header;
    header.flags |= kFlagPayloadPlaced;
    header.payload_length = length;
    // The WRITE is unsignalled: its memory is free once the SEND completed.
    connection->Send(header, std::move(shared_reply->body), {}, {}, {}, [weak, shared_reply] {
      shared_reply->payload = Payload();
      if (auto connection = weak.lock()) connection->FinishBulk();
    });
  });
}

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
      listen_id_ = nullptr;
      return Status(errno, "rdma_create_id failed");
    }
    if (rdma_bind_addr(listen_id_, reinterpret_cast<sockaddr*>(&*address)) != 0) {
      return Status(errno, "cannot bind RDMA listener to " + host + ":" + std::to_string(port) +
                               ": " + std::strerror(errno));
    }
    if (rdma_listen(listen_id_, 64) != 0) return Status(errno, "rdma_listen failed");
    port_ = ntohs(rdma_get_src_port(listen_id_));
    events_->Watch([this, alive = alive_](rdma_cm_event* event) {
      rdma_cm_event copy = *event;
      rdma_ack_cm_event(event);
      if (*alive) OnEvent(copy);
    });
    return Status::Ok();
  }

  uint16_t port() const override { return port_; }

  void Stop() override {
    if (!events_) return;
    bool running = !io_.stopped();
    auto stop_events = [this] {
      *alive_ = false;
      events_->Kill();
      auto connections = std::move(connections_);
      connections_.clear();
      for (auto& [serial, entry] : connections) Retire(entry);
    };
    if (running) {
      std::promise<void> done;
      asio::post(strand_, [&] {
        stop_events();
        done.set_value();
      });
      done.get_future().wait();
      retirements_->WaitIdle();
    } else {
      stop_events();
      retirements_->RunAll();
    }
    // Every connection's cm id is gone: now the listener, then the channel.
    if (listen_id_) rdma_destroy_id(listen_id_);
    listen_id_ = nullptr;
    events_.reset();
  }

 private:
  struct Entry {
    rdma_cm_id* id;
    std::shared_ptr<RdmaConnection> connection;
    // Until the connection manager reports it established, a disconnect
    // would not reach the peer; a failure before then waits for it.
    bool established = false;
    bool drop_when_established = false;
  };

  // Connection ids travel in the cm id's context: a number never reused, so a
  // late event or failure never reaches a newer connection.
  static uint64_t SerialOf(const rdma_cm_id* id) {
    return static_cast<uint64_t>(reinterpret_cast<uintptr_t>(id->context));
  }

  void OnEvent(const rdma_cm_event& event) {
    switch (event.event) {
      case RDMA_CM_EVENT_CONNECT_REQUEST:
        return Accept(event.id);
      case RDMA_CM_EVENT_ESTABLISHED: {
        auto found = connections_.find(SerialOf(event.id));
        if (found == connections_.end()) return;
        found->second.established = true;
        if (found->second.drop_when_established) Drop(found->first);
        return;
      }
      case RDMA_CM_EVENT_DISCONNECTED:
      case RDMA_CM_EVENT_DEVICE_REMOVAL:
      case RDMA_CM_EVENT_CONNECT_ERROR:
      case RDMA_CM_EVENT_UNREACHABLE:
      case RDMA_CM_EVENT_REJECTED:
        if (event.id != listen_id_) Drop(SerialOf(event.id));
        return;
      default:
        return;
    }
  }

  void Accept(rdma_cm_id* id) {
    uint64_t serial = ++next_serial_;
    id->context = reinterpret_cast<void*>(static_cast<uintptr_t>(serial));
    auto connection = std::make_shared<RdmaConnection>(asio::make_strand(io_), id);
    connections_[serial] = Entry{id, connection};
    RequestSink* sink = &sink_;
    std::weak_ptr<RdmaConnection> weak = connection;
    connection->on_message = [sink, weak](Message message, RdmaExt ext) {
      if (auto connection = weak.lock()) OnRequest(sink, connection, std::move(message), ext);
    };
    Strand server_strand = strand_;
    auto alive = alive_;
    // `now`: the connection will never be established (refused or not
    // accepted); otherwise the peer is told once it can be.
    auto drop = [this, server_strand, alive, serial](bool now) {
      asio::post(server_strand, [this, alive, serial, now] {
        if (*alive) now ? Drop(serial) : DropOnceEstablished(serial);
      });
    };
    connection->on_failure = [drop](Status status) {
      std::fprintf(stderr, "rdma: connection failed: %s\n", status.ToString().c_str());
      drop(false);
    };
    // Registration and the zero-fill of the kernel's pages happen on the
    // connection's strand, not the listener's.
    asio::post(connection->strand(), [connection, id, serial, drop] {
      if (connection->failed()) return;  // stopped before it started
      Status setup = connection->Setup(static_cast<unsigned>(serial));
      if (!setup.ok()) {
        std::fprintf(stderr, "rdma: refusing a connection: %s\n", setup.ToString().c_str());
        rdma_reject(id, nullptr, 0);
        return drop(true);
      }
      rdma_conn_param param{};
      param.initiator_depth = 16;
      param.responder_resources = 16;
      param.rnr_retry_count = 7;
      if (rdma_accept(id, &param) != 0) drop(true);
    });
  }

  void Drop(uint64_t serial) {
    auto found = connections_.find(serial);
    if (found == connections_.end()) return;
    Entry entry = std::move(found->second);
    connections_.erase(found);
    Retire(entry);
  }

  void DropOnceEstablished(uint64_t serial) {
    auto found = connections_.find(serial);
    if (found == connections_.end()) return;
    if (found->second.established) return Drop(serial);
    // The connection has failed and handles nothing more; the peer hears of
    // it when it is established, or the connection manager gives up on it.
    found->second.drop_when_established = true;
  }

  // Tears a connection down on its own strand; Stop waits for it.
  void Retire(const Entry& entry) {
    auto retirement = std::make_shared<Retirement>(entry.connection, entry.id);
    retirements_->Add(retirement);
    asio::post(entry.connection->strand(), [retirement, retirements = retirements_] {
      retirement->Run();
      retirements->Done(retirement);
    });
  }

  asio::io_context& io_;
  Strand strand_;
  RequestSink& sink_;
  std::unique_ptr<CmEvents> events_;
  rdma_cm_id* listen_id_ = nullptr;
  uint16_t port_ = 0;
  uint64_t next_serial_ = 0;
  std::map<uint64_t, Entry> connections_;
  std::shared_ptr<Retirements> retirements_ = std::make_shared<Retirements>();
  // False once Stop began: late posts from connections do nothing.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace

std::unique_ptr<ServerTransport> NewRdmaServer(asio::io_context& io, RequestSink& sink) {
  return std::make_unique<RdmaServer>(io, sink);
}

}  // namespace sealfs::rpc::rdma
