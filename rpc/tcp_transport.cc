// TCP transport. Each connection's state lives on one strand; coroutines do
// the reading and writing, so no lock guards the per-connection maps.
#include "sealfs/rpc/tcp_transport.h"

#include <algorithm>
#include <asio.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <chrono>
#include <cstdio>
#include <deque>
#include <mutex>
#include <optional>
#include <unordered_map>

namespace sealfs::rpc {
namespace {

using asio::awaitable;
using asio::use_awaitable;
using asio::ip::tcp;
using Strand = asio::strand<asio::io_context::executor_type>;

constexpr auto kNoThrow = asio::experimental::as_tuple(asio::use_awaitable);
constexpr size_t kMaxFramesPerWrite = 64;

int ErrnoOf(const asio::error_code& error) {
  if (error == asio::error::eof) return ECONNRESET;
  if (error.category() == asio::system_category()) return error.value();
  return EIO;
}

// Reads and validates one frame header; nothing is allocated for the body yet.
awaitable<Result<FrameHeader>> ReadHeader(tcp::socket& socket) {
  EncodedHeader raw;
  auto [error, n] = co_await asio::async_read(socket, asio::buffer(raw), kNoThrow);
  if (error) co_return Status(ErrnoOf(error), "connection closed: " + error.message());
  co_return DecodeHeader(raw.data(), raw.size());
}

// Reads the body and payload that `header` announces.
awaitable<Result<Message>> ReadBody(tcp::socket& socket, const FrameHeader& header) {
  Message message;
  message.header = header;
  message.body.resize(header.body_length);
  message.payload = std::string(header.payload_length, '\0');
  std::array<asio::mutable_buffer, 2> buffers{
      asio::buffer(message.body),
      asio::buffer(message.payload.mutable_data(), header.payload_length)};
  if (header.body_length + header.payload_length > 0) {
    auto [read_error, m] = co_await asio::async_read(socket, buffers, kNoThrow);
    if (read_error) {
      co_return Status(ErrnoOf(read_error), "connection closed mid-frame: " + read_error.message());
    }
  }
  co_return message;
}

awaitable<Result<Message>> ReadFrame(tcp::socket& socket) {
  Result<FrameHeader> header = co_await ReadHeader(socket);
  if (!header.ok()) co_return header.status();
  co_return co_await ReadBody(socket, *header);
}

uint64_t FrameBytes(const FrameHeader& header) {
  return kFrameHeaderSize + uint64_t{header.body_length} + header.payload_length;
}

// ---------------------------------------------------------------- client side

class TcpChannel : public Channel, public std::enable_shared_from_this<TcpChannel> {
 public:
  TcpChannel(asio::io_context& io, std::string address)
      : strand_(asio::make_strand(io)), address_(std::move(address)) {}

  ~TcpChannel() override = default;

  const std::string& address() const override { return address_; }

  void CallAsync(ServiceId service, uint16_t method, std::string body, std::string_view payload,
                 CallOptions options, ReplyCallback on_reply) override {
    if (body.size() > kMaxBodySize || payload.size() > kMaxPayloadSize) {
      on_reply(Status(EMSGSIZE, "request exceeds the frame size limits"));
      return;
    }
    // The timeout runs from here, so that it covers queueing and writing too.
    auto deadline = std::chrono::steady_clock::now() + options.timeout;
    asio::post(strand_, [self = shared_from_this(), service, method, body = std::move(body),
                         payload, deadline, on_reply = std::move(on_reply)]() mutable {
      self->StartCall(service, method, std::move(body), payload, deadline, std::move(on_reply));
    });
  }

 private:
  struct Pending {
    ReplyCallback on_reply;
    std::unique_ptr<asio::steady_timer> timer;
    bool in_write = false;  // the writer holds pointers into the caller's payload
    // An outcome that arrived while in_write; delivered once the writer lets go.
    std::optional<Result<Message>> deferred;
  };
  struct Outgoing {
    uint64_t request_id;
    EncodedHeader header;
    std::string body;
    std::string_view payload;
  };

  void StartCall(ServiceId service, uint16_t method, std::string body, std::string_view payload,
                 std::chrono::steady_clock::time_point deadline, ReplyCallback on_reply) {
    uint64_t id = ++next_request_id_;
    FrameHeader header;
    header.service = static_cast<uint16_t>(service);
    header.method = method;
    header.request_id = id;
    header.body_length = static_cast<uint32_t>(body.size());
    header.payload_length = static_cast<uint32_t>(payload.size());
    Pending pending;
    pending.on_reply = std::move(on_reply);
    pending.timer = std::make_unique<asio::steady_timer>(strand_, deadline);
    pending.timer->async_wait([self = shared_from_this(), id](const asio::error_code& error) {
      if (!error) self->OnTimeout(id);
    });
    pending_.emplace(id, std::move(pending));
    queue_.push_back(Outgoing{id, EncodeHeader(header), std::move(body), payload});
    if (state_ == State::kIdle) {
      state_ = State::kConnecting;
      asio::co_spawn(strand_, Connect(shared_from_this()), asio::detached);
    } else if (state_ == State::kConnected && !writing_) {
      writing_ = true;
      asio::co_spawn(strand_, WriteLoop(shared_from_this(), generation_), asio::detached);
    }
  }

  void OnTimeout(uint64_t id) {
    auto found = pending_.find(id);
    if (found == pending_.end()) return;
    Status timeout(ETIMEDOUT, "no reply from " + address_ + " in time");
    if (found->second.in_write) {
      // The writer still reads the caller's payload, and a peer that stopped
      // reading would keep it there for ever. Closing the connection is the
      // only way to take the buffer back; the write then ends, and the
      // writer delivers this outcome (or a reply that already came).
      if (!found->second.deferred) found->second.deferred = timeout;
      FailAll(Status(ECONNRESET, "connection to " + address_ +
                                     " reset: a request was still being written at its deadline"));
      return;
    }
    Complete(found, timeout);
  }

  void Complete(std::unordered_map<uint64_t, Pending>::iterator it, Result<Message> result) {
    ReplyCallback on_reply = std::move(it->second.on_reply);
    it->second.timer->cancel();
    pending_.erase(it);
    on_reply(std::move(result));
  }

  // Fails every outstanding call; the next call connects again.
  void FailAll(const Status& status) {
    ++generation_;
    if (socket_) {
      asio::error_code ignored;
      socket_->shutdown(tcp::socket::shutdown_both, ignored);
      socket_->close(ignored);
      socket_.reset();
    }
    state_ = State::kIdle;
    writing_ = false;
    queue_.clear();
    std::vector<uint64_t> ids;
    for (auto& [id, pending] : pending_) {
      if (!pending.in_write)
        ids.push_back(id);
      else if (!pending.deferred)
        pending.deferred = status;  // delivered when the writer returns
    }
    for (uint64_t id : ids) Complete(pending_.find(id), status);
  }

  static awaitable<void> Connect(std::shared_ptr<TcpChannel> self) {
    auto parsed = ParseAddress(self->address_);
    if (!parsed.ok()) {
      self->FailAll(parsed.status());
      co_return;
    }
    tcp::resolver resolver(self->strand_);
    auto [resolve_error, endpoints] =
        co_await resolver.async_resolve(parsed->first, std::to_string(parsed->second), kNoThrow);
    if (resolve_error) {
      self->FailAll(Status(EHOSTUNREACH,
                           "cannot resolve " + self->address_ + ": " + resolve_error.message()));
      co_return;
    }
    auto socket = std::make_shared<tcp::socket>(self->strand_);
    auto [connect_error, endpoint] = co_await asio::async_connect(*socket, endpoints, kNoThrow);
    if (connect_error) {
      self->FailAll(Status(ErrnoOf(connect_error),
                           "cannot connect to " + self->address_ + ": " + connect_error.message()));
      co_return;
    }
    socket->set_option(tcp::no_delay(true));
    self->socket_ = socket;
    self->state_ = State::kConnected;
    uint64_t generation = self->generation_;
    asio::co_spawn(self->strand_, ReadLoop(self, socket, generation), asio::detached);
    if (!self->queue_.empty()) {
      self->writing_ = true;
      asio::co_spawn(self->strand_, WriteLoop(self, generation), asio::detached);
    }
  }

  static awaitable<void> WriteLoop(std::shared_ptr<TcpChannel> self, uint64_t generation) {
    while (self->generation_ == generation && !self->queue_.empty()) {
      std::vector<Outgoing> batch;
      while (!self->queue_.empty() && batch.size() < kMaxFramesPerWrite) {
        Outgoing out = std::move(self->queue_.front());
        self->queue_.pop_front();
        auto found = self->pending_.find(out.request_id);
        if (found == self->pending_.end()) continue;  // timed out before it was sent
        found->second.in_write = true;
        batch.push_back(std::move(out));
      }
      std::vector<asio::const_buffer> buffers;
      for (const Outgoing& out : batch) {
        buffers.push_back(asio::buffer(out.header));
        if (!out.body.empty()) buffers.push_back(asio::buffer(out.body));
        if (!out.payload.empty()) buffers.push_back(asio::buffer(out.payload));
      }
      asio::error_code error;
      if (!buffers.empty()) {
        TcpCounters().messages_sent += batch.size();
        TcpCounters().bytes_sent += asio::buffer_size(buffers);
        auto socket = self->socket_;
        std::tie(error, std::ignore) = co_await asio::async_write(*socket, buffers, kNoThrow);
      }
      // The caller's payload is no longer referenced: settle calls that
      // timed out or failed while their bytes were being written.
      for (const Outgoing& out : batch) {
        auto found = self->pending_.find(out.request_id);
        if (found == self->pending_.end()) continue;
        found->second.in_write = false;
        if (found->second.deferred) {
          Result<Message> outcome = std::move(*found->second.deferred);
          self->Complete(found, std::move(outcome));
        }
      }
      if (error) {
        if (self->generation_ == generation) {
          self->FailAll(
              Status(ErrnoOf(error), "write to " + self->address_ + " failed: " + error.message()));
        }
        co_return;
      }
    }
    if (self->generation_ == generation) self->writing_ = false;
  }

  static awaitable<void> ReadLoop(std::shared_ptr<TcpChannel> self,
                                  std::shared_ptr<tcp::socket> socket, uint64_t generation) {
    while (self->generation_ == generation) {
      Result<Message> message = co_await ReadFrame(*socket);
      if (self->generation_ != generation) co_return;
      if (!message.ok()) {
        self->FailAll(
            Status(message.status().code(), self->address_ + ": " + message.status().message()));
        co_return;
      }
      if (!message->header.is_response()) {
        self->FailAll(Status(EPROTO, self->address_ + " sent a request frame to a client"));
        co_return;
      }
      auto found = self->pending_.find(message->header.request_id);
      if (found == self->pending_.end()) continue;  // the call already timed out
      if (found->second.in_write) {
        // The server answered before our write completion ran; hand the
        // reply over once the writer no longer uses the caller's buffers.
        if (!found->second.deferred) found->second.deferred = std::move(*message);
        continue;
      }
      self->Complete(found, std::move(*message));
    }
  }

  enum class State { kIdle, kConnecting, kConnected };

  Strand strand_;
  std::string address_;
  State state_ = State::kIdle;
  bool writing_ = false;
  uint64_t generation_ = 0;
  uint64_t next_request_id_ = 0;
  std::shared_ptr<tcp::socket> socket_;
  std::unordered_map<uint64_t, Pending> pending_;
  std::deque<Outgoing> queue_;
};

// ---------------------------------------------------------------- server side

// Requests and bytes in flight across every connection of one listener. One
// atomic word holds both counts, so admitting or releasing a request is one
// atomic operation while there is room. Connections that find no room queue in
// arrival order and are granted room as replies drain, so a large frame
// waiting at the head of the queue is not starved by a stream of small ones.
class ServerBudget {
 public:
  ServerBudget(uint64_t max_requests, uint64_t max_bytes)
      : max_requests_(std::clamp<uint64_t>(max_requests, 1, kMaxCountableRequests)),
        max_bytes_(std::min(max_bytes, kMaxCountableBytes)) {}

  // Charges one request of `bytes` when nobody is queued and it fits.
  bool TryAcquire(uint64_t bytes) { return queued_.load() == 0 && TryCharge(bytes); }

  // Queues a request that TryAcquire refused. `on_grant` runs exactly once,
  // on whichever thread frees the room, after the charge has been made on the
  // waiter's behalf; it must not block. `waiter` identifies it for Withdraw.
  void Queue(uint64_t bytes, const void* waiter, std::function<void()> on_grant) {
    std::vector<std::function<void()>> granted;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      waiters_.push_back(Waiter{bytes, waiter, std::move(on_grant)});
      // Counted before looking at the budget again: a Release that ran before
      // this sees no waiter, but then its room is visible to GrantLocked.
      queued_.fetch_add(1);
      granted = GrantLocked();
    }
    for (auto& grant : granted) grant();
  }

  // Removes a queued waiter. False when it was granted already: its
  // on_grant has run or is running, and the charge is the waiter's.
  bool Withdraw(const void* waiter) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto found = std::find_if(waiters_.begin(), waiters_.end(),
                              [waiter](const Waiter& w) { return w.id == waiter; });
    if (found == waiters_.end()) return false;
    waiters_.erase(found);
    queued_.fetch_sub(1);
    return true;
  }

  // Reply bytes join their request's charge; they are known only once the
  // handler is done, so they are added whether or not they fit.
  void AddBytes(uint64_t bytes) { state_.fetch_add(bytes); }

  void Release(uint64_t requests, uint64_t bytes) {
    if (requests == 0 && bytes == 0) return;
    state_.fetch_sub((requests << kRequestShift) + bytes);
    if (queued_.load() == 0) return;
    std::vector<std::function<void()>> granted;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      granted = GrantLocked();
    }
    for (auto& grant : granted) grant();
  }

 private:
  static constexpr int kRequestShift = 40;
  static constexpr uint64_t kBytesMask = (uint64_t{1} << kRequestShift) - 1;
  // Headroom so that reply bytes added past the bound never carry into the
  // request count.
  static constexpr uint64_t kMaxCountableBytes = uint64_t{1} << 38;
  static constexpr uint64_t kMaxCountableRequests = uint64_t{1} << 22;

  struct Waiter {
    uint64_t bytes;
    const void* id;
    std::function<void()> on_grant;
  };

  // A request fits when there is room for it, or when nothing at all is in
  // flight: a frame larger than the whole budget then runs alone.
  bool TryCharge(uint64_t bytes) {
    uint64_t current = state_.load();
    for (;;) {
      uint64_t requests = current >> kRequestShift;
      uint64_t charged = current & kBytesMask;
      if (requests != 0 && (requests >= max_requests_ || charged + bytes > max_bytes_)) {
        return false;
      }
      uint64_t wanted = current + (uint64_t{1} << kRequestShift) + bytes;
      if (state_.compare_exchange_weak(current, wanted)) return true;
    }
  }

  std::vector<std::function<void()>> GrantLocked() {
    std::vector<std::function<void()>> granted;
    while (!waiters_.empty() && TryCharge(waiters_.front().bytes)) {
      granted.push_back(std::move(waiters_.front().on_grant));
      waiters_.pop_front();
      queued_.fetch_sub(1);
    }
    return granted;
  }

  const uint64_t max_requests_;
  const uint64_t max_bytes_;
  std::atomic<uint64_t> state_{0};  // requests << kRequestShift | bytes
  std::atomic<size_t> queued_{0};
  std::mutex mutex_;
  std::deque<Waiter> waiters_;
};

// One accepted connection. Everything but the constructor runs on the
// connection's strand, so its own counters need no atomics.
class ServerConnection : public std::enable_shared_from_this<ServerConnection> {
 public:
  ServerConnection(tcp::socket socket, RequestSink& sink, const TcpServerOptions& options,
                   std::shared_ptr<ServerBudget> budget)
      : socket_(std::move(socket)),
        sink_(sink),
        max_requests_(std::max<uint32_t>(options.max_requests_per_connection, 1)),
        max_bytes_(options.max_bytes_per_connection),
        budget_(std::move(budget)),
        wake_reader_(socket_.get_executor()) {
    asio::error_code error;
    auto endpoint = socket_.remote_endpoint(error);
    peer_ =
        error ? "unknown" : endpoint.address().to_string() + ":" + std::to_string(endpoint.port());
  }

  static awaitable<void> Serve(std::shared_ptr<ServerConnection> self) {
    self->socket_.set_option(tcp::no_delay(true));
    while (!self->closed_) {
      // Not even a header is read while this connection is at its limit.
      if (!co_await self->WaitForConnectionRoom(kFrameHeaderSize)) break;
      Result<FrameHeader> header = co_await ReadHeader(self->socket_);
      if (self->closed_) break;
      if (!header.ok()) {
        self->RefuseAndClose(header.status());
        break;
      }
      uint64_t cost = FrameBytes(*header);
      if (!co_await self->WaitForConnectionRoom(cost)) break;
      if (!co_await self->AcquireServerRoom(cost)) break;
      ++self->requests_in_flight_;
      self->bytes_in_flight_ += cost;
      Result<Message> request = co_await ReadBody(self->socket_, *header);
      if (self->closed_ || !request.ok()) {
        self->Release(1, cost);
        if (!self->closed_) self->RefuseAndClose(request.status());
        break;
      }
      if (request->header.is_response()) {
        self->Release(1, cost);
        Message error;
        error.header.flags = kFlagResponse;
        error.header.request_id = request->header.request_id;
        error.header.status = EPROTO;
        error.body = "server received a response frame";
        self->closing_after_write_ = true;
        self->Send(std::move(error), 0, 0);
        break;
      }
      auto strand = self->socket_.get_executor();
      self->sink_.Submit(std::move(*request), {self->peer_, nullptr},
                         [self, strand, cost](Message reply) {
                           asio::post(strand, [self, cost, reply = std::move(reply)]() mutable {
                             self->Send(std::move(reply), 1, cost);
                           });
                         });
    }
  }

  asio::any_io_executor executor() { return socket_.get_executor(); }

  void Close() {
    if (closed_) return;
    closed_ = true;
    asio::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
    wake_reader_.cancel();
    // Replies not yet handed to the writer will never be sent.
    for (const Outgoing& out : outgoing_) Release(out.requests, out.bytes);
    outgoing_.clear();
  }

 private:
  // A reply and what its request charged to the budgets (nothing for error
  // frames about a connection that is closing).
  struct Outgoing {
    Message message;
    uint64_t requests;
    uint64_t bytes;
  };

  bool ConnectionHasRoom(uint64_t bytes) const {
    return requests_in_flight_ == 0 ||
           (requests_in_flight_ < max_requests_ && bytes_in_flight_ + bytes <= max_bytes_);
  }

  // Sleeps until something wakes the reader: a reply sent, a grant, Close.
  awaitable<void> SleepUntilWoken() {
    reader_sleeping_ = true;
    wake_reader_.expires_at(asio::steady_timer::time_point::max());
    co_await wake_reader_.async_wait(kNoThrow);
    reader_sleeping_ = false;
  }

  void WakeReader() {
    if (reader_sleeping_) wake_reader_.cancel();
  }

  // False once the connection has closed.
  awaitable<bool> WaitForConnectionRoom(uint64_t bytes) {
    while (!closed_ && !ConnectionHasRoom(bytes)) co_await SleepUntilWoken();
    co_return !closed_;
  }

  // Charges one request of `bytes` to the server budget, waiting in line
  // for room if need be. False (and nothing charged) once the connection
  // has closed.
  awaitable<bool> AcquireServerRoom(uint64_t bytes) {
    if (budget_->TryAcquire(bytes)) co_return true;
    awaiting_grant_ = true;
    granted_ = false;
    budget_->Queue(bytes, this, [weak = weak_from_this(), bytes] {
      if (auto self = weak.lock()) {
        asio::post(self->executor(), [self, bytes] { self->OnGrant(bytes); });
      }
    });
    while (!granted_ && !closed_) co_await SleepUntilWoken();
    awaiting_grant_ = false;
    if (granted_) {
      if (!closed_) co_return true;
      budget_->Release(1, bytes);
    } else {
      // Closed while in line. If the grant is already on its way, OnGrant
      // gives the room back.
      budget_->Withdraw(this);
    }
    co_return false;
  }

  void OnGrant(uint64_t bytes) {
    if (!awaiting_grant_) {  // the reader gave up while the grant was on its way
      budget_->Release(1, bytes);
      return;
    }
    granted_ = true;
    WakeReader();
  }

  void Release(uint64_t requests, uint64_t bytes) {
    requests_in_flight_ -= requests;
    bytes_in_flight_ -= bytes;
    budget_->Release(requests, bytes);
    WakeReader();
  }

  // A malformed frame: say why, then close. The header is not trusted, so
  // the error carries request id 0. A peer that simply went away is closed.
  void RefuseAndClose(const Status& status) {
    if (status.code() == ECONNRESET) {
      Close();
      return;
    }
    std::fprintf(stderr, "rpc: closing connection from %s: %s\n", peer_.c_str(),
                 status.ToString().c_str());
    Message error;
    error.header.flags = kFlagResponse;
    error.header.status = status.code();
    error.body = status.message();
    closing_after_write_ = true;
    Send(std::move(error), 0, 0);
  }

  void Send(Message reply, uint64_t requests, uint64_t bytes) {
    if (closed_) {
      Release(requests, bytes);
      return;
    }
    reply.header.body_length = static_cast<uint32_t>(reply.body.size());
    reply.header.payload_length = static_cast<uint32_t>(reply.payload.size());
    if (requests != 0) {
      uint64_t reply_bytes = FrameBytes(reply.header);
      budget_->AddBytes(reply_bytes);
      bytes_in_flight_ += reply_bytes;
      bytes += reply_bytes;
    }
    outgoing_.push_back(Outgoing{std::move(reply), requests, bytes});
    if (!writing_) {
      writing_ = true;
      asio::co_spawn(socket_.get_executor(), WriteLoop(shared_from_this()), asio::detached);
    }
  }

  static awaitable<void> WriteLoop(std::shared_ptr<ServerConnection> self) {
    while (!self->outgoing_.empty() && !self->closed_) {
      std::vector<Outgoing> batch;
      std::vector<EncodedHeader> headers;
      uint64_t batch_requests = 0;
      uint64_t batch_bytes = 0;
      while (!self->outgoing_.empty() && batch.size() < kMaxFramesPerWrite) {
        batch_requests += self->outgoing_.front().requests;
        batch_bytes += self->outgoing_.front().bytes;
        batch.push_back(std::move(self->outgoing_.front()));
        self->outgoing_.pop_front();
      }
      headers.reserve(batch.size());
      std::vector<asio::const_buffer> buffers;
      for (const Outgoing& out : batch) {
        const Message& message = out.message;
        headers.push_back(EncodeHeader(message.header));
        buffers.push_back(asio::buffer(headers.back()));
        if (!message.body.empty()) buffers.push_back(asio::buffer(message.body));
        if (!message.payload.empty()) {
          buffers.push_back(asio::buffer(message.payload.data(), message.payload.size()));
        }
      }
      TcpCounters().messages_sent += batch.size();
      TcpCounters().bytes_sent += asio::buffer_size(buffers);
      auto [error, n] = co_await asio::async_write(self->socket_, buffers, kNoThrow);
      batch.clear();  // free the replies before their room is given back
      self->Release(batch_requests, batch_bytes);
      if (error) {
        self->Close();
        co_return;
      }
    }
    self->writing_ = false;
    if (self->closing_after_write_) self->Close();
  }

  tcp::socket socket_;
  RequestSink& sink_;
  const uint64_t max_requests_;
  const uint64_t max_bytes_;
  std::shared_ptr<ServerBudget> budget_;
  std::string peer_;
  std::deque<Outgoing> outgoing_;
  // This connection's share: requests read but not yet answered on the wire,
  // and their request plus reply bytes.
  uint64_t requests_in_flight_ = 0;
  uint64_t bytes_in_flight_ = 0;
  asio::steady_timer wake_reader_;  // cancelled to wake a reader that waits for room
  bool reader_sleeping_ = false;
  bool awaiting_grant_ = false;
  bool granted_ = false;
  bool writing_ = false;
  bool closed_ = false;
  bool closing_after_write_ = false;
};

// What the accept loop shares with TcpServer; the loop keeps it alive until
// it has seen the acceptor close.
struct Listener {
  Listener(IoThreads& io, RequestSink& sink, const TcpServerOptions& options)
      : io(io),
        sink(sink),
        options(options),
        strand(asio::make_strand(io.context())),
        acceptor(strand),
        backoff(strand),
        budget(std::make_shared<ServerBudget>(options.max_requests_per_server,
                                              options.max_bytes_per_server)) {}

  IoThreads& io;  // each accepted connection goes to its next loop
  RequestSink& sink;
  const TcpServerOptions options;
  Strand strand;
  tcp::acceptor acceptor;
  asio::steady_timer backoff;
  std::shared_ptr<ServerBudget> budget;
  std::mutex connections_mutex;
  std::vector<std::weak_ptr<ServerConnection>> connections;
};

constexpr auto kFirstAcceptBackoff = std::chrono::milliseconds(10);
constexpr auto kLastAcceptBackoff = std::chrono::seconds(1);

class TcpServer : public ServerTransport {
 public:
  TcpServer(IoThreads& io, RequestSink& sink, const TcpServerOptions& options)
      : listener_(std::make_shared<Listener>(io, sink, options)) {}
  ~TcpServer() override { Stop(); }

  Status Listen(const std::string& host, uint16_t port) override {
    asio::error_code error;
    auto address = asio::ip::make_address(host, error);
    if (error) return Status(EINVAL, "bad listen address '" + host + "': " + error.message());
    tcp::endpoint endpoint(address, port);
    tcp::acceptor& acceptor = listener_->acceptor;
    acceptor.open(endpoint.protocol(), error);
    if (!error) acceptor.set_option(tcp::acceptor::reuse_address(true), error);
    if (!error) acceptor.bind(endpoint, error);
    if (!error) acceptor.listen(asio::socket_base::max_listen_connections, error);
    if (error) {
      return Status(error.value(), "cannot listen on " + host + ":" + std::to_string(port) + ": " +
                                       error.message());
    }
    port_ = acceptor.local_endpoint().port();
    asio::co_spawn(listener_->strand, AcceptLoop(listener_, port_), asio::detached);
    return Status::Ok();
  }

  uint16_t port() const override { return port_; }

  // Stops accepting and closes every open connection, as a restart would.
  void Stop() override {
    asio::error_code ignored;
    listener_->acceptor.close(ignored);
    asio::post(listener_->strand, [listener = listener_] { listener->backoff.cancel(); });
    std::lock_guard<std::mutex> lock(listener_->connections_mutex);
    for (auto& weak : listener_->connections) {
      if (auto connection = weak.lock()) {
        asio::post(connection->executor(), [connection] { connection->Close(); });
      }
    }
    listener_->connections.clear();
  }

 private:
  static awaitable<void> AcceptLoop(std::shared_ptr<Listener> listener, uint16_t port) {
    auto backoff = kFirstAcceptBackoff;
    bool failing = false;
    while (listener->acceptor.is_open()) {
      auto [error, socket] = co_await listener->acceptor.async_accept(
          asio::make_strand(listener->io.context()), kNoThrow);
      if (error) {
        if (error == asio::error::operation_aborted || !listener->acceptor.is_open()) co_return;
        if (error == asio::error::connection_aborted) continue;  // that peer gave up
        // Out of descriptors or memory (EMFILE, ENFILE, ENOBUFS): retrying at
        // once fails again and spins a core. Keep serving the connections we
        // have and try again later.
        if (!failing) {
          std::fprintf(stderr, "rpc: accept on port %u failed: %s; retrying with backoff\n", port,
                       error.message().c_str());
          failing = true;
        }
        listener->backoff.expires_after(backoff);
        co_await listener->backoff.async_wait(kNoThrow);  // Stop cancels it
        backoff = std::min<std::chrono::milliseconds>(backoff * 2, kLastAcceptBackoff);
        continue;
      }
      if (failing) {
        std::fprintf(stderr, "rpc: accepting on port %u again\n", port);
        failing = false;
        backoff = kFirstAcceptBackoff;
      }
      auto connection = std::make_shared<ServerConnection>(std::move(socket), listener->sink,
                                                           listener->options, listener->budget);
      {
        std::lock_guard<std::mutex> lock(listener->connections_mutex);
        std::erase_if(listener->connections, [](auto& weak) { return weak.expired(); });
        listener->connections.push_back(connection);
      }
      asio::co_spawn(connection->executor(), ServerConnection::Serve(connection), asio::detached);
    }
  }

  std::shared_ptr<Listener> listener_;
  uint16_t port_ = 0;
};

}  // namespace

IoThreads::IoThreads(int threads) {
  for (int i = 0; i < std::max(threads, 1); ++i) {
    // Hint 1: one thread runs it (posting from other threads stays safe).
    contexts_.push_back(std::make_unique<asio::io_context>(1));
  }
  for (auto& context : contexts_) {
    threads_.emplace_back([context = context.get()] {
      auto guard = asio::make_work_guard(*context);
      context->run();
    });
  }
}

IoThreads::~IoThreads() { Stop(); }

asio::io_context& IoThreads::context() {
  return *contexts_[next_.fetch_add(1, std::memory_order_relaxed) % contexts_.size()];
}

void IoThreads::Stop() {
  if (stopped_) return;
  stopped_ = true;
  for (auto& context : contexts_) context->stop();
  for (auto& thread : threads_) thread.join();
}

std::shared_ptr<Channel> MakeTcpChannel(IoThreads& io, const std::string& address) {
  return std::make_shared<TcpChannel>(io.context(), address);
}

std::unique_ptr<ServerTransport> MakeTcpServer(IoThreads& io, RequestSink& sink,
                                               TcpServerOptions options) {
  return std::make_unique<TcpServer>(io, sink, options);
}

}  // namespace sealfs::rpc
