// TCP transport. Each connection's state lives on one strand; coroutines do
// the reading and writing, so no lock guards the per-connection maps.
#include "sealfs/rpc/tcp_transport.h"

#include <asio.hpp>
#include <asio/experimental/as_tuple.hpp>
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

// Reads one frame; the header is validated before any body is allocated.
awaitable<Result<Message>> ReadFrame(tcp::socket& socket) {
  EncodedHeader raw;
  auto [error, n] = co_await asio::async_read(socket, asio::buffer(raw), kNoThrow);
  if (error) co_return Status(ErrnoOf(error), "connection closed: " + error.message());
  Result<FrameHeader> header = DecodeHeader(raw.data(), raw.size());
  if (!header.ok()) co_return header.status();
  Message message;
  message.header = *header;
  message.body.resize(header->body_length);
  message.payload.resize(header->payload_length);
  std::array<asio::mutable_buffer, 2> buffers{asio::buffer(message.body),
                                              asio::buffer(message.payload)};
  if (header->body_length + header->payload_length > 0) {
    auto [read_error, m] = co_await asio::async_read(socket, buffers, kNoThrow);
    if (read_error) {
      co_return Status(ErrnoOf(read_error), "connection closed mid-frame: " + read_error.message());
    }
  }
  co_return message;
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
    asio::post(strand_, [self = shared_from_this(), service, method, body = std::move(body),
                         payload, options, on_reply = std::move(on_reply)]() mutable {
      self->StartCall(service, method, std::move(body), payload, options, std::move(on_reply));
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
                 CallOptions options, ReplyCallback on_reply) {
    uint64_t id = ++next_request_id_;
    FrameHeader header;
    header.service = static_cast<uint16_t>(service);
    header.method = method;
    header.request_id = id;
    header.body_length = static_cast<uint32_t>(body.size());
    header.payload_length = static_cast<uint32_t>(payload.size());
    Pending pending;
    pending.on_reply = std::move(on_reply);
    pending.timer = std::make_unique<asio::steady_timer>(strand_, options.timeout);
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
      if (!found->second.deferred) found->second.deferred = timeout;
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

class ServerConnection : public std::enable_shared_from_this<ServerConnection> {
 public:
  ServerConnection(tcp::socket socket, RequestSink& sink)
      : socket_(std::move(socket)), sink_(sink) {
    asio::error_code error;
    auto endpoint = socket_.remote_endpoint(error);
    peer_ =
        error ? "unknown" : endpoint.address().to_string() + ":" + std::to_string(endpoint.port());
  }

  static awaitable<void> Serve(std::shared_ptr<ServerConnection> self) {
    self->socket_.set_option(tcp::no_delay(true));
    while (!self->closed_) {
      Result<Message> request = co_await ReadFrame(self->socket_);
      if (self->closed_) break;
      if (!request.ok()) {
        if (request.status().code() != ECONNRESET) {
          // A malformed frame: say why, then close. The header is not trusted,
          // so the error carries request id 0.
          std::fprintf(stderr, "rpc: closing connection from %s: %s\n", self->peer_.c_str(),
                       request.status().ToString().c_str());
          Message error;
          error.header.flags = kFlagResponse;
          error.header.status = request.status().code();
          error.body = request.status().message();
          self->closing_after_write_ = true;
          self->Send(std::move(error));
        } else {
          self->Close();
        }
        break;
      }
      if (request->header.is_response()) {
        Message error;
        error.header.flags = kFlagResponse;
        error.header.request_id = request->header.request_id;
        error.header.status = EPROTO;
        error.body = "server received a response frame";
        self->closing_after_write_ = true;
        self->Send(std::move(error));
        break;
      }
      auto strand = self->socket_.get_executor();
      self->sink_.Submit(std::move(*request), self->peer_, [self, strand](Message reply) {
        asio::post(strand,
                   [self, reply = std::move(reply)]() mutable { self->Send(std::move(reply)); });
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
  }

 private:
  // Runs on the connection's strand.
  void Send(Message reply) {
    if (closed_) return;
    reply.header.body_length = static_cast<uint32_t>(reply.body.size());
    reply.header.payload_length = static_cast<uint32_t>(reply.payload.size());
    outgoing_.push_back(std::move(reply));
    if (!writing_) {
      writing_ = true;
      asio::co_spawn(socket_.get_executor(), WriteLoop(shared_from_this()), asio::detached);
    }
  }

  static awaitable<void> WriteLoop(std::shared_ptr<ServerConnection> self) {
    while (!self->outgoing_.empty() && !self->closed_) {
      std::vector<Message> batch;
      std::vector<EncodedHeader> headers;
      while (!self->outgoing_.empty() && batch.size() < kMaxFramesPerWrite) {
        batch.push_back(std::move(self->outgoing_.front()));
        self->outgoing_.pop_front();
      }
      headers.reserve(batch.size());
      std::vector<asio::const_buffer> buffers;
      for (const Message& message : batch) {
        headers.push_back(EncodeHeader(message.header));
        buffers.push_back(asio::buffer(headers.back()));
        if (!message.body.empty()) buffers.push_back(asio::buffer(message.body));
        if (!message.payload.empty()) buffers.push_back(asio::buffer(message.payload));
      }
      TcpCounters().messages_sent += batch.size();
      TcpCounters().bytes_sent += asio::buffer_size(buffers);
      auto [error, n] = co_await asio::async_write(self->socket_, buffers, kNoThrow);
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
  std::string peer_;
  std::deque<Message> outgoing_;
  bool writing_ = false;
  bool closed_ = false;
  bool closing_after_write_ = false;
};

class TcpServer : public ServerTransport {
 public:
  TcpServer(asio::io_context& io, RequestSink& sink) : io_(io), sink_(sink), acceptor_(io) {}
  ~TcpServer() override { Stop(); }

  Status Listen(const std::string& host, uint16_t port) override {
    asio::error_code error;
    auto address = asio::ip::make_address(host, error);
    if (error) return Status(EINVAL, "bad listen address '" + host + "': " + error.message());
    tcp::endpoint endpoint(address, port);
    acceptor_.open(endpoint.protocol(), error);
    if (!error) acceptor_.set_option(tcp::acceptor::reuse_address(true), error);
    if (!error) acceptor_.bind(endpoint, error);
    if (!error) acceptor_.listen(asio::socket_base::max_listen_connections, error);
    if (error) {
      return Status(error.value(), "cannot listen on " + host + ":" + std::to_string(port) + ": " +
                                       error.message());
    }
    port_ = acceptor_.local_endpoint().port();
    asio::co_spawn(io_, AcceptLoop(this), asio::detached);
    return Status::Ok();
  }

  uint16_t port() const override { return port_; }

  // Stops accepting and closes every open connection, as a restart would.
  void Stop() override {
    asio::error_code ignored;
    acceptor_.close(ignored);
    std::lock_guard<std::mutex> lock(connections_mutex_);
    for (auto& weak : connections_) {
      if (auto connection = weak.lock()) {
        asio::post(connection->executor(), [connection] { connection->Close(); });
      }
    }
    connections_.clear();
  }

 private:
  static awaitable<void> AcceptLoop(TcpServer* self) {
    while (self->acceptor_.is_open()) {
      auto [error, socket] =
          co_await self->acceptor_.async_accept(asio::make_strand(self->io_), kNoThrow);
      if (error) {
        if (error == asio::error::operation_aborted || !self->acceptor_.is_open()) co_return;
        continue;  // e.g. EMFILE: keep serving the connections we have
      }
      auto connection = std::make_shared<ServerConnection>(std::move(socket), self->sink_);
      {
        std::lock_guard<std::mutex> lock(self->connections_mutex_);
        std::erase_if(self->connections_, [](auto& weak) { return weak.expired(); });
        self->connections_.push_back(connection);
      }
      asio::co_spawn(connection->executor(), ServerConnection::Serve(connection), asio::detached);
    }
  }

  asio::io_context& io_;
  RequestSink& sink_;
  tcp::acceptor acceptor_;
  uint16_t port_ = 0;
  std::mutex connections_mutex_;
  std::vector<std::weak_ptr<ServerConnection>> connections_;
};

}  // namespace

IoThreads::IoThreads(int threads) : context_(std::make_unique<asio::io_context>()) {
  auto guard = std::make_shared<asio::executor_work_guard<asio::io_context::executor_type>>(
      context_->get_executor());
  for (int i = 0; i < threads; ++i) {
    threads_.emplace_back([this, guard] { context_->run(); });
  }
}

IoThreads::~IoThreads() { Stop(); }

void IoThreads::Stop() {
  if (stopped_) return;
  stopped_ = true;
  context_->stop();
  for (auto& thread : threads_) thread.join();
}

std::shared_ptr<Channel> MakeTcpChannel(IoThreads& io, const std::string& address) {
  return std::make_shared<TcpChannel>(io.context(), address);
}

std::unique_ptr<ServerTransport> MakeTcpServer(IoThreads& io, RequestSink& sink) {
  return std::make_unique<TcpServer>(io.context(), sink);
}

}  // namespace sealfs::rpc
