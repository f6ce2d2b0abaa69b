#include "sealfs/rpc/frame.h"

#include <gtest/gtest.h>

#include "sealfs/rpc/transport.h"

namespace sealfs::rpc {
namespace {

FrameHeader SampleHeader() {
  FrameHeader header;
  header.flags = kFlagResponse;
  header.service = 2;
  header.method = 7;
  header.request_id = 0x0123456789abcdefull;
  header.status = ENOENT;
  header.body_length = 100;
  header.payload_length = 1 << 20;
  return header;
}

TEST(FrameCodec, RoundTripsEveryField) {
  EncodedHeader raw = EncodeHeader(SampleHeader());
  Result<FrameHeader> decoded = DecodeHeader(raw.data(), raw.size());
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(decoded->flags, kFlagResponse);
  EXPECT_TRUE(decoded->is_response());
  EXPECT_EQ(decoded->service, 2);
  EXPECT_EQ(decoded->method, 7);
  EXPECT_EQ(decoded->request_id, 0x0123456789abcdefull);
  EXPECT_EQ(decoded->status, ENOENT);
  EXPECT_EQ(decoded->body_length, 100u);
  EXPECT_EQ(decoded->payload_length, 1u << 20);
}

TEST(FrameCodec, RejectsTruncatedHeader) {
  EncodedHeader raw = EncodeHeader(SampleHeader());
  Result<FrameHeader> decoded = DecodeHeader(raw.data(), kFrameHeaderSize - 1);
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.status().code(), EPROTO);
}

TEST(FrameCodec, RejectsBadMagic) {
  EncodedHeader raw = EncodeHeader(SampleHeader());
  raw[0] = 'X';
  Result<FrameHeader> decoded = DecodeHeader(raw.data(), raw.size());
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.status().code(), EPROTO);
  EXPECT_NE(decoded.status().message().find("magic"), std::string::npos);
}

TEST(FrameCodec, RejectsEveryFlippedBitThroughTheChecksum) {
  EncodedHeader clean = EncodeHeader(SampleHeader());
  for (size_t byte = 4; byte < 32; ++byte) {
    for (int bit = 0; bit < 8; ++bit) {
      EncodedHeader raw = clean;
      raw[byte] = static_cast<char>(raw[byte] ^ (1 << bit));
      EXPECT_FALSE(DecodeHeader(raw.data(), raw.size()).ok()) << "byte " << byte << " bit " << bit;
    }
  }
}

TEST(FrameCodec, RejectsUnknownVersion) {
  FrameHeader header = SampleHeader();
  header.version = 9;
  EncodedHeader raw = EncodeHeader(header);
  Result<FrameHeader> decoded = DecodeHeader(raw.data(), raw.size());
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.status().code(), EPROTO);
}

TEST(FrameCodec, RejectsOversizedBodyAndPayload) {
  FrameHeader header = SampleHeader();
  header.body_length = kMaxBodySize + 1;
  EncodedHeader raw = EncodeHeader(header);
  EXPECT_EQ(DecodeHeader(raw.data(), raw.size()).status().code(), EMSGSIZE);
  header = SampleHeader();
  header.payload_length = kMaxPayloadSize + 1;
  raw = EncodeHeader(header);
  EXPECT_EQ(DecodeHeader(raw.data(), raw.size()).status().code(), EMSGSIZE);
}

TEST(ParseAddress, AcceptsHostPortAndRejectsTheRest) {
  auto parsed = ParseAddress("127.0.0.1:7400");
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->first, "127.0.0.1");
  EXPECT_EQ(parsed->second, 7400);
  EXPECT_FALSE(ParseAddress("127.0.0.1").ok());
  EXPECT_FALSE(ParseAddress(":80").ok());
  EXPECT_FALSE(ParseAddress("host:99999").ok());
  EXPECT_FALSE(ParseAddress("host:12ab").ok());
}

}  // namespace
}  // namespace sealfs::rpc
