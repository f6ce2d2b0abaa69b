// sealfs-csi: the Kubernetes CSI plugin of SealFS (Identity, Controller,
// Node) and, with --mode mounter, the process that runs its FUSE daemons.
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <sys/stat.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "child_processes.h"
#include "controller_service.h"
#include "identity_service.h"
#include "mounter_service.h"
#include "node_service.h"
#include "plugin_options.h"

namespace sealfs::csi {
namespace {

// A socket left by an earlier run would make the listen fail.
Status PrepareSocket(const std::string& path) {
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  if (ec) return Status(ec.value(), "creating the directory of " + path + ": " + ec.message());
  struct stat st {};
  if (lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return Status(EEXIST, path + " exists and is not a socket");
    if (unlink(path.c_str()) != 0) return Status(errno, "removing stale socket " + path);
  }
  return Status::Ok();
}

int Serve(const PluginOptions& options) {
  std::string socket_path = *UnixSocketPath(options.endpoint, "endpoint");
  if (Status prepared = PrepareSocket(socket_path); !prepared.ok()) {
    std::fprintf(stderr, "sealfs-csi: %s\n", prepared.ToString().c_str());
    return 1;
  }
  // SIGTERM and SIGINT are taken by one thread that stops the server; every
  // other thread (gRPC's too) starts with them blocked.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  std::unique_ptr<IdentityService> identity;
  std::unique_ptr<ControllerService> controller;
  std::unique_ptr<NodeService> node;
  std::unique_ptr<LocalFuseMounter> local_mounter;
  std::unique_ptr<MounterService> mounter;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.endpoint, grpc::InsecureServerCredentials());
  if (options.mode == PluginMode::kMounter) {
    // The daemons sealfs-fuse leaves behind become our children when their
    // launcher exits; ChildProcesses reaps them when they end.
    if (Status adopted = ChildProcesses::BecomeSubreaper(); !adopted.ok()) {
      std::fprintf(stderr, "sealfs-csi: %s\n", adopted.ToString().c_str());
      return 1;
    }
    ChildProcesses::Instance();
    local_mounter = std::make_unique<LocalFuseMounter>(options.fuse_binary, options.state_dir);
    mounter = std::make_unique<MounterService>(*local_mounter);
    builder.RegisterService(mounter.get());
  } else {
    identity = std::make_unique<IdentityService>(options);
    builder.RegisterService(identity.get());
  }
  if (options.serves_controller()) {
    controller = std::make_unique<ControllerService>(options);
    builder.RegisterService(controller.get());
  }
  if (options.serves_node()) {
    std::unique_ptr<FuseMounter> runner;
    if (options.mounter_endpoint.empty()) {
      runner = std::make_unique<LocalFuseMounter>(options.fuse_binary, options.state_dir);
    } else {
      runner = std::make_unique<RemoteFuseMounter>(options.mounter_endpoint);
    }
    node = std::make_unique<NodeService>(options, std::move(runner));
    builder.RegisterService(node.get());
  }
  // The socket is made owner-only: it hands out mounts and credentials.
  mode_t old_mask = umask(077);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  umask(old_mask);
  if (!server) {
    std::fprintf(stderr, "sealfs-csi: cannot listen on %s\n", options.endpoint.c_str());
    return 1;
  }
  std::fprintf(stderr, "sealfs-csi: serving on %s\n", options.endpoint.c_str());
  std::thread stopper([&] {
    int received = 0;
    sigwait(&stop_signals, &received);
    server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  });
  server->Wait();
  stopper.join();
  unlink(socket_path.c_str());
  return 0;
}

}  // namespace
}  // namespace sealfs::csi

int main(int argc, char** argv) {
  using namespace sealfs::csi;
  sealfs::Result<PluginOptions> options = ParseFlags(argc, argv);
  if (!options.ok()) {
    std::fprintf(stderr, "sealfs-csi: %s\n%s", options.status().message().c_str(), kUsage);
    return 2;
  }
  if (options->show_help) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (options->show_version) {
    std::printf("sealfs-csi %s\n", SEALFS_VERSION);
    return 0;
  }
  if (options->check_args) {
    std::puts("ok");
    return 0;
  }
  return Serve(*options);
}
