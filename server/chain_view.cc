#include "sealfs/server/chain_view.h"

namespace sealfs::server {

void ChainView::Update(const pb::ClusterMapResponse& map) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (have_map_ && map.version() < map_.version()) return;
  map_ = map;
  have_map_ = true;
}

Status ChainView::Refresh() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto now = Clock::now();
    if (have_map_ && now - last_fetch_ < std::chrono::milliseconds(50)) return Status::Ok();
    last_fetch_ = now;
  }
  if (!fetch_) return Status::Ok();
  Result<pb::ClusterMapResponse> map = fetch_();
  if (!map.ok()) return map.status();
  Update(*map);
  return Status::Ok();
}

void ChainView::LeaseRenewed(Clock::time_point sent, std::chrono::milliseconds lease) {
  // Some margin: the metadata service counts from when it heard us, a little
  // after we sent, and its clock and ours need not tick alike.
  auto until = sent + lease * 8 / 10;
  std::lock_guard<std::mutex> lock(mutex_);
  if (until > lease_until_) lease_until_ = until;
  if (lease.count() > 0) lease_ = lease;
}

std::chrono::milliseconds ChainView::lease() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return lease_;
}

void ChainView::HoldLeaseForever() {
  std::lock_guard<std::mutex> lock(mutex_);
  lease_forever_ = true;
}

bool ChainView::LeaseValid() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return lease_forever_ || Clock::now() < lease_until_;
}

uint64_t ChainView::version() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return map_.version();
}

std::optional<pb::Chain> ChainView::Chain(uint32_t chain_id) const {
  std::lock_guard<std::mutex> lock(mutex_);
  for (const pb::Chain& chain : map_.chains()) {
    if (chain.id() == chain_id) return chain;
  }
  return std::nullopt;
}

std::vector<pb::Chain> ChainView::Chains() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return {map_.chains().begin(), map_.chains().end()};
}

std::optional<std::pair<std::string, std::string>> ChainView::TargetAddress(
    uint32_t target_id) const {
  std::lock_guard<std::mutex> lock(mutex_);
  for (const pb::Target& target : map_.targets()) {
    if (target.id() != target_id) continue;
    for (const pb::DataServer& server : map_.servers()) {
      if (server.id() == target.server_id()) {
        return std::make_pair(server.address(), target.instance_id());
      }
    }
  }
  return std::nullopt;
}

}  // namespace sealfs::server
