#include "sealfs/server/data_service.h"

#include <cstdio>

#include "sealfs/rpc/methods.h"

namespace sealfs::server {

namespace {
// A write stays inside its chunk as the file's layout cuts it: bytes past the
// chunk size would belong to the next chunk, on another server.
Status CheckWriteRange(uint64_t offset, uint64_t length, uint32_t chunk_size) {
  if (chunk_size == 0 || chunk_size > kMaxChunkSize) {
    return Status(EINVAL, "bad chunk size " + std::to_string(chunk_size));
  }
  if (offset + length > chunk_size) {
    return Status(EINVAL, "range " + std::to_string(offset) + "+" + std::to_string(length) +
                              " lies outside a chunk of " + std::to_string(chunk_size) + " bytes");
  }
  return Status::Ok();
}

// A read's answer lands in the reply payload's room, which the transport may
// send as it is (RDMA-registered memory): no copy between disk and wire.
class ReplyTarget : public ChunkStore::ReadTarget {
 public:
  explicit ReplyTarget(rpc::RequestContext& context) : context_(context) {}
  ~ReplyTarget() override {
    if (reserved_ && !kept_) context_.KeepReply(0, 0);
  }
  char* Reserve(size_t size) override {
    reserved_ = true;
    return context_.ReserveReply(size);
  }
  void Keep(size_t offset, size_t length) override {
    kept_ = true;
    context_.KeepReply(offset, length);
  }

 private:
  rpc::RequestContext& context_;
  bool reserved_ = false;
  bool kept_ = false;
};

Status CheckRange(uint64_t offset, uint64_t length) {
  if (offset + length > kMaxChunkSize) {
    return Status(EINVAL, "range " + std::to_string(offset) + "+" + std::to_string(length) +
                              " lies outside any chunk");
  }
  return Status::Ok();
}
}  // namespace

Status DataService::CheckStore(const std::string& store_id) const {
  if (store_id.empty()) return Status(EINVAL, "request names no store");
  if (store_id != store_.instance_id()) {
    // ESTALE: whatever the request is about went with the store it names.
    return Status(ESTALE, "store mismatch: this server holds store " + store_.instance_id() +
                              ", the request is for store " + store_id + " whose data is not here");
  }
  return Status::Ok();
}

void DataService::RegisterHandlers(rpc::Dispatcher& d) {
  using namespace rpc::data;
  d.Register(
      kWrite, {[this](const pb::WriteRequest& req, pb::WriteResponse* resp,
                      rpc::RequestContext& context) -> Status {
        SEALFS_RETURN_IF_ERROR(CheckStore(req.store_id()));
        SEALFS_RETURN_IF_ERROR(
            CheckWriteRange(req.offset(), context.payload.size(), req.chunk_size()));
        int64_t allocated_delta = 0;
        SEALFS_RETURN_IF_ERROR(store_.Write(req.chunk().ino(), req.chunk().index(), req.offset(),
                                            context.payload, &allocated_delta));
        resp->set_allocated_delta(allocated_delta);
        return Status::Ok();
      }});
  d.Register(kRead, {[this](const pb::ReadRequest& req, pb::ReadResponse*,
                            rpc::RequestContext& context) -> Status {
               SEALFS_RETURN_IF_ERROR(CheckStore(req.store_id()));
               SEALFS_RETURN_IF_ERROR(CheckRange(req.offset(), req.length()));
               ReplyTarget target(context);
               return store_.Read(req.chunk().ino(), req.chunk().index(), req.offset(),
                                  req.length(), &target);
             }});
  d.Register(kTruncateFile,
             {[this](const pb::TruncateFileRequest& req, pb::TruncateFileResponse* resp,
                     rpc::RequestContext&) -> Status {
               SEALFS_RETURN_IF_ERROR(CheckStore(req.store_id()));
               uint64_t allocated = 0;
               SEALFS_RETURN_IF_ERROR(
                   store_.TruncateFile(req.ino(), req.size(), req.chunk_size(), &allocated));
               resp->set_allocated_bytes(allocated);
               return Status::Ok();
             }});
  d.Register(kRemoveFile, {[this](const pb::RemoveFileRequest& req, pb::RemoveFileResponse*,
                                  rpc::RequestContext&) -> Status {
               SEALFS_RETURN_IF_ERROR(CheckStore(req.store_id()));
               std::vector<uint64_t> inos(req.more_inos().begin(), req.more_inos().end());
               if (req.ino() != 0) inos.push_back(req.ino());
               return store_.RemoveFiles(inos);
             }});
  d.Register(kFsyncFile, {[this](const pb::FsyncFileRequest& req, pb::FsyncFileResponse*,
                                 rpc::RequestContext&) -> Status {
               SEALFS_RETURN_IF_ERROR(CheckStore(req.store_id()));
               return store_.FsyncFile(req.ino());
             }});
  d.Register(kFileUsage, {[this](const pb::FileUsageRequest& req, pb::FileUsageResponse* resp,
                                 rpc::RequestContext&) -> Status {
               SEALFS_RETURN_IF_ERROR(CheckStore(req.store_id()));
               auto usage = store_.FileUsage(req.ino(), req.chunk_size(), req.index_limit());
               if (!usage.ok()) return usage.status();
               resp->set_data_end(usage->data_end);
               resp->set_allocated_bytes(usage->allocated_bytes);
               return Status::Ok();
             }});
  d.Register(kStat, {[this](const pb::StatRequest&, pb::StatResponse* resp,
                            rpc::RequestContext&) -> Status {
               ChunkStoreUsage usage = store_.Usage();
               resp->set_capacity_bytes(usage.capacity_bytes);
               resp->set_free_bytes(usage.free_bytes);
               resp->set_used_bytes(usage.used_bytes);
               resp->set_chunk_count(usage.chunk_count);
               return Status::Ok();
             }});
}

Registration::Registration(rpc::IoThreads& io, ChunkStore& store, std::string meta_address,
                           std::string advertised_address, std::chrono::milliseconds interval)
    : store_(store),
      meta_(rpc::MakeTcpChannel(io, meta_address)),
      advertised_address_(std::move(advertised_address)),
      interval_(interval) {}

Registration::~Registration() { Stop(); }

void Registration::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void Registration::Stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wakeup_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Registration::Loop() {
  std::string last_error;
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stopping_) {
    lock.unlock();
    ChunkStoreUsage usage = store_.Usage();
    Status status;
    rpc::CallOptions options{std::chrono::seconds(5)};
    if (server_id_ == 0) {
      pb::RegisterServerRequest request;
      request.set_address(advertised_address_);
      request.set_instance_id(store_.instance_id());
      request.set_capacity_bytes(usage.capacity_bytes);
      request.set_free_bytes(usage.free_bytes);
      pb::RegisterServerResponse response;
      status =
          rpc::Invoke(*meta_, rpc::meta::kRegisterServer, request, &response, {}, nullptr, options);
      if (status.ok()) {
        server_id_ = response.server_id();
        std::fprintf(stderr, "sealfs-data: registered as data server %u\n", server_id_.load());
      }
    }
    if (server_id_ != 0) {
      pb::HeartbeatRequest request;
      request.set_server_id(server_id_);
      request.set_capacity_bytes(usage.capacity_bytes);
      request.set_free_bytes(usage.free_bytes);
      request.set_used_bytes(usage.used_bytes);
      request.set_chunk_count(usage.chunk_count);
      auto fill = [](const rpc::TransportCounters& counters, pb::TransportStats* stats) {
        stats->set_messages_sent(counters.messages_sent);
        stats->set_bytes_sent(counters.bytes_sent);
        stats->set_rdma_read_ops(counters.rdma_read_ops);
        stats->set_rdma_read_bytes(counters.rdma_read_bytes);
        stats->set_rdma_write_ops(counters.rdma_write_ops);
        stats->set_rdma_write_bytes(counters.rdma_write_bytes);
      };
      fill(rpc::TcpCounters(), request.mutable_tcp());
      fill(rpc::RdmaCounters(), request.mutable_rdma());
      pb::HeartbeatResponse response;
      status = rpc::Invoke(*meta_, rpc::meta::kHeartbeat, request, &response, {}, nullptr, options);
      if (status.code() == ENOENT) server_id_ = 0;  // forgotten: register again at once
    }
    if (!status.ok() && status.ToString() != last_error) {
      std::fprintf(stderr, "sealfs-data: metadata server: %s\n", status.ToString().c_str());
    }
    last_error = status.ok() ? "" : status.ToString();
    lock.lock();
    if (server_id_ == 0 && status.code() == ENOENT) continue;
    wakeup_.wait_for(lock, interval_);
  }
}

}  // namespace sealfs::server
