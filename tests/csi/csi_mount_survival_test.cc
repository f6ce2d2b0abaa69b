// Mounts published by sealfs-csi outlive the processes behind them. A pod's
// process holds a working directory, an open file and an open directory in
// a published path and keeps reading and writing while (a) every sealfs-csi
// process of the node is killed (kill -9) and started again, (b) the FUSE
// daemon of the volume is killed, (c) both happen at once. It must see no
// error but ECONNABORTED on a request a killed daemon had taken, and go on
// within 10 s, without NodePublishVolume being called again.
#include <sys/stat.h>

#include "csi_plugin.h"
#include "e2e/mount_survival.h"

namespace sealfs::testing {
namespace {

using namespace std::chrono_literals;
using Controller = v1::Controller::Stub;
using Node = v1::Node::Stub;

constexpr uid_t kPodUser = 4343;
constexpr char kVolume[] = "tenants/team-s/pvc-survival";

class CsiMountSurvivalTest : public ::testing::Test {
 protected:
  // A volume created, staged and published into a pod directory owned by
  // the pod's user, with the busy application started there.
  void SetUp() override {
    if (!CanMount()) GTEST_SKIP() << "needs root and /dev/fuse";
    bed_ = std::make_unique<CsiTestBed>(CsiTestBed::Layout::kWithMounter);
    ASSERT_TRUE(bed_->Start());
    v1::CreateVolumeRequest create = CreateRequest("pvc-survival", int64_t{1} << 30);
    (*create.mutable_parameters())["csi.storage.k8s.io/pvc/namespace"] = "team-s";
    v1::CreateVolumeResponse created;
    auto controller = bed_->controller();
    grpc::Status status = Call(*controller, &Controller::CreateVolume, create, &created);
    ASSERT_TRUE(status.ok()) << status.error_message();
    ASSERT_EQ(created.volume().volume_id(), kVolume);
    StageAndPublish();
    ASSERT_EQ(chmod(bed_->dir().c_str(), 0755), 0);
    ASSERT_EQ(chown(bed_->target().c_str(), kPodUser, kPodUser), 0) << strerror(errno);
    app_ = std::make_unique<BusyApplication>(bed_->target(), kPodUser, kPodUser);
    ASSERT_TRUE(WaitFor(20s, [&] { return app_->counters().rounds_ok >= 20; }))
        << "the application does not get going; last errno " << app_->counters().last_errno;
    daemon_ = FindMountProcesses(bed_->staging()).daemon;
    ASSERT_GT(daemon_, 0) << "no daemon serves " << bed_->staging();
  }

  void TearDown() override {
    if (!bed_) return;
    app_.reset();
    auto node = bed_->node();
    v1::NodeUnpublishVolumeRequest unpublish;
    unpublish.set_volume_id(kVolume);
    unpublish.set_target_path(bed_->target());
    v1::NodeUnpublishVolumeResponse unpublished;
    EXPECT_TRUE(Call(*node, &Node::NodeUnpublishVolume, unpublish, &unpublished).ok());
    v1::NodeUnstageVolumeRequest unstage;
    unstage.set_volume_id(kVolume);
    unstage.set_staging_target_path(bed_->staging());
    v1::NodeUnstageVolumeResponse unstaged;
    EXPECT_TRUE(Call(*node, &Node::NodeUnstageVolume, unstage, &unstaged).ok());
    EXPECT_TRUE(MountsMentioning(bed_->staging()).empty());
    EXPECT_TRUE(MountsMentioning(bed_->target()).empty());
    // Unmounting ends the keeper and its daemon, whoever their parent is now.
    EXPECT_TRUE(WaitFor(10s, [&] {
      MountProcesses left = FindMountProcesses(bed_->staging());
      return left.keeper == 0 && left.daemon == 0;
    }));
  }

  // NodeStageVolume and NodePublishVolume, as kubelet calls them; both
  // succeed and leave exactly one mount at each path.
  void StageAndPublish() {
    auto node = bed_->node();
    v1::NodeStageVolumeResponse staged;
    grpc::Status status =
        Call(*node, &Node::NodeStageVolume, StageRequest(kVolume, bed_->staging()), &staged);
    ASSERT_TRUE(status.ok()) << status.error_message();
    v1::NodePublishVolumeResponse published;
    status = Call(*node, &Node::NodePublishVolume,
                  PublishRequest(kVolume, bed_->staging(), bed_->target()), &published);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(MountsMentioning(bed_->staging()).size(), 1u);
    EXPECT_EQ(MountsMentioning(bed_->target()).size(), 1u);
  }

  // Every sealfs-csi process of the node: the controller, the node plugin
  // and the mounter, the parent of the FUSE keepers.
  std::vector<CsiProcess*> PluginProcesses() {
    return {bed_->controller_process(), &bed_->node_process(), bed_->mounter_process()};
  }

  void KillPlugin() {
    for (CsiProcess* process : PluginProcesses()) process->Stop(SIGKILL);
  }

  void RestartPlugin() {
    for (CsiProcess* process : PluginProcesses()) {
      ASSERT_TRUE(process->Start()) << process->log();
    }
  }

  // Kills the volume's FUSE daemon; the keeper starts another.
  void KillDaemon() {
    pid_t daemon = FindMountProcesses(bed_->staging()).daemon;
    ASSERT_GT(daemon, 0);
    ASSERT_EQ(kill(daemon, SIGKILL), 0);
    ++daemon_kills_;
  }

  // The application completes `rounds` more rounds within 10 s.
  void ExpectApplicationGoesOn(uint64_t rounds, const char* after) {
    uint64_t before = app_->counters().rounds_ok;
    EXPECT_TRUE(WaitFor(10s, [&] { return app_->counters().rounds_ok >= before + rounds; }))
        << "the application stalled after " << after << "; last errno "
        << app_->counters().last_errno;
  }

  // Stops the application and checks what it saw and what it wrote.
  void ExpectApplicationUnharmed() {
    ASSERT_EQ(app_->Stop(), 0) << "the application could not close its files";
    const BusyCounters& seen = app_->counters();
    EXPECT_EQ(seen.unexpected_errors, 0u) << "last errno " << seen.last_errno;
    EXPECT_LE(seen.errors, daemon_kills_) << "more than one aborted request per daemon kill";
    std::string journal = ReadFile(bed_->staging() + "/journal.bin");
    ASSERT_GE(journal.size(), seen.records * BusyApplication::kRecord);
    for (uint64_t index = 0; index < seen.records; ++index) {
      ASSERT_EQ(journal.substr(index * BusyApplication::kRecord, BusyApplication::kRecord),
                BusyApplication::Record(index))
          << "record " << index;
    }
    v1::NodeGetVolumeStatsRequest request;
    request.set_volume_id(kVolume);
    request.set_volume_path(bed_->target());
    v1::NodeGetVolumeStatsResponse stats;
    auto node = bed_->node();
    grpc::Status status = Call(*node, &Node::NodeGetVolumeStats, request, &stats);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_FALSE(stats.volume_condition().abnormal()) << stats.volume_condition().message();
  }

  std::unique_ptr<CsiTestBed> bed_;
  std::unique_ptr<BusyApplication> app_;
  pid_t daemon_ = 0;
  uint64_t daemon_kills_ = 0;
};

// Named as the other CSI tests are, so that `ctest -R csi_` runs these too.
using csi_mount_survival = CsiMountSurvivalTest;

TEST_F(csi_mount_survival, KillingEveryPluginProcessLeavesThePodWorking) {
  for (int restart = 0; restart < 2; ++restart) {
    KillPlugin();
    ExpectApplicationGoesOn(20, "the plugin was killed");
    RestartPlugin();
    // kubelet stages and publishes again after a plugin restart: both find
    // the mounts there and keep them.
    StageAndPublish();
    ExpectApplicationGoesOn(20, "the plugin was restarted");
  }
  EXPECT_EQ(FindMountProcesses(bed_->staging()).daemon, daemon_) << "the daemon was replaced";
  ExpectApplicationUnharmed();
}

TEST_F(csi_mount_survival, AKilledFuseDaemonIsReplacedWithoutNodePublish) {
  for (int kill_round = 0; kill_round < 3; ++kill_round) {
    KillDaemon();
    ExpectApplicationGoesOn(10, "its FUSE daemon was killed");
  }
  EXPECT_NE(FindMountProcesses(bed_->staging()).daemon, daemon_);
  ExpectApplicationUnharmed();
}

TEST_F(csi_mount_survival, PluginAndFuseDaemonKilledAtOnce) {
  for (int round = 0; round < 2; ++round) {
    KillDaemon();
    KillPlugin();
    ExpectApplicationGoesOn(10, "the plugin and the FUSE daemon were killed");
    RestartPlugin();
    StageAndPublish();
    ExpectApplicationGoesOn(10, "the plugin was restarted");
  }
  ExpectApplicationUnharmed();
}

}  // namespace
}  // namespace sealfs::testing
