// TCP transport on standalone Asio with C++20 coroutines.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "sealfs/rpc/transport.h"

namespace asio {
class io_context;
}

namespace sealfs::rpc {

// Event loops for channels and listeners: one io_context per thread, each
// connection on one of them (handed out in turn). A context run by several
// threads hands every completion between its reactor thread and a waiting
// one (a futex wake each, ~25-100 us on virtual machines); one thread per
// context reads, runs and writes on the same thread.
class IoThreads {
 public:
  explicit IoThreads(int threads);
  ~IoThreads();
  IoThreads(const IoThreads&) = delete;
  IoThreads& operator=(const IoThreads&) = delete;

  // The loop for the next connection.
  asio::io_context& context();
  void Stop();

 private:
  std::vector<std::unique_ptr<asio::io_context>> contexts_;
  std::atomic<size_t> next_{0};
  std::vector<std::thread> threads_;
  bool stopped_ = false;
};

// Connects lazily on the first call and again after any connection failure.
// Many requests may be in flight; responses are matched by request id. A
// call's timeout runs from CallAsync and covers queueing, connecting and
// writing; a request still being written at its deadline resets the
// connection (failing the other calls on it), as only that frees the
// caller's payload from a peer that stopped reading.
std::shared_ptr<Channel> MakeTcpChannel(IoThreads& io, const std::string& address);

// How much a TCP server holds for its peers at once. A request counts from the
// moment its header is read until its reply has been handed to the kernel, and
// its bytes are the request frame plus the reply frame, so the bounds cover
// request buffers, the dispatcher's queue and unsent replies alike. A
// connection at its own limit is not read until its replies drain; when the
// server-wide budget is spent, every connection waits, in arrival order, for
// room before reading another frame. A single frame larger than a budget still
// runs once nothing else is in flight, so no size the frame limits accept
// (kMaxBodySize + kMaxPayloadSize) can deadlock. A reply's size is only known
// when it is produced, so a reply can take a budget past its byte bound; new
// requests then wait until it has been sent. Peers that never read their
// replies keep their share until they close; the per-connection bounds limit
// how much of the server-wide budget each one can hold.
struct TcpServerOptions {
  // One connection: enough to keep a client's parallel I/O busy.
  uint32_t max_requests_per_connection = 64;
  uint64_t max_bytes_per_connection = uint64_t{256} << 20;
  // Every connection of one listener together: about 16 busy clients.
  uint32_t max_requests_per_server = 1024;
  uint64_t max_bytes_per_server = uint64_t{1} << 30;
};

std::unique_ptr<ServerTransport> MakeTcpServer(IoThreads& io, RequestSink& sink,
                                               TcpServerOptions options = {});

}  // namespace sealfs::rpc
