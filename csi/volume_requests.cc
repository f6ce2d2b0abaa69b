#include "volume_requests.h"

#include <charconv>

#include "sealfs/rpc/credentials.h"

namespace sealfs::csi {
namespace {

using Mode = VolumeCapability::AccessMode::Mode;

constexpr std::string_view kProvisionerPrefix = "csi.storage.k8s.io/";
constexpr std::string_view kNamespaceParameter = "csi.storage.k8s.io/pvc/namespace";

Result<uint64_t> ParseCount(const std::string& name, const std::string& text, uint64_t max) {
  uint64_t value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || text.empty() || value > max) {
    return Status(EINVAL, "parameter " + name + "='" + text + "' is not an integer from 0 to " +
                              std::to_string(max));
  }
  return value;
}

// A name component SealFS accepts: letters, digits, '-', '_', '.', not "."
// or "..".
bool IsComponent(const std::string& text) {
  if (text.empty() || text == "." || text == "..") return false;
  for (char c : text) {
    if (!isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') return false;
  }
  return true;
}

}  // namespace

std::string UnsupportedCapability(const VolumeCapability& capability) {
  if (capability.has_block()) return "block access is not supported (SealFS volumes are mounted)";
  if (!capability.has_mount()) return "a volume capability needs mount access";
  if (!capability.has_access_mode()) return "a volume capability needs an access mode";
  switch (capability.access_mode().mode()) {
    case VolumeCapability::AccessMode::SINGLE_NODE_WRITER:
    case VolumeCapability::AccessMode::SINGLE_NODE_READER_ONLY:
    case VolumeCapability::AccessMode::MULTI_NODE_READER_ONLY:
    case VolumeCapability::AccessMode::MULTI_NODE_SINGLE_WRITER:
    case VolumeCapability::AccessMode::MULTI_NODE_MULTI_WRITER:
    case VolumeCapability::AccessMode::SINGLE_NODE_SINGLE_WRITER:
    case VolumeCapability::AccessMode::SINGLE_NODE_MULTI_WRITER:
      return "";
    default:
      return "access mode " + std::to_string(capability.access_mode().mode()) + " is not supported";
  }
}

std::string UnsupportedCapabilities(
    const google::protobuf::RepeatedPtrField<VolumeCapability>& capabilities) {
  for (const VolumeCapability& capability : capabilities) {
    std::string why = UnsupportedCapability(capability);
    if (!why.empty()) return why;
  }
  return "";
}

bool IsReaderOnly(Mode mode) {
  return mode == VolumeCapability::AccessMode::SINGLE_NODE_READER_ONLY ||
         mode == VolumeCapability::AccessMode::MULTI_NODE_READER_ONLY;
}

Result<VolumeParameters> ParseVolumeParameters(const StringMap& parameters) {
  VolumeParameters parsed;
  for (const auto& [name, value] : parameters) {
    if (name == kNamespaceParameter) {
      if (!IsComponent(value)) {
        return Status(EINVAL, "namespace '" + value + "' cannot name a SealFS tenant");
      }
      parsed.tenant = value;
    } else if (name.starts_with(kProvisionerPrefix)) {
      continue;  // the PVC and PV names the provisioner adds; informational
    } else if (name == "inodes") {
      Result<uint64_t> inodes = ParseCount(name, value, UINT64_MAX);
      if (!inodes.ok()) return inodes.status();
      parsed.quota_inodes = *inodes;
    } else if (name == "stripeWidth") {
      Result<uint64_t> width = ParseCount(name, value, 16);
      if (!width.ok()) return width.status();
      parsed.stripe_width = static_cast<uint32_t>(*width);
    } else if (name == "replication") {
      Result<uint64_t> copies = ParseCount(name, value, 3);
      if (!copies.ok() || *copies == 0) {
        return Status(EINVAL, "parameter replication='" + value + "' is not 1, 2 or 3");
      }
      parsed.replication = static_cast<uint32_t>(*copies);
    } else {
      return Status(EINVAL,
                    "unknown parameter '" + name + "' (known: inodes, stripeWidth, replication)");
    }
  }
  return parsed;
}

Result<std::string> VolumeNameFor(const std::string& tenant, const std::string& csi_name) {
  if (!IsComponent(csi_name)) {
    return Status(EINVAL, "volume name '" + csi_name +
                              "' may hold only letters, digits, '-', '_' and '.' in SealFS");
  }
  return std::string(kVolumePrefix) + tenant + "/" + csi_name;
}

std::string TenantOf(const std::string& volume_id) {
  if (!volume_id.starts_with(kVolumePrefix)) return "";
  size_t end = volume_id.find('/', kVolumePrefix.size());
  if (end == std::string::npos) return "";
  return volume_id.substr(kVolumePrefix.size(), end - kVolumePrefix.size());
}

Result<CapacityBounds> ParseCapacityRange(const v1::CapacityRange& range) {
  if (range.required_bytes() < 0 || range.limit_bytes() < 0) {
    return Status(EINVAL, "capacity_range holds a negative size");
  }
  CapacityBounds bounds{static_cast<uint64_t>(range.required_bytes()),
                        static_cast<uint64_t>(range.limit_bytes())};
  if (bounds.limit != 0 && bounds.required > bounds.limit) {
    return Status(ERANGE, "capacity_range asks for at least " + std::to_string(bounds.required) +
                              " bytes but at most " + std::to_string(bounds.limit));
  }
  return bounds;
}

Result<std::string> SecretFromRequest(const StringMap& secrets, std::string_view key,
                                      const std::string& fallback_file, std::string_view flag) {
  auto found = secrets.find(std::string(key));
  if (found != secrets.end()) {
    std::string_view text = found->second;
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
    Result<std::string> secret = auth::FromHex(text);
    if (!secret.ok() || secret->size() < 16) {
      return Status(EINVAL, "secret '" + std::string(key) + "' is not a SealFS secret in hex");
    }
    return secret;
  }
  if (fallback_file.empty()) {
    return Status(EINVAL, "no secret '" + std::string(key) +
                              "' in the request and sealfs-csi has no --" + std::string(flag));
  }
  Result<std::string> secret = auth::ReadSecretFile(fallback_file);
  if (!secret.ok()) {
    return Status(ENOKEY, "--" + std::string(flag) + ": " + secret.status().message());
  }
  return secret;
}

}  // namespace sealfs::csi
