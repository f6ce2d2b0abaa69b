#include "cli_common.h"

#include <cstdio>
#include <cstdlib>

#include "local_cluster.h"
#include "sealfs/rpc/credentials.h"

namespace sealfs::cli {

int Fail(const Status& status) {
  std::fprintf(stderr, "sealfs: %s\n", status.ToString().c_str());
  return 1;
}

std::string MetaAddress(const Flags& flags) {
  if (flags.Has("meta")) return flags.Get("meta");
  if (const char* env = std::getenv("SEALFS_META")) return env;
  std::string local = LocalMetaAddress(flags.Get("state", kDefaultState));
  return local.empty() ? "127.0.0.1:7400" : local;
}

Result<std::string> AdminCredential(const Flags& flags) {
  std::string path = flags.Get("credentials");
  if (path.empty()) {
    const char* env = std::getenv("SEALFS_CREDENTIALS");
    path = env ? env : flags.Get("state", kDefaultState) + "/admin.credential";
  }
  Result<std::string> secret = auth::ReadSecretFile(path);
  if (!secret.ok()) {
    return Status(secret.status().code(),
                  "admin credential: " + secret.status().message() + " (give --credentials FILE)");
  }
  return secret;
}

Result<std::unique_ptr<client::Client>> Admin(const Flags& flags) {
  client::ClientOptions options;
  options.meta_address = MetaAddress(flags);
  options.volume = "";
  options.timeout = std::chrono::seconds(10);
  Result<std::string> credential = AdminCredential(flags);
  if (!credential.ok()) return credential.status();
  options.admin_credential = *credential;
  auto connected = client::Client::Connect(options);
  if (!connected.ok()) {
    return Status(connected.status().code(), "cannot reach metadata server " +
                                                 options.meta_address + ": " +
                                                 connected.status().ToString());
  }
  return connected;
}

std::string HumanBytes(uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1024 && unit < 5) {
    value /= 1024;
    ++unit;
  }
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, unit == 0 ? "%.0f %s" : "%.1f %s", value, units[unit]);
  return buffer;
}

Result<uint64_t> ParseCount(const std::string& text, bool binary) {
  if (text == "none" || text == "unlimited") return uint64_t{0};
  char* end = nullptr;
  errno = 0;
  unsigned long long number = std::strtoull(text.c_str(), &end, 10);
  if (text.empty() || end == text.c_str() || errno != 0 || text[0] == '-') {
    return Status(EINVAL, "'" + text + "' is not a count");
  }
  std::string unit(end);
  if (!unit.empty() && unit.back() == 'B') unit.pop_back();  // "GiB", "GB"
  if (!unit.empty() && unit.back() == 'i') unit.pop_back();
  uint64_t base = binary ? 1024 : 1000;
  int power = 0;
  if (unit.empty()) {
    power = 0;
  } else if (unit.size() == 1 && std::string("KMGTP").find(unit[0]) != std::string::npos) {
    power = static_cast<int>(std::string("KMGTP").find(unit[0])) + 1;
  } else if (unit.size() == 1 && unit[0] == 'k') {
    power = 1;
  } else {
    return Status(EINVAL, "'" + text + "': unknown unit (use K, M, G, T, P)");
  }
  uint64_t value = number;
  for (int i = 0; i < power; ++i) {
    if (value > UINT64_MAX / base) return Status(ERANGE, "'" + text + "' is too large");
    value *= base;
  }
  return value;
}

}  // namespace sealfs::cli
