// sealfs-data: the data server.
#include <sys/resource.h>

#include <cstdio>

#include "sealfs/rpc/process.h"
#include "sealfs/rpc/rdma_transport.h"
#include "sealfs/server/data_service.h"

using namespace sealfs;

static const char* kUsage =
    "usage: sealfs-data --dir DIR --meta HOST:PORT [--listen 127.0.0.1:0]\n"
    "                   [--port-file FILE] [--threads N] [--heartbeat-ms MS]\n"
    "                   [--transport tcp|rdma|auto]   (rdma/auto: also listen over RDMA)\n";

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
  Result<Flags> flags = Flags::Parse(
      argc, argv,
      {"dir", "meta", "listen", "port-file", "threads", "heartbeat-ms", "transport", "help"});
  if (!flags.ok() || flags->Has("help") || !flags->Has("dir") || !flags->Has("meta")) {
    if (!flags.ok()) std::fprintf(stderr, "sealfs-data: %s\n", flags.status().message().c_str());
    std::fputs(kUsage, stderr);
    return flags.ok() && flags->Has("help") ? 0 : 2;
  }
  BlockTerminationSignals();
  RaiseDescriptorLimit();
  auto store = server::ChunkStore::Open(flags->Get("dir"));
  if (!store.ok()) {
    std::fprintf(stderr, "sealfs-data: %s\n", store.status().ToString().c_str());
    return 1;
  }
  auto address = rpc::ParseAddress(flags->Get("listen", "127.0.0.1:0"));
  if (!address.ok() || !rpc::ParseAddress(flags->Get("meta")).ok()) {
    std::fprintf(stderr, "sealfs-data: --listen and --meta take HOST:PORT\n");
    return 2;
  }
  rpc::IoThreads io(2);
  rpc::Dispatcher dispatcher(static_cast<int>(flags->GetInt("threads", 16)));
  server::DataService service(**store);
  service.RegisterHandlers(dispatcher);
  auto transport = rpc::ParseTransportKind(flags->Get("transport", "tcp"));
  if (!transport.ok()) {
    std::fprintf(stderr, "sealfs-data: %s\n", transport.status().message().c_str());
    return 2;
  }
  rpc::Listeners listener_storage;
  auto* listener = &listener_storage;
  Status listening = listener->Listen(io, dispatcher, address->first, address->second, *transport);
  if (!listening.ok()) {
    std::fprintf(stderr, "sealfs-data: %s\n", listening.ToString().c_str());
    return 1;
  }
  std::string advertised = address->first + ":" + std::to_string(listener->port());
  server::Registration registration(io, **store, flags->Get("meta"), advertised,
                                    std::chrono::milliseconds(flags->GetInt("heartbeat-ms", 2000)));
  registration.Start();
  if (flags->Has("port-file")) {
    Status written =
        WriteFileAtomically(flags->Get("port-file"), std::to_string(listener->port()) + "\n");
    if (!written.ok()) {
      std::fprintf(stderr, "sealfs-data: %s\n", written.ToString().c_str());
      return 1;
    }
  }
  std::fprintf(stderr, "sealfs-data: serving %s on %s (%s)\n", flags->Get("dir").c_str(),
               advertised.c_str(), listener->rdma() ? "tcp+rdma" : "tcp");
  int signal_number = WaitForTerminationSignal();
  std::fprintf(stderr, "sealfs-data: signal %d, shutting down\n", signal_number);
  registration.Stop();
  listener->Stop();
  dispatcher.Shutdown();
  io.Stop();
  return 0;
}
