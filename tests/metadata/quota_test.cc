// Quota arithmetic, the quota book, and reservations in a real MetaStore.
#include "quota.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <thread>

#include "sealfs/metadata/meta_store.h"

namespace sealfs::metadata {
namespace {

pb::Inode File(uint64_t volume, uint64_t size, uint64_t reserved = 0, uint64_t fallocated = 0) {
  pb::Inode inode;
  inode.set_volume_id(volume);
  inode.mutable_attr()->set_mode(S_IFREG | 0644);
  inode.mutable_attr()->set_size(size);
  inode.set_reserved_end(reserved);
  inode.set_fallocated_end(fallocated);
  return inode;
}

TEST(QuotaArithmetic, FilesAreChargedTheirEndRoundedUpTo4KiB) {
  EXPECT_EQ(ChargedBytes(File(1, 0)), 0u);
  EXPECT_EQ(ChargedBytes(File(1, 1)), 4096u);
  EXPECT_EQ(ChargedBytes(File(1, 4096)), 4096u);
  EXPECT_EQ(ChargedBytes(File(1, 4097)), 8192u);
  EXPECT_EQ(ChargedBytes(File(1, 100, 10000)), 12288u);     // the reservation counts
  EXPECT_EQ(ChargedBytes(File(1, 100, 0, 20000)), 20480u);  // and what fallocate reserved
  pb::Inode dir;
  dir.mutable_attr()->set_mode(S_IFDIR | 0755);
  dir.mutable_attr()->set_size(4096);
  EXPECT_EQ(ChargedBytes(dir), 0u);
}

TEST(QuotaArithmetic, ChangesAddUpPerVolumeAndCancel) {
  UsageChanges changes;
  pb::Inode before = File(1, 100), after = File(1, 5000);
  changes.Change(&before, &after);
  EXPECT_EQ(changes.by_volume().at(1), (Usage{4096, 0}));
  pb::Inode created = File(2, 0);
  changes.Change(nullptr, &created);
  EXPECT_EQ(changes.by_volume().at(2), (Usage{0, 1}));
  changes.Change(&created, nullptr);
  EXPECT_FALSE(changes.by_volume().contains(2));
  EXPECT_EQ(DecodeUsage(EncodeUsage({-5, 7})), (Usage{-5, 7}));
}

TEST(QuotaBook, GrowthIsTakenOnlyWithinTheQuotaAndShrinkingAfterwards) {
  QuotaBook book;
  book.Set(1, {{0, 1}, 10000, 3});
  UsageChanges grow;
  grow.Add(1, 8192, 1);
  ASSERT_TRUE(book.Take(grow).ok());
  EXPECT_EQ(book.Get(1).used, (Usage{8192, 2}));
  EXPECT_EQ(book.BytesLeft(1), 10000u - 8192);
  UsageChanges too_much;
  too_much.Add(1, 4096, 0);
  EXPECT_EQ(book.Take(too_much).code(), EDQUOT);
  EXPECT_EQ(book.Get(1).used, (Usage{8192, 2}));  // nothing taken
  UsageChanges inode;
  inode.Add(1, 0, 2);
  EXPECT_EQ(book.Take(inode).code(), EDQUOT);
  // Undone when the change did not commit.
  book.Untake(grow);
  EXPECT_EQ(book.Get(1).used, (Usage{0, 1}));
  // Shrinking applies only once committed, and never needs room.
  UsageChanges shrink;
  shrink.Add(1, -4096, -1);
  ASSERT_TRUE(book.Take(shrink).ok());
  EXPECT_EQ(book.Get(1).used, (Usage{0, 1}));
  book.ApplyShrink(shrink);
  EXPECT_EQ(book.Get(1).used, (Usage{-4096, 0}));
  // No quota: no limit.
  book.Set(2, {{0, 0}, 0, 0});
  UsageChanges huge;
  huge.Add(2, int64_t{1} << 50, 1 << 20);
  EXPECT_TRUE(book.Take(huge).ok());
  EXPECT_EQ(book.BytesLeft(2), UINT64_MAX);
  // A quota lowered below usage stops growth; a raised one lets it go on.
  book.Set(1, {{8192, 2}, 1 << 20, 0});
  book.SetQuota(1, 4096, 0);
  EXPECT_EQ(book.BytesLeft(1), 0u);
  UsageChanges any;
  any.Add(1, 1, 0);
  EXPECT_EQ(book.Take(any).code(), EDQUOT);
  book.SetQuota(1, 1 << 20, 0);
  EXPECT_TRUE(book.Take(any).ok());
  EXPECT_EQ(book.Get(1).used, (Usage{8193, 2}));
}

TEST(QuotaBook, ConcurrentTakersNeverPassTheQuota) {
  QuotaBook book;
  book.Set(1, {{0, 0}, 1000 * 4096, 0});
  std::atomic<int> taken{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      UsageChanges one;
      one.Add(1, 4096, 0);
      for (int i = 0; i < 500; ++i) taken += book.Take(one).ok();
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(taken.load(), 1000);
  EXPECT_EQ(book.Get(1).used.bytes, 1000 * 4096);
}

class ReservationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/sealfs-quota-test-XXXXXX";
    dir_ = mkdtemp(pattern);
    MetaStoreOptions options;
    options.path = dir_ + "/db";
    auto opened = MetaStore::Open(options);
    ASSERT_TRUE(opened.ok());
    store_ = std::move(*opened);
    auto volume = store_->CreateVolume({"v", "t", 0, 1 << 20, 10, 0, 0, {}});
    ASSERT_TRUE(volume.ok());
    volume_ = volume->first;
    auto file = store_->Mknod(volume_.root_ino(), "f", S_IFREG | 0644, 0, {}, {1});
    ASSERT_TRUE(file.ok());
    file_ = file->attr().ino();
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  uint64_t Used() { return store_->UsageOf(volume_.id()).used_bytes; }
  void ExpectRecountMatches() {
    auto recount = store_->RecountUsage();
    ASSERT_TRUE(recount.ok());
    for (const auto& volume : *recount) {
      EXPECT_EQ(volume.counted_bytes(), volume.recorded_bytes()) << volume.volume();
      EXPECT_EQ(volume.counted_inodes(), volume.recorded_inodes()) << volume.volume();
      if (volume.volume() == "v") {
        EXPECT_EQ(volume.counted_bytes(), Used());
      }
    }
  }
  std::string dir_;
  std::unique_ptr<MetaStore> store_;
  pb::Volume volume_;
  uint64_t file_ = 0;
};

TEST_F(ReservationTest, ReservationsGrowToWhatTheQuotaAllowsAndAreReleasedWhenTheyRunOut) {
  // Wanted 2 MiB, needed 100 KiB: granted as much as the 1 MiB quota allows.
  auto reserved = store_->Reserve(file_, 100 << 10, 2 << 20, 1000, 2000);
  ASSERT_TRUE(reserved.ok()) << reserved.status().ToString();
  EXPECT_EQ(reserved->reserved_end(), 1u << 20);
  EXPECT_EQ(Used(), 1u << 20);
  // Nothing more fits.
  EXPECT_EQ(store_->Reserve(file_, (1 << 20) + 1, 0, 1000, 2000).status().code(), EDQUOT);
  // Already covered: nothing changes.
  EXPECT_EQ(store_->Reserve(file_, 4096, 4096, 1000, 2000)->reserved_until_ns(), 2000);
  ExpectRecountMatches();
  // Still held at 1999; released after 2000, when no capability can use it.
  EXPECT_TRUE(store_->ExpiredReservations(1999)->empty());
  ASSERT_EQ(store_->ExpiredReservations(2001)->size(), 1u);
  ASSERT_TRUE(store_->ReleaseReservation(file_, 2001, 0).ok());
  EXPECT_EQ(Used(), 0u);
  EXPECT_TRUE(store_->ExpiredReservations(5000)->empty());
  ExpectRecountMatches();
  // Bytes written into a reservation but not committed stay charged.
  ASSERT_TRUE(store_->Reserve(file_, 100 << 10, 0, 1000, 3000).ok());
  ASSERT_TRUE(store_->ReleaseReservation(file_, 3001, 50000).ok());
  EXPECT_EQ(Used(), 53248u);  // 50000 rounded up to 4 KiB
  ExpectRecountMatches();
  pb::SetattrRequest cut;
  cut.set_ino(file_);
  cut.set_valid(pb::SETATTR_SIZE);
  ASSERT_TRUE(store_->Setattr(cut).ok());
  EXPECT_EQ(Used(), 0u);
  // Survives a restart: the book is rebuilt from the records.
  ASSERT_TRUE(store_->Reserve(file_, 8192, 8192, 1000, 5000).ok());
  store_.reset();
  MetaStoreOptions options;
  options.path = dir_ + "/db";
  store_ = std::move(*MetaStore::Open(options));
  EXPECT_EQ(Used(), 8192u);
  EXPECT_EQ(store_->UsageOf(volume_.id()).used_inodes, 2u);
}

TEST_F(ReservationTest, SizeChangesAreChargedAndCheckedAgainstTheQuota) {
  pb::SetattrRequest grow;
  grow.set_ino(file_);
  grow.set_valid(pb::SETATTR_SIZE);
  grow.set_size(600 << 10);
  ASSERT_TRUE(store_->Setattr(grow).ok());
  EXPECT_EQ(Used(), 600u << 10);
  grow.set_size((1 << 20) + 1);
  EXPECT_EQ(store_->Setattr(grow).status().code(), EDQUOT);
  EXPECT_EQ(store_->Getattr(file_)->attr().size(), 600u << 10);
  // fallocate: keeps its range charged, grows the size unless KEEP_SIZE.
  EXPECT_EQ(store_->Fallocate(file_, 0, 0, 2 << 20).status().code(), EDQUOT);
  auto kept = store_->Fallocate(file_, FALLOC_FL_KEEP_SIZE, 0, 800 << 10);
  ASSERT_TRUE(kept.ok());
  EXPECT_EQ(kept->attr().size(), 600u << 10);
  EXPECT_EQ(Used(), 800u << 10);
  // A truncate below gives the fallocated space back.
  grow.set_size(0);
  ASSERT_TRUE(store_->Setattr(grow).ok());
  EXPECT_EQ(Used(), 0u);
  ExpectRecountMatches();
  // Creating counts inodes: 10 allowed, the root and f exist.
  for (int i = 0; i < 8; ++i) {
    EXPECT_TRUE(store_->Mkdir(volume_.root_ino(), "d" + std::to_string(i), 0755, {}).ok());
  }
  EXPECT_EQ(store_->Mkdir(volume_.root_ino(), "one-too-many", 0755, {}).status().code(), EDQUOT);
  // Removing frees at once.
  ASSERT_TRUE(store_->Rmdir(volume_.root_ino(), "d0").ok());
  EXPECT_TRUE(store_->Mkdir(volume_.root_ino(), "again", 0755, {}).ok());
  ExpectRecountMatches();
}

TEST_F(ReservationTest, AFileIsCreatedWithItsFirstReservationOrWithoutOneWhenNoneFits) {
  auto reserved = store_->Mknod(volume_.root_ino(), "r", S_IFREG | 0644, 0, {}, {1}, nullptr,
                                Reservation{64 << 10, 5000});
  ASSERT_TRUE(reserved.ok());
  EXPECT_EQ(reserved->reserved_end(), 64u << 10);
  EXPECT_EQ(Used(), 64u << 10);
  ASSERT_EQ(store_->ExpiredReservations(5001)->size(), 1u);
  // No room for another: the file is still made, without a reservation.
  auto unreserved = store_->Mknod(volume_.root_ino(), "u", S_IFREG | 0644, 0, {}, {1}, nullptr,
                                  Reservation{1 << 20, 5000});
  ASSERT_TRUE(unreserved.ok()) << unreserved.status().ToString();
  EXPECT_EQ(unreserved->reserved_end(), 0u);
  EXPECT_EQ(Used(), 64u << 10);
  ExpectRecountMatches();
}

TEST_F(ReservationTest, DeletingAVolumeFreesItsOpenUnlinkedFilesAndLeavesNoUsageRecord) {
  ASSERT_TRUE(store_->Unlink(volume_.root_ino(), "f", [](uint64_t) { return true; }).ok());
  ASSERT_EQ(store_->Orphans()->size(), 1u);
  ASSERT_TRUE(store_->DeleteVolume("v").ok());
  EXPECT_TRUE(store_->Orphans()->empty());
  EXPECT_EQ(store_->Getattr(file_).status().code(), ENOENT);
  // A late change of the deleted volume's file brings no usage back.
  EXPECT_TRUE(store_->RecountUsage()->empty());
  auto again = store_->CreateVolume({"w", "t", 0, 0, 0, 0, 0, {}});
  ASSERT_TRUE(again.ok());
  ExpectRecountMatches();
}

}  // namespace
}  // namespace sealfs::metadata
