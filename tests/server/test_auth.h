// Credentials for tests that drive DataServices directly: one cluster key,
// capabilities signed with it, and channels that speak as a server.
#pragma once

#include <limits>
#include <memory>
#include <string>

#include "sealfs/rpc/credentials.h"
#include "sealfs/rpc/methods.h"
#include "sealfs/rpc/tcp_transport.h"

namespace sealfs::testing {

inline const std::string& TestClusterKey() {
  static const std::string key = auth::RandomSecret();
  return key;
}

// A capability for `ino` allowing everything for an hour.
inline pb::Capability TestCapability(uint64_t ino, uint32_t chunk_size) {
  pb::Capability cap;
  cap.set_ino(ino);
  cap.set_volume_id(1);
  cap.set_rights(pb::CAP_READ | pb::CAP_WRITE);
  cap.set_write_limit(std::numeric_limits<uint64_t>::max());
  cap.set_expires_ns(auth::WallClockNs() + 3600'000'000'000);
  cap.set_chunk_size(chunk_size);
  cap.add_stripe(1);  // the tests' one chain
  auth::SignCapability(&cap, TestClusterKey());
  return cap;
}

inline void Sign(pb::WriteRequest& request) {
  *request.mutable_cap() = TestCapability(request.chunk().ino(), request.chunk_size());
}
inline void Sign(pb::ReadRequest& request) {
  *request.mutable_cap() = TestCapability(request.chunk().ino(), 0);
}
inline void Sign(pb::FsyncFileRequest& request) {
  *request.mutable_cap() = TestCapability(request.ino(), 0);
}

// A channel whose requests carry the server proof of TestClusterKey().
inline std::shared_ptr<rpc::Channel> ServerChannel(rpc::IoThreads& io, const std::string& address) {
  return auth::AsChannel(
      auth::WithAuth(rpc::MakeTcpChannel(io, address), auth::ServerAuth(TestClusterKey())));
}

}  // namespace sealfs::testing
