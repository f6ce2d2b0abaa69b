// Replication on real processes: R = 2 over three data servers (one case
// with R = 3), servers killed with SIGKILL, paused with SIGSTOP, their
// chunk files corrupted; writers and readers must see no error, every byte
// must stay right, and after resync the replicas must be identical on disk.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "sealfs/rpc/chain_errors.h"
#include "test_cluster.h"

namespace sealfs::testing {
namespace {

using namespace std::chrono_literals;

constexpr uint32_t kChunk = 1 << 20;
constexpr size_t kBlock = 4 << 20;  // one application write
#if defined(__SANITIZE_ADDRESS__)
constexpr size_t kBigFile = 128u << 20;  // the sanitizer build is several times slower
#else
constexpr size_t kBigFile = 1u << 30;
#endif

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Three data servers keeping `replicas` copies, with a 2 s lease.
std::unique_ptr<TestCluster> ReplicatedCluster(int replicas) {
  auto cluster = std::make_unique<TestCluster>(3, kChunk);
  cluster->set_meta_args({"--replicas", std::to_string(replicas), "--server-timeout", "2"});
  return cluster;
}

const pb::Chain* FindChain(const pb::ClusterMapResponse& map, uint32_t id) {
  for (const pb::Chain& chain : map.chains()) {
    if (chain.id() == id) return &chain;
  }
  return nullptr;
}

// Every chunk of the file's first `size` bytes is the same file on every
// member of its chain, compared on the targets themselves.
void ExpectReplicasIdentical(TestCluster& cluster, const pb::MknodResponse& file, uint64_t size,
                             int replicas) {
  auto admin = cluster.Admin();
  ASSERT_TRUE(admin.ok());
  auto map = (*admin)->RefreshClusterMap();
  ASSERT_TRUE(map.ok());
  const pb::Layout& layout = file.layout();
  for (uint32_t index = 0; index < (size + kChunk - 1) / kChunk; ++index) {
    uint32_t chain_id = layout.chains(static_cast<int>(index % layout.chains_size()));
    const pb::Chain* chain = FindChain(*map, chain_id);
    ASSERT_NE(chain, nullptr);
    ASSERT_EQ(chain->members_size(), replicas);
    std::string first;
    for (int member = 0; member < chain->members_size(); ++member) {
      int server = cluster.ServerOfChainMember(*map, chain_id, member);
      ASSERT_GE(server, 0);
      std::string bytes = ReadFile(cluster.ChunkFile(server, file.attr().ino(), index));
      ASSERT_EQ(bytes.size(), std::min<uint64_t>(kChunk, size - uint64_t{index} * kChunk))
          << "chunk " << index << " on server " << server;
      if (member == 0) {
        first = std::move(bytes);
      } else {
        ASSERT_TRUE(bytes == first) << "chunk " << index << " differs on server " << server;
      }
    }
  }
}

// Writes `size` bytes in kBlock writes, block b being Pattern(kBlock, seed + b).
Status WriteBlocks(client::Client& client, const pb::MknodResponse& file, size_t size,
                   unsigned seed, std::atomic<size_t>* progress = nullptr) {
  for (size_t offset = 0; offset < size; offset += kBlock) {
    Status status = client.Write(file.attr().ino(), file.layout(), offset,
                                 Pattern(kBlock, seed + static_cast<unsigned>(offset / kBlock)));
    if (!status.ok()) return status;
    if (progress) *progress = offset + kBlock;
  }
  return Status::Ok();
}

// Reads the file back block by block; the first mismatch or error.
Status CheckBlocks(client::Client& client, const pb::MknodResponse& file, size_t size,
                   unsigned seed) {
  std::string back(kBlock, '\0');
  for (size_t offset = 0; offset < size; offset += kBlock) {
    Status status = client.Read(file.attr().ino(), file.layout(), offset, kBlock, back.data());
    if (!status.ok()) return status;
    if (back != Pattern(kBlock, seed + static_cast<unsigned>(offset / kBlock))) {
      return Status(EILSEQ, "wrong bytes in block at " + std::to_string(offset));
    }
  }
  return Status::Ok();
}

bool SawState(TestCluster& cluster, const std::string& state) {
  auto admin = cluster.Admin();
  if (!admin.ok()) return false;
  auto map = (*admin)->RefreshClusterMap();
  if (!map.ok()) return false;
  for (const pb::Chain& chain : map->chains()) {
    for (const pb::ChainMember& member : chain.members()) {
      if (member.state() == state) return true;
    }
  }
  return false;
}

TEST(Replication, KillNineOfAnyServerLosesNothingAndResyncMakesReplicasIdentical) {
  auto cluster = ReplicatedCluster(2);
  ASSERT_TRUE(cluster->Start());
  auto writer = cluster->Mount();
  auto reader = cluster->Mount();
  ASSERT_TRUE(writer.ok() && reader.ok());
  auto earlier = CreateFile(**writer, "earlier");
  constexpr size_t kEarlier = 32 << 20;
  ASSERT_TRUE(WriteBlocks(**writer, earlier, kEarlier, 100).ok());
  auto big = CreateFile(**writer, "big");

  std::atomic<size_t> written{0};
  std::atomic<bool> writing{true};
  Status write_status, read_status;
  std::thread write_thread([&] {
    write_status = WriteBlocks(**writer, big, kBigFile, 1, &written);
    writing = false;
  });
  std::thread read_thread([&] {
    while (writing && read_status.ok()) read_status = CheckBlocks(**reader, earlier, kEarlier, 100);
  });
  while (written < kBigFile / 4 && writing) std::this_thread::sleep_for(10ms);
  const int victim = 1;
  cluster->KillData(victim);
  write_thread.join();
  read_thread.join();
  ASSERT_TRUE(write_status.ok()) << write_status.ToString();
  ASSERT_TRUE(read_status.ok()) << read_status.ToString();
  // Every byte is right with the victim still down.
  ASSERT_TRUE(CheckBlocks(**reader, big, kBigFile, 1).ok());
  ASSERT_TRUE(CheckBlocks(**reader, earlier, kEarlier, 100).ok());

  // Back: it resyncs (syncing, then serving), and the replicas match.
  ASSERT_TRUE(cluster->StartData(victim));
  bool saw_syncing = false;
  for (int i = 0; i < 200 && !saw_syncing; ++i) {
    saw_syncing = SawState(*cluster, "syncing");
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_TRUE(saw_syncing);
  ASSERT_TRUE(cluster->WaitForChainsServing());
  ExpectReplicasIdentical(*cluster, big, kBigFile, 2);
  ExpectReplicasIdentical(*cluster, earlier, kEarlier, 2);

  // Now the other servers of its chains go: the victim serves everything.
  cluster->KillData((victim + 1) % 3);
  ASSERT_TRUE(CheckBlocks(**reader, big, kBigFile, 1).ok());
  ASSERT_TRUE(CheckBlocks(**reader, earlier, kEarlier, 100).ok());
}

TEST(Replication, ThreeReplicasSurviveTwoServersKilledOneAfterTheOther) {
  auto cluster = ReplicatedCluster(3);
  ASSERT_TRUE(cluster->Start());
  auto client = cluster->Mount();
  ASSERT_TRUE(client.ok());
  auto file = CreateFile(**client, "f");
  constexpr size_t kSize = 24 << 20;
  ASSERT_TRUE(WriteBlocks(**client, file, kSize, 7).ok());
  ExpectReplicasIdentical(*cluster, file, kSize, 3);
  cluster->KillData(0);
  ASSERT_TRUE(WriteBlocks(**client, file, kSize, 8).ok());
  cluster->KillData(2);
  ASSERT_TRUE(CheckBlocks(**client, file, kSize, 8).ok());
  ASSERT_TRUE(cluster->StartData(0));
  ASSERT_TRUE(cluster->StartData(2));
  ASSERT_TRUE(cluster->WaitForChainsServing());
  ExpectReplicasIdentical(*cluster, file, kSize, 3);
}

TEST(Replication, APausedServerIsFencedAndRejoinsThroughResync) {
  auto cluster = ReplicatedCluster(2);
  ASSERT_TRUE(cluster->Start());
  auto client = cluster->Mount();
  ASSERT_TRUE(client.ok());
  auto file = CreateFile(**client, "f");
  constexpr size_t kSize = 16 << 20;
  ASSERT_TRUE(WriteBlocks(**client, file, kSize, 20).ok());
  auto before = (*client)->RefreshClusterMap();
  ASSERT_TRUE(before.ok());
  // A chain the victim heads, as it stood before the pause.
  const int victim = 0;
  const pb::Chain* headed = nullptr;
  for (const pb::Chain& chain : before->chains()) {
    if (cluster->ServerOfChainMember(*before, chain.id(), 0) == victim) headed = &chain;
  }
  ASSERT_NE(headed, nullptr);
  std::string victim_store;
  for (const pb::Target& target : before->targets()) {
    if (target.id() == headed->members(0).target_id()) victim_store = target.instance_id();
  }

  ASSERT_EQ(kill(cluster->data_pid(victim), SIGSTOP), 0);
  // Writes go on: a pause of about the lease, no error.
  ASSERT_TRUE(WriteBlocks(**client, file, kSize, 21).ok());
  std::this_thread::sleep_for(1s);
  ASSERT_EQ(kill(cluster->data_pid(victim), SIGCONT), 0);
  // Its lease ran out while it was stopped: a write under the chain version
  // it knew is refused, not applied.
  rpc::IoThreads io(1);
  auto channel = rpc::MakeTcpChannel(io, "127.0.0.1:" + cluster->DataPort(victim));
  pb::WriteRequest stale;
  stale.mutable_chunk()->set_ino(file.attr().ino());
  // A chunk of the file that lives on that chain.
  uint32_t index = 0;
  while (file.layout().chains(static_cast<int>(index % file.layout().chains_size())) !=
         headed->id()) {
    ++index;
  }
  stale.mutable_chunk()->set_index(index);
  stale.set_chunk_size(kChunk);
  stale.set_store_id(victim_store);
  stale.mutable_chain()->set_id(headed->id());
  stale.mutable_chain()->set_version(headed->version());
  // With a valid capability: what is refused is the chain version.
  auto cap = (*client)->Capability(file.attr().ino(), true, kChunk);
  ASSERT_TRUE(cap.ok()) << cap.status().ToString();
  *stale.mutable_cap() = *cap;
  pb::WriteResponse ignored;
  Status refused = rpc::Invoke(*channel, rpc::data::kWrite, stale, &ignored, "stale bytes");
  EXPECT_EQ(refused.code(), rpc::kStaleChain) << refused.ToString();
  channel.reset();
  io.Stop();
  ASSERT_TRUE(cluster->WaitForChainsServing());
  ASSERT_TRUE(CheckBlocks(**client, file, kSize, 21).ok());
  ExpectReplicasIdentical(*cluster, file, kSize, 2);
}

TEST(Replication, ACorruptReplicaIsRepairedOnReadAndByTheScrubber) {
  auto cluster = ReplicatedCluster(2);
  cluster->set_data_args({"--scrub-mib-per-s", "256", "--scrub-interval-s", "1"});
  ASSERT_TRUE(cluster->Start());
  auto client = cluster->Mount();
  ASSERT_TRUE(client.ok());
  auto file = CreateFile(**client, "f");
  constexpr size_t kSize = 8 << 20;
  ASSERT_TRUE(WriteBlocks(**client, file, kSize, 30).ok());
  auto map = (*client)->RefreshClusterMap();
  ASSERT_TRUE(map.ok());
  const uint64_t ino = file.attr().ino();
  auto corrupt = [&](uint32_t index) {
    uint32_t chain = file.layout().chains(static_cast<int>(index % file.layout().chains_size()));
    int bad = cluster->ServerOfChainMember(*map, chain, 1);
    int good = cluster->ServerOfChainMember(*map, chain, 0);
    std::string path = cluster->ChunkFile(bad, ino, index);
    std::fstream out(path, std::ios::in | std::ios::out | std::ios::binary);
    out.seekp(12345);
    out.put('\x5a');
    out.put('\xa5');
    out.close();
    EXPECT_NE(ReadFile(path), ReadFile(cluster->ChunkFile(good, ino, index)));
    return std::make_pair(path, cluster->ChunkFile(good, ino, index));
  };
  // Read: every read returns the right bytes, whichever replica serves it,
  // and the damaged one is repaired.
  auto [read_bad, read_good] = corrupt(0);
  std::string back(kChunk, '\0');
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE((*client)->Read(ino, file.layout(), 0, kChunk, back.data()).ok());
    ASSERT_TRUE(back == Pattern(kBlock, 30).substr(0, kChunk));
  }
  EXPECT_TRUE(ReadFile(read_bad) == ReadFile(read_good));
  // Scrub: nobody reads chunk 5; the scrubber finds and repairs it.
  auto [scrub_bad, scrub_good] = corrupt(5);
  bool repaired = false;
  for (int i = 0; i < 300 && !repaired; ++i) {
    std::this_thread::sleep_for(100ms);
    repaired = ReadFile(scrub_bad) == ReadFile(scrub_good);
  }
  EXPECT_TRUE(repaired);
}

bool Shell(const std::string& command) { return std::system(command.c_str()) == 0; }

// One data server lives in a network namespace of its own, joined to the
// rest by a veth pair: cutting the link must look like a kill, restoring it
// must end in a resync. The test runs itself again in a private network
// namespace (unshare --net), so that every address it uses lives in
// namespaces it created.
TEST(Replication, ACutLinkIsLikeAKillAndARestoredOneEndsInResync) {
  if (geteuid() != 0 || access("/usr/bin/unshare", X_OK) != 0 ||
      access("/usr/sbin/ip", X_OK) != 0) {
    GTEST_SKIP() << "needs root, unshare and ip";
  }
  if (!std::getenv("SEALFS_IN_PRIVATE_NETNS")) {
    std::string self = std::filesystem::read_symlink("/proc/self/exe");
    std::string command =
        "SEALFS_IN_PRIVATE_NETNS=1 /usr/bin/unshare --net " + self +
        " --gtest_filter=Replication.ACutLinkIsLikeAKillAndARestoredOneEndsInResync";
    int status = std::system(command.c_str());
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << "the run in a private namespace failed";
    return;
  }
  const std::string ns = "sealfs-victim-" + std::to_string(getpid());
  ASSERT_TRUE(Shell("/usr/sbin/ip link set lo up"));
  ASSERT_TRUE(Shell("/usr/sbin/ip netns add " + ns));
  struct Cleanup {
    std::string ns;
    ~Cleanup() { Shell("/usr/sbin/ip netns del " + ns + " 2>/dev/null"); }
  } cleanup{ns};
  ASSERT_TRUE(Shell("/usr/sbin/ip link add sealfs-a type veth peer name sealfs-b netns " + ns));
  ASSERT_TRUE(Shell("/usr/sbin/ip addr add 10.77.0.1/24 dev sealfs-a"));
  ASSERT_TRUE(Shell("/usr/sbin/ip link set sealfs-a up"));
  for (const char* step :
       {"link set lo up", "addr add 10.77.0.2/24 dev sealfs-b", "link set sealfs-b up"}) {
    ASSERT_TRUE(Shell("/usr/sbin/ip netns exec " + ns + " /usr/sbin/ip " + step)) << step;
  }
  auto cluster = ReplicatedCluster(2);
  cluster->set_host("10.77.0.1");
  const int victim = 2;
  cluster->set_data_host(victim, "10.77.0.2", {"/usr/sbin/ip", "netns", "exec", ns});
  ASSERT_TRUE(cluster->Start());
  auto client = cluster->Mount();
  ASSERT_TRUE(client.ok());
  auto file = CreateFile(**client, "f");
  constexpr size_t kSize = 16 << 20;
  ASSERT_TRUE(WriteBlocks(**client, file, kSize, 40).ok());

  ASSERT_TRUE(Shell("/usr/sbin/ip link set sealfs-a down"));
  // Writes and reads go on, after a pause of about the lease.
  Status rewritten = WriteBlocks(**client, file, kSize, 41);
  ASSERT_TRUE(rewritten.ok()) << rewritten.ToString();
  ASSERT_TRUE(CheckBlocks(**client, file, kSize, 41).ok());
  EXPECT_TRUE(SawState(*cluster, "offline"));

  ASSERT_TRUE(Shell("/usr/sbin/ip link set sealfs-a up"));
  ASSERT_TRUE(cluster->WaitForChainsServing());
  ASSERT_TRUE(CheckBlocks(**client, file, kSize, 41).ok());
  ExpectReplicasIdentical(*cluster, file, kSize, 2);
}

// The random exerciser: writes, truncates and reads against a model of the
// file, while a data server is killed and later brought back.
TEST(Replication, RandomOperationsMatchAModelThroughAKillAndARestart) {
  auto cluster = ReplicatedCluster(2);
  ASSERT_TRUE(cluster->Start());
  auto client = cluster->Mount();
  ASSERT_TRUE(client.ok());
  auto file = CreateFile(**client, "model");
  const uint64_t ino = file.attr().ino();
  std::string model;
  std::mt19937 random(42);
  constexpr int kOps = 300;
  constexpr size_t kMaxSize = 6 << 20;
  for (int op = 0; op < kOps; ++op) {
    if (op == kOps / 3) cluster->KillData(2);
    if (op == 2 * kOps / 3) {
      ASSERT_TRUE(cluster->StartData(2));
    }
    int kind = static_cast<int>(random() % 10);
    if (kind < 5) {
      size_t offset = random() % kMaxSize;
      size_t length = 1 + random() % (512 << 10);
      length = std::min(length, kMaxSize - offset);
      std::string data = Pattern(length, static_cast<unsigned>(op));
      Status status = (*client)->Write(ino, file.layout(), offset, data);
      ASSERT_TRUE(status.ok()) << "op " << op << ": " << status.ToString();
      if (model.size() < offset + length) model.resize(offset + length, '\0');
      model.replace(offset, length, data);
    } else if (kind < 7) {
      size_t size = random() % kMaxSize;
      pb::SetattrRequest cut;
      cut.set_ino(ino);
      cut.set_valid(pb::SETATTR_SIZE);
      cut.set_size(size);
      pb::SetattrResponse response;
      Status status = (*client)->Meta(rpc::meta::kSetattr, cut, &response);
      ASSERT_TRUE(status.ok()) << "op " << op << ": " << status.ToString();
      model.resize(size, '\0');
    } else {
      size_t offset = random() % kMaxSize;
      size_t length = 1 + random() % (1 << 20);
      length = std::min(length, kMaxSize - offset);
      std::string back(length, 'x');
      Status status = (*client)->Read(ino, file.layout(), offset, length, back.data());
      ASSERT_TRUE(status.ok()) << "op " << op << ": " << status.ToString();
      std::string expected(length, '\0');
      if (offset < model.size()) {
        size_t have = std::min(length, model.size() - offset);
        expected.replace(0, have, model, offset, have);
      }
      ASSERT_TRUE(back == expected) << "op " << op << ": read at " << offset << "+" << length;
    }
  }
  ASSERT_TRUE(cluster->WaitForChainsServing());
  std::string whole(model.size(), '\0');
  ASSERT_TRUE((*client)->Read(ino, file.layout(), 0, whole.size(), whole.data()).ok());
  EXPECT_TRUE(whole == model);
}

}  // namespace
}  // namespace sealfs::testing
