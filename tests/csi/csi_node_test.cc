// The Node service against the CSI specification: the error code of every
// missing field, repeated stage and publish calls, incompatible targets,
// read-only publishing, tokens from secrets, and a staged mount whose FUSE
// connection broke (found abnormal by the statistics, mounted again by a
// repeated NodeStageVolume).
#include <sys/mount.h>
#include <sys/stat.h>

#include <set>

#include "csi_plugin.h"

namespace sealfs::testing {
namespace {

using Controller = v1::Controller::Stub;
using Node = v1::Node::Stub;
using grpc::StatusCode;

class CsiNodeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!CanMount()) GTEST_SKIP() << "needs root and /dev/fuse";
    ASSERT_TRUE(bed_.Start());
    controller_ = bed_.controller();
    node_ = bed_.node();
  }

  std::string MustCreate(const std::string& name) {
    v1::CreateVolumeResponse response;
    grpc::Status status =
        Call(*controller_, &Controller::CreateVolume, CreateRequest(name, 1 << 24), &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.volume().volume_id();
  }
  grpc::Status Stage(const v1::NodeStageVolumeRequest& request) {
    v1::NodeStageVolumeResponse response;
    return Call(*node_, &Node::NodeStageVolume, request, &response);
  }
  grpc::Status Publish(const v1::NodePublishVolumeRequest& request) {
    v1::NodePublishVolumeResponse response;
    return Call(*node_, &Node::NodePublishVolume, request, &response);
  }
  grpc::Status Unpublish(const std::string& id, const std::string& target) {
    v1::NodeUnpublishVolumeRequest request;
    request.set_volume_id(id);
    request.set_target_path(target);
    v1::NodeUnpublishVolumeResponse response;
    return Call(*node_, &Node::NodeUnpublishVolume, request, &response);
  }
  grpc::Status Unstage(const std::string& id, const std::string& staging) {
    v1::NodeUnstageVolumeRequest request;
    request.set_volume_id(id);
    request.set_staging_target_path(staging);
    v1::NodeUnstageVolumeResponse response;
    return Call(*node_, &Node::NodeUnstageVolume, request, &response);
  }
  grpc::Status Stats(const std::string& id, const std::string& path,
                     v1::NodeGetVolumeStatsResponse* response) {
    v1::NodeGetVolumeStatsRequest request;
    request.set_volume_id(id);
    request.set_volume_path(path);
    return Call(*node_, &Node::NodeGetVolumeStats, request, response);
  }

  CsiTestBed bed_;
  std::unique_ptr<Controller> controller_;
  std::unique_ptr<Node> node_;
};

// Named csi_* so that `ctest -R csi_` selects every CSI test.
using csi_node = CsiNodeTest;

TEST_F(csi_node, InfoAndCapabilities) {
  v1::NodeGetInfoResponse info;
  ASSERT_TRUE(Call(*node_, &Node::NodeGetInfo, {}, &info).ok());
  EXPECT_EQ(info.node_id(), "test-node");
  EXPECT_EQ(info.max_volumes_per_node(), 0);
  v1::NodeGetCapabilitiesResponse capabilities;
  ASSERT_TRUE(Call(*node_, &Node::NodeGetCapabilities, {}, &capabilities).ok());
  std::set<int> types;
  for (const auto& capability : capabilities.capabilities()) {
    types.insert(capability.rpc().type());
  }
  using Rpc = v1::NodeServiceCapability::RPC;
  EXPECT_EQ(types, (std::set<int>{Rpc::STAGE_UNSTAGE_VOLUME, Rpc::GET_VOLUME_STATS,
                                  Rpc::VOLUME_CONDITION, Rpc::SINGLE_NODE_MULTI_WRITER}));
  EXPECT_EQ(CodeOf(*node_, &Node::NodeExpandVolume, {}), StatusCode::UNIMPLEMENTED);
}

TEST_F(csi_node, EveryRequiredFieldIsChecked) {
  const std::string id = "tenants/default/any", staging = bed_.staging(), target = bed_.target();
  v1::NodeStageVolumeRequest stage = StageRequest(id, staging);
  stage.clear_volume_id();
  EXPECT_EQ(Stage(stage).error_code(), StatusCode::INVALID_ARGUMENT);
  stage = StageRequest(id, "");
  EXPECT_EQ(Stage(stage).error_code(), StatusCode::INVALID_ARGUMENT);
  stage = StageRequest(id, staging);
  stage.clear_volume_capability();
  EXPECT_EQ(Stage(stage).error_code(), StatusCode::INVALID_ARGUMENT);
  stage = StageRequest(id, staging);
  *stage.mutable_volume_capability() = BlockCapability();
  EXPECT_EQ(Stage(stage).error_code(), StatusCode::INVALID_ARGUMENT);

  EXPECT_EQ(Unstage("", staging).error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Unstage(id, "").error_code(), StatusCode::INVALID_ARGUMENT);

  v1::NodePublishVolumeRequest publish = PublishRequest("", staging, target);
  EXPECT_EQ(Publish(publish).error_code(), StatusCode::INVALID_ARGUMENT);
  publish = PublishRequest(id, staging, "");
  EXPECT_EQ(Publish(publish).error_code(), StatusCode::INVALID_ARGUMENT);
  publish = PublishRequest(id, staging, target);
  publish.clear_volume_capability();
  EXPECT_EQ(Publish(publish).error_code(), StatusCode::INVALID_ARGUMENT);
  publish = PublishRequest(id, "", target);
  EXPECT_EQ(Publish(publish).error_code(), StatusCode::INVALID_ARGUMENT);
  publish = PublishRequest(id, staging, target);
  *publish.mutable_volume_capability() = BlockCapability();
  EXPECT_EQ(Publish(publish).error_code(), StatusCode::INVALID_ARGUMENT);

  EXPECT_EQ(Unpublish("", target).error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Unpublish(id, "").error_code(), StatusCode::INVALID_ARGUMENT);

  v1::NodeGetVolumeStatsResponse stats;
  EXPECT_EQ(Stats("", target, &stats).error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Stats(id, "", &stats).error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Stats(id, "some/path", &stats).error_code(), StatusCode::NOT_FOUND);
  EXPECT_TRUE(MountsMentioning(bed_.dir()).empty());
}

TEST_F(csi_node, StageAndPublishAreIdempotentAndRefuseIncompatibleTargets) {
  const std::string id = MustCreate("node-repeat"), other = MustCreate("node-other");
  const std::string staging = bed_.staging(), target = bed_.target();

  // Not staged yet: nothing to publish.
  EXPECT_EQ(Publish(PublishRequest(id, staging, target)).error_code(),
            StatusCode::FAILED_PRECONDITION);
  ASSERT_TRUE(Stage(StageRequest(id, staging)).ok());
  grpc::Status again = Stage(StageRequest(id, staging));
  EXPECT_TRUE(again.ok()) << again.error_message();
  EXPECT_EQ(MountsMentioning(staging).size(), 1u);
  EXPECT_EQ(Stage(StageRequest(other, staging)).error_code(), StatusCode::ALREADY_EXISTS);

  ASSERT_TRUE(Publish(PublishRequest(id, staging, target)).ok());
  EXPECT_TRUE(Publish(PublishRequest(id, staging, target)).ok());
  EXPECT_EQ(MountsMentioning(target).size(), 1u);
  EXPECT_EQ(Publish(PublishRequest(id, staging, target, true)).error_code(),
            StatusCode::ALREADY_EXISTS);
  EXPECT_TRUE(WriteFile(target + "/written", "through the bind mount"));
  EXPECT_EQ(ReadFile(staging + "/written"), "through the bind mount");

  // Read-only, asked for or implied by a reader-only access mode.
  const std::string read_only = bed_.target("ro"), reader = bed_.target("reader");
  ASSERT_TRUE(Publish(PublishRequest(id, staging, read_only, true)).ok());
  EXPECT_TRUE(Publish(PublishRequest(id, staging, read_only, true)).ok());
  v1::NodePublishVolumeRequest reader_only = PublishRequest(id, staging, reader);
  reader_only.mutable_volume_capability()->mutable_access_mode()->set_mode(
      Mode::MULTI_NODE_READER_ONLY);
  ASSERT_TRUE(Publish(reader_only).ok());
  for (const std::string& path : {read_only, reader}) {
    EXPECT_EQ(ReadFile(path + "/written"), "through the bind mount");
    EXPECT_FALSE(WriteFile(path + "/refused", "x"));
    EXPECT_EQ(errno, EROFS) << path;
    EXPECT_EQ(Publish(PublishRequest(id, staging, path)).error_code(), StatusCode::ALREADY_EXISTS);
  }

  for (const std::string& path : {target, read_only, reader}) {
    EXPECT_TRUE(Unpublish(id, path).ok());
    EXPECT_TRUE(Unpublish(id, path).ok()) << "a second unpublish finds nothing to do";
    EXPECT_TRUE(MountsMentioning(path).empty());
    EXPECT_FALSE(std::filesystem::exists(path));
  }
  v1::NodeGetVolumeStatsResponse stats;
  EXPECT_EQ(Stats(id, target, &stats).error_code(), StatusCode::NOT_FOUND);
  EXPECT_TRUE(Unstage(id, staging).ok());
  EXPECT_TRUE(Unstage(id, staging).ok());
  EXPECT_TRUE(MountsMentioning(staging).empty());
  EXPECT_TRUE(Unstage(id, bed_.staging("never")).ok());
  EXPECT_TRUE(Unpublish(id, bed_.target("never")).ok());
}

TEST_F(csi_node, TokensComeFromSecretsOrTheKey) {
  // A volume made outside CSI, mounted with its own token.
  auto admin = bed_.cluster().Admin();
  ASSERT_TRUE(admin.ok());
  pb::VolumeCreateRequest create;
  create.set_name("handmade");
  create.set_tenant("ops");
  pb::VolumeCreateResponse created;
  ASSERT_TRUE((*admin)->Meta(rpc::meta::kVolumeCreate, create, &created).ok());
  v1::NodeStageVolumeRequest stage = StageRequest("handmade", bed_.staging("handmade"));
  grpc::Status status = Stage(stage);
  EXPECT_EQ(status.error_code(), StatusCode::PERMISSION_DENIED)
      << "the key's token is not this volume's: " << status.error_message();
  (*stage.mutable_secrets())["token"] = auth::ToHex(auth::RandomSecret());
  EXPECT_EQ(Stage(stage).error_code(), StatusCode::PERMISSION_DENIED);
  (*stage.mutable_secrets())["token"] = "zz";
  EXPECT_EQ(Stage(stage).error_code(), StatusCode::INVALID_ARGUMENT);
  (*stage.mutable_secrets())["token"] = auth::ToHex(created.token());
  status = Stage(stage);
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_TRUE(Unstage("handmade", bed_.staging("handmade")).ok());

  // The key in the secrets instead of the configured file.
  const std::string id = MustCreate("keyed");
  v1::NodeStageVolumeRequest keyed = StageRequest(id, bed_.staging("keyed"));
  (*keyed.mutable_secrets())["volumeTokenKey"] = auth::ToHex(auth::RandomSecret());
  EXPECT_EQ(Stage(keyed).error_code(), StatusCode::PERMISSION_DENIED);
  (*keyed.mutable_secrets())["volumeTokenKey"] = auth::ToHex(bed_.token_key());
  status = Stage(keyed);
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_TRUE(Unstage(id, bed_.staging("keyed")).ok());

  // A volume that does not exist.
  EXPECT_EQ(Stage(StageRequest("tenants/default/none", bed_.staging("none"))).error_code(),
            StatusCode::NOT_FOUND);
  EXPECT_TRUE(MountsMentioning(bed_.dir()).empty());
}

// Aborts the FUSE connection of the mount at `path` through fusectl (as a
// dead daemon without a successor would leave it): the mount stays but
// answers ENOTCONN.
bool AbortFuseConnection(const std::string& path) {
  struct stat st {};
  if (stat((path + "/..").c_str(), &st) != 0) return false;
  std::ifstream info("/proc/self/mountinfo");
  std::string device;
  for (std::string line; std::getline(info, line);) {
    std::istringstream fields(line);
    std::string id, parent, dev, root, mount_point;
    fields >> id >> parent >> dev >> root >> mount_point;
    if (mount_point == path) device = dev;
  }
  if (device.empty()) return false;
  std::string minor = device.substr(device.find(':') + 1);
  std::ofstream abort_file("/sys/fs/fuse/connections/" + minor + "/abort");
  abort_file << "1";
  return static_cast<bool>(abort_file);
}

TEST_F(csi_node, BrokenOrVanishedStagingIsMountedAgain) {
  // fusectl is mounted for the test if it is not yet, and taken down after.
  bool mounted_fusectl = false;
  if (!std::filesystem::exists("/sys/fs/fuse/connections/")) GTEST_SKIP() << "no fusectl";
  if (std::filesystem::is_empty("/sys/fs/fuse/connections/")) {
    ASSERT_EQ(mount("fusectl", "/sys/fs/fuse/connections", "fusectl", 0, nullptr), 0)
        << strerror(errno);
    mounted_fusectl = true;
  }
  const std::string id = MustCreate("fragile"), staging = bed_.staging(), target = bed_.target();
  ASSERT_TRUE(Stage(StageRequest(id, staging)).ok());
  ASSERT_TRUE(Publish(PublishRequest(id, staging, target)).ok());
  ASSERT_TRUE(WriteFile(staging + "/kept", "data"));

  ASSERT_TRUE(AbortFuseConnection(staging));
  v1::NodeGetVolumeStatsResponse stats;
  ASSERT_TRUE(Stats(id, target, &stats).ok());
  EXPECT_TRUE(stats.volume_condition().abnormal());
  EXPECT_NE(stats.volume_condition().message().find("not connected"), std::string::npos)
      << stats.volume_condition().message();

  // NodeStageVolume repairs the staging mount (the pod's bind still holds
  // the dead one until it is published again).
  grpc::Status status = Stage(StageRequest(id, staging));
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(ReadFile(staging + "/kept"), "data");
  ASSERT_TRUE(Stats(id, staging, &stats).ok());
  EXPECT_FALSE(stats.volume_condition().abnormal()) << stats.volume_condition().message();

  // After a reboot nothing is mounted: staging just mounts.
  ASSERT_TRUE(Unpublish(id, target).ok());
  ASSERT_EQ(umount2(staging.c_str(), MNT_DETACH), 0);
  status = Stage(StageRequest(id, staging));
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(ReadFile(staging + "/kept"), "data");
  EXPECT_TRUE(Unstage(id, staging).ok());
  EXPECT_TRUE(MountsMentioning(bed_.dir()).empty());
  if (mounted_fusectl) umount2("/sys/fs/fuse/connections", MNT_DETACH);
}

}  // namespace
}  // namespace sealfs::testing
