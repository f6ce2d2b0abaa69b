// End-to-end, through real FUSE mounts of a real cluster: the behaviour a
// review found wrong between mounts, across restarts, and at the edges of
// POSIX (listings under renames, removed directories, file size limits,
// sparse files, file handles, fsync).
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "e2e_util.h"
#include "sealfs/rpc/limits.h"
#include "test_cluster.h"

namespace sealfs::testing {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

class FuseConsistencyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!CanMount()) GTEST_SKIP() << "needs root and /dev/fuse";
  }
  // Starts a 3-server cluster (1 MiB chunks) and mounts it once.
  void StartCluster(std::vector<std::string> meta_args = {}) {
    cluster_ = std::make_unique<TestCluster>(3, 1 << 20);
    cluster_->set_meta_args(std::move(meta_args));
    ASSERT_TRUE(cluster_->Start());
    mount_ = cluster_->FuseMount("a");
    ASSERT_FALSE(mount_.empty());
  }
  std::unique_ptr<TestCluster> cluster_;
  std::string mount_;
};

TEST_F(FuseConsistencyTest, TruncateFromAnotherMountIsNotUndoneByAnUncommittedSize) {
  StartCluster();
  std::string other = cluster_->FuseMount("b");
  ASSERT_FALSE(other.empty());
  std::string data = Pattern(1 << 20, 3);
  int fd = open((mount_ + "/f").c_str(), O_CREAT | O_WRONLY, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
  // Mount b cuts the file while mount a still holds its size uncommitted.
  ASSERT_EQ(truncate((other + "/f").c_str(), 0), 0);
  ASSERT_EQ(close(fd), 0);
  // Write-then-truncate leaves an empty file; no order of the two leaves
  // 1 MiB of zeros.
  std::string third = cluster_->FuseMount("c");
  ASSERT_FALSE(third.empty());
  struct stat st;
  ASSERT_EQ(stat((third + "/f").c_str(), &st), 0);
  std::string seen = ReadDirect(third + "/f");
  EXPECT_EQ(st.st_size, 0);
  EXPECT_EQ(seen.size(), 0u);
  EXPECT_EQ(seen.find_first_not_of('\0'), seen.empty() ? std::string::npos : 0u)
      << "the file reads as zeros the writer never wrote";

  // Truncate first, then write: the written bytes stay, with their size.
  fd = open((mount_ + "/g").c_str(), O_CREAT | O_WRONLY, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(truncate((other + "/g").c_str(), 0), 0);
  ASSERT_EQ(pwrite(fd, data.data(), data.size(), 0), static_cast<ssize_t>(data.size()));
  ASSERT_EQ(close(fd), 0);
  EXPECT_EQ(ReadDirect(third + "/g"), data);
}

TEST_F(FuseConsistencyTest, FallocateAfterAnotherMountsTruncateGrowsTheFile) {
  StartCluster();
  std::string other = cluster_->FuseMount("b");
  ASSERT_FALSE(other.empty());
  std::string data = Pattern(4096, 7);
  int fd = open((mount_ + "/f").c_str(), O_CREAT | O_RDWR, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
  ASSERT_EQ(fsync(fd), 0);
  ASSERT_EQ(truncate((other + "/f").c_str(), 0), 0);
  // The allocation comes after the truncate: the file must grow to it.
  ASSERT_EQ(fallocate(fd, 0, 0, 1 << 20), 0) << strerror(errno);
  ASSERT_EQ(close(fd), 0);
  std::string third = cluster_->FuseMount("c");
  ASSERT_FALSE(third.empty());
  struct stat st;
  ASSERT_EQ(stat((third + "/f").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 1 << 20);
  EXPECT_EQ(ReadDirect(third + "/f"), std::string(1 << 20, '\0'));
}

TEST_F(FuseConsistencyTest, OpenFileSurvivesAMetadataRestartFollowedByUnlink) {
  // A short session timeout: the test waits past the restart's grace, so the
  // file survives only if the mount announced it again after the restart.
  StartCluster({"--session-timeout", "3"});
  std::string data = Pattern(3 << 20, 4);
  std::string path = mount_ + "/held";
  int writer = open(path.c_str(), O_CREAT | O_WRONLY, 0644);
  ASSERT_GE(writer, 0);
  ASSERT_EQ(write(writer, data.data(), data.size()), static_cast<ssize_t>(data.size()));
  ASSERT_EQ(close(writer), 0);
  int fd = open(path.c_str(), O_RDONLY | O_DIRECT);
  ASSERT_GE(fd, 0);
  cluster_->KillMeta(SIGKILL);
  ASSERT_TRUE(cluster_->StartMeta());
  std::this_thread::sleep_for(1500ms);
  ASSERT_EQ(unlink(path.c_str()), 0);
  // Past the grace (3 s from the restart): the sweeper has had several
  // rounds to free the file if nobody said it is open.
  std::this_thread::sleep_for(6s);
  struct stat st;
  ASSERT_EQ(fstat(fd, &st), 0) << strerror(errno);
  EXPECT_EQ(st.st_nlink, 0u);
  void* block = nullptr;
  ASSERT_EQ(posix_memalign(&block, 4096, data.size()), 0);
  ssize_t got = pread(fd, block, data.size(), 0);
  EXPECT_EQ(got, static_cast<ssize_t>(data.size())) << strerror(errno);
  EXPECT_TRUE(got > 0 && std::string(static_cast<char*>(block), static_cast<size_t>(got)) == data)
      << "the held file's data was removed";
  free(block);
  close(fd);
}

// Traces fsync/fdatasync of a process with strace, while alive.
class SyncTracer {
 public:
  SyncTracer(pid_t pid, const std::string& log) : log_(log) {
    pid_ = fork();
    if (pid_ == 0) {
      execlp("strace", "strace", "-f", "-qq", "-e", "trace=fsync,fdatasync,sync_file_range", "-o",
             log.c_str(), "-p", std::to_string(pid).c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    std::this_thread::sleep_for(1s);  // attach to every thread
  }
  // Stops tracing; returns the number of sync calls seen.
  int Stop() {
    kill(pid_, SIGINT);
    waitpid(pid_, nullptr, 0);
    std::ifstream in(log_);
    std::string line;
    int syncs = 0;
    while (std::getline(in, line)) {
      if (line.find("sync") != std::string::npos) ++syncs;
    }
    return syncs;
  }

 private:
  std::string log_;
  pid_t pid_;
};

TEST_F(FuseConsistencyTest, FsyncThroughAnotherMountSyncsTheCommittedSize) {
  if (system("command -v strace >/dev/null") != 0) GTEST_SKIP() << "needs strace";
  StartCluster();
  std::string other = cluster_->FuseMount("b");
  ASSERT_FALSE(other.empty());
  std::string data = Pattern(100000, 5);
  int writer = open((mount_ + "/f").c_str(), O_CREAT | O_WRONLY, 0644);
  ASSERT_GE(writer, 0);
  ASSERT_EQ(write(writer, data.data(), data.size()), static_cast<ssize_t>(data.size()));
  ASSERT_EQ(close(writer), 0);  // size committed, not synced
  int fd = open((other + "/f").c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  SyncTracer meta(cluster_->meta_pid(), cluster_->root() + "/meta.strace");
  ASSERT_EQ(fsync(fd), 0);
  int meta_syncs = meta.Stop();
  close(fd);
  EXPECT_GT(meta_syncs, 0) << "fsync left the size the other mount committed unsynced";
}

TEST_F(FuseConsistencyTest, ListingEndsWhileEachEntryIsRenamedAwayAndBack) {
  StartCluster();
  std::string dir = mount_ + "/d";
  ASSERT_EQ(mkdir(dir.c_str(), 0755), 0);
  for (int i = 0; i < 40; ++i) {
    std::ofstream(dir + "/entry" + std::to_string(i)) << i;
  }
  DIR* listing = opendir(dir.c_str());
  ASSERT_NE(listing, nullptr);
  int returned = 0;
  while (dirent* entry = readdir(listing)) {
    std::string name = entry->d_name;
    if (name == "." || name == "..") continue;
    ASSERT_EQ(rename((dir + "/" + name).c_str(), (dir + "/tmp").c_str()), 0);
    ASSERT_EQ(rename((dir + "/tmp").c_str(), (dir + "/" + name).c_str()), 0);
    ASSERT_EQ(rename((dir + "/" + name).c_str(), (mount_ + "/away").c_str()), 0);
    ASSERT_EQ(rename((mount_ + "/away").c_str(), (dir + "/" + name).c_str()), 0);
    if (++returned > 1000) break;
  }
  closedir(listing);
  EXPECT_LE(returned, 80) << "the listing kept returning renamed entries";
  EXPECT_GE(returned, 40);
}

TEST_F(FuseConsistencyTest, FstatOfARemovedDirectoryShowsNoLinks) {
  StartCluster();
  std::string dir = mount_ + "/gone";
  ASSERT_EQ(mkdir(dir.c_str(), 0755), 0);
  int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  ASSERT_GE(fd, 0);
  // A change inside makes the mount know the directory's attributes (the
  // server sends them back with the change): they must not outlive it.
  ASSERT_TRUE(WriteFile(dir + "/inside", "x"));
  ASSERT_EQ(unlink((dir + "/inside").c_str()), 0);
  ASSERT_EQ(rmdir(dir.c_str()), 0);
  struct stat st;
  ASSERT_EQ(fstat(fd, &st), 0) << strerror(errno);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_nlink, 0u);
  close(fd);

  // Renamed over by another directory.
  ASSERT_EQ(mkdir((mount_ + "/a").c_str(), 0755), 0);
  ASSERT_EQ(mkdir((mount_ + "/b").c_str(), 0755), 0);
  fd = open((mount_ + "/b").c_str(), O_RDONLY | O_DIRECTORY);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(WriteFile(mount_ + "/b/inside", "x"));
  ASSERT_EQ(unlink((mount_ + "/b/inside").c_str()), 0);
  ASSERT_EQ(rename((mount_ + "/a").c_str(), (mount_ + "/b").c_str()), 0);
  ASSERT_EQ(fstat(fd, &st), 0) << strerror(errno);
  EXPECT_EQ(st.st_nlink, 0u);
  close(fd);
}

TEST_F(FuseConsistencyTest, WriteTruncateAndFallocateShareOneLargestFileSize) {
  StartCluster();
  std::string path = mount_ + "/big";
  int fd = open(path.c_str(), O_CREAT | O_RDWR, 0644);
  ASSERT_GE(fd, 0);
  const off_t max = static_cast<off_t>(kMaxFileSize);
  errno = 0;
  EXPECT_EQ(pwrite(fd, "x", 1, (off_t{1} << 62)), -1);
  EXPECT_EQ(errno, EFBIG);
  errno = 0;
  EXPECT_EQ(pwrite(fd, "x", 1, max), -1);
  EXPECT_EQ(errno, EFBIG);
  errno = 0;
  EXPECT_EQ(ftruncate(fd, off_t{1} << 62), -1);
  EXPECT_EQ(errno, EFBIG);
  errno = 0;
  EXPECT_EQ(ftruncate(fd, max + 1), -1);
  EXPECT_EQ(errno, EFBIG);
  errno = 0;
  EXPECT_EQ(fallocate(fd, 0, max - 10, 20), -1);
  EXPECT_EQ(errno, EFBIG);
  // Up to the limit everything works: the last byte can be written.
  EXPECT_EQ(pwrite(fd, "z", 1, max - 1), 1) << strerror(errno);
  struct stat st;
  ASSERT_EQ(fstat(fd, &st), 0);
  EXPECT_EQ(st.st_size, max);
  EXPECT_EQ(ftruncate(fd, max), 0);
  char byte = 0;
  EXPECT_EQ(pread(fd, &byte, 1, max - 1), 1);
  EXPECT_EQ(byte, 'z');
  close(fd);
}

TEST_F(FuseConsistencyTest, SparseFilesShowTheirHolesInStBlocks) {
  StartCluster();
  std::string path = mount_ + "/sparse";
  int fd = open(path.c_str(), O_CREAT | O_RDWR, 0644);
  ASSERT_GE(fd, 0);
  std::string block(4096, 's');
  ASSERT_EQ(pwrite(fd, block.data(), block.size(), 0), 4096);
  ASSERT_EQ(pwrite(fd, block.data(), block.size(), 100 << 20), 4096);
  ASSERT_EQ(close(fd), 0);
  std::string dense = Pattern(2 << 20, 6);
  std::ofstream(mount_ + "/dense", std::ios::binary) << dense;

  std::string fresh = cluster_->FuseMount("b");
  ASSERT_FALSE(fresh.empty());
  struct stat st;
  ASSERT_EQ(stat((fresh + "/sparse").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, (100 << 20) + 4096);
  EXPECT_GE(st.st_blocks * 512, 8192);
  EXPECT_LT(st.st_blocks * 512, 1 << 20) << "holes are reported as stored data";
  ASSERT_EQ(stat((fresh + "/dense").c_str(), &st), 0);
  EXPECT_GE(st.st_blocks * 512, 2 << 20);
  // Cutting the file frees its blocks.
  ASSERT_EQ(truncate((fresh + "/dense").c_str(), 0), 0);
  ASSERT_EQ(stat((fresh + "/dense").c_str(), &st), 0);
  EXPECT_EQ(st.st_blocks, 0);
}

TEST_F(FuseConsistencyTest, FileHandlesReopenFilesAndDirectories) {
  StartCluster();
  std::string data = "handled\n";
  std::ofstream(mount_ + "/file") << data;
  ASSERT_EQ(mkdir((mount_ + "/dir").c_str(), 0755), 0);
  std::ofstream(mount_ + "/dir/inner") << "x";
  int mount_fd = open(mount_.c_str(), O_RDONLY | O_DIRECTORY);
  ASSERT_GE(mount_fd, 0);
  auto handle_of = [&](const std::string& path) {
    auto* handle = static_cast<file_handle*>(malloc(sizeof(file_handle) + MAX_HANDLE_SZ));
    handle->handle_bytes = MAX_HANDLE_SZ;
    int mount_id = 0;
    EXPECT_EQ(name_to_handle_at(AT_FDCWD, path.c_str(), handle, &mount_id, 0), 0)
        << path << ": " << strerror(errno);
    return handle;
  };
  file_handle* file = handle_of(mount_ + "/file");
  file_handle* dir = handle_of(mount_ + "/dir");
  DropCaches();  // the kernel forgets the inodes: the handles must find them again

  int fd = open_by_handle_at(mount_fd, file, O_RDONLY);
  ASSERT_GE(fd, 0) << strerror(errno);
  char buffer[64] = {};
  EXPECT_EQ(read(fd, buffer, sizeof buffer), static_cast<ssize_t>(data.size()));
  EXPECT_EQ(std::string(buffer), data);
  close(fd);
  fd = open_by_handle_at(mount_fd, dir, O_RDONLY | O_DIRECTORY);
  ASSERT_GE(fd, 0) << strerror(errno);
  struct stat st;
  EXPECT_EQ(fstatat(fd, "inner", &st, 0), 0);
  close(fd);

  // A removed file's handle is stale.
  ASSERT_EQ(unlink((mount_ + "/file").c_str()), 0);
  DropCaches();
  errno = 0;
  EXPECT_EQ(open_by_handle_at(mount_fd, file, O_RDONLY), -1);
  EXPECT_EQ(errno, ESTALE);
  free(file);
  free(dir);
  close(mount_fd);
}

}  // namespace
}  // namespace sealfs::testing
