// The chain table's pure rules: layout (distinct servers, balance, spread of
// a failed server's load) and membership changes (offline, rejoin as
// syncing at the tail, serving after resync, lost chains).
#include "sealfs/rpc/chain_table.h"

#include <gtest/gtest.h>

#include <map>
#include <set>

namespace sealfs::chains {
namespace {

pb::ChainTable Table(uint32_t replicas, int servers, int targets_per_server) {
  pb::ChainTable table;
  table.set_replicas(replicas);
  uint32_t id = 0;
  for (int server = 1; server <= servers; ++server) {
    for (int slot = 0; slot < targets_per_server; ++slot) {
      pb::Target* target = table.add_targets();
      target->set_id(++id);
      target->set_server_id(static_cast<uint32_t>(server));
      target->set_slot(static_cast<uint32_t>(slot));
    }
  }
  return table;
}

std::set<uint32_t> AllTargets(const pb::ChainTable& table) {
  std::set<uint32_t> all;
  for (const pb::Target& target : table.targets()) all.insert(target.id());
  return all;
}

const pb::ChainMember& MemberOf(const pb::Chain& chain, uint32_t target) {
  for (const pb::ChainMember& member : chain.members()) {
    if (member.target_id() == target) return member;
  }
  static pb::ChainMember none;
  return none;
}

class LayoutTest : public ::testing::TestWithParam<std::tuple<int, int, int>> {};

TEST_P(LayoutTest, ChainsUseDistinctServersAndEveryPositionIsBalanced) {
  auto [replicas, servers, per_server] = GetParam();
  pb::ChainTable table = Table(replicas, servers, per_server);
  ASSERT_TRUE(AddChains(table));
  ASSERT_EQ(table.chains_size(), servers * per_server);
  // position counts per target: head, middle(s), tail
  std::map<uint32_t, std::map<int, int>> positions;
  for (const pb::Chain& chain : table.chains()) {
    ASSERT_EQ(chain.members_size(), replicas);
    EXPECT_EQ(chain.version(), 1u);
    std::set<uint32_t> chain_servers;
    for (int i = 0; i < chain.members_size(); ++i) {
      const pb::Target* target = FindTarget(table, chain.members(i).target_id());
      ASSERT_NE(target, nullptr);
      chain_servers.insert(target->server_id());
      ++positions[target->id()][i];
      EXPECT_EQ(chain.members(i).state(), kServing);
    }
    EXPECT_EQ(chain_servers.size(), static_cast<size_t>(replicas)) << "chain " << chain.id();
  }
  for (uint32_t target : AllTargets(table)) {
    for (int i = 0; i < replicas; ++i) {
      EXPECT_EQ(positions[target][i], 1) << "target " << target << " position " << i;
    }
  }
  // A failed server's chains continue on more than one survivor.
  if (replicas > 1 && servers > 2) {
    std::set<uint32_t> heirs;
    for (const pb::Chain& chain : table.chains()) {
      bool has_server_1 = false;
      for (const pb::ChainMember& member : chain.members()) {
        has_server_1 |= FindTarget(table, member.target_id())->server_id() == 1;
      }
      if (!has_server_1) continue;
      for (const pb::ChainMember& member : chain.members()) {
        uint32_t server = FindTarget(table, member.target_id())->server_id();
        if (server != 1) heirs.insert(server);
      }
    }
    EXPECT_GE(heirs.size(), 2u);
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, LayoutTest,
                         ::testing::Values(std::make_tuple(1, 3, 1), std::make_tuple(2, 3, 1),
                                           std::make_tuple(3, 3, 1), std::make_tuple(2, 3, 2),
                                           std::make_tuple(3, 4, 2), std::make_tuple(2, 5, 3)));

TEST(ChainTable, TooFewServersForTheReplicasLaysOutNothing) {
  pb::ChainTable table = Table(3, 2, 2);
  EXPECT_FALSE(AddChains(table));
  EXPECT_EQ(table.chains_size(), 0);
}

TEST(ChainTable, ALaterTargetHeadsANewChainOnOtherServers) {
  pb::ChainTable table = Table(2, 3, 1);
  ASSERT_TRUE(AddChains(table));
  pb::Target* added = table.add_targets();
  added->set_id(4);
  added->set_server_id(4);
  ASSERT_TRUE(AddChains(table));
  ASSERT_EQ(table.chains_size(), 4);
  const pb::Chain& chain = table.chains(3);
  EXPECT_EQ(chain.members(0).target_id(), 4u);
  EXPECT_NE(FindTarget(table, chain.members(1).target_id())->server_id(), 4u);
  EXPECT_FALSE(AddChains(table));  // nothing new
}

TEST(ChainTable, AFailedMemberGoesOfflineAndReturnsAsSyncingAtTheTail) {
  pb::ChainTable table = Table(2, 3, 1);
  ASSERT_TRUE(AddChains(table));
  std::set<uint32_t> up = AllTargets(table);
  EXPECT_FALSE(Reconcile(table, up, {}));  // nothing changed: versions stay
  up.erase(1);
  ASSERT_TRUE(Reconcile(table, up, {}));
  for (const pb::Chain& chain : table.chains()) {
    const pb::ChainMember& member = MemberOf(chain, 1);
    if (member.target_id() == 0) {
      EXPECT_EQ(chain.version(), 1u);
      continue;
    }
    EXPECT_EQ(chain.version(), 2u);
    EXPECT_EQ(member.state(), kOffline);
    EXPECT_TRUE(member.stale());
    EXPECT_EQ(WritePath(chain).size(), 1u);
    EXPECT_NE(WritePath(chain)[0], 1u);
  }
  EXPECT_EQ(WritableChains(table).size(), 3u);
  up.insert(1);
  ASSERT_TRUE(Reconcile(table, up, {}));
  for (const pb::Chain& chain : table.chains()) {
    if (MemberOf(chain, 1).target_id() == 0) continue;
    EXPECT_EQ(chain.version(), 3u);
    EXPECT_EQ(chain.members(chain.members_size() - 1).target_id(), 1u) << "rejoins at the tail";
    EXPECT_EQ(MemberOf(chain, 1).state(), kSyncing);
    EXPECT_EQ(WritePath(chain).back(), 1u) << "new writes flow through it";
    EXPECT_EQ(Serving(chain).size(), 1u) << "but it serves no reads yet";
    // Caught up under an older version: not taken.
    EXPECT_FALSE(SyncFinished(table, chain.id(), 1, chain.version() - 1));
    ASSERT_TRUE(SyncFinished(table, chain.id(), 1, chain.version()));
  }
  for (const pb::Chain& chain : table.chains()) {
    EXPECT_EQ(Serving(chain).size(), 2u);
  }
}

TEST(ChainTable, TheLastServingMemberServesAtOnceWhenItReturns) {
  pb::ChainTable table = Table(2, 2, 1);
  ASSERT_TRUE(AddChains(table));
  std::set<uint32_t> up = {1, 2};
  // 2 fails first (1 keeps serving), then 1: the chain is down.
  up.erase(2);
  Reconcile(table, up, {});
  up.erase(1);
  Reconcile(table, up, {});
  EXPECT_TRUE(WritableChains(table).empty());
  // 2 comes back first: it missed writes, so it cannot serve alone.
  up.insert(2);
  Reconcile(table, up, {});
  EXPECT_TRUE(WritableChains(table).empty());
  // 1 returns: it held everything; it serves, and 2 resyncs from it.
  up.insert(1);
  Reconcile(table, up, {});
  for (const pb::Chain& chain : table.chains()) {
    EXPECT_EQ(MemberOf(chain, 1).state(), kServing);
    EXPECT_EQ(MemberOf(chain, 2).state(), kSyncing);
    EXPECT_FALSE(chain.lost());
  }
}

TEST(ChainTable, MembersLostTogetherAreEqualAndEitherServesOnReturn) {
  pb::ChainTable table = Table(2, 2, 1);
  ASSERT_TRUE(AddChains(table));
  ASSERT_TRUE(Reconcile(table, {}, {}));  // both at once (a power loss)
  for (const pb::Chain& chain : table.chains()) {
    for (const pb::ChainMember& member : chain.members()) EXPECT_FALSE(member.stale());
  }
  // Whichever comes back first serves: it missed nothing.
  ASSERT_TRUE(Reconcile(table, {2}, {}));
  EXPECT_EQ(WritableChains(table).size(), 2u);
}

TEST(ChainTable, AReplacedDiskResyncsAndTheOnlyCopysLossIsALostChain) {
  pb::ChainTable table = Table(2, 2, 1);
  ASSERT_TRUE(AddChains(table));
  std::set<uint32_t> up = {1, 2};
  ASSERT_TRUE(Reconcile(table, up, {2}));
  for (const pb::Chain& chain : table.chains()) {
    EXPECT_EQ(MemberOf(chain, 2).state(), kSyncing);
    EXPECT_EQ(Serving(chain), std::vector<uint32_t>{1});
  }
  pb::ChainTable single = Table(1, 1, 1);
  ASSERT_TRUE(AddChains(single));
  ASSERT_TRUE(Reconcile(single, {1}, {1}));
  EXPECT_TRUE(single.chains(0).lost());
  EXPECT_TRUE(WritableChains(single).empty());
  // The target heads a new chain for new files.
  ASSERT_TRUE(AddChains(single));
  EXPECT_EQ(single.chains_size(), 2);
}

}  // namespace
}  // namespace sealfs::chains
