// Integration, on real processes: data that is lost reads as an error, never
// as zeros; new files avoid servers that are down; removed files stay
// removed; a data server works under an ordinary descriptor limit.
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <random>
#include <thread>

#include "test_cluster.h"

namespace sealfs::testing {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::vector<fs::path> ChunkFilesIn(const std::string& dir) {
  std::vector<fs::path> files;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec);
       it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (it->path().extension() == ".dat") files.push_back(it->path());
  }
  return files;
}

TEST(Durability, NewFilesAreOnlyPlacedOnServersThatAreUp) {
  TestCluster cluster(3, 1 << 20);
  cluster.set_meta_args({"--server-timeout", "1"});
  ASSERT_TRUE(cluster.Start());
  cluster.KillData(2);
  auto client = cluster.Mount();
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  // Wait until the metadata server has noticed.
  bool down = false;
  for (int i = 0; i < 100 && !down; ++i) {
    auto map = (*client)->RefreshClusterMap();
    ASSERT_TRUE(map.ok());
    for (const auto& server : map->servers()) down = down || server.state() == "down";
    if (!down) std::this_thread::sleep_for(100ms);
  }
  ASSERT_TRUE(down);
  auto file = CreateFile(**client, "twelve");
  EXPECT_EQ(file.layout().chains_size(), 2);
  std::string data = Pattern(12 << 20, 1);
  Status written = (*client)->Write(file.attr().ino(), file.layout(), 0, data);
  ASSERT_TRUE(written.ok()) << written.ToString();
  std::string back(data.size(), '\0');
  ASSERT_TRUE((*client)->Read(file.attr().ino(), file.layout(), 0, back.size(), back.data()).ok());
  EXPECT_TRUE(back == data);
}

TEST(Durability, ADeletedChunkFileReadsAsAnErrorNotZeros) {
  TestCluster cluster(1, 1 << 20);
  ASSERT_TRUE(cluster.Start());
  auto client = cluster.Mount();
  ASSERT_TRUE(client.ok());
  auto file = CreateFile(**client, "f");
  std::string data = Pattern(3 << 20, 2);
  ASSERT_TRUE((*client)->Write(file.attr().ino(), file.layout(), 0, data).ok());
  ASSERT_TRUE((*client)->FsyncData(file.attr().ino(), file.layout()).ok());
  cluster.KillData(0);
  auto chunks = ChunkFilesIn(cluster.DataDir(0));
  ASSERT_EQ(chunks.size(), 3u);
  std::sort(chunks.begin(), chunks.end());
  fs::remove(chunks[1]);  // the middle chunk is lost
  ASSERT_TRUE(cluster.StartData(0));
  ASSERT_TRUE(cluster.WaitForServersUp(1));
  std::string back(1 << 20, 'x');
  Status read = Status(EIO, "not read");
  for (int attempt = 0; attempt < 50; ++attempt) {
    read = (*client)->Read(file.attr().ino(), file.layout(), 1 << 20, back.size(), back.data());
    if (read.code() != ECONNREFUSED && read.code() != ECONNRESET) break;
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(read.code(), EIO) << "a lost chunk must not read as " << (1 << 20) << " zeros";
  // The chunks that are still there read back.
  std::string first(1 << 20, '\0');
  ASSERT_TRUE(
      (*client)->Read(file.attr().ino(), file.layout(), 0, first.size(), first.data()).ok());
  EXPECT_TRUE(first == data.substr(0, 1 << 20));
}

TEST(Durability, AWipedStoreAtTheSameAddressReadsAsAnErrorNotZeros) {
  TestCluster cluster(2, 1 << 20);
  ASSERT_TRUE(cluster.Start());
  auto client = cluster.Mount();
  ASSERT_TRUE(client.ok());
  auto file = CreateFile(**client, "f");
  ASSERT_EQ(file.layout().chains_size(), 2);
  std::string data = Pattern(2 << 20, 3);
  ASSERT_TRUE((*client)->Write(file.attr().ino(), file.layout(), 0, data).ok());
  // The server holding chunk 0 loses its whole disk and comes back empty.
  auto map = (*client)->RefreshClusterMap();
  ASSERT_TRUE(map.ok());
  int wiped = cluster.ServerOfChainMember(*map, file.layout().chains(0));
  ASSERT_GE(wiped, 0);
  cluster.KillData(wiped);
  fs::remove_all(cluster.DataDir(wiped));
  ASSERT_TRUE(cluster.StartData(wiped));
  ASSERT_TRUE(cluster.WaitForServersUp(2));
  std::string back(1 << 20, 'x');
  Status read = (*client)->Read(file.attr().ino(), file.layout(), 0, back.size(), back.data());
  EXPECT_EQ(client::ToFileError(read).code(), EIO) << read.ToString();
  EXPECT_NE(back, std::string(1 << 20, '\0'));
  // New files are written and read on the server that came back.
  auto fresh = CreateFile(**client, "fresh");
  ASSERT_TRUE((*client)->Write(fresh.attr().ino(), fresh.layout(), 0, data).ok());
  std::string again(data.size(), '\0');
  ASSERT_TRUE(
      (*client)->Read(fresh.attr().ino(), fresh.layout(), 0, again.size(), again.data()).ok());
  EXPECT_TRUE(again == data);
}

TEST(Durability, ARemovedFileIsNotRecreatedByALateWrite) {
  TestCluster cluster(1, 1 << 20);
  ASSERT_TRUE(cluster.Start());
  auto writer = cluster.Mount();
  auto remover = cluster.Mount();
  ASSERT_TRUE(writer.ok() && remover.ok());
  auto file = CreateFile(**writer, "f");
  ASSERT_TRUE((*writer)->Write(file.attr().ino(), file.layout(), 0, "first").ok());
  pb::UnlinkRequest unlink;
  unlink.set_parent((*remover)->root_ino());
  unlink.set_name("f");
  pb::UnlinkResponse unlinked;
  ASSERT_TRUE((*remover)->Meta(rpc::meta::kUnlink, unlink, &unlinked).ok());
  for (int i = 0; i < 100 && !ChunkFilesIn(cluster.DataDir(0)).empty(); ++i) {
    std::this_thread::sleep_for(100ms);
  }
  ASSERT_TRUE(ChunkFilesIn(cluster.DataDir(0)).empty()) << "the file's chunks were not removed";
  // A client that never opened the file (so nothing kept it) writes late.
  Status late = (*writer)->Write(file.attr().ino(), file.layout(), 3 << 20, "late");
  EXPECT_FALSE(late.ok());
  EXPECT_TRUE(ChunkFilesIn(cluster.DataDir(0)).empty()) << "a removed file's chunk came back";
}

TEST(Durability, ADataServerWritesManyChunksUnderADescriptorLimitOf1024) {
  if (!fs::exists("/usr/bin/prlimit")) GTEST_SKIP() << "needs prlimit";
  TestCluster cluster(1, 1 << 20);
  cluster.set_data_wrapper({"/usr/bin/prlimit", "--nofile=1024:1024", "--"});
  ASSERT_TRUE(cluster.Start());
  auto client = cluster.Mount();
  ASSERT_TRUE(client.ok());
  auto file = CreateFile(**client, "many");
  // One byte in each of 1500 chunks: three times what 1024 descriptors hold
  // open at once.
  for (uint64_t chunk = 0; chunk < 1500; ++chunk) {
    std::string byte(1, static_cast<char>('a' + chunk % 26));
    Status written = (*client)->Write(file.attr().ino(), file.layout(), chunk << 20, byte);
    ASSERT_TRUE(written.ok()) << "chunk " << chunk << ": " << written.ToString();
  }
  for (uint64_t chunk = 0; chunk < 1500; chunk += 7) {
    char byte = 0;
    ASSERT_TRUE((*client)->Read(file.attr().ino(), file.layout(), chunk << 20, 1, &byte).ok());
    EXPECT_EQ(byte, static_cast<char>('a' + chunk % 26)) << "chunk " << chunk;
  }
}

}  // namespace
}  // namespace sealfs::testing
