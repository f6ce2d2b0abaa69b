// TCP transport on standalone Asio with C++20 coroutines.
#pragma once

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "sealfs/rpc/transport.h"

namespace asio {
class io_context;
}

namespace sealfs::rpc {

// A pool of threads running one io_context; owns the event loop that every
// channel and listener created from it uses.
class IoThreads {
 public:
  explicit IoThreads(int threads);
  ~IoThreads();
  IoThreads(const IoThreads&) = delete;
  IoThreads& operator=(const IoThreads&) = delete;

  asio::io_context& context() { return *context_; }
  void Stop();

 private:
  std::unique_ptr<asio::io_context> context_;
  std::vector<std::thread> threads_;
  bool stopped_ = false;
};

// Connects lazily on the first call and again after any connection failure.
// Many requests may be in flight; responses are matched by request id.
std::shared_ptr<Channel> MakeTcpChannel(IoThreads& io, const std::string& address);

std::unique_ptr<ServerTransport> MakeTcpServer(IoThreads& io, RequestSink& sink);

}  // namespace sealfs::rpc
