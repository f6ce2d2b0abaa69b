// What the sealfs commands share: finding the cluster and the admin
// credential, errors, and sizes for people.
#pragma once

#include <memory>
#include <string>

#include "sealfs/client/client.h"
#include "sealfs/rpc/process.h"

namespace sealfs::cli {

inline const std::string kDefaultState = "/var/lib/sealfs/local";

int Fail(const Status& status);
// --meta, $SEALFS_META, the local cluster's address, or 127.0.0.1:7400.
std::string MetaAddress(const Flags& flags);
// --credentials, $SEALFS_CREDENTIALS, or the local cluster's admin.credential.
Result<std::string> AdminCredential(const Flags& flags);
// A client with the admin credential (no volume mounted).
Result<std::unique_ptr<client::Client>> Admin(const Flags& flags);
std::string HumanBytes(uint64_t bytes);
// "10GiB", "512M", "4096" (bytes, binary units); "1M" inodes with `si`.
Result<uint64_t> ParseCount(const std::string& text, bool binary);

int VolumeCommand(const Flags& flags);
int UsageCommand(const Flags& flags);
int FsckCommand(const Flags& flags);

}  // namespace sealfs::cli
