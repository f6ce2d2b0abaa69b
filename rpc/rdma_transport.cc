// RDMA transport: the device check, the factories and the listeners. The
// pieces live by concept: rdma_connection.cc (one queue pair, its buffers and
// credits), rdma_channel.cc (the client), rdma_server.cc (the server).
#include "sealfs/rpc/rdma_transport.h"

#include <infiniband/verbs.h>

#include <atomic>

#include "rdma_connection.h"

namespace sealfs::rpc {
namespace {

const char* kNoDevice = "no RDMA device on this host";

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

bool RdmaDeviceAvailable(std::string* reason) {
  int count = 0;
  ibv_device** devices = ibv_get_device_list(&count);
  if (devices) ibv_free_device_list(devices);
  if (count > 0) return true;
  if (reason) *reason = kNoDevice;
  return false;
}

std::shared_ptr<Channel> MakeRdmaChannel(IoThreads& io, const std::string& address) {
  return rdma::NewRdmaChannel(io.context(), address);
}

std::unique_ptr<ServerTransport> MakeRdmaServer(IoThreads& io, RequestSink& sink) {
  return rdma::NewRdmaServer(io.context(), sink);
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
