// ChunkStore reads and writes beside plain pread/pwrite on the same disk.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <random>

#include "sealfs/server/chunk_store.h"

namespace sealfs::server {
namespace {

constexpr uint32_t kChunk = 4 << 20;

struct Dir {
  Dir() {
    path = std::filesystem::current_path() / ("chunk-bench-" + std::to_string(getpid()));
    std::filesystem::create_directories(path);
  }
  ~Dir() { std::filesystem::remove_all(path); }
  std::filesystem::path path;
};

void ChunkWrite(benchmark::State& state, uint32_t size, bool random_offsets) {
  Dir dir;
  auto store = std::move(*ChunkStore::Open(dir.path.string()));
  std::string data(size, 'w');
  std::mt19937 random(1);
  uint32_t slots = kChunk / size;
  uint64_t n = 0;
  for (auto _ : state) {
    uint32_t slot = random_offsets ? random() % slots : static_cast<uint32_t>(n % slots);
    uint32_t index = random_offsets ? 0 : static_cast<uint32_t>(n / slots % 16);
    if (!store->Write(1, index, slot * size, data).ok()) state.SkipWithError("write failed");
    ++n;
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * size));
}

void ChunkRead(benchmark::State& state, uint32_t size, bool random_offsets) {
  Dir dir;
  auto store = std::move(*ChunkStore::Open(dir.path.string()));
  std::string data(kChunk, 'r');
  for (uint32_t index = 0; index < 4; ++index) store->Write(1, index, 0, data);
  std::mt19937 random(1);
  uint32_t slots = kChunk / size;
  std::string out;
  uint64_t n = 0;
  for (auto _ : state) {
    uint32_t slot = random_offsets ? random() % slots : static_cast<uint32_t>(n % slots);
    uint32_t index = static_cast<uint32_t>(n / slots % 4);
    if (!store->Read(1, index, slot * size, size, &out).ok()) state.SkipWithError("read failed");
    ++n;
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * size));
}

void PlainWrite(benchmark::State& state, uint32_t size, bool random_offsets) {
  Dir dir;
  int fd = open((dir.path / "plain").c_str(), O_RDWR | O_CREAT, 0644);
  std::string data(size, 'w');
  std::mt19937 random(1);
  uint64_t slots = 16ull * kChunk / size;
  uint64_t n = 0;
  for (auto _ : state) {
    uint64_t slot = random_offsets ? random() % (kChunk / size) : n % slots;
    if (pwrite(fd, data.data(), size, static_cast<off_t>(slot * size)) != size)
      state.SkipWithError("pwrite failed");
    ++n;
  }
  close(fd);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * size));
}

void PlainRead(benchmark::State& state, uint32_t size, bool random_offsets) {
  Dir dir;
  int fd = open((dir.path / "plain").c_str(), O_RDWR | O_CREAT, 0644);
  std::string data(4ull * kChunk, 'r');
  if (pwrite(fd, data.data(), data.size(), 0) != static_cast<ssize_t>(data.size())) std::abort();
  std::string out(size, '\0');
  std::mt19937 random(1);
  uint64_t slots = 4ull * kChunk / size;
  uint64_t n = 0;
  for (auto _ : state) {
    uint64_t slot = random_offsets ? random() % slots : n % slots;
    if (pread(fd, out.data(), size, static_cast<off_t>(slot * size)) != size)
      state.SkipWithError("pread failed");
    ++n;
  }
  close(fd);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * size));
}

BENCHMARK_CAPTURE(ChunkWrite, seq_1MiB, 1 << 20, false)->UseRealTime();
BENCHMARK_CAPTURE(PlainWrite, seq_1MiB, 1 << 20, false)->UseRealTime();
BENCHMARK_CAPTURE(ChunkRead, seq_1MiB, 1 << 20, false)->UseRealTime();
BENCHMARK_CAPTURE(PlainRead, seq_1MiB, 1 << 20, false)->UseRealTime();
BENCHMARK_CAPTURE(ChunkWrite, rand_4KiB, 4096, true)->UseRealTime();
BENCHMARK_CAPTURE(PlainWrite, rand_4KiB, 4096, true)->UseRealTime();
BENCHMARK_CAPTURE(ChunkRead, rand_4KiB, 4096, true)->UseRealTime();
BENCHMARK_CAPTURE(PlainRead, rand_4KiB, 4096, true)->UseRealTime();

}  // namespace
}  // namespace sealfs::server

BENCHMARK_MAIN();
