// Helpers of the tenant tests: volumes with tokens, a small tree in a
// volume, a description of everything in one, and raw requests to the data
// server holding a chunk.
#pragma once

#include <sys/stat.h>

#include <string>
#include <vector>

#include "sealfs/rpc/chain_table.h"
#include "sealfs/rpc/credentials.h"
#include "test_cluster.h"

namespace sealfs::testing {

// Creates a volume; returns its mount token ("" and a test failure if not).
inline std::string MakeVolume(client::Client& admin, const std::string& name,
                              const std::string& tenant, uint64_t quota_bytes = 0,
                              uint64_t quota_inodes = 0) {
  pb::VolumeCreateRequest request;
  request.set_name(name);
  request.set_tenant(tenant);
  request.set_quota_bytes(quota_bytes);
  request.set_quota_inodes(quota_inodes);
  pb::VolumeCreateResponse response;
  Status status = admin.Meta(rpc::meta::kVolumeCreate, request, &response);
  EXPECT_TRUE(status.ok()) << status.ToString();
  return response.token();
}

inline Status SetQuota(client::Client& admin, const std::string& name, uint64_t bytes,
                       uint64_t inodes) {
  pb::VolumeSetQuotaRequest request;
  request.set_name(name);
  request.set_quota_bytes(bytes);
  request.set_quota_inodes(inodes);
  pb::VolumeSetQuotaResponse response;
  return admin.Meta(rpc::meta::kVolumeSetQuota, request, &response);
}

inline pb::Volume VolumeNamed(client::Client& admin, const std::string& name) {
  pb::VolumeListResponse response;
  EXPECT_TRUE(admin.Meta(rpc::meta::kVolumeList, pb::VolumeListRequest{}, &response).ok());
  for (const pb::Volume& volume : response.volumes()) {
    if (volume.name() == name) return volume;
  }
  ADD_FAILURE() << "no volume " << name;
  return {};
}

// Writes `data` at `offset` and commits the size, as a mount does.
inline Status WriteAt(client::Client& c, const pb::MknodResponse& file, uint64_t offset,
                      std::string_view data) {
  int64_t delta = 0;
  SEALFS_RETURN_IF_ERROR(c.Write(file.attr().ino(), file.layout(), offset, data, &delta));
  pb::CommitWriteRequest commit;
  commit.set_ino(file.attr().ino());
  commit.set_size(offset + data.size());
  commit.set_allocated_delta(delta);
  commit.set_data_epoch(file.attr().data_epoch());
  pb::CommitWriteResponse committed;
  return c.Meta(rpc::meta::kCommitWrite, commit, &committed);
}

inline std::string ReadAll(client::Client& c, uint64_t ino) {
  pb::GetattrRequest request;
  request.set_ino(ino);
  pb::GetattrResponse attr;
  Status status = c.Meta(rpc::meta::kGetattr, request, &attr);
  if (!status.ok()) return "error: " + status.ToString();
  std::string data(attr.attr().size(), '\0');
  status = c.Read(ino, attr.layout(), 0, data.size(), data.data());
  return status.ok() ? data : "error: " + status.ToString();
}

// root/d/secret (a file holding `content`, with xattr user.k) and
// root/d/link (a symlink), made through `c`.
struct VolumeTree {
  uint64_t root = 0, dir = 0, file = 0, link = 0;
};
inline VolumeTree BuildTree(client::Client& c, const std::string& content) {
  VolumeTree tree;
  tree.root = c.root_ino();
  pb::MkdirRequest mkdir;
  mkdir.set_parent(tree.root);
  mkdir.set_name("d");
  mkdir.set_mode(0755);
  pb::MkdirResponse dir;
  EXPECT_TRUE(c.Meta(rpc::meta::kMkdir, mkdir, &dir).ok());
  tree.dir = dir.attr().ino();
  auto file = c.CreateAndOpen(tree.dir, "secret", S_IFREG | 0600, pb::Caller{});
  EXPECT_TRUE(file.ok()) << file.status().ToString();
  if (!file.ok()) return tree;
  tree.file = file->attr().ino();
  EXPECT_TRUE(WriteAt(c, *file, 0, content).ok());
  EXPECT_TRUE(c.Close(tree.file).ok());
  pb::SetxattrRequest xattr;
  xattr.set_ino(tree.file);
  xattr.set_name("user.k");
  xattr.set_value("v");
  pb::SetxattrResponse set;
  EXPECT_TRUE(c.Meta(rpc::meta::kSetxattr, xattr, &set).ok());
  pb::SymlinkRequest symlink;
  symlink.set_parent(tree.dir);
  symlink.set_name("link");
  symlink.set_target("secret");
  pb::SymlinkResponse link;
  EXPECT_TRUE(c.Meta(rpc::meta::kSymlink, symlink, &link).ok());
  tree.link = link.attr().ino();
  return tree;
}

// Every name, inode, mode, size and xattr of the volume, as one string.
inline std::string DescribeVolume(client::Client& c) {
  std::string out;
  std::vector<std::pair<std::string, uint64_t>> directories{{"", c.root_ino()}};
  while (!directories.empty()) {
    auto [path, ino] = directories.back();
    directories.pop_back();
    pb::ReaddirRequest request;
    request.set_ino(ino);
    request.set_with_attrs(true);
    request.set_max_entries(1000);
    pb::ReaddirResponse listing;
    if (!c.Meta(rpc::meta::kReaddir, request, &listing).ok()) return "error";
    for (const pb::DirEntry& entry : listing.entries()) {
      if (entry.name() == "." || entry.name() == "..") continue;
      std::string child = path + "/" + entry.name();
      out += child + " " + std::to_string(entry.ino()) + " " + std::to_string(entry.attr().mode()) +
             " " + std::to_string(entry.attr().size());
      pb::ListxattrRequest list;
      list.set_ino(entry.ino());
      pb::ListxattrResponse names;
      if (c.Meta(rpc::meta::kListxattr, list, &names).ok()) {
        for (const std::string& name : names.names()) out += " " + name;
      }
      out += "\n";
      if (S_ISDIR(entry.attr().mode())) directories.emplace_back(child, entry.ino());
    }
  }
  return out;
}

// Requests only the admin (or a server) may make, sent by `c`.
inline std::vector<std::pair<std::string, Status>> AdminRequests(client::Client& c,
                                                                 const std::string& victim) {
  using namespace rpc::meta;
  std::vector<std::pair<std::string, Status>> results;
  {
    pb::VolumeListResponse out;
    results.emplace_back("volume list", c.Meta(kVolumeList, pb::VolumeListRequest{}, &out));
  }
  {
    pb::VolumeCreateRequest r;
    r.set_name("intruder");
    r.set_tenant("x");
    pb::VolumeCreateResponse out;
    results.emplace_back("volume create", c.Meta(kVolumeCreate, r, &out));
  }
  {
    pb::VolumeDeleteRequest r;
    r.set_name(victim);
    r.set_force(true);
    pb::VolumeDeleteResponse out;
    results.emplace_back("volume delete", c.Meta(kVolumeDelete, r, &out));
  }
  {
    pb::VolumeSetQuotaRequest r;
    r.set_name(victim);
    r.set_quota_bytes(1);
    pb::VolumeSetQuotaResponse out;
    results.emplace_back("set quota", c.Meta(kVolumeSetQuota, r, &out));
  }
  {
    pb::VolumeRotateTokenRequest r;
    r.set_name(victim);
    pb::VolumeRotateTokenResponse out;
    results.emplace_back("rotate token", c.Meta(kVolumeRotateToken, r, &out));
  }
  {
    pb::UsageResponse out;
    results.emplace_back("usage", c.Meta(kUsage, pb::UsageRequest{}, &out));
  }
  {
    pb::UsageVerifyResponse out;
    results.emplace_back("usage verify", c.Meta(kUsageVerify, pb::UsageVerifyRequest{}, &out));
  }
  {
    pb::RegisterServerRequest r;
    r.set_address("127.0.0.1:1");
    r.set_instance_id("intruder");
    r.add_targets("intruder");
    pb::RegisterServerResponse out;
    results.emplace_back("register server", c.Meta(kRegisterServer, r, &out));
  }
  {
    pb::HeartbeatRequest r;
    r.set_server_id(1);
    pb::HeartbeatResponse out;
    results.emplace_back("heartbeat", c.Meta(kHeartbeat, r, &out));
  }
  return results;
}

// A data server holding a chunk: a channel with no credentials, the store
// and the chain reference to name.
struct DataRoute {
  std::shared_ptr<rpc::IoThreads> io;
  std::shared_ptr<rpc::Channel> channel;
  std::string store_id;
  pb::ChainRef chain;
  uint32_t chunk_size = 0;
  uint32_t index = 0;
};
// `viewer` looks the file up (it must be allowed to), `c` provides the map.
inline DataRoute RouteToChunk(client::Client& c, client::Client& viewer, uint64_t ino,
                              uint32_t index) {
  DataRoute route;
  pb::GetattrRequest request;
  request.set_ino(ino);
  pb::GetattrResponse attr;
  EXPECT_TRUE(viewer.Meta(rpc::meta::kGetattr, request, &attr).ok());
  auto map = c.RefreshClusterMap();
  EXPECT_TRUE(map.ok());
  if (!map.ok() || attr.layout().chains_size() == 0) return route;
  uint32_t chain_id = attr.layout().chains(index % attr.layout().chains_size());
  route.chunk_size = attr.layout().chunk_size();
  route.index = index;
  for (const pb::Chain& chain : map->chains()) {
    if (chain.id() != chain_id) continue;
    route.chain.set_id(chain.id());
    route.chain.set_version(chain.version());
    uint32_t head = chains::Serving(chain).front();
    for (const pb::Target& target : map->targets()) {
      if (target.id() != head) continue;
      route.store_id = target.instance_id();
      for (const pb::DataServer& server : map->servers()) {
        if (server.id() == target.server_id()) {
          route.io = std::make_shared<rpc::IoThreads>(1);
          route.channel = rpc::MakeTcpChannel(*route.io, server.address());
        }
      }
    }
  }
  return route;
}

inline Status ReadChunk(const DataRoute& route, uint64_t ino, const pb::Capability& cap,
                        std::string* out) {
  pb::ReadRequest request;
  request.mutable_chunk()->set_ino(ino);
  request.mutable_chunk()->set_index(route.index);
  request.set_length(route.chunk_size);
  request.set_store_id(route.store_id);
  *request.mutable_chain() = route.chain;
  *request.mutable_cap() = cap;
  pb::ReadResponse response;
  return rpc::Invoke(*route.channel, rpc::data::kRead, request, &response, {}, out);
}

inline Status WriteChunk(const DataRoute& route, uint64_t ino, const pb::Capability& cap,
                         uint32_t offset, std::string_view data) {
  pb::WriteRequest request;
  request.mutable_chunk()->set_ino(ino);
  request.mutable_chunk()->set_index(route.index);
  request.set_offset(offset % route.chunk_size);
  request.set_chunk_size(route.chunk_size);
  request.set_store_id(route.store_id);
  *request.mutable_chain() = route.chain;
  *request.mutable_cap() = cap;
  pb::WriteResponse response;
  return rpc::Invoke(*route.channel, rpc::data::kWrite, request, &response, data);
}

// Every data request an intruder could send about `ino`: client methods
// without a capability, with another file's (`own`), with one altered to
// name `ino` (`forged`); server methods without and with a made-up proof.
inline std::vector<std::pair<std::string, Status>> DataRequests(const DataRoute& route,
                                                                uint64_t ino,
                                                                const pb::Capability& own,
                                                                const pb::Capability& forged) {
  std::vector<std::pair<std::string, Status>> results;
  std::string out;
  for (auto [name, cap] : {std::pair{"no capability", pb::Capability{}},
                           {"another file's capability", own},
                           {"forged capability", forged}}) {
    results.emplace_back(std::string("read with ") + name, ReadChunk(route, ino, cap, &out));
    results.emplace_back(std::string("write with ") + name, WriteChunk(route, ino, cap, 0, "x"));
    pb::FsyncFileRequest fsync;
    fsync.set_ino(ino);
    fsync.set_store_id(route.store_id);
    *fsync.mutable_chain() = route.chain;
    *fsync.mutable_cap() = cap;
    pb::FsyncFileResponse synced;
    results.emplace_back(std::string("fsync with ") + name,
                         rpc::Invoke(*route.channel, rpc::data::kFsyncFile, fsync, &synced));
  }
  for (std::string proof : {std::string(), auth::RandomSecret()}) {
    std::string how = proof.empty() ? " without a proof" : " with a made-up proof";
    pb::Auth auth;
    auth.set_server_proof(proof);
    pb::TruncateFileRequest truncate;
    truncate.set_ino(ino);
    truncate.set_chunk_size(route.chunk_size);
    truncate.set_store_id(route.store_id);
    *truncate.mutable_chain() = route.chain;
    *truncate.mutable_auth() = auth;
    pb::TruncateFileResponse truncated;
    results.emplace_back("truncate" + how, rpc::Invoke(*route.channel, rpc::data::kTruncateFile,
                                                       truncate, &truncated));
    pb::RemoveFileRequest remove;
    remove.set_ino(ino);
    remove.set_store_id(route.store_id);
    *remove.mutable_auth() = auth;
    pb::RemoveFileResponse removed;
    results.emplace_back("remove" + how,
                         rpc::Invoke(*route.channel, rpc::data::kRemoveFile, remove, &removed));
    pb::WriteRequest chain_write;
    chain_write.mutable_chunk()->set_ino(ino);
    chain_write.set_chunk_size(route.chunk_size);
    chain_write.set_store_id(route.store_id);
    *chain_write.mutable_chain() = route.chain;
    *chain_write.mutable_auth() = auth;
    pb::WriteResponse written;
    results.emplace_back("chain write" + how, rpc::Invoke(*route.channel, rpc::data::kChainWrite,
                                                          chain_write, &written, "x"));
    pb::ChainFetchRequest fetch;
    fetch.mutable_chunk()->set_ino(ino);
    fetch.set_store_id(route.store_id);
    *fetch.mutable_chain() = route.chain;
    *fetch.mutable_auth() = auth;
    pb::ChainFetchResponse fetched;
    results.emplace_back("chain fetch" + how,
                         rpc::Invoke(*route.channel, rpc::data::kChainFetch, fetch, &fetched));
    pb::FileUsageRequest usage;
    usage.set_ino(ino);
    usage.set_chunk_size(route.chunk_size);
    usage.set_index_limit(1);
    usage.set_store_id(route.store_id);
    *usage.mutable_chain() = route.chain;
    *usage.mutable_auth() = auth;
    pb::FileUsageResponse used;
    results.emplace_back("file usage" + how,
                         rpc::Invoke(*route.channel, rpc::data::kFileUsage, usage, &used));
  }
  return results;
}

}  // namespace sealfs::testing
