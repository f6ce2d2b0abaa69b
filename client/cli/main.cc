// sealfs: the command-line tool.
//
//   sealfs local up [--state DIR] [--mount MNT] [--data-servers N] [--replicas R]
//                   [--chunk-size BYTES]
//   sealfs local down [--state DIR]
//   sealfs local status [--state DIR]
//   sealfs status [--meta HOST:PORT]
//   sealfs volume create|list|delete [NAME] [--meta HOST:PORT]
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "local_cluster.h"
#include "sealfs/client/client.h"
#include "sealfs/rpc/process.h"

using namespace sealfs;

namespace {

const char* kUsage =
    "usage:\n"
    "  sealfs local up [--state DIR] [--mount MNT] [--data-servers N] [--replicas R]\n"
    "                  [--chunk-size BYTES] [--no-mount]\n"
    "    (--replicas: copies of every chunk, 1-3, chosen when the cluster is created;\n"
    "     default 2 with at least two data servers)\n"
    "  sealfs local down [--state DIR]\n"
    "  sealfs local status [--state DIR]\n"
    "  sealfs status [--meta HOST:PORT]\n"
    "  sealfs volume create NAME [--stripe-width N] [--meta HOST:PORT]\n"
    "    (--stripe-width: chains each file stripes over, 1-16; default all, up to 16)\n"
    "  sealfs volume list [--meta HOST:PORT]\n"
    "  sealfs volume delete NAME [--meta HOST:PORT]\n"
    "  sealfs bench [--quick] [--data-servers N] [--replicas R] [--chunk-size BYTES]\n"
    "               [--results DIR] [--only TEXT]\n"
    "Without --meta, the local cluster's address is used (or $SEALFS_META).\n";

const std::string kDefaultState = "/var/lib/sealfs/local";

int Fail(const Status& status) {
  std::fprintf(stderr, "sealfs: %s\n", status.ToString().c_str());
  return 1;
}

std::string MetaAddress(const Flags& flags) {
  if (flags.Has("meta")) return flags.Get("meta");
  if (const char* env = std::getenv("SEALFS_META")) return env;
  std::string local = cli::LocalMetaAddress(flags.Get("state", kDefaultState));
  return local.empty() ? "127.0.0.1:7400" : local;
}

Result<std::unique_ptr<client::Client>> Admin(const Flags& flags) {
  client::ClientOptions options;
  options.meta_address = MetaAddress(flags);
  options.volume = "";
  options.timeout = std::chrono::seconds(10);
  auto connected = client::Client::Connect(options);
  if (!connected.ok()) {
    return Status(connected.status().code(), "cannot reach metadata server " +
                                                 options.meta_address + ": " +
                                                 connected.status().ToString());
  }
  return connected;
}

std::string HumanBytes(uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1024 && unit < 5) {
    value /= 1024;
    ++unit;
  }
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, unit == 0 ? "%.0f %s" : "%.1f %s", value, units[unit]);
  return buffer;
}

// The chain table: each chain with its version and members; returns how
// many chains are degraded (a member not serving, or the chain lost).
int PrintChains(const pb::ClusterMapResponse& map) {
  std::map<uint32_t, uint32_t> server_of;
  for (const pb::Target& target : map.targets()) server_of[target.id()] = target.server_id();
  std::printf("%-6s %-8s %s\n", "CHAIN", "VERSION", "MEMBERS (target@server state)");
  int degraded = 0;
  for (const pb::Chain& chain : map.chains()) {
    std::string members;
    bool whole = !chain.lost();
    for (const pb::ChainMember& member : chain.members()) {
      char text[96];
      std::snprintf(text, sizeof text, "%st%u@%u %s", members.empty() ? "" : ", ",
                    member.target_id(), server_of[member.target_id()], member.state().c_str());
      members += text;
      if (member.state() == "syncing") {
        std::snprintf(text, sizeof text, " %llu/%llu",
                      static_cast<unsigned long long>(member.synced_chunks()),
                      static_cast<unsigned long long>(member.total_chunks()));
        members += text;
      }
      whole = whole && member.state() == "serving";
    }
    if (chain.lost()) members += "  (lost: no member holds its data)";
    degraded += !whole;
    std::printf("%-6u %-8llu %s\n", chain.id(), static_cast<unsigned long long>(chain.version()),
                members.c_str());
  }
  std::printf("replication: %u copies, %d chains, %d degraded\n", map.replicas(), map.chains_size(),
              degraded);
  // What the servers did for replication, in plain numbers for scripts.
  std::printf("%-4s %14s %16s %14s %12s %14s\n", "ID", "FORWARDED", "FORWARDED_BYTES",
              "WHOLE_COPIES", "REPAIRED", "SCRUBBED_BYTES");
  for (const auto& server : map.servers()) {
    const pb::ReplicationStats& r = server.replication();
    auto n = [](uint64_t value) { return static_cast<unsigned long long>(value); };
    std::printf("%-4u %14llu %16llu %14llu %12llu %14llu\n", server.id(), n(r.forwarded_writes()),
                n(r.forwarded_bytes()), n(r.whole_chunk_copies()), n(r.repaired_chunks()),
                n(r.scrubbed_bytes()));
  }
  return degraded;
}

int ClusterStatus(const Flags& flags) {
  auto admin = Admin(flags);
  if (!admin.ok()) return Fail(admin.status());
  auto map = (*admin)->RefreshClusterMap();
  if (!map.ok()) return Fail(map.status());
  std::printf("metadata server %s, cluster map version %llu\n", MetaAddress(flags).c_str(),
              static_cast<unsigned long long>(map->version()));
  std::printf("%-4s %-22s %-6s %12s %12s %12s %10s\n", "ID", "ADDRESS", "STATE", "CAPACITY", "USED",
              "FREE", "CHUNKS");
  uint64_t capacity = 0, used = 0, free = 0;
  int down = 0;
  for (const auto& server : map->servers()) {
    std::printf("%-4u %-22s %-6s %12s %12s %12s %10llu\n", server.id(), server.address().c_str(),
                server.state().c_str(), HumanBytes(server.capacity_bytes()).c_str(),
                HumanBytes(server.used_bytes()).c_str(), HumanBytes(server.free_bytes()).c_str(),
                static_cast<unsigned long long>(server.chunk_count()));
    capacity += server.capacity_bytes();
    used += server.used_bytes();
    free += server.free_bytes();
    down += server.state() != "up";
  }
  // Transport counters, in plain numbers so scripts can read them.
  std::printf("%-4s %12s %14s %12s %12s %14s %12s %14s\n", "ID", "TCP_MSGS", "TCP_BYTES",
              "RDMA_MSGS", "RDMA_READS", "READ_BYTES", "RDMA_WRITES", "WRITE_BYTES");
  for (const auto& server : map->servers()) {
    auto n = [](uint64_t value) { return static_cast<unsigned long long>(value); };
    std::printf("%-4u %12llu %14llu %12llu %12llu %14llu %12llu %14llu\n", server.id(),
                n(server.tcp().messages_sent()), n(server.tcp().bytes_sent()),
                n(server.rdma().messages_sent()), n(server.rdma().rdma_read_ops()),
                n(server.rdma().rdma_read_bytes()), n(server.rdma().rdma_write_ops()),
                n(server.rdma().rdma_write_bytes()));
  }
  int degraded = PrintChains(*map);
  pb::StatfsResponse statfs;
  (*admin)->Meta(rpc::meta::kStatfs, pb::StatfsRequest{}, &statfs);
  pb::VolumeListResponse volumes;
  (*admin)->Meta(rpc::meta::kVolumeList, pb::VolumeListRequest{}, &volumes);
  std::printf("%d data servers (%d down), %s stored, inodes in use: %llu, volumes: %d\n",
              map->servers_size(), down, HumanBytes(used).c_str(),
              static_cast<unsigned long long>(statfs.used_inodes()), volumes.volumes_size());
  return down == 0 && degraded == 0 ? 0 : 1;
}

int Volume(const Flags& flags) {
  const auto& args = flags.positional();
  if (args.size() < 2) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  auto admin = Admin(flags);
  if (!admin.ok()) return Fail(admin.status());
  const std::string& verb = args[1];
  if (verb == "list") {
    pb::VolumeListResponse response;
    Status status = (*admin)->Meta(rpc::meta::kVolumeList, pb::VolumeListRequest{}, &response);
    if (!status.ok()) return Fail(status);
    std::printf("%-6s %-32s %-20s %s\n", "ID", "NAME", "ROOT INODE", "CREATED");
    for (const auto& volume : response.volumes()) {
      time_t created = static_cast<time_t>(volume.created_ns() / 1'000'000'000);
      char when[32];
      std::strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", std::gmtime(&created));
      std::printf("%-6llu %-32s %-20llu %s\n", static_cast<unsigned long long>(volume.id()),
                  volume.name().c_str(), static_cast<unsigned long long>(volume.root_ino()), when);
    }
    return 0;
  }
  if (args.size() < 3) {
    std::fprintf(stderr, "sealfs: volume %s needs a NAME\n", verb.c_str());
    return 2;
  }
  if (verb == "create") {
    pb::VolumeCreateRequest request;
    request.set_name(args[2]);
    long long width = flags.GetInt("stripe-width", 0);
    if (width < 0 || width > 16) {
      std::fprintf(stderr, "sealfs: --stripe-width is 1 to 16 chains (0: all, up to 16)\n");
      return 2;
    }
    request.set_stripe_width(static_cast<uint32_t>(width));
    pb::VolumeCreateResponse response;
    Status status = (*admin)->Meta(rpc::meta::kVolumeCreate, request, &response);
    if (!status.ok()) return Fail(status);
    std::printf("created volume '%s' (id %llu); mount it with: sealfs-fuse %s/%s MOUNTPOINT\n",
                args[2].c_str(), static_cast<unsigned long long>(response.volume().id()),
                MetaAddress(flags).c_str(), args[2].c_str());
    return 0;
  }
  if (verb == "delete") {
    pb::VolumeDeleteRequest request;
    request.set_name(args[2]);
    pb::VolumeDeleteResponse response;
    Status status = (*admin)->Meta(rpc::meta::kVolumeDelete, request, &response);
    if (!status.ok()) return Fail(status);
    std::printf("deleted volume '%s'\n", args[2].c_str());
    return 0;
  }
  std::fprintf(stderr, "sealfs: unknown volume command '%s'\n", verb.c_str());
  return 2;
}

int Local(const Flags& flags) {
  const auto& args = flags.positional();
  if (args.size() < 2) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  cli::LocalClusterOptions options;
  options.state_dir = flags.Get("state", kDefaultState);
  options.mountpoint = flags.Get("mount", options.mountpoint);
  options.data_servers = static_cast<int>(flags.GetInt("data-servers", 3));
  options.replicas = static_cast<int>(flags.GetInt("replicas", options.data_servers >= 2 ? 2 : 1));
  options.chunk_size = static_cast<uint32_t>(flags.GetInt("chunk-size", 4 << 20));
  options.mount = !flags.Has("no-mount");
  options.transport = flags.Get("transport", "tcp");
  Status status;
  if (args[1] == "up")
    status = cli::LocalUp(options);
  else if (args[1] == "down")
    status = cli::LocalDown(options);
  else if (args[1] == "status")
    status = cli::LocalStatus(options);
  else {
    std::fprintf(stderr, "sealfs: unknown local command '%s'\n", args[1].c_str());
    return 2;
  }
  return status.ok() ? 0 : Fail(status);
}

}  // namespace

// Runs the benchmark harness, installed next to us or in this source tree.
int Bench(int argc, char** argv) {
  std::error_code ec;
  std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  std::vector<std::string> candidates = {
      (self.parent_path().parent_path() / "lib" / "sealfs" / "bench-run").string(),
      std::string(SEALFS_SOURCE_DIR) + "/bench/run"};
  for (const std::string& harness : candidates) {
    if (access(harness.c_str(), X_OK) != 0) continue;
    std::vector<char*> args{const_cast<char*>(harness.c_str())};
    for (int i = 2; i < argc; ++i) args.push_back(argv[i]);
    args.push_back(nullptr);
    execv(harness.c_str(), args.data());
    std::fprintf(stderr, "sealfs: cannot run %s: %s\n", harness.c_str(), std::strerror(errno));
    return 1;
  }
  std::fprintf(stderr, "sealfs: the benchmark harness is not installed (looked for %s)\n",
               candidates[0].c_str());
  return 1;
}

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  if (argc >= 2 && std::string(argv[1]) == "bench") return Bench(argc, argv);
  auto flags = Flags::Parse(argc, argv,
                            {"state", "mount", "data-servers", "replicas", "stripe-width",
                             "chunk-size", "meta", "no-mount", "transport", "help", "version"});
  if (!flags.ok()) {
    std::fprintf(stderr, "sealfs: %s\n%s", flags.status().message().c_str(), kUsage);
    return 2;
  }
  if (flags->Has("version")) {
    std::printf("sealfs %s\n", SEALFS_VERSION);
    return 0;
  }
  const auto& args = flags->positional();
  if (flags->Has("help") || args.empty()) {
    std::fputs(kUsage, flags->Has("help") ? stdout : stderr);
    return flags->Has("help") ? 0 : 2;
  }
  if (args[0] == "local") return Local(*flags);
  if (args[0] == "status") return ClusterStatus(*flags);
  if (args[0] == "volume") return Volume(*flags);
  std::fprintf(stderr, "sealfs: unknown command '%s'\n%s", args[0].c_str(), kUsage);
  return 2;
}
