// End to end: an application on a FUSE mount of a replicated cluster (R = 2
// over three data servers) keeps working, without one failed system call,
// through a data server's kill -9 and its restart.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <thread>

#include "e2e/e2e_util.h"
#include "test_cluster.h"

namespace sealfs::testing {
namespace {

using namespace std::chrono_literals;

// Writes, fsyncs and reads back files as an application would; the first
// failure, with the system call and errno.
std::string WriteAndCheck(const std::string& path, const std::string& data) {
  int fd = open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0644);
  if (fd < 0) return "open " + path + ": " + strerror(errno);
  if (write(fd, data.data(), data.size()) != static_cast<ssize_t>(data.size())) {
    std::string error = "write " + path + ": " + strerror(errno);
    close(fd);
    return error;
  }
  if (fsync(fd) != 0) {
    std::string error = "fsync " + path + ": " + strerror(errno);
    close(fd);
    return error;
  }
  if (close(fd) != 0) return "close " + path + ": " + strerror(errno);
  std::string back = ReadDirect(path);
  if (back != data) return "read back " + path + ": " + back.substr(0, 120);
  return "";
}

TEST(FuseReplication, AnApplicationKeepsWorkingThroughAKillNineAndARestart) {
  if (!CanMount()) GTEST_SKIP() << "needs root and /dev/fuse";
  TestCluster cluster(3, 1 << 20);
  cluster.set_meta_args({"--replicas", "2", "--server-timeout", "2"});
  ASSERT_TRUE(cluster.Start());
  std::string mount = cluster.FuseMount("app");
  ASSERT_FALSE(mount.empty());
  std::atomic<int> round{0};
  std::atomic<bool> stop{false};
  std::string failure;
  std::thread application([&] {
    while (!stop && failure.empty()) {
      int n = round++;
      failure = WriteAndCheck(mount + "/file" + std::to_string(n % 8),
                              Pattern((3 << 20) + 4096 * (n % 5), static_cast<unsigned>(n)));
    }
  });
  auto wait_rounds = [&](int more) {
    int target = round + more;
    while (round < target && failure.empty()) std::this_thread::sleep_for(10ms);
  };
  wait_rounds(5);
  cluster.KillData(1);
  wait_rounds(10);
  ASSERT_TRUE(cluster.StartData(1));
  ASSERT_TRUE(cluster.WaitForChainsServing());
  wait_rounds(5);
  stop = true;
  application.join();
  EXPECT_EQ(failure, "");
  EXPECT_GE(round.load(), 20);
}

}  // namespace
}  // namespace sealfs::testing
