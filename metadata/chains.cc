// The metadata service's side of the cluster map: data servers and their
// targets registering and heartbeating, the chain table (laid out, changed
// when a server's lease runs out or it returns, persisted with every
// change), and routes to the members of a chain.
#include <cstdio>
#include <thread>

#include "sealfs/metadata/meta_service.h"
#include "sealfs/rpc/chain_errors.h"
#include "sealfs/rpc/chain_table.h"
#include "sealfs/rpc/credentials.h"
#include "sealfs/rpc/methods.h"

namespace sealfs::metadata {

void MetaService::LoadServers() {
  Result<std::vector<pb::DataServer>> servers = store_.ListServers();
  Result<pb::ChainTable> table = store_.LoadChainTable();
  if (!servers.ok() || !table.ok()) {
    std::fprintf(stderr, "sealfs-meta: reading data servers: %s\n",
                 (servers.ok() ? table.status() : servers.status()).ToString().c_str());
    return;
  }
  std::lock_guard<std::mutex> lock(servers_mutex_);
  for (const pb::DataServer& server : *servers) servers_[server.id()].record = server;
  chain_table_ = std::move(*table);
  // The replication factor is chosen when the cluster is created.
  if (chain_table_.replicas() == 0) {
    chain_table_.set_replicas(options_.replicas);
  } else if (chain_table_.replicas() != options_.replicas && options_.replicas_given) {
    std::fprintf(stderr,
                 "sealfs-meta: this cluster keeps %u replicas (chosen when it was created); "
                 "--replicas %u is ignored\n",
                 chain_table_.replicas(), options_.replicas);
  }
}

bool MetaService::ServerUp(const ServerState& state, Clock::time_point now) const {
  // Right after a restart nobody has been heard yet: servers count as up
  // for one lease, as they may well be.
  if (!state.heard) return now - started_ < options_.server_timeout;
  return now - state.last_heartbeat < options_.server_timeout;
}

bool MetaService::ReconcileLocked() {
  auto now = Clock::now();
  std::set<uint32_t> up;
  for (const pb::Target& target : chain_table_.targets()) {
    auto server = servers_.find(target.server_id());
    if (server != servers_.end() && ServerUp(server->second, now)) up.insert(target.id());
  }
  bool changed = chains::Reconcile(chain_table_, up, lost_data_);
  lost_data_.clear();
  if (changed) SaveTableLocked();
  return changed;
}

void MetaService::SaveTableLocked() {
  Status saved = store_.SaveChainTable(chain_table_);
  if (!saved.ok()) {
    std::fprintf(stderr, "sealfs-meta: saving the chain table: %s\n", saved.ToString().c_str());
  }
  ++map_version_;
}

void MetaService::CheckLeases() {
  std::lock_guard<std::mutex> lock(servers_mutex_);
  ReconcileLocked();
}

Status MetaService::RegisterServer(const pb::RegisterServerRequest& req,
                                   pb::RegisterServerResponse* resp) {
  if (req.instance_id().empty()) return Status(EINVAL, "a data server needs an instance id");
  if (!rpc::ParseAddress(req.address()).ok()) return Status(EINVAL, "bad server address");
  std::vector<std::string> instances(req.targets().begin(), req.targets().end());
  if (instances.empty()) instances.push_back(req.instance_id());
  std::lock_guard<std::mutex> lock(servers_mutex_);
  // Which server is this: the one owning any of its stores, else the one
  // that answered at its address before (its only disk was replaced).
  uint32_t server_id = 0, max_server = 0;
  for (const pb::Target& target : chain_table_.targets()) {
    if (std::find(instances.begin(), instances.end(), target.instance_id()) != instances.end())
      server_id = target.server_id();
  }
  for (auto& [id, state] : servers_) {
    max_server = std::max(max_server, id);
    if (server_id == 0 && state.record.address() == req.address()) server_id = id;
  }
  if (server_id == 0) server_id = max_server + 1;
  ServerState& state = servers_[server_id];
  state.record.set_id(server_id);
  state.record.set_address(req.address());
  state.record.set_instance_id(req.instance_id());
  state.record.set_capacity_bytes(req.capacity_bytes());
  state.record.set_free_bytes(req.free_bytes());
  // Its targets by slot: a new store in a known slot is a replaced disk.
  state.record.clear_targets();
  uint32_t max_target = 0;
  for (const pb::Target& target : chain_table_.targets())
    max_target = std::max(max_target, target.id());
  for (uint32_t slot = 0; slot < instances.size(); ++slot) {
    pb::Target* found = nullptr;
    for (pb::Target& target : *chain_table_.mutable_targets()) {
      if (target.server_id() == server_id && target.slot() == slot) found = &target;
    }
    if (!found) {
      found = chain_table_.add_targets();
      found->set_id(++max_target);
      found->set_server_id(server_id);
      found->set_slot(slot);
      found->set_instance_id(instances[slot]);
    } else if (found->instance_id() != instances[slot]) {
      std::fprintf(stderr, "sealfs-meta: target %u of data server %u has a new store: it resyncs\n",
                   found->id(), server_id);
      found->set_instance_id(instances[slot]);
      lost_data_.insert(found->id());
    }
    state.record.add_targets(found->id());
    resp->add_target_ids(found->id());
  }
  Status saved = store_.PutServer(state.record);
  if (!saved.ok()) return saved;
  state.last_heartbeat = Clock::now();
  state.heard = true;
  SEALFS_RETURN_IF_ERROR(store_.SaveChainTable(chain_table_));
  ReconcileLocked();
  ++map_version_;
  resp->set_server_id(server_id);
  return Status::Ok();
}

Status MetaService::Heartbeat(const pb::HeartbeatRequest& req, pb::HeartbeatResponse* resp) {
  std::lock_guard<std::mutex> lock(servers_mutex_);
  auto found = servers_.find(req.server_id());
  if (found == servers_.end()) return Status(ENOENT, "unknown data server; register again");
  ServerState& state = found->second;
  const bool was_up = ServerUp(state, Clock::now());
  state.record.set_capacity_bytes(req.capacity_bytes());
  state.record.set_free_bytes(req.free_bytes());
  state.record.set_used_bytes(req.used_bytes());
  state.record.set_chunk_count(req.chunk_count());
  *state.record.mutable_tcp() = req.tcp();
  *state.record.mutable_rdma() = req.rdma();
  *state.record.mutable_replication() = req.replication();
  state.record.set_last_heartbeat_ns(NowNs());
  state.last_heartbeat = Clock::now();
  state.heard = true;
  bool changed = !was_up && ReconcileLocked();
  for (const pb::SyncProgress& progress : req.sync()) {
    if (progress.finished()) {
      changed |= chains::SyncFinished(chain_table_, progress.chain_id(), progress.target_id(),
                                      progress.chain_version());
    } else {
      chains::NoteSyncProgress(chain_table_, progress);
    }
  }
  if (changed) SaveTableLocked();
  resp->set_map_version(map_version_);
  resp->set_lease_ms(static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(options_.server_timeout).count()));
  return Status::Ok();
}

std::vector<uint32_t> MetaService::PlacementChains() {
  // Right after this server started it has heard from nobody yet: wait a
  // little (heartbeats come every couple of seconds) for enough servers to
  // lay out chains and for the chains to have serving members.
  constexpr auto kStartupWait = std::chrono::seconds(5);
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(servers_mutex_);
      // New chains start with every member serving: then down ones go offline.
      if (chains::AddChains(chain_table_)) SaveTableLocked();
      ReconcileLocked();
      std::vector<uint32_t> writable = chains::WritableChains(chain_table_);
      bool everyone_heard = true;
      for (auto& [id, state] : servers_) everyone_heard = everyone_heard && state.heard;
      if ((everyone_heard && !writable.empty()) ||
          Clock::now() - started_ >
              std::min<Clock::duration>(kStartupWait, options_.server_timeout)) {
        return writable;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

pb::ClusterMapResponse MetaService::ClusterMap() {
  pb::ClusterMapResponse map;
  std::lock_guard<std::mutex> lock(servers_mutex_);
  ReconcileLocked();
  auto now = Clock::now();
  bool changed = false;
  for (auto& [id, state] : servers_) {
    std::string new_state = state.heard && ServerUp(state, now) ? "up" : "down";
    if (state.record.state() != new_state) {
      state.record.set_state(new_state);
      changed = true;
    }
    *map.add_servers() = state.record;
  }
  if (changed) ++map_version_;
  map.set_version(map_version_);
  map.set_replicas(chain_table_.replicas());
  *map.mutable_targets() = chain_table_.targets();
  *map.mutable_chains() = chain_table_.chains();
  map.set_lease_ms(static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(options_.server_timeout).count()));
  return map;
}

Result<MetaService::Route> MetaService::RouteToTarget(uint32_t target_id) {
  std::lock_guard<std::mutex> lock(servers_mutex_);
  const pb::Target* target = chains::FindTarget(chain_table_, target_id);
  if (!target) return Status(EIO, "target " + std::to_string(target_id) + " is unknown");
  auto server = servers_.find(target->server_id());
  if (server == servers_.end()) {
    return Status(EIO, "data server " + std::to_string(target->server_id()) + " is unknown");
  }
  const std::string& address = server->second.record.address();
  auto& channel = channels_[address];
  if (!channel) {
    channel = auth::AsChannel(
        auth::WithAuth(rpc::MakeTcpChannel(io_, address), auth::ServerAuth(options_.cluster_key)));
  }
  return Route{target_id, channel, target->instance_id()};
}

Result<MetaService::ChainRoute> MetaService::RouteToChain(uint32_t chain_id, ChainEnd end) {
  pb::ChainRef ref;
  uint32_t target_id = 0;
  {
    std::lock_guard<std::mutex> lock(servers_mutex_);
    const pb::Chain* chain = chains::FindChain(chain_table_, chain_id);
    if (!chain) return Status(EIO, "chain " + std::to_string(chain_id) + " is unknown");
    if (chain->lost())
      return Status(ENODATA, "chain " + std::to_string(chain_id) + " lost its data");
    std::vector<uint32_t> serving = chains::Serving(*chain);
    if (serving.empty()) {
      return Status(rpc::kStaleChain,
                    "chain " + std::to_string(chain_id) + " has no serving member");
    }
    target_id = end == ChainEnd::kHead ? serving.front() : serving.back();
    ref.set_id(chain_id);
    ref.set_version(chain->version());
  }
  Result<Route> route = RouteToTarget(target_id);
  if (!route.ok()) return route.status();
  return ChainRoute{std::move(*route), ref};
}

std::set<uint32_t> MetaService::MembersOf(const pb::Layout& layout) {
  std::set<uint32_t> targets;
  std::lock_guard<std::mutex> lock(servers_mutex_);
  for (uint32_t chain_id : layout.chains()) {
    const pb::Chain* chain = chains::FindChain(chain_table_, chain_id);
    if (!chain || chain->lost()) continue;  // nothing of the file is left there
    for (const pb::ChainMember& member : chain->members()) targets.insert(member.target_id());
  }
  return targets;
}

std::vector<MetaService::Route> MetaService::LiveTargetsOf(const pb::Layout& layout) {
  std::set<uint32_t> targets;
  {
    std::lock_guard<std::mutex> lock(servers_mutex_);
    for (uint32_t chain_id : layout.chains()) {
      const pb::Chain* chain = chains::FindChain(chain_table_, chain_id);
      if (!chain) continue;
      for (uint32_t target : chains::WritePath(*chain)) targets.insert(target);
    }
  }
  std::vector<Route> routes;
  for (uint32_t target : targets) {
    Result<Route> route = RouteToTarget(target);
    if (route.ok()) routes.push_back(std::move(*route));
  }
  return routes;
}

}  // namespace sealfs::metadata
