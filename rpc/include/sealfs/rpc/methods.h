// Every method of every service: id, request type and response type together.
#pragma once

#include "data.pb.h"
#include "meta.pb.h"
#include "sealfs/rpc/service.h"

namespace sealfs::rpc {

namespace meta {
#define SEALFS_META_METHOD(Name, Req, Resp, Id) \
  inline constexpr Method<pb::Req, pb::Resp> k##Name { ServiceId::kMeta, pb::Id, #Name }
SEALFS_META_METHOD(Mount, MountRequest, MountResponse, META_MOUNT);
SEALFS_META_METHOD(Lookup, LookupRequest, LookupResponse, META_LOOKUP);
SEALFS_META_METHOD(Getattr, GetattrRequest, GetattrResponse, META_GETATTR);
SEALFS_META_METHOD(Setattr, SetattrRequest, SetattrResponse, META_SETATTR);
SEALFS_META_METHOD(Mknod, MknodRequest, MknodResponse, META_MKNOD);
SEALFS_META_METHOD(Mkdir, MkdirRequest, MkdirResponse, META_MKDIR);
SEALFS_META_METHOD(Unlink, UnlinkRequest, UnlinkResponse, META_UNLINK);
SEALFS_META_METHOD(Rmdir, RmdirRequest, RmdirResponse, META_RMDIR);
SEALFS_META_METHOD(Rename, RenameRequest, RenameResponse, META_RENAME);
SEALFS_META_METHOD(Link, LinkRequest, LinkResponse, META_LINK);
SEALFS_META_METHOD(Symlink, SymlinkRequest, SymlinkResponse, META_SYMLINK);
SEALFS_META_METHOD(Readlink, ReadlinkRequest, ReadlinkResponse, META_READLINK);
SEALFS_META_METHOD(Readdir, ReaddirRequest, ReaddirResponse, META_READDIR);
SEALFS_META_METHOD(Statfs, StatfsRequest, StatfsResponse, META_STATFS);
SEALFS_META_METHOD(Setxattr, SetxattrRequest, SetxattrResponse, META_SETXATTR);
SEALFS_META_METHOD(Getxattr, GetxattrRequest, GetxattrResponse, META_GETXATTR);
SEALFS_META_METHOD(Listxattr, ListxattrRequest, ListxattrResponse, META_LISTXATTR);
SEALFS_META_METHOD(Removexattr, RemovexattrRequest, RemovexattrResponse, META_REMOVEXATTR);
SEALFS_META_METHOD(Open, OpenRequest, OpenResponse, META_OPEN);
SEALFS_META_METHOD(Close, CloseRequest, CloseResponse, META_CLOSE);
SEALFS_META_METHOD(CommitWrite, CommitWriteRequest, CommitWriteResponse, META_COMMIT_WRITE);
SEALFS_META_METHOD(SessionKeepalive, SessionKeepaliveRequest, SessionKeepaliveResponse,
                   META_SESSION_KEEPALIVE);
SEALFS_META_METHOD(VolumeCreate, VolumeCreateRequest, VolumeCreateResponse, META_VOLUME_CREATE);
SEALFS_META_METHOD(VolumeList, VolumeListRequest, VolumeListResponse, META_VOLUME_LIST);
SEALFS_META_METHOD(VolumeDelete, VolumeDeleteRequest, VolumeDeleteResponse, META_VOLUME_DELETE);
SEALFS_META_METHOD(RegisterServer, RegisterServerRequest, RegisterServerResponse,
                   META_REGISTER_SERVER);
SEALFS_META_METHOD(Heartbeat, HeartbeatRequest, HeartbeatResponse, META_HEARTBEAT);
SEALFS_META_METHOD(ClusterMap, ClusterMapRequest, ClusterMapResponse, META_CLUSTER_MAP);
SEALFS_META_METHOD(Sync, SyncRequest, SyncResponse, META_SYNC);
SEALFS_META_METHOD(Reserve, ReserveRequest, ReserveResponse, META_RESERVE);
SEALFS_META_METHOD(VolumeSetQuota, VolumeSetQuotaRequest, VolumeSetQuotaResponse,
                   META_VOLUME_SET_QUOTA);
SEALFS_META_METHOD(VolumeRotateToken, VolumeRotateTokenRequest, VolumeRotateTokenResponse,
                   META_VOLUME_ROTATE_TOKEN);
SEALFS_META_METHOD(Usage, UsageRequest, UsageResponse, META_USAGE);
SEALFS_META_METHOD(UsageVerify, UsageVerifyRequest, UsageVerifyResponse, META_USAGE_VERIFY);
SEALFS_META_METHOD(Fallocate, FallocateRequest, FallocateResponse, META_FALLOCATE);
SEALFS_META_METHOD(Fsck, FsckRequest, FsckResponse, META_FSCK);
#undef SEALFS_META_METHOD
}  // namespace meta

namespace data {
#define SEALFS_DATA_METHOD(Name, Req, Resp, Id) \
  inline constexpr Method<pb::Req, pb::Resp> k##Name { ServiceId::kData, pb::Id, #Name }
SEALFS_DATA_METHOD(Write, WriteRequest, WriteResponse, DATA_WRITE);
SEALFS_DATA_METHOD(Read, ReadRequest, ReadResponse, DATA_READ);
SEALFS_DATA_METHOD(TruncateFile, TruncateFileRequest, TruncateFileResponse, DATA_TRUNCATE_FILE);
SEALFS_DATA_METHOD(RemoveFile, RemoveFileRequest, RemoveFileResponse, DATA_REMOVE_FILE);
SEALFS_DATA_METHOD(FsyncFile, FsyncFileRequest, FsyncFileResponse, DATA_FSYNC_FILE);
SEALFS_DATA_METHOD(Stat, StatRequest, StatResponse, DATA_STAT);
SEALFS_DATA_METHOD(FileUsage, FileUsageRequest, FileUsageResponse, DATA_FILE_USAGE);
SEALFS_DATA_METHOD(ChainWrite, WriteRequest, WriteResponse, DATA_CHAIN_WRITE);
SEALFS_DATA_METHOD(ChainTruncate, TruncateFileRequest, TruncateFileResponse, DATA_CHAIN_TRUNCATE);
SEALFS_DATA_METHOD(ChainFsync, FsyncFileRequest, FsyncFileResponse, DATA_CHAIN_FSYNC);
SEALFS_DATA_METHOD(ChainFetch, ChainFetchRequest, ChainFetchResponse, DATA_CHAIN_FETCH);
SEALFS_DATA_METHOD(ChainList, ChainListRequest, ChainListResponse, DATA_CHAIN_LIST);
SEALFS_DATA_METHOD(ChainDrop, ChainDropRequest, ChainDropResponse, DATA_CHAIN_DROP);
SEALFS_DATA_METHOD(CommittedVersion, CommittedVersionRequest, CommittedVersionResponse,
                   DATA_COMMITTED_VERSION);
SEALFS_DATA_METHOD(ChainWriteTail, WriteRequest, WriteResponse, DATA_CHAIN_WRITE_TAIL);
SEALFS_DATA_METHOD(ChainTruncateTail, TruncateFileRequest, TruncateFileResponse,
                   DATA_CHAIN_TRUNCATE_TAIL);
SEALFS_DATA_METHOD(ChainFsyncTail, FsyncFileRequest, FsyncFileResponse, DATA_CHAIN_FSYNC_TAIL);
#undef SEALFS_DATA_METHOD
}  // namespace data

}  // namespace sealfs::rpc
