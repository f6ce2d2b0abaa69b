// Chain replication between two DataServices in one process, each on its
// own store and TCP listener, with the cluster map given directly: versions
// flowing down the chain, fencing by chain version and lease, the
// committed-version read rule, whole-chunk copies for a member that missed a
// change, and resync's choice of chunks.
#include <gtest/gtest.h>

#include <filesystem>
#include <thread>

#include "sealfs/rpc/chain_errors.h"
#include "sealfs/rpc/methods.h"
#include "sealfs/server/background.h"
#include "sealfs/server/data_service.h"
#include "test_auth.h"

namespace sealfs::server {
namespace {

using namespace std::chrono_literals;

constexpr uint32_t kChunk = 1 << 20;
// Chunk versions under chain version 1 (it sits in their high 32 bits).
constexpr uint64_t kV1 = uint64_t{1} << 32;

struct Member {
  std::unique_ptr<ChunkStore> store;
  StorageTarget target;
  std::unique_ptr<ChainView> view;
  std::unique_ptr<DataService> service;
  std::unique_ptr<rpc::Dispatcher> dispatcher;
  rpc::Listeners listeners;
  std::string address;
};

class ReplicationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/sealfs-replication-XXXXXX";
    dir_ = mkdtemp(pattern);
    for (int i = 0; i < 2; ++i) {
      Member& m = members_[i];
      auto store = ChunkStore::Open(dir_ + "/t" + std::to_string(i));
      ASSERT_TRUE(store.ok());
      m.store = std::move(*store);
      m.target.store = m.store.get();
      m.target.id = static_cast<uint32_t>(i + 1);
      m.view = std::make_unique<ChainView>(nullptr);
      m.view->HoldLeaseForever();
      m.dispatcher = std::make_unique<rpc::Dispatcher>(4);
      m.service =
          std::make_unique<DataService>(std::vector<StorageTarget*>{&m.target}, *m.view, io_,
                                        rpc::TransportKind::kTcp, testing::TestClusterKey(), "");
      m.service->RegisterHandlers(*m.dispatcher, *m.dispatcher, *m.dispatcher);
      ASSERT_TRUE(
          m.listeners.Listen(io_, *m.dispatcher, "127.0.0.1", 0, rpc::TransportKind::kTcp).ok());
      m.address = "127.0.0.1:" + std::to_string(m.listeners.port());
    }
    SetChain(1, "serving", "serving");
  }
  void TearDown() override {
    for (Member& m : members_) {
      m.listeners.Stop();
      m.dispatcher->Shutdown();
    }
    io_.Stop();
    for (Member& m : members_) m.store.reset();
    std::filesystem::remove_all(dir_);
  }

  // Chain 1 = [target 1, target 2] at `version`, with the members' states.
  void SetChain(uint64_t version, const std::string& first, const std::string& second) {
    pb::ClusterMapResponse map;
    map.set_version(version);
    for (int i = 0; i < 2; ++i) {
      pb::DataServer* server = map.add_servers();
      server->set_id(static_cast<uint32_t>(i + 1));
      server->set_address(members_[i].address);
      pb::Target* target = map.add_targets();
      target->set_id(static_cast<uint32_t>(i + 1));
      target->set_server_id(static_cast<uint32_t>(i + 1));
      target->set_instance_id(members_[i].store->instance_id());
    }
    pb::Chain* chain = map.add_chains();
    chain->set_id(1);
    chain->set_version(version);
    pb::ChainMember* head = chain->add_members();
    head->set_target_id(1);
    head->set_state(first);
    pb::ChainMember* tail = chain->add_members();
    tail->set_target_id(2);
    tail->set_state(second);
    for (Member& m : members_) m.view->Update(map);
    chain_.set_id(1);
    chain_.set_version(version);
  }

  std::shared_ptr<rpc::Channel> ChannelTo(int i) {
    return testing::ServerChannel(io_, members_[i].address);
  }

  Status Write(int at, uint32_t index, uint32_t offset, const std::string& data) {
    pb::WriteRequest request;
    request.mutable_chunk()->set_ino(7);
    request.mutable_chunk()->set_index(index);
    request.set_offset(offset);
    request.set_chunk_size(kChunk);
    request.set_store_id(members_[at].store->instance_id());
    *request.mutable_chain() = chain_;
    pb::WriteResponse response;
    testing::Sign(request);
    return rpc::Invoke(*ChannelTo(at), rpc::data::kWrite, request, &response, data);
  }

  Status Read(int at, uint32_t index, std::string* out) {
    pb::ReadRequest request;
    request.mutable_chunk()->set_ino(7);
    request.mutable_chunk()->set_index(index);
    request.set_length(kChunk);
    request.set_store_id(members_[at].store->instance_id());
    *request.mutable_chain() = chain_;
    pb::ReadResponse response;
    testing::Sign(request);
    return rpc::Invoke(*ChannelTo(at), rpc::data::kRead, request, &response, {}, out);
  }

  ChunkRecord RecordAt(int at, uint32_t index) {
    auto record = members_[at].store->Version(7, index);
    EXPECT_TRUE(record.ok());
    return record.ok() && *record ? **record : ChunkRecord{};
  }

  // Puts a chunk straight into one member's store, as if it had applied it.
  void Plant(int at, uint32_t index, const std::string& data, uint64_t version) {
    ASSERT_TRUE(members_[at].store->Replace(7, index, data).ok());
    ASSERT_TRUE(members_[at].store->SetVersion(7, index, {version, version, 1}).ok());
  }

  std::string StoredAt(int at, uint32_t index) {
    std::string out;
    EXPECT_TRUE(members_[at].store->Read(7, index, 0, kChunk, &out).ok());
    return out;
  }

  std::string dir_;
  rpc::IoThreads io_{1};
  Member members_[2];
  pb::ChainRef chain_;
};

TEST_F(ReplicationTest, AWriteReachesEveryMemberWithTheSameCommittedVersion) {
  ASSERT_TRUE(Write(0, 0, 0, "first").ok());
  ASSERT_TRUE(Write(0, 0, 2, "CON").ok());
  for (int at = 0; at < 2; ++at) {
    EXPECT_EQ(StoredAt(at, 0), "fiCON") << "member " << at;
    EXPECT_EQ(RecordAt(at, 0), (ChunkRecord{kV1 | 2, kV1 | 2, 1})) << "member " << at;
  }
  std::string out;
  ASSERT_TRUE(Read(1, 0, &out).ok());
  EXPECT_EQ(out, "fiCON");
}

TEST_F(ReplicationTest, RequestsForAnotherChainVersionRoleOrAnExpiredLeaseAreRefused) {
  ASSERT_TRUE(Write(0, 0, 0, "v1").ok());
  pb::ChainRef current = chain_;
  for (uint64_t version : {uint64_t{0}, uint64_t{2}}) {
    chain_.set_version(version);
    EXPECT_EQ(Write(0, 0, 0, "stale").code(), rpc::kStaleChain) << "version " << version;
  }
  chain_ = current;
  // Only the head takes writes from clients.
  EXPECT_EQ(Write(1, 0, 0, "not the head").code(), rpc::kStaleChain);
  // A syncing member serves no reads.
  SetChain(2, "serving", "syncing");
  std::string out;
  EXPECT_EQ(Read(1, 0, &out).code(), rpc::kStaleChain);
  ASSERT_TRUE(Read(0, 0, &out).ok());
  // A server whose lease ran out (never renewed here) refuses everything.
  ChainView expired(nullptr);
  DataService fenced({&members_[0].target}, expired, io_, rpc::TransportKind::kTcp,
                     testing::TestClusterKey(), "");
  rpc::Dispatcher dispatcher(1);
  fenced.RegisterHandlers(dispatcher, dispatcher, dispatcher);
  rpc::Listeners listeners;
  ASSERT_TRUE(listeners.Listen(io_, dispatcher, "127.0.0.1", 0, rpc::TransportKind::kTcp).ok());
  pb::WriteRequest request;
  request.mutable_chunk()->set_ino(7);
  request.set_chunk_size(kChunk);
  request.set_store_id(members_[0].store->instance_id());
  *request.mutable_chain() = chain_;
  pb::WriteResponse response;
  auto channel = testing::ServerChannel(io_, "127.0.0.1:" + std::to_string(listeners.port()));
  testing::Sign(request);
  Status refused = rpc::Invoke(*channel, rpc::data::kWrite, request, &response, "x");
  EXPECT_EQ(refused.code(), rpc::kStaleChain);
  EXPECT_NE(refused.message().find("lease"), std::string::npos) << refused.ToString();
  listeners.Stop();
  dispatcher.Shutdown();
  EXPECT_EQ(StoredAt(0, 0), "v1");
  EXPECT_EQ(StoredAt(1, 0), "v1");
}

TEST_F(ReplicationTest, AReplicaHoldingAnUncommittedVersionAsksTheTail) {
  ASSERT_TRUE(Write(0, 0, 0, "committed").ok());
  // The head applied version 2 but never heard back: the tail still has 1.
  ASSERT_TRUE(members_[0].store->Write(7, 0, 0, "NEWBYTES!").ok());
  ASSERT_TRUE(members_[0].store->SetVersion(7, 0, {kV1 | 2, kV1 | 1, 1}).ok());
  std::string out;
  Status read = Read(0, 0, &out);
  EXPECT_EQ(read.code(), rpc::kNotCommitted) << read.ToString();
  ASSERT_TRUE(Read(1, 0, &out).ok());
  EXPECT_EQ(out, "committed");
  // Once the tail holds version 2, the chain committed it: the head serves it.
  Plant(1, 0, "NEWBYTES!", kV1 | 2);
  ASSERT_TRUE(Read(0, 0, &out).ok());
  EXPECT_EQ(out, "NEWBYTES!");
  EXPECT_EQ(RecordAt(0, 0).committed, kV1 | 2);
}

TEST_F(ReplicationTest, AMemberThatMissedAChangeGetsTheWholeChunk) {
  ASSERT_TRUE(Write(0, 0, 0, std::string(10000, 'a')).ok());
  // A change the tail never saw (its forward failed, the client gave up).
  ASSERT_TRUE(members_[0].store->Write(7, 0, 5000, "missed").ok());
  ASSERT_TRUE(members_[0].store->SetVersion(7, 0, {kV1 | 2, kV1 | 2, 1}).ok());
  ASSERT_TRUE(Write(0, 0, 100, "next").ok());
  EXPECT_EQ(RecordAt(1, 0), (ChunkRecord{kV1 | 3, kV1 | 3, 1}));
  EXPECT_EQ(StoredAt(1, 0), StoredAt(0, 0));
  EXPECT_EQ(members_[1].service->counters().whole_chunk_copies.load(), 1u);
}

TEST_F(ReplicationTest, ALateOrRepeatedCopyChangesNothing) {
  ASSERT_TRUE(Write(0, 0, 0, "current").ok());
  // A whole copy naming a version the member no longer holds.
  pb::WriteRequest late;
  late.mutable_chunk()->set_ino(7);
  late.set_chunk_size(kChunk);
  late.set_store_id(members_[1].store->instance_id());
  *late.mutable_chain() = chain_;
  late.set_whole(true);
  late.set_chunk_version(kV1);
  late.set_base_version(0);
  pb::WriteResponse response;
  ASSERT_TRUE(rpc::Invoke(*ChannelTo(1), rpc::data::kChainWrite, late, &response, "stale").ok());
  EXPECT_TRUE(response.need_whole());
  EXPECT_EQ(response.current_version(), kV1 | 1);
  EXPECT_EQ(StoredAt(1, 0), "current");
}

TEST(ChunkVersions, NeverRepeatAcrossChainVersionsOrAfterADrop) {
  EXPECT_EQ(NextChunkVersion(0, 1), kV1 | 1);
  EXPECT_EQ(NextChunkVersion(kV1 | 1, 1), kV1 | 2);
  // A new chain version starts a new range above everything before it.
  EXPECT_EQ(NextChunkVersion(kV1 | 7, 2), (uint64_t{2} << 32) | 1);
  EXPECT_GT(NextChunkVersion(0, 2), kV1 | 7);
}

TEST_F(ReplicationTest, ResyncCopiesOnlyChunksWhoseVersionDiffersAndDropsTheRest) {
  SetChain(5, "serving", "syncing");
  Plant(0, 0, "same", 3);
  Plant(1, 0, "same", 3);
  Plant(0, 1, "newer", 4);
  Plant(1, 1, "older", 2);
  Plant(0, 2, "missing there", 1);
  Plant(1, 3, "gone here", 1);
  Resyncer resyncer(*members_[0].service, nullptr);
  resyncer.Start();
  std::vector<pb::SyncProgress> progress;
  for (int i = 0; i < 200; ++i) {
    progress = resyncer.Progress();
    if (progress.size() == 1 && progress[0].finished()) break;
    std::this_thread::sleep_for(20ms);
  }
  resyncer.Stop();
  ASSERT_EQ(progress.size(), 1u);
  EXPECT_TRUE(progress[0].finished());
  EXPECT_EQ(progress[0].chain_version(), 5u);
  EXPECT_EQ(progress[0].target_id(), 2u);
  EXPECT_EQ(progress[0].total_chunks(), 4u);
  EXPECT_EQ(members_[1].service->counters().whole_chunk_copies.load(), 2u);
  EXPECT_EQ(StoredAt(1, 1), "newer");
  EXPECT_EQ(StoredAt(1, 2), "missing there");
  EXPECT_EQ(RecordAt(1, 1).version, 4u);
  EXPECT_FALSE(*members_[1].store->Version(7, 3));
}

}  // namespace
}  // namespace sealfs::server
