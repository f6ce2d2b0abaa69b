// The transport interface. Services and clients see only Channel (one client's
// connection to one server) and ServerTransport (a listener feeding a
// Dispatcher); TCP implements both today and RDMA slots under the same types.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "sealfs/rpc/frame.h"
#include "sealfs/rpc/status.h"

namespace sealfs::rpc {

struct CallOptions {
  std::chrono::milliseconds timeout{std::chrono::seconds(30)};
  // The largest reply payload the caller expects. RDMA offers the server a
  // registered buffer of this size to write the reply payload into; TCP
  // ignores it.
  size_t reply_payload_hint = 0;
};

// Which transport a client uses: TCP, RDMA, or RDMA where a device exists and
// the server accepts it, TCP otherwise.
enum class TransportKind { kTcp, kRdma, kAuto };
Result<TransportKind> ParseTransportKind(std::string_view name);
const char* TransportName(TransportKind kind);

// Traffic counters of one transport in this process.
struct TransportCounters {
  std::atomic<uint64_t> messages_sent{0};
  std::atomic<uint64_t> bytes_sent{0};
  std::atomic<uint64_t> rdma_read_ops{0};
  std::atomic<uint64_t> rdma_read_bytes{0};
  std::atomic<uint64_t> rdma_write_ops{0};
  std::atomic<uint64_t> rdma_write_bytes{0};
  // RDMA only: how often a connection woke on its completion channel, the
  // work completions it handled, and the SENDs that asked for one.
  std::atomic<uint64_t> completion_wakeups{0};
  std::atomic<uint64_t> work_completions{0};
  std::atomic<uint64_t> signalled_sends{0};
};
TransportCounters& TcpCounters();
TransportCounters& RdmaCounters();

// Receives the response message (whose header.status may carry a remote errno)
// or a local transport error (ETIMEDOUT, ECONNREFUSED, ECONNRESET, EPROTO).
using ReplyCallback = std::function<void(Result<Message>)>;

class Channel {
 public:
  virtual ~Channel() = default;

  // Sends one request. `payload` is borrowed: it must stay valid until
  // `on_reply` has run. The callback runs on a transport thread and must not
  // block.
  virtual void CallAsync(ServiceId service, uint16_t method, std::string body,
                         std::string_view payload, CallOptions options, ReplyCallback on_reply) = 0;

  // The server this channel talks to, as "host:port".
  virtual const std::string& address() const = 0;

  // Blocking form of CallAsync.
  Result<Message> Call(ServiceId service, uint16_t method, std::string body,
                       std::string_view payload, CallOptions options);
};

// Room for a reply payload of `size` bytes in memory the transport sends
// from without a copy (RDMA-registered); an empty Payload when it has none.
// May be called from any thread.
using ReplyAllocator = std::function<Payload(size_t size)>;

// Where a request came from.
struct RequestOrigin {
  std::string peer;
  ReplyAllocator allocate_reply;  // may be empty
};

// Runs a request and produces its response. Implemented by Dispatcher.
class RequestSink {
 public:
  virtual ~RequestSink() = default;
  // `respond` may be called from any thread, exactly once.
  virtual void Submit(Message request, RequestOrigin origin,
                      std::function<void(Message)> respond) = 0;
};

class ServerTransport {
 public:
  virtual ~ServerTransport() = default;
  // Binds and starts accepting. Port 0 picks a free port; see port().
  virtual Status Listen(const std::string& host, uint16_t port) = 0;
  virtual uint16_t port() const = 0;
  virtual void Stop() = 0;
};

// Polls `ready` (yielding the CPU to anything runnable) for up to `budget`
// before the caller goes to sleep. On virtual machines waking a sleeping
// thread costs around 100 us, several times a loopback round trip, so a
// short wait in user space cuts call latency several-fold. Returns ready().
bool SpinUntil(const std::function<bool()>& ready,
               std::chrono::microseconds budget = std::chrono::microseconds(200));

// Splits "host:port"; fails with EINVAL on anything else.
Result<std::pair<std::string, uint16_t>> ParseAddress(std::string_view address);

}  // namespace sealfs::rpc
