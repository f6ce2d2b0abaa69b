// MetaStore behaviour found wrong in review: I/O errors of RocksDB
// iterators, unbounded listings, listings that never end, ctime from a
// client's clock, size limits, truncates racing size commits, opens racing
// unlinks. RocksDB runs on a file system that can be told to fail reads.
#include <gtest/gtest.h>
#include <rocksdb/env.h>
#include <rocksdb/file_system.h>
#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <set>
#include <thread>

#include "sealfs/metadata/meta_store.h"

namespace sealfs::metadata {
namespace {

// Table files whose reads fail with an I/O error while `fail_reads` is set:
// what a dying disk does to RocksDB underneath the store.
class FailingReadFile : public rocksdb::FSRandomAccessFileOwnerWrapper {
 public:
  FailingReadFile(std::unique_ptr<rocksdb::FSRandomAccessFile> file, std::atomic<bool>* fail)
      : FSRandomAccessFileOwnerWrapper(std::move(file)), fail_(fail) {}
  rocksdb::IOStatus Read(uint64_t offset, size_t n, const rocksdb::IOOptions& options,
                         rocksdb::Slice* result, char* scratch,
                         rocksdb::IODebugContext* dbg) const override {
    if (fail_->load()) return rocksdb::IOStatus::IOError("injected read error");
    return target()->Read(offset, n, options, result, scratch, dbg);
  }
  rocksdb::IOStatus MultiRead(rocksdb::FSReadRequest* requests, size_t count,
                              const rocksdb::IOOptions& options,
                              rocksdb::IODebugContext* dbg) override {
    if (fail_->load()) return rocksdb::IOStatus::IOError("injected read error");
    return target()->MultiRead(requests, count, options, dbg);
  }

 private:
  std::atomic<bool>* fail_;
};

class FailingFileSystem : public rocksdb::FileSystemWrapper {
 public:
  FailingFileSystem() : FileSystemWrapper(rocksdb::FileSystem::Default()) {}
  const char* Name() const override { return "FailingFileSystem"; }
  rocksdb::IOStatus NewRandomAccessFile(const std::string& name,
                                        const rocksdb::FileOptions& options,
                                        std::unique_ptr<rocksdb::FSRandomAccessFile>* result,
                                        rocksdb::IODebugContext* dbg) override {
    std::unique_ptr<rocksdb::FSRandomAccessFile> file;
    rocksdb::IOStatus status = target()->NewRandomAccessFile(name, options, &file, dbg);
    if (status.ok()) result->reset(new FailingReadFile(std::move(file), &fail_reads));
    return status;
  }
  std::atomic<bool> fail_reads{false};
};

class MetaStoreConsistencyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/sealfs-meta-consistency-XXXXXX";
    dir_ = mkdtemp(pattern);
    fs_ = std::make_shared<FailingFileSystem>();
    env_ = rocksdb::NewCompositeEnv(fs_);
    Reopen();
    auto volume = store_->CreateVolume("vol", 0, 0);
    ASSERT_TRUE(volume.ok()) << volume.status().ToString();
    root_ = volume->root_ino();
    caller_.set_uid(1000);
    caller_.set_gid(1000);
  }
  void TearDown() override {
    fs_->fail_reads = false;
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  // Reopening replays the log into table files, so later reads hit the disk.
  void Reopen() {
    store_.reset();
    MetaStoreOptions options;
    options.path = dir_ + "/db";
    options.env = env_.get();
    auto opened = MetaStore::Open(options);
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    store_ = std::move(*opened);
  }
  uint64_t File(uint64_t parent, const std::string& name) {
    auto inode = store_->Mknod(parent, name, S_IFREG | 0644, 0, caller_, {1});
    EXPECT_TRUE(inode.ok()) << name << ": " << inode.status().ToString();
    return inode.ok() ? inode->attr().ino() : 0;
  }
  uint64_t Dir(uint64_t parent, const std::string& name) {
    auto inode = store_->Mkdir(parent, name, 0755, caller_);
    EXPECT_TRUE(inode.ok()) << name << ": " << inode.status().ToString();
    return inode.ok() ? inode->attr().ino() : 0;
  }
  static MetaStore::OpenCheck NeverOpen() {
    return [](uint64_t) { return false; };
  }

  std::string dir_;
  std::shared_ptr<FailingFileSystem> fs_;
  std::unique_ptr<rocksdb::Env> env_;
  std::unique_ptr<MetaStore> store_;
  uint64_t root_ = 0;
  pb::Caller caller_;
};

TEST_F(MetaStoreConsistencyTest, RmdirOfANonEmptyDirectoryFailsWhenTheDiskFailsReads) {
  uint64_t dir = Dir(root_, "d");
  uint64_t child = File(dir, "child");
  Reopen();
  // Rename d away and back: its entry and inode (and the root's) are then
  // answered from memory, and only the scan of d's entries reads the disk.
  ASSERT_TRUE(store_->Rename(root_, "d", root_, "e", 0, NeverOpen()).ok());
  ASSERT_TRUE(store_->Rename(root_, "e", root_, "d", 0, NeverOpen()).ok());
  fs_->fail_reads = true;
  Status removed = store_->Rmdir(root_, "d");
  fs_->fail_reads = false;
  EXPECT_FALSE(removed.ok()) << "a read error must not make a directory look empty";
  EXPECT_NE(removed.code(), ENOTEMPTY);
  // Nothing was lost: the directory and its entry are still there.
  EXPECT_TRUE(store_->Lookup(root_, "d").ok());
  auto found = store_->Lookup(dir, "child");
  ASSERT_TRUE(found.ok());
  EXPECT_EQ(found->attr().ino(), child);
}

TEST_F(MetaStoreConsistencyTest, ListingsAndScansReportReadErrors) {
  uint64_t dir = Dir(root_, "d");
  File(dir, "a");
  ASSERT_TRUE(store_->Setxattr(dir, "user.k", "v", 0).ok());
  Reopen();
  // The inode is rewritten (answered from memory); the scans read the disk.
  ASSERT_TRUE(store_->Setxattr(dir, "user.k2", "v", 0).ok());
  fs_->fail_reads = true;
  EXPECT_EQ(store_->Readdir(dir, 2, 100, false).status().code(), EIO);
  EXPECT_EQ(store_->Listxattr(dir).status().code(), EIO);
  EXPECT_EQ(store_->ListVolumes().status().code(), EIO);
  fs_->fail_reads = false;
  auto listed = store_->Readdir(dir, 2, 100, false);
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->entries_size(), 1);
}

TEST_F(MetaStoreConsistencyTest, ReaddirRepliesAreBoundedInBytes) {
  uint64_t dir = Dir(root_, "big");
  const int count = 5000;
  for (int i = 0; i < count; ++i) {
    std::string name = std::to_string(i);
    name.resize(kNameMax, 'x');
    File(dir, name);
  }
  uint64_t cookie = 0;
  int seen = 0;
  int pages = 0;
  for (;;) {
    auto page = store_->Readdir(dir, cookie, UINT32_MAX, /*with_attrs=*/true);
    ASSERT_TRUE(page.ok()) << page.status().ToString();
    EXPECT_LE(page->ByteSizeLong(), kReaddirReplyBytes + 64 * 1024);
    ++pages;
    for (const auto& entry : page->entries()) {
      if (entry.name() != "." && entry.name() != "..") ++seen;
      cookie = entry.cookie();
    }
    if (page->end()) break;
    ASSERT_GT(page->entries_size(), 0);
  }
  EXPECT_EQ(seen, count);
  EXPECT_GT(pages, 1) << "5000 entries of 255-byte names cannot fit one bounded reply";
}

TEST_F(MetaStoreConsistencyTest, ListingEndsWhileEveryEntryIsRenamedAwayAndBack) {
  uint64_t dir = Dir(root_, "d");
  for (int i = 0; i < 20; ++i) File(dir, "f" + std::to_string(i));
  uint64_t cookie = 0;
  uint64_t limit = 0;
  int returned = 0;
  for (bool end = false; !end;) {
    auto page = store_->Readdir(dir, cookie, 3, false, limit);
    ASSERT_TRUE(page.ok());
    limit = page->seq_limit();
    for (const auto& entry : page->entries()) {
      cookie = entry.cookie();
      ++returned;
      if (entry.name() == "." || entry.name() == "..") continue;
      // Across directories and back, then within the directory and back.
      ASSERT_TRUE(store_->Rename(dir, entry.name(), root_, "tmp", 0, NeverOpen()).ok());
      ASSERT_TRUE(store_->Rename(root_, "tmp", dir, entry.name(), 0, NeverOpen()).ok());
      ASSERT_TRUE(store_->Rename(dir, entry.name(), dir, "tmp2", 0, NeverOpen()).ok());
      ASSERT_TRUE(store_->Rename(dir, "tmp2", dir, entry.name(), 0, NeverOpen()).ok());
    }
    end = page->end();
    ASSERT_LT(returned, 1000) << "the listing does not end";
  }
  EXPECT_EQ(returned, 22);
}

TEST_F(MetaStoreConsistencyTest, RenameWithinADirectoryKeepsTheListingPlace) {
  uint64_t dir = Dir(root_, "d");
  File(dir, "a");
  auto before = store_->Readdir(dir, 2, 10, false);
  ASSERT_TRUE(before.ok());
  ASSERT_EQ(before->entries_size(), 1);
  ASSERT_TRUE(store_->Rename(dir, "a", dir, "b", 0, NeverOpen()).ok());
  auto after = store_->Readdir(dir, 2, 10, false);
  ASSERT_TRUE(after.ok());
  ASSERT_EQ(after->entries_size(), 1);
  EXPECT_EQ(after->entries(0).name(), "b");
  EXPECT_EQ(after->entries(0).cookie(), before->entries(0).cookie());
  EXPECT_TRUE(store_->Lookup(dir, "b").ok());
  EXPECT_EQ(store_->Lookup(dir, "a").status().code(), ENOENT);
}

TEST_F(MetaStoreConsistencyTest, CommitWriteTakesCtimeFromTheServerClock) {
  uint64_t ino = File(root_, "f");
  int64_t created_ctime = store_->Getattr(ino)->attr().ctime_ns();
  // A client whose clock is an hour behind.
  int64_t client_clock = created_ctime - 3600LL * 1'000'000'000;
  auto committed = store_->CommitWrite(ino, 10, client_clock);
  ASSERT_TRUE(committed.ok());
  EXPECT_EQ(committed->attr().mtime_ns(), client_clock);
  EXPECT_GE(committed->attr().ctime_ns(), created_ctime) << "ctime went backwards";
}

TEST_F(MetaStoreConsistencyTest, OneLargestFileSizeForTruncateAndCommit) {
  uint64_t ino = File(root_, "f");
  pb::SetattrRequest request;
  request.set_ino(ino);
  request.set_valid(pb::SETATTR_SIZE);
  request.set_size(uint64_t{1} << 62);
  EXPECT_EQ(store_->Setattr(request).status().code(), EFBIG);
  request.set_size(kMaxFileSize + 1);
  EXPECT_EQ(store_->Setattr(request).status().code(), EFBIG);
  request.set_size(kMaxFileSize);
  EXPECT_TRUE(store_->Setattr(request).ok());
  EXPECT_EQ(store_->CommitWrite(ino, kMaxFileSize + 1, 0).status().code(), EFBIG);
}

TEST_F(MetaStoreConsistencyTest, TruncateAdvancesTheDataEpochAndStaleCommitsAreRefused) {
  uint64_t ino = File(root_, "f");
  uint64_t epoch = store_->Getattr(ino)->attr().data_epoch();
  pb::SetattrRequest request;
  request.set_ino(ino);
  request.set_valid(pb::SETATTR_SIZE);
  request.set_size(0);
  auto truncated = store_->Setattr(request, /*allocated_bytes=*/0);
  ASSERT_TRUE(truncated.ok());
  EXPECT_EQ(truncated->attr().data_epoch(), epoch + 1);
  MetaStore::WriteCommit stale{ino, 1 << 20, 0, false, epoch, std::nullopt, 0};
  EXPECT_EQ(store_->CommitWrite(stale).status().code(), EAGAIN);
  EXPECT_EQ(store_->Getattr(ino)->attr().size(), 0u);
  MetaStore::WriteCommit current{ino, 1 << 20, 0, false, epoch + 1, 8192, 0};
  auto committed = store_->CommitWrite(current);
  ASSERT_TRUE(committed.ok());
  EXPECT_EQ(committed->attr().size(), 1u << 20);
  EXPECT_EQ(committed->attr().blocks(), 16u);
}

TEST_F(MetaStoreConsistencyTest, StoredBlocksAreCountedOrMarkedUnknown) {
  uint64_t ino = File(root_, "f");
  auto created = store_->Getattr(ino);
  ASSERT_TRUE(created.ok());
  EXPECT_TRUE(created->attr().has_blocks());
  EXPECT_EQ(created->attr().blocks(), 0u);
  MetaStore::WriteCommit grown{ino, 10000, 0, false, 0, std::nullopt, 12288};
  auto committed = store_->CommitWrite(grown);
  ASSERT_TRUE(committed.ok());
  EXPECT_EQ(committed->attr().blocks(), 24u);
  // A truncate whose data servers did not report leaves the count unknown,
  // and reported changes cannot make an unknown count known.
  pb::SetattrRequest request;
  request.set_ino(ino);
  request.set_valid(pb::SETATTR_SIZE);
  request.set_size(100);
  auto cut = store_->Setattr(request);
  ASSERT_TRUE(cut.ok());
  EXPECT_FALSE(cut->attr().has_blocks());
  MetaStore::WriteCommit more{ino, 200, 0, false, cut->attr().data_epoch(), std::nullopt, 4096};
  committed = store_->CommitWrite(more);
  ASSERT_TRUE(committed.ok());
  EXPECT_FALSE(committed->attr().has_blocks());
  // What the data servers report after a truncate is taken as it is.
  auto counted = store_->Setattr(request, /*allocated_bytes=*/4096);
  ASSERT_TRUE(counted.ok());
  EXPECT_TRUE(counted->attr().has_blocks());
  EXPECT_EQ(counted->attr().blocks(), 8u);
}

TEST_F(MetaStoreConsistencyTest, OpenAndUnlinkNeverBothThinkTheyWon) {
  // Each round: one thread opens the file by inode while another unlinks its
  // last name. Either the open fails (the file is gone) or the unlink sees
  // the open and keeps the file as an orphan — never a freed file held open.
  int orphaned = 0, refused = 0;
  for (int round = 0; round < 200; ++round) {
    uint64_t ino = File(root_, "f");
    std::atomic<bool> registered{false};
    std::atomic<bool> go{false};
    Result<pb::Inode> opened = Status(EIO, "not run");
    std::thread opener([&] {
      while (!go) {
      }
      opened = store_->OpenInode(ino, [&] { registered = true; });
    });
    go = true;
    auto unlinked = store_->Unlink(root_, "f", [&](uint64_t) { return registered.load(); });
    opener.join();
    ASSERT_TRUE(unlinked.ok());
    if (opened.ok()) {
      ASSERT_TRUE(unlinked->orphaned) << "round " << round << ": freed while open";
      ++orphaned;
      ASSERT_TRUE(store_->ReleaseOrphan(ino, NeverOpen()).ok());
    } else {
      ASSERT_EQ(opened.status().code(), ENOENT);
      ASSERT_TRUE(unlinked->freed);
      ++refused;
    }
  }
  EXPECT_EQ(orphaned + refused, 200);
}

TEST_F(MetaStoreConsistencyTest, ReleasingAnOrphanThatWasReopenedKeepsIt) {
  uint64_t ino = File(root_, "f");
  auto unlinked = store_->Unlink(root_, "f", [](uint64_t) { return true; });
  ASSERT_TRUE(unlinked.ok());
  ASSERT_TRUE(unlinked->orphaned);
  ASSERT_TRUE(store_->ReleaseOrphan(ino, [](uint64_t) { return true; }).ok());
  EXPECT_TRUE(store_->Getattr(ino).ok()) << "an orphan opened again must not be freed";
  ASSERT_TRUE(store_->ReleaseOrphan(ino, NeverOpen()).ok());
  EXPECT_EQ(store_->Getattr(ino).status().code(), ENOENT);
}

TEST_F(MetaStoreConsistencyTest, LookupOfDotFindsAFileForFileHandles) {
  uint64_t ino = File(root_, "f");
  auto self = store_->Lookup(ino, ".");
  ASSERT_TRUE(self.ok()) << self.status().ToString();
  EXPECT_EQ(self->attr().ino(), ino);
}

TEST_F(MetaStoreConsistencyTest, SessionsAreRecordedAcrossRestarts) {
  pb::SessionRecord first, second;
  first.set_volume_id(1);
  first.set_key_hash("hash of 42");
  second.set_volume_id(2);
  second.set_key_hash("hash of 7");
  ASSERT_TRUE(store_->PutSession(42, first).ok());
  ASSERT_TRUE(store_->PutSession(7, second).ok());
  Reopen();
  auto sessions = store_->Sessions();
  ASSERT_TRUE(sessions.ok());
  std::map<uint64_t, std::string> seen;
  for (const auto& [id, record] : *sessions) {
    seen[id] = std::to_string(record.volume_id()) + ":" + record.key_hash();
  }
  EXPECT_EQ(seen, (std::map<uint64_t, std::string>{{7, "2:hash of 7"}, {42, "1:hash of 42"}}));
  ASSERT_TRUE(store_->DeleteSession(42).ok());
  ASSERT_EQ(store_->Sessions()->size(), 1u);
  EXPECT_EQ(store_->Sessions()->front().first, 7u);
}

}  // namespace
}  // namespace sealfs::metadata
