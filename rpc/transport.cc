// Transport-independent helpers: transport names and traffic counters.
#include "sealfs/rpc/transport.h"

namespace sealfs::rpc {

Result<TransportKind> ParseTransportKind(std::string_view name) {
  if (name == "tcp") return TransportKind::kTcp;
  if (name == "rdma") return TransportKind::kRdma;
  if (name == "auto") return TransportKind::kAuto;
  return Status(EINVAL, "transport must be tcp, rdma or auto, not '" + std::string(name) + "'");
}

const char* TransportName(TransportKind kind) {
  switch (kind) {
    case TransportKind::kRdma:
      return "rdma";
    case TransportKind::kAuto:
      return "auto";
    case TransportKind::kTcp:
    default:
      return "tcp";
  }
}

TransportCounters& TcpCounters() {
  static TransportCounters counters;
  return counters;
}

TransportCounters& RdmaCounters() {
  static TransportCounters counters;
  return counters;
}

}  // namespace sealfs::rpc
