// The handle journal: what one daemon records is what its successor finds.
#include "handle_journal.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <set>

namespace sealfs::fuse {
namespace {

class HandleJournalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Result<int> fd = HandleJournal::CreateMemory();
    ASSERT_TRUE(fd.ok()) << fd.status().ToString();
    fd_ = *fd;
  }
  void TearDown() override { close(fd_); }
  std::unique_ptr<HandleJournal> MapJournal() {
    auto journal = HandleJournal::Map(fd_);
    EXPECT_TRUE(journal.ok()) << journal.status().ToString();
    return journal.ok() ? std::move(*journal) : nullptr;
  }
  int fd_ = -1;
};

TEST_F(HandleJournalTest, HandlesAreNeverZeroAndFindOnlyLiveOnes) {
  auto journal = MapJournal();
  auto first = journal->Add(7, HandleKind::kFileRead);
  auto second = journal->Add(8, HandleKind::kDirectory);
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_NE(*first, 0u);
  EXPECT_NE(*first, *second);
  ASSERT_NE(journal->Find(*first), nullptr);
  EXPECT_EQ(journal->Find(*first)->ino.load(), 7u);
  EXPECT_EQ(journal->Find(0), nullptr);
  EXPECT_EQ(journal->Find(HandleJournal::kSlots + 1), nullptr);
  EXPECT_EQ(journal->Find(~0ull), nullptr);
  journal->Remove(*first);
  EXPECT_EQ(journal->Find(*first), nullptr);
  journal->Remove(*first);  // twice: nothing happens
  EXPECT_NE(journal->Find(*second), nullptr);
}

TEST_F(HandleJournalTest, ASuccessorFindsWhatItsPredecessorLeft) {
  uint64_t file, directory, closed;
  {
    auto predecessor = MapJournal();
    file = *predecessor->Add(100, HandleKind::kFileWrite);
    directory = *predecessor->Add(200, HandleKind::kDirectory);
    closed = *predecessor->Add(300, HandleKind::kFileRead);
    predecessor->Find(file)->value.store(12345);
    predecessor->Find(directory)->value.store(77);
    predecessor->Remove(closed);
  }
  auto successor = MapJournal();
  std::vector<HandleJournal::Live> live = successor->LiveHandles();
  ASSERT_EQ(live.size(), 2u);
  EXPECT_EQ(live[0].fh, file);
  EXPECT_EQ(live[0].ino, 100u);
  EXPECT_EQ(live[0].kind, HandleKind::kFileWrite);
  EXPECT_EQ(live[0].value, 12345u);
  EXPECT_EQ(live[1].fh, directory);
  EXPECT_EQ(live[1].kind, HandleKind::kDirectory);
  EXPECT_EQ(live[1].value, 77u);
  // New handles never reuse one still in use.
  std::set<uint64_t> taken = {file, directory};
  for (int i = 0; i < 100; ++i) {
    uint64_t fh = *successor->Add(1, HandleKind::kFileRead);
    EXPECT_TRUE(taken.insert(fh).second) << fh;
  }
}

TEST_F(HandleJournalTest, AFullJournalRefusesWithEmfileAndTakesMoreOnceOneCloses) {
  auto journal = MapJournal();
  uint64_t last = 0;
  for (uint32_t i = 0; i < HandleJournal::kSlots; ++i) {
    auto fh = journal->Add(i + 1, HandleKind::kFileRead);
    ASSERT_TRUE(fh.ok()) << i;
    last = *fh;
  }
  auto refused = journal->Add(1, HandleKind::kFileRead);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), EMFILE);
  journal->Remove(last);
  EXPECT_TRUE(journal->Add(1, HandleKind::kFileRead).ok());
}

TEST_F(HandleJournalTest, MemoryOfTheWrongSizeIsRefused) {
  ASSERT_EQ(ftruncate(fd_, 4096), 0);
  auto journal = HandleJournal::Map(fd_);
  ASSERT_FALSE(journal.ok());
  EXPECT_EQ(journal.status().code(), EINVAL);
}

}  // namespace
}  // namespace sealfs::fuse
