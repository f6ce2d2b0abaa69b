// What CSI requests ask of a volume, checked and turned into SealFS terms:
// access capabilities, StorageClass parameters, capacity ranges, names and
// the secrets that come with a request.
#pragma once

#include <google/protobuf/map.h>

#include <optional>
#include <string>

#include "csi.pb.h"
#include "sealfs/rpc/status.h"

namespace sealfs::csi {

// The CSI wire types (package csi.v1).
namespace v1 = ::csi::v1;
using StringMap = google::protobuf::Map<std::string, std::string>;
using v1::VolumeCapability;

// Every volume sealfs-csi makes is named tenants/<tenant>/<CSI name>; the
// name is also the CSI volume id.
inline constexpr std::string_view kVolumePrefix = "tenants/";
inline constexpr uint64_t kDefaultCapacityBytes = 1ull << 30;

// The secret keys a request may carry.
inline constexpr std::string_view kAdminCredentialSecret = "adminCredential";
inline constexpr std::string_view kVolumeTokenKeySecret = "volumeTokenKey";
inline constexpr std::string_view kTokenSecret = "token";

// Why sealfs-csi cannot serve `capability`, or "" when it can (mount access
// with any access mode but UNKNOWN; no block access).
std::string UnsupportedCapability(const VolumeCapability& capability);
// The first unsupported capability of a list, or "".
std::string UnsupportedCapabilities(
    const google::protobuf::RepeatedPtrField<VolumeCapability>& capabilities);
bool IsReaderOnly(VolumeCapability::AccessMode::Mode mode);

// StorageClass parameters, checked: inodes, stripeWidth, replication and
// the csi.storage.k8s.io/ ones the provisioner adds. EINVAL otherwise.
struct VolumeParameters {
  std::string tenant = "default";
  uint64_t quota_inodes = 0;
  uint32_t stripe_width = 0;
  std::optional<uint32_t> replication;  // must equal the cluster's copy count
};
Result<VolumeParameters> ParseVolumeParameters(const StringMap& parameters);

// tenants/<tenant>/<name>, or EINVAL when the CSI name cannot be a
// component of a SealFS volume name.
Result<std::string> VolumeNameFor(const std::string& tenant, const std::string& csi_name);
// The tenant part of a volume id made by VolumeNameFor ("" if not one).
std::string TenantOf(const std::string& volume_id);

// A capacity range as bytes: 0 means "not given". EINVAL for negative
// values, ERANGE when required exceeds limit.
struct CapacityBounds {
  uint64_t required = 0;
  uint64_t limit = 0;
  bool Admits(uint64_t bytes) const { return bytes >= required && (limit == 0 || bytes <= limit); }
};
Result<CapacityBounds> ParseCapacityRange(const v1::CapacityRange& range);

// A hex secret from the request's secrets under `key`, else from the file
// of `flag` (read now, so a rotated file takes effect). EINVAL when neither
// has it; ENOKEY when the file cannot be read.
Result<std::string> SecretFromRequest(const StringMap& secrets, std::string_view key,
                                      const std::string& fallback_file, std::string_view flag);

}  // namespace sealfs::csi
