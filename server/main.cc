// sealfs-data: the data server.
#include <sys/resource.h>

#include <cstdio>

#include "sealfs/rpc/credentials.h"
#include "sealfs/rpc/durable_counters.h"
#include "sealfs/rpc/process.h"
#include "sealfs/rpc/rdma_transport.h"
#include "sealfs/server/background.h"
#include "sealfs/server/data_service.h"
#include "sealfs/server/registration.h"

using namespace sealfs;

static const char* kUsage =
    "usage: sealfs-data --target DIR [--target DIR ...] --meta HOST:PORT --cluster-key FILE\n"
    "                   [--listen 127.0.0.1:0] [--port-file FILE] [--threads N]\n"
    "                   [--heartbeat-ms MS] [--scrub-mib-per-s N] [--scrub-interval-s S]\n"
    "                   [--transport tcp|rdma|auto]   (rdma/auto: also listen over RDMA)\n"
    "                   [--metrics-address HOST:PORT [--metrics-port-file FILE]]\n"
    "  --target DIR: a storage target (one per disk); --dir DIR is the same as one --target.\n"
    "  The scrubber re-reads every chunk at N MiB/s (default 8; 0: off), a pass\n"
    "  every S seconds (default 3600).\n";

// The chunk store keeps two descriptors per cached chunk and sizes its cache
// from the soft limit, which is often a mere 1024: take all the hard limit allows.
static void RaiseDescriptorLimit() {
  struct rlimit limit;
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur >= limit.rlim_max) return;
  rlim_t wanted = limit.rlim_max;
  limit.rlim_cur = wanted;
  if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) {
    std::fprintf(stderr, "sealfs-data: cannot raise the descriptor limit to %llu\n",
                 static_cast<unsigned long long>(wanted));
  }
}

int main(int argc, char** argv) {
  Result<Flags> flags =
      Flags::Parse(argc, argv,
                   {"dir", "target", "meta", "listen", "port-file", "threads", "heartbeat-ms",
                    "transport", "scrub-mib-per-s", "scrub-interval-s", "cluster-key",
                    "metrics-address", "metrics-port-file", "help"});
  std::vector<std::string> dirs;
  if (flags.ok()) {
    dirs = flags->GetAll("dir");
    for (const std::string& dir : flags->GetAll("target")) dirs.push_back(dir);
  }
  if (!flags.ok() || flags->Has("help") || dirs.empty() || !flags->Has("meta") ||
      !flags->Has("cluster-key")) {
    if (!flags.ok()) std::fprintf(stderr, "sealfs-data: %s\n", flags.status().message().c_str());
    std::fputs(kUsage, stderr);
    return flags.ok() && flags->Has("help") ? 0 : 2;
  }
  Result<std::string> cluster_key = auth::ReadSecretFile(flags->Get("cluster-key"));
  if (!cluster_key.ok()) {
    std::fprintf(stderr, "sealfs-data: %s\n", cluster_key.status().message().c_str());
    return 2;
  }
  BlockTerminationSignals();
  RaiseDescriptorLimit();
  std::vector<std::unique_ptr<server::ChunkStore>> stores;
  std::vector<std::unique_ptr<server::StorageTarget>> target_storage;
  std::vector<server::StorageTarget*> targets;
  for (const std::string& dir : dirs) {
    auto store = server::ChunkStore::Open(dir);
    if (!store.ok()) {
      std::fprintf(stderr, "sealfs-data: %s\n", store.status().ToString().c_str());
      return 1;
    }
    stores.push_back(std::move(*store));
    target_storage.push_back(std::make_unique<server::StorageTarget>());
    target_storage.back()->store = stores.back().get();
    targets.push_back(target_storage.back().get());
  }
  auto address = rpc::ParseAddress(flags->Get("listen", "127.0.0.1:0"));
  if (!address.ok() || !rpc::ParseAddress(flags->Get("meta")).ok()) {
    std::fprintf(stderr, "sealfs-data: --listen and --meta take HOST:PORT\n");
    return 2;
  }
  auto transport = rpc::ParseTransportKind(flags->Get("transport", "tcp"));
  if (!transport.ok()) {
    std::fprintf(stderr, "sealfs-data: %s\n", transport.status().message().c_str());
    return 2;
  }
  rpc::IoThreads io(2);
  std::shared_ptr<rpc::Channel> meta = auth::AsChannel(
      auth::WithAuth(rpc::MakeTcpChannel(io, flags->Get("meta")), auth::ServerAuth(*cluster_key)));
  server::ChainView view([meta]() -> Result<pb::ClusterMapResponse> {
    pb::ClusterMapResponse map;
    Status status = rpc::Invoke(*meta, rpc::meta::kClusterMap, pb::ClusterMapRequest{}, &map, {},
                                nullptr, rpc::CallOptions{std::chrono::seconds(5)});
    if (!status.ok()) return status;
    return map;
  });
  // Client requests, changes forwarded to a middle member and everything
  // else between members have workers of their own (see RegisterHandlers).
  rpc::Dispatcher clients(static_cast<int>(flags->GetInt("threads", 16)));
  rpc::Dispatcher members(32);
  rpc::Dispatcher leaves(32);
  server::DataService service(
      targets, view, io,
      *transport == rpc::TransportKind::kTcp ? rpc::TransportKind::kTcp : rpc::TransportKind::kAuto,
      *cluster_key, dirs.front() + "/traffic.pb");
  // Metrics: totals that must survive restarts live in the first target.
  metrics::Registry registry;
  const std::string counters_file = dirs.front() + "/counters.pb";
  auto help = metrics::RequestCounterHelp("sealfs_data");
  metrics::DurableCounters counters(
      metrics::LoadTotalsFile(counters_file),
      [counters_file](const metrics::DurableCounters::Totals& totals) {
        return metrics::SaveTotalsFile(counters_file, totals);
      },
      help);
  for (rpc::Dispatcher* pool : {&clients, &members, &leaves}) {
    pool->SetObserver(metrics::RequestObserver(counters, registry, "sealfs_data"));
  }
  registry.AddCollector(
      [&](metrics::Registry& r) { server::CollectDataMetrics(r, counters, service); });
  service.RegisterHandlers(clients, members, leaves);
  server::MethodSplitter splitter(clients, members, leaves);
  rpc::Listeners listener_storage;
  auto* listener = &listener_storage;
  Status listening = listener->Listen(io, splitter, address->first, address->second, *transport);
  if (!listening.ok()) {
    std::fprintf(stderr, "sealfs-data: %s\n", listening.ToString().c_str());
    return 1;
  }
  // --metrics-address: /metrics over HTTP (its port in --metrics-port-file).
  auto metrics_server = metrics::ServeMetrics(registry, flags->Get("metrics-address"),
                                              flags->Get("metrics-port-file"));
  if (!metrics_server.ok()) {
    std::fprintf(stderr, "sealfs-data: metrics: %s\n", metrics_server.status().ToString().c_str());
    return 1;
  }
  std::string advertised = address->first + ":" + std::to_string(listener->port());
  server::Registration registration(meta, targets, view, advertised,
                                    std::chrono::milliseconds(flags->GetInt("heartbeat-ms", 2000)));
  server::Resyncer resyncer(service, [&registration] { registration.Wakeup(); });
  registration.Start([&resyncer] { return resyncer.Progress(); },
                     [&service] { return service.Stats(); },
                     [&service] { return service.SaveTraffic(); });
  resyncer.Start();
  server::Scrubber scrubber(service,
                            static_cast<uint64_t>(flags->GetInt("scrub-mib-per-s", 8)) << 20,
                            std::chrono::seconds(flags->GetInt("scrub-interval-s", 3600)));
  scrubber.Start();
  if (flags->Has("port-file")) {
    Status written =
        WriteFileAtomically(flags->Get("port-file"), std::to_string(listener->port()) + "\n");
    if (!written.ok()) {
      std::fprintf(stderr, "sealfs-data: %s\n", written.ToString().c_str());
      return 1;
    }
  }
  std::string target_list;
  for (const std::string& dir : dirs) target_list += (target_list.empty() ? "" : ", ") + dir;
  std::fprintf(stderr, "sealfs-data: serving %s on %s (%s)\n", target_list.c_str(),
               advertised.c_str(), listener->rdma() ? "tcp+rdma" : "tcp");
  int signal_number = WaitForTerminationSignal();
  std::fprintf(stderr, "sealfs-data: signal %d, shutting down\n", signal_number);
  metrics_server->reset();
  scrubber.Stop();
  resyncer.Stop();
  registration.Stop();
  listener->Stop();
  clients.Shutdown();
  members.Shutdown();
  leaves.Shutdown();
  io.Stop();
  return 0;
}
