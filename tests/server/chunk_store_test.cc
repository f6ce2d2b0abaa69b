// ChunkStore reads, writes, truncation, removal, and checksum enforcement.
#include "sealfs/server/chunk_store.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

namespace sealfs::server {
namespace {

class ChunkStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/sealfs-chunk-test-XXXXXX";
    dir_ = mkdtemp(pattern);
    auto opened = ChunkStore::Open(dir_);
    ASSERT_TRUE(opened.ok());
    store_ = std::move(*opened);
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  static std::string Pattern(size_t size, unsigned seed) {
    std::mt19937 random(seed);
    std::string data(size, '\0');
    for (char& c : data) c = static_cast<char>(random());
    return data;
  }
  std::string ReadAll(uint64_t ino, uint32_t index, uint32_t offset, uint32_t length) {
    std::string out;
    Status status = store_->Read(ino, index, offset, length, &out);
    EXPECT_TRUE(status.ok()) << status.ToString();
    return out;
  }
  void Corrupt(const std::string& path, off_t offset) {
    int fd = ::open(path.c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    char byte;
    ASSERT_EQ(::pread(fd, &byte, 1, offset), 1);
    byte = static_cast<char>(byte ^ 0x5a);
    ASSERT_EQ(::pwrite(fd, &byte, 1, offset), 1);
    ::close(fd);
  }

  // Where a chunk's data file lives, also while no store is open.
  static std::string ChunkPathIn(const std::string& dir, uint64_t ino, uint32_t index) {
    char buffer[64];
    std::snprintf(buffer, sizeof buffer, "/chunks/%02x/%016llx/%u.dat",
                  static_cast<unsigned>(ino & 0xff), static_cast<unsigned long long>(ino), index);
    return dir + buffer;
  }

  std::string dir_;
  std::unique_ptr<ChunkStore> store_;
};

TEST_F(ChunkStoreTest, WriteThenReadBack) {
  std::string data = Pattern(100000, 1);
  ASSERT_TRUE(store_->Write(7, 0, 0, data).ok());
  EXPECT_EQ(ReadAll(7, 0, 0, 100000), data);
  EXPECT_EQ(ReadAll(7, 0, 12345, 1000), data.substr(12345, 1000));
}

TEST_F(ChunkStoreTest, MissingChunkReadsEmpty) { EXPECT_EQ(ReadAll(1, 5, 0, 4096), ""); }

TEST_F(ChunkStoreTest, ReadPastEndIsShort) {
  ASSERT_TRUE(store_->Write(7, 0, 0, "hello").ok());
  EXPECT_EQ(ReadAll(7, 0, 0, 100), "hello");
  EXPECT_EQ(ReadAll(7, 0, 3, 100), "lo");
  EXPECT_EQ(ReadAll(7, 0, 10, 100), "");
}

TEST_F(ChunkStoreTest, UnalignedOverwritesKeepNeighbours) {
  std::string data = Pattern(3 * kChecksumBlock + 100, 2);
  ASSERT_TRUE(store_->Write(9, 1, 0, data).ok());
  std::string patch = Pattern(5000, 3);
  ASSERT_TRUE(store_->Write(9, 1, 1000, patch).ok());
  data.replace(1000, patch.size(), patch);
  EXPECT_EQ(ReadAll(9, 1, 0, static_cast<uint32_t>(data.size())), data);
  // A write past the end leaves a hole of zeros.
  ASSERT_TRUE(store_->Write(9, 1, 20000, "tail").ok());
  std::string expected = data + std::string(20000 - data.size(), '\0') + "tail";
  EXPECT_EQ(ReadAll(9, 1, 0, 30000), expected);
}

TEST_F(ChunkStoreTest, ManySmallRandomWritesMatchAModel) {
  std::string model;
  std::mt19937 random(4);
  for (int i = 0; i < 300; ++i) {
    uint32_t offset = random() % 50000;
    std::string piece = Pattern(1 + random() % 9000, i);
    ASSERT_TRUE(store_->Write(11, 0, offset, piece).ok());
    if (model.size() < offset + piece.size()) model.resize(offset + piece.size(), '\0');
    model.replace(offset, piece.size(), piece);
  }
  EXPECT_EQ(ReadAll(11, 0, 0, static_cast<uint32_t>(model.size() + 10)), model);
}

TEST_F(ChunkStoreTest, CorruptedByteIsEioNotData) {
  std::string data = Pattern(5 * kChecksumBlock, 5);
  ASSERT_TRUE(store_->Write(13, 2, 0, data).ok());
  Corrupt(store_->ChunkPath(13, 2), 3 * kChecksumBlock + 17);
  std::string out = "untouched";
  Status status = store_->Read(13, 2, 0, static_cast<uint32_t>(data.size()), &out);
  EXPECT_EQ(status.code(), EIO);
  EXPECT_TRUE(out.empty());
  // Blocks that were not touched still read.
  EXPECT_EQ(ReadAll(13, 2, 0, 2 * kChecksumBlock), data.substr(0, 2 * kChecksumBlock));
  // A partial overwrite of the bad block is refused rather than blessing it.
  EXPECT_EQ(store_->Write(13, 2, 3 * kChecksumBlock + 5, "x").code(), EIO);
}

TEST_F(ChunkStoreTest, ZeroedBlockIsDetected) {
  std::string data(2 * kChecksumBlock, 'z');
  ASSERT_TRUE(store_->Write(14, 0, 0, data).ok());
  int fd = ::open(store_->ChunkPath(14, 0).c_str(), O_RDWR);
  std::string zeros(kChecksumBlock, '\0');
  ASSERT_EQ(::pwrite(fd, zeros.data(), zeros.size(), kChecksumBlock),
            static_cast<ssize_t>(zeros.size()));
  ::close(fd);
  std::string out;
  EXPECT_EQ(store_->Read(14, 0, 0, 2 * kChecksumBlock, &out).code(), EIO);
}

TEST_F(ChunkStoreTest, TruncateFileCutsAndRemovesChunks) {
  const uint32_t chunk = 64 * 1024;
  for (uint32_t index = 0; index < 4; ++index) {
    ASSERT_TRUE(store_->Write(20, index, 0, Pattern(chunk, index)).ok());
  }
  // Cut inside chunk 1: chunk 0 stays, chunk 1 shrinks, 2 and 3 go.
  ASSERT_TRUE(store_->TruncateFile(20, chunk + 5000, chunk).ok());
  EXPECT_EQ(ReadAll(20, 0, 0, chunk), Pattern(chunk, 0));
  EXPECT_EQ(ReadAll(20, 1, 0, chunk), Pattern(chunk, 1).substr(0, 5000));
  EXPECT_EQ(ReadAll(20, 2, 0, chunk), "");
  EXPECT_FALSE(std::filesystem::exists(store_->ChunkPath(20, 3)));
  // Growing again after a cut reads zeros, not the old bytes.
  ASSERT_TRUE(store_->Write(20, 1, 9000, "x").ok());
  EXPECT_EQ(ReadAll(20, 1, 5000, 4001), std::string(4000, '\0') + "x");
}

TEST_F(ChunkStoreTest, RemoveFileFreesEverything) {
  ASSERT_TRUE(store_->Write(30, 0, 0, Pattern(10000, 1)).ok());
  ASSERT_TRUE(store_->Write(30, 7, 0, Pattern(10000, 2)).ok());
  EXPECT_EQ(store_->Usage().chunk_count, 2u);
  EXPECT_EQ(store_->Usage().used_bytes, 20000u);
  ASSERT_TRUE(store_->RemoveFile(30).ok());
  // A removed file reads as an error, not as a file of holes.
  std::string out;
  EXPECT_EQ(store_->Read(30, 0, 0, 100, &out).code(), ENOENT);
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(store_->Usage().chunk_count, 0u);
  EXPECT_EQ(store_->Usage().used_bytes, 0u);
  EXPECT_TRUE(store_->RemoveFile(30).ok());  // idempotent
}

TEST_F(ChunkStoreTest, InstanceIdAndUsageSurviveReopen) {
  std::string id = store_->instance_id();
  EXPECT_EQ(id.size(), 32u);
  ASSERT_TRUE(store_->Write(40, 0, 0, Pattern(5000, 9)).ok());
  ASSERT_TRUE(store_->FsyncFile(40).ok());
  store_.reset();
  auto reopened = ChunkStore::Open(dir_);
  ASSERT_TRUE(reopened.ok());
  EXPECT_EQ((*reopened)->instance_id(), id);
  EXPECT_EQ((*reopened)->Usage().used_bytes, 5000u);
  std::string out;
  ASSERT_TRUE((*reopened)->Read(40, 0, 0, 5000, &out).ok());
  EXPECT_EQ(out, Pattern(5000, 9));
}

TEST_F(ChunkStoreTest, LostChunkIsEioNotZeros) {
  ASSERT_TRUE(store_->Write(50, 2, 0, Pattern(9000, 1)).ok());
  ASSERT_TRUE(store_->FsyncFile(50).ok());
  store_.reset();
  ASSERT_EQ(::unlink(ChunkPathIn(dir_, 50, 2).c_str()), 0);
  auto reopened = ChunkStore::Open(dir_);
  ASSERT_TRUE(reopened.ok());
  store_ = std::move(*reopened);
  std::string out;
  Status lost = store_->Read(50, 2, 0, 100, &out);
  EXPECT_EQ(lost.code(), EIO) << lost.ToString();
  EXPECT_NE(lost.message().find("lost"), std::string::npos) << lost.message();
  EXPECT_TRUE(out.empty());
  // A chunk never written is still a hole.
  EXPECT_EQ(ReadAll(50, 3, 0, 100), "");
  // A write into the lost chunk must not turn the rest of it into zeros.
  Status rewrite = store_->Write(50, 2, 10, "back");
  EXPECT_EQ(rewrite.code(), EIO) << rewrite.ToString();
  EXPECT_EQ(store_->Read(50, 2, 0, 100, &out).code(), EIO);
  // Cutting the chunk away forgets it; then it is an ordinary hole again.
  ASSERT_TRUE(store_->TruncateFile(50, 0, 1 << 20).ok());
  EXPECT_EQ(ReadAll(50, 2, 0, 100), "");
  ASSERT_TRUE(store_->Write(50, 2, 10, "back").ok());
  EXPECT_EQ(ReadAll(50, 2, 0, 14), std::string(10, '\0') + "back");
}

TEST_F(ChunkStoreTest, StoreFromBeforeTheIndexGetsItsChunksRecorded) {
  ASSERT_TRUE(store_->Write(56, 1, 0, Pattern(100, 6)).ok());
  store_.reset();
  std::filesystem::remove_all(dir_ + "/chunkdb");
  auto reopened = ChunkStore::Open(dir_);
  ASSERT_TRUE(reopened.ok());
  reopened->reset();
  ASSERT_EQ(::unlink(ChunkPathIn(dir_, 56, 1).c_str()), 0);
  reopened = ChunkStore::Open(dir_);
  ASSERT_TRUE(reopened.ok());
  store_ = std::move(*reopened);
  std::string out;
  EXPECT_EQ(store_->Read(56, 1, 0, 100, &out).code(), EIO);
}

TEST_F(ChunkStoreTest, StaleChecksumsAreNotPairedWithANewDataFile) {
  ASSERT_TRUE(store_->Write(51, 0, 0, Pattern(3 * kChecksumBlock, 2)).ok());
  ASSERT_TRUE(store_->FsyncFile(51).ok());
  // What a drop of the chunk interrupted after unlinking the data file
  // leaves behind: no record, no data file, the old sidecar.
  std::string path = ChunkPathIn(dir_, 51, 0);
  std::string sum_path = path.substr(0, path.size() - 4) + ".sum";
  std::filesystem::copy_file(sum_path, dir_ + "/saved.sum");
  ASSERT_TRUE(store_->TruncateFile(51, 0, 1 << 20).ok());
  store_.reset();
  ASSERT_FALSE(std::filesystem::exists(path));
  std::filesystem::copy_file(dir_ + "/saved.sum", sum_path,
                             std::filesystem::copy_options::overwrite_existing);
  auto reopened = ChunkStore::Open(dir_);
  ASSERT_TRUE(reopened.ok());
  store_ = std::move(*reopened);
  // A new write past the old blocks leaves them as holes, which read as zeros.
  ASSERT_TRUE(store_->Write(51, 0, 3 * kChecksumBlock + 10, "new").ok());
  EXPECT_EQ(ReadAll(51, 0, 0, 4 * kChecksumBlock),
            std::string(3 * kChecksumBlock + 10, '\0') + "new");
}

TEST_F(ChunkStoreTest, RemovedFileIsNotRecreatedByALateWrite) {
  ASSERT_TRUE(store_->Write(52, 0, 0, Pattern(5000, 3)).ok());
  ASSERT_TRUE(store_->RemoveFile(52).ok());
  std::string dir = std::filesystem::path(ChunkPathIn(dir_, 52, 0)).parent_path();
  Status late = store_->Write(52, 1, 0, "late");
  EXPECT_EQ(late.code(), ENOENT) << late.ToString();
  EXPECT_FALSE(std::filesystem::exists(dir));
  EXPECT_EQ(store_->Usage().chunk_count, 0u);
}

TEST_F(ChunkStoreTest, WritesRacingARemovalLeaveNoChunks) {
  std::atomic<bool> removed{false};
  std::vector<std::thread> writers;
  for (uint32_t t = 0; t < 4; ++t) {
    writers.emplace_back([&, t] {
      for (uint32_t i = 0; i < 200; ++i) {
        Status status = store_->Write(53, t * 1000 + i, 0, "racing");
        if (!status.ok()) {
          EXPECT_EQ(status.code(), ENOENT) << status.ToString();
          return;
        }
      }
    });
  }
  while (store_->Usage().chunk_count < 20) std::this_thread::yield();
  ASSERT_TRUE(store_->RemoveFile(53).ok());
  removed = true;
  for (auto& writer : writers) writer.join();
  EXPECT_FALSE(
      std::filesystem::exists(std::filesystem::path(ChunkPathIn(dir_, 53, 0)).parent_path()));
  EXPECT_EQ(store_->Usage().chunk_count, 0u);
  EXPECT_EQ(store_->Usage().used_bytes, 0u);
}

TEST_F(ChunkStoreTest, FileUsageCountsOnlyWrittenChunks) {
  const uint32_t chunk = 1 << 20;
  ASSERT_TRUE(store_->Write(54, 0, 0, Pattern(10000, 4)).ok());
  ASSERT_TRUE(store_->Write(54, 5, 3000, Pattern(100, 5)).ok());
  auto all = store_->FileUsage(54, chunk, 100);
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  EXPECT_EQ(all->data_end, 5ull * chunk + 3100);
  auto blocks = [](const std::string& path) {
    struct stat st;
    EXPECT_EQ(::stat(path.c_str(), &st), 0);
    return static_cast<uint64_t>(st.st_blocks) * 512;
  };
  uint64_t first = blocks(store_->ChunkPath(54, 0));
  uint64_t sixth = blocks(store_->ChunkPath(54, 5));
  EXPECT_EQ(all->allocated_bytes, first + sixth);
  EXPECT_GE(all->allocated_bytes, 10000u);
  EXPECT_LT(all->allocated_bytes, 64u * 1024);  // sparse: not 5 MiB
  // Below chunk 5 only chunk 0 counts.
  auto below = store_->FileUsage(54, chunk, 5);
  ASSERT_TRUE(below.ok());
  EXPECT_EQ(below->data_end, 10000u);
  EXPECT_EQ(below->allocated_bytes, first);
  // A file with nothing here.
  auto none = store_->FileUsage(55, chunk, 100);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->data_end, 0u);
  EXPECT_EQ(none->allocated_bytes, 0u);
  // Truncation reports what stays.
  uint64_t allocated = 1;
  ASSERT_TRUE(store_->TruncateFile(54, 4096, chunk, &allocated).ok());
  EXPECT_EQ(allocated, blocks(store_->ChunkPath(54, 0)));
  EXPECT_LE(allocated, 8192u);
  ASSERT_TRUE(store_->TruncateFile(54, 0, chunk, &allocated).ok());
  EXPECT_EQ(allocated, 0u);
}

TEST_F(ChunkStoreTest, RangesOutsideAChunkAreRefused) {
  EXPECT_EQ(store_->Write(1, 0, kMaxChunkSize, "x").code(), EINVAL);
  EXPECT_EQ(store_->TruncateFile(1, 0, 0).code(), EINVAL);
}

TEST_F(ChunkStoreTest, WritesReportHowTheDiskSpaceChanged) {
  int64_t delta = -1;
  ASSERT_TRUE(store_->Write(60, 0, 0, Pattern(kChecksumBlock, 1), &delta).ok());
  EXPECT_GE(delta, static_cast<int64_t>(kChecksumBlock));
  // Overwriting stored bytes takes no new space.
  ASSERT_TRUE(store_->Write(60, 0, 100, "again", &delta).ok());
  EXPECT_EQ(delta, 0);
  // Filling a hole in the middle does, though the chunk does not grow.
  ASSERT_TRUE(store_->Write(60, 0, 64 * kChecksumBlock, Pattern(100, 2), &delta).ok());
  EXPECT_GT(delta, 0);
  ASSERT_TRUE(store_->Write(60, 0, 8 * kChecksumBlock, Pattern(kChecksumBlock, 3), &delta).ok());
  EXPECT_GT(delta, 0) << "a hole filled inside the chunk must count";
}

TEST_F(ChunkStoreTest, AStoreOfAnotherFormatIsRefusedByName) {
  ASSERT_TRUE(store_->Write(70, 0, 0, "kept").ok());
  store_.reset();
  auto write_format = [&](const std::string& line) {
    std::ofstream(dir_ + "/FORMAT", std::ios::trunc) << line;
  };
  // A store from before the format file existed is format 1 (chunks
  // without versions): refused, never misread.
  std::filesystem::remove(dir_ + "/FORMAT");
  auto unstamped = ChunkStore::Open(dir_);
  ASSERT_FALSE(unstamped.ok());
  EXPECT_EQ(unstamped.status().code(), ENOTSUP);
  EXPECT_NE(unstamped.status().message().find("format version 1"), std::string::npos)
      << unstamped.status().ToString();
  for (const std::string& line :
       {std::string("sealfs chunk store format 1\n"), std::string("sealfs chunk store format 3\n"),
        std::string("something else entirely\n")}) {
    write_format(line);
    auto refused = ChunkStore::Open(dir_);
    ASSERT_FALSE(refused.ok()) << line;
    EXPECT_EQ(refused.status().code(), ENOTSUP);
    EXPECT_NE(refused.status().message().find("format"), std::string::npos);
  }
  write_format("sealfs chunk store format 3\n");
  EXPECT_NE(ChunkStore::Open(dir_).status().message().find("format version 3"), std::string::npos);
  write_format("sealfs chunk store format 2\n");
  auto again = ChunkStore::Open(dir_);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  std::string out;
  ASSERT_TRUE((*again)->Read(70, 0, 0, 4, &out).ok());
  EXPECT_EQ(out, "kept");
  store_ = std::move(*again);
}

// The room a caller gives: whole checksum blocks land there once, and the
// answer is a range of it (no copy to cut the head off).
TEST_F(ChunkStoreTest, ReadLandsInTheCallersRoomAndNamesTheRange) {
  std::string data = Pattern(20000, 31);
  ASSERT_TRUE(store_->Write(60, 0, 0, data).ok());
  struct Room : ChunkStore::ReadTarget {
    std::string memory;
    int reserves = 0;
    size_t offset = 0, length = 0;
    bool kept = false;
    char* Reserve(size_t size) override {
      ++reserves;
      memory.assign(size, '\0');
      return memory.data();
    }
    void Keep(size_t at, size_t count) override {
      kept = true;
      offset = at;
      length = count;
    }
  } room;
  ASSERT_TRUE(store_->Read(60, 0, 5000, 3000, &room).ok());
  EXPECT_EQ(room.reserves, 1);
  ASSERT_TRUE(room.kept);
  EXPECT_EQ(room.memory.size() % kChecksumBlock, 0u);
  EXPECT_EQ(room.offset, 5000 % kChecksumBlock);
  EXPECT_EQ(room.memory.substr(room.offset, room.length), data.substr(5000, 3000));
  // Past the end of the data: nothing kept, nothing reserved.
  Room past;
  ASSERT_TRUE(store_->Read(60, 0, 30000, 100, &past).ok());
  EXPECT_EQ(past.reserves, 0);
  EXPECT_FALSE(past.kept);
}

}  // namespace
}  // namespace sealfs::server
