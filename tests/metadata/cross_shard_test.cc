// Operations across metadata shards (two-phase commit), with three shards'
// stores in one process: every namespace operation with its parts on
// different shards, and a crash of the coordinator or of a participant at
// every point of the protocol. After recovery the namespace is whole (the
// checker of fsck finds nothing across the three stores) and the operation
// happened entirely or not at all: entirely exactly when the crash came
// after the decision.
#include "sealfs/metadata/cross_shard.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <set>
#include <thread>

#include "sealfs/metadata/fsck.h"

namespace sealfs::metadata {
namespace {

constexpr uint32_t kShards = 3;

class Shards : public ShardPeers, public ShardReader {
 public:
  Shards() {
    char pattern[] = "/tmp/sealfs-shards-test-XXXXXX";
    dir_ = mkdtemp(pattern);
    for (uint32_t shard = 0; shard < kShards; ++shard) Open(shard);
  }
  ~Shards() override {
    for (auto& coordinator : coordinators_) coordinator.reset();
    for (auto& store : stores_) store.reset();
    std::filesystem::remove_all(dir_);
  }

  // Starts a shard's store (again, as a restart does).
  void Open(uint32_t shard) {
    coordinators_[shard].reset();
    stores_[shard].reset();
    MetaStoreOptions options;
    options.path = dir_ + "/shard" + std::to_string(shard);
    options.shard = shard;
    auto opened = MetaStore::Open(options);
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    stores_[shard] = std::move(*opened);
    coordinators_[shard] = std::make_unique<CrossShardCoordinator>(*stores_[shard], *this);
  }
  // A coordinator that stops at the `stop_at`-th protocol point it reaches
  // (0: never), as a crash of its process would.
  void StopCoordinatorAt(uint32_t shard, int stop_at) {
    CoordinatorOptions options;
    options.apply_wait = std::chrono::milliseconds(0);
    options.retry_interval = std::chrono::milliseconds(1);
    auto points = std::make_shared<int>(0);
    options.at_point = [points, stop_at](ProtocolPoint) { return ++*points != stop_at; };
    coordinators_[shard] =
        std::make_unique<CrossShardCoordinator>(*stores_[shard], *this, std::move(options));
  }
  MetaStore& store(uint32_t shard) { return *stores_[shard]; }
  CrossShardCoordinator& coordinator(uint32_t shard) { return *coordinators_[shard]; }
  std::set<uint32_t> down;  // shards that do not answer

  // Every shard recovers, as after restarts: coordinators settle their
  // intents, participants ask about what they hold.
  void Recover() {
    for (uint32_t shard = 0; shard < kShards; ++shard) {
      EXPECT_TRUE(coordinators_[shard]->Recover().ok());
    }
    for (uint32_t shard = 0; shard < kShards; ++shard) {
      EXPECT_TRUE(ResolvePrepared(*stores_[shard], *this, nullptr).ok());
    }
  }
  // Nothing pending anywhere and the namespace of all shards whole.
  void ExpectSettledAndWhole() {
    NamespaceFacts all;
    for (uint32_t shard = 0; shard < kShards; ++shard) {
      EXPECT_TRUE(stores_[shard]->Intents()->empty()) << "shard " << shard;
      EXPECT_TRUE(stores_[shard]->PreparedChanges()->empty()) << "shard " << shard;
      Result<NamespaceFacts> facts = stores_[shard]->CollectFacts();
      ASSERT_TRUE(facts.ok());
      for (auto& inode : facts->inodes) all.inodes.push_back(inode);
      for (auto& entry : facts->entries) all.entries.push_back(entry);
      for (auto& record : facts->index) all.index.push_back(record);
      for (auto& volume : facts->volumes) all.volumes.push_back(volume);
      all.orphans.insert(facts->orphans.begin(), facts->orphans.end());
    }
    for (const Finding& finding : CheckNamespace(all)) ADD_FAILURE() << Describe(finding);
  }

  // ShardPeers
  Status Prepare(const pb::ShardChange& change) override {
    if (down.count(change.shard())) return Status(ECONNREFUSED, "shard down");
    return stores_[change.shard()]->Prepare(change);
  }
  Status Commit(uint32_t shard, uint64_t txid) override {
    if (down.count(shard)) return Status(ECONNREFUSED, "shard down");
    return stores_[shard]->CommitPrepared(txid, nullptr).status();
  }
  Status Abort(uint32_t shard, uint64_t txid) override {
    if (down.count(shard)) return Status(ECONNREFUSED, "shard down");
    return stores_[shard]->AbortPrepared(txid);
  }
  Result<Decision> Decide(uint32_t coordinator, uint64_t txid) override {
    if (down.count(coordinator)) return Status(ECONNREFUSED, "shard down");
    return coordinators_[coordinator]->DecisionFor(txid);
  }
  // ShardReader
  Result<pb::Inode> Getattr(uint64_t ino) override { return stores_[ShardOf(ino)]->Getattr(ino); }
  Result<uint64_t> FindEntry(uint64_t parent, const std::string& name) override {
    return stores_[ShardOf(parent)]->FindEntry(parent, name);
  }

 private:
  std::string dir_;
  std::unique_ptr<MetaStore> stores_[kShards];
  std::unique_ptr<CrossShardCoordinator> coordinators_[kShards];
};

class CrossShardTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto volume = shards_.store(0).CreateVolume("vol", 0, 0);
    ASSERT_TRUE(volume.ok()) << volume.status().ToString();
    root_ = volume->root_ino();
  }
  // A directory named `name` in `parent` whose inode lives on `shard`.
  uint64_t Mkdir(uint64_t parent, const std::string& name, uint32_t shard,
                 Status* status = nullptr) {
    std::map<std::string, std::string> xattrs;
    uint64_t ino = shards_.store(shard).NewIno();
    auto dir = shards_.store(ShardOf(parent)).NewDirectory(parent, 0755, caller_, ino, &xattrs);
    EXPECT_TRUE(dir.ok()) << dir.status().ToString();
    Status run =
        shards_.coordinator(ShardOf(parent)).Run("mkdir", PlanMkdir(parent, name, *dir, xattrs));
    if (status)
      *status = run;
    else
      EXPECT_TRUE(run.ok()) << run.ToString();
    return ino;
  }
  // A file made in `parent` (it lives on the parent's shard).
  uint64_t File(uint64_t parent, const std::string& name) {
    auto inode = shards_.store(ShardOf(parent)).Mknod(parent, name, S_IFREG | 0644, 0, caller_, {});
    EXPECT_TRUE(inode.ok()) << inode.status().ToString();
    return inode.ok() ? inode->attr().ino() : 0;
  }
  Status Run(uint64_t coordinator_dir, const std::string& operation,
             Result<std::vector<pb::ShardChange>> plan) {
    if (!plan.ok()) return plan.status();
    return shards_.coordinator(ShardOf(coordinator_dir)).Run(operation, std::move(*plan));
  }
  Status Rename(uint64_t parent, const std::string& name, uint64_t new_parent,
                const std::string& new_name, uint32_t flags = 0) {
    return Run(new_parent, "rename",
               PlanRename(shards_, parent, name, new_parent, new_name, flags));
  }
  Result<uint64_t> Named(uint64_t parent, const std::string& name) {
    return shards_.FindEntry(parent, name);
  }
  uint32_t Links(uint64_t ino) {
    auto inode = shards_.Getattr(ino);
    return inode.ok() ? inode->attr().nlink() : 0;
  }

  Shards shards_;
  pb::Caller caller_;
  uint64_t root_ = 0;
};

TEST_F(CrossShardTest, MkdirAndRmdirOfADirectoryOnAnotherShard) {
  uint64_t dir = Mkdir(root_, "d1", 1);
  EXPECT_EQ(ShardOf(dir), 1u);
  EXPECT_EQ(*Named(root_, "d1"), dir);
  EXPECT_EQ(Links(root_), 3u);
  EXPECT_EQ(shards_.Getattr(dir)->attr().parent(), root_);
  uint64_t inner = Mkdir(dir, "d2", 2);
  File(inner, "f");
  Status status;
  Mkdir(root_, "d1", 2, &status);
  EXPECT_EQ(status.code(), EEXIST);
  EXPECT_EQ(Run(root_, "rmdir", PlanRmdir(shards_, root_, "d1")).code(), ENOTEMPTY);
  EXPECT_EQ(Run(dir, "rmdir", PlanRmdir(shards_, dir, "d2")).code(), ENOTEMPTY);
  ASSERT_TRUE(shards_.store(2).Unlink(inner, "f", nullptr).ok());
  EXPECT_TRUE(Run(dir, "rmdir", PlanRmdir(shards_, dir, "d2")).ok());
  EXPECT_TRUE(Run(root_, "rmdir", PlanRmdir(shards_, root_, "d1")).ok());
  EXPECT_EQ(Named(root_, "d1").status().code(), ENOENT);
  EXPECT_EQ(shards_.Getattr(dir).status().code(), ENOENT);
  EXPECT_EQ(Links(root_), 2u);
  shards_.ExpectSettledAndWhole();
}

TEST_F(CrossShardTest, LinkAndUnlinkOfAFileWhoseInodeIsElsewhere) {
  uint64_t a = Mkdir(root_, "a", 1);
  uint64_t b = Mkdir(root_, "b", 2);
  uint64_t f = File(a, "f");
  EXPECT_TRUE(Run(b, "link", PlanLink(shards_, f, b, "g")).ok());
  EXPECT_EQ(Links(f), 2u);
  EXPECT_EQ(*Named(b, "g"), f);
  EXPECT_EQ(Run(b, "link", PlanLink(shards_, f, b, "g")).code(), EEXIST);
  EXPECT_EQ(Run(b, "link", PlanLink(shards_, a, b, "dir")).code(), EPERM);
  EXPECT_TRUE(Run(a, "unlink", PlanUnlink(shards_, a, "f")).ok());
  EXPECT_EQ(Links(f), 1u);
  EXPECT_TRUE(Run(b, "unlink", PlanUnlink(shards_, b, "g")).ok());
  EXPECT_EQ(shards_.Getattr(f).status().code(), ENOENT);
  EXPECT_EQ(Run(b, "unlink", PlanUnlink(shards_, b, "g")).code(), ENOENT);
  shards_.ExpectSettledAndWhole();
}

TEST_F(CrossShardTest, RenameAcrossThreeShardsInEveryForm) {
  uint64_t a = Mkdir(root_, "a", 1);
  uint64_t b = Mkdir(root_, "b", 2);
  uint64_t f = File(a, "f");
  // A file into a directory on another shard.
  ASSERT_TRUE(Rename(a, "f", b, "f2").ok());
  EXPECT_EQ(*Named(b, "f2"), f);
  EXPECT_EQ(Named(a, "f").status().code(), ENOENT);
  // Over an existing file whose inode lives on a third shard (root's, 0).
  uint64_t victim = File(root_, "victim");
  ASSERT_TRUE(Run(a, "link", PlanLink(shards_, victim, a, "v")).ok());
  ASSERT_TRUE(Rename(b, "f2", a, "v").ok());
  EXPECT_EQ(*Named(a, "v"), f);
  EXPECT_EQ(Links(victim), 1u);
  // RENAME_NOREPLACE refuses an existing name; RENAME_EXCHANGE swaps.
  File(b, "other");
  EXPECT_EQ(Rename(a, "v", b, "other", pb::RENAME_FLAG_NOREPLACE).code(), EEXIST);
  uint64_t other = *Named(b, "other");
  ASSERT_TRUE(Rename(a, "v", b, "other", pb::RENAME_FLAG_EXCHANGE).ok());
  EXPECT_EQ(*Named(a, "v"), other);
  EXPECT_EQ(*Named(b, "other"), f);
  // A directory between shards keeps its parent right and the link counts.
  uint64_t c = Mkdir(a, "c", 0);
  ASSERT_TRUE(Rename(a, "c", b, "c").ok());
  EXPECT_EQ(shards_.Getattr(c)->attr().parent(), b);
  EXPECT_EQ(Links(a), 2u);
  EXPECT_EQ(Links(b), 3u);
  // Not under itself, across shards.
  uint64_t d = Mkdir(c, "d", 1);
  EXPECT_EQ(Rename(b, "c", d, "c").code(), EINVAL);
  // Exchanging a directory with a file.
  ASSERT_TRUE(Rename(b, "c", a, "v", pb::RENAME_FLAG_EXCHANGE).ok());
  EXPECT_EQ(shards_.Getattr(c)->attr().parent(), a);
  EXPECT_EQ(Links(a), 3u);
  EXPECT_EQ(Links(b), 2u);
  // A directory over an empty one, not over a full one.
  uint64_t empty = Mkdir(b, "empty", 0);
  EXPECT_EQ(Rename(b, "empty", a, "v").code(), ENOTEMPTY);  // v is c, which holds d
  ASSERT_TRUE(Run(c, "rmdir", PlanRmdir(shards_, c, "d")).ok());
  EXPECT_EQ(shards_.Getattr(d).status().code(), ENOENT);
  ASSERT_TRUE(Rename(b, "empty", a, "v").ok());
  EXPECT_EQ(shards_.Getattr(c).status().code(), ENOENT);
  EXPECT_EQ(*Named(a, "v"), empty);
  EXPECT_EQ(Links(a), 3u);
  EXPECT_EQ(Links(b), 2u);
  EXPECT_EQ(Rename(a, "x", b, "y").code(), ENOENT);
  shards_.ExpectSettledAndWhole();
}

TEST_F(CrossShardTest, APreparedChangeHoldsItsInodesUntilTheDecision) {
  uint64_t a = Mkdir(root_, "a", 1);
  File(a, "f");
  pb::ShardChange change = (*PlanUnlink(shards_, a, "f"))[0];
  change.set_txid(7);
  ASSERT_TRUE(shards_.store(1).Prepare(change).ok());
  // A second change on the same directory waits its turn.
  pb::ShardChange second = change;
  second.set_txid(8);
  EXPECT_EQ(shards_.store(1).Prepare(second).code(), EAGAIN);
  // A local operation on the held directory waits for the decision.
  std::atomic<bool> created{false};
  std::thread creator(
      [&] { created = shards_.store(1).Mknod(a, "g", S_IFREG | 0644, 0, caller_, {}).ok(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_FALSE(created);
  // ... also after a restart: the hold comes back from the record.
  ASSERT_TRUE(shards_.store(1).AbortPrepared(7).ok());
  creator.join();
  EXPECT_TRUE(created);
  ASSERT_TRUE(shards_.store(1).Prepare(second).ok());
  shards_.Open(1);
  EXPECT_EQ(shards_.store(1).PreparedChanges()->size(), 1u);
  pb::ShardChange third = change;
  third.set_txid(9);
  EXPECT_EQ(shards_.store(1).Prepare(third).code(), EAGAIN);
  ASSERT_TRUE(shards_.store(1).CommitPrepared(8, nullptr).ok());
  EXPECT_EQ(Named(a, "f").status().code(), ENOENT);
  // Committing again (a repeated message) changes nothing.
  EXPECT_TRUE(shards_.store(1).CommitPrepared(8, nullptr).ok());
}

TEST_F(CrossShardTest, APrepareArrivingAfterItsOperationRolledBackIsDropped) {
  uint64_t a = Mkdir(root_, "a", 1);
  uint64_t b = Mkdir(root_, "b", 2);
  File(a, "f");
  auto plan = PlanRename(shards_, a, "f", b, "f", 0);
  ASSERT_TRUE(plan.ok());
  // Shard 1 is unreachable: the coordinator (shard 2) rolls back and
  // forgets the operation.
  shards_.down.insert(1);
  EXPECT_EQ(shards_.coordinator(2).Run("rename", *plan).code(), ECONNREFUSED);
  shards_.down.clear();
  ASSERT_TRUE(shards_.coordinator(2).Recover().ok());
  EXPECT_TRUE(shards_.store(2).Intents()->empty());
  // Then its prepare, delayed in the network, reaches shard 1 and holds a.
  pb::ShardChange late;
  for (const pb::ShardChange& change : *plan) {
    if (change.shard() == 1) late = change;
  }
  late.set_txid((uint64_t{2} << kShardBits) + 1);
  late.set_coordinator(2);
  ASSERT_TRUE(shards_.store(1).Prepare(late).ok());
  EXPECT_EQ(*shards_.coordinator(2).DecisionFor(late.txid()), Decision::kAbort);
  ASSERT_TRUE(ResolvePrepared(shards_.store(1), shards_, nullptr).ok());
  EXPECT_TRUE(shards_.store(1).PreparedChanges()->empty());
  EXPECT_TRUE(Named(a, "f").ok());
  EXPECT_NE(File(a, "g"), 0u);  // a is not held
  shards_.ExpectSettledAndWhole();
}

// The rename of a directory between shards, over a target on a third
// shard: four shards' worth of parts on three shards.
struct CrashCase {
  const char* who;  // "coordinator" or "participant"
  int point;        // the protocol point (1-based) where it stops
};

void PrintTo(const CrashCase& crash, std::ostream* out) {
  *out << crash.who << " stops at point " << crash.point;
}

class CrashTest : public CrossShardTest, public ::testing::WithParamInterface<CrashCase> {};

TEST_P(CrashTest, RecoveryFinishesOrRollsBackTheWholeOperation) {
  uint64_t a = Mkdir(root_, "a", 1);
  uint64_t b = Mkdir(root_, "b", 2);
  uint64_t moved = Mkdir(a, "moved", 0);
  Mkdir(moved, "inside", 2);
  uint64_t target = Mkdir(b, "target", 0);
  auto plan = PlanRename(shards_, a, "moved", b, "target", 0);
  ASSERT_TRUE(plan.ok());
  ASSERT_EQ(plan->size(), 3u);  // a's shard, b's shard, and shard 0 (moved, target)
  // Points: intent written 1, prepared 2-4 (shards 0, 1, 2), decided 5,
  // applied 6-8. A stopped coordinator decided from point 5 on; when shard
  // 1 stops answering, every prepare succeeded from point 3 on (its own
  // prepare came before), so the coordinator decides.
  const CrashCase crash = GetParam();
  const bool coordinator_crash = std::string(crash.who) == "coordinator";
  const bool decided = coordinator_crash ? crash.point >= 5 : crash.point >= 3;
  Status status;
  if (coordinator_crash) {
    shards_.StopCoordinatorAt(2, crash.point);
    status = shards_.coordinator(2).Run("rename", *plan);
    EXPECT_EQ(status.code(), ECANCELED);
    shards_.Open(2);  // the coordinator restarts
  } else {
    // Shard 1 (a's) stops answering at the given point; each message to it
    // after that fails, and it restarts before recovery.
    auto points = std::make_shared<int>(0);
    CoordinatorOptions options;
    options.apply_wait = std::chrono::milliseconds(0);
    int stop_at = crash.point;
    options.at_point = [this, points, stop_at](ProtocolPoint) {
      if (++*points == stop_at) shards_.down.insert(1);
      return true;
    };
    CrossShardCoordinator coordinator(shards_.store(2), shards_, std::move(options));
    status = coordinator.Run("rename", *plan);
    shards_.Open(1);
    shards_.down.clear();
  }
  shards_.Open(0);
  shards_.Recover();
  shards_.ExpectSettledAndWhole();
  if (decided) {
    EXPECT_EQ(*Named(b, "target"), moved);
    EXPECT_EQ(Named(a, "moved").status().code(), ENOENT);
    EXPECT_EQ(shards_.Getattr(moved)->attr().parent(), b);
    EXPECT_EQ(shards_.Getattr(target).status().code(), ENOENT);
  } else {
    EXPECT_FALSE(status.ok());
    EXPECT_EQ(*Named(a, "moved"), moved);
    EXPECT_EQ(*Named(b, "target"), target);
    EXPECT_EQ(shards_.Getattr(moved)->attr().parent(), a);
  }
  EXPECT_EQ(Links(a), decided ? 2u : 3u);
  EXPECT_EQ(Links(b), 3u);
  // Nothing is left held: every shard takes new changes in a and b.
  EXPECT_NE(File(a, "after"), 0u);
  EXPECT_NE(File(b, "after"), 0u);
  EXPECT_NE(Mkdir(b, "after-dir", 1), 0u);
  shards_.ExpectSettledAndWhole();
}

INSTANTIATE_TEST_SUITE_P(EveryPoint, CrashTest,
                         ::testing::Values(CrashCase{"coordinator", 1}, CrashCase{"coordinator", 2},
                                           CrashCase{"coordinator", 3}, CrashCase{"coordinator", 4},
                                           CrashCase{"coordinator", 5}, CrashCase{"coordinator", 6},
                                           CrashCase{"coordinator", 7}, CrashCase{"coordinator", 8},
                                           CrashCase{"participant", 1}, CrashCase{"participant", 2},
                                           CrashCase{"participant", 3}, CrashCase{"participant", 4},
                                           CrashCase{"participant", 5}, CrashCase{"participant", 6},
                                           CrashCase{"participant", 7}),
                         [](const ::testing::TestParamInfo<CrashCase>& info) {
                           return std::string(info.param.who) + "StopsAtPoint" +
                                  std::to_string(info.param.point);
                         });

}  // namespace
}  // namespace sealfs::metadata
