// End-to-end: the mount helper (deploy/mount.sealfs) as mount(8) and fstab
// use it: mounting, remounting read-only and back, the usual atime options.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "e2e_util.h"
#include "test_cluster.h"

namespace sealfs::testing {
namespace {

namespace fs = std::filesystem;

// Runs deploy/mount.sealfs the way mount(8) runs its helpers, with sealfs-fuse
// on the PATH, on a mount point it creates; returns the wait status.
int RunMountHelper(const std::string& source, const std::string& mountpoint,
                   const std::string& options) {
  fs::create_directories(mountpoint);
  std::string bin = fs::path(SEALFS_FUSE_BIN).parent_path().string();
  std::string command = "PATH=" + bin + ":$PATH sh " + std::string(SEALFS_SOURCE_DIR) +
                        "/deploy/mount.sealfs " + source + " " + mountpoint + " -o " + options;
  return std::system(command.c_str());
}

// Runs mount(8) with deploy/mount.sealfs installed as its mount.fuse.sealfs:
// in a private mount namespace a directory holding only the helper covers
// /sbin, so the machine's own /sbin is never touched. Changes to a mount's
// superblock (ro/rw) are seen from every namespace. Returns the wait status.
int RunMountCommand(TestCluster& cluster, const std::string& arguments) {
  fs::path helpers = cluster.root() + "/sbin";
  fs::create_directories(helpers);
  for (const char* name : {"mount.sealfs", "mount.fuse.sealfs"}) {
    fs::copy_file(std::string(SEALFS_SOURCE_DIR) + "/deploy/mount.sealfs", helpers / name,
                  fs::copy_options::overwrite_existing);
    fs::permissions(helpers / name, fs::perms::owner_all | fs::perms::group_read |
                                        fs::perms::group_exec | fs::perms::others_read |
                                        fs::perms::others_exec);
  }
  std::string bin = fs::path(SEALFS_FUSE_BIN).parent_path().string();
  std::string command = "unshare --mount --propagation private sh -c 'mount --bind " +
                        helpers.string() + " \"$(readlink -f /sbin)\" && PATH=" + bin +
                        ":$PATH mount " + arguments + "'";
  return std::system(command.c_str());
}

// The per-mount options of a mount point, from /proc/self/mountinfo.
std::string MountOptionsOf(const std::string& mountpoint) {
  std::ifstream mountinfo("/proc/self/mountinfo");
  std::string line;
  while (std::getline(mountinfo, line)) {
    std::istringstream fields(line);
    std::string id, parent, device, root, point, options;
    if (fields >> id >> parent >> device >> root >> point >> options && point == mountpoint) {
      return options;
    }
  }
  return "";
}

// Lazily unmounts a mount point when the test ends, however it ends.
struct UnmountAtEnd {
  std::string mountpoint;
  ~UnmountAtEnd() { TestCluster::Unmount(mountpoint); }
};

TEST(FuseMountHelper, MountSealfsHelperMounts) {
  if (!CanMount()) GTEST_SKIP() << "needs root and /dev/fuse";
  TestCluster cluster(1);
  ASSERT_TRUE(cluster.Start());
  std::string mountpoint = cluster.root() + "/helper";
  ASSERT_EQ(RunMountHelper(
                cluster.meta_address() + "/default", mountpoint,
                "rw,allow_other,default_permissions,_netdev,token_file=" + cluster.token_file()),
            0);
  EXPECT_TRUE(WriteFile(mountpoint + "/x", "through the helper"));
  EXPECT_EQ(ReadFile(mountpoint + "/x"), "through the helper");
  TestCluster::Unmount(mountpoint);
  // A missing volume fails the mount with a reason, leaving nothing behind.
  EXPECT_NE(RunMountHelper(cluster.meta_address() + "/nope", mountpoint,
                           "rw,token_file=" + cluster.token_file() + " 2>/dev/null"),
            0);
}

TEST(FuseMountHelper, RemountReadOnlyAndBack) {
  if (!CanMount()) GTEST_SKIP() << "needs root and /dev/fuse";
  TestCluster cluster(1);
  ASSERT_TRUE(cluster.Start());
  std::string mountpoint = cluster.root() + "/helper";
  ASSERT_EQ(RunMountHelper(cluster.meta_address() + "/default", mountpoint,
                           "rw,allow_other,default_permissions,token_file=" + cluster.token_file()),
            0);
  UnmountAtEnd unmount{mountpoint};
  ASSERT_TRUE(WriteFile(mountpoint + "/before", "written"));

  ASSERT_EQ(RunMountCommand(cluster, "-o remount,ro " + mountpoint), 0);
  errno = 0;
  EXPECT_EQ(open((mountpoint + "/new").c_str(), O_CREAT | O_WRONLY, 0644), -1);
  EXPECT_EQ(errno, EROFS);
  errno = 0;
  EXPECT_EQ(open((mountpoint + "/before").c_str(), O_WRONLY), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(ReadFile(mountpoint + "/before"), "written");

  ASSERT_EQ(RunMountCommand(cluster, "-o remount,rw " + mountpoint), 0);
  EXPECT_TRUE(WriteFile(mountpoint + "/after", "writable again"));
  EXPECT_EQ(ReadFile(mountpoint + "/after"), "writable again");
}

TEST(FuseMountHelper, AtimeOptionsAreAccepted) {
  if (!CanMount()) GTEST_SKIP() << "needs root and /dev/fuse";
  TestCluster cluster(1);
  ASSERT_TRUE(cluster.Start());
  int index = 0;
  for (std::string atime : {"relatime", "noatime", "strictatime", "atime,nodiratime,lazytime"}) {
    SCOPED_TRACE(atime);
    std::string mountpoint = cluster.root() + "/atime" + std::to_string(index++);
    ASSERT_EQ(RunMountHelper(cluster.meta_address() + "/default", mountpoint,
                             "allow_other,default_permissions,token_file=" + cluster.token_file() +
                                 "," + atime),
              0);
    UnmountAtEnd unmount{mountpoint};
    EXPECT_TRUE(WriteFile(mountpoint + "/f", atime));
    EXPECT_EQ(ReadFile(mountpoint + "/f"), atime);
    // noatime is a flag the kernel keeps for the mount.
    if (atime == "noatime") {
      EXPECT_NE(MountOptionsOf(mountpoint).find("noatime"), std::string::npos);
    }
  }
}

}  // namespace
}  // namespace sealfs::testing
