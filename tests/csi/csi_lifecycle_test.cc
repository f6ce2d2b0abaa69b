// A volume's whole life through sealfs-csi on a real local cluster:
// CreateVolume, NodeStageVolume, NodePublishVolume, an unprivileged
// writer in the published path, volume statistics, ControllerExpandVolume,
// EDQUOT past the quota, and everything taken down again.
#include <dirent.h>
#include <grp.h>
#include <sys/stat.h>

#include <functional>

#include "csi_plugin.h"

namespace sealfs::testing {
namespace {

constexpr uint64_t kMiB = 1 << 20;
constexpr uid_t kPodUser = 4242;

// Runs `work` in a child process as kPodUser (as a pod with fsGroup would
// run) and returns its exit code. `work` may make system calls only: the
// parent has threads, so the child must not allocate.
int AsPodUser(const std::function<int()>& work) {
  pid_t pid = fork();
  if (pid == 0) {
    if (setgroups(0, nullptr) != 0 || setgid(kPodUser) != 0 || setuid(kPodUser) != 0) _exit(100);
    _exit(work());
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// Writes `bytes` to a new file in blocks of `block`, then fsyncs and closes
// it: 0, or the errno of the first step that failed.
int WriteNewFile(const char* path, size_t bytes, const std::string& block) {
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
  if (fd < 0) return errno;
  for (size_t done = 0; done < bytes; done += block.size()) {
    if (write(fd, block.data(), block.size()) != static_cast<ssize_t>(block.size())) {
      int error = errno;
      close(fd);
      return error;
    }
  }
  int error = fsync(fd) == 0 ? 0 : errno;
  if (close(fd) != 0 && error == 0) error = errno;
  return error;
}

std::vector<std::string> FilesIn(const std::string& dir) {
  std::vector<std::string> files;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_regular_file()) files.push_back(it->path());
  }
  return files;
}

std::map<v1::VolumeUsage::Unit, v1::VolumeUsage> Usage(const v1::NodeGetVolumeStatsResponse& r) {
  std::map<v1::VolumeUsage::Unit, v1::VolumeUsage> usage;
  for (const v1::VolumeUsage& entry : r.usage()) usage[entry.unit()] = entry;
  return usage;
}

// Processes whose parent is `parent` and that are zombies.
int ZombieChildren(pid_t parent) {
  int zombies = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    std::ifstream in(entry.path() / "stat");
    std::string line;
    if (!std::getline(in, line)) continue;
    size_t close_paren = line.rfind(')');
    if (close_paren == std::string::npos) continue;
    std::istringstream rest(line.substr(close_paren + 2));
    char state = 0;
    pid_t ppid = 0;
    rest >> state >> ppid;
    zombies += ppid == parent && state == 'Z';
  }
  return zombies;
}

// `after_publish` runs once the volume is published and written to.
void RunLifecycle(CsiTestBed& bed, const std::function<void()>& after_publish = {}) {
  auto controller = bed.controller();
  auto node = bed.node();
  using Controller = v1::Controller::Stub;
  using Node = v1::Node::Stub;

  // CreateVolume as the external-provisioner asks for a PVC in team-a.
  v1::CreateVolumeRequest create = CreateRequest("pvc-lifecycle", 16 * kMiB);
  (*create.mutable_parameters())["csi.storage.k8s.io/pvc/namespace"] = "team-a";
  (*create.mutable_parameters())["csi.storage.k8s.io/pvc/name"] = "data";
  (*create.mutable_parameters())["inodes"] = "100";
  v1::CreateVolumeResponse created;
  grpc::Status status = Call(*controller, &Controller::CreateVolume, create, &created);
  ASSERT_TRUE(status.ok()) << status.error_message();
  const std::string id = created.volume().volume_id();
  EXPECT_EQ(id, "tenants/team-a/pvc-lifecycle");
  EXPECT_EQ(created.volume().capacity_bytes(), int64_t(16 * kMiB));
  EXPECT_EQ(created.volume().volume_context().at("tenant"), "team-a");
  pb::VolumeListResponse volumes = AdminVolumes(bed.cluster());
  pb::Volume* made = FindVolume(volumes, id);
  ASSERT_NE(made, nullptr);
  EXPECT_EQ(made->tenant(), "team-a");
  EXPECT_EQ(made->quota_bytes(), 16 * kMiB);
  EXPECT_EQ(made->quota_inodes(), 100u);

  // Staged: one FUSE mount, its token in the state directory only.
  const std::string staging = bed.staging();
  v1::NodeStageVolumeResponse staged;
  status = Call(*node, &Node::NodeStageVolume, StageRequest(id, staging), &staged);
  ASSERT_TRUE(status.ok()) << status.error_message();
  std::vector<std::string> mounts = MountsMentioning(staging);
  ASSERT_EQ(mounts.size(), 1u);
  EXPECT_NE(mounts[0].find("fuse.sealfs"), std::string::npos) << mounts[0];
  std::vector<std::string> tokens = FilesIn(bed.token_state_dir() + "/tokens");
  ASSERT_EQ(tokens.size(), 1u);
  struct stat token_stat {
  }, tokens_dir_stat{};
  ASSERT_EQ(stat(tokens[0].c_str(), &token_stat), 0);
  ASSERT_EQ(stat((bed.token_state_dir() + "/tokens").c_str(), &tokens_dir_stat), 0);
  EXPECT_EQ(token_stat.st_mode & 0777, 0600u);
  EXPECT_EQ(token_stat.st_uid, 0u);
  EXPECT_EQ(tokens_dir_stat.st_mode & 0777, 0700u);
  EXPECT_EQ(*auth::ReadSecretFile(tokens[0]), auth::DeriveVolumeToken(bed.token_key(), id));

  // Published into a pod directory that did not exist yet.
  const std::string target = bed.target();
  v1::NodePublishVolumeResponse published;
  status = Call(*node, &Node::NodePublishVolume, PublishRequest(id, staging, target), &published);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(MountsMentioning(target).size(), 1u);
  EXPECT_TRUE(FilesIn(target).empty()) << "no token or credential inside the volume";

  // A pod running as an unprivileged user writes into it (the test's
  // directory is the pod's way there, so it may pass through).
  ASSERT_EQ(chmod(bed.dir().c_str(), 0755), 0);
  ASSERT_EQ(chown(target.c_str(), kPodUser, kPodUser), 0) << strerror(errno);
  const std::string hello = target + "/hello", dir = target + "/dir";
  const std::string small[] = {dir + "/a", dir + "/b", dir + "/c"};
  const std::string block(kMiB, 'x'), page(4096, 'y');
  EXPECT_EQ(AsPodUser([&] {
              if (int error = WriteNewFile(hello.c_str(), kMiB, block)) return error;
              if (mkdir(dir.c_str(), 0755) != 0) return errno;
              for (const std::string& file : small) {
                if (int error = WriteNewFile(file.c_str(), page.size(), page)) return error;
              }
              return 0;
            }),
            0);
  EXPECT_TRUE(ReadFile(hello) == block);
  if (after_publish) after_publish();

  // The statistics show the use against the quotas, at both paths.
  for (const std::string& path : {target, staging}) {
    v1::NodeGetVolumeStatsRequest stats_request;
    stats_request.set_volume_id(id);
    stats_request.set_volume_path(path);
    v1::NodeGetVolumeStatsResponse stats;
    status = Call(*node, &Node::NodeGetVolumeStats, stats_request, &stats);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_FALSE(stats.volume_condition().abnormal()) << stats.volume_condition().message();
    auto usage = Usage(stats);
    EXPECT_EQ(usage[v1::VolumeUsage::BYTES].total(), int64_t(16 * kMiB)) << path;
    EXPECT_GE(usage[v1::VolumeUsage::BYTES].used(), int64_t(kMiB + 3 * 4096)) << path;
    EXPECT_LE(usage[v1::VolumeUsage::BYTES].used(), int64_t(16 * kMiB)) << path;
    EXPECT_EQ(usage[v1::VolumeUsage::INODES].total(), 100) << path;
    EXPECT_GE(usage[v1::VolumeUsage::INODES].used(), 6) << path;  // root, hello, dir, 3 files
  }

  // Expanded while mounted: the new quota shows at once.
  v1::ControllerExpandVolumeRequest expand;
  expand.set_volume_id(id);
  expand.mutable_capacity_range()->set_required_bytes(32 * kMiB);
  v1::ControllerExpandVolumeResponse expanded;
  status = Call(*controller, &Controller::ControllerExpandVolume, expand, &expanded);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(expanded.capacity_bytes(), int64_t(32 * kMiB));
  EXPECT_FALSE(expanded.node_expansion_required());
  v1::NodeGetVolumeStatsRequest stats_request;
  stats_request.set_volume_id(id);
  stats_request.set_volume_path(target);
  v1::NodeGetVolumeStatsResponse stats;
  ASSERT_TRUE(Call(*node, &Node::NodeGetVolumeStats, stats_request, &stats).ok());
  EXPECT_EQ(Usage(stats)[v1::VolumeUsage::BYTES].total(), int64_t(32 * kMiB));

  // Writing past the quota fails with EDQUOT.
  const std::string big = target + "/big";
  EXPECT_EQ(AsPodUser([&] { return WriteNewFile(big.c_str(), 48 * kMiB, block); }), EDQUOT);

  // Unpublished and unstaged: no mount, no directory, no token left.
  v1::NodeUnpublishVolumeRequest unpublish;
  unpublish.set_volume_id(id);
  unpublish.set_target_path(target);
  v1::NodeUnpublishVolumeResponse unpublished;
  status = Call(*node, &Node::NodeUnpublishVolume, unpublish, &unpublished);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_TRUE(MountsMentioning(target).empty());
  EXPECT_FALSE(std::filesystem::exists(target));
  v1::NodeUnstageVolumeRequest unstage;
  unstage.set_volume_id(id);
  unstage.set_staging_target_path(staging);
  v1::NodeUnstageVolumeResponse unstaged;
  status = Call(*node, &Node::NodeUnstageVolume, unstage, &unstaged);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_TRUE(MountsMentioning(staging).empty());
  EXPECT_TRUE(FilesIn(bed.token_state_dir() + "/tokens").empty());

  // Deleted: gone from the metadata server, and its chunks removed from the
  // data server (removal is queued, so it is waited for).
  EXPECT_FALSE(FilesIn(bed.cluster().DataDir(0) + "/chunks").empty());
  v1::DeleteVolumeRequest remove;
  remove.set_volume_id(id);
  v1::DeleteVolumeResponse removed;
  status = Call(*controller, &Controller::DeleteVolume, remove, &removed);
  ASSERT_TRUE(status.ok()) << status.error_message();
  volumes = AdminVolumes(bed.cluster());
  EXPECT_EQ(FindVolume(volumes, id), nullptr);
  for (int attempt = 0; attempt < 600; ++attempt) {
    if (FilesIn(bed.cluster().DataDir(0) + "/chunks").empty()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(FilesIn(bed.cluster().DataDir(0) + "/chunks").empty());
}

TEST(csi_lifecycle, OneProcessServesControllerAndNode) {
  if (!CanMount()) GTEST_SKIP() << "needs root and /dev/fuse";
  CsiTestBed bed;
  ASSERT_TRUE(bed.Start());
  RunLifecycle(bed);
}

TEST(csi_lifecycle, NodeWithSeparateMounterSurvivesPluginRestart) {
  if (!CanMount()) GTEST_SKIP() << "needs root and /dev/fuse";
  CsiTestBed bed(CsiTestBed::Layout::kWithMounter);
  ASSERT_TRUE(bed.Start());
  RunLifecycle(bed, [&] {
    // The daemons belong to the mounter: killing the node plugin leaves
    // the mount serving, and the restarted plugin finds it staged.
    EXPECT_TRUE(FilesIn(bed.node_state_dir()).empty()) << "tokens live with the mounter";
    bed.node_process().Stop(SIGKILL);
    EXPECT_TRUE(ReadFile(bed.target() + "/hello") == std::string(kMiB, 'x'));
    ASSERT_TRUE(bed.node_process().Start()) << bed.node_process().log();
    auto node = bed.node();
    v1::NodeStageVolumeResponse staged;
    grpc::Status status =
        Call(*node, &v1::Node::Stub::NodeStageVolume,
             StageRequest("tenants/team-a/pvc-lifecycle", bed.staging()), &staged);
    EXPECT_TRUE(status.ok()) << status.error_code() << " " << status.error_message() << "\n"
                             << bed.node_process().log();
    EXPECT_EQ(MountsMentioning(bed.staging()).size(), 1u);
  });
  // The daemon ended with its unmount; the mounter, its subreaper, reaped it.
  pid_t mounter = bed.mounter_process()->pid();
  for (int attempt = 0; attempt < 100 && ZombieChildren(mounter) > 0; ++attempt) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(ZombieChildren(mounter), 0);
}

}  // namespace
}  // namespace sealfs::testing
