// End-to-end: while the metadata server is killed (kill -9) and restarted,
// an application creating, renaming and removing files through a FUSE mount
// sees a pause, never an error, and every change it saw succeed is there
// exactly once afterwards.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include <atomic>
#include <set>
#include <thread>

#include "e2e_util.h"
#include "test_cluster.h"

namespace sealfs::testing {
namespace {

using namespace std::chrono_literals;

struct Progress {
  std::atomic<uint64_t> done{0};  // steps completed, in order
  std::atomic<uint64_t> errors{0};
  std::atomic<int> last_errno{0};
  std::atomic<bool> stop{false};
};

// Step i creates f<i> (exclusively) with its number as contents; every
// third step then renames it to g<i>; every fifth removes f<i-1> or g<i-1>.
int StepError(const std::string& dir, uint64_t i) {
  std::string name = dir + "/f" + std::to_string(i);
  int fd = open(name.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
  if (fd < 0) return errno;
  std::string contents = std::to_string(i);
  bool wrote = write(fd, contents.data(), contents.size()) == static_cast<ssize_t>(contents.size());
  int saved = errno;
  if (close(fd) != 0) return errno;
  if (!wrote) return saved;
  if (i % 3 == 0 && rename(name.c_str(), (dir + "/g" + std::to_string(i)).c_str()) != 0) {
    return errno;
  }
  if (i % 5 == 0 && i > 0) {
    std::string previous = dir + ((i - 1) % 3 == 0 ? "/g" : "/f") + std::to_string(i - 1);
    if (unlink(previous.c_str()) != 0) return errno;
  }
  return 0;
}

// The names the first `steps` steps leave, with their contents.
std::map<std::string, std::string> Expected(uint64_t steps) {
  std::map<std::string, std::string> names;
  for (uint64_t i = 0; i < steps; ++i) {
    names[(i % 3 == 0 ? "g" : "f") + std::to_string(i)] = std::to_string(i);
    if (i % 5 == 0 && i > 0) names.erase(((i - 1) % 3 == 0 ? "g" : "f") + std::to_string(i - 1));
  }
  return names;
}

TEST(FuseMetaRestart, AnApplicationSeesAPauseNotAnErrorAndEveryChangeOnce) {
  if (!CanMount()) GTEST_SKIP() << "needs root and /dev/fuse";
  TestCluster cluster(2, 1 << 20);
  ASSERT_TRUE(cluster.Start());
  std::string mount = cluster.FuseMount("a");
  ASSERT_FALSE(mount.empty());
  std::string dir = mount + "/work";
  ASSERT_EQ(mkdir(dir.c_str(), 0755), 0);

  auto* progress = new (mmap(nullptr, sizeof(Progress), PROT_READ | PROT_WRITE,
                             MAP_SHARED | MAP_ANONYMOUS, -1, 0)) Progress;
  pid_t app = fork();
  if (app == 0) {
    for (uint64_t i = 0; !progress->stop; ++i) {
      int error = StepError(dir, i);
      if (error != 0) {
        ++progress->errors;
        progress->last_errno = error;
        _exit(1);  // the test fails: nothing more to learn
      }
      progress->done = i + 1;
    }
    _exit(0);
  }
  auto wait_for_steps = [&](uint64_t more) {
    uint64_t target = progress->done + more;
    for (int i = 0; i < 3000 && progress->done < target && progress->errors == 0; ++i) {
      std::this_thread::sleep_for(10ms);
    }
    return progress->done >= target;
  };
  ASSERT_TRUE(wait_for_steps(20));
  for (int round = 0; round < 3; ++round) {
    cluster.KillMeta(SIGKILL);
    std::this_thread::sleep_for(1s);  // the application waits meanwhile
    ASSERT_TRUE(cluster.StartMeta());
    EXPECT_TRUE(wait_for_steps(20)) << "no progress after restart " << round;
  }
  progress->stop = true;
  int status = 0;
  waitpid(app, &status, 0);
  EXPECT_EQ(progress->errors, 0u) << "the application saw " << strerror(progress->last_errno);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);

  std::map<std::string, std::string> expected = Expected(progress->done);
  std::map<std::string, std::string> found;
  DIR* listing = opendir(dir.c_str());
  ASSERT_NE(listing, nullptr);
  while (dirent* entry = readdir(listing)) {
    std::string name = entry->d_name;
    if (name == "." || name == "..") continue;
    found[name] = ReadFile(dir + "/" + name);
  }
  closedir(listing);
  // The application stops between steps: the state is that of `done` steps.
  EXPECT_EQ(found, expected);
  munmap(progress, sizeof(Progress));
}

}  // namespace
}  // namespace sealfs::testing
