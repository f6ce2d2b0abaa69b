// Helpers for tests that kill the processes behind a FUSE mount while an
// application keeps using it: finding a mount's keeper and daemon, and a
// busy application in a child process that counts what succeeded.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

namespace sealfs::testing {

struct MountProcesses {
  pid_t keeper = 0;
  pid_t daemon = 0;
};

// Empty when the process is gone. Plain read(2): a process that exits while
// its file is read fails the read with ESRCH, which std::filebuf throws on.
inline std::string ProcFile(pid_t pid, const char* name) {
  std::string path = "/proc/" + std::to_string(pid) + "/" + name;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  std::string contents;
  char buffer[4096];
  for (;;) {
    ssize_t got = read(fd, buffer, sizeof buffer);
    if (got <= 0) {
      if (got < 0) contents.clear();
      break;
    }
    contents.append(buffer, static_cast<size_t>(got));
  }
  close(fd);
  return contents;
}

// The sealfs-fuse processes whose command line names `mountpoint`: the
// keeper (comm "sealfs-keeper") and the daemon serving it (its child).
inline MountProcesses FindMountProcesses(const std::string& mountpoint) {
  MountProcesses found;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    pid_t pid = std::stoi(name);
    std::string cmdline = ProcFile(pid, "cmdline");
    bool names_mount = false;
    for (size_t at = 0; at < cmdline.size();) {
      size_t end = cmdline.find('\0', at);
      if (end == std::string::npos) end = cmdline.size();
      if (cmdline.compare(at, end - at, mountpoint) == 0) names_mount = true;
      at = end + 1;
    }
    if (!names_mount) continue;
    std::string stat = ProcFile(pid, "stat");
    if (stat.find(") Z ") != std::string::npos) continue;  // a zombie not reaped yet
    std::string comm = ProcFile(pid, "comm");
    if (comm == "sealfs-keeper\n") found.keeper = pid;
    if (comm == "sealfs-fuse\n") found.daemon = pid;
  }
  return found;
}

// Waits until `done` holds, for at most `limit`; returns whether it did.
inline bool WaitFor(std::chrono::milliseconds limit, const std::function<bool()>& done) {
  auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return done();
}

// What the busy application saw, in memory shared with the test.
struct BusyCounters {
  std::atomic<uint64_t> rounds_ok{0};
  std::atomic<uint64_t> errors{0};
  std::atomic<int> last_errno{0};
  std::atomic<uint64_t> unexpected_errors{0};  // anything but ECONNABORTED
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> records{0};  // records acknowledged in journal.bin
};

// An application working in `directory` (on a mount) from a child process:
// its working directory is there, it holds journal.bin open and the
// directory open, and each round writes and reads back a record through
// the open file, creates and stats a file relative to its working directory
// and lists the open directory. `uid` (if not 0) is the user it runs as.
class BusyApplication {
 public:
  static constexpr size_t kRecord = 4096;

  explicit BusyApplication(const std::string& directory, uid_t uid = 0, gid_t gid = 0) {
    void* shared = mmap(nullptr, sizeof(BusyCounters), PROT_READ | PROT_WRITE,
                        MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    counters_ = new (shared) BusyCounters;
    pid_ = fork();
    if (pid_ == 0) _exit(Run(directory, uid, gid));
  }
  ~BusyApplication() {
    Stop();
    munmap(counters_, sizeof(BusyCounters));
  }
  // Ends the application; returns its exit status (0: it ran to the end).
  int Stop() {
    if (pid_ <= 0) return exit_status_;
    counters_->stop = true;
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = 0;
    exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return exit_status_;
  }
  const BusyCounters& counters() const { return *counters_; }
  static std::string Record(uint64_t index) {
    std::string record(kRecord, static_cast<char>('a' + index % 26));
    std::memcpy(record.data(), &index, sizeof index);
    return record;
  }

 private:
  int Run(const std::string& directory, uid_t uid, gid_t gid) {
    if (uid != 0 && (setgid(gid) != 0 || setuid(uid) != 0)) return 10;
    if (chdir(directory.c_str()) != 0) return 11;
    int fd = open("journal.bin", O_RDWR | O_CREAT, 0644);
    if (fd < 0) return 12;
    DIR* listing = opendir(".");
    if (listing == nullptr) return 13;
    BusyCounters& c = *counters_;
    for (uint64_t round = 0; !c.stop; ++round) {
      int error = Round(fd, listing, round);
      if (error == 0) {
        c.records = round + 1;
        ++c.rounds_ok;
      } else {
        ++c.errors;
        c.last_errno = error;
        if (error != ECONNABORTED) ++c.unexpected_errors;
        // The round's record may be missing: write it again next round.
        --round;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    closedir(listing);
    return close(fd) == 0 ? 0 : 14;
  }

  static int Round(int fd, DIR* listing, uint64_t round) {
    std::string record = Record(round);
    off_t at = static_cast<off_t>(round * kRecord);
    if (pwrite(fd, record.data(), kRecord, at) != static_cast<ssize_t>(kRecord)) return errno;
    std::string back(kRecord, '\0');
    if (pread(fd, back.data(), kRecord, at) != static_cast<ssize_t>(kRecord)) return errno;
    if (back != record) return EBADMSG;
    std::string name = "f" + std::to_string(round % 64);
    int created = open(name.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (created < 0) return errno;
    bool wrote = write(created, "x", 1) == 1;
    int saved = errno;
    if (close(created) != 0) return errno;
    if (!wrote) return saved;
    struct stat st;
    if (stat(name.c_str(), &st) != 0) return errno;
    if (st.st_size != 1) return EBADMSG;
    rewinddir(listing);
    errno = 0;
    int entries = 0;
    while (readdir(listing) != nullptr) ++entries;
    if (errno != 0) return errno;
    return entries >= 3 ? 0 : EBADMSG;
  }

  BusyCounters* counters_;
  pid_t pid_ = 0;
  int exit_status_ = 0;
};

}  // namespace sealfs::testing
