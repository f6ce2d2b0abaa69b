// Metadata operations in-process on RocksDB: create, lookup, getattr, and a
// full listing of a 10k-entry directory.
#include <benchmark/benchmark.h>
#include <sys/stat.h>

#include <filesystem>

#include "sealfs/metadata/meta_store.h"

namespace sealfs::metadata {
namespace {

// A store in a fresh directory on the build's disk (not tmpfs), so the
// figures include RocksDB's synced WAL writes.
struct Store {
  Store() {
    dir = std::filesystem::current_path() / ("meta-bench-" + std::to_string(getpid()));
    std::filesystem::remove_all(dir);
    MetaStoreOptions options;
    options.path = dir.string();
    store = std::move(*MetaStore::Open(options));
    root = store->CreateVolume("bench", 0, 0)->root_ino();
  }
  ~Store() {
    store.reset();
    std::filesystem::remove_all(dir);
  }
  std::filesystem::path dir;
  std::unique_ptr<MetaStore> store;
  uint64_t root = 0;
  pb::Caller caller;
  std::vector<uint32_t> servers{1, 2, 3};
};

void BM_Create(benchmark::State& state) {
  Store s;
  int64_t i = 0;
  for (auto _ : state) {
    auto made =
        s.store->Mknod(s.root, "f" + std::to_string(i++), S_IFREG | 0644, 0, s.caller, s.servers);
    if (!made.ok()) state.SkipWithError("create failed");
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Create)->UseRealTime();

void BM_Lookup(benchmark::State& state) {
  Store s;
  for (int i = 0; i < 1000; ++i)
    s.store->Mknod(s.root, "f" + std::to_string(i), S_IFREG | 0644, 0, s.caller, s.servers);
  int64_t i = 0;
  for (auto _ : state) {
    auto found = s.store->Lookup(s.root, "f" + std::to_string(i++ % 1000));
    benchmark::DoNotOptimize(found);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Lookup)->UseRealTime();

void BM_Getattr(benchmark::State& state) {
  Store s;
  std::vector<uint64_t> inos;
  for (int i = 0; i < 1000; ++i) {
    inos.push_back(
        s.store->Mknod(s.root, "f" + std::to_string(i), S_IFREG | 0644, 0, s.caller, s.servers)
            ->attr()
            .ino());
  }
  int64_t i = 0;
  for (auto _ : state) {
    auto attr = s.store->Getattr(inos[i++ % inos.size()]);
    benchmark::DoNotOptimize(attr);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Getattr)->UseRealTime();

void BM_Readdir10k(benchmark::State& state) {
  Store s;
  for (int i = 0; i < 10000; ++i) {
    s.store->Mknod(s.root, "entry-" + std::to_string(i), S_IFREG | 0644, 0, s.caller, s.servers);
  }
  for (auto _ : state) {
    uint64_t cookie = 0;
    size_t entries = 0;
    for (;;) {
      auto page = s.store->Readdir(s.root, cookie, 1024, true);
      for (const auto& entry : page->entries()) cookie = entry.cookie();
      entries += static_cast<size_t>(page->entries_size());
      if (page->end()) break;
    }
    if (entries != 10002) state.SkipWithError("wrong entry count");
  }
  state.SetItemsProcessed(state.iterations() * 10000);
}
BENCHMARK(BM_Readdir10k)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace sealfs::metadata

BENCHMARK_MAIN();
