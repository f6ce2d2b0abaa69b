// The namespace checker on facts, and fsck on a real store with damage
// planted on disk: what it finds, what --repair mends, and that a repair
// whose damage changed meanwhile does nothing.
#include "sealfs/metadata/fsck.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "meta.pb.h"
#include "sealfs/metadata/meta_store.h"
#include "store_damage.h"

namespace sealfs::metadata {
namespace {

std::multiset<Problem> Problems(const std::vector<Finding>& findings) {
  std::multiset<Problem> problems;
  for (const Finding& finding : findings) problems.insert(finding.problem);
  return problems;
}

// A volume root 100 with directory 101 ("d") holding file 102 ("f").
NamespaceFacts SmallTree() {
  NamespaceFacts facts;
  facts.volumes.push_back({1, "vol", 100});
  facts.inodes = {{100, S_IFDIR | 0755, 3, 100, 1},
                  {101, S_IFDIR | 0755, 2, 100, 1},
                  {102, S_IFREG | 0644, 1, 0, 1}};
  facts.entries = {{100, "d", 101, S_IFDIR, 3}, {101, "f", 102, S_IFREG, 3}};
  facts.index = {{100, 3, 101, S_IFDIR, "d"}, {101, 3, 102, S_IFREG, "f"}};
  return facts;
}

TEST(NamespaceCheck, ASoundTreeIsClean) {
  CheckSummary summary;
  EXPECT_TRUE(CheckNamespace(SmallTree(), &summary).empty());
  EXPECT_EQ(summary.volumes, 1u);
  EXPECT_EQ(summary.directories, 2u);
  EXPECT_EQ(summary.files, 1u);
  EXPECT_EQ(summary.entries, 2u);
}

TEST(NamespaceCheck, AnEntryNamingNoInodeIsDangling) {
  NamespaceFacts facts = SmallTree();
  facts.entries.push_back({101, "ghost", 999, S_IFREG, 4});
  facts.index.push_back({101, 4, 999, S_IFREG, "ghost"});
  auto findings = CheckNamespace(facts);
  ASSERT_EQ(findings.size(), 1u);
  EXPECT_EQ(findings[0].problem, Problem::kDanglingEntry);
  EXPECT_EQ(findings[0].name, "ghost");
  EXPECT_EQ(findings[0].ino, 999u);
  EXPECT_NE(Describe(findings[0]).find("does not exist"), std::string::npos);
}

TEST(NamespaceCheck, LinkCountsFollowNamesAndSubdirectories) {
  NamespaceFacts facts = SmallTree();
  facts.inodes[2].nlink = 2;  // the file has one name
  facts.inodes[0].nlink = 2;  // the root has one subdirectory: 3
  auto findings = CheckNamespace(facts);
  ASSERT_EQ(Problems(findings), (std::multiset<Problem>{Problem::kLinkCount, Problem::kLinkCount}));
  for (const Finding& finding : findings) {
    EXPECT_EQ(finding.expected, finding.ino == 102 ? 1u : 3u) << finding.ino;
  }
  // A second name makes two right.
  facts = SmallTree();
  facts.inodes[2].nlink = 2;
  facts.entries.push_back({100, "hard", 102, S_IFREG, 4});
  facts.index.push_back({100, 4, 102, S_IFREG, "hard"});
  EXPECT_TRUE(CheckNamespace(facts).empty());
}

TEST(NamespaceCheck, AnUnnamedFileIsUnreachableUnlessItIsAnOpenOrphan) {
  NamespaceFacts facts = SmallTree();
  facts.inodes.push_back({103, S_IFREG | 0644, 1, 0, 1});
  auto findings = CheckNamespace(facts);
  ASSERT_EQ(findings.size(), 1u);
  EXPECT_EQ(findings[0].problem, Problem::kUnreachable);
  EXPECT_EQ(findings[0].volume_id, 1u);

  facts.inodes.back().nlink = 0;
  facts.orphans.insert(103);
  CheckSummary summary;
  EXPECT_TRUE(CheckNamespace(facts, &summary).empty());
  EXPECT_EQ(summary.orphans, 1u);
  // An orphan record of a named file, and of one that is gone, are stray.
  facts.orphans.insert(102);
  facts.orphans.insert(555);
  EXPECT_EQ(Problems(CheckNamespace(facts)),
            (std::multiset<Problem>{Problem::kStrayOrphan, Problem::kStrayOrphan}));
}

TEST(NamespaceCheck, DirectoriesInACycleAreUnreachable) {
  NamespaceFacts facts = SmallTree();
  // 104 and 105 name each other and nothing else names them.
  facts.inodes.push_back({104, S_IFDIR | 0755, 3, 105, 1});
  facts.inodes.push_back({105, S_IFDIR | 0755, 3, 104, 1});
  facts.entries.push_back({104, "b", 105, S_IFDIR, 3});
  facts.entries.push_back({105, "a", 104, S_IFDIR, 3});
  facts.index.push_back({104, 3, 105, S_IFDIR, "b"});
  facts.index.push_back({105, 3, 104, S_IFDIR, "a"});
  EXPECT_EQ(Problems(CheckNamespace(facts)),
            (std::multiset<Problem>{Problem::kUnreachable, Problem::kUnreachable}));
}

TEST(NamespaceCheck, ADirectoryHasOneNameAndTheParentItRecords) {
  NamespaceFacts facts = SmallTree();
  facts.inodes.push_back({103, S_IFDIR | 0755, 2, 100, 1});
  facts.inodes[0].nlink = 4;
  facts.inodes[1].nlink = 3;
  facts.entries.push_back({100, "e", 103, S_IFDIR, 4});
  facts.entries.push_back({101, "e2", 103, S_IFDIR, 4});
  facts.index.push_back({100, 4, 103, S_IFDIR, "e"});
  facts.index.push_back({101, 4, 103, S_IFDIR, "e2"});
  auto findings = CheckNamespace(facts);
  ASSERT_EQ(findings.size(), 1u);
  EXPECT_EQ(findings[0].problem, Problem::kDirectoryNames);
  EXPECT_EQ(findings[0].name, "e2");  // the name in its recorded parent stays

  facts = SmallTree();
  facts.inodes[1].parent = 77;
  findings = CheckNamespace(facts);
  ASSERT_EQ(findings.size(), 1u);
  EXPECT_EQ(findings[0].problem, Problem::kDirectoryParent);
  EXPECT_EQ(findings[0].expected, 100u);
}

TEST(NamespaceCheck, ListingRecordsMatchEntries) {
  NamespaceFacts facts = SmallTree();
  facts.index.pop_back();                              // f is not listed
  facts.index.push_back({101, 9, 102, S_IFREG, "x"});  // x is listed but not there
  EXPECT_EQ(Problems(CheckNamespace(facts)),
            (std::multiset<Problem>{Problem::kMissingIndex, Problem::kStrayIndex}));
}

TEST(NamespaceCheck, AnXattrCountMustMatchTheAttributesStored) {
  NamespaceFacts facts = SmallTree();
  facts.inodes[2].xattrs = 2;  // the file counts two
  facts.xattrs[102] = 1;       // but one is stored
  facts.inodes[1].xattrs = 0;  // the directory counts none and has none
  facts.xattrs[100] = 3;       // the root does not count (an older record): not checked
  auto findings = CheckNamespace(facts);
  ASSERT_EQ(findings.size(), 1u);
  EXPECT_EQ(findings[0].problem, Problem::kXattrCount);
  EXPECT_EQ(findings[0].ino, 102u);
  EXPECT_EQ(findings[0].found, 2u);
  EXPECT_EQ(findings[0].expected, 1u);
  EXPECT_NE(Describe(findings[0]).find("extended attributes"), std::string::npos);
  facts.xattrs[102] = 2;
  EXPECT_TRUE(CheckNamespace(facts).empty());
}

TEST(NamespaceCheck, EntryTypeVolumeAndRootAreChecked) {
  NamespaceFacts facts = SmallTree();
  facts.entries[1].type = S_IFLNK;
  facts.index[1].type = S_IFLNK;
  facts.inodes[2].volume_id = 2;
  facts.volumes.push_back({3, "rootless", 300});
  EXPECT_EQ(Problems(CheckNamespace(facts)),
            (std::multiset<Problem>{Problem::kEntryType, Problem::kVolumeMismatch,
                                    Problem::kMissingRoot}));
}

class FsckStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/sealfs-fsck-test-XXXXXX";
    dir_ = mkdtemp(pattern);
    Open();
    auto volume = store_->CreateVolume("vol", 0, 0);
    ASSERT_TRUE(volume.ok()) << volume.status().ToString();
    root_ = volume->root_ino();
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  void Open() {
    MetaStoreOptions options;
    options.path = dir_ + "/db";
    auto opened = MetaStore::Open(options);
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    store_ = std::move(*opened);
  }
  uint64_t Make(uint64_t parent, const std::string& name, bool dir) {
    pb::Caller caller;
    auto inode = dir ? store_->Mkdir(parent, name, 0755, caller)
                     : store_->Mknod(parent, name, S_IFREG | 0644, 0, caller, {});
    EXPECT_TRUE(inode.ok()) << name << ": " << inode.status().ToString();
    return inode.ok() ? inode->attr().ino() : 0;
  }
  pb::FsckResponse Fsck(bool repair) {
    pb::FsckResponse response;
    Status status = RunFsck(*store_, repair, &response);
    EXPECT_TRUE(status.ok()) << status.ToString();
    return response;
  }
  std::multiset<std::string> ProblemNames(const pb::FsckResponse& response) {
    std::multiset<std::string> names;
    for (const auto& finding : response.found()) names.insert(finding.problem());
    return names;
  }
  std::set<std::string> Listing(uint64_t dir) {
    auto listed = store_->Readdir(dir, 0, 1000, false);
    EXPECT_TRUE(listed.ok()) << listed.status().ToString();
    std::set<std::string> names;
    if (listed.ok()) {
      for (const auto& entry : listed->entries()) {
        if (entry.name() != "." && entry.name() != "..") names.insert(entry.name());
      }
    }
    return names;
  }

  std::string dir_;
  std::unique_ptr<MetaStore> store_;
  uint64_t root_ = 0;
};

TEST_F(FsckStoreTest, AStoreMadeByItsOperationsIsClean) {
  uint64_t a = Make(root_, "a", true);
  uint64_t b = Make(a, "b", true);
  uint64_t f = Make(b, "f", false);
  ASSERT_TRUE(store_->Link(f, root_, "f-link").ok());
  ASSERT_TRUE(store_->Rename(a, "b", root_, "b2", 0, nullptr).ok());
  ASSERT_TRUE(store_->Unlink(root_, "f-link", nullptr).ok());
  Make(root_, "gone", false);
  ASSERT_TRUE(store_->Unlink(root_, "gone", nullptr).ok());
  pb::FsckResponse response = Fsck(false);
  EXPECT_EQ(response.found_count(), 0u) << response.DebugString();
  EXPECT_EQ(response.directories(), 3u);
  EXPECT_EQ(response.files(), 1u);
  EXPECT_EQ(response.entries(), 3u);
}

TEST_F(FsckStoreTest, PlantedDamageIsFoundAndRepairMendsIt) {
  uint64_t docs = Make(root_, "docs", true);
  uint64_t counted = Make(docs, "counted.txt", false);
  uint64_t lost = Make(docs, "lost.txt", false);
  Make(docs, "quiet.txt", false);
  uint64_t linked = Make(root_, "linked.txt", false);
  uint64_t a = Make(root_, "a", true);
  uint64_t b = Make(a, "b", true);
  store_.reset();
  {
    StoreDamage damage(dir_ + "/db");
    damage.AddEntry(docs, "ghost", counted + 1000, S_IFREG, 900);  // dangling
    damage.SetLinkCount(counted, 5);                               // wrong link count
    damage.RemoveEntry(docs, "lost.txt");                          // an unnamed file
    damage.RemoveIndexOf(docs, "quiet.txt");                       // readdir misses it
    damage.AddIndexOnly(docs, 901, counted, "phantom");            // readdir shows a ghost
    damage.AddOrphanRecord(linked);                                // a stray orphan record
    // a and b in a cycle: a's name moves under b.
    damage.RemoveEntry(root_, "a");
    damage.AddEntry(b, "a", a, S_IFDIR, 902);
    pb::Inode moved = damage.Inode(a);
    moved.mutable_attr()->set_parent(b);
    damage.PutInode(moved);
  }
  Open();
  pb::FsckResponse check = Fsck(false);
  EXPECT_EQ(
      ProblemNames(check),
      (std::multiset<std::string>{
          "dangling-entry", "link-count", "link-count", "link-count", "unreachable", "unreachable",
          "unreachable", "missing-listing-record", "stray-listing-record", "stray-orphan"}))
      << check.DebugString();
  // (link counts: counted.txt, the root that lost "a", and b that gained it)
  EXPECT_EQ(check.found_count(), 10u);
  // Checking changes nothing.
  EXPECT_EQ(Fsck(false).found_count(), 10u);

  pb::FsckResponse repair = Fsck(true);
  EXPECT_EQ(repair.remaining_count(), 0u) << repair.DebugString();
  // Each repair was made, or left to a later round because an earlier
  // repair of the same round changed what it saw.
  for (const auto& finding : repair.found()) {
    EXPECT_TRUE(finding.repaired() || finding.repair().find("changed since") == 0)
        << finding.description() << ": " << finding.repair();
  }
  EXPECT_EQ(Fsck(false).found_count(), 0u);

  EXPECT_EQ(Listing(docs), (std::set<std::string>{"counted.txt", "quiet.txt"}));
  EXPECT_EQ(store_->Getattr(counted)->attr().nlink(), 1u);
  // The lost file and the cycle's first directory go to lost+found; the
  // second directory stays inside the first, its name back in the first.
  auto lost_found = store_->Lookup(root_, "lost+found");
  ASSERT_TRUE(lost_found.ok());
  uint64_t found_ino = lost_found->attr().ino();
  EXPECT_EQ(Listing(found_ino),
            (std::set<std::string>{"#" + std::to_string(lost), "#" + std::to_string(a)}));
  EXPECT_EQ(Listing(a), (std::set<std::string>{"b"}));
  EXPECT_EQ(Listing(b), (std::set<std::string>{}));
  EXPECT_EQ(store_->Getattr(lost)->attr().nlink(), 1u);
  EXPECT_EQ(store_->Getattr(a)->attr().parent(), found_ino);
  EXPECT_EQ(store_->Getattr(found_ino)->attr().nlink(), 3u);
  EXPECT_EQ(store_->Getattr(b)->attr().nlink(), 2u);
  // The store works on: the mended names can be used.
  EXPECT_TRUE(store_->Unlink(found_ino, "#" + std::to_string(lost), nullptr).ok());
  EXPECT_TRUE(store_->Rmdir(a, "b").ok());
  EXPECT_TRUE(store_->Rmdir(found_ino, "#" + std::to_string(a)).ok());
  EXPECT_EQ(Fsck(false).found_count(), 0u);
}

TEST_F(FsckStoreTest, AWrongXattrCountIsFoundAndRepairCountsAgain) {
  uint64_t f = Make(root_, "tagged", false);
  ASSERT_TRUE(store_->Setxattr(f, "user.a", "1", 0, nullptr).ok());
  ASSERT_TRUE(store_->Setxattr(f, "user.b", "2", 0, nullptr).ok());
  ASSERT_EQ(store_->Getattr(f)->attr().xattrs(), 2u);
  EXPECT_EQ(Fsck(false).found_count(), 0u);
  store_.reset();
  {
    StoreDamage damage(dir_ + "/db");
    pb::Inode inode = damage.Inode(f);
    inode.mutable_attr()->set_xattrs(0);  // a mount would answer "none" for both
    damage.PutInode(inode);
  }
  Open();
  pb::FsckResponse check = Fsck(false);
  EXPECT_EQ(ProblemNames(check), (std::multiset<std::string>{"xattr-count"}))
      << check.DebugString();
  pb::FsckResponse repair = Fsck(true);
  EXPECT_EQ(repair.remaining_count(), 0u) << repair.DebugString();
  EXPECT_EQ(store_->Getattr(f)->attr().xattrs(), 2u);
  EXPECT_EQ(Fsck(false).found_count(), 0u);
  // A stale finding (the count changed meanwhile) is left alone.
  Finding stale = Finding::Of(Problem::kXattrCount, f);
  stale.found = 5;
  stale.expected = 2;
  Result<std::string> done = store_->Repair(stale);
  ASSERT_FALSE(done.ok());
  EXPECT_EQ(done.status().code(), EAGAIN);
}

TEST_F(FsckStoreTest, ARepairWhoseDamageChangedMeanwhileDoesNothing) {
  uint64_t f = Make(root_, "f", false);
  Finding stale = Finding::Of(Problem::kLinkCount, f);
  stale.found = 7;  // the check saw 7; the store holds 1
  stale.expected = 3;
  Result<std::string> done = store_->Repair(stale);
  ASSERT_FALSE(done.ok());
  EXPECT_EQ(done.status().code(), EAGAIN);
  EXPECT_EQ(store_->Getattr(f)->attr().nlink(), 1u);

  Finding named = Finding::Of(Problem::kDanglingEntry, f);  // f exists: not dangling
  named.parent = root_;
  named.name = "f";
  EXPECT_EQ(store_->Repair(named).status().code(), EAGAIN);
  EXPECT_TRUE(store_->Lookup(root_, "f").ok());

  Finding root_missing = Finding::Of(Problem::kMissingRoot, root_);
  EXPECT_EQ(store_->Repair(root_missing).status().code(), ENOTSUP);
}

}  // namespace
}  // namespace sealfs::metadata
