// A change repeated with the same request number — as a client repeats a
// call whose answer it lost when the metadata server was killed — is applied
// once: the repeat gets the first answer, before and after a restart.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <thread>

#include "test_cluster.h"

namespace sealfs::testing {
namespace {

class RetryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(cluster_.Start());
    auto client = Connect(std::chrono::seconds(60));
    ASSERT_TRUE(client.ok()) << client.status().ToString();
    client_ = std::move(*client);
    root_ = client_->root_ino();
  }
  // A mount whose metadata calls wait up to `meta_wait` for the server.
  Result<std::unique_ptr<client::Client>> Connect(std::chrono::milliseconds meta_wait) {
    client::ClientOptions options;
    options.meta_address = cluster_.meta_address();
    options.volume = "default";
    options.admin_credential = cluster_.admin_credential();
    options.timeout = std::chrono::seconds(5);
    options.meta_wait = meta_wait;
    return client::Client::Connect(options);
  }
  void RestartMeta() {
    cluster_.KillMeta(SIGKILL);
    ASSERT_TRUE(cluster_.StartMeta());
  }
  Result<pb::MknodResponse> Create(const std::string& name, uint64_t seq) {
    pb::MknodRequest request;
    request.set_parent(root_);
    request.set_name(name);
    request.set_mode(S_IFREG | 0644);
    request.mutable_auth()->set_request_seq(seq);
    pb::MknodResponse response;
    Status status = client_->Meta(rpc::meta::kMknod, request, &response);
    if (!status.ok()) return status;
    return response;
  }
  Status Unlink(const std::string& name, uint64_t seq) {
    pb::UnlinkRequest request;
    request.set_parent(root_);
    request.set_name(name);
    request.mutable_auth()->set_request_seq(seq);
    pb::UnlinkResponse response;
    return client_->Meta(rpc::meta::kUnlink, request, &response);
  }
  Status Rename(const std::string& from, const std::string& to, uint64_t seq) {
    pb::RenameRequest request;
    request.set_parent(root_);
    request.set_name(from);
    request.set_new_parent(root_);
    request.set_new_name(to);
    request.mutable_auth()->set_request_seq(seq);
    pb::RenameResponse response;
    return client_->Meta(rpc::meta::kRename, request, &response);
  }
  Result<uint64_t> InoOf(const std::string& name) {
    pb::LookupRequest request;
    request.set_parent(root_);
    request.set_name(name);
    pb::LookupResponse response;
    Status status = client_->Meta(rpc::meta::kLookup, request, &response);
    if (!status.ok()) return status;
    return response.attr().ino();
  }

  TestCluster cluster_{1};
  std::unique_ptr<client::Client> client_;
  uint64_t root_ = 0;
};

constexpr uint64_t kSeq = 1'000'000;

TEST_F(RetryTest, ARepeatedCreateGetsTheFirstAnswerNotEexist) {
  auto first = Create("made", kSeq);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  auto again = Create("made", kSeq);  // the answer is still in memory
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->attr().ino(), first->attr().ino());
  RestartMeta();
  auto after_restart = Create("made", kSeq);  // rebuilt from the durable record
  ASSERT_TRUE(after_restart.ok()) << after_restart.status().ToString();
  EXPECT_EQ(after_restart->attr().ino(), first->attr().ino());
  EXPECT_EQ(after_restart->attr().mode(), first->attr().mode());
  // Another request for the same name is a new create: EEXIST.
  auto other = Create("made", kSeq + 1);
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.status().code(), EEXIST);
}

TEST_F(RetryTest, ARepeatedUnlinkSucceedsAndRemovesNothingMore) {
  ASSERT_TRUE(Create("gone", kSeq).ok());
  ASSERT_TRUE(Unlink("gone", kSeq + 1).ok());
  RestartMeta();
  // Made again by someone else meanwhile: the repeat must not remove it.
  auto remade = Create("gone", kSeq + 2);
  ASSERT_TRUE(remade.ok()) << remade.status().ToString();
  EXPECT_TRUE(Unlink("gone", kSeq + 1).ok());
  auto still = InoOf("gone");
  ASSERT_TRUE(still.ok()) << still.status().ToString();
  EXPECT_EQ(*still, remade->attr().ino());
  EXPECT_EQ(Unlink("gone", kSeq + 3).code(), 0);
  EXPECT_EQ(Unlink("gone", kSeq + 4).code(), ENOENT);
}

TEST_F(RetryTest, ARepeatedRenameIsDoneOnce) {
  auto a = Create("a", kSeq);
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(Rename("a", "b", kSeq + 1).ok());
  auto new_a = Create("a", kSeq + 2);
  ASSERT_TRUE(new_a.ok());
  RestartMeta();
  EXPECT_TRUE(Rename("a", "b", kSeq + 1).ok());
  auto b = InoOf("b");
  auto still_a = InoOf("a");
  ASSERT_TRUE(b.ok() && still_a.ok());
  EXPECT_EQ(*b, a->attr().ino()) << "the rename was done again";
  EXPECT_EQ(*still_a, new_a->attr().ino());
}

TEST_F(RetryTest, CallsWaitForARestartingServerInsteadOfFailing) {
  auto patient = Connect(std::chrono::seconds(60));
  ASSERT_TRUE(patient.ok()) << patient.status().ToString();
  cluster_.KillMeta(SIGKILL);
  std::thread restarter([&] {
    std::this_thread::sleep_for(std::chrono::seconds(2));
    EXPECT_TRUE(cluster_.StartMeta());
  });
  pb::MknodRequest request;
  request.set_parent((*patient)->root_ino());
  request.set_name("while-down");
  request.set_mode(S_IFREG | 0644);
  pb::MknodResponse response;
  Status status = (*patient)->Meta(rpc::meta::kMknod, request, &response);
  restarter.join();
  EXPECT_TRUE(status.ok()) << status.ToString();
  EXPECT_TRUE(InoOf("while-down").ok());
}

}  // namespace
}  // namespace sealfs::testing
