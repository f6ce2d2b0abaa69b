// Integration: real sealfs-meta and sealfs-data processes on loopback, driven
// through libsealfs.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "test_cluster.h"

namespace sealfs::testing {
namespace {

size_t ChunkFilesIn(const std::string& dir) {
  size_t count = 0;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    count += it->path().extension() == ".dat";
  }
  return count;
}

TEST(Cluster, WriteReadStripedOverEveryServer) {
  TestCluster cluster(3, 1 << 20);
  ASSERT_TRUE(cluster.Start());
  auto client = cluster.Mount();
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  auto file = CreateFile(**client, "striped");
  ASSERT_EQ(file.layout().chains_size(), 3);
  std::string data = Pattern(6 << 20, 1);
  ASSERT_TRUE((*client)->Write(file.attr().ino(), file.layout(), 0, data).ok());
  std::string back(data.size(), '\0');
  ASSERT_TRUE((*client)->Read(file.attr().ino(), file.layout(), 0, back.size(), back.data()).ok());
  EXPECT_TRUE(back == data);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(ChunkFilesIn(cluster.DataDir(i)), 2u) << "server " << i;
}

TEST(Cluster, UnlinkRemovesChunksOnEveryServer) {
  TestCluster cluster(3, 1 << 20);
  ASSERT_TRUE(cluster.Start());
  auto client = cluster.Mount();
  ASSERT_TRUE(client.ok());
  auto file = CreateFile(**client, "doomed");
  ASSERT_TRUE((*client)->Write(file.attr().ino(), file.layout(), 0, Pattern(3 << 20, 2)).ok());
  // Three 1 MiB chunks striped over three servers: one on each.
  for (int i = 0; i < 3; ++i) ASSERT_GT(ChunkFilesIn(cluster.DataDir(i)), 0u) << "server " << i;
  pb::UnlinkRequest request;
  request.set_parent((*client)->root_ino());
  request.set_name("doomed");
  pb::UnlinkResponse response;
  ASSERT_TRUE((*client)->Meta(rpc::meta::kUnlink, request, &response).ok());
  size_t left = 1;
  for (int attempt = 0; attempt < 100 && left > 0; ++attempt) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    left = 0;
    for (int i = 0; i < 3; ++i) left += ChunkFilesIn(cluster.DataDir(i));
  }
  EXPECT_EQ(left, 0u);
}

TEST(Cluster, TruncateCutsDataOnServers) {
  TestCluster cluster(2, 1 << 20);
  ASSERT_TRUE(cluster.Start());
  auto client = cluster.Mount();
  ASSERT_TRUE(client.ok());
  auto file = CreateFile(**client, "t");
  uint64_t ino = file.attr().ino();
  ASSERT_TRUE((*client)->Write(ino, file.layout(), 0, Pattern(3 << 20, 3)).ok());
  pb::CommitWriteRequest commit;
  commit.set_ino(ino);
  commit.set_size(3 << 20);
  pb::CommitWriteResponse committed;
  ASSERT_TRUE((*client)->Meta(rpc::meta::kCommitWrite, commit, &committed).ok());
  pb::SetattrRequest cut;
  cut.set_ino(ino);
  cut.set_valid(pb::SETATTR_SIZE);
  cut.set_size(1000);
  pb::SetattrResponse cut_response;
  Status cut_status = (*client)->Meta(rpc::meta::kSetattr, cut, &cut_response);
  ASSERT_TRUE(cut_status.ok()) << cut_status.ToString();
  EXPECT_EQ(cut_response.attr().size(), 1000u);
  pb::SetattrRequest grow = cut;
  grow.set_size(2 << 20);
  Status grown = (*client)->Meta(rpc::meta::kSetattr, grow, &cut_response);
  ASSERT_TRUE(grown.ok()) << grown.ToString();
  std::string back(2 << 20, 'x');
  ASSERT_TRUE((*client)->Read(ino, file.layout(), 0, back.size(), back.data()).ok());
  EXPECT_EQ(back.substr(0, 1000), Pattern(3 << 20, 3).substr(0, 1000));
  EXPECT_EQ(back.substr(1000), std::string((2 << 20) - 1000, '\0'));
}

// With no member of a chain left (R = 1 here), I/O waits for one to come
// back — a pause, not an error — and fails with EIO only after io_wait.
TEST(Cluster, IoWaitsForAMissingDataServerThenFailsWithEio) {
  TestCluster cluster(2, 1 << 20);
  ASSERT_TRUE(cluster.Start());
  auto client = cluster.Mount("default", std::chrono::seconds(60));
  auto impatient = cluster.Mount("default", std::chrono::seconds(1));
  ASSERT_TRUE(client.ok() && impatient.ok());
  auto file = CreateFile(**client, "f");
  std::string data = Pattern(2 << 20, 4);
  ASSERT_TRUE((*client)->Write(file.attr().ino(), file.layout(), 0, data).ok());
  cluster.KillData(0);
  cluster.KillData(1);
  std::string back(data.size(), '\0');
  Status status = (*impatient)->Read(file.attr().ino(), file.layout(), 0, back.size(), back.data());
  EXPECT_EQ(client::ToFileError(status).code(), EIO) << status.ToString();
  // A read issued while the servers are down completes once they are back.
  Status waited;
  std::thread reader([&] {
    waited = (*client)->Read(file.attr().ino(), file.layout(), 0, back.size(), back.data());
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  ASSERT_TRUE(cluster.StartData(0));
  ASSERT_TRUE(cluster.StartData(1));
  reader.join();
  ASSERT_TRUE(waited.ok()) << waited.ToString();
  EXPECT_TRUE(back == data);
}

// kill -9 ends the processes, not the machine: the kernel keeps what they had
// written in its page cache. So this proves that nothing acknowledged lived only
// in a server's memory, not that it reached the disk.
TEST(Cluster, AcknowledgedStateSurvivesKillNineOfEveryServer) {
  TestCluster cluster(3, 1 << 20);
  ASSERT_TRUE(cluster.Start());
  std::string data = Pattern(5 << 20, 5);
  uint64_t ino;
  {
    auto client = cluster.Mount();
    ASSERT_TRUE(client.ok());
    auto file = CreateFile(**client, "durable");
    ino = file.attr().ino();
    ASSERT_TRUE((*client)->Write(ino, file.layout(), 0, data).ok());
    pb::CommitWriteRequest commit;
    commit.set_ino(ino);
    commit.set_size(data.size());
    pb::CommitWriteResponse response;
    ASSERT_TRUE((*client)->Meta(rpc::meta::kCommitWrite, commit, &response).ok());
    pb::SetxattrRequest xattr;
    xattr.set_ino(ino);
    xattr.set_name("user.k");
    xattr.set_value("value-1");
    pb::SetxattrResponse xattr_response;
    ASSERT_TRUE((*client)->Meta(rpc::meta::kSetxattr, xattr, &xattr_response).ok());
    pb::SymlinkRequest symlink;
    symlink.set_parent((*client)->root_ino());
    symlink.set_name("link");
    symlink.set_target("durable");
    pb::SymlinkResponse symlink_response;
    ASSERT_TRUE((*client)->Meta(rpc::meta::kSymlink, symlink, &symlink_response).ok());
  }
  cluster.StopAll(SIGKILL);
  ASSERT_TRUE(cluster.Start());
  // A client that never saw the state before the crash.
  auto client = cluster.Mount();
  ASSERT_TRUE(client.ok());
  pb::LookupRequest lookup;
  lookup.set_parent((*client)->root_ino());
  lookup.set_name("durable");
  pb::LookupResponse found;
  ASSERT_TRUE((*client)->Meta(rpc::meta::kLookup, lookup, &found).ok());
  EXPECT_EQ(found.attr().ino(), ino);
  EXPECT_EQ(found.attr().size(), data.size());
  std::string back(data.size(), '\0');
  ASSERT_TRUE((*client)->Read(ino, found.layout(), 0, back.size(), back.data()).ok());
  EXPECT_TRUE(back == data);
  pb::GetxattrRequest xattr;
  xattr.set_ino(ino);
  xattr.set_name("user.k");
  pb::GetxattrResponse value;
  ASSERT_TRUE((*client)->Meta(rpc::meta::kGetxattr, xattr, &value).ok());
  EXPECT_EQ(value.value(), "value-1");
  lookup.set_name("link");
  pb::LookupResponse link;
  ASSERT_TRUE((*client)->Meta(rpc::meta::kLookup, lookup, &link).ok());
  pb::ReadlinkRequest readlink;
  readlink.set_ino(link.attr().ino());
  pb::ReadlinkResponse target;
  ASSERT_TRUE((*client)->Meta(rpc::meta::kReadlink, readlink, &target).ok());
  EXPECT_EQ(target.target(), "durable");
  // Data servers keep their ids across restarts.
  auto map = (*client)->RefreshClusterMap();
  ASSERT_TRUE(map.ok());
  EXPECT_EQ(map->servers_size(), 3);
}

TEST(Cluster, UnknownVolumeIsEnoent) {
  TestCluster cluster(1);
  ASSERT_TRUE(cluster.Start());
  auto client = cluster.Mount("no-such-volume");
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.status().code(), ENOENT);
}

TEST(Cluster, MetadataServerDownIsAClearError) {
  TestCluster cluster(1);
  ASSERT_TRUE(cluster.Start());
  cluster.StopAll(SIGKILL);
  auto client = cluster.Mount();
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.status().code(), ECONNREFUSED);
}

// How many lines of `sealfs status`'s server table show the given state.
int ServersInState(const std::string& status_output, const std::string& state) {
  std::istringstream lines(status_output);
  std::string line;
  int count = 0;
  while (std::getline(lines, line)) {
    std::istringstream fields(line);
    std::string id, address, server_state;
    if (fields >> id >> address >> server_state && address.rfind("127.0.0.1:", 0) == 0 &&
        server_state == state) {
      ++count;
    }
  }
  return count;
}

TEST(Cluster, CliVolumesAndStatus) {
  TestCluster cluster(2);
  // A silent data server counts as down after 2 s instead of the default 10.
  cluster.set_meta_args({"--server-timeout", "2"});
  ASSERT_TRUE(cluster.Start());
  std::string meta = "--meta " + cluster.meta_address() + " --credentials " +
                     cluster.admin_credential_file() + " ";
  EXPECT_TRUE(RunCli(meta + "volume create team-a --tenant a").ExitedWith(0));
  EXPECT_TRUE(RunCli(meta + "volume create team-a --tenant a").ExitedWith(1));
  // Without the admin credential nothing is created.
  EXPECT_TRUE(RunCli("--meta " + cluster.meta_address() + " --credentials /nonexistent " +
                     "volume create team-b --tenant b")
                  .ExitedWith(1));
  CliRun listed = RunCli(meta + "volume list");
  EXPECT_TRUE(listed.ExitedWith(0));
  EXPECT_NE(listed.output.find("team-a"), std::string::npos) << listed.output;
  CliRun healthy = RunCli(meta + "status");
  EXPECT_TRUE(healthy.ExitedWith(0)) << healthy.output;
  EXPECT_NE(healthy.output.find("2 data servers (0 down)"), std::string::npos) << healthy.output;
  EXPECT_EQ(ServersInState(healthy.output, "up"), 2) << healthy.output;
  EXPECT_TRUE(RunCli(meta + "volume delete team-a").ExitedWith(0));
  listed = RunCli(meta + "volume list");
  EXPECT_TRUE(listed.ExitedWith(0));
  EXPECT_NE(listed.output.find("NAME"), std::string::npos) << listed.output;
  EXPECT_EQ(listed.output.find("team-a"), std::string::npos) << listed.output;
  cluster.KillData(1);
  // A dead server shows as down once its heartbeats stop; status then exits 1.
  CliRun degraded;
  for (int attempt = 0; attempt < 150; ++attempt) {
    degraded = RunCli(meta + "status");
    if (degraded.output.find("(1 down)") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_NE(degraded.output.find("2 data servers (1 down)"), std::string::npos) << degraded.output;
  EXPECT_EQ(ServersInState(degraded.output, "down"), 1) << degraded.output;
  EXPECT_EQ(ServersInState(degraded.output, "up"), 1) << degraded.output;
  EXPECT_TRUE(degraded.ExitedWith(1)) << "wait status " << degraded.wait_status;
  // An unreachable metadata server is an error exit, not a crash.
  CliRun unreachable = RunCli("--meta 127.0.0.1:1 status");
  EXPECT_TRUE(unreachable.ExitedWith(1)) << "wait status " << unreachable.wait_status;
}

pid_t PidIn(const std::string& path) {
  std::ifstream in(path);
  pid_t pid = 0;
  in >> pid;
  return pid;
}

// `sealfs local up` on an existing cluster starts the servers that are not
// running, also when a pid file still names a process: a killed server that
// lingers as a zombie, or a pid that now belongs to another program.
TEST(Cluster, LocalUpRestartsServersWhosePidFilesLie) {
  // Orphaned servers become our children, so a killed one stays a zombie
  // until we reap it, as under an init that reaps late.
  ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  char pattern[] = "/tmp/sealfs-local-up-XXXXXX";
  std::string state = mkdtemp(pattern);
  std::string local = "local up --state " + state + " --data-servers 2 --no-mount";
  ASSERT_TRUE(RunCli(local).ExitedWith(0));
  ASSERT_TRUE(RunCli("local status --state " + state).ExitedWith(0));

  pid_t zombie = PidIn(state + "/data1.pid");
  ASSERT_GT(zombie, 0);
  ASSERT_EQ(kill(zombie, SIGKILL), 0);
  pid_t reused = PidIn(state + "/data0.pid");
  ASSERT_EQ(kill(reused, SIGKILL), 0);
  ASSERT_EQ(waitpid(reused, nullptr, 0), reused);
  // Another program now holds the pid the file names.
  pid_t stranger = fork();
  ASSERT_GE(stranger, 0);
  if (stranger == 0) {
    execlp("sleep", "sleep", "60", nullptr);
    _exit(127);
  }
  std::ofstream(state + "/data0.pid", std::ios::trunc) << stranger << "\n";
  // The killed server lingers as a zombie: kill(pid, 0) still succeeds.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  ASSERT_EQ(kill(zombie, 0), 0);

  CliRun status = RunCli("local status --state " + state);
  EXPECT_TRUE(status.ExitedWith(1)) << status.output;
  CliRun restarted = RunCli(local);
  EXPECT_TRUE(restarted.ExitedWith(0)) << restarted.output;
  EXPECT_NE(restarted.output.find("started data server 0"), std::string::npos) << restarted.output;
  EXPECT_NE(restarted.output.find("started data server 1"), std::string::npos) << restarted.output;
  EXPECT_NE(PidIn(state + "/data0.pid"), stranger);
  EXPECT_NE(PidIn(state + "/data1.pid"), zombie);
  status = RunCli("local status --state " + state);
  EXPECT_TRUE(status.ExitedWith(0)) << status.output;

  EXPECT_TRUE(RunCli("local down --state " + state).ExitedWith(0));
  // Only the cluster's own servers were stopped.
  EXPECT_EQ(kill(stranger, 0), 0);
  kill(stranger, SIGKILL);
  while (waitpid(-1, nullptr, WNOHANG) > 0) {
  }
  prctl(PR_SET_CHILD_SUBREAPER, 0);
  std::filesystem::remove_all(state);
}

}  // namespace
}  // namespace sealfs::testing
