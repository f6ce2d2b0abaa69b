#include "sealfs/rpc/credentials.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <mutex>

namespace sealfs::auth {
namespace {

void InitSodium() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (sodium_init() < 0) {
      std::fprintf(stderr, "libsodium failed to initialise\n");
      std::abort();
    }
  });
}

// Domain separation: a MAC made for one purpose never verifies for another.
constexpr std::string_view kServerProofLabel = "sealfs server proof v1";
constexpr std::string_view kCapabilityLabel = "sealfs capability v1";

void PutU64(std::string& out, uint64_t value) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(value >> (8 * i)));
}

// The fields a capability's MAC covers, in a fixed binary layout (protobuf
// serialization is not canonical).
std::string CapabilityBytes(const pb::Capability& cap) {
  std::string bytes(kCapabilityLabel);
  PutU64(bytes, cap.ino());
  PutU64(bytes, cap.volume_id());
  PutU64(bytes, cap.rights());
  PutU64(bytes, cap.write_limit());
  PutU64(bytes, static_cast<uint64_t>(cap.expires_ns()));
  PutU64(bytes, cap.session_id());
  PutU64(bytes, cap.chunk_size());
  PutU64(bytes, static_cast<uint64_t>(cap.stripe_size()));
  for (uint32_t chain : cap.stripe()) PutU64(bytes, chain);
  return bytes;
}

std::string Mac(std::string_view message, std::string_view key) {
  InitSodium();
  unsigned char derived[crypto_auth_KEYBYTES];
  // crypto_auth wants a key of exactly crypto_auth_KEYBYTES.
  crypto_generichash(derived, sizeof derived, reinterpret_cast<const unsigned char*>(key.data()),
                     key.size(), nullptr, 0);
  std::string mac(crypto_auth_BYTES, '\0');
  crypto_auth(reinterpret_cast<unsigned char*>(mac.data()),
              reinterpret_cast<const unsigned char*>(message.data()), message.size(), derived);
  sodium_memzero(derived, sizeof derived);
  return mac;
}

bool MacMatches(std::string_view mac, std::string_view message, std::string_view key) {
  if (mac.size() != crypto_auth_BYTES) return false;
  std::string expected = Mac(message, key);
  return sodium_memcmp(expected.data(), mac.data(), crypto_auth_BYTES) == 0;
}

}  // namespace

std::string RandomSecret() {
  InitSodium();
  std::string secret(kSecretBytes, '\0');
  randombytes_buf(secret.data(), secret.size());
  return secret;
}

std::string ToHex(std::string_view bytes) {
  InitSodium();
  std::string hex(bytes.size() * 2 + 1, '\0');
  sodium_bin2hex(hex.data(), hex.size(), reinterpret_cast<const unsigned char*>(bytes.data()),
                 bytes.size());
  hex.pop_back();
  return hex;
}

Result<std::string> FromHex(std::string_view hex) {
  InitSodium();
  std::string bytes(hex.size() / 2, '\0');
  size_t length = 0;
  const char* end = nullptr;
  if (hex.size() % 2 != 0 ||
      sodium_hex2bin(reinterpret_cast<unsigned char*>(bytes.data()), bytes.size(), hex.data(),
                     hex.size(), nullptr, &length, &end) != 0 ||
      end != hex.data() + hex.size()) {
    return Status(EINVAL, "not a hex string");
  }
  bytes.resize(length);
  return bytes;
}

std::string HashSecret(std::string_view secret) {
  InitSodium();
  std::string hash(crypto_generichash_BYTES, '\0');
  crypto_generichash(reinterpret_cast<unsigned char*>(hash.data()), hash.size(),
                     reinterpret_cast<const unsigned char*>(secret.data()), secret.size(), nullptr,
                     0);
  return hash;
}

bool SecretMatches(std::string_view stored_hash, std::string_view secret) {
  if (stored_hash.size() != crypto_generichash_BYTES || secret.empty()) return false;
  std::string hash = HashSecret(secret);
  return sodium_memcmp(hash.data(), stored_hash.data(), hash.size()) == 0;
}

Status WriteSecretFile(const std::string& path, std::string_view secret) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return Status(errno, "creating " + path + ": " + std::strerror(errno));
  std::string text = ToHex(secret) + "\n";
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
            ::fsync(fd) == 0;
  int error = errno;
  ::close(fd);
  if (!ok) {
    ::unlink(path.c_str());
    return Status(error, "writing " + path + ": " + std::strerror(error));
  }
  return Status::Ok();
}

Result<std::string> ReadSecretFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status(errno, "reading " + path + ": " + std::strerror(errno));
  struct stat st {};
  char buffer[256];
  ssize_t got = ::fstat(fd, &st) == 0 ? ::read(fd, buffer, sizeof buffer) : -1;
  int error = errno;
  ::close(fd);
  if (got < 0) return Status(error, "reading " + path + ": " + std::strerror(error));
  if (st.st_mode & 077) {
    return Status(EACCES, path + " is readable by others than its owner (chmod 600 it)");
  }
  std::string_view text(buffer, static_cast<size_t>(got));
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  Result<std::string> secret = FromHex(text);
  if (!secret.ok() || secret->size() < 16) {
    return Status(EINVAL, path + " does not hold a SealFS secret (hex, one line)");
  }
  return secret;
}

std::string DeriveVolumeToken(std::string_view token_key, std::string_view volume_name) {
  InitSodium();
  // The key keys BLAKE2b directly; one outside the lengths BLAKE2b takes
  // (16 to 64 bytes) is first hashed down to 32.
  std::string key(token_key);
  if (key.size() < crypto_generichash_KEYBYTES_MIN ||
      key.size() > crypto_generichash_KEYBYTES_MAX) {
    key = HashSecret(token_key);
  }
  std::string token(kSecretBytes, '\0');
  crypto_generichash(reinterpret_cast<unsigned char*>(token.data()), token.size(),
                     reinterpret_cast<const unsigned char*>(volume_name.data()), volume_name.size(),
                     reinterpret_cast<const unsigned char*>(key.data()), key.size());
  sodium_memzero(key.data(), key.size());
  return token;
}

std::string ServerProof(std::string_view cluster_key) {
  return Mac(kServerProofLabel, cluster_key);
}

bool IsServerProof(std::string_view cluster_key, std::string_view proof) {
  return MacMatches(proof, kServerProofLabel, cluster_key);
}

int64_t WallClockNs() {
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  return int64_t{now.tv_sec} * 1'000'000'000 + now.tv_nsec;
}

void SignCapability(pb::Capability* cap, std::string_view cluster_key) {
  cap->set_mac(Mac(CapabilityBytes(*cap), cluster_key));
}

Status VerifyCapability(const pb::Capability& cap, std::string_view cluster_key, int64_t now_ns) {
  if (cap.mac().empty()) return Status(EACCES, "no capability for this file");
  if (!MacMatches(cap.mac(), CapabilityBytes(cap), cluster_key)) {
    return Status(EACCES, "capability does not verify (forged or altered)");
  }
  if (cap.expires_ns() <= now_ns) return Status(EACCES, "capability expired");
  return Status::Ok();
}

}  // namespace sealfs::auth
