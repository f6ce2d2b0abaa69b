// Binary key and value encodings of the metadata column families. Integers
// are big-endian so that keys sort by number.
#pragma once

#include <rocksdb/slice.h>
#include <sys/stat.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "meta.pb.h"

namespace sealfs::metadata {

inline std::string EncodeIno(uint64_t ino) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(ino >> (56 - 8 * i));
  return out;
}

inline uint64_t DecodeIno(const char* bytes) {
  uint64_t value = 0;
  for (int i = 0; i < 8; ++i) value = (value << 8) | static_cast<uint8_t>(bytes[i]);
  return value;
}

inline std::string DentryKey(uint64_t parent, std::string_view name) {
  return EncodeIno(parent).append(name);
}

inline std::string IndexKey(uint64_t parent, uint64_t seq) {
  return EncodeIno(parent).append(EncodeIno(seq));
}

inline std::string XattrKey(uint64_t ino, std::string_view name) {
  return EncodeIno(ino).append(name);
}

struct DentryValue {
  uint64_t ino;
  uint64_t seq;
  uint32_t type;
};

inline std::string EncodeDentry(const DentryValue& value) {
  return EncodeIno(value.ino) + EncodeIno(value.seq) + EncodeIno(value.type);
}

inline DentryValue DecodeDentry(std::string_view bytes) {
  if (bytes.size() < 24) return {0, 0, 0};
  return {DecodeIno(bytes.data()), DecodeIno(bytes.data() + 8),
          static_cast<uint32_t>(DecodeIno(bytes.data() + 16))};
}

struct IndexValue {
  uint64_t ino;
  uint32_t type;
  std::string name;
};

inline std::string EncodeIndex(uint64_t ino, uint32_t type, std::string_view name) {
  return EncodeIno(ino).append(EncodeIno(type)).append(name);
}

inline IndexValue DecodeIndex(const rocksdb::Slice& bytes) {
  if (bytes.size() < 16) return {0, 0, {}};
  return {DecodeIno(bytes.data()), static_cast<uint32_t>(DecodeIno(bytes.data() + 8)),
          std::string(bytes.data() + 16, bytes.size() - 16)};
}

// Service column family keys.
inline constexpr std::string_view kOrphanPrefix = "orphan/";
inline constexpr std::string_view kRemovalPrefix = "remove/";
inline constexpr std::string_view kVolumePrefix = "volume/";
inline constexpr std::string_view kServerPrefix = "server/";
inline constexpr std::string_view kSessionPrefix = "session/";
inline constexpr std::string_view kInoHighWaterKey = "ino-high-water";
inline constexpr std::string_view kFormatVersionKey = "format-version";
inline constexpr std::string_view kChainTableKey = "chain-table";
inline constexpr std::string_view kUsagePrefix = "usage/";
inline constexpr std::string_view kReservePrefix = "reserve/";
inline constexpr std::string_view kLedgerPrefix = "ledger/";
inline constexpr std::string_view kTrafficPrefix = "traffic/";
inline constexpr std::string_view kCountersKey = "counters";
// Changes across shards: those this shard prepared, and the intents of
// those it coordinates.
inline constexpr std::string_view kPreparedPrefix = "prepared/";
inline constexpr std::string_view kIntentPrefix = "intent/";
inline constexpr std::string_view kTxidHighWaterKey = "txid-high-water";

// A directory's first entry sequence: 1 and 2 are the cookies of "." and "..".
inline constexpr uint64_t kFirstDirSeq = 3;
inline bool IsDir(const pb::Inode& inode) { return S_ISDIR(inode.attr().mode()); }
inline constexpr std::string_view kNextVolumeIdKey = "next-volume-id";

inline std::string OrphanKey(uint64_t ino) { return std::string(kOrphanPrefix) + EncodeIno(ino); }
inline std::string RemovalKey(uint64_t ino) { return std::string(kRemovalPrefix) + EncodeIno(ino); }
inline std::string VolumeKey(std::string_view name) {
  return std::string(kVolumePrefix).append(name);
}
inline std::string ServerKey(uint32_t id) { return std::string(kServerPrefix) + EncodeIno(id); }
inline std::string SessionKey(uint64_t id) { return std::string(kSessionPrefix) + EncodeIno(id); }
inline std::string UsageKey(uint64_t volume) {
  return std::string(kUsagePrefix) + EncodeIno(volume);
}
inline std::string PreparedKey(uint64_t txid) {
  return std::string(kPreparedPrefix) + EncodeIno(txid);
}
inline std::string IntentKey(uint64_t txid) { return std::string(kIntentPrefix) + EncodeIno(txid); }
inline std::string ReserveKey(uint64_t ino) { return std::string(kReservePrefix) + EncodeIno(ino); }
inline std::string LedgerKey(uint64_t volume, int64_t time_ns) {
  return std::string(kLedgerPrefix) + EncodeIno(volume) + EncodeIno(static_cast<uint64_t>(time_ns));
}
inline std::string TrafficKey(uint32_t server, uint64_t volume) {
  return std::string(kTrafficPrefix) + EncodeIno(server) + EncodeIno(volume);
}

}  // namespace sealfs::metadata
