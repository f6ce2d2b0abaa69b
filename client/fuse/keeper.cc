#include "keeper.h"

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

#include "handle_journal.h"

namespace sealfs::fuse {

namespace {

constexpr uint32_t kFuseInitOpcode = 26;  // FUSE_INIT in <linux/fuse.h>
constexpr size_t kMaxMessage = 4096;

volatile sig_atomic_t g_stop = 0;
volatile pid_t g_daemon = 0;

void OnStopSignal(int) {
  g_stop = 1;
  if (g_daemon > 0) kill(g_daemon, SIGTERM);
}

// No SA_RESTART: a stop request interrupts the keeper's waits.
void InstallStopHandlers() {
  struct sigaction action {};
  action.sa_handler = OnStopSignal;
  sigemptyset(&action.sa_mask);
  for (int signal_number : {SIGTERM, SIGINT, SIGHUP}) sigaction(signal_number, &action, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

void Report(int& fd, const std::string& message) {
  if (fd < 0) {
    if (message != "ok") std::fprintf(stderr, "sealfs-fuse: %s\n", message.c_str());
    return;
  }
  ssize_t ignored = write(fd, message.data(), message.size());
  (void)ignored;
  close(fd);
  fd = -1;
}

Status SendMessage(int socket, const std::string& message, const std::vector<int>& fds = {}) {
  iovec io{const_cast<char*>(message.data()), message.size()};
  msghdr header{};
  header.msg_iov = &io;
  header.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)] = {};
  if (!fds.empty()) {
    header.msg_control = control;
    header.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* cmsg = CMSG_FIRSTHDR(&header);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(cmsg), fds.data(), sizeof(int) * fds.size());
  }
  while (sendmsg(socket, &header, MSG_NOSIGNAL) < 0) {
    if (errno != EINTR) return Status(errno, std::string("sendmsg: ") + std::strerror(errno));
  }
  return Status::Ok();
}

// One message; an empty one when the peer closed its end (it died).
Result<std::string> ReceiveMessage(int socket, std::vector<int>* fds = nullptr) {
  std::string buffer(kMaxMessage, '\0');
  iovec io{buffer.data(), buffer.size()};
  msghdr header{};
  header.msg_iov = &io;
  header.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)] = {};
  header.msg_control = control;
  header.msg_controllen = sizeof control;
  ssize_t got = recvmsg(socket, &header, MSG_CMSG_CLOEXEC);
  if (got < 0) return Status(errno, std::string("recvmsg: ") + std::strerror(errno));
  for (cmsghdr* cmsg = CMSG_FIRSTHDR(&header); cmsg != nullptr; cmsg = CMSG_NXTHDR(&header, cmsg)) {
    if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    std::vector<int> received(count);
    std::memcpy(received.data(), CMSG_DATA(cmsg), sizeof(int) * count);
    for (int fd : received) {
      if (fds != nullptr)
        fds->push_back(fd);
      else
        close(fd);
    }
  }
  buffer.resize(static_cast<size_t>(got));
  return buffer;
}

// The kernel ends a connection when the file system is unmounted (or the
// connection aborted through fusectl); its descriptor then polls POLLERR.
bool ConnectionGone(int fuse_fd) {
  pollfd probe{fuse_fd, POLLIN, 0};
  return poll(&probe, 1, 0) == 1 && (probe.revents & POLLERR);
}

// Makes the mount with libfuse (options, fusermount for non-root users) and
// reads the kernel's FUSE_INIT request, which every daemon replays.
class Mount {
 public:
  ~Mount() {
    if (session_ != nullptr) fuse_session_destroy(session_);
  }
  Status Make(const KeeperOptions& options) {
    std::vector<char*> argv;
    for (const std::string& arg : options.fuse_args) argv.push_back(const_cast<char*>(arg.data()));
    fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
    fuse_lowlevel_ops no_operations{};
    session_ = fuse_session_new(&args, &no_operations, sizeof no_operations, nullptr);
    if (session_ == nullptr) return Status(EINVAL, "invalid mount options");
    if (fuse_session_mount(session_, options.mountpoint.c_str()) != 0) {
      fuse_session_destroy(session_);
      session_ = nullptr;
      return Status(EIO,
                    "cannot mount FUSE at " + options.mountpoint + " (is /dev/fuse available?)");
    }
    fuse_buf request{};
    int got;
    do {
      got = fuse_session_receive_buf(session_, &request);
    } while (got == -EINTR && !g_stop);
    if (got <= 0) {
      free(request.mem);
      Unmount();
      return Status(EIO, "the kernel sent no FUSE_INIT");
    }
    init_request_.assign(static_cast<const char*>(request.mem), static_cast<size_t>(got));
    free(request.mem);
    uint32_t opcode = 0;
    if (init_request_.size() >= 8) std::memcpy(&opcode, init_request_.data() + 4, 4);
    if (opcode != kFuseInitOpcode) {
      Unmount();
      return Status(EPROTO, "the first request of the kernel was not FUSE_INIT");
    }
    return Status::Ok();
  }
  void Unmount() {
    if (session_ != nullptr) fuse_session_unmount(session_);
  }
  int fd() const { return fuse_session_fd(session_); }
  const std::string& init_request() const { return init_request_; }

 private:
  fuse_session* session_ = nullptr;
  std::string init_request_;
};

std::string DescribeExit(int status) {
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  return "exited with status " + std::to_string(WEXITSTATUS(status));
}

// Waits for the daemon, passing a stop request on to it.
int WaitForDaemon(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return 0;
  }
  g_daemon = 0;
  return status;
}

}  // namespace

void KeeperLink::Connected() { (void)SendMessage(fd_, "C"); }

void KeeperLink::Failed(const std::string& message) { (void)SendMessage(fd_, "E" + message); }

void KeeperLink::Serving() { (void)SendMessage(fd_, "S"); }

Result<Handover> KeeperLink::Receive() {
  std::vector<int> fds;
  Result<std::string> message = ReceiveMessage(fd_, &fds);
  if (!message.ok()) return message.status();
  if (message->size() < 2 || (*message)[0] != 'H' || fds.size() != 2) {
    for (int fd : fds) close(fd);
    return Status(EPROTO, "the keeper sent no mount");
  }
  Handover handover;
  handover.fuse_fd = fds[0];
  handover.journal_fd = fds[1];
  handover.successor = (*message)[1] == '1';
  handover.init_request = message->substr(2);
  return handover;
}

int RunKeeper(const KeeperOptions& options, const std::function<int(KeeperLink&)>& serve) {
  prctl(PR_SET_NAME, "sealfs-keeper");
  InstallStopHandlers();
  int report_fd = options.report_fd;
  Result<int> journal_fd = HandleJournal::CreateMemory();
  if (!journal_fd.ok()) {
    Report(report_fd, "cannot make the handle journal: " + journal_fd.status().ToString());
    return 1;
  }
  Mount mount;
  bool mounted = false;
  bool reported = false;  // the first daemon serves: the command succeeded
  auto delay = std::chrono::milliseconds(0);
  for (int generation = 0;; ++generation) {
    if (g_stop) break;
    int link[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, link) != 0) {
      Report(report_fd, std::string("socketpair: ") + std::strerror(errno));
      if (!mounted) return 1;
      std::this_thread::sleep_for(std::chrono::seconds(1));
      continue;
    }
    pid_t pid = fork();
    if (pid == 0) {
      close(link[0]);
      if (report_fd >= 0) close(report_fd);
      prctl(PR_SET_NAME, "sealfs-fuse");
      for (int signal_number : {SIGTERM, SIGINT, SIGHUP}) signal(signal_number, SIG_DFL);
      KeeperLink keeper(link[1]);
      std::fflush(stderr);
      _exit(serve(keeper));
    }
    close(link[1]);
    if (pid < 0) {
      close(link[0]);
      Report(report_fd, std::string("fork: ") + std::strerror(errno));
      if (!mounted) return 1;
      std::this_thread::sleep_for(std::chrono::seconds(1));
      continue;
    }
    g_daemon = pid;
    if (g_stop) kill(pid, SIGTERM);
    auto started = std::chrono::steady_clock::now();

    Result<std::string> hello = ReceiveMessage(link[0]);
    bool connected = hello.ok() && *hello == "C";
    if (connected && !mounted) {
      // Mounted only once a daemon reached the cluster: a mount that cannot
      // work fails the command instead of leaving a dead mount behind.
      Status made = mount.Make(options);
      if (!made.ok()) {
        Report(report_fd, made.message());
        kill(pid, SIGKILL);
        close(link[0]);
        WaitForDaemon(pid);
        return 1;
      }
      mounted = true;
    }
    if (connected) {
      std::string handover = std::string("H") + (generation > 0 ? "1" : "0") + mount.init_request();
      connected = SendMessage(link[0], handover, {mount.fd(), *journal_fd}).ok();
    }
    Result<std::string> serving =
        connected ? ReceiveMessage(link[0]) : Result<std::string>(std::string());
    close(link[0]);
    bool ok = serving.ok() && *serving == "S";
    std::string why = !hello.ok() || hello->empty() ? "the daemon died"
                      : hello->front() == 'E'       ? hello->substr(1)
                      : serving.ok() && !serving->empty() && serving->front() == 'E'
                          ? serving->substr(1)
                          : "the daemon died";
    if (ok) {
      if (!reported) Report(report_fd, "ok");
      if (reported) std::fprintf(stderr, "sealfs-fuse: a new daemon serves the mount\n");
      reported = true;
    } else if (!reported) {
      // The first daemon could not serve: the command fails with its reason.
      Report(report_fd, "cannot mount " + options.source + ": " + why);
      kill(pid, SIGKILL);
      WaitForDaemon(pid);
      if (mounted) mount.Unmount();
      return 1;
    } else {
      std::fprintf(stderr, "sealfs-fuse: a new daemon cannot serve yet: %s\n", why.c_str());
    }

    int status = WaitForDaemon(pid);
    if (ConnectionGone(mount.fd())) {
      // Unmounted: the mount's life is over.
      return WIFEXITED(status) ? WEXITSTATUS(status) : 0;
    }
    if (g_stop || (ok && WIFEXITED(status) && WEXITSTATUS(status) == 0)) break;
    std::fprintf(stderr, "sealfs-fuse: the daemon %s; starting another on the same mount\n",
                 DescribeExit(status).c_str());
    std::fflush(stderr);
    // A daemon that dies at once again and again is restarted ever slower.
    bool died_young = std::chrono::steady_clock::now() - started < std::chrono::seconds(5);
    delay =
        died_young
            ? std::min<std::chrono::milliseconds>(
                  std::max<std::chrono::milliseconds>(delay * 2, std::chrono::milliseconds(100)),
                  std::chrono::seconds(5))
            : std::chrono::milliseconds(0);
    auto until = std::chrono::steady_clock::now() + delay;
    while (!g_stop && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  // Stopped (SIGTERM to the keeper or the daemon): unmount, as a daemon
  // stopped this way always has.
  if (mounted) mount.Unmount();
  return 0;
}

}  // namespace sealfs::fuse
