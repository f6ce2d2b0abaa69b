// Tenants through a real FUSE mount: EDQUOT reaches the application, df
// shows the quota and the usage, fallocate, punch-hole and zero-range work,
// and an unprivileged user holding one volume's token reaches nothing of
// another volume.
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "e2e_util.h"
#include "integration/tenant_util.h"
#include "test_cluster.h"

namespace sealfs::testing {
namespace {

constexpr uint64_t kMiB = 1 << 20;

class FuseTenantsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!CanMount()) GTEST_SKIP() << "needs root and /dev/fuse";
    cluster_ = std::make_unique<TestCluster>(2, 1 << 20);
    ASSERT_TRUE(cluster_->Start());
    auto admin = cluster_->Admin();
    ASSERT_TRUE(admin.ok());
    admin_ = std::move(*admin);
  }
  std::unique_ptr<TestCluster> cluster_;
  std::unique_ptr<client::Client> admin_;
};

TEST_F(FuseTenantsTest, QuotaReachesTheApplicationAndDfShowsIt) {
  std::string token = MakeVolume(*admin_, "t/quota", "t", 16 * kMiB, 50);
  std::string token_file = cluster_->root() + "/quota.token";
  ASSERT_TRUE(auth::WriteSecretFile(token_file, token).ok());
  std::string mnt = cluster_->FuseMount("quota", "", "t/quota", token_file);
  ASSERT_FALSE(mnt.empty());

  struct statvfs st {};
  ASSERT_EQ(statvfs(mnt.c_str(), &st), 0);
  EXPECT_EQ(uint64_t{st.f_blocks} * st.f_frsize, 16 * kMiB);
  EXPECT_EQ(uint64_t{st.f_files}, 50u);
  EXPECT_EQ(uint64_t{st.f_files - st.f_ffree}, 1u);  // the root

  int fd = open((mnt + "/big").c_str(), O_CREAT | O_WRONLY, 0644);
  ASSERT_GE(fd, 0);
  std::string piece(kMiB, 'q');
  int error = 0;
  uint64_t written = 0;
  for (int i = 0; i < 40 && error == 0; ++i) {
    ssize_t n = write(fd, piece.data(), piece.size());
    if (n < 0) error = errno;
    if (n > 0) written += static_cast<uint64_t>(n);
  }
  if (close(fd) != 0 && error == 0) error = errno;
  EXPECT_EQ(error, EDQUOT) << std::strerror(error);
  EXPECT_LE(written, 16 * kMiB);
  EXPECT_GE(written, 14 * kMiB);

  ASSERT_EQ(statvfs(mnt.c_str(), &st), 0);
  pb::Volume volume = VolumeNamed(*admin_, "t/quota");
  EXPECT_EQ(uint64_t{st.f_blocks - st.f_bfree} * st.f_frsize, volume.used_bytes());
  EXPECT_EQ(uint64_t{st.f_files - st.f_ffree}, volume.used_inodes());
  EXPECT_EQ(volume.used_inodes(), 2u);

  // fallocate past the quota fails; within it, it reserves and shows.
  fd = open((mnt + "/reserved").c_str(), O_CREAT | O_WRONLY, 0644);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(fallocate(fd, 0, 0, 64 * kMiB), -1);
  EXPECT_EQ(errno, EDQUOT);
  close(fd);
  ASSERT_EQ(unlink((mnt + "/big").c_str()), 0);
  fd = open((mnt + "/reserved").c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(fallocate(fd, 0, 0, 8 * kMiB), 0) << std::strerror(errno);
  struct stat file_stat {};
  ASSERT_EQ(fstat(fd, &file_stat), 0);
  EXPECT_EQ(file_stat.st_size, static_cast<off_t>(8 * kMiB));
  ASSERT_EQ(fallocate(fd, FALLOC_FL_KEEP_SIZE, 8 * kMiB, 4 * kMiB), 0) << std::strerror(errno);
  ASSERT_EQ(fstat(fd, &file_stat), 0);
  EXPECT_EQ(file_stat.st_size, static_cast<off_t>(8 * kMiB));
  close(fd);
  EXPECT_GE(VolumeNamed(*admin_, "t/quota").used_bytes(), 12 * kMiB);

  // Inodes: creating stops at the inode quota with EDQUOT.
  int created = 0;
  error = 0;
  for (int i = 0; i < 100 && error == 0; ++i) {
    std::string name = mnt + "/n" + std::to_string(i);
    if (mkdir(name.c_str(), 0755) != 0) {
      error = errno;
    } else {
      ++created;
    }
  }
  EXPECT_EQ(error, EDQUOT);
  EXPECT_EQ(created, 50 - 2);  // the root and "reserved"
}

TEST_F(FuseTenantsTest, PunchHoleAndZeroRangeReadBackAsZeros) {
  std::string mnt = cluster_->FuseMount("holes");
  ASSERT_FALSE(mnt.empty());
  std::string path = mnt + "/f";
  const std::string data = Pattern(3 * kMiB, 5);
  ASSERT_TRUE(WriteFile(path, data));
  int fd = open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  // Punch a hole across a chunk boundary (1 MiB chunks).
  const off_t hole = kMiB - 1000, hole_length = 5000;
  ASSERT_EQ(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, hole, hole_length), 0)
      << std::strerror(errno);
  // Zero a range inside, and one reaching past the end (grows the size).
  const off_t zero = 2 * kMiB + 17, zero_length = 300;
  ASSERT_EQ(fallocate(fd, FALLOC_FL_ZERO_RANGE, zero, zero_length), 0) << std::strerror(errno);
  ASSERT_EQ(fallocate(fd, FALLOC_FL_ZERO_RANGE, 3 * kMiB - 10, 110), 0) << std::strerror(errno);
  // Punch-hole without KEEP_SIZE is not allowed (as on Linux).
  EXPECT_EQ(fallocate(fd, FALLOC_FL_PUNCH_HOLE, 0, 10), -1);
  EXPECT_EQ(errno, EOPNOTSUPP);
  close(fd);
  std::string expected = data;
  std::fill(expected.begin() + hole, expected.begin() + hole + hole_length, '\0');
  std::fill(expected.begin() + zero, expected.begin() + zero + zero_length, '\0');
  std::fill(expected.end() - 10, expected.end(), '\0');
  expected.append(100, '\0');
  DropCaches();
  EXPECT_EQ(ReadFile(path), expected);
  struct stat st {};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_size, static_cast<off_t>(3 * kMiB + 100));
}

TEST_F(FuseTenantsTest, AnUnprivilegedUserWithOneTokenReachesNothingOfAnotherVolume) {
  std::string token_a = MakeVolume(*admin_, "a/vol", "a");
  std::string token_b = MakeVolume(*admin_, "b/vol", "b");
  std::string file_b = cluster_->root() + "/b.token";
  ASSERT_TRUE(auth::WriteSecretFile(file_b, token_b).ok());
  std::string mnt_b = cluster_->FuseMount("b", "", "b/vol", file_b);
  ASSERT_FALSE(mnt_b.empty());
  ASSERT_EQ(chmod(mnt_b.c_str(), 0700), 0);
  ASSERT_TRUE(WriteFile(mnt_b + "/secret", "tenant b only"));
  auto b = cluster_->MountWithToken("b/vol", token_b);
  ASSERT_TRUE(b.ok());
  uint64_t b_root = (*b)->root_ino();

  // A user of tenant a: its own token, nobody's uid.
  std::string file_a = cluster_->root() + "/a.token";
  ASSERT_TRUE(auth::WriteSecretFile(file_a, token_a).ok());
  ASSERT_EQ(chown(file_a.c_str(), 65534, 65534), 0);
  ASSERT_EQ(chmod(cluster_->root().c_str(), 0755), 0);
  // The user runs a program of its own: a fresh process, not a fork of this
  // multithreaded one.
  const std::string meta_address = cluster_->meta_address(), root_ino = std::to_string(b_root);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    if (setgid(65534) != 0 || setuid(65534) != 0) _exit(10);
    execl(SEALFS_TENANT_PROBE_BIN, SEALFS_TENANT_PROBE_BIN, meta_address.c_str(), "a/vol",
          file_a.c_str(), "b/vol", file_b.c_str(), mnt_b.c_str(), root_ino.c_str(), nullptr);
    _exit(9);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "step " << WEXITSTATUS(status) << " was not refused";
  EXPECT_EQ(ReadFile(mnt_b + "/secret"), "tenant b only");
}

}  // namespace
}  // namespace sealfs::testing
