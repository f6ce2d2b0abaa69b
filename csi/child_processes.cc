#include "child_processes.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <thread>

namespace sealfs::csi {

ChildProcesses& ChildProcesses::Instance() {
  static ChildProcesses* instance = new ChildProcesses();
  return *instance;
}

Status ChildProcesses::BecomeSubreaper() {
  if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
    return Status(errno, std::string("PR_SET_CHILD_SUBREAPER: ") + std::strerror(errno));
  }
  return Status::Ok();
}

ChildProcesses::ChildProcesses() {
  std::thread([this] { ReapLoop(); }).detach();
}

void ChildProcesses::ReapLoop() {
  for (;;) {
    int status = 0;
    pid_t pid = waitpid(-1, &status, 0);
    if (pid > 0) {
      std::lock_guard<std::mutex> lock(mutex_);
      // Only the commands Run waits for are remembered; adopted daemons
      // are just reaped.
      if (running_.count(pid)) exited_[pid] = status;
      changed_.notify_all();
      continue;
    }
    // No children: sleep until Run starts one (or a daemon is adopted,
    // which the periodic wake-up catches).
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait_for(lock, std::chrono::seconds(1), [this] { return !running_.empty(); });
  }
}

Result<ChildProcesses::Outcome> ChildProcesses::Run(const std::vector<std::string>& argv,
                                                    std::chrono::seconds limit) {
  std::vector<char*> args;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) return Status(errno, "pipe: " + std::string(strerror(errno)));
  int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  pid_t pid;
  {
    // Registered before the reaper can see it exit.
    std::lock_guard<std::mutex> lock(mutex_);
    pid = fork();
    if (pid == 0) {
      // Only async-signal-safe calls between fork and exec. The command
      // must not inherit this server's blocked or ignored signals.
      sigset_t none;
      sigemptyset(&none);
      sigprocmask(SIG_SETMASK, &none, nullptr);
      signal(SIGPIPE, SIG_DFL);
      dup2(null_fd, 0);
      dup2(out[1], 1);
      dup2(out[1], 2);
      close_range(3, ~0U, 0);
      execv(args[0], args.data());
      _exit(127);
    }
    if (pid > 0) running_[pid] = true;
  }
  int fork_error = errno;
  close(out[1]);
  if (null_fd >= 0) close(null_fd);
  if (pid < 0) {
    close(out[0]);
    return Status(fork_error, "fork: " + std::string(strerror(fork_error)));
  }
  changed_.notify_all();

  // Read its output until it exits; a daemon it leaves behind may keep the
  // pipe open, so EOF is not waited for.
  Outcome outcome;
  auto deadline = std::chrono::steady_clock::now() + limit;
  bool exited = false, killed = false;
  int wait_status = 0;
  fcntl(out[0], F_SETFL, O_NONBLOCK);
  auto drain = [&] {
    char buffer[4096];
    ssize_t got;
    while ((got = read(out[0], buffer, sizeof buffer)) > 0) outcome.output.append(buffer, got);
  };
  while (!exited) {
    pollfd waiting{out[0], POLLIN, 0};
    poll(&waiting, 1, 50);
    drain();
    std::unique_lock<std::mutex> lock(mutex_);
    auto found = exited_.find(pid);
    if (found != exited_.end()) {
      wait_status = found->second;
      exited_.erase(found);
      running_.erase(pid);
      exited = true;
    } else if (!killed && std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      killed = true;
    }
  }
  drain();
  close(out[0]);
  if (killed) {
    return Status(ETIMEDOUT, argv[0] + " did not finish in " + std::to_string(limit.count()) +
                                 " s: " + outcome.output);
  }
  outcome.exit_code = WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : -1;
  return outcome;
}

}  // namespace sealfs::csi
