// End-to-end POSIX ACLs: a real FUSE mount of a real cluster, driven with
// setfacl/getfacl and system calls, with the kernel enforcing the ACLs.
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "e2e_util.h"
#include "test_cluster.h"

namespace sealfs::testing {
namespace {

constexpr uid_t kGranted = 1234;  // named in the ACLs below
constexpr uid_t kStranger = 4321;
constexpr gid_t kProjectGroup = 5678;

bool HaveAclTools() {
  return std::system("command -v setfacl >/dev/null && command -v getfacl >/dev/null") == 0;
}

// Runs `command` with sh; returns its exit status (or -1).
int Shell(const std::string& command) {
  int status = std::system(command.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// getfacl without the header, ids as numbers.
std::string Getfacl(const std::string& path, bool default_acl = false) {
  std::string command = "getfacl -cnp " + std::string(default_acl ? "-d " : "") + path + " 2>&1";
  std::string output;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return "";
  char buffer[512];
  while (fgets(buffer, sizeof buffer, pipe) != nullptr) output += buffer;
  pclose(pipe);
  return output;
}

uint32_t ModeOf(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(stat(path.c_str(), &st), 0) << path << ": " << strerror(errno);
  return st.st_mode & 07777;
}

// Runs `body` in a child with the given credentials; returns what it returns
// (an errno, or 0), or -1 if the child could not take the credentials.
int AsUser(uid_t uid, gid_t gid, const std::vector<gid_t>& groups,
           const std::function<int()>& body) {
  pid_t pid = fork();
  if (pid == 0) {
    if (setgroups(groups.size(), groups.data()) != 0 || setgid(gid) != 0 || setuid(uid) != 0) {
      _exit(255);
    }
    _exit(body());
  }
  int status = 0;
  if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status) == 255 ? -1 : WEXITSTATUS(status);
}

// 0 if `path` opens with `flags` as that user, else the errno.
int OpenAs(uid_t uid, const std::string& path, int flags) {
  return AsUser(uid, uid, {}, [&] {
    int fd = open(path.c_str(), flags);
    if (fd < 0) return errno;
    char byte;
    int result = (flags & O_ACCMODE) == O_RDONLY && read(fd, &byte, 1) != 1 ? EIO : 0;
    close(fd);
    return result;
  });
}

bool CreateFile(const std::string& path, mode_t mode, const std::string& data = "data") {
  int fd = open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC, mode);
  if (fd < 0) return false;
  bool ok = write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size());
  return close(fd) == 0 && ok;
}

// One cluster and one mount for the suite; each test works in its own directory.
class PosixAclTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!CanMount() || !HaveAclTools()) return;
    cluster_ = new TestCluster(1, 1 << 20);
    ASSERT_TRUE(cluster_->Start());
    // Other users must reach the mount point to be checked against ACLs at all.
    ASSERT_EQ(chmod(cluster_->root().c_str(), 0711), 0);
    mount_ = cluster_->FuseMount("a");
    ASSERT_FALSE(mount_.empty());
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }
  void SetUp() override {
    if (!CanMount()) GTEST_SKIP() << "needs root and /dev/fuse";
    if (!HaveAclTools()) GTEST_SKIP() << "needs setfacl and getfacl (package acl)";
    ASSERT_NE(cluster_, nullptr);
    old_umask_ = umask(022);
    dir_ = mount_ + "/" + ::testing::UnitTest::GetInstance()->current_test_info()->name();
    ASSERT_EQ(mkdir(dir_.c_str(), 0755), 0) << strerror(errno);
  }
  void TearDown() override { umask(old_umask_); }
  std::string P(const std::string& name) const { return dir_ + "/" + name; }

  static TestCluster* cluster_;
  static std::string mount_;
  std::string dir_;
  mode_t old_umask_ = 022;
};

TestCluster* PosixAclTest::cluster_ = nullptr;
std::string PosixAclTest::mount_;

TEST_F(PosixAclTest, SetfaclNamedUserShowsInGetfaclAndTheModeGroupBitsAreTheMask) {
  ASSERT_TRUE(CreateFile(P("f"), 0644));
  ASSERT_EQ(Shell("setfacl -m u:1234:rwx " + P("f")), 0);
  std::string acl = Getfacl(P("f"));
  EXPECT_NE(acl.find("user:1234:rwx"), std::string::npos) << acl;
  EXPECT_NE(acl.find("mask::rwx"), std::string::npos) << acl;
  EXPECT_EQ(ModeOf(P("f")), 0674u);  // group bits show the mask
  // Removing every extended entry leaves a plain mode again.
  ASSERT_EQ(Shell("setfacl -b " + P("f")), 0);
  EXPECT_EQ(Getfacl(P("f")).find("1234"), std::string::npos);
  EXPECT_EQ(ModeOf(P("f")), 0644u);
}

TEST_F(PosixAclTest, ChmodOnAFileWithAnAclRewritesTheMask) {
  ASSERT_TRUE(CreateFile(P("f"), 0644));
  ASSERT_EQ(Shell("setfacl -m u:1234:rwx " + P("f")), 0);
  ASSERT_EQ(chmod(P("f").c_str(), 0600), 0);
  EXPECT_EQ(ModeOf(P("f")), 0600u);
  std::string acl = Getfacl(P("f"));
  EXPECT_NE(acl.find("mask::---"), std::string::npos) << acl;
  EXPECT_NE(acl.find("other::---"), std::string::npos) << acl;
  EXPECT_NE(acl.find("user:1234:rwx"), std::string::npos) << acl;  // masked, not dropped
  // The mask now denies the named user.
  EXPECT_EQ(OpenAs(kGranted, P("f"), O_RDONLY), EACCES);
}

TEST_F(PosixAclTest, NewFilesAndDirectoriesInheritTheDefaultAclAndIgnoreTheUmask) {
  ASSERT_EQ(mkdir(P("d").c_str(), 0755), 0);
  ASSERT_EQ(Shell("setfacl -d -m u:1234:rwx " + P("d")), 0);
  std::string parent_default = Getfacl(P("d"), /*default_acl=*/true);
  ASSERT_NE(parent_default.find("user:1234:rwx"), std::string::npos) << parent_default;

  umask(077);  // would leave 0600 and 0700; a default ACL replaces the umask
  ASSERT_TRUE(CreateFile(P("d/f"), 0666));
  ASSERT_EQ(mkdir(P("d/sub").c_str(), 0777), 0);
  umask(022);

  // default user::rwx user:1234:rwx group::r-x mask::rwx other::r-x, cut by 0666
  EXPECT_EQ(ModeOf(P("d/f")), 0664u);
  std::string file_acl = Getfacl(P("d/f"));
  EXPECT_NE(file_acl.find("user:1234:rwx"), std::string::npos) << file_acl;
  EXPECT_NE(file_acl.find("mask::rw-"), std::string::npos) << file_acl;
  EXPECT_EQ(Getfacl(P("d/f"), true), "") << "files take no default ACL";

  EXPECT_EQ(ModeOf(P("d/sub")), 0775u);
  std::string sub_acl = Getfacl(P("d/sub"));
  EXPECT_NE(sub_acl.find("user:1234:rwx"), std::string::npos) << sub_acl;
  EXPECT_NE(sub_acl.find("mask::rwx"), std::string::npos) << sub_acl;
  EXPECT_EQ(Getfacl(P("d/sub"), true), parent_default);

  // The granted user may write the new file; through the ACL, not the mode.
  EXPECT_EQ(OpenAs(kGranted, P("d/f"), O_WRONLY), 0);
  EXPECT_EQ(OpenAs(kStranger, P("d/f"), O_WRONLY), EACCES);
}

TEST_F(PosixAclTest, TheKernelEnforcesAclEntries) {
  ASSERT_TRUE(CreateFile(P("f"), 0600, "secret"));
  EXPECT_EQ(OpenAs(kGranted, P("f"), O_RDONLY), EACCES);
  ASSERT_EQ(Shell("setfacl -m u:1234:r " + P("f")), 0);
  EXPECT_EQ(OpenAs(kGranted, P("f"), O_RDONLY), 0);
  EXPECT_EQ(OpenAs(kGranted, P("f"), O_WRONLY), EACCES);  // granted read only
  EXPECT_EQ(OpenAs(kStranger, P("f"), O_RDONLY), EACCES);
  // Taking the entry away takes the access away.
  ASSERT_EQ(Shell("setfacl -x u:1234 " + P("f")), 0);
  EXPECT_EQ(OpenAs(kGranted, P("f"), O_RDONLY), EACCES);
}

TEST_F(PosixAclTest, SettingAnAclClearsSetgidWhenTheOwnerIsNotInTheGroup) {
  for (const char* name : {"outside", "member"}) {
    ASSERT_TRUE(CreateFile(P(name), 0755));
    ASSERT_EQ(chown(P(name).c_str(), kGranted, kProjectGroup), 0);
    ASSERT_EQ(chmod(P(name).c_str(), 02755), 0);
  }
  auto setfacl_as = [&](const std::vector<gid_t>& groups, const std::string& path) {
    return AsUser(kGranted, kGranted, groups, [&] {
      execlp("setfacl", "setfacl", "-m", "u:99:r", path.c_str(), static_cast<char*>(nullptr));
      return 127;
    });
  };
  // The owner, not in the file's group: the setgid bit goes.
  ASSERT_EQ(setfacl_as({}, P("outside")), 0);
  EXPECT_EQ(ModeOf(P("outside")), 0755u);
  // The owner, in the file's group through a supplementary group: it stays.
  ASSERT_EQ(setfacl_as({kProjectGroup}, P("member")), 0);
  EXPECT_EQ(ModeOf(P("member")), 02755u);
  EXPECT_NE(Getfacl(P("member")).find("user:99:r--"), std::string::npos);
}

}  // namespace
}  // namespace sealfs::testing
