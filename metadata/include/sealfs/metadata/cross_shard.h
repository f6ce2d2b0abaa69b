// Operations across metadata shards, run as a two-phase commit
// (shard.proto): the coordinator's side (CrossShardCoordinator), the
// participant's sweep that settles what it holds (ResolvePrepared), and the
// plans that turn a namespace operation into each shard's change.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "sealfs/metadata/meta_store.h"

namespace sealfs::metadata {

enum class Decision { kPending, kCommit, kAbort };

// How shards reach one another (a local store, or RPC between servers).
class ShardPeers {
 public:
  virtual ~ShardPeers() = default;
  virtual Status Prepare(const pb::ShardChange& change) = 0;  // on change.shard()
  virtual Status Commit(uint32_t shard, uint64_t txid) = 0;
  virtual Status Abort(uint32_t shard, uint64_t txid) = 0;
  // The coordinator's decision on a change a participant holds.
  virtual Result<Decision> Decide(uint32_t coordinator, uint64_t txid) = 0;
};

// The points of the protocol, in order; tests stop a coordinator at each.
enum class ProtocolPoint {
  kIntentWritten,  // nothing prepared yet
  kPrepared,       // after each participant's prepare
  kDecided,        // the commit decision is durable
  kApplied,        // after each participant applied its part
};

struct CoordinatorOptions {
  // How long a decided change keeps asking an unreachable shard to apply
  // its part before the caller gets an error (the change is still applied
  // when the shard returns: Recover keeps at it).
  std::chrono::milliseconds apply_wait{std::chrono::minutes(10)};
  std::chrono::milliseconds retry_interval{std::chrono::milliseconds(100)};
  // Called at each point; returning false stops the run there as a crash
  // of this process would (tests).
  std::function<bool(ProtocolPoint)> at_point;
};

class CrossShardCoordinator {
 public:
  CrossShardCoordinator(MetaStore& store, ShardPeers& peers, CoordinatorOptions options = {});

  // Applies `changes` (one per shard) all or none. Returns the error of
  // the prepare that failed (then nothing changed), or Ok once every shard
  // applied its part durably.
  Status Run(const std::string& operation, std::vector<pb::ShardChange> changes);
  // Settles the intents a crash (or an unreachable shard) left: commits
  // those decided, rolls back the rest. Intents Run is driving are skipped.
  Status Recover();
  // What a participant holding `txid` should do with it.
  Result<Decision> DecisionFor(uint64_t txid);

 private:
  bool Continue(ProtocolPoint point);
  // Drops every prepared part; the intent goes once every shard answered.
  void RollBack(const pb::Intent& intent);
  Status Apply(uint32_t shard, uint64_t txid);

  MetaStore& store_;
  ShardPeers& peers_;
  CoordinatorOptions options_;
  std::mutex running_mutex_;
  std::set<uint64_t> running_;
};

// A participant's sweep: asks the coordinator of each change held here
// what became of it and applies or drops it (a prepare that arrived after
// its operation was rolled back is dropped here).
Status ResolvePrepared(MetaStore& store, ShardPeers& peers, const MetaStore::OpenCheck& is_open);

// ---- plans: each shard's change for one namespace operation.

// What planning reads, from whichever shard holds it.
class ShardReader {
 public:
  virtual ~ShardReader() = default;
  virtual Result<pb::Inode> Getattr(uint64_t ino) = 0;
  // The inode `name` in `parent` names (ENOENT if none).
  virtual Result<uint64_t> FindEntry(uint64_t parent, const std::string& name) = 0;
};

// A directory `new_dir` (MetaStore::NewDirectory: an inode of another
// shard, with the xattrs it inherits) named `name` in `parent`.
std::vector<pb::ShardChange> PlanMkdir(uint64_t parent, const std::string& name,
                                       const pb::Inode& new_dir,
                                       const std::map<std::string, std::string>& xattrs);
Result<std::vector<pb::ShardChange>> PlanRmdir(ShardReader& reader, uint64_t parent,
                                               const std::string& name);
Result<std::vector<pb::ShardChange>> PlanUnlink(ShardReader& reader, uint64_t parent,
                                                const std::string& name);
Result<std::vector<pb::ShardChange>> PlanLink(ShardReader& reader, uint64_t ino,
                                              uint64_t new_parent, const std::string& new_name);
// flags as MetaStore::Rename. An empty plan: nothing to change (both names
// already link the same inode).
Result<std::vector<pb::ShardChange>> PlanRename(ShardReader& reader, uint64_t parent,
                                                const std::string& name, uint64_t new_parent,
                                                const std::string& new_name, uint32_t flags);

}  // namespace sealfs::metadata
