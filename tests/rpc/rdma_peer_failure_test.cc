// The RDMA server against peers that die or misbehave, over a real device
// (soft-RoCE in the test VM; see tests/rdma_vm): clients killed or vanishing
// mid-call and mid-transfer, calls that time out in bulk, a raw verbs peer
// that forges credits and buffer descriptions, absurd reply hints. The server
// must stay up, free what the peer held, and serve the next client.
// Without a device every test reports itself skipped.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <infiniband/verbs.h>
#include <netdb.h>
#include <poll.h>
#include <rdma/rdma_cma.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <future>
#include <latch>
#include <mutex>
#include <thread>

#include "rdma_connection.h"  // the wire layout, for the forging peer
#include "sealfs/rpc/methods.h"
#include "sealfs/rpc/rdma_transport.h"

extern char** environ;

namespace sealfs::rpc {
namespace {

using namespace std::chrono_literals;

constexpr uint32_t kSlow = 555;     // handler sleeps 100 ms
constexpr uint32_t kBlocked = 888;  // handler waits for the test to open the gate
constexpr int kQueuedWrites = 120;  // of 4 MiB each: 480 MiB queued at the server

std::string TestAddress() {
  const char* address = std::getenv("SEALFS_RDMA_TEST_ADDR");
  return address ? address : "";
}

int StormRounds() {
  const char* rounds = std::getenv("SEALFS_RDMA_STORM_ROUNDS");
  return rounds ? std::max(1, std::atoi(rounds)) : 200;
}

// Pinned memory of this process as the kernel counts it (VmPin, bytes).
uint64_t PinnedBytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmPin:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  }
  return 0;
}

// Waits (bounded) until `done` holds; returns whether it did.
bool Eventually(const std::function<bool()>& done, std::chrono::seconds limit = 60s) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

class RdmaPeerFailureTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::getenv("SEALFS_RDMA_STORM_CHILD")) GTEST_SKIP() << "storm client process";
    std::string reason;
    if (!RdmaDeviceAvailable(&reason)) GTEST_SKIP() << reason;
    if (TestAddress().empty())
      GTEST_SKIP() << "SEALFS_RDMA_TEST_ADDR names no RDMA-capable address";
    dispatcher_.Register(data::kRead, {[this](const pb::ReadRequest& req, pb::ReadResponse*,
                                              RequestContext& context) -> Status {
                           if (req.offset() == kSlow) std::this_thread::sleep_for(100ms);
                           if (req.offset() == kBlocked) {
                             std::unique_lock lock(gate_mutex_);
                             gate_changed_.wait_for(lock, 120s, [this] { return gate_open_; });
                           }
                           context.reply_payload.assign(req.length(), 'r');
                           return Status::Ok();
                         }});
    dispatcher_.Register(data::kWrite, {[this](const pb::WriteRequest& req, pb::WriteResponse*,
                                               RequestContext& context) -> Status {
                           if (req.offset() == kSlow) std::this_thread::sleep_for(100ms);
                           if (req.offset() == kBlocked) {
                             std::unique_lock lock(gate_mutex_);
                             gate_changed_.wait_for(lock, 120s, [this] { return gate_open_; });
                           }
                           context.reply_payload = std::to_string(context.payload.size());
                           return Status::Ok();
                         }});
    server_ = MakeRdmaServer(io_, dispatcher_);
    Status listening = server_->Listen(TestAddress(), 0);
    ASSERT_TRUE(listening.ok()) << listening.ToString();
    address_ = TestAddress() + ":" + std::to_string(server_->port());
    registered_at_start_ = RdmaRegisteredBytes();
    pinned_at_start_ = PinnedBytes();
  }
  void TearDown() override {
    OpenGate();
    if (server_) server_->Stop();
    dispatcher_.Shutdown();
    io_.Stop();
  }

  void OpenGate() {
    std::lock_guard lock(gate_mutex_);
    gate_open_ = true;
    gate_changed_.notify_all();
  }

  // Starts this test binary as a storm client of our server; it writes one
  // byte to the returned descriptor once its calls are in flight.
  pid_t SpawnClient(const std::string& mode, int* ready) {
    int fds[2];
    if (pipe(fds) != 0) return -1;
    std::string child_env = "SEALFS_RDMA_STORM_CHILD=" + mode;
    std::string server_env = "SEALFS_RDMA_STORM_SERVER=" + address_;
    std::string fd_env = "SEALFS_RDMA_STORM_FD=" + std::to_string(fds[1]);
    std::vector<std::string> env_strings = {child_env, server_env, fd_env};
    for (char** env = environ; *env; ++env) env_strings.emplace_back(*env);
    std::vector<char*> envp;
    for (auto& entry : env_strings) envp.push_back(entry.data());
    envp.push_back(nullptr);
    std::string self = "/proc/self/exe";
    std::string filter = "--gtest_filter=RdmaStormClient.Run";
    char* argv[] = {self.data(), filter.data(), nullptr};
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addclose(&actions, fds[0]);
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    pid_t pid = -1;
    int error = posix_spawn(&pid, self.c_str(), &actions, nullptr, argv, envp.data());
    posix_spawn_file_actions_destroy(&actions);
    close(fds[1]);
    if (error != 0) {
      close(fds[0]);
      return -1;
    }
    *ready = fds[0];
    return pid;
  }

  // True when the child wrote its byte within the limit.
  static bool WaitReady(int fd, std::chrono::seconds limit = 60s) {
    pollfd watch{fd, POLLIN, 0};
    if (poll(&watch, 1, static_cast<int>(limit.count() * 1000)) != 1) return false;
    char byte;
    return read(fd, &byte, 1) == 1;
  }

  // The server holds nothing for clients that are gone.
  void ExpectEverythingReleased() {
    EXPECT_TRUE(Eventually([&] { return RdmaRegisteredBytes() <= registered_at_start_; }))
        << "still registered: " << RdmaRegisteredBytes() - registered_at_start_ << " bytes";
    EXPECT_TRUE(Eventually([&] { return PinnedBytes() <= pinned_at_start_; }))
        << "VmPin grew by " << PinnedBytes() - pinned_at_start_ << " bytes";
  }

  // A new client gets small and bulk calls served in both directions.
  void ExpectFreshClientServed() {
    auto channel = MakeRdmaChannel(io_, address_);
    pb::ReadRequest read;
    read.set_length(100);
    pb::ReadResponse read_response;
    std::string reply;
    Status status = Invoke(*channel, data::kRead, read, &read_response, {}, &reply);
    ASSERT_TRUE(status.ok()) << status.ToString();
    EXPECT_EQ(reply, std::string(100, 'r'));
    read.set_length(2 << 20);
    CallOptions options;
    options.reply_payload_hint = 2 << 20;
    status = Invoke(*channel, data::kRead, read, &read_response, {}, &reply, options);
    ASSERT_TRUE(status.ok()) << status.ToString();
    EXPECT_EQ(reply.size(), size_t{2} << 20);
    std::string data(2 << 20, 'w');
    pb::WriteRequest write;
    pb::WriteResponse write_response;
    status = Invoke(*channel, data::kWrite, write, &write_response, data, &reply);
    ASSERT_TRUE(status.ok()) << status.ToString();
    EXPECT_EQ(reply, std::to_string(2 << 20));
  }

  IoThreads io_{2};
  Dispatcher dispatcher_{4};
  std::unique_ptr<ServerTransport> server_;
  std::string address_;
  uint64_t registered_at_start_ = 0;
  uint64_t pinned_at_start_ = 0;
  std::mutex gate_mutex_;
  std::condition_variable gate_changed_;
  bool gate_open_ = false;
};

// Not a test of its own: the storm client, started by SpawnClient.
TEST(RdmaStormClient, Run) {
  const char* mode_env = std::getenv("SEALFS_RDMA_STORM_CHILD");
  if (!mode_env) GTEST_SKIP() << "runs only as a storm client process";
  std::string mode = mode_env;
  std::string address = std::getenv("SEALFS_RDMA_STORM_SERVER");
  int ready = std::atoi(std::getenv("SEALFS_RDMA_STORM_FD"));
  IoThreads io(1);
  auto channel = MakeRdmaChannel(io, address);
  pb::ReadRequest small;
  small.set_length(10);
  pb::ReadResponse response;
  if (!Invoke(*channel, data::kRead, small, &response).ok()) _exit(2);
  static const std::string big(8 << 20, 'p');
  if (mode == "queued-writes") {
    // Many 4 MiB writes at once to a server whose workers are stuck: all of
    // them must still succeed once it moves again.
    std::atomic<int> ok{0};
    std::latch done(kQueuedWrites);
    pb::WriteRequest queued;
    queued.set_offset(kBlocked);
    for (int i = 0; i < kQueuedWrites; ++i) {
      InvokeAsync(*channel, data::kWrite, queued, std::string_view(big).substr(0, 4 << 20),
                  CallOptions{std::chrono::seconds(300)},
                  [&](Status status, pb::WriteResponse&, Payload&) {
                    if (status.ok()) ++ok;
                    done.count_down();
                  });
    }
    if (write(ready, "x", 1) != 1) _exit(4);
    done.wait();
    _exit(ok == kQueuedWrites ? 0 : 5);
  }
  if (mode == "bulk-write" || mode == "bulk-read") {
    // Transfers back to back until killed.
    bool signalled = false;
    for (;;) {
      Status status;
      if (mode == "bulk-write") {
        pb::WriteRequest write;
        pb::WriteResponse write_response;
        status = Invoke(*channel, data::kWrite, write, &write_response, big);
      } else {
        pb::ReadRequest read;
        read.set_length(8 << 20);
        CallOptions options;
        options.reply_payload_hint = 8 << 20;
        std::string reply;
        status = Invoke(*channel, data::kRead, read, &response, {}, &reply, options);
      }
      if (!status.ok()) _exit(3);
      if (!signalled && write(ready, "x", 1) == 1) signalled = true;
    }
  }
  // Calls the server answers slowly, in both bulk directions, left in flight.
  auto ignore = [](Status, auto&, Payload&) {};
  pb::ReadRequest slow;
  slow.set_offset(kSlow);
  slow.set_length(10);
  InvokeAsync(*channel, data::kRead, slow, {}, CallOptions{}, ignore);
  slow.set_length(1 << 20);
  CallOptions bulk_reply;
  bulk_reply.reply_payload_hint = 1 << 20;
  InvokeAsync(*channel, data::kRead, slow, {}, bulk_reply, ignore);
  pb::WriteRequest slow_write;
  slow_write.set_offset(kSlow);
  InvokeAsync(*channel, data::kWrite, slow_write, std::string_view(big).substr(0, 1 << 20),
              CallOptions{}, ignore);
  std::this_thread::sleep_for(20ms);  // let them reach the server
  if (write(ready, "x", 1) != 1) _exit(4);
  if (mode == "close") {
    channel.reset();  // disconnects with the calls outstanding
    std::this_thread::sleep_for(10ms);
  }
  if (mode == "kill") pause();  // the parent sends SIGKILL
  _exit(0);                     // "exit": gone without closing anything
}

TEST_F(RdmaPeerFailureTest, StormOfClientsDyingMidCallLeavesTheServerServing) {
  const int rounds = StormRounds();
  const char* modes[] = {"kill", "exit", "close"};
  constexpr int kAtOnce = 4;
  int started = 0;
  int signalled = 0;
  while (started < rounds) {
    std::vector<std::pair<pid_t, int>> children;
    std::vector<std::string> child_modes;
    for (int i = 0; i < kAtOnce && started < rounds; ++i, ++started) {
      int ready = -1;
      std::string mode = modes[started % 3];
      pid_t pid = SpawnClient(mode, &ready);
      ASSERT_GT(pid, 0) << "cannot start a storm client";
      children.emplace_back(pid, ready);
      child_modes.push_back(mode);
    }
    for (size_t i = 0; i < children.size(); ++i) {
      auto [pid, ready] = children[i];
      if (WaitReady(ready)) ++signalled;
      if (child_modes[i] == "kill") kill(pid, SIGKILL);
      close(ready);
    }
    for (auto [pid, ready] : children) {
      int status = 0;
      // A client stuck for a minute is killed; it is counted as not served.
      if (!Eventually([&] { return waitpid(pid, &status, WNOHANG) == pid; })) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
      }
    }
  }
  EXPECT_EQ(signalled, rounds) << "clients that did not get their calls to the server";
  ExpectEverythingReleased();
  ExpectFreshClientServed();
}

TEST_F(RdmaPeerFailureTest, ClientKilledDuringBulkTransfersInBothDirections) {
  for (std::string mode : {"bulk-write", "bulk-read"}) {
    for (int round = 0; round < 6; ++round) {
      int ready = -1;
      pid_t pid = SpawnClient(mode, &ready);
      ASSERT_GT(pid, 0);
      EXPECT_TRUE(WaitReady(ready)) << mode << ": the client moved no data";
      // Somewhere inside the next transfers, which take tens of milliseconds.
      std::this_thread::sleep_for(std::chrono::milliseconds(round * 15));
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
      close(ready);
    }
  }
  ExpectEverythingReleased();
  ExpectFreshClientServed();
}

TEST_F(RdmaPeerFailureTest, TimedOutLargeReadsKeepPinnedMemoryBounded) {
  // A server stuck on every call, a client that gives up on each 4 MiB read:
  // the buffers offered for the replies must not pile up.
  auto channel = MakeRdmaChannel(io_, address_);
  constexpr int kCalls = 100;
  constexpr uint64_t kReply = 4 << 20;
  constexpr uint64_t kBound = 160u << 20;  // 400 MiB if every buffer were kept
  uint64_t most_registered = 0;
  uint64_t most_pinned = 0;
  int timed_out = 0;
  uint64_t sent_before = RdmaCounters().messages_sent;
  for (int i = 0; i < kCalls; ++i) {
    pb::ReadRequest request;
    request.set_offset(kBlocked);
    request.set_length(kReply);
    pb::ReadResponse response;
    CallOptions options{200ms};
    options.reply_payload_hint = kReply;
    Status status = Invoke(*channel, data::kRead, request, &response, {}, nullptr, options);
    if (status.code() == ETIMEDOUT) ++timed_out;
    most_registered = std::max(most_registered, RdmaRegisteredBytes() - registered_at_start_);
    most_pinned = std::max(most_pinned, PinnedBytes() - std::min(PinnedBytes(), pinned_at_start_));
  }
  EXPECT_EQ(timed_out, kCalls);
  // Most requests reached the server, each with a 4 MiB buffer offered.
  EXPECT_GE(RdmaCounters().messages_sent - sent_before, uint64_t{kCalls} / 2);
  EXPECT_LE(most_registered, kBound) << "registered bytes grew with every timed-out call";
  EXPECT_LE(most_pinned, kBound) << "VmPin grew with every timed-out call";
  // The stuck calls now finish; their answers go to connections long gone.
  OpenGate();
  pb::ReadRequest request;
  request.set_length(kReply);
  pb::ReadResponse response;
  std::string reply;
  CallOptions options;
  options.reply_payload_hint = kReply;
  Status status = Invoke(*channel, data::kRead, request, &response, {}, &reply, options);
  ASSERT_TRUE(status.ok()) << status.ToString();
  EXPECT_EQ(reply.size(), kReply);
  channel.reset();
  ExpectEverythingReleased();
}

TEST_F(RdmaPeerFailureTest, QueuedRequestsPinBoundedServerMemory) {
  // 480 MiB of writes reach a server whose workers are all stuck: it pulls
  // in payloads only up to its bound of lent memory per connection, the rest
  // wait on the client's side, and every write succeeds once it moves.
  int ready = -1;
  pid_t pid = SpawnClient("queued-writes", &ready);
  ASSERT_GT(pid, 0);
  ASSERT_TRUE(WaitReady(ready));
  close(ready);
  uint64_t most_registered = 0;
  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (std::chrono::steady_clock::now() < deadline) {
    most_registered = std::max(most_registered, RdmaRegisteredBytes() - registered_at_start_);
    std::this_thread::sleep_for(20ms);
  }
  // The bound, the connection's message buffers and one request's rounding.
  constexpr uint64_t kBound = (256u << 20) + (16u << 20);
  EXPECT_LE(most_registered, kBound) << "server pinned every queued payload";
  EXPECT_GE(most_registered, uint64_t{128} << 20) << "payloads did not reach the server";
  OpenGate();
  int wait_status = 0;
  ASSERT_EQ(waitpid(pid, &wait_status, 0), pid);
  EXPECT_TRUE(WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0)
      << "client saw failed writes, wait status " << wait_status;
  ExpectEverythingReleased();
}

TEST_F(RdmaPeerFailureTest, AbsurdReplyHintsAreRefusedBeforeAnyAllocation) {
  auto channel = MakeRdmaChannel(io_, address_);
  for (size_t hint :
       {size_t{kMaxPayloadSize} + 1, size_t{1} << 33, (size_t{1} << 63) + 1, ~size_t{0}}) {
    pb::ReadRequest request;
    request.set_length(10);
    pb::ReadResponse response;
    CallOptions options{10s};
    options.reply_payload_hint = hint;
    auto call = std::async(std::launch::async, [&] {
      return Invoke(*channel, data::kRead, request, &response, {}, nullptr, options);
    });
    ASSERT_EQ(call.wait_for(30s), std::future_status::ready) << "hint " << hint << " hangs";
    Status status = call.get();
    EXPECT_EQ(status.code(), EMSGSIZE) << "hint " << hint << ": " << status.ToString();
    EXPECT_EQ(RdmaRegisteredBytes(), registered_at_start_) << "hint " << hint << " allocated";
  }
  ExpectFreshClientServed();
}

// A peer speaking raw verbs, to send what no SealFS client would.
class ForgingPeer {
 public:
  ~ForgingPeer() {
    if (id_) rdma_disconnect(id_);
    if (qp_) rdma_destroy_qp(id_);
    if (mr_) ibv_dereg_mr(mr_);
    if (cq_) ibv_destroy_cq(cq_);
    if (pd_) ibv_dealloc_pd(pd_);
    if (id_) rdma_destroy_id(id_);
    if (events_) rdma_destroy_event_channel(events_);
  }

  Status Connect(const std::string& address) {
    auto resolved = rdma::Resolve(address);
    if (!resolved.ok()) return resolved.status();
    events_ = rdma_create_event_channel();
    if (!events_ || rdma_create_id(events_, &id_, nullptr, RDMA_PS_TCP) != 0)
      return Status(errno, "rdma_create_id");
    if (rdma_resolve_addr(id_, nullptr, reinterpret_cast<sockaddr*>(&*resolved), 2000) != 0)
      return Status(errno, "rdma_resolve_addr");
    SEALFS_RETURN_IF_ERROR(Expect(RDMA_CM_EVENT_ADDR_RESOLVED));
    if (rdma_resolve_route(id_, 2000) != 0) return Status(errno, "rdma_resolve_route");
    SEALFS_RETURN_IF_ERROR(Expect(RDMA_CM_EVENT_ROUTE_RESOLVED));
    pd_ = ibv_alloc_pd(id_->verbs);
    cq_ = ibv_create_cq(id_->verbs, 64, nullptr, nullptr, 0);
    if (!pd_ || !cq_) return Status(ENOMEM, "pd/cq");
    ibv_qp_init_attr attr{};
    attr.send_cq = cq_;
    attr.recv_cq = cq_;
    attr.qp_type = IBV_QPT_RC;
    attr.cap.max_send_wr = 16;
    attr.cap.max_recv_wr = 16;
    attr.cap.max_send_sge = 1;
    attr.cap.max_recv_sge = 1;
    if (rdma_create_qp(id_, pd_, &attr) != 0) return Status(errno, "rdma_create_qp");
    qp_ = id_->qp;
    buffer_.resize(9 * rdma::kMessageSize);
    mr_ = ibv_reg_mr(pd_, buffer_.data(), buffer_.size(), IBV_ACCESS_LOCAL_WRITE);
    if (!mr_) return Status(ENOMEM, "ibv_reg_mr");
    for (uint32_t i = 0; i < 8; ++i) {
      ibv_sge sge{reinterpret_cast<uint64_t>(buffer_.data() + (i + 1) * rdma::kMessageSize),
                  static_cast<uint32_t>(rdma::kMessageSize), mr_->lkey};
      ibv_recv_wr wr{};
      wr.sg_list = &sge;
      wr.num_sge = 1;
      ibv_recv_wr* bad = nullptr;
      if (ibv_post_recv(qp_, &wr, &bad) != 0) return Status(EIO, "ibv_post_recv");
    }
    rdma_conn_param param{};
    param.initiator_depth = 16;
    param.responder_resources = 16;
    param.retry_count = 7;
    param.rnr_retry_count = 7;
    if (rdma_connect(id_, &param) != 0) return Status(errno, "rdma_connect");
    return Expect(RDMA_CM_EVENT_ESTABLISHED);
  }

  // One SEND: credits returned, a request header, the one-sided description.
  Status SendRequest(uint32_t credits, rdma::RdmaExt ext) {
    FrameHeader header;
    header.service = static_cast<uint16_t>(ServiceId::kData);
    header.method = data::kWrite.id;
    header.request_id = 1;
    // A payload described in `ext` is RDMA-READ, not carried inline.
    header.payload_length = 0;
    char* out = buffer_.data();
    std::memcpy(out, &credits, 4);
    EncodedHeader encoded = EncodeHeader(header);
    std::memcpy(out + 4, encoded.data(), encoded.size());
    std::memcpy(out + 4 + kFrameHeaderSize, &ext, sizeof ext);
    ibv_sge sge{reinterpret_cast<uint64_t>(out), static_cast<uint32_t>(rdma::kPrefix), mr_->lkey};
    ibv_send_wr wr{};
    wr.opcode = IBV_WR_SEND;
    wr.sg_list = &sge;
    wr.num_sge = 1;
    wr.send_flags = IBV_SEND_SIGNALED;
    ibv_send_wr* bad = nullptr;
    if (ibv_post_send(qp_, &wr, &bad) != 0) return Status(EIO, "ibv_post_send");
    return Status::Ok();
  }

  // True once the server has closed the connection.
  bool WaitDisconnected(std::chrono::seconds limit) {
    return Expect(RDMA_CM_EVENT_DISCONNECTED, limit).ok();
  }

 private:
  Status Expect(rdma_cm_event_type wanted, std::chrono::seconds limit = 10s) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return Status(ETIMEDOUT, std::string("no ") + rdma_event_str(wanted));
      pollfd watch{events_->fd, POLLIN, 0};
      if (poll(&watch, 1, static_cast<int>(left.count())) != 1) continue;
      rdma_cm_event* event = nullptr;
      if (rdma_get_cm_event(events_, &event) != 0) return Status(errno, "rdma_get_cm_event");
      rdma_cm_event_type type = event->event;
      rdma_ack_cm_event(event);
      if (type == wanted) return Status::Ok();
      if (wanted != RDMA_CM_EVENT_DISCONNECTED)
        return Status(EPROTO, std::string("got ") + rdma_event_str(type));
    }
  }

  rdma_event_channel* events_ = nullptr;
  rdma_cm_id* id_ = nullptr;
  ibv_pd* pd_ = nullptr;
  ibv_cq* cq_ = nullptr;
  ibv_qp* qp_ = nullptr;
  ibv_mr* mr_ = nullptr;
  std::vector<char> buffer_;
};

TEST_F(RdmaPeerFailureTest, ForgedCreditsCloseTheConnectionCleanly) {
  ForgingPeer peer;
  Status connected = peer.Connect(address_);
  ASSERT_TRUE(connected.ok()) << connected.ToString();
  // The server has sent us nothing: any returned credit is a lie.
  ASSERT_TRUE(peer.SendRequest(1000, {}).ok());
  EXPECT_TRUE(peer.WaitDisconnected(30s)) << "the server kept a peer that forged credits";
  ExpectFreshClientServed();
}

TEST_F(RdmaPeerFailureTest, ForgedPayloadDescriptionsCloseTheConnectionWithoutLeaks) {
  {
    // A payload above the limit: refused before anything is allocated.
    ForgingPeer peer;
    ASSERT_TRUE(peer.Connect(address_).ok());
    rdma::RdmaExt ext;
    ext.src_addr = 4096;
    ext.src_rkey = 1;
    ext.src_length = kMaxPayloadSize + 1;
    ASSERT_TRUE(peer.SendRequest(0, ext).ok());
    EXPECT_TRUE(peer.WaitDisconnected(30s));
  }
  {
    // Memory the peer never registered: the server's RDMA READ fails, and the
    // buffer it read into must be freed with the connection.
    ForgingPeer peer;
    ASSERT_TRUE(peer.Connect(address_).ok());
    rdma::RdmaExt ext;
    ext.src_addr = 4096;
    ext.src_rkey = 0xdead;
    ext.src_length = 8 << 20;
    ASSERT_TRUE(peer.SendRequest(0, ext).ok());
    EXPECT_TRUE(peer.WaitDisconnected(30s));
  }
  ExpectEverythingReleased();
  ExpectFreshClientServed();
}

}  // namespace
}  // namespace sealfs::rpc
