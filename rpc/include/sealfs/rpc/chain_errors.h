// Errors of the data service that are about the sender's view of the
// cluster rather than about a file: the sender refreshes and tries again.
#pragma once

#include <cerrno>

namespace sealfs::rpc {

// The request names a chain version other than the target's, a chain the
// target no longer serves, or reached a target whose lease ran out: refresh
// the cluster map and retry.
inline constexpr int kStaleChain = ECHRNG;
// The replica holds a newer version of the chunk than the chain committed:
// read it at the chain's tail.
inline constexpr int kNotCommitted = EINPROGRESS;

}  // namespace sealfs::rpc

namespace sealfs::rpc {

// The peer did not answer: it is down, restarting, cut off or too slow.
inline bool PeerUnreachable(int code) {
  switch (code) {
    case ECONNREFUSED:
    case ECONNRESET:
    case ETIMEDOUT:
    case EHOSTUNREACH:
    case ENETUNREACH:
    case EPIPE:
    case ESHUTDOWN:
    case ECONNABORTED:
      return true;
    default:
      return false;
  }
}

// Whether a failed data request may succeed when sent again after a
// refresh of the cluster map: the chain changed, or the target's server is
// gone, unreachable or was replaced (its members get taken out of chains).
inline bool RetryableOnChain(int code) {
  return code == kStaleChain || code == ESTALE || PeerUnreachable(code);
}

}  // namespace sealfs::rpc
