// The wire frame: a fixed binary header, a protobuf body, a raw payload.
//
//   offset size field
//   0      4    magic "SLFS"
//   4      1    version
//   5      1    flags (kFlagResponse)
//   6      2    service id
//   8      2    method id
//   10     2    reserved (zero)
//   12     8    request id
//   20     4    status (errno of a response, 0 = ok)
//   24     4    body length
//   28     4    payload length
//   32     4    header checksum (xxHash32 of bytes 0..31)
//
// All integers are little-endian. The payload carries bulk file data so that it
// never passes through protobuf.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "sealfs/rpc/payload.h"
#include "sealfs/rpc/status.h"

namespace sealfs::rpc {

inline constexpr uint32_t kFrameMagic = 0x53464c53;  // "SLFS" read little-endian
inline constexpr uint8_t kFrameVersion = 1;
inline constexpr size_t kFrameHeaderSize = 36;
inline constexpr uint8_t kFlagResponse = 1;
inline constexpr uint32_t kMaxBodySize = 16u << 20;
inline constexpr uint32_t kMaxPayloadSize = 64u << 20;

enum class ServiceId : uint16_t { kMeta = 1, kData = 2 };

struct FrameHeader {
  uint8_t version = kFrameVersion;
  uint8_t flags = 0;
  uint16_t service = 0;
  uint16_t method = 0;
  uint64_t request_id = 0;
  int32_t status = 0;
  uint32_t body_length = 0;
  uint32_t payload_length = 0;

  bool is_response() const { return flags & kFlagResponse; }
};

using EncodedHeader = std::array<char, kFrameHeaderSize>;

EncodedHeader EncodeHeader(const FrameHeader& header);

// Checks magic, version, checksum and size limits. Lengths above the limits are
// rejected before any buffer is allocated for them.
Result<FrameHeader> DecodeHeader(const char* bytes, size_t size);

// A complete message as it travels: header, body (serialized protobuf, or an
// error text on a failed response) and payload.
struct Message {
  FrameHeader header;
  std::string body;
  Payload payload;
};

}  // namespace sealfs::rpc
