// The Identity and Controller services against the CSI specification: the
// error code of every missing field, idempotent repeats, incompatible
// re-creation, pagination, capacity, and secrets missing or wrong.
#include <set>

#include "csi_plugin.h"

namespace sealfs::testing {
namespace {

using Controller = v1::Controller::Stub;
using Identity = v1::Identity::Stub;
using grpc::StatusCode;
constexpr int64_t kMiB = 1 << 20;

class CsiControllerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(bed_.Start());
    controller_ = bed_.controller();
  }

  v1::Volume MustCreate(const v1::CreateVolumeRequest& request) {
    v1::CreateVolumeResponse response;
    grpc::Status status = Call(*controller_, &Controller::CreateVolume, request, &response);
    EXPECT_TRUE(status.ok()) << request.name() << ": " << status.error_message();
    return response.volume();
  }
  StatusCode CreateCode(const v1::CreateVolumeRequest& request) {
    return CodeOf(*controller_, &Controller::CreateVolume, request);
  }

  CsiTestBed bed_;
  std::unique_ptr<Controller> controller_;
};

// Suites are named csi_* so that `ctest -R csi_` selects every CSI test.
using csi_controller = CsiControllerTest;

TEST_F(csi_controller, IdentityNamesThePluginAndProbesTheCluster) {
  auto identity = bed_.identity();
  v1::GetPluginInfoResponse info;
  ASSERT_TRUE(Call(*identity, &Identity::GetPluginInfo, {}, &info).ok());
  EXPECT_EQ(info.name(), "csi.sealfs.io");
  EXPECT_FALSE(info.vendor_version().empty());

  v1::GetPluginCapabilitiesResponse capabilities;
  ASSERT_TRUE(Call(*identity, &Identity::GetPluginCapabilities, {}, &capabilities).ok());
  bool controller = false, online_expansion = false;
  for (const auto& capability : capabilities.capabilities()) {
    controller |= capability.service().type() == v1::PluginCapability::Service::CONTROLLER_SERVICE;
    online_expansion |=
        capability.volume_expansion().type() == v1::PluginCapability::VolumeExpansion::ONLINE;
  }
  EXPECT_TRUE(controller);
  EXPECT_TRUE(online_expansion);

  v1::ProbeResponse probe;
  ASSERT_TRUE(Call(*identity, &Identity::Probe, {}, &probe).ok());
  EXPECT_TRUE(probe.has_ready());
  EXPECT_TRUE(probe.ready().value());
  // Without the metadata server the plugin is healthy but not ready.
  bed_.cluster().KillMeta();
  ASSERT_TRUE(Call(*identity, &Identity::Probe, {}, &probe).ok());
  EXPECT_FALSE(probe.ready().value());
}

TEST_F(csi_controller, CapabilitiesAndUnimplementedMethods) {
  v1::ControllerGetCapabilitiesResponse response;
  ASSERT_TRUE(Call(*controller_, &Controller::ControllerGetCapabilities, {}, &response).ok());
  std::set<int> types;
  for (const auto& capability : response.capabilities()) types.insert(capability.rpc().type());
  using Rpc = v1::ControllerServiceCapability::RPC;
  EXPECT_EQ(types, (std::set<int>{Rpc::CREATE_DELETE_VOLUME, Rpc::EXPAND_VOLUME, Rpc::LIST_VOLUMES,
                                  Rpc::GET_CAPACITY, Rpc::SINGLE_NODE_MULTI_WRITER}));
  EXPECT_EQ(CodeOf(*controller_, &Controller::ControllerPublishVolume, {}),
            StatusCode::UNIMPLEMENTED);
  EXPECT_EQ(CodeOf(*controller_, &Controller::CreateSnapshot, {}), StatusCode::UNIMPLEMENTED);
}

TEST_F(csi_controller, CreateVolumeRefusesMissingAndUnsupportedFields) {
  v1::CreateVolumeRequest no_name = CreateRequest("");
  EXPECT_EQ(CreateCode(no_name), StatusCode::INVALID_ARGUMENT);
  v1::CreateVolumeRequest no_capabilities = CreateRequest("v");
  no_capabilities.clear_volume_capabilities();
  EXPECT_EQ(CreateCode(no_capabilities), StatusCode::INVALID_ARGUMENT);
  v1::CreateVolumeRequest block = CreateRequest("v");
  *block.add_volume_capabilities() = BlockCapability();
  EXPECT_EQ(CreateCode(block), StatusCode::INVALID_ARGUMENT);
  v1::CreateVolumeRequest unknown_mode = CreateRequest("v");
  unknown_mode.mutable_volume_capabilities(0)->mutable_access_mode()->set_mode(Mode::UNKNOWN);
  EXPECT_EQ(CreateCode(unknown_mode), StatusCode::INVALID_ARGUMENT);
  v1::CreateVolumeRequest no_access_type = CreateRequest("v");
  no_access_type.mutable_volume_capabilities(0)->clear_mount();
  EXPECT_EQ(CreateCode(no_access_type), StatusCode::INVALID_ARGUMENT);
  v1::CreateVolumeRequest from_snapshot = CreateRequest("v");
  from_snapshot.mutable_volume_content_source()->mutable_snapshot()->set_snapshot_id("s");
  EXPECT_EQ(CreateCode(from_snapshot), StatusCode::INVALID_ARGUMENT);
  v1::CreateVolumeRequest bad_name = CreateRequest("a b/c");
  EXPECT_EQ(CreateCode(bad_name), StatusCode::INVALID_ARGUMENT);

  for (auto [name, value] : std::vector<std::pair<std::string, std::string>>{
           {"colour", "blue"}, {"inodes", "many"}, {"stripeWidth", "17"}, {"replication", "0"}}) {
    v1::CreateVolumeRequest request = CreateRequest("v");
    (*request.mutable_parameters())[name] = value;
    EXPECT_EQ(CreateCode(request), StatusCode::INVALID_ARGUMENT) << name << "=" << value;
  }
  // One data server: the cluster keeps one copy, and says so.
  v1::CreateVolumeRequest two_copies = CreateRequest("v");
  (*two_copies.mutable_parameters())["replication"] = "2";
  v1::CreateVolumeResponse response;
  grpc::Status status = Call(*controller_, &Controller::CreateVolume, two_copies, &response);
  EXPECT_EQ(status.error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("keeps 1 copies"), std::string::npos)
      << status.error_message();

  EXPECT_EQ(CreateCode(CreateRequest("v", 2 * kMiB, kMiB)), StatusCode::OUT_OF_RANGE);
  EXPECT_EQ(CreateCode(CreateRequest("v", -1)), StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(AdminVolumes(bed_.cluster()).volumes_size() == 1) << "nothing was created";
}

TEST_F(csi_controller, CreateVolumeIsIdempotentByName) {
  v1::CreateVolumeRequest request = CreateRequest("same", 10 * kMiB);
  (*request.mutable_parameters())["replication"] = "1";
  (*request.mutable_parameters())["stripeWidth"] = "1";
  v1::Volume first = MustCreate(request);
  v1::Volume again = MustCreate(request);
  EXPECT_EQ(first.volume_id(), "tenants/default/same");
  EXPECT_EQ(again.volume_id(), first.volume_id());
  EXPECT_EQ(again.capacity_bytes(), 10 * kMiB);
  EXPECT_EQ(again.volume_context().at("tenant"), "default");
  EXPECT_EQ(again.volume_context().size(), first.volume_context().size());

  // A range that admits the existing size answers with it.
  v1::CreateVolumeRequest wider = request;
  wider.mutable_capacity_range()->set_required_bytes(5 * kMiB);
  wider.mutable_capacity_range()->set_limit_bytes(20 * kMiB);
  EXPECT_EQ(MustCreate(wider).capacity_bytes(), 10 * kMiB);
  // Another size, or other parameters: the name is taken.
  EXPECT_EQ(CreateCode(CreateRequest("same", 20 * kMiB, 20 * kMiB)), StatusCode::ALREADY_EXISTS);
  v1::CreateVolumeRequest other_inodes = request;
  (*other_inodes.mutable_parameters())["inodes"] = "5";
  EXPECT_EQ(CreateCode(other_inodes), StatusCode::ALREADY_EXISTS);
  pb::VolumeListResponse volumes = AdminVolumes(bed_.cluster());
  ASSERT_NE(FindVolume(volumes, "tenants/default/same"), nullptr);
  EXPECT_EQ(FindVolume(volumes, "tenants/default/same")->stripe_width(), 1u);

  // Sizes: 1 GiB when none is asked, the limit when only that is given.
  EXPECT_EQ(MustCreate(CreateRequest("unsized")).capacity_bytes(), 1024 * kMiB);
  EXPECT_EQ(MustCreate(CreateRequest("limited", 0, 3 * kMiB)).capacity_bytes(), 3 * kMiB);
  // The longest CSI name (128 characters) fits a SealFS volume name.
  std::string longest(128, 'x');
  EXPECT_EQ(MustCreate(CreateRequest(longest)).volume_id(), "tenants/default/" + longest);
  // The same name in two namespaces is two volumes.
  v1::CreateVolumeRequest in_a = CreateRequest("shared");
  (*in_a.mutable_parameters())["csi.storage.k8s.io/pvc/namespace"] = "ns-a";
  v1::CreateVolumeRequest in_b = in_a;
  (*in_b.mutable_parameters())["csi.storage.k8s.io/pvc/namespace"] = "ns-b";
  EXPECT_EQ(MustCreate(in_a).volume_id(), "tenants/ns-a/shared");
  EXPECT_EQ(MustCreate(in_b).volume_id(), "tenants/ns-b/shared");
}

TEST_F(csi_controller, DeleteVolumeIsIdempotentAndEndsMounts) {
  EXPECT_EQ(CodeOf(*controller_, &Controller::DeleteVolume, {}), StatusCode::INVALID_ARGUMENT);
  v1::DeleteVolumeRequest unknown;
  unknown.set_volume_id("tenants/default/never-made");
  EXPECT_EQ(CodeOf(*controller_, &Controller::DeleteVolume, unknown), StatusCode::OK);
  // Volumes this plugin did not make are never deleted by it.
  v1::DeleteVolumeRequest foreign;
  foreign.set_volume_id("default");
  EXPECT_EQ(CodeOf(*controller_, &Controller::DeleteVolume, foreign), StatusCode::OK);
  pb::VolumeListResponse volumes = AdminVolumes(bed_.cluster());
  EXPECT_NE(FindVolume(volumes, "default"), nullptr);

  v1::Volume volume = MustCreate(CreateRequest("doomed", kMiB));
  auto mount = bed_.cluster().Mount(volume.volume_id());
  ASSERT_TRUE(mount.ok()) << mount.status().ToString();
  v1::DeleteVolumeRequest request;
  request.set_volume_id(volume.volume_id());
  EXPECT_EQ(CodeOf(*controller_, &Controller::DeleteVolume, request), StatusCode::OK);
  EXPECT_EQ(CodeOf(*controller_, &Controller::DeleteVolume, request), StatusCode::OK);
  volumes = AdminVolumes(bed_.cluster());
  EXPECT_EQ(FindVolume(volumes, volume.volume_id()), nullptr);
}

TEST_F(csi_controller, ExpandVolumeGrowsOnlyAndChecksItsFields) {
  v1::ControllerExpandVolumeRequest request;
  request.mutable_capacity_range()->set_required_bytes(kMiB);
  EXPECT_EQ(CodeOf(*controller_, &Controller::ControllerExpandVolume, request),
            StatusCode::INVALID_ARGUMENT);
  request.set_volume_id("tenants/default/missing");
  EXPECT_EQ(CodeOf(*controller_, &Controller::ControllerExpandVolume, request),
            StatusCode::NOT_FOUND);
  v1::ControllerExpandVolumeRequest no_range;
  no_range.set_volume_id("tenants/default/missing");
  EXPECT_EQ(CodeOf(*controller_, &Controller::ControllerExpandVolume, no_range),
            StatusCode::INVALID_ARGUMENT);

  v1::Volume volume = MustCreate(CreateRequest("growing", 8 * kMiB));
  request.set_volume_id(volume.volume_id());
  v1::ControllerExpandVolumeResponse response;
  request.mutable_capacity_range()->set_required_bytes(4 * kMiB);
  ASSERT_TRUE(Call(*controller_, &Controller::ControllerExpandVolume, request, &response).ok());
  EXPECT_EQ(response.capacity_bytes(), 8 * kMiB) << "a smaller size keeps the quota";
  request.mutable_capacity_range()->set_required_bytes(12 * kMiB);
  ASSERT_TRUE(Call(*controller_, &Controller::ControllerExpandVolume, request, &response).ok());
  EXPECT_EQ(response.capacity_bytes(), 12 * kMiB);
  EXPECT_FALSE(response.node_expansion_required());
  ASSERT_TRUE(Call(*controller_, &Controller::ControllerExpandVolume, request, &response).ok());
  EXPECT_EQ(response.capacity_bytes(), 12 * kMiB);
  pb::VolumeListResponse volumes = AdminVolumes(bed_.cluster());
  EXPECT_EQ(FindVolume(volumes, volume.volume_id())->quota_bytes(), uint64_t(12 * kMiB));

  request.mutable_capacity_range()->set_required_bytes(20 * kMiB);
  request.mutable_capacity_range()->set_limit_bytes(16 * kMiB);
  EXPECT_EQ(CodeOf(*controller_, &Controller::ControllerExpandVolume, request),
            StatusCode::OUT_OF_RANGE);
  request.mutable_capacity_range()->set_required_bytes(14 * kMiB);
  *request.mutable_volume_capability() = BlockCapability();
  EXPECT_EQ(CodeOf(*controller_, &Controller::ControllerExpandVolume, request),
            StatusCode::INVALID_ARGUMENT);
}

TEST_F(csi_controller, ValidateVolumeCapabilitiesConfirmsOnlyWhatIsServed) {
  v1::ValidateVolumeCapabilitiesRequest request;
  *request.add_volume_capabilities() = MountCapability();
  EXPECT_EQ(CodeOf(*controller_, &Controller::ValidateVolumeCapabilities, request),
            StatusCode::INVALID_ARGUMENT);
  request.set_volume_id("tenants/default/missing");
  EXPECT_EQ(CodeOf(*controller_, &Controller::ValidateVolumeCapabilities, request),
            StatusCode::NOT_FOUND);
  v1::Volume volume = MustCreate(CreateRequest("checked", kMiB));
  v1::ValidateVolumeCapabilitiesRequest no_capabilities;
  no_capabilities.set_volume_id(volume.volume_id());
  EXPECT_EQ(CodeOf(*controller_, &Controller::ValidateVolumeCapabilities, no_capabilities),
            StatusCode::INVALID_ARGUMENT);

  request.set_volume_id(volume.volume_id());
  *request.mutable_volume_context() = volume.volume_context();
  *request.add_volume_capabilities() = MountCapability(Mode::MULTI_NODE_MULTI_WRITER);
  v1::ValidateVolumeCapabilitiesResponse response;
  ASSERT_TRUE(Call(*controller_, &Controller::ValidateVolumeCapabilities, request, &response).ok());
  ASSERT_TRUE(response.has_confirmed()) << response.message();
  EXPECT_EQ(response.confirmed().volume_capabilities_size(), 2);

  *request.add_volume_capabilities() = BlockCapability();
  response.Clear();
  ASSERT_TRUE(Call(*controller_, &Controller::ValidateVolumeCapabilities, request, &response).ok());
  EXPECT_FALSE(response.has_confirmed());
  EXPECT_NE(response.message().find("block"), std::string::npos) << response.message();

  request.mutable_volume_capabilities()->RemoveLast();
  (*request.mutable_parameters())["colour"] = "blue";
  response.Clear();
  ASSERT_TRUE(Call(*controller_, &Controller::ValidateVolumeCapabilities, request, &response).ok());
  EXPECT_FALSE(response.has_confirmed());
  EXPECT_FALSE(response.message().empty());
}

TEST_F(csi_controller, ListVolumesPagesThroughCsiVolumesOnly) {
  std::set<std::string> made;
  for (int i = 0; i < 5; ++i) {
    made.insert(MustCreate(CreateRequest("listed-" + std::to_string(i), kMiB)).volume_id());
  }
  v1::ListVolumesResponse all;
  ASSERT_TRUE(Call(*controller_, &Controller::ListVolumes, {}, &all).ok());
  std::set<std::string> listed;
  for (const auto& entry : all.entries()) listed.insert(entry.volume().volume_id());
  EXPECT_EQ(listed, made) << "the metadata server's own 'default' volume is not listed";
  EXPECT_TRUE(all.next_token().empty());
  EXPECT_EQ(all.entries(0).volume().capacity_bytes(), kMiB);

  // Pages of two: every volume exactly once, also when the last volume of a
  // page is deleted before the next page is asked for.
  std::vector<std::string> paged;
  v1::ListVolumesRequest page_request;
  page_request.set_max_entries(2);
  for (int page = 0; page < 10; ++page) {
    v1::ListVolumesResponse page_response;
    ASSERT_TRUE(Call(*controller_, &Controller::ListVolumes, page_request, &page_response).ok());
    EXPECT_LE(page_response.entries_size(), 2);
    for (const auto& entry : page_response.entries()) paged.push_back(entry.volume().volume_id());
    if (page == 0) {
      v1::DeleteVolumeRequest remove;
      remove.set_volume_id(paged.back());
      ASSERT_EQ(CodeOf(*controller_, &Controller::DeleteVolume, remove), StatusCode::OK);
    }
    if (page_response.next_token().empty()) break;
    page_request.set_starting_token(page_response.next_token());
  }
  EXPECT_EQ(std::set<std::string>(paged.begin(), paged.end()), made);
  EXPECT_EQ(paged.size(), made.size());

  v1::ListVolumesRequest bad_token;
  bad_token.set_starting_token("invalid-token");
  EXPECT_EQ(CodeOf(*controller_, &Controller::ListVolumes, bad_token), StatusCode::ABORTED);
  v1::ListVolumesRequest negative;
  negative.set_max_entries(-1);
  EXPECT_EQ(CodeOf(*controller_, &Controller::ListVolumes, negative), StatusCode::INVALID_ARGUMENT);
}

TEST_F(csi_controller, GetCapacityIsTheClusterFreeSpace) {
  v1::GetCapacityResponse response;
  ASSERT_TRUE(Call(*controller_, &Controller::GetCapacity, {}, &response).ok());
  auto admin = bed_.cluster().Admin();
  ASSERT_TRUE(admin.ok());
  auto map = (*admin)->RefreshClusterMap();
  ASSERT_TRUE(map.ok());
  ASSERT_EQ(map->servers_size(), 1);
  EXPECT_GT(response.available_capacity(), 0);
  // Free space moves as anything on the disk writes; both are near.
  int64_t free_bytes = static_cast<int64_t>(map->servers(0).free_bytes() / map->replicas());
  EXPECT_LT(std::abs(response.available_capacity() - free_bytes), 1024 * kMiB);

  v1::GetCapacityRequest block;
  *block.add_volume_capabilities() = BlockCapability();
  ASSERT_TRUE(Call(*controller_, &Controller::GetCapacity, block, &response).ok());
  EXPECT_EQ(response.available_capacity(), 0);
  v1::GetCapacityRequest two_copies;
  (*two_copies.mutable_parameters())["replication"] = "2";
  ASSERT_TRUE(Call(*controller_, &Controller::GetCapacity, two_copies, &response).ok());
  EXPECT_EQ(response.available_capacity(), 0);
}

TEST(csi_controller_secrets, RequestsCarryTheirSecretsWhenNoFilesAreConfigured) {
  CsiTestBed bed;
  bed.set_fallback_secrets(false);
  ASSERT_TRUE(bed.Start());
  auto controller = bed.controller();
  std::string admin_hex = auth::ToHex(bed.cluster().admin_credential());
  std::string key_hex = auth::ToHex(bed.token_key());

  EXPECT_EQ(CodeOf(*controller, &Controller::CreateVolume, CreateRequest("s", kMiB)),
            StatusCode::INVALID_ARGUMENT);
  v1::CreateVolumeRequest request = CreateRequest("s", kMiB);
  (*request.mutable_secrets())["adminCredential"] = admin_hex;
  EXPECT_EQ(CodeOf(*controller, &Controller::CreateVolume, request), StatusCode::INVALID_ARGUMENT)
      << "the volume token key is missing";
  (*request.mutable_secrets())["volumeTokenKey"] = "not hex";
  EXPECT_EQ(CodeOf(*controller, &Controller::CreateVolume, request), StatusCode::INVALID_ARGUMENT);
  (*request.mutable_secrets())["volumeTokenKey"] = key_hex;
  (*request.mutable_secrets())["adminCredential"] = auth::ToHex(auth::RandomSecret());
  EXPECT_EQ(CodeOf(*controller, &Controller::CreateVolume, request), StatusCode::PERMISSION_DENIED);
  (*request.mutable_secrets())["adminCredential"] = admin_hex;
  v1::CreateVolumeResponse created;
  grpc::Status status = Call(*controller, &Controller::CreateVolume, request, &created);
  ASSERT_TRUE(status.ok()) << status.error_message();
  // The volume's token is the one derived from the key in the secrets.
  EXPECT_TRUE(bed.cluster()
                  .MountWithToken(created.volume().volume_id(),
                                  auth::DeriveVolumeToken(bed.token_key(), "tenants/default/s"))
                  .ok());

  v1::DeleteVolumeRequest remove;
  remove.set_volume_id(created.volume().volume_id());
  EXPECT_EQ(CodeOf(*controller, &Controller::DeleteVolume, remove), StatusCode::INVALID_ARGUMENT);
  (*remove.mutable_secrets())["adminCredential"] = admin_hex;
  EXPECT_EQ(CodeOf(*controller, &Controller::DeleteVolume, remove), StatusCode::OK);
  // ListVolumes and GetCapacity have no secrets: they need the file.
  EXPECT_EQ(CodeOf(*controller, &Controller::ListVolumes, {}), StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(CodeOf(*controller, &Controller::GetCapacity, {}), StatusCode::FAILED_PRECONDITION);

  // A configured file that cannot be read is the plugin's problem, said so.
  std::vector<std::string> args = bed.ClusterArgs();
  args.insert(args.end(),
              {"--mode", "controller", "--admin-credential-file", bed.dir() + "/missing.credential",
               "--volume-token-key-file", bed.token_key_file()});
  CsiProcess misconfigured(bed.dir() + "/misconfigured.sock", args, bed.dir() + "/misc.log");
  ASSERT_TRUE(misconfigured.Start()) << misconfigured.log();
  auto other = v1::Controller::NewStub(misconfigured.channel());
  grpc::Status refused;
  v1::CreateVolumeResponse unused;
  refused = Call(*other, &Controller::CreateVolume, CreateRequest("t", kMiB), &unused);
  EXPECT_EQ(refused.error_code(), StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(refused.error_message().find("missing.credential"), std::string::npos)
      << refused.error_message();
}

TEST(csi_flags, UnknownAndInvalidFlagsAreNamed) {
  auto run = [](const std::string& args) {
    std::string command = std::string(SEALFS_CSI_BIN) + " " + args + " 2>&1";
    FILE* pipe = popen(command.c_str(), "r");
    std::string output;
    char buffer[512];
    while (size_t got = fread(buffer, 1, sizeof buffer, pipe)) output.append(buffer, got);
    int status = pclose(pipe);
    return std::make_pair(WEXITSTATUS(status), output);
  };
  auto [code, output] = run("--endpoint unix:///tmp/x.sock --meta m:1 --frobnicate 1");
  EXPECT_EQ(code, 2);
  EXPECT_NE(output.find("unknown flag --frobnicate"), std::string::npos) << output;
  std::tie(code, output) = run("--endpoint unix:///tmp/x.sock --meta m:1 --mode sideways");
  EXPECT_EQ(code, 2);
  EXPECT_NE(output.find("--mode"), std::string::npos) << output;
  std::tie(code, output) = run("--endpoint /tmp/x.sock --meta m:1 --check-args");
  EXPECT_EQ(code, 2);
  EXPECT_NE(output.find("--endpoint"), std::string::npos) << output;
  std::tie(code, output) = run("--endpoint unix:///tmp/x.sock --check-args");
  EXPECT_EQ(code, 2);
  EXPECT_NE(output.find("--meta"), std::string::npos) << output;
  std::tie(code, output) =
      run("--endpoint=unix:///csi/csi.sock --mode node --meta sealfs-meta.sealfs.svc:7400 "
          "--node-id n1 --mounter-endpoint unix:///csi/mounter.sock --transport auto "
          "--volume-token-key-file /etc/sealfs/key --check-args");
  EXPECT_EQ(code, 0) << output;
  EXPECT_EQ(output, "ok\n");
  std::tie(code, output) = run("--version");
  EXPECT_EQ(code, 0);
  EXPECT_NE(output.find("sealfs-csi "), std::string::npos);
}

}  // namespace
}  // namespace sealfs::testing
