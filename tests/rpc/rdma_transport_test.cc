// The RDMA transport over a real device (soft-RoCE in the test VM; see
// tests/rdma_vm). Without a device only the "no device" behaviour is checked.
#include "sealfs/rpc/rdma_transport.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <latch>
#include <thread>

#include "sealfs/rpc/methods.h"

namespace sealfs::rpc {
namespace {

using namespace std::chrono_literals;

std::string TestAddress() {
  const char* address = std::getenv("SEALFS_RDMA_TEST_ADDR");
  return address ? address : "";
}

std::string Pattern(size_t size, int seed) {
  std::string data(size, '\0');
  for (size_t i = 0; i < size; ++i) data[i] = static_cast<char>(i * 131 + seed);
  return data;
}

TEST(RdmaWithoutDevice, CallsFailWithEnodev) {
  std::string reason;
  if (RdmaDeviceAvailable(&reason)) GTEST_SKIP() << "this host has an RDMA device";
  EXPECT_FALSE(reason.empty());
  IoThreads io(1);
  auto channel = MakeRdmaChannel(io, "127.0.0.1:7400");
  pb::StatRequest request;
  pb::StatResponse response;
  Status status = Invoke(*channel, data::kStat, request, &response, {}, nullptr, CallOptions{5s});
  EXPECT_EQ(status.code(), ENODEV);
  Dispatcher dispatcher(1);
  auto server = MakeRdmaServer(io, dispatcher);
  EXPECT_EQ(server->Listen("127.0.0.1", 0).code(), ENODEV);
  // auto falls back to TCP, which has no server here: refused, not ENODEV.
  auto automatic = MakeChannel(io, "127.0.0.1:1", TransportKind::kAuto);
  status = Invoke(*automatic, data::kStat, request, &response, {}, nullptr, CallOptions{5s});
  EXPECT_EQ(status.code(), ECONNREFUSED);
}

class RdmaTransportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string reason;
    if (!RdmaDeviceAvailable(&reason)) GTEST_SKIP() << reason;
    if (TestAddress().empty())
      GTEST_SKIP() << "SEALFS_RDMA_TEST_ADDR names no RDMA-capable address";
    dispatcher_.Register(
        data::kRead,
        {[](const pb::ReadRequest& req, pb::ReadResponse*, RequestContext& context) -> Status {
          if (req.length() == 404) return Status(ENOENT, "no such thing");
          if (req.offset() == 999) std::this_thread::sleep_for(3s);
          if (req.offset() >= kInPlace) {
            // As the data server reads a chunk: into the room the transport
            // gives, with a head that is cut off.
            std::string bytes = Pattern(req.length() + 100, static_cast<int>(req.offset()));
            char* room = context.ReserveReply(bytes.size());
            std::memcpy(room, bytes.data(), bytes.size());
            context.KeepReply(100, req.length());
            room_was_lent_ = context.reply_room.owner() != nullptr;
            return Status::Ok();
          }
          context.reply_payload = Pattern(req.length(), static_cast<int>(req.offset()));
          return Status::Ok();
        }});
    dispatcher_.Register(
        data::kWrite,
        {[](const pb::WriteRequest& req, pb::WriteResponse*, RequestContext& context) -> Status {
          if (context.payload != Pattern(context.payload.size(), static_cast<int>(req.offset()))) {
            return Status(EBADMSG, "payload arrived damaged");
          }
          context.reply_payload = std::to_string(context.payload.size());
          return Status::Ok();
        }});
    server_ = MakeRdmaServer(io_, dispatcher_);
    Status listening = server_->Listen(TestAddress(), 0);
    ASSERT_TRUE(listening.ok()) << listening.ToString();
    address_ = TestAddress() + ":" + std::to_string(server_->port());
  }
  void TearDown() override {
    if (server_) server_->Stop();
    dispatcher_.Shutdown();
    io_.Stop();
  }

  static constexpr uint32_t kInPlace = 100000;
  static inline std::atomic<bool> room_was_lent_{false};
  IoThreads io_{2};
  Dispatcher dispatcher_{4};
  std::unique_ptr<ServerTransport> server_;
  std::string address_;
};

TEST_F(RdmaTransportTest, ReplyReadInPlaceIsSentFromRegisteredMemoryWithoutCopies) {
  auto channel = MakeRdmaChannel(io_, address_);
  uint64_t writes_before = RdmaCounters().rdma_write_ops;
  pb::ReadRequest request;
  request.set_offset(kInPlace + 5);
  request.set_length(2 << 20);
  CallOptions options;
  options.reply_payload_hint = 2 << 20;
  std::atomic<bool> checked{false};
  std::atomic<bool> held{false};
  std::latch done(1);
  InvokeAsync(*channel, data::kRead, request, {}, options,
              [&](Status status, pb::ReadResponse&, Payload& payload) {
                std::string expected = Pattern((2 << 20) + 100, kInPlace + 5).substr(100);
                checked = status.ok() && payload == expected;
                // The reply is read where the server's RDMA WRITE put it.
                held = payload.owner() != nullptr;
                done.count_down();
              });
  done.wait();
  EXPECT_TRUE(checked);
  EXPECT_TRUE(held);
  EXPECT_TRUE(room_was_lent_);
  EXPECT_EQ(RdmaCounters().rdma_write_ops, writes_before + 1);
  // A reply that fits a message gets ordinary memory and still arrives whole.
  request.set_length(100);
  pb::ReadResponse response;
  std::string small;
  ASSERT_TRUE(Invoke(*channel, data::kRead, request, &response, {}, &small).ok());
  EXPECT_EQ(small, Pattern(200, kInPlace + 5).substr(100));
  EXPECT_FALSE(room_was_lent_);
}

TEST_F(RdmaTransportTest, BulkRepliesAskForFewCompletions) {
  auto channel = MakeRdmaChannel(io_, address_);
  pb::ReadRequest request;
  request.set_offset(kInPlace);
  request.set_length(1 << 20);
  CallOptions options;
  options.reply_payload_hint = 1 << 20;
  pb::ReadResponse response;
  std::string payload;
  ASSERT_TRUE(Invoke(*channel, data::kRead, request, &response, {}, &payload, options).ok());
  constexpr uint64_t kCalls = 64;
  uint64_t completions_before = RdmaCounters().work_completions;
  uint64_t signalled_before = RdmaCounters().signalled_sends;
  for (uint64_t i = 0; i < kCalls; ++i) {
    ASSERT_TRUE(Invoke(*channel, data::kRead, request, &response, {}, &payload, options).ok());
  }
  uint64_t completions = RdmaCounters().work_completions - completions_before;
  uint64_t signalled = RdmaCounters().signalled_sends - signalled_before;
  // Per call: the server's reply SEND (its unsignalled RDMA WRITE completes
  // nothing) and the two receives; the client's request SEND only one time
  // in eight. Waiting for the WRITE and signalling every SEND would be 5.
  EXPECT_LE(signalled, kCalls + kCalls / 8 + 4);
  EXPECT_LE(completions, kCalls * 3 + kCalls / 8 + 8);
  EXPECT_GE(completions, kCalls * 3);
}

TEST_F(RdmaTransportTest, SmallCallsTravelAsSends) {
  auto channel = MakeRdmaChannel(io_, address_);
  uint64_t reads_before = RdmaCounters().rdma_read_ops;
  pb::ReadRequest request;
  request.set_offset(3);
  request.set_length(100);
  pb::ReadResponse response;
  std::string payload;
  Status status = Invoke(*channel, data::kRead, request, &response, {}, &payload);
  ASSERT_TRUE(status.ok()) << status.ToString();
  EXPECT_EQ(payload, Pattern(100, 3));
  EXPECT_EQ(RdmaCounters().rdma_read_ops, reads_before);
}

TEST_F(RdmaTransportTest, RemoteErrorsComeBack) {
  auto channel = MakeRdmaChannel(io_, address_);
  pb::ReadRequest request;
  request.set_length(404);
  pb::ReadResponse response;
  EXPECT_EQ(Invoke(*channel, data::kRead, request, &response).code(), ENOENT);
  Result<Message> reply = channel->Call(ServiceId::kData, 4242, "", {}, CallOptions{});
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(reply->header.status, EOPNOTSUPP);
}

TEST_F(RdmaTransportTest, LargeRequestPayloadIsReadByTheServer) {
  auto channel = MakeRdmaChannel(io_, address_);
  uint64_t reads_before = RdmaCounters().rdma_read_ops;
  uint64_t bytes_before = RdmaCounters().rdma_read_bytes;
  std::string data = Pattern(4 << 20, 7);
  pb::WriteRequest request;
  request.set_offset(7);
  pb::WriteResponse response;
  std::string reply;
  Status status = Invoke(*channel, data::kWrite, request, &response, data, &reply);
  ASSERT_TRUE(status.ok()) << status.ToString();
  EXPECT_EQ(reply, std::to_string(4 << 20));
  EXPECT_EQ(RdmaCounters().rdma_read_ops, reads_before + 1);
  EXPECT_EQ(RdmaCounters().rdma_read_bytes, bytes_before + (4 << 20));
}

TEST_F(RdmaTransportTest, LargeReplyPayloadIsWrittenByTheServer) {
  auto channel = MakeRdmaChannel(io_, address_);
  uint64_t writes_before = RdmaCounters().rdma_write_ops;
  pb::ReadRequest request;
  request.set_offset(11);
  request.set_length(3 << 20);
  pb::ReadResponse response;
  std::string payload;
  CallOptions options;
  options.reply_payload_hint = 3 << 20;
  Status status = Invoke(*channel, data::kRead, request, &response, {}, &payload, options);
  ASSERT_TRUE(status.ok()) << status.ToString();
  EXPECT_TRUE(payload == Pattern(3 << 20, 11));
  EXPECT_EQ(RdmaCounters().rdma_write_ops, writes_before + 1);
  // Without room offered, a reply too large for a message is refused cleanly.
  status = Invoke(*channel, data::kRead, request, &response, {}, &payload, CallOptions{});
  EXPECT_EQ(status.code(), EMSGSIZE);
}

TEST_F(RdmaTransportTest, ManyCallsInFlightRespectCredits) {
  auto channel = MakeRdmaChannel(io_, address_);
  constexpr int kCalls = 400;
  std::latch done(kCalls);
  std::atomic<int> correct{0};
  for (int i = 0; i < kCalls; ++i) {
    pb::ReadRequest request;
    request.set_offset(static_cast<uint32_t>(i % 200));
    uint32_t length = (i % 10 == 0) ? (256u << 10) : 64u;
    request.set_length(length);
    CallOptions options;
    options.reply_payload_hint = length;
    InvokeAsync(*channel, data::kRead, request, {}, options,
                [&, i, length](Status status, pb::ReadResponse&, Payload& payload) {
                  if (status.ok() && payload == Pattern(length, i % 200)) ++correct;
                  done.count_down();
                });
  }
  done.wait();
  EXPECT_EQ(correct.load(), kCalls);
}

TEST_F(RdmaTransportTest, NoListenerIsAnErrorNotAHang) {
  auto channel = MakeRdmaChannel(io_, TestAddress() + ":1");
  pb::StatRequest request;
  pb::StatResponse response;
  Status status = Invoke(*channel, data::kStat, request, &response, {}, nullptr, CallOptions{10s});
  EXPECT_FALSE(status.ok());
  EXPECT_NE(status.code(), ETIMEDOUT) << status.ToString();
}

TEST_F(RdmaTransportTest, ServerDyingMidCallIsAnErrorNotAHang) {
  // The server runs in a child process that is killed while serving.
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  pid_t child = fork();
  if (child == 0) {
    IoThreads io(1);
    Dispatcher dispatcher(2);
    dispatcher.Register(data::kRead,
                        {[](const pb::ReadRequest&, pb::ReadResponse*, RequestContext&) -> Status {
                          std::this_thread::sleep_for(30s);
                          return Status::Ok();
                        }});
    auto server = MakeRdmaServer(io, dispatcher);
    if (!server->Listen(TestAddress(), 0).ok()) _exit(1);
    uint16_t port = server->port();
    if (write(ready[1], &port, sizeof port) != sizeof port) _exit(1);
    pause();
    _exit(0);
  }
  uint16_t port = 0;
  ASSERT_EQ(read(ready[0], &port, sizeof port), static_cast<ssize_t>(sizeof port));
  auto channel = MakeRdmaChannel(io_, TestAddress() + ":" + std::to_string(port));
  std::thread killer([child] {
    std::this_thread::sleep_for(1s);
    kill(child, SIGKILL);
  });
  pb::ReadRequest request;
  request.set_length(10);
  pb::ReadResponse response;
  auto start = std::chrono::steady_clock::now();
  Status status = Invoke(*channel, data::kRead, request, &response, {}, nullptr, CallOptions{120s});
  auto waited = std::chrono::steady_clock::now() - start;
  killer.join();
  waitpid(child, nullptr, 0);
  EXPECT_FALSE(status.ok());
  EXPECT_LT(waited, 100s) << "the call hung until its timeout: " << status.ToString();
}

}  // namespace
}  // namespace sealfs::rpc
