// The TCP transport against a real listener on loopback, including peers that
// send garbage, oversized frames, unknown methods, or vanish mid-frame.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <latch>
#include <thread>

#include "sealfs/rpc/methods.h"
#include "sealfs/rpc/tcp_transport.h"

namespace sealfs::rpc {
namespace {

using namespace std::chrono_literals;

// An echo service on the data service's Write/Read methods.
class TransportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dispatcher_.Register(
        data::kRead,
        {[this](const pb::ReadRequest& req, pb::ReadResponse*, RequestContext& context) -> Status {
          if (req.length() == 404) return Status(ENOENT, "no such thing");
          if (req.length() == 999) std::this_thread::sleep_for(500ms);
          ++served_;
          context.reply_payload.assign(req.length(), static_cast<char>('a' + req.offset() % 26));
          return Status::Ok();
        }});
    dispatcher_.Register(data::kWrite, {[this](const pb::WriteRequest&, pb::WriteResponse*,
                                               RequestContext& context) -> Status {
                           ++writes_served_;
                           context.reply_payload = std::string(context.payload);  // echo
                           return Status::Ok();
                         }});
    server_ = MakeTcpServer(io_, dispatcher_);
    ASSERT_TRUE(server_->Listen("127.0.0.1", 0).ok());
    address_ = "127.0.0.1:" + std::to_string(server_->port());
  }

  void TearDown() override {
    server_->Stop();
    dispatcher_.Shutdown();
    io_.Stop();
  }

  // A raw socket to the server, for sending what no well-behaved client sends.
  int RawConnect() {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(server_->port());
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    timeval timeout{5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    return fd;
  }

  // Reads until the server closes; returns the bytes received.
  static std::string ReadUntilClosed(int fd) {
    std::string received;
    char buffer[4096];
    ssize_t n;
    while ((n = read(fd, buffer, sizeof buffer)) > 0)
      received.append(buffer, static_cast<size_t>(n));
    EXPECT_EQ(n, 0) << "server did not close the connection";
    return received;
  }

  IoThreads io_{2};
  Dispatcher dispatcher_{4};
  std::unique_ptr<ServerTransport> server_;
  std::string address_;
  std::atomic<int> served_{0};
  std::atomic<int> writes_served_{0};
};

TEST_F(TransportTest, CallReturnsPayload) {
  auto channel = MakeTcpChannel(io_, address_);
  pb::ReadRequest request;
  request.set_offset(2);
  request.set_length(1000);
  pb::ReadResponse response;
  std::string payload;
  ASSERT_TRUE(Invoke(*channel, data::kRead, request, &response, {}, &payload).ok());
  EXPECT_EQ(payload, std::string(1000, 'c'));
}

TEST_F(TransportTest, LargePayloadEchoesByteExact) {
  auto channel = MakeTcpChannel(io_, address_);
  std::string data(8 << 20, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 131 + 7);
  pb::WriteRequest request;
  pb::WriteResponse response;
  std::string echoed;
  ASSERT_TRUE(Invoke(*channel, data::kWrite, request, &response, data, &echoed).ok());
  EXPECT_TRUE(echoed == data);
}

TEST_F(TransportTest, RemoteErrorComesBackAsStatus) {
  auto channel = MakeTcpChannel(io_, address_);
  pb::ReadRequest request;
  request.set_length(404);
  pb::ReadResponse response;
  Status status = Invoke(*channel, data::kRead, request, &response);
  EXPECT_EQ(status.code(), ENOENT);
  EXPECT_EQ(status.message(), "no such thing");
}

TEST_F(TransportTest, ManyCallsInFlightOnOneConnection) {
  auto channel = MakeTcpChannel(io_, address_);
  constexpr int kCalls = 500;
  std::latch done(kCalls);
  std::atomic<int> correct{0};
  for (int i = 0; i < kCalls; ++i) {
    pb::ReadRequest request;
    request.set_offset(static_cast<uint32_t>(i));
    request.set_length(static_cast<uint32_t>(1000 + i));
    InvokeAsync(
        *channel, data::kRead, request, {}, CallOptions{},
        [&, i](Status status, pb::ReadResponse&, Payload& payload) {
          if (status.ok() && payload == std::string(1000 + i, static_cast<char>('a' + i % 26))) {
            ++correct;
          }
          done.count_down();
        });
  }
  done.wait();
  EXPECT_EQ(correct.load(), kCalls);
}

TEST_F(TransportTest, UnknownMethodGetsAnErrorNotACrash) {
  auto channel = MakeTcpChannel(io_, address_);
  Result<Message> reply = channel->Call(ServiceId::kData, 4242, "", {}, CallOptions{});
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(reply->header.status, EOPNOTSUPP);
  // The server still serves this connection afterwards.
  pb::ReadRequest request;
  request.set_length(3);
  pb::ReadResponse response;
  EXPECT_TRUE(Invoke(*channel, data::kRead, request, &response).ok());
}

TEST_F(TransportTest, UnparsableBodyGetsEbadmsg) {
  auto channel = MakeTcpChannel(io_, address_);
  Result<Message> reply =
      channel->Call(ServiceId::kData, data::kRead.id, "\xff\xff\xff", {}, CallOptions{});
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(reply->header.status, EBADMSG);
}

TEST_F(TransportTest, GarbageGetsAnErrorFrameAndAClosedConnection) {
  int fd = RawConnect();
  std::string garbage(64, 'G');
  ASSERT_EQ(write(fd, garbage.data(), garbage.size()), static_cast<ssize_t>(garbage.size()));
  std::string received = ReadUntilClosed(fd);
  close(fd);
  ASSERT_GE(received.size(), kFrameHeaderSize);
  Result<FrameHeader> header = DecodeHeader(received.data(), received.size());
  ASSERT_TRUE(header.ok());
  EXPECT_EQ(header->status, EPROTO);
  // The server keeps serving others.
  auto channel = MakeTcpChannel(io_, address_);
  pb::ReadRequest request;
  request.set_length(1);
  pb::ReadResponse response;
  EXPECT_TRUE(Invoke(*channel, data::kRead, request, &response).ok());
}

TEST_F(TransportTest, OversizedFrameIsRefusedBeforeAllocation) {
  int fd = RawConnect();
  FrameHeader header;
  header.service = static_cast<uint16_t>(ServiceId::kData);
  header.method = data::kWrite.id;
  header.request_id = 1;
  header.payload_length = 0xffffffffu;
  EncodedHeader raw = EncodeHeader(header);
  ASSERT_EQ(write(fd, raw.data(), raw.size()), static_cast<ssize_t>(raw.size()));
  std::string received = ReadUntilClosed(fd);
  close(fd);
  ASSERT_GE(received.size(), kFrameHeaderSize);
  Result<FrameHeader> reply = DecodeHeader(received.data(), received.size());
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(reply->status, EMSGSIZE);
}

TEST_F(TransportTest, PeerVanishingMidFrameIsHarmless) {
  for (int round = 0; round < 20; ++round) {
    int fd = RawConnect();
    FrameHeader header;
    header.service = static_cast<uint16_t>(ServiceId::kData);
    header.method = data::kWrite.id;
    header.request_id = 1;
    header.payload_length = 1 << 20;
    EncodedHeader raw = EncodeHeader(header);
    ASSERT_EQ(write(fd, raw.data(), raw.size()), static_cast<ssize_t>(raw.size()));
    std::string partial(1000, 'p');
    ASSERT_EQ(write(fd, partial.data(), partial.size()), static_cast<ssize_t>(partial.size()));
    // Half-close and wait for the server to close its side: by then it has
    // seen the frame end early and decided what to do with it.
    ASSERT_EQ(shutdown(fd, SHUT_WR), 0);
    std::string received = ReadUntilClosed(fd);
    close(fd);
    EXPECT_TRUE(received.empty()) << "a truncated frame was answered";
  }
  EXPECT_EQ(writes_served_.load(), 0) << "a truncated frame reached a handler";
  // The server still serves a whole frame of the same method afterwards.
  auto channel = MakeTcpChannel(io_, address_);
  std::string data(1 << 20, 'w');
  pb::WriteRequest request;
  pb::WriteResponse response;
  std::string echoed;
  ASSERT_TRUE(Invoke(*channel, data::kWrite, request, &response, data, &echoed).ok());
  EXPECT_TRUE(echoed == data);
  EXPECT_EQ(writes_served_.load(), 1);
}

TEST_F(TransportTest, TimeoutFailsTheCallNotTheChannel) {
  auto channel = MakeTcpChannel(io_, address_);
  pb::ReadRequest slow;
  slow.set_length(999);
  pb::ReadResponse response;
  Status status = Invoke(*channel, data::kRead, slow, &response, {}, nullptr, CallOptions{100ms});
  EXPECT_EQ(status.code(), ETIMEDOUT);
  pb::ReadRequest fast;
  fast.set_length(4);
  std::string payload;
  EXPECT_TRUE(Invoke(*channel, data::kRead, fast, &response, {}, &payload).ok());
  EXPECT_EQ(payload, "aaaa");
}

TEST_F(TransportTest, MissingServerIsConnectionRefused) {
  server_->Stop();
  auto channel = MakeTcpChannel(io_, address_);
  pb::ReadRequest request;
  pb::ReadResponse response;
  Status status = Invoke(*channel, data::kRead, request, &response);
  EXPECT_EQ(status.code(), ECONNREFUSED);
}

TEST_F(TransportTest, ChannelReconnectsAfterServerRestart) {
  auto channel = MakeTcpChannel(io_, address_);
  pb::ReadRequest request;
  request.set_length(2);
  pb::ReadResponse response;
  ASSERT_TRUE(Invoke(*channel, data::kRead, request, &response).ok());
  uint16_t port = server_->port();
  server_->Stop();  // closes the channel's connection too
  std::this_thread::sleep_for(100ms);
  Status while_down = Invoke(*channel, data::kRead, request, &response);
  EXPECT_FALSE(while_down.ok());
  server_ = MakeTcpServer(io_, dispatcher_);
  ASSERT_TRUE(server_->Listen("127.0.0.1", port).ok());
  // The same channel connects again on its next call.
  EXPECT_TRUE(Invoke(*channel, data::kRead, request, &response).ok());
}

}  // namespace
}  // namespace sealfs::rpc
