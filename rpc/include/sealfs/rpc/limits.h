// Limits that clients and servers must agree on.
#pragma once

#include <cstdint>

namespace sealfs {

// The largest file size. Writes, truncates and fallocate stop here, on the
// metadata server and in every client alike.
inline constexpr uint64_t kMaxFileSize = uint64_t{1} << 50;

}  // namespace sealfs
