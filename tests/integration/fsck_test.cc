// `sealfs fsck` against a real metadata server: damage planted in its store
// while it is down is reported after it restarts, `--repair` mends it while
// the server runs, and the namespace is clean and usable afterwards.
#include <gtest/gtest.h>

#include "metadata/store_damage.h"
#include "sealfs/rpc/methods.h"
#include "test_cluster.h"

namespace sealfs::testing {
namespace {

uint64_t Make(client::Client& client, uint64_t parent, const std::string& name, bool dir) {
  if (dir) {
    pb::MkdirRequest request;
    request.set_parent(parent);
    request.set_name(name);
    request.set_mode(0755);
    pb::MkdirResponse response;
    Status status = client.Meta(rpc::meta::kMkdir, request, &response);
    EXPECT_TRUE(status.ok()) << status.ToString();
    return response.attr().ino();
  }
  pb::MknodRequest request;
  request.set_parent(parent);
  request.set_name(name);
  request.set_mode(S_IFREG | 0644);
  pb::MknodResponse response;
  Status status = client.Meta(rpc::meta::kMknod, request, &response);
  EXPECT_TRUE(status.ok()) << status.ToString();
  return response.attr().ino();
}

Result<pb::Attr> Lookup(client::Client& client, uint64_t parent, const std::string& name) {
  pb::LookupRequest request;
  request.set_parent(parent);
  request.set_name(name);
  pb::LookupResponse response;
  Status status = client.Meta(rpc::meta::kLookup, request, &response);
  if (!status.ok()) return status;
  return response.attr();
}

TEST(Fsck, FindsPlantedDamageAndRepairMendsItOnARunningServer) {
  TestCluster cluster(1);
  ASSERT_TRUE(cluster.Start());
  std::string fsck = "--meta " + cluster.meta_address() + " --credentials " +
                     cluster.admin_credential_file() + " fsck";
  uint64_t root = 0, docs = 0, counted = 0, lost = 0;
  {
    auto mount = cluster.Mount();
    ASSERT_TRUE(mount.ok()) << mount.status().ToString();
    root = (*mount)->root_ino();
    docs = Make(**mount, root, "docs", true);
    counted = Make(**mount, docs, "counted.txt", false);
    lost = Make(**mount, docs, "lost.txt", false);
    for (int i = 0; i < 20; ++i) Make(**mount, docs, "file" + std::to_string(i), false);
  }
  CliRun clean = RunCli(fsck);
  EXPECT_TRUE(clean.ExitedWith(0)) << clean.output;
  EXPECT_NE(clean.output.find("2 directories, 22 files"), std::string::npos) << clean.output;

  cluster.KillMeta();
  {
    metadata::StoreDamage damage(cluster.root() + "/meta");
    damage.AddEntry(docs, "ghost", counted + 5000, S_IFREG, 900);
    damage.SetLinkCount(counted, 3);
    damage.RemoveEntry(docs, "lost.txt");
  }
  ASSERT_TRUE(cluster.StartMeta());

  CliRun found = RunCli(fsck);
  EXPECT_TRUE(found.ExitedWith(4)) << found.output;
  EXPECT_NE(found.output.find("found 3 problem(s)"), std::string::npos) << found.output;
  for (const char* problem : {"dangling-entry", "link-count", "unreachable"}) {
    EXPECT_NE(found.output.find(problem), std::string::npos) << problem << "\n" << found.output;
  }
  EXPECT_NE(found.output.find("'ghost'"), std::string::npos) << found.output;

  CliRun repaired = RunCli(fsck + " --repair");
  EXPECT_TRUE(repaired.ExitedWith(1)) << repaired.output;
  EXPECT_NE(repaired.output.find("repaired: the namespace is clean now"), std::string::npos)
      << repaired.output;
  CliRun again = RunCli(fsck);
  EXPECT_TRUE(again.ExitedWith(0)) << again.output;

  // What was mended is what a mount sees.
  auto mount = cluster.Mount();
  ASSERT_TRUE(mount.ok()) << mount.status().ToString();
  auto ghost = Lookup(**mount, docs, "ghost");
  EXPECT_EQ(ghost.status().code(), ENOENT);
  auto attr = Lookup(**mount, docs, "counted.txt");
  ASSERT_TRUE(attr.ok());
  EXPECT_EQ(attr->nlink(), 1u);
  auto lost_found = Lookup(**mount, root, "lost+found");
  ASSERT_TRUE(lost_found.ok()) << lost_found.status().ToString();
  auto relinked = Lookup(**mount, lost_found->ino(), "#" + std::to_string(lost));
  ASSERT_TRUE(relinked.ok()) << relinked.status().ToString();
  EXPECT_EQ(relinked->ino(), lost);
}

TEST(Fsck, NeedsTheAdminCredential) {
  TestCluster cluster(1);
  ASSERT_TRUE(cluster.Start());
  CliRun refused = RunCli("--meta " + cluster.meta_address() + " --credentials " +
                          cluster.token_file() + " fsck");
  EXPECT_FALSE(refused.ExitedWith(0));
  EXPECT_FALSE(refused.ExitedWith(4));
}

}  // namespace
}  // namespace sealfs::testing
