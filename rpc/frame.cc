#include "sealfs/rpc/frame.h"

#include <xxhash.h>

#include <charconv>
#include <cstring>

#include "sealfs/rpc/transport.h"

namespace sealfs::rpc {
namespace {

template <typename T>
void Put(char* out, T value) {
  for (size_t i = 0; i < sizeof(T); ++i) out[i] = static_cast<char>((value >> (8 * i)) & 0xff);
}

template <typename T>
T Get(const char* in) {
  T value = 0;
  for (size_t i = 0; i < sizeof(T); ++i) {
    value |= static_cast<T>(static_cast<uint8_t>(in[i])) << (8 * i);
  }
  return value;
}

constexpr size_t kChecksumOffset = 32;

}  // namespace

EncodedHeader EncodeHeader(const FrameHeader& header) {
  EncodedHeader out{};
  char* p = out.data();
  Put<uint32_t>(p + 0, kFrameMagic);
  Put<uint8_t>(p + 4, header.version);
  Put<uint8_t>(p + 5, header.flags);
  Put<uint16_t>(p + 6, header.service);
  Put<uint16_t>(p + 8, header.method);
  Put<uint16_t>(p + 10, 0);
  Put<uint64_t>(p + 12, header.request_id);
  Put<uint32_t>(p + 20, static_cast<uint32_t>(header.status));
  Put<uint32_t>(p + 24, header.body_length);
  Put<uint32_t>(p + 28, header.payload_length);
  Put<uint32_t>(p + kChecksumOffset, XXH32(p, kChecksumOffset, 0));
  return out;
}

Result<FrameHeader> DecodeHeader(const char* bytes, size_t size) {
  if (size < kFrameHeaderSize) return Status(EPROTO, "frame header truncated");
  if (Get<uint32_t>(bytes) != kFrameMagic) return Status(EPROTO, "bad frame magic");
  if (Get<uint32_t>(bytes + kChecksumOffset) != XXH32(bytes, kChecksumOffset, 0)) {
    return Status(EPROTO, "frame header checksum mismatch");
  }
  FrameHeader header;
  header.version = Get<uint8_t>(bytes + 4);
  if (header.version != kFrameVersion) {
    return Status(EPROTO, "unsupported frame version " + std::to_string(header.version));
  }
  header.flags = Get<uint8_t>(bytes + 5);
  header.service = Get<uint16_t>(bytes + 6);
  header.method = Get<uint16_t>(bytes + 8);
  header.request_id = Get<uint64_t>(bytes + 12);
  header.status = static_cast<int32_t>(Get<uint32_t>(bytes + 20));
  header.body_length = Get<uint32_t>(bytes + 24);
  header.payload_length = Get<uint32_t>(bytes + 28);
  if (header.body_length > kMaxBodySize) {
    return Status(EMSGSIZE, "frame body of " + std::to_string(header.body_length) +
                                " bytes exceeds the limit");
  }
  if (header.payload_length > kMaxPayloadSize) {
    return Status(EMSGSIZE, "frame payload of " + std::to_string(header.payload_length) +
                                " bytes exceeds the limit");
  }
  return header;
}

Result<std::pair<std::string, uint16_t>> ParseAddress(std::string_view address) {
  size_t colon = address.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    return Status(EINVAL, "address '" + std::string(address) + "' is not host:port");
  }
  unsigned port = 0;
  std::string_view port_text = address.substr(colon + 1);
  auto [end, error] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (error != std::errc() || end != port_text.data() + port_text.size() || port > 65535) {
    return Status(EINVAL, "address '" + std::string(address) + "' has a bad port");
  }
  return std::make_pair(std::string(address.substr(0, colon)), static_cast<uint16_t>(port));
}

}  // namespace sealfs::rpc
