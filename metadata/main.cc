// sealfs-meta: the metadata server.
#include <cstdio>
#include <filesystem>

#include "sealfs/metadata/meta_service.h"
#include "sealfs/rpc/credentials.h"
#include "sealfs/rpc/durable_counters.h"
#include "sealfs/rpc/process.h"
#include "sealfs/rpc/rdma_transport.h"

using namespace sealfs;

static const char* kUsage =
    "usage: sealfs-meta --db DIR --cluster-key FILE --admin-credential FILE\n"
    "                   [--listen 127.0.0.1:7400] [--port-file FILE]\n"
    "                   [--chunk-size BYTES] [--threads N]\n"
    "                   [--create-volume NAME --volume-token-file FILE]\n"
    "                                                 (makes the volume if missing, tenant\n"
    "                                                  'default', and writes its token)\n"
    "                   [--capability-ttl SECONDS]    (default 30)\n"
    "                   [--ledger-interval SECONDS]   (usage recorded for billing; default 60)\n"
    "                   [--metrics-address HOST:PORT [--metrics-port-file FILE]]\n"
    "                                                 (Prometheus metrics at /metrics)\n"
    "                   [--transport tcp|rdma|auto]   (rdma/auto: also listen over RDMA)\n"
    "                   [--session-timeout SECONDS]   (a silent client's open files are\n"
    "                                                  released after it; default 30)\n"
    "                   [--server-timeout SECONDS]    (a data server's lease: silent for\n"
    "                                                  longer, it leaves its chains; default 10)\n"
    "                   [--replicas 1|2|3]            (copies of every chunk, for a new\n"
    "                                                  cluster; default 1)\n";

int main(int argc, char** argv) {
  Result<Flags> flags =
      Flags::Parse(argc, argv,
                   {"db", "listen", "port-file", "chunk-size", "create-volume", "threads",
                    "transport", "session-timeout", "server-timeout", "replicas", "cluster-key",
                    "admin-credential", "volume-token-file", "capability-ttl", "ledger-interval",
                    "metrics-address", "metrics-port-file", "help"});
  if (!flags.ok() || flags->Has("help") || !flags->Has("db") || !flags->Has("cluster-key") ||
      !flags->Has("admin-credential")) {
    if (!flags.ok()) std::fprintf(stderr, "sealfs-meta: %s\n", flags.status().message().c_str());
    std::fputs(kUsage, stderr);
    return flags.ok() && flags->Has("help") ? 0 : 2;
  }
  BlockTerminationSignals();
  std::error_code ec;
  std::filesystem::create_directories(flags->Get("db"), ec);
  metadata::MetaStoreOptions store_options;
  store_options.path = flags->Get("db");
  long long chunk_size = flags->GetInt("chunk-size", metadata::kDefaultChunkSize);
  if (chunk_size < metadata::kMinChunkSize || chunk_size > (64 << 20) ||
      (chunk_size & (chunk_size - 1)) != 0) {
    std::fprintf(stderr, "sealfs-meta: --chunk-size must be a power of two in 256 KiB..64 MiB\n");
    return 2;
  }
  store_options.chunk_size = static_cast<uint32_t>(chunk_size);
  auto store = metadata::MetaStore::Open(store_options);
  if (!store.ok()) {
    std::fprintf(stderr, "sealfs-meta: %s\n", store.status().ToString().c_str());
    return 1;
  }
  Result<std::string> cluster_key = auth::ReadSecretFile(flags->Get("cluster-key"));
  Result<std::string> admin_credential = auth::ReadSecretFile(flags->Get("admin-credential"));
  if (!cluster_key.ok() || !admin_credential.ok()) {
    std::fprintf(stderr, "sealfs-meta: %s\n",
                 (cluster_key.ok() ? admin_credential : cluster_key).status().message().c_str());
    return 2;
  }
  if (flags->Has("create-volume")) {
    std::string name = flags->Get("create-volume");
    if (!flags->Has("volume-token-file")) {
      std::fprintf(stderr, "sealfs-meta: --create-volume needs --volume-token-file\n");
      return 2;
    }
    if (!(*store)->GetVolume(name).ok()) {
      metadata::MetaStore::VolumeSpec spec;
      spec.name = name;
      spec.tenant = "default";
      auto volume = (*store)->CreateVolume(spec);
      Status written = volume.ok()
                           ? auth::WriteSecretFile(flags->Get("volume-token-file"), volume->second)
                           : volume.status();
      if (!written.ok()) {
        std::fprintf(stderr, "sealfs-meta: %s\n", written.ToString().c_str());
        return 1;
      }
    }
  }
  rpc::IoThreads io(2);
  rpc::Dispatcher dispatcher(static_cast<int>(flags->GetInt("threads", 16)));
  metadata::MetaServiceOptions service_options;
  long long session_timeout = flags->GetInt("session-timeout", 30);
  long long server_timeout = flags->GetInt("server-timeout", 10);
  if (session_timeout < 1 || session_timeout > 86400 || server_timeout < 1 ||
      server_timeout > 86400) {
    std::fprintf(stderr, "sealfs-meta: timeouts must be 1..86400 seconds\n");
    return 2;
  }
  service_options.session_timeout = std::chrono::seconds(session_timeout);
  service_options.server_timeout = std::chrono::seconds(server_timeout);
  long long replicas = flags->GetInt("replicas", 1);
  if (replicas < 1 || replicas > 3) {
    std::fprintf(stderr, "sealfs-meta: --replicas must be 1, 2 or 3\n");
    return 2;
  }
  service_options.replicas = static_cast<uint32_t>(replicas);
  service_options.replicas_given = flags->Has("replicas");
  service_options.cluster_key = *cluster_key;
  service_options.admin_hash = auth::HashSecret(*admin_credential);
  long long capability_ttl = flags->GetInt("capability-ttl", 30);
  long long ledger_interval = flags->GetInt("ledger-interval", 60);
  if (capability_ttl < 2 || capability_ttl > 3600 || ledger_interval < 1 ||
      ledger_interval > 86400) {
    std::fprintf(stderr,
                 "sealfs-meta: --capability-ttl is 2..3600 s, --ledger-interval 1..86400 s\n");
    return 2;
  }
  service_options.capability_ttl = std::chrono::seconds(capability_ttl);
  service_options.ledger_interval = std::chrono::seconds(ledger_interval);
  metadata::MetaService service(**store, io, service_options);
  // Metrics: totals that must survive restarts live in the store.
  metrics::Registry registry;
  Result<pb::CounterSnapshot> saved_counters = (*store)->LoadCounters();
  if (!saved_counters.ok()) {
    std::fprintf(stderr, "sealfs-meta: %s\n", saved_counters.status().ToString().c_str());
    return 1;
  }
  auto help = metrics::RequestCounterHelp("sealfs_meta");
  help["sealfs_volume_operations_total"] = "Metadata operations of a volume's mounts, by kind.";
  metrics::DurableCounters counters(
      {saved_counters->totals().begin(), saved_counters->totals().end()},
      [store = store->get()](const metrics::DurableCounters::Totals& totals) {
        pb::CounterSnapshot snapshot;
        snapshot.mutable_totals()->insert(totals.begin(), totals.end());
        return store->SaveCounters(snapshot);
      },
      help);
  dispatcher.SetObserver(metrics::RequestObserver(counters, registry, "sealfs_meta"));
  service.AttachMetrics(registry, counters);
  service.RegisterHandlers(dispatcher);
  // --metrics-address: /metrics over HTTP (its port in --metrics-port-file).
  auto metrics_server = metrics::ServeMetrics(registry, flags->Get("metrics-address"),
                                              flags->Get("metrics-port-file"));
  if (!metrics_server.ok()) {
    std::fprintf(stderr, "sealfs-meta: metrics: %s\n", metrics_server.status().ToString().c_str());
    return 1;
  }
  auto address = rpc::ParseAddress(flags->Get("listen", "127.0.0.1:7400"));
  auto transport = rpc::ParseTransportKind(flags->Get("transport", "tcp"));
  if (!address.ok() || !transport.ok()) {
    std::fprintf(stderr, "sealfs-meta: %s\n",
                 (address.ok() ? transport.status() : address.status()).message().c_str());
    return 2;
  }
  rpc::Listeners server_storage;
  auto* server = &server_storage;
  Status listening = server->Listen(io, dispatcher, address->first, address->second, *transport);
  if (!listening.ok()) {
    std::fprintf(stderr, "sealfs-meta: %s\n", listening.ToString().c_str());
    return 1;
  }
  service.Start();
  if (flags->Has("port-file")) {
    Status written =
        WriteFileAtomically(flags->Get("port-file"), std::to_string(server->port()) + "\n");
    if (!written.ok()) {
      std::fprintf(stderr, "sealfs-meta: %s\n", written.ToString().c_str());
      return 1;
    }
  }
  std::fprintf(stderr, "sealfs-meta: serving %s on %s:%u (%s)\n", flags->Get("db").c_str(),
               address->first.c_str(), server->port(), server->rdma() ? "tcp+rdma" : "tcp");
  int signal_number = WaitForTerminationSignal();
  std::fprintf(stderr, "sealfs-meta: signal %d, shutting down\n", signal_number);
  metrics_server->reset();
  server->Stop();
  service.Stop();
  dispatcher.Shutdown();
  io.Stop();
  return 0;
}
