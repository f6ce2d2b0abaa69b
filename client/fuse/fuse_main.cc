// sealfs-fuse: mounts one SealFS volume with FUSE.
//
//   sealfs-fuse HOST:PORT/VOLUME MOUNTPOINT [-o opt,...] [-f] [-d]
//
// Connecting and mounting happen before the parent returns, so a mount that
// cannot be made fails the command with the reason, instead of leaving a
// daemon behind that never mounted. The process left behind is the mount's
// keeper (keeper.h), which runs the serving daemon as its child and replaces
// it on the same kernel mount if it dies.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "fuse_fs.h"
#include "keeper.h"

using namespace sealfs;

namespace {

const char* kUsage =
    "usage: sealfs-fuse HOST:PORT/VOLUME MOUNTPOINT [-o OPTIONS] [-f] [-d]\n"
    "options: allow_other, default_permissions, ro, log=FILE, attr_timeout=SECONDS,\n"
    "         entry_timeout=SECONDS, transport=tcp|rdma|auto, io_wait=SECONDS (how long\n"
    "         I/O waits for a chain with no serving replica before EIO; default 60),\n"
    "         meta_wait=SECONDS (how long a file system call waits for an unreachable\n"
    "         metadata server, e.g. one restarting, before EIO; default 600),\n"
    "         token_file=PATH (the volume's mount token; required),\n"
    "         credentials=PATH (the admin credential instead of a token),\n"
    "         and the usual FUSE mount options\n"
    "         (atime options are accepted; the kernel never updates atime on FUSE files)\n";

// Options of mount(8) and fstab that are not for the kernel.
bool IsUserspaceOnlyOption(const std::string& option) {
  return option == "defaults" || option == "auto" || option == "noauto" || option == "nofail" ||
         option == "_netdev" || option == "user" || option == "users" || option == "nouser" ||
         option.rfind("x-", 0) == 0;
}

// Access-time options that libfuse 3.14 does not know. The kernel marks every
// FUSE inode S_NOATIME (atime is the file system's business, never updated by
// the kernel on read), so these change nothing for a FUSE mount and are
// accepted silently, as fstab lines and `mount -o` routinely carry them.
// "atime" and "noatime" libfuse knows: they go on to the kernel as flags.
bool IsIgnoredAtimeOption(const std::string& option) {
  return option == "relatime" || option == "norelatime" || option == "strictatime" ||
         option == "nostrictatime" || option == "diratime" || option == "nodiratime" ||
         option == "lazytime" || option == "nolazytime";
}

struct Arguments {
  std::string source;
  std::string mountpoint;
  std::vector<std::string> fuse_options;
  std::string log_file;
  bool foreground = false;
  bool debug = false;
  double attr_timeout = 1.0;
  double entry_timeout = 1.0;
  std::string transport = "tcp";
  double io_wait = 60.0;
  double meta_wait = 600.0;
  std::string token_file;
  std::string credentials_file;
};

bool ParseArguments(int argc, char** argv, Arguments* out, std::string* error) {
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-f")
      out->foreground = true;
    else if (arg == "-d")
      out->debug = out->foreground = true;
    else if (arg == "-o" && i + 1 < argc) {
      std::stringstream options(argv[++i]);
      std::string option;
      while (std::getline(options, option, ',')) {
        if (option.empty() || IsUserspaceOnlyOption(option) || IsIgnoredAtimeOption(option)) {
          continue;
        }
        if (option == "remount") {
          // A remount changes the kernel's flags of a mount that exists; a
          // new daemon has nothing to do with it.
          *error = "remount is for mount(8): mount -o remount,OPTIONS MOUNTPOINT";
          return false;
        }
        try {
          if (option.rfind("log=", 0) == 0) {
            out->log_file = option.substr(4);
          } else if (option.rfind("attr_timeout=", 0) == 0) {
            out->attr_timeout = std::stod(option.substr(13));
          } else if (option.rfind("entry_timeout=", 0) == 0) {
            out->entry_timeout = std::stod(option.substr(14));
          } else if (option.rfind("transport=", 0) == 0) {
            out->transport = option.substr(10);
          } else if (option.rfind("token_file=", 0) == 0) {
            out->token_file = option.substr(11);
          } else if (option.rfind("credentials=", 0) == 0) {
            out->credentials_file = option.substr(12);
          } else if (option.rfind("meta_wait=", 0) == 0) {
            out->meta_wait = std::stod(option.substr(10));
            if (!(out->meta_wait >= 0 && out->meta_wait <= 86400))
              throw std::invalid_argument("meta_wait");
          } else if (option.rfind("io_wait=", 0) == 0) {
            out->io_wait = std::stod(option.substr(8));
            if (!(out->io_wait > 0 && out->io_wait <= 86400))
              throw std::invalid_argument("io_wait");
          } else {
            out->fuse_options.push_back(option);
          }
        } catch (const std::exception&) {
          *error = "bad value in option " + option;
          return false;
        }
      }
    } else if (arg == "-h" || arg == "--help") {
      *error = "";
      return false;
    } else if (!arg.empty() && arg[0] == '-') {
      *error = "unknown argument " + arg;
      return false;
    } else {
      positional.push_back(arg);
    }
  }
  if (positional.size() != 2) {
    *error = "expected a source and a mountpoint";
    return false;
  }
  out->source = positional[0];
  out->mountpoint = positional[1];
  return true;
}

// The daemon: connects to the cluster, takes the mount from its keeper and
// serves it until it is unmounted or stopped.
int Serve(const client::ClientOptions& options, const fuse::FuseOptions& fuse_options,
          std::vector<std::string> fuse_argv_storage, fuse::KeeperLink& keeper) {
  auto connected = client::Client::Connect(options);
  if (!connected.ok()) {
    keeper.Failed(connected.status().ToString());
    return 3;
  }
  keeper.Connected();
  Result<fuse::Handover> handover = keeper.Receive();
  if (!handover.ok()) return 1;
  auto journal = fuse::HandleJournal::Map(handover->journal_fd);
  if (!journal.ok()) {
    keeper.Failed("cannot map the handle journal: " + journal.status().ToString());
    return 1;
  }
  fuse::FuseFs fs(**connected, fuse_options, **journal);
  std::vector<char*> fuse_argv;
  for (auto& arg : fuse_argv_storage) fuse_argv.push_back(arg.data());
  fuse_args fargs = FUSE_ARGS_INIT(static_cast<int>(fuse_argv.size()), fuse_argv.data());
  fuse_session* session =
      fuse_session_new(&fargs, &fuse::FuseFs::Operations(), sizeof(fuse_lowlevel_ops), &fs);
  if (session == nullptr) {
    keeper.Failed("invalid mount options");
    return 1;
  }
  fs.set_session(session);
  // "/dev/fd/N": libfuse serves the connection the keeper made.
  std::string connection = "/dev/fd/" + std::to_string(handover->fuse_fd);
  if (fuse_session_mount(session, connection.c_str()) != 0) {
    keeper.Failed("cannot use the FUSE connection");
    fuse_session_destroy(session);
    return 1;
  }
  // The kernel's FUSE_INIT sets the session up as negotiated. The first
  // daemon's reply answers the kernel; a successor's goes to a request the
  // kernel no longer has, and the kernel drops it.
  fuse_buf init{};
  init.size = handover->init_request.size();
  init.mem = handover->init_request.data();
  fuse_session_process_buf(session, &init);
  if (handover->successor) {
    size_t adopted = fs.AdoptHandles();
    std::fprintf(stderr, "sealfs-fuse: took over the mount and %zu open handles\n", adopted);
  }
  if (fuse_set_signal_handlers(session) != 0) {
    keeper.Failed("cannot set signal handlers");
    fuse_session_destroy(session);
    return 1;
  }
  std::fflush(stderr);
  keeper.Serving();
  // Requests are read on cloned descriptors only: those the daemon holds end
  // (ECONNABORTED) if it dies, while the keeper's descriptor keeps the mount.
  fuse_loop_config* loop = fuse_loop_cfg_create();
  fuse_loop_cfg_set_clone_fd(loop, 1);
  fuse_loop_cfg_set_max_threads(loop, 64);
  fuse_loop_cfg_set_idle_threads(loop, 16);
  int result = fuse_session_loop_mt(session, loop);
  fuse_loop_cfg_destroy(loop);
  fuse_remove_signal_handlers(session);
  fuse_session_destroy(session);
  fuse_opt_free_args(&fargs);
  // 0: unmounted; a signal number: stopped by it (the keeper unmounts).
  // Anything else is a failure, after which the keeper starts another.
  bool stopped = result == 0 || result == SIGTERM || result == SIGINT || result == SIGHUP;
  return stopped ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Arguments args;
  std::string error;
  if (!ParseArguments(argc, argv, &args, &error)) {
    if (!error.empty()) std::fprintf(stderr, "sealfs-fuse: %s\n", error.c_str());
    std::fputs(kUsage, stderr);
    return error.empty() ? 0 : 2;
  }
  size_t slash = args.source.find('/');
  if (slash == std::string::npos || slash + 1 == args.source.size()) {
    std::fprintf(stderr, "sealfs-fuse: source '%s' must be HOST:PORT/VOLUME\n",
                 args.source.c_str());
    return 2;
  }
  client::ClientOptions options;
  options.meta_address = args.source.substr(0, slash);
  options.volume = args.source.substr(slash + 1);
  auto transport = rpc::ParseTransportKind(args.transport);
  if (!transport.ok()) {
    std::fprintf(stderr, "sealfs-fuse: %s\n", transport.status().message().c_str());
    return 2;
  }
  options.transport = *transport;
  options.io_wait = std::chrono::milliseconds(static_cast<long long>(args.io_wait * 1000));
  options.meta_wait = std::chrono::milliseconds(static_cast<long long>(args.meta_wait * 1000));
  for (auto [path, secret] : {std::pair{&args.token_file, &options.token},
                              {&args.credentials_file, &options.admin_credential}}) {
    if (path->empty()) continue;
    Result<std::string> read = auth::ReadSecretFile(*path);
    if (!read.ok()) {
      std::fprintf(stderr, "sealfs-fuse: cannot mount %s: %s\n", args.source.c_str(),
                   read.status().ToString().c_str());
      return 1;
    }
    *secret = *read;
  }
  struct stat mount_stat;
  if (stat(args.mountpoint.c_str(), &mount_stat) != 0 || !S_ISDIR(mount_stat.st_mode)) {
    std::fprintf(stderr, "sealfs-fuse: mountpoint %s is not a directory\n",
                 args.mountpoint.c_str());
    return 2;
  }

  int report_fd = -1;
  if (!args.foreground) {
    int pipe_fds[2];
    if (pipe(pipe_fds) != 0) {
      std::perror("sealfs-fuse: pipe");
      return 1;
    }
    pid_t pid = fork();
    if (pid < 0) {
      std::perror("sealfs-fuse: fork");
      return 1;
    }
    if (pid > 0) {
      close(pipe_fds[1]);
      std::string message;
      char buffer[512];
      ssize_t n;
      while ((n = read(pipe_fds[0], buffer, sizeof buffer)) > 0)
        message.append(buffer, static_cast<size_t>(n));
      if (message == "ok") return 0;
      std::fprintf(stderr, "sealfs-fuse: %s\n",
                   message.empty() ? "mount process died" : message.c_str());
      return 1;
    }
    close(pipe_fds[0]);
    report_fd = pipe_fds[1];
    setsid();
    int null_fd = open("/dev/null", O_RDWR);
    int log_fd = args.log_file.empty()
                     ? null_fd
                     : open(args.log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (log_fd < 0) log_fd = null_fd;
    dup2(null_fd, 0);
    dup2(log_fd, 1);
    dup2(log_fd, 2);
    if (chdir("/") != 0) {
      std::string message = "cannot chdir to /";
      ssize_t ignored = write(report_fd, message.data(), message.size());
      (void)ignored;
      return 1;
    }
  }

  fuse::KeeperOptions keeper;
  keeper.source = args.source;
  keeper.mountpoint = args.mountpoint;
  keeper.report_fd = report_fd;
  std::string mount_options = "fsname=sealfs:" + args.source + ",subtype=sealfs";
  for (const std::string& option : args.fuse_options) mount_options += "," + option;
  keeper.fuse_args = {"sealfs-fuse", "-o", mount_options};
  if (args.debug) keeper.fuse_args.push_back("-d");
  fuse::FuseOptions fuse_options;
  fuse_options.attr_timeout = args.attr_timeout;
  fuse_options.entry_timeout = args.entry_timeout;
  return fuse::RunKeeper(keeper, [&](fuse::KeeperLink& link) {
    return Serve(options, fuse_options, keeper.fuse_args, link);
  });
}
