// Quotas and metering on real processes: concurrent writers stop at the
// quota with EDQUOT while neither the volume's usage nor the bytes on the
// data servers ever pass it; the same for inodes; a raised quota applies at
// once; /metrics and `sealfs usage` show exactly a known workload; the
// usage counters equal a recount after a random workload with kills.
#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <random>
#include <regex>
#include <thread>

#include "tenant_util.h"
#include "test_cluster.h"

namespace sealfs::testing {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

constexpr uint64_t kMiB = 1 << 20;

// Bytes of chunk data the data servers hold (every .dat file's length).
uint64_t StoredBytes(TestCluster& cluster, int servers) {
  uint64_t total = 0;
  for (int i = 0; i < servers; ++i) {
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(cluster.DataDir(i), ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (it->path().extension() == ".dat") total += it->file_size(ec);
    }
  }
  return total;
}

// Writes 1 MiB pieces into a new file until the volume refuses; returns
// the error that stopped it.
Status WriteUntilRefused(client::Client& c, const std::string& name, uint64_t* written) {
  auto file = c.CreateAndOpen(c.root_ino(), name, S_IFREG | 0644, pb::Caller{});
  if (!file.ok()) return file.status();
  std::string piece = Pattern(kMiB, 7);
  for (uint64_t offset = 0;; offset += kMiB) {
    Status status = WriteAt(c, *file, offset, piece);
    if (!status.ok()) {
      c.Close(file->attr().ino());
      return status;
    }
    *written += kMiB;
  }
}

TEST(Quota, ConcurrentWritersStopAtTheByteQuotaAndNeverPassIt) {
  TestCluster cluster(2);
  ASSERT_TRUE(cluster.Start());
  auto admin = cluster.Admin();
  ASSERT_TRUE(admin.ok());
  constexpr uint64_t kQuota = 100 * kMiB;
  std::string token = MakeVolume(**admin, "q/bytes", "q", kQuota);
  auto first = cluster.MountWithToken("q/bytes", token);
  auto second = cluster.MountWithToken("q/bytes", token);
  ASSERT_TRUE(first.ok() && second.ok());

  std::atomic<bool> done{false};
  std::atomic<uint64_t> peak_usage{0}, peak_stored{0};
  std::thread watcher([&] {
    while (!done) {
      peak_usage = std::max<uint64_t>(peak_usage, VolumeNamed(**admin, "q/bytes").used_bytes());
      peak_stored = std::max<uint64_t>(peak_stored, StoredBytes(cluster, 2));
      std::this_thread::sleep_for(5ms);
    }
  });
  uint64_t written_first = 0, written_second = 0;
  Status stopped_first, stopped_second;
  std::thread writer_first(
      [&] { stopped_first = WriteUntilRefused(**first, "one", &written_first); });
  std::thread writer_second(
      [&] { stopped_second = WriteUntilRefused(**second, "two", &written_second); });
  writer_first.join();
  writer_second.join();
  done = true;
  watcher.join();

  std::printf("written %llu + %llu bytes of a %llu quota; peak usage %llu, peak stored %llu\n",
              static_cast<unsigned long long>(written_first),
              static_cast<unsigned long long>(written_second),
              static_cast<unsigned long long>(kQuota),
              static_cast<unsigned long long>(peak_usage.load()),
              static_cast<unsigned long long>(peak_stored.load()));
  EXPECT_EQ(stopped_first.code(), EDQUOT) << stopped_first.ToString();
  EXPECT_EQ(stopped_second.code(), EDQUOT) << stopped_second.ToString();
  EXPECT_GT(written_first, 0u);
  EXPECT_GT(written_second, 0u);
  EXPECT_LE(written_first + written_second, kQuota);
  EXPECT_LE(peak_usage.load(), kQuota);
  EXPECT_LE(peak_stored.load(), kQuota);
  EXPECT_LE(StoredBytes(cluster, 2), kQuota);
  // Nearly all of it was usable: what is left is less than one piece per writer.
  EXPECT_GE(written_first + written_second, kQuota - 2 * kMiB);

  // A raised quota lets writing go on at once.
  ASSERT_TRUE(SetQuota(**admin, "q/bytes", 2 * kQuota, 0).ok());
  auto more = (*first)->CreateAndOpen((*first)->root_ino(), "more", S_IFREG | 0644, pb::Caller{});
  ASSERT_TRUE(more.ok());
  EXPECT_TRUE(WriteAt(**first, *more, 0, Pattern(10 * kMiB, 3)).ok());
  // A quota lowered below usage stops growth but leaves the data.
  ASSERT_TRUE(SetQuota(**admin, "q/bytes", kQuota / 2, 0).ok());
  EXPECT_EQ(WriteAt(**first, *more, 64 * kMiB, "x").code(), EDQUOT);
  EXPECT_EQ(ReadAll(**first, more->attr().ino()), Pattern(10 * kMiB, 3));
  // Deleting frees quota at once.
  uint64_t before = VolumeNamed(**admin, "q/bytes").used_bytes();
  pb::UnlinkRequest unlink;
  unlink.set_parent((*first)->root_ino());
  unlink.set_name("one");
  pb::UnlinkResponse unlinked;
  ASSERT_TRUE((*first)->Meta(rpc::meta::kUnlink, unlink, &unlinked).ok());
  EXPECT_LE(VolumeNamed(**admin, "q/bytes").used_bytes(), before - written_first);
  // An unlinked file still open stays charged until its last close.
  before = VolumeNamed(**admin, "q/bytes").used_bytes();
  unlink.set_name("more");
  ASSERT_TRUE((*first)->Meta(rpc::meta::kUnlink, unlink, &unlinked).ok());
  EXPECT_EQ(VolumeNamed(**admin, "q/bytes").used_bytes(), before);
  ASSERT_TRUE((*first)->Close(more->attr().ino()).ok());
  EXPECT_LE(VolumeNamed(**admin, "q/bytes").used_bytes(), before - 10 * kMiB);
}

// Each new file comes with a first reservation of 1 MiB; closing the file
// gives back what was not written, so a small quota holds many small files.
TEST(Quota, ClosingAFileReturnsWhatItReservedAndDidNotWrite) {
  TestCluster cluster(1);
  ASSERT_TRUE(cluster.Start());
  auto admin = cluster.Admin();
  ASSERT_TRUE(admin.ok());
  std::string token = MakeVolume(**admin, "q/small", "q", 8 * kMiB);
  auto mount = cluster.MountWithToken("q/small", token);
  ASSERT_TRUE(mount.ok());
  client::Client& c = **mount;
  const std::string page = Pattern(4096, 3);
  constexpr int kFiles = 100;  // 100 MiB of first reservations
  for (int i = 0; i < kFiles; ++i) {
    auto file = c.CreateAndOpen(c.root_ino(), "f" + std::to_string(i), S_IFREG | 0644, {});
    ASSERT_TRUE(file.ok()) << i << ": " << file.status().ToString();
    Status wrote = WriteAt(c, *file, 0, page);
    ASSERT_TRUE(wrote.ok()) << i << ": " << wrote.ToString();
    ASSERT_TRUE(c.Close(file->attr().ino()).ok()) << i;
  }
  pb::Volume volume = VolumeNamed(**admin, "q/small");
  EXPECT_EQ(volume.used_bytes(), kFiles * page.size());
  EXPECT_EQ(volume.used_inodes(), kFiles + 1u);
}

// A reservation given back at close is still checked when its capability
// expires: bytes written below it and never committed are charged then.
TEST(Quota, BytesWrittenButNotCommittedBeforeCloseAreChargedWhenTheCapabilityExpires) {
  TestCluster cluster(1);
  cluster.set_meta_args({"--capability-ttl", "2"});
  ASSERT_TRUE(cluster.Start());
  auto admin = cluster.Admin();
  ASSERT_TRUE(admin.ok());
  std::string token = MakeVolume(**admin, "q/late", "q", 64 * kMiB);
  auto mount = cluster.MountWithToken("q/late", token);
  ASSERT_TRUE(mount.ok());
  client::Client& c = **mount;
  auto file = c.CreateAndOpen(c.root_ino(), "uncommitted", S_IFREG | 0644, {});
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  int64_t delta = 0;
  std::string data = Pattern(256 * 1024, 5);
  ASSERT_TRUE(c.Write(file->attr().ino(), file->layout(), 0, data, &delta).ok());
  ASSERT_TRUE(c.Close(file->attr().ino()).ok());
  EXPECT_EQ(VolumeNamed(**admin, "q/late").used_bytes(), 0u) << "the reservation was kept";
  uint64_t used = 0;
  for (int attempt = 0; attempt < 200 && used == 0; ++attempt) {
    std::this_thread::sleep_for(100ms);
    used = VolumeNamed(**admin, "q/late").used_bytes();
  }
  EXPECT_EQ(used, data.size());
}

TEST(Quota, ConcurrentCreatorsStopAtTheInodeQuota) {
  TestCluster cluster(1);
  ASSERT_TRUE(cluster.Start());
  auto admin = cluster.Admin();
  ASSERT_TRUE(admin.ok());
  constexpr uint64_t kInodes = 60;  // the root counts as one
  std::string token = MakeVolume(**admin, "q/inodes", "q", 0, kInodes);
  auto first = cluster.MountWithToken("q/inodes", token);
  auto second = cluster.MountWithToken("q/inodes", token);
  ASSERT_TRUE(first.ok() && second.ok());
  std::atomic<int> created{0};
  std::vector<Status> stopped(2);
  auto create = [&](client::Client& c, int who) {
    for (int i = 0;; ++i) {
      std::string name = std::to_string(who) + "-" + std::to_string(i);
      Status status;
      if (i % 3 == 0) {
        pb::MkdirRequest r;
        r.set_parent(c.root_ino());
        r.set_name(name);
        r.set_mode(0755);
        pb::MkdirResponse out;
        status = c.Meta(rpc::meta::kMkdir, r, &out);
      } else if (i % 3 == 1) {
        pb::SymlinkRequest r;
        r.set_parent(c.root_ino());
        r.set_name(name);
        r.set_target("t");
        pb::SymlinkResponse out;
        status = c.Meta(rpc::meta::kSymlink, r, &out);
      } else {
        pb::MknodRequest r;
        r.set_parent(c.root_ino());
        r.set_name(name);
        r.set_mode(S_IFREG | 0644);
        pb::MknodResponse out;
        status = c.Meta(rpc::meta::kMknod, r, &out);
      }
      if (!status.ok()) {
        stopped[who] = status;
        return;
      }
      ++created;
    }
  };
  std::thread a([&] { create(**first, 0); });
  std::thread b([&] { create(**second, 1); });
  a.join();
  b.join();
  EXPECT_EQ(stopped[0].code(), EDQUOT) << stopped[0].ToString();
  EXPECT_EQ(stopped[1].code(), EDQUOT) << stopped[1].ToString();
  EXPECT_EQ(created.load(), static_cast<int>(kInodes) - 1);
  EXPECT_EQ(VolumeNamed(**admin, "q/inodes").used_inodes(), kInodes);
  // Raised: creating goes on at once.
  ASSERT_TRUE(SetQuota(**admin, "q/inodes", 0, kInodes + 1).ok());
  pb::MkdirRequest r;
  r.set_parent((*first)->root_ino());
  r.set_name("one-more");
  r.set_mode(0755);
  pb::MkdirResponse out;
  EXPECT_TRUE((*first)->Meta(rpc::meta::kMkdir, r, &out).ok());
}

// The value of the series `name{labels}` in a Prometheus text page (-1: absent).
double Scrape(const std::string& page, const std::string& series) {
  std::istringstream lines(page);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
  }
  return -1;
}

std::string Get(const std::string& port_file) {
  std::ifstream in(port_file);
  int port = 0;
  in >> port;
  httplib::Client http("127.0.0.1", port);
  auto response = http.Get("/metrics");
  return response && response->status == 200 ? response->body : "";
}

TEST(Metering, MetricsAndTheLedgerShowExactlyAKnownWorkload) {
  TestCluster cluster(2);
  cluster.set_meta_args({"--ledger-interval", "1", "--metrics-address", "127.0.0.1:0",
                         "--metrics-port-file", cluster.root() + "/meta.metrics"});
  ASSERT_TRUE(cluster.Start());
  auto admin = cluster.Admin();
  ASSERT_TRUE(admin.ok());
  std::string token = MakeVolume(**admin, "m/vol", "acme");
  auto c = cluster.MountWithToken("m/vol", token);
  ASSERT_TRUE(c.ok());
  // The ledger records the volume empty first.
  std::this_thread::sleep_for(1500ms);
  auto file = (*c)->CreateAndOpen((*c)->root_ino(), "f", S_IFREG | 0644, pb::Caller{});
  ASSERT_TRUE(file.ok());
  const std::string data = Pattern(3 * kMiB + 100, 11);
  ASSERT_TRUE(WriteAt(**c, *file, 0, data).ok());
  ASSERT_EQ(ReadAll(**c, file->attr().ino()), data);
  ASSERT_TRUE((*c)->Close(file->attr().ino()).ok());
  pb::MkdirRequest mkdir;
  mkdir.set_parent((*c)->root_ino());
  mkdir.set_name("d");
  mkdir.set_mode(0755);
  pb::MkdirResponse made;
  ASSERT_TRUE((*c)->Meta(rpc::meta::kMkdir, mkdir, &made).ok());
  const std::string labels = "{tenant=\"acme\",volume=\"m/vol\"}";

  // Writes are 4 MiB chunks: one write of 3 MiB + 100 bytes, one read.
  std::string page;
  for (int attempt = 0; attempt < 100; ++attempt) {
    page = Get(cluster.root() + "/meta.metrics");
    if (Scrape(page, "sealfs_volume_written_bytes_total" + labels) == data.size() &&
        Scrape(page, "sealfs_volume_read_bytes_total" + labels) == data.size()) {
      break;
    }
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(Scrape(page, "sealfs_volume_written_bytes_total" + labels), data.size()) << page;
  EXPECT_EQ(Scrape(page, "sealfs_volume_read_bytes_total" + labels), data.size());
  EXPECT_EQ(Scrape(page, "sealfs_volume_write_ops_total" + labels), 1);
  EXPECT_EQ(Scrape(page, "sealfs_volume_read_ops_total" + labels), 1);
  EXPECT_EQ(Scrape(page, "sealfs_volume_used_inodes" + labels), 3);
  EXPECT_EQ(Scrape(page,
                   "sealfs_volume_operations_total{op=\"Mkdir\",tenant=\"acme\",volume="
                   "\"m/vol\"}"),
            1);
  EXPECT_EQ(Scrape(page,
                   "sealfs_volume_operations_total{op=\"Mknod\",tenant=\"acme\",volume="
                   "\"m/vol\"}"),
            1);
  // Used bytes: the file's size rounded up to 4 KiB, once its reservation
  // ran out; until then its reservation counts.
  EXPECT_GE(Scrape(page, "sealfs_volume_used_bytes" + labels), (data.size() + 4095) / 4096 * 4096);

  // Counters never go back, not even across a kill -9 of the server.
  const std::string mkdirs = "sealfs_meta_requests_total{method=\"Mkdir\"}";
  const double requests_before = Scrape(page, mkdirs);
  EXPECT_GE(requests_before, 1);
  cluster.KillMeta();
  ASSERT_TRUE(cluster.StartMeta());
  ASSERT_TRUE(cluster.WaitForServersUp(2));
  std::string after = Get(cluster.root() + "/meta.metrics");
  EXPECT_GE(Scrape(after, mkdirs), requests_before) << after;
  EXPECT_EQ(Scrape(after, "sealfs_volume_written_bytes_total" + labels), data.size()) << after;

  // The ledger: bytes written and read, and the peak, over the last minute.
  std::this_thread::sleep_for(2500ms);
  std::string cli = std::string(SEALFS_CLI_BIN) + " --meta " + cluster.meta_address() +
                    " --credentials " + cluster.admin_credential_file() +
                    " usage --volume m/vol --from -5m --csv";
  FILE* pipe = popen(cli.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string csv;
  char buffer[4096];
  size_t got;
  while ((got = fread(buffer, 1, sizeof buffer, pipe)) > 0) csv.append(buffer, got);
  ASSERT_EQ(pclose(pipe), 0) << csv;
  EXPECT_NE(csv.find("\nacme,m/vol,"), std::string::npos) << csv;
  EXPECT_NE(csv.find("," + std::to_string(data.size()) + "," + std::to_string(data.size()) + ","),
            std::string::npos)
      << csv;
}

TEST(Metering, UsageVerifyPassesAfterARandomWorkloadWithKills) {
  TestCluster cluster(2);
  cluster.set_meta_args({"--capability-ttl", "2"});
  ASSERT_TRUE(cluster.Start());
  auto admin = cluster.Admin();
  ASSERT_TRUE(admin.ok());
  std::string token = MakeVolume(**admin, "v/random", "v", 512 * kMiB, 500);
  std::mt19937 random(42);
  std::vector<std::string> names;
  for (int round = 0; round < 3; ++round) {
    auto c = cluster.MountWithToken("v/random", token);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    for (int op = 0; op < 60; ++op) {
      int kind = random() % 5;
      std::string name = "f" + std::to_string(random() % 20);
      if (kind <= 1) {
        auto file = (*c)->CreateAndOpen((*c)->root_ino(), name, S_IFREG | 0644, pb::Caller{});
        if (!file.ok()) continue;  // EEXIST
        WriteAt(**c, *file, random() % (8 * kMiB), Pattern(random() % (2 * kMiB), op));
        (*c)->Close(file->attr().ino());
      } else if (kind == 2) {
        pb::LookupRequest lookup;
        lookup.set_parent((*c)->root_ino());
        lookup.set_name(name);
        pb::LookupResponse found;
        if (!(*c)->Meta(rpc::meta::kLookup, lookup, &found).ok()) continue;
        pb::SetattrRequest truncate;
        truncate.set_ino(found.attr().ino());
        truncate.set_valid(pb::SETATTR_SIZE);
        truncate.set_size(random() % (4 * kMiB));
        pb::SetattrResponse truncated;
        (*c)->Meta(rpc::meta::kSetattr, truncate, &truncated);
      } else if (kind == 3) {
        pb::UnlinkRequest unlink;
        unlink.set_parent((*c)->root_ino());
        unlink.set_name(name);
        pb::UnlinkResponse unlinked;
        (*c)->Meta(rpc::meta::kUnlink, unlink, &unlinked);
      } else {
        pb::RenameRequest rename;
        rename.set_parent((*c)->root_ino());
        rename.set_name(name);
        rename.set_new_parent((*c)->root_ino());
        rename.set_new_name("f" + std::to_string(random() % 20));
        pb::RenameResponse renamed;
        (*c)->Meta(rpc::meta::kRename, rename, &renamed);
      }
    }
    // Servers die in between: the metadata server, then a data server.
    if (round == 0) {
      cluster.KillMeta();
      ASSERT_TRUE(cluster.StartMeta());
    } else if (round == 1) {
      cluster.KillData(1);
      ASSERT_TRUE(cluster.StartData(1));
    }
    ASSERT_TRUE(cluster.WaitForServersUp(2));
  }
  // Reservations run out (2 s capabilities) and are released.
  std::this_thread::sleep_for(6s);
  std::string cli = std::string(SEALFS_CLI_BIN) + " --meta " + cluster.meta_address() +
                    " --credentials " + cluster.admin_credential_file() + " usage verify";
  EXPECT_EQ(std::system((cli + " >/dev/null").c_str()), 0);
  pb::UsageVerifyResponse verified;
  ASSERT_TRUE((*admin)->Meta(rpc::meta::kUsageVerify, pb::UsageVerifyRequest{}, &verified).ok());
  bool seen = false;
  for (const pb::VolumeRecount& volume : verified.volumes()) {
    EXPECT_EQ(volume.counted_bytes(), volume.recorded_bytes()) << volume.volume();
    EXPECT_EQ(volume.counted_inodes(), volume.recorded_inodes()) << volume.volume();
    if (volume.volume() == "v/random") {
      seen = true;
      EXPECT_GT(volume.counted_inodes(), 1u);
    }
  }
  EXPECT_TRUE(seen);
}

}  // namespace
}  // namespace sealfs::testing
