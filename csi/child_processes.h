// Runs short-lived commands (sealfs-fuse, which daemonizes) and reaps every
// child of this process in one place, so that neither a command's exit
// status is lost nor zombies pile up. As a child subreaper (the mounter),
// the daemons a command leaves behind become this process's children when
// their parent exits, and are reaped here when they end.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "sealfs/rpc/status.h"

namespace sealfs::csi {

class ChildProcesses {
 public:
  // Lives as long as the process: its reaper thread is never joined.
  static ChildProcesses& Instance();
  // Makes this process the child subreaper of its descendants.
  static Status BecomeSubreaper();

  struct Outcome {
    int exit_code = -1;  // -1: killed by a signal
    std::string output;  // what it wrote to stdout and stderr
  };
  // Runs argv[0] (a path) with fork and exec, no shell, stdin from
  // /dev/null and no other descriptor of this process. ETIMEDOUT (after
  // killing it) when it runs longer than `limit`.
  Result<Outcome> Run(const std::vector<std::string>& argv, std::chrono::seconds limit);

 private:
  ChildProcesses();
  void ReapLoop();

  std::mutex mutex_;
  std::condition_variable changed_;
  std::map<pid_t, int> exited_;  // pid -> wait status, until Run collects it
  std::map<pid_t, bool> running_;
};

}  // namespace sealfs::csi
