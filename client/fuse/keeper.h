// The keeper: the small process that owns a mount's FUSE connection so that
// the connection outlives the daemon serving it.
//
// The keeper makes the kernel mount, keeps its /dev/fuse descriptor, the
// kernel's FUSE_INIT request and the handle journal, and runs the daemon as
// its child. A daemon that dies (kill -9, a crash) is replaced by a new one
// that is handed the same descriptor, replays FUSE_INIT to set its session
// up as the kernel negotiated it, takes over the journal's handles and goes
// on serving: the kernel mount, and every bind mount, open file and working
// directory on it, stay valid. The daemon reads requests only on cloned
// descriptors (clone_fd), so requests it had taken when it died end with
// ECONNABORTED when the kernel closes those descriptors, instead of hanging;
// requests the kernel had not handed out yet wait for the successor.
//
// The keeper holds no client state and makes no network calls, so nothing a
// server or the kernel sends can bring it down.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "sealfs/rpc/status.h"

namespace sealfs::fuse {

// What a daemon is handed by its keeper.
struct Handover {
  int fuse_fd = -1;          // the kernel connection
  int journal_fd = -1;       // the handle journal's shared memory
  std::string init_request;  // the kernel's FUSE_INIT, as read from fuse_fd
  bool successor = false;    // another daemon served this mount before
};

// The daemon's end of the channel to its keeper.
class KeeperLink {
 public:
  explicit KeeperLink(int fd) : fd_(fd) {}
  // The daemon reached the cluster and can serve once handed the mount.
  void Connected();
  // The daemon cannot serve; the keeper reports `message`.
  void Failed(const std::string& message);
  Result<Handover> Receive();
  // The daemon serves the mount from now on.
  void Serving();

 private:
  int fd_;
};

struct KeeperOptions {
  std::string source;      // for messages
  std::string mountpoint;  // where the keeper mounts
  // libfuse arguments (program name, -o mount options) for the mount.
  std::vector<std::string> fuse_args;
  // The waiting parent's pipe: "ok" or why the mount failed. -1 when the
  // keeper runs in the foreground (messages go to stderr).
  int report_fd = -1;
};

// Runs the keeper until the mount ends (unmounted, or the daemon stopped by
// SIGTERM/SIGINT/SIGHUP, to the keeper or the daemon, which unmounts).
// `serve` runs in each forked daemon and returns its exit code. Returns the
// keeper's exit code.
int RunKeeper(const KeeperOptions& options, const std::function<int(KeeperLink&)>& serve);

}  // namespace sealfs::fuse
