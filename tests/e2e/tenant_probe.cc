// sealfs-tenant-probe: run as an unprivileged user by the tenants end-to-end
// test, in its own process (not a fork of the multithreaded test, whose
// locks a child could inherit held). Tries to reach another tenant's volume
// and exits with the number of the first step that was not refused, 0 if
// every step was.
//
//   sealfs-tenant-probe META_ADDRESS OWN_VOLUME OWN_TOKEN_FILE
//                       OTHER_VOLUME OTHER_TOKEN_FILE OTHER_MOUNT OTHER_ROOT_INO
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <string>

#include "sealfs/client/client.h"
#include "sealfs/rpc/credentials.h"
#include "sealfs/rpc/methods.h"

int main(int argc, char** argv) {
  using namespace sealfs;
  if (argc != 8) return 2;
  const std::string meta_address = argv[1], own_volume = argv[2], own_token_file = argv[3];
  const std::string other_volume = argv[4], other_token_file = argv[5], other_mount = argv[6];
  const uint64_t other_root = std::strtoull(argv[7], nullptr, 10);

  // The other tenant's token and files through its mount: the kernel refuses.
  if (auth::ReadSecretFile(other_token_file).ok()) return 11;
  if (open((other_mount + "/secret").c_str(), O_RDONLY) >= 0 || errno != EACCES) return 12;
  // With its own token, the servers refuse every inode of the other volume.
  auto token = auth::ReadSecretFile(own_token_file);
  if (!token.ok()) return 13;
  client::ClientOptions options;
  options.meta_address = meta_address;
  options.volume = own_volume;
  options.token = *token;
  auto own = client::Client::Connect(options);
  if (!own.ok()) return 14;
  pb::ReaddirRequest list;
  list.set_ino(other_root);
  pb::ReaddirResponse listing;
  if ((*own)->Meta(rpc::meta::kReaddir, list, &listing).code() != EACCES) return 15;
  pb::LookupRequest lookup;
  lookup.set_parent(other_root);
  lookup.set_name("secret");
  pb::LookupResponse found;
  if ((*own)->Meta(rpc::meta::kLookup, lookup, &found).code() != EACCES) return 16;
  // Nor can it mount the other volume with its own token.
  options.volume = other_volume;
  if (client::Client::Connect(options).status().code() != EACCES) return 17;
  return 0;
}
