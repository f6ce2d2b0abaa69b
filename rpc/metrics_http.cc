// The /metrics endpoint, on cpp-httplib. Debian ships httplib compiled (the
// header only declares), built with TLS and compression: this file must be
// compiled with the same CPPHTTPLIB_* macros (the cpp-httplib pkg-config
// flags) or its classes have another layout here than in the library. We use
// only the plain-HTTP server.
#include <fcntl.h>
#include <httplib.h>
#include <netdb.h>
#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "sealfs/rpc/metrics.h"
#include "sealfs/rpc/transport.h"

namespace sealfs::metrics {

namespace {

constexpr char kContentType[] = "text/plain; version=0.0.4; charset=utf-8";
// Scrapes come one at a time, seconds apart; two workers let a stuck
// connection not block the next scrape.
constexpr size_t kWorkers = 2;

// httplib's default listener options set SO_REUSEPORT, which lets a second
// server bind a port already in use and silently share its connections; we
// want that bind to fail. SO_REUSEADDR only allows a restart while old
// connections linger in TIME_WAIT.
void ListenerOptions(socket_t fd) {
  int yes = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  fcntl(fd, F_SETFD, FD_CLOEXEC);  // not inherited by processes we spawn
}

// httplib reports a failed bind only as false (errno says why, except for a
// name that does not resolve), so resolve first for a clear message.
Status CheckResolves(const std::string& host, const std::string& address) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  int error = getaddrinfo(host.c_str(), nullptr, &hints, &found);
  if (error != 0) {
    return Status(EINVAL,
                  "metrics: cannot resolve the host of " + address + ": " + gai_strerror(error));
  }
  freeaddrinfo(found);
  return Status::Ok();
}

}  // namespace

struct MetricsServer::Impl {
  httplib::Server server;
  std::thread thread;
  std::atomic<bool> done{false};  // listen_after_bind returned
  uint16_t port = 0;
};

MetricsServer::MetricsServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

MetricsServer::~MetricsServer() {
  impl_->server.stop();
  impl_->thread.join();
}

uint16_t MetricsServer::port() const { return impl_->port; }

Result<std::unique_ptr<MetricsServer>> MetricsServer::Start(Registry& registry,
                                                            const std::string& address) {
  auto parsed = rpc::ParseAddress(address);
  if (!parsed.ok()) return parsed.status();
  std::string host = parsed->first;
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);  // an IPv6 literal, [::1]:9100
  }
  SEALFS_RETURN_IF_ERROR(CheckResolves(host, address));

  auto impl = std::make_unique<Impl>();
  httplib::Server& server = impl->server;
  server.new_task_queue = [] { return new httplib::ThreadPool(kWorkers); };
  server.set_socket_options(ListenerOptions);
  // An idle keep-alive connection holds a worker, and delays stop, this long.
  server.set_keep_alive_timeout(1);
  server.Get("/metrics", [&registry](const httplib::Request&, httplib::Response& response) {
    response.set_content(registry.Render(), kContentType);
  });
  // Any other path or method gets httplib's 404 (no route matches).

  errno = 0;
  int port = -1;
  if (parsed->second == 0) {
    port = server.bind_to_any_port(host);
  } else if (server.bind_to_port(host, parsed->second)) {
    port = parsed->second;
  }
  if (port < 0) {
    int error = errno != 0 ? errno : EADDRNOTAVAIL;
    return Status(error, "metrics: cannot listen on " + address + ": " + std::strerror(error));
  }
  impl->port = static_cast<uint16_t>(port);

  Impl* state = impl.get();
  impl->thread = std::thread([state] {
    state->server.listen_after_bind();
    state->done = true;
  });
  // stop() does nothing until the accept loop runs; once it does, the
  // destructor's stop() always ends it.
  while (!server.is_running() && !state->done) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (!server.is_running()) {
    impl->thread.join();
    return Status(EIO, "metrics: the server on " + address + " stopped as it started");
  }
  return std::unique_ptr<MetricsServer>(new MetricsServer(std::move(impl)));
}

}  // namespace sealfs::metrics
