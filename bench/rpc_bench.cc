// RPC round trip (handler on a worker and inline) and 1 MiB payload throughput over loopback TCP
// (and RDMA where a device exists), each beside a bare Asio echo over a blocking socket as the
// baseline, and 1 MiB replies to several connections at once.
#include <benchmark/benchmark.h>

#include <array>
#include <asio.hpp>
#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include "sealfs/rpc/methods.h"
#include "sealfs/rpc/rdma_transport.h"
#include "sealfs/rpc/tcp_transport.h"

namespace sealfs::rpc {
namespace {

constexpr size_t kBulk = 1 << 20;

// Where RDMA benchmarks run: an address on an RDMA device (the test VM sets
// it); without one they are skipped.
std::string RdmaAddress() {
  const char* address = std::getenv("SEALFS_RDMA_TEST_ADDR");
  std::string reason;
  return address && RdmaDeviceAvailable(&reason) ? address : "";
}

// A SealFS service with a no-op method, a payload sink and a payload source.
struct SealfsServer {
  explicit SealfsServer(TransportKind kind = TransportKind::kTcp) {
    dispatcher.Register(
        data::kRead, {[](const pb::ReadRequest& req, pb::ReadResponse*, RequestContext& context) {
          // As the data server reads a chunk: into the room the transport
          // gives (registered memory over RDMA, sent without a copy).
          std::memset(context.ReserveReply(req.length()), 'r', req.length());
          return Status::Ok();
        }});
    dispatcher.Register(data::kStat, {[](const pb::StatRequest&, pb::StatResponse*,
                                         RequestContext&) { return Status::Ok(); }});
    // The same no-op, run on the transport thread (Runs::kInline).
    dispatcher.Register(data::kFileUsage,
                        {[](const pb::FileUsageRequest&, pb::FileUsageResponse*, RequestContext&) {
                          return Status::Ok();
                        }},
                        Runs::kInline);
    dispatcher.Register(data::kWrite,
                        {[](const pb::WriteRequest&, pb::WriteResponse*, RequestContext& context) {
                          benchmark::DoNotOptimize(context.payload.data());
                          return Status::Ok();
                        }});
    if (kind == TransportKind::kRdma) {
      server = MakeRdmaServer(io, dispatcher);
      if (!server->Listen(RdmaAddress(), 0).ok()) std::abort();
      channel = MakeRdmaChannel(io, RdmaAddress() + ":" + std::to_string(server->port()));
    } else {
      server = MakeTcpServer(io, dispatcher);
      if (!server->Listen("127.0.0.1", 0).ok()) std::abort();
      channel = MakeTcpChannel(io, "127.0.0.1:" + std::to_string(server->port()));
    }
    // Connection set-up (registration of every buffer, for RDMA) stays out of
    // the timed loop.
    pb::StatRequest request;
    pb::StatResponse response;
    if (!Invoke(*channel, data::kStat, request, &response).ok()) std::abort();
  }
  // Another client of the same server, connected.
  std::shared_ptr<Channel> Connect(TransportKind kind) {
    std::string host = kind == TransportKind::kRdma ? RdmaAddress() : "127.0.0.1";
    std::string address = host + ":" + std::to_string(server->port());
    auto client =
        kind == TransportKind::kRdma ? MakeRdmaChannel(io, address) : MakeTcpChannel(io, address);
    pb::StatRequest request;
    pb::StatResponse response;
    if (!Invoke(*client, data::kStat, request, &response).ok()) std::abort();
    return client;
  }
  ~SealfsServer() {
    server->Stop();
    dispatcher.Shutdown();
    io.Stop();
  }
  IoThreads io{2};
  Dispatcher dispatcher{2};
  std::unique_ptr<ServerTransport> server;
  std::shared_ptr<Channel> channel;
};

// A bare Asio server: reads `request` bytes, answers `reply` bytes.
struct EchoServer {
  EchoServer(size_t request, size_t reply)
      : acceptor(io, {asio::ip::make_address("127.0.0.1"), 0}) {
    thread = std::thread([this, request, reply] {
      asio::ip::tcp::socket socket(io);
      acceptor.accept(socket);
      socket.set_option(asio::ip::tcp::no_delay(true));
      std::string in(request, '\0'), out(reply, 'r');
      asio::error_code error;
      while (!error) {
        asio::read(socket, asio::buffer(in), error);
        if (!error) asio::write(socket, asio::buffer(out), error);
      }
    });
    client.connect(acceptor.local_endpoint());
    client.set_option(asio::ip::tcp::no_delay(true));
  }
  ~EchoServer() {
    client.close();
    thread.join();
  }
  asio::io_context io;
  asio::ip::tcp::acceptor acceptor;
  asio::ip::tcp::socket client{io};
  std::thread thread;
};

// SealFS calls over either transport; RDMA rows are skipped without a device.
bool Skip(benchmark::State& state, TransportKind kind) {
  if (kind == TransportKind::kRdma && RdmaAddress().empty()) {
    state.SkipWithError("no RDMA device / SEALFS_RDMA_TEST_ADDR");
    return true;
  }
  return false;
}

// Completion-queue work per call over RDMA (both ends live in this process):
// wake-ups from the completion channel, work completions handled, and SENDs
// that asked for a completion. Counts, not times: emulation cannot move them.
class RdmaWork {
 public:
  RdmaWork() : before_(Snapshot()) {}
  void Report(benchmark::State& state) const {
    auto now = Snapshot();
    double calls = static_cast<double>(std::max<int64_t>(state.iterations(), 1));
    state.counters["wakeups/call"] = static_cast<double>(now[0] - before_[0]) / calls;
    state.counters["completions/call"] = static_cast<double>(now[1] - before_[1]) / calls;
    state.counters["signalled/call"] = static_cast<double>(now[2] - before_[2]) / calls;
  }

 private:
  static std::array<uint64_t, 3> Snapshot() {
    return {RdmaCounters().completion_wakeups.load(), RdmaCounters().work_completions.load(),
            RdmaCounters().signalled_sends.load()};
  }
  std::array<uint64_t, 3> before_;
};

void SealfsRoundTrip(benchmark::State& state, TransportKind kind) {
  if (Skip(state, kind)) return;
  SealfsServer server(kind);
  pb::StatRequest request;
  pb::StatResponse response;
  RdmaWork work;
  for (auto _ : state) {
    if (!Invoke(*server.channel, data::kStat, request, &response).ok()) {
      state.SkipWithError("call failed");
      break;
    }
  }
  if (kind == TransportKind::kRdma) work.Report(state);
}
BENCHMARK_CAPTURE(SealfsRoundTrip, tcp, TransportKind::kTcp)->UseRealTime();
BENCHMARK_CAPTURE(SealfsRoundTrip, rdma, TransportKind::kRdma)->UseRealTime();

// The round trip above with the handler run inline on the server's
// transport thread: no hand-off to a worker and back.
void SealfsRoundTripInline(benchmark::State& state, TransportKind kind) {
  if (Skip(state, kind)) return;
  SealfsServer server(kind);
  pb::FileUsageRequest request;
  pb::FileUsageResponse response;
  for (auto _ : state) {
    if (!Invoke(*server.channel, data::kFileUsage, request, &response).ok()) {
      state.SkipWithError("call failed");
      break;
    }
  }
}
BENCHMARK_CAPTURE(SealfsRoundTripInline, tcp, TransportKind::kTcp)->UseRealTime();
BENCHMARK_CAPTURE(SealfsRoundTripInline, rdma, TransportKind::kRdma)->UseRealTime();

void BM_AsioEchoRoundTrip(benchmark::State& state) {
  EchoServer server(64, 64);
  std::string message(64, 'm'), reply(64, '\0');
  for (auto _ : state) {
    asio::write(server.client, asio::buffer(message));
    asio::read(server.client, asio::buffer(reply));
  }
}
BENCHMARK(BM_AsioEchoRoundTrip)->UseRealTime();

// A 1 MiB request payload (over RDMA the server RDMA-READs it).
void SealfsPayload1MiB(benchmark::State& state, TransportKind kind) {
  if (Skip(state, kind)) return;
  SealfsServer server(kind);
  std::string payload(kBulk, 'p');
  pb::WriteRequest request;
  pb::WriteResponse response;
  RdmaWork work;
  for (auto _ : state) {
    if (!Invoke(*server.channel, data::kWrite, request, &response, payload).ok()) {
      state.SkipWithError("call failed");
      break;
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kBulk));
  if (kind == TransportKind::kRdma) work.Report(state);
}
BENCHMARK_CAPTURE(SealfsPayload1MiB, tcp, TransportKind::kTcp)->UseRealTime();
BENCHMARK_CAPTURE(SealfsPayload1MiB, rdma, TransportKind::kRdma)->UseRealTime();

void BM_AsioEchoPayload1MiB(benchmark::State& state) {
  EchoServer server(kBulk, 1);
  std::string payload(kBulk, 'p');
  char ack;
  for (auto _ : state) {
    asio::write(server.client, asio::buffer(payload));
    asio::read(server.client, asio::buffer(&ack, 1));
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kBulk));
}
BENCHMARK(BM_AsioEchoPayload1MiB)->UseRealTime();

// A 1 MiB reply payload (over RDMA the server RDMA-WRITEs it).
void SealfsReply1MiB(benchmark::State& state, TransportKind kind) {
  if (Skip(state, kind)) return;
  SealfsServer server(kind);
  pb::ReadRequest request;
  request.set_length(kBulk);
  pb::ReadResponse response;
  std::string payload;
  CallOptions options;
  options.reply_payload_hint = kBulk;
  RdmaWork work;
  for (auto _ : state) {
    if (!Invoke(*server.channel, data::kRead, request, &response, {}, &payload, options).ok()) {
      state.SkipWithError("call failed");
      break;
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kBulk));
  if (kind == TransportKind::kRdma) work.Report(state);
}
BENCHMARK_CAPTURE(SealfsReply1MiB, tcp, TransportKind::kTcp)->UseRealTime();
BENCHMARK_CAPTURE(SealfsReply1MiB, rdma, TransportKind::kRdma)->UseRealTime();

// Several clients, each on its own connection, each reading 1 MiB replies
// back to back: how much the server serves its connections in parallel.
void SealfsParallelReply1MiB(benchmark::State& state, TransportKind kind) {
  if (Skip(state, kind)) return;
  SealfsServer server(kind);
  size_t clients = static_cast<size_t>(state.range(0));
  std::vector<std::shared_ptr<Channel>> channels;
  for (size_t i = 0; i < clients; ++i) channels.push_back(server.Connect(kind));
  for (auto _ : state) {
    std::atomic<bool> failed{false};
    std::vector<std::thread> threads;
    for (auto& channel : channels) {
      threads.emplace_back([&failed, channel] {
        pb::ReadRequest request;
        request.set_length(kBulk);
        pb::ReadResponse response;
        std::string payload;
        CallOptions options;
        options.reply_payload_hint = kBulk;
        for (int i = 0; i < 4; ++i) {
          if (!Invoke(*channel, data::kRead, request, &response, {}, &payload, options).ok())
            failed = true;
        }
      });
    }
    for (auto& thread : threads) thread.join();
    if (failed) {
      state.SkipWithError("call failed");
      break;
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * clients * 4 * kBulk));
}
BENCHMARK_CAPTURE(SealfsParallelReply1MiB, tcp, TransportKind::kTcp)->Arg(1)->Arg(4)->UseRealTime();
BENCHMARK_CAPTURE(SealfsParallelReply1MiB, rdma, TransportKind::kRdma)
    ->Arg(1)
    ->Arg(4)
    ->UseRealTime();

}  // namespace
}  // namespace sealfs::rpc

BENCHMARK_MAIN();
