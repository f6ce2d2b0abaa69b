// Tenants on real processes: a session reaches nothing of another volume
// (metadata server and data servers both refuse), tokens and capabilities
// are checked, quotas hold under concurrent writers.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <set>
#include <thread>

#include "sealfs/rpc/chain_table.h"
#include "sealfs/rpc/credentials.h"
#include "tenant_util.h"
#include "test_cluster.h"

namespace sealfs::testing {
namespace {

using namespace std::chrono_literals;

// Every metadata request a client can make that names an inode, with `ino`
// in the named slot; `mine` is a directory and `my_file` a file of the
// caller's own volume (for the other slot of two-inode requests).
std::vector<std::pair<std::string, std::function<Status(uint64_t)>>> InodeRequests(
    client::Client& c, uint64_t mine, uint64_t my_file) {
  using namespace rpc::meta;
  std::vector<std::pair<std::string, std::function<Status(uint64_t)>>> requests;
  auto add = [&requests](std::string name, std::function<Status(uint64_t)> f) {
    requests.emplace_back(std::move(name), std::move(f));
  };
  add("lookup", [&c](uint64_t ino) {
    pb::LookupRequest r;
    r.set_parent(ino);
    r.set_name("secret");
    pb::LookupResponse out;
    return c.Meta(kLookup, r, &out);
  });
  add("getattr", [&c](uint64_t ino) {
    pb::GetattrRequest r;
    r.set_ino(ino);
    pb::GetattrResponse out;
    return c.Meta(kGetattr, r, &out);
  });
  add("chmod", [&c](uint64_t ino) {
    pb::SetattrRequest r;
    r.set_ino(ino);
    r.set_valid(pb::SETATTR_MODE);
    r.set_mode(0777);
    pb::SetattrResponse out;
    return c.Meta(kSetattr, r, &out);
  });
  add("truncate", [&c](uint64_t ino) {
    pb::SetattrRequest r;
    r.set_ino(ino);
    r.set_valid(pb::SETATTR_SIZE);
    pb::SetattrResponse out;
    return c.Meta(kSetattr, r, &out);
  });
  add("mknod", [&c](uint64_t ino) {
    pb::MknodRequest r;
    r.set_parent(ino);
    r.set_name("planted");
    r.set_mode(S_IFREG | 0644);
    pb::MknodResponse out;
    return c.Meta(kMknod, r, &out);
  });
  add("mkdir", [&c](uint64_t ino) {
    pb::MkdirRequest r;
    r.set_parent(ino);
    r.set_name("planted-dir");
    r.set_mode(0755);
    pb::MkdirResponse out;
    return c.Meta(kMkdir, r, &out);
  });
  add("symlink", [&c](uint64_t ino) {
    pb::SymlinkRequest r;
    r.set_parent(ino);
    r.set_name("planted-link");
    r.set_target("/x");
    pb::SymlinkResponse out;
    return c.Meta(kSymlink, r, &out);
  });
  add("unlink", [&c](uint64_t ino) {
    pb::UnlinkRequest r;
    r.set_parent(ino);
    r.set_name("secret");
    pb::UnlinkResponse out;
    return c.Meta(kUnlink, r, &out);
  });
  add("rmdir", [&c](uint64_t ino) {
    pb::RmdirRequest r;
    r.set_parent(ino);
    r.set_name("d");
    pb::RmdirResponse out;
    return c.Meta(kRmdir, r, &out);
  });
  add("rename out", [&c, mine](uint64_t ino) {
    pb::RenameRequest r;
    r.set_parent(ino);
    r.set_name("secret");
    r.set_new_parent(mine);
    r.set_new_name("stolen");
    pb::RenameResponse out;
    return c.Meta(kRename, r, &out);
  });
  add("rename in", [&c, mine](uint64_t ino) {
    pb::RenameRequest r;
    r.set_parent(mine);
    r.set_name("mine");
    r.set_new_parent(ino);
    r.set_new_name("planted");
    pb::RenameResponse out;
    return c.Meta(kRename, r, &out);
  });
  add("link out", [&c, mine](uint64_t ino) {
    pb::LinkRequest r;
    r.set_ino(ino);
    r.set_new_parent(mine);
    r.set_new_name("stolen-link");
    pb::LinkResponse out;
    return c.Meta(kLink, r, &out);
  });
  add("link in", [&c, my_file](uint64_t ino) {
    pb::LinkRequest r;
    r.set_ino(my_file);
    r.set_new_parent(ino);
    r.set_new_name("planted-link");
    pb::LinkResponse out;
    return c.Meta(kLink, r, &out);
  });
  add("readlink", [&c](uint64_t ino) {
    pb::ReadlinkRequest r;
    r.set_ino(ino);
    pb::ReadlinkResponse out;
    return c.Meta(kReadlink, r, &out);
  });
  add("readdir", [&c](uint64_t ino) {
    pb::ReaddirRequest r;
    r.set_ino(ino);
    r.set_with_attrs(true);
    pb::ReaddirResponse out;
    return c.Meta(kReaddir, r, &out);
  });
  add("statfs", [&c](uint64_t ino) {
    pb::StatfsRequest r;
    r.set_ino(ino);
    pb::StatfsResponse out;
    return c.Meta(kStatfs, r, &out);
  });
  add("setxattr", [&c](uint64_t ino) {
    pb::SetxattrRequest r;
    r.set_ino(ino);
    r.set_name("user.planted");
    r.set_value("x");
    pb::SetxattrResponse out;
    return c.Meta(kSetxattr, r, &out);
  });
  add("getxattr", [&c](uint64_t ino) {
    pb::GetxattrRequest r;
    r.set_ino(ino);
    r.set_name("user.k");
    pb::GetxattrResponse out;
    return c.Meta(kGetxattr, r, &out);
  });
  add("listxattr", [&c](uint64_t ino) {
    pb::ListxattrRequest r;
    r.set_ino(ino);
    pb::ListxattrResponse out;
    return c.Meta(kListxattr, r, &out);
  });
  add("removexattr", [&c](uint64_t ino) {
    pb::RemovexattrRequest r;
    r.set_ino(ino);
    r.set_name("user.k");
    pb::RemovexattrResponse out;
    return c.Meta(kRemovexattr, r, &out);
  });
  add("open", [&c](uint64_t ino) {
    pb::OpenRequest r;
    r.set_ino(ino);
    r.set_write(true);
    pb::OpenResponse out;
    return c.Meta(kOpen, r, &out);
  });
  add("close", [&c](uint64_t ino) {
    pb::CloseRequest r;
    r.set_ino(ino);
    pb::CloseResponse out;
    return c.Meta(kClose, r, &out);
  });
  add("commit write", [&c](uint64_t ino) {
    pb::CommitWriteRequest r;
    r.set_ino(ino);
    r.set_size(1u << 30);
    pb::CommitWriteResponse out;
    return c.Meta(kCommitWrite, r, &out);
  });
  add("reserve", [&c](uint64_t ino) {
    pb::ReserveRequest r;
    r.set_ino(ino);
    r.set_need_end(1 << 20);
    r.set_write(true);
    pb::ReserveResponse out;
    return c.Meta(kReserve, r, &out);
  });
  add("read capability", [&c](uint64_t ino) {
    pb::ReserveRequest r;
    r.set_ino(ino);
    pb::ReserveResponse out;
    return c.Meta(kReserve, r, &out);
  });
  add("fallocate", [&c](uint64_t ino) {
    pb::FallocateRequest r;
    r.set_ino(ino);
    r.set_length(1 << 20);
    pb::FallocateResponse out;
    return c.Meta(kFallocate, r, &out);
  });
  return requests;
}

TEST(Tenants, ASessionReachesNothingOfAnotherVolume) {
  TestCluster cluster(2);
  ASSERT_TRUE(cluster.Start());
  auto admin = cluster.Admin();
  ASSERT_TRUE(admin.ok()) << admin.status().ToString();
  std::string token_a = MakeVolume(**admin, "tenant-a/vol", "tenant-a");
  std::string token_b = MakeVolume(**admin, "tenant-b/vol", "tenant-b");
  auto a = cluster.MountWithToken("tenant-a/vol", token_a);
  auto b = cluster.MountWithToken("tenant-b/vol", token_b);
  ASSERT_TRUE(a.ok() && b.ok());

  // B: a directory holding a file with data, a symlink and an xattr.
  VolumeTree tree_b = BuildTree(**b, "secret data of tenant b");
  // A: a directory and a file of its own.
  VolumeTree tree_a = BuildTree(**a, "data of tenant a");
  const std::string before = DescribeVolume(**b);

  // Every inode id from B's root to past its last one, as an attacker would
  // guess them; A's own are skipped.
  std::set<uint64_t> own = {tree_a.root, tree_a.dir, tree_a.file, tree_a.link};
  std::set<uint64_t> known_b = {tree_b.root, tree_b.dir, tree_b.file, tree_b.link};
  uint64_t low = std::min(tree_a.root, tree_b.root) - 4;
  uint64_t high = std::max(tree_a.link, tree_b.link) + 8;
  auto requests = InodeRequests(**a, tree_a.dir, tree_a.file);
  int refused = 0;
  for (uint64_t guess = low; guess <= high; ++guess) {
    if (own.contains(guess)) continue;
    for (auto& [name, request] : requests) {
      Status status = request(guess);
      SCOPED_TRACE(name + " of inode " + std::to_string(guess));
      EXPECT_FALSE(status.ok());
      if (known_b.contains(guess)) {
        EXPECT_EQ(status.code(), EACCES) << status.ToString();
      } else {
        EXPECT_TRUE(status.code() == EACCES || status.code() == ENOENT) << status.ToString();
      }
      refused += !status.ok();
    }
  }
  EXPECT_GT(refused, 100);

  // Admin and server methods are refused to a session.
  for (const auto& [name, status] : AdminRequests(**a, "tenant-b/vol")) {
    SCOPED_TRACE(name);
    EXPECT_EQ(status.code(), EACCES) << status.ToString();
  }

  // Data servers: B's first chunk, asked with no capability, with A's
  // capability, with A's capability altered to name B's file, and as a
  // server without the cluster key.
  DataRoute route = RouteToChunk(**a, **b, tree_b.file, 0);
  auto cap_a = (*a)->Capability(tree_a.file, true, 4096);
  ASSERT_TRUE(cap_a.ok()) << cap_a.status().ToString();
  pb::Capability forged = *cap_a;
  forged.set_ino(tree_b.file);
  for (const auto& [name, status] : DataRequests(route, tree_b.file, *cap_a, forged)) {
    SCOPED_TRACE(name);
    EXPECT_EQ(status.code(), EACCES) << status.ToString();
  }

  // A's own capability for its own chunk, sent to a chain that does not
  // hold that chunk: refused (data there would escape quota and removal).
  DataRoute other_chain = RouteToChunk(**a, **a, tree_a.file, 1);
  DataRoute own_chain = RouteToChunk(**a, **a, tree_a.file, 0);
  ASSERT_NE(other_chain.chain.id(), own_chain.chain.id());
  other_chain.index = 0;
  Status misplaced = WriteChunk(other_chain, tree_a.file, *cap_a, 0, "x");
  EXPECT_EQ(misplaced.code(), EACCES) << misplaced.ToString();
  EXPECT_TRUE(WriteChunk(own_chain, tree_a.file, *cap_a, 0, "d").ok());

  // Nothing of B changed.
  EXPECT_EQ(DescribeVolume(**b), before);
  EXPECT_EQ(ReadAll(**b, tree_b.file), "secret data of tenant b");
}

TEST(Tenants, ForgedAlteredAndExpiredCapabilitiesAreRefused) {
  TestCluster cluster(1);
  cluster.set_meta_args({"--capability-ttl", "2"});
  ASSERT_TRUE(cluster.Start());
  auto client = cluster.MountWithToken("default", cluster.token());
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  VolumeTree tree = BuildTree(**client, "some bytes");
  DataRoute route = RouteToChunk(**client, **client, tree.file, 0);
  auto cap = (*client)->Capability(tree.file, true, 4096);
  ASSERT_TRUE(cap.ok());
  // The genuine capability reads.
  std::string data;
  ASSERT_TRUE(ReadChunk(route, tree.file, *cap, &data).ok());
  EXPECT_EQ(data, "some bytes");
  // Widened (a larger write limit, a later expiry, other rights): refused.
  pb::Capability wider = *cap;
  wider.set_write_limit(uint64_t{1} << 40);
  EXPECT_EQ(WriteChunk(route, tree.file, wider, 1u << 30, "x").code(), EACCES);
  pb::Capability longer = *cap;
  longer.set_expires_ns(cap->expires_ns() + 3600'000'000'000);
  EXPECT_EQ(ReadChunk(route, tree.file, longer, &data).code(), EACCES);
  // Signed with another key: refused.
  pb::Capability other_key = *cap;
  auth::SignCapability(&other_key, auth::RandomSecret());
  EXPECT_EQ(ReadChunk(route, tree.file, other_key, &data).code(), EACCES);
  // A genuine one past its write limit: refused (in the chunk holding the limit).
  DataRoute past = RouteToChunk(**client, **client, tree.file,
                                static_cast<uint32_t>(cap->write_limit() / route.chunk_size));
  Status beyond = WriteChunk(past, tree.file, *cap, cap->write_limit(), "x");
  EXPECT_EQ(beyond.code(), EACCES) << beyond.ToString();
  EXPECT_TRUE(WriteChunk(past, tree.file, *cap, cap->write_limit() - 1, "x").ok());
  // Expired: refused, with the reason.
  std::this_thread::sleep_for(2500ms);
  Status expired = ReadChunk(route, tree.file, *cap, &data);
  EXPECT_EQ(expired.code(), EACCES);
  EXPECT_NE(expired.message().find("expired"), std::string::npos) << expired.ToString();
  // The client renews on its own and goes on.
  EXPECT_EQ(ReadAll(**client, tree.file).substr(0, 10), "some bytes");
}

TEST(Tenants, WrongTokensFailTheMountAndRotationStopsNewMounts) {
  TestCluster cluster(1);
  ASSERT_TRUE(cluster.Start());
  auto admin = cluster.Admin();
  ASSERT_TRUE(admin.ok());
  std::string token = MakeVolume(**admin, "t/v", "t");
  auto wrong = cluster.MountWithToken("t/v", auth::RandomSecret());
  EXPECT_EQ(wrong.status().code(), EACCES);
  EXPECT_NE(wrong.status().message().find("wrong token"), std::string::npos);
  auto none = cluster.MountWithToken("t/v", "");
  EXPECT_EQ(none.status().code(), EACCES);
  // Another volume's token opens only that volume.
  EXPECT_EQ(cluster.MountWithToken("t/v", cluster.token()).status().code(), EACCES);
  auto mounted = cluster.MountWithToken("t/v", token);
  ASSERT_TRUE(mounted.ok());

  pb::VolumeRotateTokenRequest rotate;
  rotate.set_name("t/v");
  pb::VolumeRotateTokenResponse rotated;
  ASSERT_TRUE((*admin)->Meta(rpc::meta::kVolumeRotateToken, rotate, &rotated).ok());
  EXPECT_EQ(cluster.MountWithToken("t/v", token).status().code(), EACCES);
  EXPECT_TRUE(cluster.MountWithToken("t/v", rotated.token()).ok());
  // A session made with the old token goes on (rotation stops new mounts).
  VolumeTree tree = BuildTree(**mounted, "still mounted");
  EXPECT_EQ(ReadAll(**mounted, tree.file), "still mounted");
}

TEST(Tenants, VolumeNamesAreValidatedAndDeleteWaitsForMountsUnlessForced) {
  TestCluster cluster(1);
  ASSERT_TRUE(cluster.Start());
  auto admin = cluster.Admin();
  ASSERT_TRUE(admin.ok());
  for (std::string bad : {"", ".", "..", "a//b", "a/./b", "a/../b", "/a", "a/", "x y"}) {
    pb::VolumeCreateRequest request;
    request.set_name(bad);
    request.set_tenant("t");
    pb::VolumeCreateResponse response;
    EXPECT_EQ((*admin)->Meta(rpc::meta::kVolumeCreate, request, &response).code(), EINVAL)
        << "'" << bad << "'";
  }
  std::string token = MakeVolume(**admin, "t/busy", "t");
  auto mounted = cluster.MountWithToken("t/busy", token);
  ASSERT_TRUE(mounted.ok());
  VolumeTree tree = BuildTree(**mounted, "in a volume about to go");
  pb::VolumeDeleteRequest remove;
  remove.set_name("t/busy");
  pb::VolumeDeleteResponse removed;
  EXPECT_EQ((*admin)->Meta(rpc::meta::kVolumeDelete, remove, &removed).code(), EBUSY);
  remove.set_force(true);
  ASSERT_TRUE((*admin)->Meta(rpc::meta::kVolumeDelete, remove, &removed).ok());
  // The fenced mount's next request fails: its session ended and its token
  // names no volume any more.
  pb::GetattrRequest getattr;
  getattr.set_ino(tree.file);
  pb::GetattrResponse attr;
  EXPECT_FALSE((*mounted)->Meta(rpc::meta::kGetattr, getattr, &attr).ok());
}

}  // namespace
}  // namespace sealfs::testing
