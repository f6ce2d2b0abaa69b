#include "sealfs/rpc/chain_table.h"

#include <algorithm>
#include <map>

namespace sealfs::chains {

namespace {

bool Is(const pb::ChainMember& member, std::string_view state) { return member.state() == state; }

bool HasServing(const pb::Chain& chain, uint32_t except = 0) {
  for (const pb::ChainMember& member : chain.members()) {
    if (member.target_id() != except && Is(member, kServing)) return true;
  }
  return false;
}

pb::ChainMember NewMember(uint32_t target_id) {
  pb::ChainMember member;
  member.set_target_id(target_id);
  member.set_state(std::string(kServing));
  return member;
}

// Targets interleaved by server (each server's first target, then each
// one's second, ...), so that neighbours in the order are on different
// servers whenever the servers have as many targets each.
std::vector<const pb::Target*> Interleaved(const std::vector<const pb::Target*>& targets) {
  std::map<uint32_t, std::vector<const pb::Target*>> by_server;
  for (const pb::Target* target : targets) by_server[target->server_id()].push_back(target);
  for (auto& [server, list] : by_server) {
    std::sort(list.begin(), list.end(),
              [](const pb::Target* a, const pb::Target* b) { return a->slot() < b->slot(); });
  }
  std::vector<const pb::Target*> order;
  for (size_t round = 0; order.size() < targets.size(); ++round) {
    for (auto& [server, list] : by_server) {
      if (round < list.size()) order.push_back(list[round]);
    }
  }
  return order;
}

}  // namespace

const pb::Target* FindTarget(const pb::ChainTable& table, uint32_t target_id) {
  for (const pb::Target& target : table.targets()) {
    if (target.id() == target_id) return &target;
  }
  return nullptr;
}

const pb::Chain* FindChain(const pb::ChainTable& table, uint32_t chain_id) {
  for (const pb::Chain& chain : table.chains()) {
    if (chain.id() == chain_id) return &chain;
  }
  return nullptr;
}

bool AddChains(pb::ChainTable& table) {
  const uint32_t replicas = std::max<uint32_t>(1, table.replicas());
  std::set<uint32_t> servers;
  for (const pb::Target& target : table.targets()) servers.insert(target.server_id());
  if (servers.size() < replicas) return false;
  std::map<uint32_t, int> uses;  // chain memberships per target
  std::set<uint32_t> placed;     // targets in a chain
  uint32_t next_id = 1;
  for (const pb::Chain& chain : table.chains()) {
    next_id = std::max(next_id, chain.id() + 1);
    for (const pb::ChainMember& member : chain.members()) {
      ++uses[member.target_id()];
      // A target whose chains all lost their data starts a new one.
      if (!chain.lost()) placed.insert(member.target_id());
    }
  }
  std::vector<const pb::Target*> all, fresh;
  for (const pb::Target& target : table.targets()) {
    all.push_back(&target);
    if (!placed.count(target.id())) fresh.push_back(&target);
  }
  if (fresh.empty()) return false;
  std::vector<pb::Chain> added;
  if (table.chains_size() == 0) {
    // Chain j starts at the j-th target of the interleaved order and takes
    // the next targets on servers not yet in it: every target is then head,
    // middle and tail once.
    std::vector<const pb::Target*> order = Interleaved(all);
    for (size_t j = 0; j < order.size(); ++j) {
      pb::Chain chain;
      std::set<uint32_t> used;
      for (size_t k = 0; k < order.size() && used.size() < replicas; ++k) {
        const pb::Target* target = order[(j + k) % order.size()];
        if (used.insert(target->server_id()).second) *chain.add_members() = NewMember(target->id());
      }
      added.push_back(std::move(chain));
    }
  } else {
    // A new target heads a chain of its own; the other members are the least
    // used targets of other servers.
    for (const pb::Target* head : fresh) {
      pb::Chain chain;
      *chain.add_members() = NewMember(head->id());
      std::set<uint32_t> used{head->server_id()};
      ++uses[head->id()];
      while (static_cast<uint32_t>(chain.members_size()) < replicas) {
        const pb::Target* best = nullptr;
        for (const pb::Target* candidate : all) {
          if (used.count(candidate->server_id())) continue;
          if (!best || uses[candidate->id()] < uses[best->id()]) best = candidate;
        }
        if (!best) break;
        used.insert(best->server_id());
        ++uses[best->id()];
        *chain.add_members() = NewMember(best->id());
      }
      added.push_back(std::move(chain));
    }
  }
  for (pb::Chain& chain : added) {
    chain.set_id(next_id++);
    chain.set_version(1);
    *table.add_chains() = std::move(chain);
  }
  return true;
}

bool Reconcile(pb::ChainTable& table, const std::set<uint32_t>& up_targets,
               const std::set<uint32_t>& lost_data) {
  bool any_changed = false;
  for (pb::Chain& chain : *table.mutable_chains()) {
    bool changed = false;
    auto* members = chain.mutable_members();
    // Down: out of the write path. A member that leaves while another keeps
    // serving misses what comes after; members leaving together are equal.
    bool survivor = false;
    for (const pb::ChainMember& member : *members) {
      survivor = survivor || (Is(member, kServing) && up_targets.count(member.target_id()) &&
                              !lost_data.count(member.target_id()));
    }
    for (pb::ChainMember& member : *members) {
      if (Is(member, kOffline) || up_targets.count(member.target_id())) continue;
      member.set_stale(Is(member, kSyncing) || survivor);
      member.set_state(std::string(kOffline));
      changed = true;
    }
    // A disk replaced under a member that never went offline: it missed
    // everything.
    for (pb::ChainMember& member : *members) {
      if (Is(member, kOffline) || !lost_data.count(member.target_id())) continue;
      member.set_state(std::string(kOffline));
      member.set_stale(true);
      changed = true;
    }
    // Up again: a member that missed nothing serves at once when nobody else
    // does; any other rejoins at the tail and resyncs from a serving member.
    for (pb::ChainMember& member : *members) {
      if (!Is(member, kOffline) || !up_targets.count(member.target_id())) continue;
      if (lost_data.count(member.target_id())) member.set_stale(true);
      if (!member.stale() && !HasServing(chain)) {
        member.set_state(std::string(kServing));
        changed = true;
      }
    }
    std::vector<pb::ChainMember> rejoining;
    for (int i = 0; i < members->size();) {
      pb::ChainMember& member = (*members)[i];
      if (Is(member, kOffline) && up_targets.count(member.target_id()) && HasServing(chain)) {
        member.set_state(std::string(kSyncing));
        member.set_synced_chunks(0);
        member.set_total_chunks(0);
        rejoining.push_back(member);
        members->erase(members->begin() + i);
        changed = true;
      } else {
        ++i;
      }
    }
    for (pb::ChainMember& member : rejoining) *members->Add() = std::move(member);
    // Nobody serves and everyone missed writes: the data is gone.
    bool all_stale = members->size() > 0;
    for (const pb::ChainMember& member : *members) all_stale = all_stale && member.stale();
    if (!chain.lost() && !HasServing(chain) && all_stale) {
      chain.set_lost(true);
      changed = true;
    }
    if (changed) {
      chain.set_version(chain.version() + 1);
      any_changed = true;
    }
  }
  return any_changed;
}

bool SyncFinished(pb::ChainTable& table, uint32_t chain_id, uint32_t target_id,
                  uint64_t chain_version) {
  for (pb::Chain& chain : *table.mutable_chains()) {
    if (chain.id() != chain_id || chain.version() != chain_version) continue;
    for (pb::ChainMember& member : *chain.mutable_members()) {
      if (member.target_id() != target_id || !Is(member, kSyncing)) continue;
      member.set_state(std::string(kServing));
      member.set_stale(false);
      member.set_synced_chunks(member.total_chunks());
      chain.set_version(chain.version() + 1);
      return true;
    }
  }
  return false;
}

void NoteSyncProgress(pb::ChainTable& table, const pb::SyncProgress& progress) {
  for (pb::Chain& chain : *table.mutable_chains()) {
    if (chain.id() != progress.chain_id()) continue;
    for (pb::ChainMember& member : *chain.mutable_members()) {
      if (member.target_id() == progress.target_id() && Is(member, kSyncing)) {
        member.set_synced_chunks(progress.synced_chunks());
        member.set_total_chunks(progress.total_chunks());
      }
    }
  }
}

std::vector<uint32_t> WritableChains(const pb::ChainTable& table) {
  std::vector<uint32_t> ids;
  for (const pb::Chain& chain : table.chains()) {
    if (HasServing(chain) && !chain.lost()) ids.push_back(chain.id());
  }
  return ids;
}

std::vector<uint32_t> WritePath(const pb::Chain& chain) {
  std::vector<uint32_t> path;
  for (const pb::ChainMember& member : chain.members()) {
    if (Is(member, kServing)) path.push_back(member.target_id());
  }
  for (const pb::ChainMember& member : chain.members()) {
    if (Is(member, kSyncing)) path.push_back(member.target_id());
  }
  return path;
}

std::vector<uint32_t> Serving(const pb::Chain& chain) {
  std::vector<uint32_t> serving;
  for (const pb::ChainMember& member : chain.members()) {
    if (Is(member, kServing)) serving.push_back(member.target_id());
  }
  return serving;
}

}  // namespace sealfs::chains
