// DataService over a real TCP listener: requests naming another store (or
// none) are refused, FileUsage and TruncateFile report what the store holds.
#include "sealfs/server/data_service.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "sealfs/rpc/methods.h"
#include "sealfs/rpc/rdma_transport.h"
#include "test_auth.h"

namespace sealfs::server {
namespace {

class DataServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/sealfs-data-service-XXXXXX";
    dir_ = mkdtemp(pattern);
    auto opened = ChunkStore::Open(dir_);
    ASSERT_TRUE(opened.ok());
    store_ = std::move(*opened);
    target_.store = store_.get();
    target_.id = 1;
    service_ =
        std::make_unique<DataService>(std::vector<StorageTarget*>{&target_}, view_, io_,
                                      rpc::TransportKind::kTcp, testing::TestClusterKey(), "");
    service_->RegisterHandlers(dispatcher_, dispatcher_, dispatcher_);
    ASSERT_TRUE(listeners_.Listen(io_, dispatcher_, "127.0.0.1", 0, rpc::TransportKind::kTcp).ok());
    std::string address = "127.0.0.1:" + std::to_string(listeners_.port());
    channel_ = testing::ServerChannel(io_, address);
    // One chain of one member: this store.
    pb::ClusterMapResponse map;
    map.set_version(1);
    pb::DataServer* server = map.add_servers();
    server->set_id(1);
    server->set_address(address);
    pb::Target* target = map.add_targets();
    target->set_id(1);
    target->set_server_id(1);
    target->set_instance_id(store_->instance_id());
    pb::Chain* chain = map.add_chains();
    chain->set_id(1);
    chain->set_version(1);
    chain->add_members()->set_target_id(1);
    chain->mutable_members(0)->set_state("serving");
    view_.Update(map);
    view_.HoldLeaseForever();
    chain_.set_id(1);
    chain_.set_version(1);
  }
  void TearDown() override {
    channel_.reset();
    listeners_.Stop();
    dispatcher_.Shutdown();
    io_.Stop();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  Status Write(const std::string& store_id, uint64_t ino, uint32_t index, uint32_t offset,
               const std::string& data) {
    pb::WriteRequest request;
    request.mutable_chunk()->set_ino(ino);
    request.mutable_chunk()->set_index(index);
    request.set_offset(offset);
    request.set_chunk_size(kChunk);
    request.set_store_id(store_id);
    *request.mutable_chain() = chain_;
    pb::WriteResponse response;
    testing::Sign(request);
    return rpc::Invoke(*channel_, rpc::data::kWrite, request, &response, data);
  }

  static constexpr uint32_t kChunk = 1 << 20;
  std::string dir_;
  std::unique_ptr<ChunkStore> store_;
  StorageTarget target_;
  ChainView view_{nullptr};
  pb::ChainRef chain_;
  std::unique_ptr<DataService> service_;
  rpc::IoThreads io_{1};
  rpc::Dispatcher dispatcher_{2};
  rpc::Listeners listeners_;
  std::shared_ptr<rpc::Channel> channel_;
};

TEST_F(DataServiceTest, WritesStayInsideTheirChunk) {
  const std::string mine = store_->instance_id();
  EXPECT_TRUE(Write(mine, 2, 0, kChunk - 4, "last").ok());
  Status past = Write(mine, 2, 0, kChunk - 3, "last");
  EXPECT_EQ(past.code(), EINVAL) << past.ToString();
  pb::WriteRequest request;
  request.mutable_chunk()->set_ino(2);
  request.set_store_id(mine);  // and no chunk size at all
  *request.mutable_chain() = chain_;
  pb::WriteResponse response;
  testing::Sign(request);
  EXPECT_EQ(rpc::Invoke(*channel_, rpc::data::kWrite, request, &response, "x").code(), EINVAL);
}

TEST_F(DataServiceTest, RequestsForAnotherStoreAreRefused) {
  const std::string mine = store_->instance_id();
  const std::string other = "0123456789abcdef0123456789abcdef";
  ASSERT_TRUE(Write(mine, 1, 0, 0, "data").ok());

  Status wrong = Write(other, 1, 0, 0, "data");
  EXPECT_EQ(wrong.code(), ESTALE);
  EXPECT_NE(wrong.message().find("store mismatch"), std::string::npos) << wrong.message();
  EXPECT_NE(wrong.message().find(other), std::string::npos) << wrong.message();
  Status none = Write("", 1, 0, 0, "data");
  EXPECT_EQ(none.code(), EINVAL);
  EXPECT_EQ(none.message(), "request names no store");

  auto expect_refused = [&](const Status& status, const char* what) {
    EXPECT_EQ(status.code(), ESTALE) << what << ": " << status.ToString();
  };
  {
    pb::ReadRequest request;
    request.mutable_chunk()->set_ino(1);
    request.set_length(4);
    request.set_store_id(other);
    *request.mutable_chain() = chain_;
    pb::ReadResponse response;
    std::string payload;
    testing::Sign(request);
    expect_refused(rpc::Invoke(*channel_, rpc::data::kRead, request, &response, {}, &payload),
                   "read");
    request.set_store_id(mine);
    testing::Sign(request);
    ASSERT_TRUE(rpc::Invoke(*channel_, rpc::data::kRead, request, &response, {}, &payload).ok());
    EXPECT_EQ(payload, "data");
  }
  {
    pb::TruncateFileRequest request;
    request.set_ino(1);
    request.set_chunk_size(kChunk);
    request.set_store_id(other);
    *request.mutable_chain() = chain_;
    pb::TruncateFileResponse response;
    expect_refused(rpc::Invoke(*channel_, rpc::data::kTruncateFile, request, &response),
                   "truncate");
  }
  {
    pb::FsyncFileRequest request;
    request.set_ino(1);
    request.set_store_id(other);
    *request.mutable_chain() = chain_;
    pb::FsyncFileResponse response;
    testing::Sign(request);
    expect_refused(rpc::Invoke(*channel_, rpc::data::kFsyncFile, request, &response), "fsync");
  }
  {
    pb::FileUsageRequest request;
    request.set_ino(1);
    request.set_chunk_size(kChunk);
    request.set_index_limit(10);
    request.set_store_id(other);
    *request.mutable_chain() = chain_;
    pb::FileUsageResponse response;
    expect_refused(rpc::Invoke(*channel_, rpc::data::kFileUsage, request, &response), "usage");
  }
  {
    pb::RemoveFileRequest request;
    request.set_ino(1);
    request.set_store_id(other);
    pb::RemoveFileResponse response;
    expect_refused(rpc::Invoke(*channel_, rpc::data::kRemoveFile, request, &response), "remove");
  }
  // Nothing was cut or removed by the refused requests.
  std::string out;
  ASSERT_TRUE(store_->Read(1, 0, 0, 4, &out).ok());
  EXPECT_EQ(out, "data");
}

TEST_F(DataServiceTest, FileUsageAndTruncateReportWhatIsStored) {
  const std::string mine = store_->instance_id();
  ASSERT_TRUE(Write(mine, 2, 0, 0, std::string(10000, 'a')).ok());
  ASSERT_TRUE(Write(mine, 2, 3, 500, "b").ok());
  pb::FileUsageRequest usage_request;
  usage_request.set_ino(2);
  usage_request.set_chunk_size(kChunk);
  usage_request.set_index_limit(4);
  usage_request.set_store_id(mine);
  *usage_request.mutable_chain() = chain_;
  pb::FileUsageResponse usage;
  ASSERT_TRUE(rpc::Invoke(*channel_, rpc::data::kFileUsage, usage_request, &usage).ok());
  EXPECT_EQ(usage.data_end(), 3ull * kChunk + 501);
  EXPECT_GE(usage.allocated_bytes(), 10000u + 1);
  EXPECT_LT(usage.allocated_bytes(), 64u * 1024);
  usage_request.set_index_limit(3);
  ASSERT_TRUE(rpc::Invoke(*channel_, rpc::data::kFileUsage, usage_request, &usage).ok());
  EXPECT_EQ(usage.data_end(), 10000u);

  pb::TruncateFileRequest truncate;
  truncate.set_ino(2);
  truncate.set_size(0);
  truncate.set_chunk_size(kChunk);
  truncate.set_store_id(mine);
  *truncate.mutable_chain() = chain_;
  pb::TruncateFileResponse truncated;
  truncated.set_allocated_bytes(1);
  ASSERT_TRUE(rpc::Invoke(*channel_, rpc::data::kTruncateFile, truncate, &truncated).ok());
  EXPECT_EQ(truncated.allocated_bytes(), 0u);
}

}  // namespace
}  // namespace sealfs::server
