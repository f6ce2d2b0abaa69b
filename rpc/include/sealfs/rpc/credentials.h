// Secrets, their hashes, and capabilities, on libsodium.
//
// Three kinds of secret exist: the cluster key (shared by every server; it
// authenticates capabilities and proves a process is a SealFS server), the
// admin credential (volumes, quotas, cluster changes) and each volume's mount
// token. Servers keep only hashes of the admin credential, tokens and session
// keys, and compare them in constant time.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "common.pb.h"
#include "sealfs/rpc/status.h"

namespace sealfs::auth {

inline constexpr size_t kSecretBytes = 32;

// kSecretBytes from the operating system's random source.
std::string RandomSecret();
std::string ToHex(std::string_view bytes);
Result<std::string> FromHex(std::string_view hex);

// A one-way hash of a high-entropy secret (BLAKE2b-256): what servers store.
std::string HashSecret(std::string_view secret);
// Whether `secret` hashes to `stored_hash`, in constant time.
bool SecretMatches(std::string_view stored_hash, std::string_view secret);

// Secret files hold the secret in hex on one line, readable by the owner
// only. Writing refuses to replace an existing file.
Status WriteSecretFile(const std::string& path, std::string_view secret);
// Fails with a message naming the file when it is missing, malformed, or
// readable by others than its owner.
Result<std::string> ReadSecretFile(const std::string& path);

// The mount token of `volume_name` under a "volume token key": a keyed
// BLAKE2b-256 of the name. Deterministic, so the CSI controller that creates
// a volume and the node that mounts it compute the same token, and neither
// has to store it.
std::string DeriveVolumeToken(std::string_view token_key, std::string_view volume_name);

// Proof that the sender holds the cluster key (servers send it to servers).
std::string ServerProof(std::string_view cluster_key);
bool IsServerProof(std::string_view cluster_key, std::string_view proof);

int64_t WallClockNs();

// Sets cap->mac over every other field.
void SignCapability(pb::Capability* cap, std::string_view cluster_key);
// EACCES with the reason when the mac does not match (forged or altered) or
// the capability expired at `now_ns`.
Status VerifyCapability(const pb::Capability& cap, std::string_view cluster_key, int64_t now_ns);

}  // namespace sealfs::auth

namespace sealfs::rpc {
class Channel;
}

namespace sealfs::auth {

// A channel that sends `auth` with every request: every request message
// has its Auth in field 15, and appending an encoded field to a serialized
// message sets it (protobuf merges what follows). So callers fill in no
// credentials themselves.
class AuthChannel;
std::shared_ptr<AuthChannel> WithAuth(std::shared_ptr<rpc::Channel> inner, const pb::Auth& auth);
// Replaces the credentials the channel sends from now on.
void SetAuth(AuthChannel& channel, const pb::Auth& auth);
std::shared_ptr<rpc::Channel> AsChannel(std::shared_ptr<AuthChannel> channel);
// A server's own credentials: the proof that it holds the cluster key.
pb::Auth ServerAuth(std::string_view cluster_key);

}  // namespace sealfs::auth
