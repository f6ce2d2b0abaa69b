// The chain table (kept by the metadata service, read by every server and
// client): laying storage targets out into replication chains, and
// the membership changes when targets fail, return and finish resync. Pure
// functions over pb::ChainTable, so they are tested without any server.
#pragma once

#include <cstdint>
#include <set>
#include <string_view>
#include <vector>

#include "meta.pb.h"

namespace sealfs::chains {

inline constexpr std::string_view kServing = "serving";
inline constexpr std::string_view kSyncing = "syncing";
inline constexpr std::string_view kOffline = "offline";

// Adds chains so that every target is in one, each of table.replicas()
// targets on as many different servers. A fresh table is laid out so that
// every target is head, middle and tail of about as many chains and the
// chains of one server continue on many others; later targets head new
// chains whose other members are the least used targets. Returns false when
// fewer servers than replicas have targets (nothing added).
bool AddChains(pb::ChainTable& table);

// Brings chain membership in line with which targets are up: members whose
// target is down go offline; returning ones rejoin (as serving when the
// chain has no serving member and they missed nothing, else at the tail as
// syncing); targets in `lost_data` (a replaced disk) count as having missed
// everything. Every changed chain's version goes up. Returns whether any did.
bool Reconcile(pb::ChainTable& table, const std::set<uint32_t>& up_targets,
               const std::set<uint32_t>& lost_data);

// A syncing member caught up under chain version `chain_version`: it serves.
bool SyncFinished(pb::ChainTable& table, uint32_t chain_id, uint32_t target_id,
                  uint64_t chain_version);
void NoteSyncProgress(pb::ChainTable& table, const pb::SyncProgress& progress);

// Chains that can take new data (with a serving member).
std::vector<uint32_t> WritableChains(const pb::ChainTable& table);
const pb::Target* FindTarget(const pb::ChainTable& table, uint32_t target_id);
const pb::Chain* FindChain(const pb::ChainTable& table, uint32_t chain_id);
// The members a write passes through, head first (serving, then syncing).
std::vector<uint32_t> WritePath(const pb::Chain& chain);
// The serving members.
std::vector<uint32_t> Serving(const pb::Chain& chain);

}  // namespace sealfs::chains
