// Volume tokens the CSI plugin can recompute: DeriveVolumeToken, and the
// metadata server accepting a chosen token at VolumeCreate (storing only
// its hash), refusing short ones.
#include "sealfs/rpc/credentials.h"
#include "test_cluster.h"

namespace sealfs::testing {
namespace {

TEST(csi_volume_token, DerivedTokensAreDeterministicPerKeyAndName) {
  std::string key = auth::RandomSecret();
  std::string token = auth::DeriveVolumeToken(key, "tenants/a/v1");
  EXPECT_EQ(token.size(), auth::kSecretBytes);
  EXPECT_EQ(token, auth::DeriveVolumeToken(key, "tenants/a/v1"));
  EXPECT_NE(token, auth::DeriveVolumeToken(key, "tenants/a/v2"));
  EXPECT_NE(token, auth::DeriveVolumeToken(auth::RandomSecret(), "tenants/a/v1"));
  // Keys of any length work, also past what BLAKE2b takes as a key.
  std::string long_key(100, 'k');
  EXPECT_EQ(auth::DeriveVolumeToken(long_key, "v"), auth::DeriveVolumeToken(long_key, "v"));
  EXPECT_NE(auth::DeriveVolumeToken(long_key, "v"),
            auth::DeriveVolumeToken(std::string(100, 'l'), "v"));
}

TEST(csi_volume_token, VolumeCreateUsesTheGivenTokenAndRefusesShortOnes) {
  TestCluster cluster(1);
  ASSERT_TRUE(cluster.Start());
  auto admin = cluster.Admin();
  ASSERT_TRUE(admin.ok()) << admin.status().ToString();

  // A CSI-style name: tenants/<namespace>/<a name of 128 characters>.
  std::string name = "tenants/team-b/" + std::string(128, 'n');
  std::string token = auth::DeriveVolumeToken(auth::RandomSecret(), name);
  pb::VolumeCreateRequest request;
  request.set_name(name);
  request.set_tenant("team-b");
  request.set_token(token);
  pb::VolumeCreateResponse response;
  Status status = (*admin)->Meta(rpc::meta::kVolumeCreate, request, &response);
  ASSERT_TRUE(status.ok()) << status.ToString();
  EXPECT_EQ(response.token(), token);
  EXPECT_TRUE(response.volume().token_hash().empty()) << "the hash never leaves the server";

  auto mounted = cluster.MountWithToken(name, token);
  EXPECT_TRUE(mounted.ok()) << mounted.status().ToString();
  auto refused = cluster.MountWithToken(name, auth::RandomSecret());
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), EACCES);

  pb::VolumeCreateRequest short_token;
  short_token.set_name("tenants/team-b/short");
  short_token.set_tenant("team-b");
  short_token.set_token(std::string(31, 't'));
  status = (*admin)->Meta(rpc::meta::kVolumeCreate, short_token, &response);
  EXPECT_EQ(status.code(), EINVAL);
  EXPECT_NE(status.message().find("at least 32 bytes"), std::string::npos) << status.ToString();

  // Without a token the server still makes a random one.
  pb::VolumeCreateRequest random;
  random.set_name("tenants/team-b/random");
  random.set_tenant("team-b");
  status = (*admin)->Meta(rpc::meta::kVolumeCreate, random, &response);
  ASSERT_TRUE(status.ok()) << status.ToString();
  EXPECT_EQ(response.token().size(), auth::kSecretBytes);
  EXPECT_TRUE(cluster.MountWithToken("tenants/team-b/random", response.token()).ok());
}

}  // namespace
}  // namespace sealfs::testing
