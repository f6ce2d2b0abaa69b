// Secrets, secret files, server proofs and capabilities.
#include "sealfs/rpc/credentials.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

namespace sealfs::auth {
namespace {

pb::Capability Genuine(const std::string& key) {
  pb::Capability cap;
  cap.set_ino(42);
  cap.set_volume_id(7);
  cap.set_rights(pb::CAP_READ | pb::CAP_WRITE);
  cap.set_write_limit(1 << 20);
  cap.set_expires_ns(WallClockNs() + 60'000'000'000);
  cap.set_session_id(99);
  cap.set_chunk_size(4 << 20);
  SignCapability(&cap, key);
  return cap;
}

TEST(Credentials, SecretsAreRandomAndHashesCompare) {
  std::string one = RandomSecret(), two = RandomSecret();
  EXPECT_EQ(one.size(), kSecretBytes);
  EXPECT_NE(one, two);
  std::string hash = HashSecret(one);
  EXPECT_NE(hash, one);
  EXPECT_TRUE(SecretMatches(hash, one));
  EXPECT_FALSE(SecretMatches(hash, two));
  EXPECT_FALSE(SecretMatches(hash, ""));
  EXPECT_FALSE(SecretMatches("", one));
  EXPECT_FALSE(SecretMatches(hash.substr(1), one));
}

TEST(Credentials, HexRoundTripsAndRejectsGarbage) {
  std::string secret = RandomSecret();
  auto back = FromHex(ToHex(secret));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, secret);
  EXPECT_EQ(FromHex("abc").status().code(), EINVAL);
  EXPECT_EQ(FromHex("zz").status().code(), EINVAL);
}

TEST(Credentials, SecretFilesAreOwnerOnlyAndNeverReplaced) {
  std::string dir = std::filesystem::temp_directory_path() / "sealfs-credentials-XXXXXX";
  dir = mkdtemp(dir.data());
  std::string path = dir + "/secret";
  std::string secret = RandomSecret();
  ASSERT_TRUE(WriteSecretFile(path, secret).ok());
  struct stat st {};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto read = ReadSecretFile(path);
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(*read, secret);
  EXPECT_EQ(WriteSecretFile(path, RandomSecret()).code(), EEXIST);
  EXPECT_EQ(*ReadSecretFile(path), secret);
  // Readable by others: refused, with the reason.
  chmod(path.c_str(), 0644);
  auto open_to_all = ReadSecretFile(path);
  EXPECT_EQ(open_to_all.status().code(), EACCES);
  EXPECT_NE(open_to_all.status().message().find("chmod 600"), std::string::npos);
  std::ofstream(dir + "/junk") << "not hex\n";
  chmod((dir + "/junk").c_str(), 0600);
  EXPECT_EQ(ReadSecretFile(dir + "/junk").status().code(), EINVAL);
  EXPECT_EQ(ReadSecretFile(dir + "/missing").status().code(), ENOENT);
  std::filesystem::remove_all(dir);
}

TEST(Credentials, ServerProofsNeedTheClusterKey) {
  std::string key = RandomSecret();
  EXPECT_TRUE(IsServerProof(key, ServerProof(key)));
  EXPECT_FALSE(IsServerProof(key, ServerProof(RandomSecret())));
  EXPECT_FALSE(IsServerProof(key, ""));
  EXPECT_FALSE(IsServerProof(key, key));
}

TEST(Capabilities, AGenuineOneVerifies) {
  std::string key = RandomSecret();
  EXPECT_TRUE(VerifyCapability(Genuine(key), key, WallClockNs()).ok());
}

TEST(Capabilities, ForgedOnesAreRefused) {
  std::string key = RandomSecret();
  pb::Capability unsigned_cap = Genuine(key);
  unsigned_cap.clear_mac();
  EXPECT_EQ(VerifyCapability(unsigned_cap, key, WallClockNs()).code(), EACCES);
  pb::Capability other_key = Genuine(RandomSecret());
  EXPECT_EQ(VerifyCapability(other_key, key, WallClockNs()).code(), EACCES);
  pb::Capability random_mac = Genuine(key);
  random_mac.set_mac(RandomSecret());
  EXPECT_EQ(VerifyCapability(random_mac, key, WallClockNs()).code(), EACCES);
  // A server proof is no capability.
  pb::Capability proof_as_mac = Genuine(key);
  proof_as_mac.set_mac(ServerProof(key));
  EXPECT_EQ(VerifyCapability(proof_as_mac, key, WallClockNs()).code(), EACCES);
}

TEST(Capabilities, EveryAlteredFieldIsRefused) {
  std::string key = RandomSecret();
  std::vector<std::pair<std::string, std::function<void(pb::Capability&)>>> changes = {
      {"inode", [](pb::Capability& c) { c.set_ino(43); }},
      {"volume", [](pb::Capability& c) { c.set_volume_id(8); }},
      {"rights", [](pb::Capability& c) { c.set_rights(pb::CAP_READ); }},
      {"range", [](pb::Capability& c) { c.set_write_limit(c.write_limit() + 1); }},
      {"expiry", [](pb::Capability& c) { c.set_expires_ns(c.expires_ns() + 1); }},
      {"session", [](pb::Capability& c) { c.set_session_id(100); }},
      {"chunk size", [](pb::Capability& c) { c.set_chunk_size(1 << 20); }},
  };
  for (auto& [name, change] : changes) {
    pb::Capability cap = Genuine(key);
    change(cap);
    Status status = VerifyCapability(cap, key, WallClockNs());
    EXPECT_EQ(status.code(), EACCES) << name;
    EXPECT_NE(status.message().find("forged or altered"), std::string::npos) << name;
  }
}

TEST(Capabilities, ExpiredOnesAreRefused) {
  std::string key = RandomSecret();
  pb::Capability cap = Genuine(key);
  EXPECT_TRUE(VerifyCapability(cap, key, cap.expires_ns() - 1).ok());
  Status expired = VerifyCapability(cap, key, cap.expires_ns());
  EXPECT_EQ(expired.code(), EACCES);
  EXPECT_NE(expired.message().find("expired"), std::string::npos);
}

}  // namespace
}  // namespace sealfs::auth
