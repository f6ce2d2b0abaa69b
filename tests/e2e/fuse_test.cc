// End-to-end: real FUSE mounts of a real cluster, exercised with system calls.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <xxhash.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>

#include "e2e_util.h"
#include "test_cluster.h"

namespace sealfs::testing {
namespace {

namespace fs = std::filesystem;

int Renameat2(const std::string& from, const std::string& to, unsigned flags) {
  return static_cast<int>(
      syscall(SYS_renameat2, AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), flags));
}

std::vector<std::string> ChunkFiles(const std::string& dir) {
  std::vector<std::string> files;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec);
       it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (it->path().extension() == ".dat") files.push_back(it->path().string());
  }
  return files;
}

// The suite's metadata server forgets a silent client after this many seconds
// (30 by default), so tests can wait past it: mounts must keep their sessions
// alive while idle.
constexpr int kSessionTimeoutSeconds = 3;

// One cluster and two mounts of its default volume for the whole suite.
class FuseTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!CanMount()) return;
    cluster_ = new TestCluster(3, 1 << 20);
    cluster_->set_meta_args({"--session-timeout", std::to_string(kSessionTimeoutSeconds)});
    ASSERT_TRUE(cluster_->Start());
    mount_a_ = cluster_->FuseMount("a");
    mount_b_ = cluster_->FuseMount("b");
    ASSERT_FALSE(mount_a_.empty());
    ASSERT_FALSE(mount_b_.empty());
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }
  void SetUp() override {
    if (!CanMount()) GTEST_SKIP() << "needs root and /dev/fuse";
    ASSERT_NE(cluster_, nullptr);
    // Each test works in its own directory.
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = mount_a_ + "/" + info->name();
    dir_b_ = mount_b_ + "/" + info->name();
    ASSERT_EQ(mkdir(dir_.c_str(), 0755), 0) << strerror(errno);
  }
  std::string A(const std::string& name) const { return dir_ + "/" + name; }
  std::string B(const std::string& name) const { return dir_b_ + "/" + name; }

  static TestCluster* cluster_;
  static std::string mount_a_, mount_b_;
  std::string dir_, dir_b_;
};

TestCluster* FuseTest::cluster_ = nullptr;
std::string FuseTest::mount_a_;
std::string FuseTest::mount_b_;

TEST_F(FuseTest, FilesAndDirectories) {
  ASSERT_TRUE(WriteFile(A("f"), "hello world"));
  EXPECT_EQ(ReadFile(A("f")), "hello world");
  struct stat st;
  ASSERT_EQ(stat(A("f").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 11);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0644u);
  ASSERT_EQ(mkdir(A("sub").c_str(), 0700), 0);
  EXPECT_EQ(mkdir(A("sub").c_str(), 0700), -1);
  EXPECT_EQ(errno, EEXIST);
  ASSERT_TRUE(WriteFile(A("sub/inner"), "x"));
  EXPECT_EQ(rmdir(A("sub").c_str()), -1);
  EXPECT_EQ(errno, ENOTEMPTY);
  EXPECT_EQ(unlink(A("sub").c_str()), -1);
  EXPECT_EQ(errno, EISDIR);
  EXPECT_EQ(open(A("f/x").c_str(), O_RDONLY), -1);
  EXPECT_EQ(errno, ENOTDIR);
  EXPECT_EQ(open(A("missing").c_str(), O_RDONLY), -1);
  EXPECT_EQ(errno, ENOENT);
  EXPECT_EQ(open(A(std::string(256, 'n')).c_str(), O_CREAT | O_WRONLY, 0644), -1);
  EXPECT_EQ(errno, ENAMETOOLONG);
  int fd = open(A(std::string(255, 'n')).c_str(), O_CREAT | O_WRONLY, 0644);
  EXPECT_GE(fd, 0);
  close(fd);
  ASSERT_EQ(unlink(A("sub/inner").c_str()), 0);
  ASSERT_EQ(rmdir(A("sub").c_str()), 0);
  EXPECT_EQ(access(A("sub").c_str(), F_OK), -1);
  int fifo = mkfifo(A("fifo").c_str(), 0600);
  EXPECT_EQ(fifo, 0);
  ASSERT_EQ(lstat(A("fifo").c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
}

TEST_F(FuseTest, ReaddirListsLargeDirectories) {
  std::set<std::string> expected;
  for (int i = 0; i < 1500; ++i) {
    std::string name = "entry-with-a-longish-name-" + std::to_string(i);
    int fd = open(A(name).c_str(), O_CREAT | O_WRONLY, 0644);
    ASSERT_GE(fd, 0);
    close(fd);
    expected.insert(name);
  }
  std::set<std::string> seen;
  DIR* dir = opendir(dir_.c_str());
  ASSERT_NE(dir, nullptr);
  while (dirent* entry = readdir(dir)) {
    std::string name = entry->d_name;
    if (name == "." || name == "..") continue;
    EXPECT_TRUE(seen.insert(name).second) << "duplicate " << name;
  }
  closedir(dir);
  EXPECT_EQ(seen, expected);
  // The other mount lists the same.
  size_t count_b = 0;
  for (const auto& entry : fs::directory_iterator(dir_b_)) count_b += !entry.path().empty();
  EXPECT_EQ(count_b, expected.size());
}

TEST_F(FuseTest, HardLinksShareTheInodeAndCount) {
  ASSERT_TRUE(WriteFile(A("one"), "data"));
  ASSERT_EQ(link(A("one").c_str(), A("two").c_str()), 0);
  struct stat one, two;
  ASSERT_EQ(stat(A("one").c_str(), &one), 0);
  ASSERT_EQ(stat(A("two").c_str(), &two), 0);
  EXPECT_EQ(one.st_ino, two.st_ino);
  EXPECT_EQ(one.st_nlink, 2u);
  EXPECT_EQ(two.st_nlink, 2u);
  // The other mount sees the same server inode number and count.
  struct stat other;
  ASSERT_EQ(stat(B("two").c_str(), &other), 0);
  EXPECT_EQ(other.st_ino, one.st_ino);
  EXPECT_EQ(other.st_nlink, 2u);
  ASSERT_EQ(unlink(A("one").c_str()), 0);
  ASSERT_EQ(stat(A("two").c_str(), &two), 0);
  EXPECT_EQ(two.st_nlink, 1u);
  EXPECT_EQ(ReadFile(A("two")), "data");
  EXPECT_EQ(link(dir_.c_str(), A("dirlink").c_str()), -1);
  EXPECT_EQ(errno, EPERM);
}

TEST_F(FuseTest, Symlinks) {
  ASSERT_TRUE(WriteFile(A("target"), "via link"));
  ASSERT_EQ(symlink("target", A("link").c_str()), 0);
  char buffer[64] = {};
  ASSERT_EQ(readlink(A("link").c_str(), buffer, sizeof buffer), 6);
  EXPECT_STREQ(buffer, "target");
  EXPECT_EQ(ReadFile(A("link")), "via link");
  struct stat st;
  ASSERT_EQ(lstat(A("link").c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  EXPECT_EQ(st.st_size, 6);
  ASSERT_EQ(symlink("nowhere", A("dangling").c_str()), 0);
  EXPECT_EQ(open(A("dangling").c_str(), O_RDONLY), -1);
  EXPECT_EQ(errno, ENOENT);
}

TEST_F(FuseTest, ExtendedAttributes) {
  ASSERT_TRUE(WriteFile(A("x"), ""));
  std::string path = A("x");
  char value[64];
  EXPECT_EQ(getxattr(path.c_str(), "user.color", value, sizeof value), -1);
  EXPECT_EQ(errno, ENODATA);
  // The other mount learns that the file has none (and may say so from memory).
  EXPECT_EQ(getxattr(B("x").c_str(), "user.shape", value, sizeof value), -1);
  EXPECT_EQ(errno, ENODATA);
  ASSERT_EQ(setxattr(path.c_str(), "user.color", "blue", 4, 0), 0);
  EXPECT_EQ(setxattr(path.c_str(), "user.color", "red", 3, XATTR_CREATE), -1);
  EXPECT_EQ(errno, EEXIST);
  EXPECT_EQ(setxattr(path.c_str(), "user.size", "1", 1, XATTR_REPLACE), -1);
  EXPECT_EQ(errno, ENODATA);
  ASSERT_EQ(getxattr(path.c_str(), "user.color", value, sizeof value), 4);
  EXPECT_EQ(std::string(value, 4), "blue");
  EXPECT_EQ(getxattr(path.c_str(), "user.color", value, 2), -1);
  EXPECT_EQ(errno, ERANGE);
  ASSERT_EQ(setxattr(path.c_str(), "user.shape", "round", 5, 0), 0);
  char names[256];
  ssize_t length = listxattr(path.c_str(), names, sizeof names);
  ASSERT_GT(length, 0);
  std::set<std::string> listed;
  for (ssize_t i = 0; i < length; i += static_cast<ssize_t>(strlen(names + i)) + 1)
    listed.insert(names + i);
  EXPECT_EQ(listed, (std::set<std::string>{"user.color", "user.shape"}));
  ASSERT_EQ(removexattr(path.c_str(), "user.color"), 0);
  EXPECT_EQ(removexattr(path.c_str(), "user.color"), -1);
  EXPECT_EQ(errno, ENODATA);
  // Visible through the other mount once its attributes expire (attr_timeout=1).
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  ASSERT_EQ(getxattr(B("x").c_str(), "user.shape", value, sizeof value), 5);
  length = listxattr(B("x").c_str(), names, sizeof names);
  EXPECT_EQ(std::string(names, std::max<ssize_t>(length, 0)), std::string("user.shape\0", 11));
}

TEST_F(FuseTest, TruncateShrinksAndGrowsWithZeros) {
  std::string data = Pattern(3 << 20, 1);
  ASSERT_TRUE(WriteFile(A("t"), data));
  ASSERT_EQ(truncate(A("t").c_str(), 1500000), 0);
  struct stat st;
  ASSERT_EQ(stat(A("t").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 1500000);
  ASSERT_EQ(truncate(A("t").c_str(), 2500000), 0);
  std::string back = ReadFile(A("t"));
  ASSERT_EQ(back.size(), 2500000u);
  EXPECT_TRUE(back.substr(0, 1500000) == data.substr(0, 1500000));
  EXPECT_TRUE(back.substr(1500000) == std::string(1000000, '\0'));
  int fd = open(A("t").c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ftruncate(fd, 10), 0);
  ASSERT_EQ(pwrite(fd, "zz", 2, 20), 2);
  close(fd);
  EXPECT_EQ(ReadFile(A("t")), data.substr(0, 10) + std::string(10, '\0') + "zz");
  ASSERT_TRUE(WriteFile(A("t"), "new", O_TRUNC));
  EXPECT_EQ(ReadFile(A("t")), "new");
  EXPECT_EQ(truncate(dir_.c_str(), 0), -1);
  EXPECT_EQ(errno, EISDIR);
}

TEST_F(FuseTest, ChmodChownUtimens) {
  ASSERT_TRUE(WriteFile(A("m"), "x"));
  struct stat before;
  ASSERT_EQ(stat(A("m").c_str(), &before), 0);
  usleep(10000);
  ASSERT_EQ(chmod(A("m").c_str(), 0600), 0);
  ASSERT_EQ(chown(A("m").c_str(), 1234, 5678), 0);
  struct stat st;
  ASSERT_EQ(stat(A("m").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(st.st_uid, 1234u);
  EXPECT_EQ(st.st_gid, 5678u);
  EXPECT_GT(st.st_ctim.tv_sec * 1000000000LL + st.st_ctim.tv_nsec,
            before.st_ctim.tv_sec * 1000000000LL + before.st_ctim.tv_nsec);
  timespec times[2] = {{1000, 5}, {2000, 7}};
  ASSERT_EQ(utimensat(AT_FDCWD, A("m").c_str(), times, 0), 0);
  ASSERT_EQ(stat(A("m").c_str(), &st), 0);
  EXPECT_EQ(st.st_atim.tv_sec, 1000);
  EXPECT_EQ(st.st_atim.tv_nsec, 5);
  EXPECT_EQ(st.st_mtim.tv_sec, 2000);
  EXPECT_EQ(st.st_mtim.tv_nsec, 7);
  timespec omit_now[2] = {{0, UTIME_OMIT}, {0, UTIME_NOW}};
  ASSERT_EQ(utimensat(AT_FDCWD, A("m").c_str(), omit_now, 0), 0);
  ASSERT_EQ(stat(A("m").c_str(), &st), 0);
  EXPECT_EQ(st.st_atim.tv_sec, 1000);
  EXPECT_GT(st.st_mtim.tv_sec, 2000);
  // Another mount sees the changes (after its attribute cache expires).
  usleep(1100000);
  struct stat other;
  ASSERT_EQ(stat(B("m").c_str(), &other), 0);
  EXPECT_EQ(other.st_uid, 1234u);
  EXPECT_EQ(other.st_mode & 07777, 0600u);
}

TEST_F(FuseTest, RenameVariants) {
  ASSERT_TRUE(WriteFile(A("a"), "A"));
  ASSERT_TRUE(WriteFile(A("b"), "B"));
  ASSERT_EQ(rename(A("a").c_str(), A("b").c_str()), 0);
  EXPECT_EQ(ReadFile(A("b")), "A");
  EXPECT_EQ(access(A("a").c_str(), F_OK), -1);
  ASSERT_TRUE(WriteFile(A("c"), "C"));
  EXPECT_EQ(Renameat2(A("c"), A("b"), RENAME_NOREPLACE), -1);
  EXPECT_EQ(errno, EEXIST);
  ASSERT_EQ(Renameat2(A("c"), A("b"), RENAME_EXCHANGE), 0);
  EXPECT_EQ(ReadFile(A("b")), "C");
  EXPECT_EQ(ReadFile(A("c")), "A");
  ASSERT_EQ(mkdir(A("d").c_str(), 0755), 0);
  ASSERT_EQ(mkdir(A("d/e").c_str(), 0755), 0);
  EXPECT_EQ(rename(A("d").c_str(), A("d/e/f").c_str()), -1);
  EXPECT_EQ(errno, EINVAL);
  ASSERT_EQ(mkdir(A("full").c_str(), 0755), 0);
  ASSERT_TRUE(WriteFile(A("full/x"), ""));
  EXPECT_EQ(rename(A("d").c_str(), A("full").c_str()), -1);
  EXPECT_EQ(errno, ENOTEMPTY);
  EXPECT_EQ(rename(A("b").c_str(), A("d").c_str()), -1);
  EXPECT_EQ(errno, EISDIR);
  EXPECT_EQ(rename(A("d").c_str(), A("b").c_str()), -1);
  EXPECT_EQ(errno, ENOTDIR);
  ASSERT_EQ(rename(A("d/e").c_str(), A("full/e").c_str()), 0);
  struct stat st;
  ASSERT_EQ(stat(A("d").c_str(), &st), 0);
  EXPECT_EQ(st.st_nlink, 2u);
  ASSERT_EQ(stat(A("full").c_str(), &st), 0);
  EXPECT_EQ(st.st_nlink, 3u);
  ASSERT_EQ(rename(A("full/e").c_str(), A("d").c_str()), 0);  // over an empty directory
}

TEST_F(FuseTest, UnlinkedOpenFileStaysUsable) {
  std::string data = Pattern(2 << 20, 2);
  int fd = open(A("ghost").c_str(), O_CREAT | O_RDWR, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
  ASSERT_EQ(unlink(A("ghost").c_str()), 0);
  EXPECT_EQ(access(A("ghost").c_str(), F_OK), -1);
  ASSERT_EQ(pwrite(fd, "tail", 4, static_cast<off_t>(data.size())), 4);
  struct stat st;
  ASSERT_EQ(fstat(fd, &st), 0);
  EXPECT_EQ(st.st_nlink, 0u);
  EXPECT_EQ(st.st_size, static_cast<off_t>(data.size() + 4));
  std::string back(data.size() + 4, '\0');
  ASSERT_EQ(pread(fd, back.data(), back.size(), 0), static_cast<ssize_t>(back.size()));
  EXPECT_TRUE(back == data + "tail");
  ASSERT_EQ(fsync(fd), 0);
  // Survives the sweeper while still open: after a session timeout the sweeper
  // releases orphans that no live session holds open, so wait well past it.
  // Then read from the servers (O_DIRECT), not from this mount's page cache.
  sleep(kSessionTimeoutSeconds + 5);
  std::string direct = ReadDirect("/proc/self/fd/" + std::to_string(fd));
  EXPECT_EQ(direct.size(), data.size() + 4) << direct.substr(0, 200);
  EXPECT_TRUE(direct == data + "tail") << "the unlinked file's data changed while open";
  ASSERT_EQ(close(fd), 0);
}

TEST_F(FuseTest, TwoMountsSeeEachOthersClosedWrites) {
  ASSERT_TRUE(WriteFile(A("shared"), "first version"));
  EXPECT_EQ(ReadFile(B("shared")), "first version");
  ASSERT_TRUE(WriteFile(B("shared"), "second, longer version", O_TRUNC));
  EXPECT_EQ(ReadFile(A("shared")), "second, longer version");
  // Appending through one mount grows the file for the other.
  ASSERT_TRUE(WriteFile(A("shared"), "+more", O_APPEND));
  EXPECT_EQ(ReadFile(B("shared")), "second, longer version+more");
  // Same size, new content: the reopen still sees it.
  ASSERT_TRUE(WriteFile(B("shared"), "SECOND, LONGER VERSION+MORE", O_TRUNC));
  EXPECT_EQ(ReadFile(A("shared")), "SECOND, LONGER VERSION+MORE");
  ASSERT_EQ(unlink(B("shared").c_str()), 0);
  usleep(1100000);  // A's cached entry expires
  EXPECT_EQ(access(A("shared").c_str(), F_OK), -1);
}

TEST_F(FuseTest, FsyncAndFallocate) {
  std::string data = Pattern(300000, 5);
  int fd = open(A("s").c_str(), O_CREAT | O_RDWR, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
  ASSERT_EQ(fsync(fd), 0);
  // The file is still open, so only fsync can have published size and data:
  // the other mount reads both from the servers.
  struct stat st;
  ASSERT_EQ(stat(B("s").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, static_cast<off_t>(data.size()));
  EXPECT_TRUE(ReadDirect(B("s")) == data) << "after fsync";
  ASSERT_EQ(pwrite(fd, "tail", 4, static_cast<off_t>(data.size())), 4);
  ASSERT_EQ(fdatasync(fd), 0);
  data += "tail";
  EXPECT_TRUE(ReadDirect(B("s")) == data) << "after fdatasync";
  // Allocation grows the file, and the new range reads as zeros.
  ASSERT_EQ(fallocate(fd, 0, 0, 1 << 20), 0);
  ASSERT_EQ(fstat(fd, &st), 0);
  EXPECT_EQ(st.st_size, 1 << 20);
  std::string grown = data + std::string((1 << 20) - data.size(), '\0');
  std::string back = ReadDirect(B("s"));
  EXPECT_EQ(back.size(), grown.size()) << back.substr(0, 200);
  EXPECT_TRUE(back == grown) << "after fallocate";
  ASSERT_EQ(fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 2 << 20), 0);
  ASSERT_EQ(fstat(fd, &st), 0);
  EXPECT_EQ(st.st_size, 1 << 20);
  ASSERT_EQ(close(fd), 0);
  EXPECT_TRUE(ReadDirect(B("s")) == grown) << "after fallocate with FALLOC_FL_KEEP_SIZE";
  int dir = open(dir_.c_str(), O_RDONLY | O_DIRECTORY);
  EXPECT_EQ(fsync(dir), 0);
  close(dir);
}

TEST_F(FuseTest, PosixAndBsdLocksWithinTheMount) {
  ASSERT_TRUE(WriteFile(A("lock"), "x"));
  int fd = open(A("lock").c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  struct flock lock {};
  lock.l_type = F_WRLCK;
  lock.l_whence = SEEK_SET;
  lock.l_len = 10;
  ASSERT_EQ(fcntl(fd, F_SETLK, &lock), 0);
  pid_t child = fork();
  if (child == 0) {
    int child_fd = open(A("lock").c_str(), O_RDWR);
    struct flock want {};
    want.l_type = F_WRLCK;
    want.l_whence = SEEK_SET;
    want.l_len = 10;
    _exit(fcntl(child_fd, F_SETLK, &want) == -1 && (errno == EAGAIN || errno == EACCES) ? 0 : 1);
  }
  int status = 0;
  waitpid(child, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "second process got the lock";
  int other = open(A("lock").c_str(), O_RDWR);
  ASSERT_EQ(flock(fd, LOCK_EX | LOCK_NB), 0);
  EXPECT_EQ(flock(other, LOCK_EX | LOCK_NB), -1);
  EXPECT_EQ(errno, EWOULDBLOCK);
  close(other);
  close(fd);
}

TEST_F(FuseTest, CorruptedChunkReadsAsEio) {
  std::string data = Pattern(300000, 3);
  ASSERT_TRUE(WriteFile(A("fragile"), data));
  struct stat st;
  ASSERT_EQ(stat(A("fragile").c_str(), &st), 0);
  char suffix[64];
  std::snprintf(suffix, sizeof suffix, "/chunks/%02x/%016llx/0.dat",
                static_cast<unsigned>(st.st_ino & 0xff),
                static_cast<unsigned long long>(st.st_ino));
  std::string chunk;
  for (int i = 0; i < 3; ++i) {
    if (fs::exists(cluster_->DataDir(i) + suffix)) chunk = cluster_->DataDir(i) + suffix;
  }
  ASSERT_FALSE(chunk.empty());
  int fd = open(chunk.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(pwrite(fd, "\x01\x02\x03", 3, 200000), 3);
  close(fd);
  // The other mount has never cached it; read it directly.
  int reader = open(B("fragile").c_str(), O_RDONLY | O_DIRECT);
  ASSERT_GE(reader, 0);
  void* buffer = nullptr;
  ASSERT_EQ(posix_memalign(&buffer, 4096, 1 << 20), 0);
  errno = 0;
  ssize_t got = pread(reader, buffer, 1 << 20, 0);
  EXPECT_EQ(got, -1);
  EXPECT_EQ(errno, EIO);
  // Blocks before the damage still read.
  EXPECT_EQ(pread(reader, buffer, 4096, 0), 4096);
  EXPECT_EQ(memcmp(buffer, data.data(), 4096), 0);
  free(buffer);
  close(reader);
}

TEST_F(FuseTest, OneGibFileAcrossMountsIsByteIdenticalAndStriped) {
  constexpr size_t kBlock = 1 << 20;
  constexpr size_t kBlocks = 1024;
  std::mt19937_64 random(42);
  XXH64_state_t* written = XXH64_createState();
  XXH64_reset(written, 0);
  int fd = open(A("big").c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
  ASSERT_GE(fd, 0);
  std::vector<uint64_t> block(kBlock / 8);
  for (size_t i = 0; i < kBlocks; ++i) {
    for (uint64_t& word : block) word = random();
    ASSERT_EQ(write(fd, block.data(), kBlock), static_cast<ssize_t>(kBlock));
    XXH64_update(written, block.data(), kBlock);
  }
  ASSERT_EQ(close(fd), 0);
  int reader = open(B("big").c_str(), O_RDONLY);
  ASSERT_GE(reader, 0);
  XXH64_state_t* read_back = XXH64_createState();
  XXH64_reset(read_back, 0);
  size_t total = 0;
  std::string buffer(kBlock, '\0');
  for (;;) {
    ssize_t got = read(reader, buffer.data(), buffer.size());
    ASSERT_GE(got, 0);
    if (got == 0) break;
    XXH64_update(read_back, buffer.data(), static_cast<size_t>(got));
    total += static_cast<size_t>(got);
  }
  close(reader);
  EXPECT_EQ(total, kBlock * kBlocks);
  EXPECT_EQ(XXH64_digest(read_back), XXH64_digest(written));
  XXH64_freeState(written);
  XXH64_freeState(read_back);
  struct stat st;
  ASSERT_EQ(stat(A("big").c_str(), &st), 0);
  char suffix[64];
  std::snprintf(suffix, sizeof suffix, "/chunks/%02x/%016llx",
                static_cast<unsigned>(st.st_ino & 0xff),
                static_cast<unsigned long long>(st.st_ino));
  size_t chunks = 0;
  for (int i = 0; i < 3; ++i) {
    size_t here = ChunkFiles(cluster_->DataDir(i) + suffix).size();
    EXPECT_GE(here, 300u) << "data server " << i << " holds too few chunks";
    chunks += here;
  }
  EXPECT_EQ(chunks, 1024u);  // 1 GiB in 1 MiB chunks
  ASSERT_EQ(unlink(A("big").c_str()), 0);
}

// An fsx-style exerciser: random writes, truncates, reads, mmap reads and
// writes, and reopens on one file, checked against an in-memory model.
TEST_F(FuseTest, RandomOperationsMatchAModel) {
  std::mt19937 random(7);
  std::string model;
  std::string path = A("fsx");
  int fd = open(path.c_str(), O_CREAT | O_RDWR | O_TRUNC, 0644);
  ASSERT_GE(fd, 0);
  constexpr size_t kMaxSize = 3 << 20;
  for (int step = 0; step < 1500; ++step) {
    int op = static_cast<int>(random() % 10);
    if (op < 4) {
      size_t offset = random() % kMaxSize;
      size_t length = 1 + random() % 70000;
      std::string data = Pattern(length, static_cast<unsigned>(step));
      ASSERT_EQ(pwrite(fd, data.data(), length, static_cast<off_t>(offset)),
                static_cast<ssize_t>(length))
          << "step " << step;
      if (model.size() < offset + length) model.resize(offset + length, '\0');
      model.replace(offset, length, data);
    } else if (op == 4) {
      size_t size = random() % kMaxSize;
      ASSERT_EQ(ftruncate(fd, static_cast<off_t>(size)), 0) << "step " << step;
      model.resize(size, '\0');
    } else if (op == 5 && !model.empty()) {
      // Write through a shared mapping.
      size_t offset = random() % model.size();
      size_t length = std::min<size_t>(1 + random() % 10000, model.size() - offset);
      void* map = mmap(nullptr, model.size(), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
      ASSERT_NE(map, MAP_FAILED);
      std::string data = Pattern(length, static_cast<unsigned>(step) + 100000);
      std::memcpy(static_cast<char*>(map) + offset, data.data(), length);
      ASSERT_EQ(msync(map, model.size(), MS_SYNC), 0);
      munmap(map, model.size());
      model.replace(offset, length, data);
    } else if (op == 6) {
      ASSERT_EQ(close(fd), 0);
      fd = open(path.c_str(), O_RDWR);
      ASSERT_GE(fd, 0);
    } else if (op == 7 && !model.empty()) {
      void* map = mmap(nullptr, model.size(), PROT_READ, MAP_SHARED, fd, 0);
      ASSERT_NE(map, MAP_FAILED);
      size_t offset = random() % model.size();
      size_t length = std::min<size_t>(1 + random() % 50000, model.size() - offset);
      EXPECT_EQ(std::memcmp(static_cast<char*>(map) + offset, model.data() + offset, length), 0)
          << "mmap read mismatch at step " << step;
      munmap(map, model.size());
    } else {
      size_t offset = model.empty() ? 0 : random() % (model.size() + 1000);
      size_t length = 1 + random() % 100000;
      std::string buffer(length, '\0');
      ssize_t got = pread(fd, buffer.data(), length, static_cast<off_t>(offset));
      size_t expected = offset >= model.size() ? 0 : std::min(length, model.size() - offset);
      ASSERT_EQ(got, static_cast<ssize_t>(expected)) << "step " << step;
      EXPECT_TRUE(buffer.compare(0, expected, model, offset, expected) == 0)
          << "read mismatch at step " << step << " offset " << offset;
    }
    struct stat st;
    ASSERT_EQ(fstat(fd, &st), 0);
    ASSERT_EQ(static_cast<size_t>(st.st_size), model.size()) << "size after step " << step;
  }
  ASSERT_EQ(close(fd), 0);
  EXPECT_TRUE(ReadFile(B("fsx")) == model);
}

// Several processes creating, renaming and removing in one directory at once.
TEST_F(FuseTest, ConcurrentNamespaceChangesStayConsistent) {
  constexpr int kWorkers = 4;
  constexpr int kFiles = 150;
  std::vector<pid_t> children;
  for (int worker = 0; worker < kWorkers; ++worker) {
    pid_t child = fork();
    if (child == 0) {
      for (int i = 0; i < kFiles; ++i) {
        std::string name = A("w" + std::to_string(worker) + "_" + std::to_string(i));
        if (!WriteFile(name, name)) _exit(1);
        if (rename(name.c_str(), (name + ".renamed").c_str()) != 0) _exit(2);
        if (i % 3 == 0 && unlink((name + ".renamed").c_str()) != 0) _exit(3);
      }
      _exit(0);
    }
    children.push_back(child);
  }
  for (pid_t child : children) {
    int status = 0;
    waitpid(child, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "worker failed: " << status;
  }
  size_t count = 0;
  for (const auto& entry : fs::directory_iterator(dir_)) {
    std::string name = entry.path().filename().string();
    EXPECT_TRUE(name.ends_with(".renamed")) << name;
    EXPECT_EQ(ReadFile(entry.path().string()) + ".renamed", entry.path().string()) << name;
    ++count;
  }
  EXPECT_EQ(count, static_cast<size_t>(kWorkers * (kFiles - kFiles / 3)));
}

// kill -9 ends the processes, not the machine: the kernel keeps what they had
// written in its page cache. So this proves that nothing acknowledged lived only
// in a server's memory, not that it reached the disk.
TEST(FuseRestart, AcknowledgedDataSurvivesKillNineOfEveryServer) {
  if (!CanMount()) GTEST_SKIP() << "needs root and /dev/fuse";
  TestCluster cluster(3, 1 << 20);
  ASSERT_TRUE(cluster.Start());
  std::string mount = cluster.FuseMount("m");
  ASSERT_FALSE(mount.empty());
  std::string data = Pattern(5 << 20, 9);
  ASSERT_EQ(mkdir((mount + "/dir").c_str(), 0755), 0);
  ASSERT_TRUE(WriteFile(mount + "/dir/file", data));
  ASSERT_EQ(symlink("file", (mount + "/dir/link").c_str()), 0);
  ASSERT_EQ(setxattr((mount + "/dir/file").c_str(), "user.k", "value-1", 7, 0), 0);
  int held = open((mount + "/dir/held").c_str(), O_CREAT | O_RDWR, 0644);
  ASSERT_GE(held, 0);
  ASSERT_EQ(write(held, "held", 4), 4);
  ASSERT_EQ(fsync(held), 0);

  cluster.StopAll(SIGKILL);
  ASSERT_TRUE(cluster.Start());
  DropCaches();

  // A fresh mount, which never cached anything, reads back every value.
  std::string fresh = cluster.FuseMount("fresh");
  ASSERT_FALSE(fresh.empty());
  EXPECT_TRUE(ReadFile(fresh + "/dir/file") == data);
  char value[16] = {};
  EXPECT_EQ(getxattr((fresh + "/dir/file").c_str(), "user.k", value, sizeof value), 7);
  EXPECT_STREQ(value, "value-1");
  char target[16] = {};
  EXPECT_EQ(readlink((fresh + "/dir/link").c_str(), target, sizeof target), 4);
  EXPECT_STREQ(target, "file");
  EXPECT_EQ(ReadFile(fresh + "/dir/held"), "held");

  // The old mount carries on: it reconnects, and reads from the servers.
  EXPECT_TRUE(ReadDirect(mount + "/dir/file") == data);
  EXPECT_EQ(ReadDirect(mount + "/dir/held"), "held");
  EXPECT_EQ(close(held), 0);
}

}  // namespace
}  // namespace sealfs::testing
