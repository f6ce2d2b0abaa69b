// The coordinator of an operation across shards. An intent is durable
// before any shard changes; the decision to commit is durable before any
// shard applies; an intent goes only once every shard has applied or
// dropped its part. So after a crash anywhere, what is recorded says what
// to finish: an intent still preparing rolls back, a decided one commits,
// and a participant whose change no intent covers drops it.
#include "sealfs/metadata/cross_shard.h"

#include <algorithm>
#include <thread>

namespace sealfs::metadata {

namespace {

Status Stopped() { return Status(ECANCELED, "the coordinator stopped (a test's crash point)"); }

}  // namespace

CrossShardCoordinator::CrossShardCoordinator(MetaStore& store, ShardPeers& peers,
                                             CoordinatorOptions options)
    : store_(store), peers_(peers), options_(std::move(options)) {}

bool CrossShardCoordinator::Continue(ProtocolPoint point) {
  return !options_.at_point || options_.at_point(point);
}

Status CrossShardCoordinator::Run(const std::string& operation,
                                  std::vector<pb::ShardChange> changes) {
  if (changes.empty()) return Status::Ok();
  std::sort(changes.begin(), changes.end(),
            [](const auto& a, const auto& b) { return a.shard() < b.shard(); });
  pb::Intent intent;
  intent.set_txid(store_.NewTxid());
  intent.set_state(pb::Intent::PREPARING);
  intent.set_operation(operation);
  const int64_t now = NowNs();
  for (pb::ShardChange& change : changes) {
    change.set_txid(intent.txid());
    change.set_coordinator(store_.shard());
    if (change.time_ns() == 0) change.set_time_ns(now);
    *intent.add_changes() = change;
  }
  {
    std::lock_guard<std::mutex> guard(running_mutex_);
    running_.insert(intent.txid());
  }
  struct Done {
    CrossShardCoordinator* self;
    uint64_t txid;
    ~Done() {
      std::lock_guard<std::mutex> guard(self->running_mutex_);
      self->running_.erase(txid);
    }
  } done{this, intent.txid()};

  SEALFS_RETURN_IF_ERROR(store_.PutIntent(intent));
  if (!Continue(ProtocolPoint::kIntentWritten)) return Stopped();
  for (const pb::ShardChange& change : changes) {
    Status prepared = peers_.Prepare(change);
    if (!Continue(ProtocolPoint::kPrepared)) return Stopped();
    if (!prepared.ok()) {
      RollBack(intent);
      return prepared;
    }
  }
  intent.set_state(pb::Intent::COMMITTING);
  Status decided = store_.PutIntent(intent);
  if (!decided.ok()) {
    intent.set_state(pb::Intent::PREPARING);
    RollBack(intent);
    return decided;
  }
  if (!Continue(ProtocolPoint::kDecided)) return Stopped();
  for (const pb::ShardChange& change : changes) {
    SEALFS_RETURN_IF_ERROR(Apply(change.shard(), intent.txid()));
    if (!Continue(ProtocolPoint::kApplied)) return Stopped();
  }
  // Every part is applied: a failure to forget the intent only means the
  // recovery sweep commits it once more, which changes nothing.
  store_.DeleteIntent(intent.txid());
  return Status::Ok();
}

Status CrossShardCoordinator::Apply(uint32_t shard, uint64_t txid) {
  auto deadline = std::chrono::steady_clock::now() + options_.apply_wait;
  for (;;) {
    Status applied = peers_.Commit(shard, txid);
    if (applied.ok()) return applied;
    if (std::chrono::steady_clock::now() >= deadline) {
      return Status(EIO, "decided, but shard " + std::to_string(shard) +
                             " has not applied its part (" + applied.message() +
                             "); it will when it answers again");
    }
    std::this_thread::sleep_for(options_.retry_interval);
  }
}

void CrossShardCoordinator::RollBack(const pb::Intent& intent) {
  bool all = true;
  for (const pb::ShardChange& change : intent.changes()) {
    all = peers_.Abort(change.shard(), intent.txid()).ok() && all;
  }
  if (all) store_.DeleteIntent(intent.txid());
}

Status CrossShardCoordinator::Recover() {
  Result<std::vector<pb::Intent>> intents = store_.Intents();
  if (!intents.ok()) return intents.status();
  for (const pb::Intent& intent : *intents) {
    {
      std::lock_guard<std::mutex> guard(running_mutex_);
      if (running_.count(intent.txid())) continue;
    }
    if (intent.state() == pb::Intent::PREPARING) {
      RollBack(intent);
      continue;
    }
    bool all = true;
    for (const pb::ShardChange& change : intent.changes()) {
      all = peers_.Commit(change.shard(), intent.txid()).ok() && all;
    }
    if (all) store_.DeleteIntent(intent.txid());
  }
  return Status::Ok();
}

Result<Decision> CrossShardCoordinator::DecisionFor(uint64_t txid) {
  if (ShardOf(txid) != store_.shard()) {
    return Status(EINVAL, "change " + std::to_string(txid) + " is not coordinated here");
  }
  Result<std::optional<pb::Intent>> intent = store_.FindIntent(txid);
  if (!intent.ok()) return intent.status();
  // No intent: the operation was rolled back, or finished, and a finished
  // one has no part left prepared anywhere; so what is held is dropped.
  if (!intent->has_value()) return Decision::kAbort;
  return (*intent)->state() == pb::Intent::COMMITTING ? Decision::kCommit : Decision::kPending;
}

Status ResolvePrepared(MetaStore& store, ShardPeers& peers, const MetaStore::OpenCheck& is_open) {
  Result<std::vector<pb::ShardChange>> prepared = store.PreparedChanges();
  if (!prepared.ok()) return prepared.status();
  for (const pb::ShardChange& change : *prepared) {
    Result<Decision> decision = peers.Decide(change.coordinator(), change.txid());
    if (!decision.ok()) continue;  // the coordinator is away: ask again later
    if (*decision == Decision::kCommit) {
      Result<std::vector<Unlinked>> applied = store.CommitPrepared(change.txid(), is_open);
      if (!applied.ok()) return applied.status();
    } else if (*decision == Decision::kAbort) {
      SEALFS_RETURN_IF_ERROR(store.AbortPrepared(change.txid()));
    }
  }
  return Status::Ok();
}

}  // namespace sealfs::metadata
