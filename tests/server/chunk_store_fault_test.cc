// ChunkStore under real faults: a full disk (a small tmpfs filled for real),
// writes and truncations whose system calls fail or come up short, a process
// that dies between a chunk's data and its checksums, and a descriptor limit
// lower than the chunk cache would like. Afterwards every chunk reads back
// old or new bytes, never EIO, also after the store is reopened.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <random>

#include "sealfs/server/chunk_io.h"
#include "sealfs/server/chunk_store.h"

namespace sealfs::server {
namespace {

std::string Pattern(size_t size, unsigned seed) {
  std::mt19937 random(seed);
  std::string data(size, '\0');
  for (char& c : data) c = static_cast<char>(random());
  return data;
}

class ChunkStoreFaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/sealfs-chunk-fault-XXXXXX";
    dir_ = mkdtemp(pattern);
    Reopen();
  }
  void TearDown() override {
    SetChunkIoHooks({});
    store_.reset();
    if (mounted_) ::umount2(dir_.c_str(), MNT_DETACH);
    std::filesystem::remove_all(dir_);
  }
  void Reopen() {
    store_.reset();
    auto opened = ChunkStore::Open(dir_);
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    store_ = std::move(*opened);
  }
  // Reads a whole range; a failure is reported, not data.
  std::string ReadAll(uint64_t ino, uint32_t index, uint32_t offset, uint32_t length) {
    std::string out;
    Status status = store_->Read(ino, index, offset, length, &out);
    EXPECT_TRUE(status.ok()) << status.ToString();
    return out;
  }
  // The chunk reads without error, and every byte of it is the old or the new
  // one: a write that failed or was cut short was never acknowledged, so any
  // mix of the two is a valid outcome, but nothing else is.
  void ExpectOldOrNewBytes(uint64_t ino, uint32_t index, const std::string& before,
                           const std::string& after) {
    std::string now = ReadAll(ino, index, 0, static_cast<uint32_t>(after.size() + 4096));
    ASSERT_GE(now.size(), std::min(before.size(), after.size()));
    ASSERT_LE(now.size(), std::max(before.size(), after.size()));
    for (size_t i = 0; i < now.size(); ++i) {
      bool old_byte = i < before.size() && now[i] == before[i];
      bool new_byte = i < after.size() && now[i] == after[i];
      ASSERT_TRUE(old_byte || new_byte) << "byte " << i << " is neither old nor new data";
    }
  }

  std::string dir_;
  bool mounted_ = false;
  std::unique_ptr<ChunkStore> store_;
};

// ---- A full disk, for real ----

TEST_F(ChunkStoreFaultTest, FullDiskKeepsOldDataAndWritesAgainOnceSpaceIsFree) {
  store_.reset();
  if (::mount("tmpfs", dir_.c_str(), "tmpfs", 0, "size=4m") != 0) {
    GTEST_SKIP() << "cannot mount a tmpfs (needs root): " << std::strerror(errno);
  }
  mounted_ = true;
  Reopen();
  const std::string old_data = Pattern(64 * 1024, 1);
  ASSERT_TRUE(store_->Write(1, 0, 0, old_data).ok());
  ASSERT_TRUE(store_->FsyncFile(1).ok());

  // Fill the disk until writes fail with ENOSPC.
  std::string filler_path = dir_ + "/filler";
  int filler = ::open(filler_path.c_str(), O_WRONLY | O_CREAT, 0644);
  ASSERT_GE(filler, 0);
  std::string page(4096, 'f');
  while (::write(filler, page.data(), page.size()) > 0) {
  }
  ASSERT_EQ(errno, ENOSPC);
  ::close(filler);

  // An overwrite running past the end: the part inside the last old block
  // fits, the rest does not.
  const uint32_t at = 63000;
  const std::string new_data = Pattern(256 * 1024, 2);
  Status full = store_->Write(1, 0, at, new_data);
  EXPECT_EQ(full.code(), ENOSPC) << full.ToString();
  // A new chunk cannot be created either, and leaves nothing behind that reads.
  EXPECT_EQ(store_->Write(2, 0, 0, new_data).code(), ENOSPC);
  std::string after = old_data;
  after.replace(at, after.size() - at, new_data.substr(0, after.size() - at));
  ExpectOldOrNewBytes(1, 0, old_data, after);
  EXPECT_EQ(ReadAll(1, 0, 0, at), old_data.substr(0, at));
  // A partial overwrite of the block the failed write touched still works.
  ASSERT_TRUE(store_->Write(1, 0, 63500, "z").ok());

  // Space again: the same write goes through and survives a reopen.
  ASSERT_EQ(::unlink(filler_path.c_str()), 0);
  ASSERT_TRUE(store_->Write(1, 0, at, new_data).ok());
  ASSERT_TRUE(store_->Write(2, 0, 0, new_data).ok());
  std::string expected = old_data.substr(0, at) + new_data;
  EXPECT_EQ(ReadAll(1, 0, 0, static_cast<uint32_t>(expected.size())), expected);
  Reopen();
  EXPECT_EQ(ReadAll(1, 0, 0, static_cast<uint32_t>(expected.size())), expected);
  EXPECT_EQ(ReadAll(2, 0, 0, static_cast<uint32_t>(new_data.size())), new_data);
}

// ---- Failing system calls in a live process ----

// Fails the pwrite calls to `target` files that the test picks, after letting
// `short_bytes` of the first of them through.
struct FailingWrites {
  ChunkFile target = ChunkFile::kSums;
  int error = EIO;
  size_t short_bytes = 0;  // a first short write before failing
  bool after_data = true;  // only once the data file has been written

  void Install() {
    ChunkIoHooks hooks;
    hooks.pwrite = [this](ChunkFile file, int fd, const void* buffer, size_t size,
                          off_t offset) -> ssize_t {
      if (file == ChunkFile::kData) seen_data = true;
      if (file != target || (after_data && !seen_data)) {
        return ::pwrite(fd, buffer, size, offset);
      }
      if (short_bytes > 0 && size > short_bytes) {
        size_t n = short_bytes;
        short_bytes = 0;
        return ::pwrite(fd, buffer, n, offset);
      }
      errno = error;
      return -1;
    };
    SetChunkIoHooks(std::move(hooks));
  }
  bool seen_data = false;
};

TEST_F(ChunkStoreFaultTest, FailedChecksumWriteThenShorterWriteSurvivesReopen) {
  const std::string old_data = Pattern(8192, 3);
  ASSERT_TRUE(store_->Write(5, 0, 0, old_data).ok());
  FailingWrites failing;
  failing.short_bytes = 8;
  failing.Install();
  const std::string new_data = Pattern(5 * kChecksumBlock, 4);
  EXPECT_EQ(store_->Write(5, 0, 0, new_data).code(), EIO);
  SetChunkIoHooks({});
  // A shorter write after the failure succeeds; the chunk must agree with
  // its checksums, now and after a restart.
  ASSERT_TRUE(store_->Write(5, 0, 0, "short").ok());
  std::string now = ReadAll(5, 0, 0, 1 << 20);
  ASSERT_GE(now.size(), old_data.size());
  EXPECT_EQ(now.substr(0, 5), "short");
  Reopen();
  EXPECT_EQ(ReadAll(5, 0, 0, 1 << 20), now);
}

TEST_F(ChunkStoreFaultTest, DataWriteFailingHalfwayLeavesEveryBlockReadable) {
  const std::string old_data = Pattern(6 * kChecksumBlock, 5);
  ASSERT_TRUE(store_->Write(6, 0, 0, old_data).ok());
  FailingWrites failing;
  failing.target = ChunkFile::kData;
  failing.short_bytes = 2 * kChecksumBlock + 100;
  failing.after_data = false;
  failing.Install();
  const std::string new_data = Pattern(4 * kChecksumBlock, 6);
  const uint32_t at = 1000;
  EXPECT_EQ(store_->Write(6, 0, at, new_data).code(), EIO);
  SetChunkIoHooks({});
  std::string after = old_data;
  after.replace(at, new_data.size(), new_data);
  ExpectOldOrNewBytes(6, 0, old_data, after);
  // The block the write broke off in takes partial overwrites again.
  const uint32_t broken_at = at + 2 * kChecksumBlock + 100;
  ASSERT_TRUE(store_->Write(6, 0, broken_at + 7, "p").ok());
  EXPECT_EQ(ReadAll(6, 0, broken_at + 7, 1), "p");
  Reopen();
  EXPECT_EQ(ReadAll(6, 0, broken_at + 7, 1), "p");
}

TEST_F(ChunkStoreFaultTest, TruncateFailingMidwayKeepsTheChunkReadable) {
  const uint32_t chunk_size = 1 << 20;
  const std::string old_data = Pattern(5 * kChecksumBlock, 7);
  ASSERT_TRUE(store_->Write(7, 0, 0, old_data).ok());
  // The tail checksum is written, then cutting the data fails.
  ChunkIoHooks hooks;
  hooks.ftruncate = [](ChunkFile file, int fd, off_t length) -> int {
    if (file == ChunkFile::kData) {
      errno = EIO;
      return -1;
    }
    return ::ftruncate(fd, length);
  };
  SetChunkIoHooks(std::move(hooks));
  EXPECT_EQ(store_->TruncateFile(7, 2 * kChecksumBlock + 10, chunk_size).code(), EIO);
  SetChunkIoHooks({});
  EXPECT_EQ(ReadAll(7, 0, 0, 1 << 20), old_data);
  Reopen();
  EXPECT_EQ(ReadAll(7, 0, 0, 1 << 20), old_data);
  ASSERT_TRUE(store_->TruncateFile(7, 2 * kChecksumBlock + 10, chunk_size).ok());
  EXPECT_EQ(ReadAll(7, 0, 0, 1 << 20), old_data.substr(0, 2 * kChecksumBlock + 10));
}

// ---- A crash between a chunk's data and its checksums ----

// Runs `body` in a child process that dies (exit code 42) at the first
// checksum write after a data write; returns the child's exit status.
int CrashAfterDataWrite(const std::string& dir, const std::function<void(ChunkStore&)>& body) {
  pid_t pid = ::fork();
  if (pid == 0) {
    auto store = ChunkStore::Open(dir);
    if (!store.ok()) ::_exit(1);
    bool data_written = false;
    ChunkIoHooks hooks;
    hooks.pwrite = [&](ChunkFile file, int fd, const void* buffer, size_t size,
                       off_t offset) -> ssize_t {
      if (file == ChunkFile::kData) data_written = true;
      if (file == ChunkFile::kSums && data_written) ::_exit(42);
      return ::pwrite(fd, buffer, size, offset);
    };
    SetChunkIoHooks(std::move(hooks));
    body(**store);
    ::_exit(0);  // the crash never came
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST_F(ChunkStoreFaultTest, CrashBetweenDataAndChecksumsRecoversOnReopen) {
  const std::string old_data = Pattern(6 * kChecksumBlock + 500, 8);
  ASSERT_TRUE(store_->Write(8, 3, 0, old_data).ok());
  ASSERT_TRUE(store_->FsyncFile(8).ok());  // clean on disk
  store_.reset();

  // An overwrite that also extends the chunk, torn by a crash.
  const uint32_t at = 3 * kChecksumBlock + 100;
  const std::string new_data = Pattern(5 * kChecksumBlock, 9);
  ASSERT_EQ(CrashAfterDataWrite(dir_, [&](ChunkStore& store) { store.Write(8, 3, at, new_data); }),
            42);
  Reopen();
  std::string after = old_data;
  after.resize(at + new_data.size());
  after.replace(at, new_data.size(), new_data);
  ExpectOldOrNewBytes(8, 3, old_data, after);
  // Partial overwrites of the torn blocks work.
  ASSERT_TRUE(store_->Write(8, 3, at + 10, "torn").ok());
  EXPECT_EQ(ReadAll(8, 3, at + 10, 4), "torn");
  ASSERT_TRUE(store_->FsyncFile(8).ok());
  Reopen();
  EXPECT_EQ(ReadAll(8, 3, at + 10, 4), "torn");
}

TEST_F(ChunkStoreFaultTest, CrashWritingANewChunkLeavesItReadable) {
  store_.reset();
  const std::string data = Pattern(3 * kChecksumBlock, 10);
  ASSERT_EQ(CrashAfterDataWrite(dir_, [&](ChunkStore& store) { store.Write(9, 0, 0, data); }), 42);
  Reopen();
  ExpectOldOrNewBytes(9, 0, std::string(), data);
  ASSERT_TRUE(store_->Write(9, 0, 5, "x").ok());
  EXPECT_EQ(ReadAll(9, 0, 5, 1), "x");
}

// ---- Fewer descriptors than the cache would like ----

TEST_F(ChunkStoreFaultTest, ManyChunksUnderALowDescriptorLimit) {
  store_.reset();
  pid_t pid = ::fork();
  if (pid == 0) {
    struct rlimit limit = {256, 256};
    if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) ::_exit(3);
    auto store = ChunkStore::Open(dir_);
    if (!store.ok()) ::_exit(4);
    for (uint32_t i = 0; i < 600; ++i) {
      if (!(*store)->Write(100 + i % 7, i, 0, Pattern(100, i)).ok()) ::_exit(5);
    }
    // Chunk 0 left the descriptor cache long ago. Eviction made it durable
    // and clean, so a byte flipped on disk now is caught, not taken as the
    // outcome of an interrupted write and checksummed anew.
    {
      int fd = ::open((*store)->ChunkPath(100, 0).c_str(), O_WRONLY);
      if (fd < 0 || ::pwrite(fd, "!", 1, 10) != 1) ::_exit(7);
      ::close(fd);
      std::string out;
      if ((*store)->Read(100, 0, 0, 100, &out).code() != EIO) ::_exit(8);
      fd = ::open((*store)->ChunkPath(100, 0).c_str(), O_WRONLY);
      if (fd < 0 || ::pwrite(fd, Pattern(100, 0).data() + 10, 1, 10) != 1) ::_exit(7);
      ::close(fd);
    }
    for (uint32_t i = 0; i < 600; ++i) {
      std::string out;
      if (!(*store)->Read(100 + i % 7, i, 0, 100, &out).ok() || out != Pattern(100, i)) {
        ::_exit(6);
      }
    }
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "3: setrlimit, 4: open, 5: a write failed, 6: a read "
                                       "failed, 7: cannot flip a byte, 8: an evicted chunk "
                                       "did not catch a flipped byte";
  Reopen();
  EXPECT_EQ(store_->Usage().chunk_count, 600u);
  EXPECT_EQ(ReadAll(100 + 599 % 7, 599, 0, 100), Pattern(100, 599));
}

}  // namespace
}  // namespace sealfs::server
