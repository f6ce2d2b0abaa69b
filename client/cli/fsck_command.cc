// sealfs fsck [--repair]: checks the namespace on the metadata server(s)
// and prints what it checked and what it found. Exit codes as e2fsck's:
// 0 clean, 1 problems found and all mended, 4 problems left.
#include <cstdio>

#include "cli_common.h"
#include "sealfs/rpc/methods.h"

namespace sealfs::cli {

namespace {

void PrintFinding(const pb::FsckFinding& finding, bool repairing) {
  std::printf("  %-26s %s\n", finding.problem().c_str(), finding.description().c_str());
  if (repairing) {
    std::printf("  %-26s %s: %s\n", "", finding.repaired() ? "repaired" : "NOT repaired",
                finding.repair().c_str());
  }
}

unsigned long long N(uint64_t value) { return static_cast<unsigned long long>(value); }

}  // namespace

int FsckCommand(const Flags& flags) {
  auto admin = Admin(flags);
  if (!admin.ok()) return Fail(admin.status());
  const bool repair = flags.Has("repair");
  pb::FsckRequest request;
  request.set_repair(repair);
  pb::FsckResponse response;
  Status status = (*admin)->Meta(rpc::meta::kFsck, request, &response);
  if (!status.ok()) return Fail(status);
  std::printf(
      "checked %llu volume(s): %llu directories, %llu files and other inodes (%llu open "
      "orphans), %llu entries\n",
      N(response.volumes()), N(response.directories()), N(response.files()), N(response.orphans()),
      N(response.entries()));
  if (response.found_count() == 0) {
    std::printf(
        "clean: every entry names an inode, every link count matches its names, every "
        "directory is reachable from its volume's root\n");
    return 0;
  }
  std::printf("found %llu problem(s):\n", N(response.found_count()));
  for (const pb::FsckFinding& finding : response.found()) PrintFinding(finding, repair);
  if (static_cast<uint64_t>(response.found_size()) < response.found_count()) {
    std::printf("  ... and %llu more\n", N(response.found_count() - response.found_size()));
  }
  if (!repair) {
    std::printf("run 'sealfs fsck --repair' to mend what can be mended safely\n");
    return 4;
  }
  if (response.remaining_count() == 0) {
    std::printf("repaired: the namespace is clean now\n");
    return 1;
  }
  std::printf("%llu problem(s) left:\n", N(response.remaining_count()));
  for (const pb::FsckFinding& finding : response.remaining()) PrintFinding(finding, false);
  return 4;
}

}  // namespace sealfs::cli
