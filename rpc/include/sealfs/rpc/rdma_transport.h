// RDMA transport on librdmacm and libibverbs.
//
// Reliable-connected queue pairs set up by the RDMA connection manager. Small
// messages travel as SEND into receive buffers the peer has pre-posted, with
// credit-based flow control so a sender never overruns them. Bulk payloads
// move one-sided and the server starts them: it RDMA-READs a request payload
// from the client's registered buffer, and RDMA-WRITEs a reply payload into a
// registered buffer the client offered and SENDs the reply right behind it
// (RC ordering delivers the payload first). The completion channel and the CM
// event channel are file descriptors watched by the same Asio event loop as
// TCP; each server connection has its own strand, so connections are served
// in parallel.
//
// Memory a peer may touch is registered for just that: a client's request
// payload for remote read, its reply buffer for remote write, a server's
// buffers for local access only. A peer that breaks the protocol (returns
// credits it never had, sends bad lengths) has its connection closed.
#pragma once

#include <memory>
#include <string>

#include "sealfs/rpc/tcp_transport.h"
#include "sealfs/rpc/transport.h"

namespace sealfs::rpc {

// True when this host has an RDMA device; otherwise `reason` says why not.
bool RdmaDeviceAvailable(std::string* reason);

// Bytes of memory this process has registered with RDMA devices now (message
// buffers and bulk buffers of every connection): what the transport pins.
uint64_t RdmaRegisteredBytes();

// Connects lazily; fails calls with ENODEV when there is no RDMA device.
// A reply_payload_hint above kMaxPayloadSize fails the call with EMSGSIZE.
std::shared_ptr<Channel> MakeRdmaChannel(IoThreads& io, const std::string& address);

std::unique_ptr<ServerTransport> MakeRdmaServer(IoThreads& io, RequestSink& sink);

// A channel of the given kind. kAuto tries RDMA when a device exists and
// falls back to TCP for good if the server does not answer over RDMA.
std::shared_ptr<Channel> MakeChannel(IoThreads& io, const std::string& address, TransportKind kind);

// A server's listeners: always TCP (control traffic and TCP clients), plus
// RDMA on the same address and port when `kind` is kRdma (required) or kAuto
// (where a device exists).
class Listeners {
 public:
  Status Listen(IoThreads& io, RequestSink& sink, const std::string& host, uint16_t port,
                TransportKind kind);
  uint16_t port() const { return tcp_ ? tcp_->port() : 0; }
  bool rdma() const { return rdma_ != nullptr; }
  void Stop();

 private:
  std::unique_ptr<ServerTransport> tcp_;
  std::unique_ptr<ServerTransport> rdma_;
};

}  // namespace sealfs::rpc
