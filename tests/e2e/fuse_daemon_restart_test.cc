// End-to-end: the FUSE daemon behind a mount is killed (kill -9) while an
// application keeps working on the mount; its keeper starts a successor on
// the same kernel mount, and the application goes on without a remount.
#include <dirent.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include <filesystem>
#include <future>
#include <set>

#include "e2e_util.h"
#include "mount_survival.h"
#include "test_cluster.h"

namespace sealfs::testing {
namespace {

using namespace std::chrono_literals;

class FuseDaemonRestartTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!CanMount()) GTEST_SKIP() << "needs root and /dev/fuse";
    cluster_ = std::make_unique<TestCluster>(3, 1 << 20);
    ASSERT_TRUE(cluster_->Start());
    mount_ = cluster_->FuseMount("a");
    ASSERT_FALSE(mount_.empty());
    processes_ = FindMountProcesses(mount_);
    ASSERT_GT(processes_.keeper, 0) << "no keeper for " << mount_;
    ASSERT_GT(processes_.daemon, 0) << "no daemon for " << mount_;
  }

  // Kills the serving daemon and waits for the keeper's next one.
  pid_t KillDaemonAndWaitForSuccessor() {
    pid_t old_daemon = FindMountProcesses(mount_).daemon;
    EXPECT_GT(old_daemon, 0);
    kill(old_daemon, SIGKILL);
    pid_t successor = 0;
    EXPECT_TRUE(WaitFor(10s, [&] {
      MountProcesses now = FindMountProcesses(mount_);
      successor = now.daemon != old_daemon ? now.daemon : 0;
      return successor > 0;
    })) << "no new daemon within 10 s";
    return successor;
  }

  static dev_t DeviceOf(const std::string& path) {
    struct stat st {};
    EXPECT_EQ(stat(path.c_str(), &st), 0) << path << ": " << strerror(errno);
    return st.st_dev;
  }

  std::unique_ptr<TestCluster> cluster_;
  std::string mount_;
  MountProcesses processes_;
};

TEST_F(FuseDaemonRestartTest, AnApplicationKeepsWorkingAcrossDaemonKills) {
  std::string work = mount_ + "/work";
  ASSERT_EQ(mkdir(work.c_str(), 0755), 0);
  dev_t device = DeviceOf(mount_);
  BusyApplication app(work);
  ASSERT_TRUE(WaitFor(10s, [&] { return app.counters().rounds_ok >= 20; }))
      << "the application does not get going; last errno " << app.counters().last_errno;
  for (int kill_round = 0; kill_round < 3; ++kill_round) {
    uint64_t before = app.counters().rounds_ok;
    pid_t successor = KillDaemonAndWaitForSuccessor();
    ASSERT_GT(successor, 0);
    EXPECT_TRUE(WaitFor(10s, [&] { return app.counters().rounds_ok >= before + 10; }))
        << "the application made no progress within 10 s of kill " << kill_round << "; last errno "
        << app.counters().last_errno;
    EXPECT_EQ(FindMountProcesses(mount_).keeper, processes_.keeper) << "the keeper changed";
  }
  ASSERT_EQ(app.Stop(), 0) << "the application could not close its files";
  // What fails is at most the request a killed daemon was serving, and it
  // fails with ECONNABORTED; nothing else.
  EXPECT_EQ(app.counters().unexpected_errors, 0u)
      << "last errno " << app.counters().last_errno << " (" << strerror(app.counters().last_errno)
      << ")";
  EXPECT_LE(app.counters().errors, 3u);
  EXPECT_EQ(DeviceOf(mount_), device) << "the mount was replaced";

  // Every acknowledged record is there, read from another mount.
  std::string other = cluster_->FuseMount("b");
  ASSERT_FALSE(other.empty());
  std::string journal = ReadDirect(other + "/work/journal.bin");
  uint64_t records = app.counters().records;
  ASSERT_GE(journal.size(), records * BusyApplication::kRecord);
  for (uint64_t index = 0; index < records; ++index) {
    ASSERT_EQ(journal.substr(index * BusyApplication::kRecord, BusyApplication::kRecord),
              BusyApplication::Record(index))
        << "record " << index;
  }
}

TEST_F(FuseDaemonRestartTest, WritesNotCommittedByADeadDaemonAreCommittedByItsSuccessor) {
  std::string path = mount_ + "/uncommitted";
  int fd = open(path.c_str(), O_RDWR | O_CREAT, 0644);
  ASSERT_GE(fd, 0);
  std::string data(3 << 20, 'q');
  ASSERT_EQ(pwrite(fd, data.data(), data.size(), 0), static_cast<ssize_t>(data.size()));
  // Neither closed nor synced: the size is only in the daemon's memory.
  ASSERT_GT(KillDaemonAndWaitForSuccessor(), 0);
  std::string other = cluster_->FuseMount("b");
  ASSERT_FALSE(other.empty());
  EXPECT_EQ(ReadDirect(other + "/uncommitted"), data);
  // The descriptor opened under the dead daemon goes on working.
  std::string more(4096, 'r');
  EXPECT_EQ(pwrite(fd, more.data(), more.size(), static_cast<off_t>(data.size())),
            static_cast<ssize_t>(more.size()));
  EXPECT_EQ(close(fd), 0);
  EXPECT_EQ(ReadDirect(other + "/uncommitted"), data + more);
}

TEST_F(FuseDaemonRestartTest, AnOpenDirectoryListsOnAcrossADaemonKill) {
  std::string directory = mount_ + "/listed";
  ASSERT_EQ(mkdir(directory.c_str(), 0755), 0);
  for (int i = 0; i < 300; ++i) {
    ASSERT_TRUE(WriteFile(directory + "/entry-" + std::to_string(i), "")) << i;
  }
  DIR* listing = opendir(directory.c_str());
  ASSERT_NE(listing, nullptr);
  std::set<std::string> seen;
  for (int i = 0; i < 50; ++i) {
    dirent* entry = readdir(listing);
    ASSERT_NE(entry, nullptr);
    seen.insert(entry->d_name);
  }
  ASSERT_GT(KillDaemonAndWaitForSuccessor(), 0);
  errno = 0;
  while (dirent* entry = readdir(listing)) seen.insert(entry->d_name);
  EXPECT_EQ(errno, 0) << strerror(errno);
  closedir(listing);
  EXPECT_EQ(seen.size(), 302u);  // the entries, "." and ".."
}

TEST_F(FuseDaemonRestartTest, ARequestTheDeadDaemonHadTakenFailsInsteadOfHanging) {
  std::string path = mount_ + "/waiting";
  ASSERT_TRUE(WriteFile(path, "x"));
  // The metadata server stops answering: the daemon takes the request and
  // waits on the server when it is killed.
  cluster_->PauseMeta();
  auto waiting = std::async(std::launch::async, [&] {
    struct stat st;
    std::string fresh = mount_ + "/not-cached-" + std::to_string(getpid());
    return stat(fresh.c_str(), &st) == 0 ? 0 : errno;
  });
  std::this_thread::sleep_for(500ms);
  ASSERT_EQ(waiting.wait_for(0s), std::future_status::timeout) << "the request did not wait";
  kill(FindMountProcesses(mount_).daemon, SIGKILL);
  ASSERT_EQ(waiting.wait_for(10s), std::future_status::ready) << "the request hangs";
  EXPECT_EQ(waiting.get(), ECONNABORTED);
  cluster_->ResumeMeta();
  // A successor serves the mount once the server is back.
  EXPECT_TRUE(WaitFor(20s, [&] {
    struct stat st;
    return stat(path.c_str(), &st) == 0 && st.st_size == 1;
  }));
}

TEST_F(FuseDaemonRestartTest, UnmountingEndsTheKeeperAndTheDaemon) {
  ASSERT_EQ(umount2(mount_.c_str(), 0), 0) << strerror(errno);
  EXPECT_TRUE(WaitFor(10s, [&] {
    MountProcesses now = FindMountProcesses(mount_);
    return now.keeper == 0 && now.daemon == 0;
  })) << "processes left behind after unmount";
}

TEST_F(FuseDaemonRestartTest, StoppingTheDaemonUnmounts) {
  kill(processes_.daemon, SIGTERM);
  EXPECT_TRUE(WaitFor(10s, [&] {
    MountProcesses now = FindMountProcesses(mount_);
    return now.keeper == 0 && now.daemon == 0;
  })) << "processes left behind after SIGTERM";
  std::ifstream mountinfo("/proc/self/mountinfo");
  std::string info(std::istreambuf_iterator<char>(mountinfo), {});
  EXPECT_EQ(info.find(" " + mount_ + " "), std::string::npos) << "still mounted";
}

}  // namespace
}  // namespace sealfs::testing
