// sealfs: the command-line tool.
//
//   sealfs local up [--state DIR] [--mount MNT] [--data-servers N] [--replicas R]
//                   [--chunk-size BYTES]
//   sealfs local down [--state DIR]
//   sealfs local status [--state DIR]
//   sealfs status [--meta HOST:PORT]
//   sealfs volume create|set-quota|list|delete|token rotate ...
//   sealfs usage [verify] ...
//   sealfs fsck [--repair]
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

#include "cli_common.h"
#include "local_cluster.h"
#include "sealfs/client/client.h"
#include "sealfs/rpc/credentials.h"
#include "sealfs/rpc/process.h"

using namespace sealfs;
using namespace sealfs::cli;

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
    "  sealfs volume create NAME --tenant T [--quota SIZE] [--inodes N] [--stripe-width N]\n"
    "                          [--token-file PATH]\n"
    "    (SIZE like 10GiB; N like 1M; the mount token is printed once, or written to PATH)\n"
    "  sealfs volume set-quota NAME [--quota SIZE] [--inodes N]   (0: no limit)\n"
    "  sealfs volume list [--tenant T]\n"
    "  sealfs volume delete NAME [--force]   (--force: also while mounted; ends the mounts)\n"
    "  sealfs volume token rotate NAME [--token-file PATH] [--end-mounts]\n"
    "    (--end-mounts: the mounts made with the old token end too)\n"
    "  sealfs usage [--tenant T] [--volume V] [--from TIME] [--to TIME] [--period hour|day]\n"
    "               [--json|--csv]   (TIME: 2026-12-01, 2026-12-01T10:00Z, -24h, now)\n"
    "  sealfs usage verify   (recounts usage from the namespace; fails on any difference)\n"
    "  sealfs fsck [--repair]   (checks the namespace; exit 0 clean, 1 all mended, 4 problems\n"
    "                           left; --repair mends what is safe, e.g. links lost inodes\n"
    "                           into the volume's lost+found)\n"
    "  sealfs keygen FILE    (a new secret: a cluster key or an admin credential)\n"
    "  sealfs bench [--quick] [--data-servers N] [--replicas R] [--chunk-size BYTES]\n"
    "               [--results DIR] [--only TEXT]\n"
    "Without --meta, the local cluster's address is used (or $SEALFS_META). Admin\n"
    "commands use --credentials FILE, $SEALFS_CREDENTIALS, or the local cluster's\n"
    "admin.credential.\n";

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
  auto flags = Flags::Parse(
      argc, argv,
      {"state",  "mount",    "data-servers", "replicas",   "stripe-width", "chunk-size",
       "meta",   "no-mount", "transport",    "help",       "version",      "credentials",
       "tenant", "quota",    "inodes",       "token-file", "force",        "volume",
       "from",   "to",       "period",       "json",       "csv",          "repair"});
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
  if (args[0] == "volume") return cli::VolumeCommand(*flags);
  if (args[0] == "usage") return cli::UsageCommand(*flags);
  if (args[0] == "fsck") return cli::FsckCommand(*flags);
  if (args[0] == "keygen") {
    if (args.size() != 2) {
      std::fprintf(stderr, "sealfs: keygen needs a FILE\n");
      return 2;
    }
    Status written = auth::WriteSecretFile(args[1], auth::RandomSecret());
    if (!written.ok()) return Fail(written);
    std::printf("wrote a new secret to %s (readable by its owner only)\n", args[1].c_str());
    return 0;
  }
  std::fprintf(stderr, "sealfs: unknown command '%s'\n%s", args[0].c_str(), kUsage);
  return 2;
}
