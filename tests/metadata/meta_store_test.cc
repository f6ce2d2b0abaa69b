// MetaStore operations and their errno cases, on a real RocksDB in a temp dir.
#include "sealfs/metadata/meta_store.h"

#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <set>
#include <thread>

namespace sealfs::metadata {
namespace {

class MetaStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/sealfs-meta-test-XXXXXX";
    dir_ = mkdtemp(pattern);
    Reopen();
    auto volume = store_->CreateVolume("vol", 0, 0);
    ASSERT_TRUE(volume.ok()) << volume.status().ToString();
    root_ = volume->root_ino();
    caller_.set_uid(1000);
    caller_.set_gid(1000);
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  void Reopen() {
    store_.reset();
    MetaStoreOptions options;
    options.path = dir_ + "/db";
    auto opened = MetaStore::Open(options);
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    store_ = std::move(*opened);
  }
  uint64_t File(uint64_t parent, const std::string& name) {
    auto inode = store_->Mknod(parent, name, S_IFREG | 0644, 0, caller_, servers_);
    EXPECT_TRUE(inode.ok()) << name << ": " << inode.status().ToString();
    return inode.ok() ? inode->attr().ino() : 0;
  }
  uint64_t Dir(uint64_t parent, const std::string& name) {
    auto inode = store_->Mkdir(parent, name, 0755, caller_);
    EXPECT_TRUE(inode.ok()) << name << ": " << inode.status().ToString();
    return inode.ok() ? inode->attr().ino() : 0;
  }
  pb::Attr Attr(uint64_t ino) {
    auto inode = store_->Getattr(ino);
    EXPECT_TRUE(inode.ok());
    return inode.ok() ? inode->attr() : pb::Attr{};
  }
  std::set<std::string> Names(uint64_t dir) {
    std::set<std::string> names;
    uint64_t cookie = 0;
    for (;;) {
      auto page = store_->Readdir(dir, cookie, 3, false);
      EXPECT_TRUE(page.ok());
      for (const auto& entry : page->entries()) {
        names.insert(entry.name());
        cookie = entry.cookie();
      }
      if (page->end()) break;
    }
    return names;
  }
  std::vector<std::pair<uint64_t, pb::Layout>> PendingRemovals() {
    auto pending = store_->PendingRemovals();
    EXPECT_TRUE(pending.ok()) << pending.status().ToString();
    return pending.ok() ? *pending : std::vector<std::pair<uint64_t, pb::Layout>>{};
  }
  std::vector<uint64_t> Orphans() {
    auto orphans = store_->Orphans();
    EXPECT_TRUE(orphans.ok()) << orphans.status().ToString();
    return orphans.ok() ? *orphans : std::vector<uint64_t>{};
  }
  static MetaStore::OpenCheck NeverOpen() {
    return [](uint64_t) { return false; };
  }

  std::string dir_;
  std::unique_ptr<MetaStore> store_;
  uint64_t root_ = 0;
  pb::Caller caller_;
  std::vector<uint32_t> servers_{1, 2, 3};
};

TEST_F(MetaStoreTest, CreateLookupGetattr) {
  uint64_t ino = File(root_, "a");
  auto found = store_->Lookup(root_, "a");
  ASSERT_TRUE(found.ok());
  EXPECT_EQ(found->attr().ino(), ino);
  EXPECT_EQ(found->attr().uid(), 1000u);
  EXPECT_EQ(found->attr().nlink(), 1u);
  EXPECT_TRUE(S_ISREG(found->attr().mode()));
  EXPECT_EQ(found->layout().chains_size(), 3);
  EXPECT_EQ(found->layout().chunk_size(), kDefaultChunkSize);
  EXPECT_EQ(store_->Lookup(root_, "missing").status().code(), ENOENT);
  EXPECT_EQ(store_->Getattr(999999).status().code(), ENOENT);
}

TEST_F(MetaStoreTest, InodeIdsCarryTheShard) {
  EXPECT_EQ(ShardOf(File(root_, "a")), 0u);
  // A store for another shard hands out ids with that shard in the high bits,
  // and keeps doing so after a restart.
  MetaStoreOptions options;
  options.path = dir_ + "/shard7";
  options.shard = 7;
  for (int round = 0; round < 2; ++round) {
    auto store = MetaStore::Open(options);
    ASSERT_TRUE(store.ok());
    auto volume = (*store)->CreateVolume("v" + std::to_string(round), 0, 0);
    ASSERT_TRUE(volume.ok());
    EXPECT_EQ(ShardOf(volume->root_ino()), 7u);
    auto file = (*store)->Mknod(volume->root_ino(), "f", S_IFREG | 0644, 0, caller_, servers_);
    ASSERT_TRUE(file.ok());
    EXPECT_EQ(ShardOf(file->attr().ino()), 7u);
    EXPECT_GT(file->attr().ino(), volume->root_ino());
  }
}

TEST_F(MetaStoreTest, LayoutsRotateOverChains) {
  std::set<uint32_t> first_servers;
  for (int i = 0; i < 6; ++i) {
    auto inode =
        store_->Mknod(root_, "f" + std::to_string(i), S_IFREG | 0644, 0, caller_, servers_);
    ASSERT_TRUE(inode.ok());
    first_servers.insert(inode->layout().chains(0));
  }
  EXPECT_EQ(first_servers.size(), 3u);
}

TEST_F(MetaStoreTest, NameErrors) {
  EXPECT_EQ(store_->Mknod(root_, std::string(256, 'x'), S_IFREG | 0644, 0, caller_, servers_)
                .status()
                .code(),
            ENAMETOOLONG);
  EXPECT_TRUE(
      store_->Mknod(root_, std::string(255, 'x'), S_IFREG | 0644, 0, caller_, servers_).ok());
  EXPECT_EQ(store_->Mknod(root_, "a/b", S_IFREG | 0644, 0, caller_, servers_).status().code(),
            EINVAL);
  EXPECT_EQ(store_->Mknod(root_, "", S_IFREG | 0644, 0, caller_, servers_).status().code(), EINVAL);
  EXPECT_EQ(store_->Mkdir(root_, ".", 0755, caller_).status().code(), EINVAL);
  EXPECT_EQ(store_->Lookup(root_, std::string(256, 'y')).status().code(), ENAMETOOLONG);
  EXPECT_EQ(store_->Unlink(root_, std::string(256, 'y'), NeverOpen()).status().code(),
            ENAMETOOLONG);
  EXPECT_EQ(store_->Symlink(root_, "l", std::string(4096, 't'), caller_).status().code(),
            ENAMETOOLONG);
  EXPECT_TRUE(store_->Symlink(root_, "l", std::string(4095, 't'), caller_).ok());
}

TEST_F(MetaStoreTest, CreateErrors) {
  uint64_t file = File(root_, "a");
  EXPECT_EQ(store_->Mknod(root_, "a", S_IFREG | 0644, 0, caller_, servers_).status().code(),
            EEXIST);
  EXPECT_EQ(store_->Mkdir(root_, "a", 0755, caller_).status().code(), EEXIST);
  EXPECT_EQ(store_->Mknod(file, "x", S_IFREG | 0644, 0, caller_, servers_).status().code(),
            ENOTDIR);
  EXPECT_EQ(store_->Mkdir(424242, "x", 0755, caller_).status().code(), ENOENT);
}

TEST_F(MetaStoreTest, MkdirCountsLinks) {
  uint64_t before = Attr(root_).nlink();
  uint64_t dir = Dir(root_, "d");
  EXPECT_EQ(Attr(dir).nlink(), 2u);
  EXPECT_EQ(Attr(root_).nlink(), before + 1);
  Dir(dir, "sub");
  EXPECT_EQ(Attr(dir).nlink(), 3u);
  File(dir, "f");
  EXPECT_EQ(Attr(dir).nlink(), 3u);
  EXPECT_EQ(store_->Lookup(dir, "..")->attr().ino(), root_);
  EXPECT_EQ(store_->Lookup(dir, ".")->attr().ino(), dir);
}

TEST_F(MetaStoreTest, SetgidDirectoryIsInherited) {
  uint64_t dir = Dir(root_, "shared");
  pb::SetattrRequest request;
  request.set_ino(dir);
  request.set_valid(pb::SETATTR_MODE | pb::SETATTR_GID);
  request.set_mode(02775);
  request.set_gid(4242);
  ASSERT_TRUE(store_->Setattr(request).ok());
  uint64_t file = File(dir, "f");
  EXPECT_EQ(Attr(file).gid(), 4242u);
  uint64_t sub = Dir(dir, "sub");
  EXPECT_EQ(Attr(sub).gid(), 4242u);
  EXPECT_TRUE(Attr(sub).mode() & S_ISGID);
}

TEST_F(MetaStoreTest, UnlinkAndRmdirErrors) {
  uint64_t dir = Dir(root_, "d");
  File(dir, "f");
  File(root_, "plain");
  EXPECT_EQ(store_->Unlink(root_, "d", NeverOpen()).status().code(), EISDIR);
  EXPECT_EQ(store_->Rmdir(root_, "plain").code(), ENOTDIR);
  EXPECT_EQ(store_->Rmdir(root_, "d").code(), ENOTEMPTY);
  EXPECT_EQ(store_->Rmdir(root_, "nope").code(), ENOENT);
  EXPECT_EQ(store_->Unlink(root_, "nope", NeverOpen()).status().code(), ENOENT);
  ASSERT_TRUE(store_->Unlink(dir, "f", NeverOpen()).ok());
  uint64_t links = Attr(root_).nlink();
  ASSERT_TRUE(store_->Rmdir(root_, "d").ok());
  EXPECT_EQ(Attr(root_).nlink(), links - 1);
  EXPECT_EQ(store_->Getattr(dir).status().code(), ENOENT);
  // Creating inside a removed directory fails.
  EXPECT_EQ(store_->Mknod(dir, "late", S_IFREG | 0644, 0, caller_, servers_).status().code(),
            ENOENT);
}

TEST_F(MetaStoreTest, UnlinkFreesAndQueuesChunkRemoval) {
  uint64_t ino = File(root_, "f");
  auto result = store_->Unlink(root_, "f", NeverOpen());
  ASSERT_TRUE(result.ok());
  EXPECT_TRUE(result->freed);
  EXPECT_EQ(store_->Getattr(ino).status().code(), ENOENT);
  auto pending = PendingRemovals();
  ASSERT_EQ(pending.size(), 1u);
  EXPECT_EQ(pending[0].first, ino);
  EXPECT_EQ(pending[0].second.chains_size(), 3);
  ASSERT_TRUE(store_->RemovalDone(ino).ok());
  EXPECT_TRUE(PendingRemovals().empty());
}

TEST_F(MetaStoreTest, UnlinkedOpenFileBecomesOrphanUntilReleased) {
  uint64_t ino = File(root_, "f");
  auto result = store_->Unlink(root_, "f", [&](uint64_t candidate) { return candidate == ino; });
  ASSERT_TRUE(result.ok());
  EXPECT_TRUE(result->orphaned);
  EXPECT_FALSE(result->freed);
  EXPECT_EQ(Attr(ino).nlink(), 0u);
  EXPECT_EQ(Orphans(), std::vector<uint64_t>{ino});
  EXPECT_TRUE(store_->CommitWrite(ino, 100, 0).ok());  // still writable
  Reopen();                                            // orphans survive restarts
  EXPECT_EQ(Orphans(), std::vector<uint64_t>{ino});
  ASSERT_TRUE(store_->ReleaseOrphan(ino).ok());
  EXPECT_EQ(store_->Getattr(ino).status().code(), ENOENT);
  EXPECT_TRUE(Orphans().empty());
  EXPECT_EQ(PendingRemovals().size(), 1u);
}

TEST_F(MetaStoreTest, HardLinks) {
  uint64_t ino = File(root_, "a");
  uint64_t dir = Dir(root_, "d");
  auto linked = store_->Link(ino, dir, "b");
  ASSERT_TRUE(linked.ok());
  EXPECT_EQ(linked->attr().nlink(), 2u);
  EXPECT_EQ(store_->Lookup(dir, "b")->attr().ino(), ino);
  EXPECT_EQ(store_->Link(dir, root_, "dirlink").status().code(), EPERM);
  EXPECT_EQ(store_->Link(ino, root_, "a").status().code(), EEXIST);
  ASSERT_TRUE(store_->Unlink(root_, "a", NeverOpen()).ok());
  EXPECT_EQ(Attr(ino).nlink(), 1u);
  EXPECT_TRUE(PendingRemovals().empty());
}

TEST_F(MetaStoreTest, SymlinkAndReadlink) {
  auto link = store_->Symlink(root_, "l", "target/path", caller_);
  ASSERT_TRUE(link.ok());
  EXPECT_TRUE(S_ISLNK(link->attr().mode()));
  EXPECT_EQ(link->attr().size(), 11u);
  EXPECT_EQ(*store_->Readlink(link->attr().ino()), "target/path");
  uint64_t file = File(root_, "f");
  EXPECT_EQ(store_->Readlink(file).status().code(), EINVAL);
}

TEST_F(MetaStoreTest, SetattrFields) {
  uint64_t ino = File(root_, "f");
  pb::Attr before = Attr(ino);
  pb::SetattrRequest request;
  request.set_ino(ino);
  request.set_valid(pb::SETATTR_MODE | pb::SETATTR_UID | pb::SETATTR_GID | pb::SETATTR_ATIME |
                    pb::SETATTR_MTIME);
  request.set_mode(S_IFDIR | 04711);  // type bits are ignored
  request.set_uid(5);
  request.set_gid(6);
  request.set_atime_ns(1'000'000'123);
  request.set_mtime_ns(2'000'000'456);
  // Let the clock move past the creation time, so an unchanged ctime shows.
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  auto after = store_->Setattr(request);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->attr().mode(), static_cast<uint32_t>(S_IFREG | 04711));
  EXPECT_EQ(after->attr().uid(), 5u);
  EXPECT_EQ(after->attr().gid(), 6u);
  EXPECT_EQ(after->attr().atime_ns(), 1'000'000'123);
  EXPECT_EQ(after->attr().mtime_ns(), 2'000'000'456);
  EXPECT_GT(after->attr().ctime_ns(), before.ctime_ns());
}

TEST_F(MetaStoreTest, SetattrNowAndOmit) {
  uint64_t ino = File(root_, "f");
  pb::SetattrRequest request;
  request.set_ino(ino);
  request.set_valid(pb::SETATTR_ATIME | pb::SETATTR_MTIME);
  request.set_atime_ns(5);
  request.set_mtime_ns(7);
  ASSERT_TRUE(store_->Setattr(request).ok());
  // UTIME_OMIT for atime (field absent), UTIME_NOW for mtime.
  request.set_valid(pb::SETATTR_MTIME_NOW);
  int64_t before = NowNs();
  auto after = store_->Setattr(request);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->attr().atime_ns(), 5);
  EXPECT_GE(after->attr().mtime_ns(), before);
  EXPECT_GE(after->attr().ctime_ns(), before);
}

TEST_F(MetaStoreTest, TruncateRules) {
  uint64_t ino = File(root_, "f");
  uint64_t dir = Dir(root_, "d");
  pb::SetattrRequest request;
  request.set_ino(ino);
  request.set_valid(pb::SETATTR_SIZE);
  request.set_size(12345);
  auto grown = store_->Setattr(request);
  ASSERT_TRUE(grown.ok());
  EXPECT_EQ(grown->attr().size(), 12345u);
  request.set_ino(dir);
  EXPECT_EQ(store_->Setattr(request).status().code(), EISDIR);
}

TEST_F(MetaStoreTest, CommitWriteOnlyGrows) {
  uint64_t ino = File(root_, "f");
  ASSERT_TRUE(store_->CommitWrite(ino, 100, 42).ok());
  auto after = store_->CommitWrite(ino, 50, 43);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->attr().size(), 100u);
  EXPECT_EQ(after->attr().mtime_ns(), 43);
}

TEST_F(MetaStoreTest, RenameWithinAndAcrossDirectories) {
  uint64_t file = File(root_, "a");
  uint64_t dir = Dir(root_, "d");
  ASSERT_TRUE(store_->Rename(root_, "a", root_, "b", 0, NeverOpen()).ok());
  EXPECT_EQ(store_->Lookup(root_, "a").status().code(), ENOENT);
  EXPECT_EQ(store_->Lookup(root_, "b")->attr().ino(), file);
  ASSERT_TRUE(store_->Rename(root_, "b", dir, "c", 0, NeverOpen()).ok());
  EXPECT_EQ(store_->Lookup(dir, "c")->attr().ino(), file);
  EXPECT_EQ(store_->Rename(root_, "gone", dir, "x", 0, NeverOpen()).status().code(), ENOENT);
}

TEST_F(MetaStoreTest, RenameOverExistingFileFreesIt) {
  uint64_t a = File(root_, "a");
  uint64_t b = File(root_, "b");
  auto replaced = store_->Rename(root_, "a", root_, "b", 0, NeverOpen());
  ASSERT_TRUE(replaced.ok());
  EXPECT_TRUE(replaced->freed);
  EXPECT_EQ(store_->Lookup(root_, "b")->attr().ino(), a);
  EXPECT_EQ(store_->Getattr(b).status().code(), ENOENT);
  EXPECT_EQ(Names(root_), (std::set<std::string>{".", "..", "b"}));
}

TEST_F(MetaStoreTest, RenameDirectoryRules) {
  uint64_t d1 = Dir(root_, "d1");
  uint64_t d2 = Dir(root_, "d2");
  uint64_t inner = Dir(d1, "inner");
  File(root_, "f");
  EXPECT_EQ(store_->Rename(root_, "d1", d1, "x", 0, NeverOpen()).status().code(), EINVAL);
  EXPECT_EQ(store_->Rename(root_, "d1", inner, "x", 0, NeverOpen()).status().code(), EINVAL);
  EXPECT_EQ(store_->Rename(root_, "d1", root_, "f", 0, NeverOpen()).status().code(), ENOTDIR);
  EXPECT_EQ(store_->Rename(root_, "f", root_, "d2", 0, NeverOpen()).status().code(), EISDIR);
  Dir(d2, "occupied");
  EXPECT_EQ(store_->Rename(root_, "d1", root_, "d2", 0, NeverOpen()).status().code(), ENOTEMPTY);
  // Moving a directory moves its ".." and the parents' link counts.
  uint32_t root_links = Attr(root_).nlink();
  ASSERT_TRUE(store_->Rename(d1, "inner", d2, "moved", 0, NeverOpen()).ok());
  EXPECT_EQ(store_->Lookup(inner, "..")->attr().ino(), d2);
  EXPECT_EQ(Attr(d1).nlink(), 2u);
  EXPECT_EQ(Attr(d2).nlink(), 4u);
  EXPECT_EQ(Attr(root_).nlink(), root_links);
  // Over an empty directory.
  ASSERT_TRUE(store_->Rmdir(d2, "occupied").ok());
  ASSERT_TRUE(store_->Rename(d2, "moved", root_, "d1", 0, NeverOpen()).ok());
  EXPECT_EQ(store_->Getattr(d1).status().code(), ENOENT);
  EXPECT_EQ(Attr(root_).nlink(), root_links);
}

TEST_F(MetaStoreTest, RenameNoreplace) {
  File(root_, "a");
  File(root_, "b");
  EXPECT_EQ(store_->Rename(root_, "a", root_, "b", pb::RENAME_FLAG_NOREPLACE, NeverOpen())
                .status()
                .code(),
            EEXIST);
  EXPECT_TRUE(store_->Rename(root_, "a", root_, "c", pb::RENAME_FLAG_NOREPLACE, NeverOpen()).ok());
}

TEST_F(MetaStoreTest, RenameExchange) {
  uint64_t file = File(root_, "f");
  uint64_t dir = Dir(root_, "d");
  uint64_t other = Dir(root_, "o");
  EXPECT_EQ(store_->Rename(root_, "f", root_, "none", pb::RENAME_FLAG_EXCHANGE, NeverOpen())
                .status()
                .code(),
            ENOENT);
  EXPECT_EQ(store_
                ->Rename(root_, "f", root_, "d",
                         pb::RENAME_FLAG_EXCHANGE | pb::RENAME_FLAG_NOREPLACE, NeverOpen())
                .status()
                .code(),
            EINVAL);
  ASSERT_TRUE(store_->Rename(root_, "f", root_, "d", pb::RENAME_FLAG_EXCHANGE, NeverOpen()).ok());
  EXPECT_EQ(store_->Lookup(root_, "f")->attr().ino(), dir);
  EXPECT_EQ(store_->Lookup(root_, "d")->attr().ino(), file);
  // Across directories: the directory's parent and both link counts follow.
  uint32_t root_links = Attr(root_).nlink();
  ASSERT_TRUE(store_->Rename(root_, "f", other, "x", 0, NeverOpen()).ok());
  EXPECT_EQ(Attr(root_).nlink(), root_links - 1);
  EXPECT_EQ(Attr(other).nlink(), 3u);
  File(root_, "g");
  ASSERT_TRUE(store_->Rename(other, "x", root_, "g", pb::RENAME_FLAG_EXCHANGE, NeverOpen()).ok());
  EXPECT_EQ(store_->Lookup(dir, "..")->attr().ino(), root_);
  EXPECT_EQ(Attr(root_).nlink(), root_links);  // the directory is back, the file left
  EXPECT_EQ(Attr(other).nlink(), 2u);
  // A directory cannot be exchanged into its own subtree.
  uint64_t inner = Dir(dir, "inner");
  File(inner, "leaf");
  EXPECT_EQ(store_->Rename(root_, "g", inner, "leaf", pb::RENAME_FLAG_EXCHANGE, NeverOpen())
                .status()
                .code(),
            EINVAL);
}

TEST_F(MetaStoreTest, RenameOfHardLinksToSameInodeIsANoop) {
  uint64_t ino = File(root_, "a");
  ASSERT_TRUE(store_->Link(ino, root_, "b").ok());
  ASSERT_TRUE(store_->Rename(root_, "a", root_, "b", 0, NeverOpen()).ok());
  EXPECT_TRUE(store_->Lookup(root_, "a").ok());
  EXPECT_EQ(Attr(ino).nlink(), 2u);
}

TEST_F(MetaStoreTest, ReaddirCookiesResumeAcrossChanges) {
  for (int i = 0; i < 10; ++i) File(root_, "f" + std::to_string(i));
  auto first = store_->Readdir(root_, 0, 5, false);
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(first->entries_size(), 5);
  EXPECT_EQ(first->entries(0).name(), ".");
  EXPECT_EQ(first->entries(1).name(), "..");
  uint64_t cookie = first->entries(4).cookie();
  std::set<std::string> seen;
  for (const auto& entry : first->entries()) seen.insert(entry.name());
  // Remove one already listed and one not yet listed; add a new one.
  ASSERT_TRUE(store_->Unlink(root_, first->entries(2).name(), NeverOpen()).ok());
  ASSERT_TRUE(store_->Unlink(root_, "f9", NeverOpen()).ok());
  File(root_, "late");
  for (;;) {
    auto page = store_->Readdir(root_, cookie, 4, true);
    ASSERT_TRUE(page.ok());
    for (const auto& entry : page->entries()) {
      EXPECT_TRUE(seen.insert(entry.name()).second) << "listed twice: " << entry.name();
      EXPECT_EQ(entry.attr().ino(), entry.ino());
      cookie = entry.cookie();
    }
    if (page->end()) break;
  }
  EXPECT_FALSE(seen.contains("f9"));
  EXPECT_TRUE(seen.contains("late"));
  EXPECT_EQ(seen.size(), 12u);  // . .. f0..f8 late
  EXPECT_EQ(store_->Readdir(File(root_, "file"), 0, 10, false).status().code(), ENOTDIR);
}

TEST_F(MetaStoreTest, Xattrs) {
  uint64_t ino = File(root_, "f");
  // The attributes count the xattrs: clients answer "none" from a 0.
  EXPECT_TRUE(Attr(ino).has_xattrs());
  EXPECT_EQ(Attr(ino).xattrs(), 0u);
  EXPECT_EQ(Attr(root_).xattrs(), 0u);
  EXPECT_EQ(store_->Getxattr(ino, "user.a").status().code(), ENODATA);
  ASSERT_TRUE(store_->Setxattr(ino, "user.a", "1", 0).ok());
  EXPECT_EQ(Attr(ino).xattrs(), 1u);
  EXPECT_EQ(store_->Setxattr(ino, "user.a", "2", XATTR_CREATE).code(), EEXIST);
  EXPECT_EQ(store_->Setxattr(ino, "user.b", "2", XATTR_REPLACE).code(), ENODATA);
  ASSERT_TRUE(store_->Setxattr(ino, "user.a", std::string("x\0y", 3), XATTR_REPLACE).ok());
  EXPECT_EQ(*store_->Getxattr(ino, "user.a"), std::string("x\0y", 3));
  EXPECT_EQ(Attr(ino).xattrs(), 1u);
  ASSERT_TRUE(store_->Setxattr(ino, "user.b", "", 0).ok());
  EXPECT_EQ(Attr(ino).xattrs(), 2u);
  EXPECT_EQ(*store_->Listxattr(ino), (std::vector<std::string>{"user.a", "user.b"}));
  ASSERT_TRUE(store_->Removexattr(ino, "user.a").ok());
  EXPECT_EQ(store_->Removexattr(ino, "user.a").code(), ENODATA);
  EXPECT_EQ(Attr(ino).xattrs(), 1u);
  EXPECT_EQ(store_->Setxattr(ino, std::string(256, 'n'), "v", 0).code(), ERANGE);
  EXPECT_EQ(store_->Setxattr(ino, "user.big", std::string(kXattrValueMax + 1, 'v'), 0).code(),
            E2BIG);
  EXPECT_EQ(store_->Getxattr(999999, "user.a").status().code(), ENOENT);
  // Xattrs go with the inode.
  ASSERT_TRUE(store_->Unlink(root_, "f", NeverOpen()).ok());
  EXPECT_EQ(store_->Getxattr(ino, "user.b").status().code(), ENOENT);
  EXPECT_EQ(store_->Listxattr(ino).status().code(), ENOENT);
  uint64_t next = File(root_, "g");
  EXPECT_TRUE(store_->Listxattr(next)->empty());
}

TEST_F(MetaStoreTest, EverythingSurvivesReopen) {
  uint64_t dir = Dir(root_, "d");
  uint64_t file = File(dir, "f");
  ASSERT_TRUE(store_->CommitWrite(file, 4096, 0).ok());
  ASSERT_TRUE(store_->Setxattr(file, "user.k", "v", 0).ok());
  Reopen();
  EXPECT_EQ(store_->Lookup(dir, "f")->attr().size(), 4096u);
  EXPECT_EQ(*store_->Getxattr(file, "user.k"), "v");
  EXPECT_EQ(store_->ListVolumes()->size(), 1u);
}

// Sets (or, with nullopt, deletes) the store's recorded format version,
// working on the RocksDB files directly as another program would have left it.
void SetRecordedFormat(const std::string& path, std::optional<uint64_t> version) {
  std::vector<std::string> names;
  ASSERT_TRUE(rocksdb::DB::ListColumnFamilies({}, path, &names).ok());
  std::vector<rocksdb::ColumnFamilyDescriptor> families;
  for (const auto& name : names) families.emplace_back(name, rocksdb::ColumnFamilyOptions());
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  ASSERT_TRUE(rocksdb::DB::Open({}, path, families, &handles, &raw).ok());
  std::unique_ptr<rocksdb::DB> db(raw);
  rocksdb::ColumnFamilyHandle* service = nullptr;
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i] == "service") service = handles[i];
  }
  ASSERT_NE(service, nullptr);
  if (version) {
    std::string encoded(8, '\0');
    for (int i = 0; i < 8; ++i) encoded[i] = static_cast<char>(*version >> (56 - 8 * i));
    ASSERT_TRUE(db->Put({}, service, "format-version", encoded).ok());
  } else {
    ASSERT_TRUE(db->Delete({}, service, "format-version").ok());
  }
  for (auto* handle : handles) db->DestroyColumnFamilyHandle(handle);
}

TEST_F(MetaStoreTest, AStoreOfAnotherFormatIsRefusedByName) {
  uint64_t file = File(root_, "f");
  store_.reset();
  MetaStoreOptions options;
  options.path = dir_ + "/db";
  // A store from before formats were recorded (format 1: layouts that name
  // servers) is refused, never misread.
  SetRecordedFormat(dir_ + "/db", std::nullopt);
  auto unstamped = MetaStore::Open(options);
  ASSERT_FALSE(unstamped.ok());
  EXPECT_EQ(unstamped.status().code(), ENOTSUP);
  EXPECT_NE(unstamped.status().message().find("format version 1"), std::string::npos)
      << unstamped.status().ToString();
  SetRecordedFormat(dir_ + "/db", 3);
  auto opened = MetaStore::Open(options);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().code(), ENOTSUP);
  EXPECT_NE(opened.status().message().find("format version 3"), std::string::npos)
      << opened.status().ToString();
  SetRecordedFormat(dir_ + "/db", MetaStore::kFormatVersion);
  Reopen();
  EXPECT_EQ(store_->Getattr(file)->attr().size(), 0u);
}

TEST_F(MetaStoreTest, FreedIdsAreNotReusedAfterReopen) {
  File(root_, "kept");
  uint64_t highest = File(root_, "freed");
  auto unlinked = store_->Unlink(root_, "freed", NeverOpen());
  ASSERT_TRUE(unlinked.ok());
  ASSERT_TRUE(unlinked->freed);
  // The freed inode held the highest id; no inode on disk shows it any more.
  Reopen();
  uint64_t next = File(root_, "n");
  EXPECT_GT(next, highest);
}

TEST_F(MetaStoreTest, ConcurrentCreatesInOneDirectoryAllLand) {
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        auto made = store_->Mknod(root_, "t" + std::to_string(t) + "_" + std::to_string(i),
                                  S_IFREG | 0644, 0, caller_, servers_);
        EXPECT_TRUE(made.ok());
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(Names(root_).size(), 202u);
}

TEST_F(MetaStoreTest, Volumes) {
  EXPECT_EQ(store_->CreateVolume("vol", 0, 0).status().code(), EEXIST);
  EXPECT_EQ(store_->CreateVolume("bad name!", 0, 0).status().code(), EINVAL);
  auto other = store_->CreateVolume("tenants/ns/pv-1", 0, 0);
  ASSERT_TRUE(other.ok());
  uint64_t dir = Dir(other->root_ino(), "d");
  uint64_t file = File(dir, "f");
  EXPECT_EQ(store_->ListVolumes()->size(), 2u);
  ASSERT_TRUE(store_->DeleteVolume("tenants/ns/pv-1").ok());
  EXPECT_EQ(store_->GetVolume("tenants/ns/pv-1").status().code(), ENOENT);
  EXPECT_EQ(store_->Getattr(file).status().code(), ENOENT);
  EXPECT_EQ(store_->Getattr(dir).status().code(), ENOENT);
  EXPECT_EQ(PendingRemovals().size(), 1u);
  EXPECT_EQ(store_->DeleteVolume("tenants/ns/pv-1").code(), ENOENT);
}

TEST_F(MetaStoreTest, AVolumesStripeWidthHoldsForEveryFileInIt) {
  std::vector<uint32_t> many(20);
  for (uint32_t i = 0; i < many.size(); ++i) many[i] = i + 1;
  auto narrow = store_->CreateVolume("narrow", 0, 0, 2);
  ASSERT_TRUE(narrow.ok());
  EXPECT_EQ(narrow->stripe_width(), 2u);
  auto file = store_->Mknod(narrow->root_ino(), "f", S_IFREG | 0644, 0, caller_, many);
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(file->layout().chains_size(), 2);
  uint64_t sub = Dir(narrow->root_ino(), "sub");
  auto deeper = store_->Mknod(sub, "g", S_IFREG | 0644, 0, caller_, many);
  ASSERT_TRUE(deeper.ok());
  EXPECT_EQ(deeper->layout().chains_size(), 2);
  // By default: all chains, at most 16.
  auto wide = store_->Mknod(root_, "w", S_IFREG | 0644, 0, caller_, many);
  ASSERT_TRUE(wide.ok());
  EXPECT_EQ(wide->layout().chains_size(), 16);
  EXPECT_EQ(store_->CreateVolume("too-wide", 0, 0, 17).status().code(), EINVAL);
}

TEST_F(MetaStoreTest, ServersAndTheChainTableSurviveARestart) {
  pb::DataServer server;
  server.set_id(4);
  server.set_address("127.0.0.1:1000");
  ASSERT_TRUE(store_->PutServer(server).ok());
  EXPECT_EQ(store_->LoadChainTable()->chains_size(), 0);
  pb::ChainTable table;
  table.set_replicas(2);
  pb::Chain* chain = table.add_chains();
  chain->set_id(1);
  chain->set_version(7);
  ASSERT_TRUE(store_->SaveChainTable(table).ok());
  Reopen();
  auto servers = *store_->ListServers();
  ASSERT_EQ(servers.size(), 1u);
  EXPECT_EQ(servers[0].address(), "127.0.0.1:1000");
  auto loaded = store_->LoadChainTable();
  ASSERT_TRUE(loaded.ok());
  EXPECT_EQ(loaded->replicas(), 2u);
  ASSERT_EQ(loaded->chains_size(), 1);
  EXPECT_EQ(loaded->chains(0).version(), 7u);
}

}  // namespace
}  // namespace sealfs::metadata
