// ChainView: a data server's copy of the cluster map (chains, targets,
// servers) and of its lease. The server serves only while its lease holds:
// the metadata service takes a server out of its chains only after not
// hearing from it for a lease, so a server that has not heard back for
// nearly that long (paused, cut off) must assume it was taken out.
#pragma once

#include <chrono>
#include <functional>
#include <mutex>
#include <optional>

#include "sealfs/rpc/methods.h"

namespace sealfs::server {

class ChainView {
 public:
  using Clock = std::chrono::steady_clock;
  using Fetch = std::function<Result<pb::ClusterMapResponse>()>;
  explicit ChainView(Fetch fetch) : fetch_(std::move(fetch)) {}

  // Takes a map, unless the one held is newer.
  void Update(const pb::ClusterMapResponse& map);
  // Fetches the map now (at most every 50 ms; callers may all ask at once).
  Status Refresh();
  // The metadata service answered a heartbeat sent at `sent`.
  void LeaseRenewed(Clock::time_point sent, std::chrono::milliseconds lease);
  // Without a metadata service (unit tests): the lease never runs out.
  void HoldLeaseForever();
  bool LeaseValid() const;
  // The lease the metadata service grants (10 s until it said otherwise).
  std::chrono::milliseconds lease() const;

  uint64_t version() const;
  std::optional<pb::Chain> Chain(uint32_t chain_id) const;
  std::vector<pb::Chain> Chains() const;
  // The address of the server holding a target, and the target's store id.
  std::optional<std::pair<std::string, std::string>> TargetAddress(uint32_t target_id) const;

 private:
  Fetch fetch_;
  mutable std::mutex mutex_;
  pb::ClusterMapResponse map_;
  bool have_map_ = false;
  Clock::time_point last_fetch_{};
  Clock::time_point lease_until_{};
  bool lease_forever_ = false;
  std::chrono::milliseconds lease_{10000};
};

}  // namespace sealfs::server
