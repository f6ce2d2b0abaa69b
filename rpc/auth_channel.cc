#include <mutex>

#include "sealfs/rpc/credentials.h"
#include "sealfs/rpc/transport.h"

namespace sealfs::auth {

class AuthChannel : public rpc::Channel {
 public:
  explicit AuthChannel(std::shared_ptr<rpc::Channel> inner) : inner_(std::move(inner)) {}

  void Set(const pb::Auth& auth) {
    std::string encoded = auth.SerializeAsString();
    std::string suffix;
    suffix.push_back(static_cast<char>((15 << 3) | 2));  // field 15, length-delimited
    for (uint64_t length = encoded.size();; length >>= 7) {
      if (length < 0x80) {
        suffix.push_back(static_cast<char>(length));
        break;
      }
      suffix.push_back(static_cast<char>((length & 0x7f) | 0x80));
    }
    suffix += encoded;
    auto shared = std::make_shared<const std::string>(std::move(suffix));
    std::lock_guard<std::mutex> lock(mutex_);
    suffix_ = std::move(shared);
  }

  void CallAsync(rpc::ServiceId service, uint16_t method, std::string body,
                 std::string_view payload, rpc::CallOptions options,
                 rpc::ReplyCallback on_reply) override {
    std::shared_ptr<const std::string> suffix;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      suffix = suffix_;
    }
    if (suffix) body += *suffix;
    inner_->CallAsync(service, method, std::move(body), payload, options, std::move(on_reply));
  }

  const std::string& address() const override { return inner_->address(); }

 private:
  std::shared_ptr<rpc::Channel> inner_;
  std::mutex mutex_;
  std::shared_ptr<const std::string> suffix_;
};

std::shared_ptr<AuthChannel> WithAuth(std::shared_ptr<rpc::Channel> inner, const pb::Auth& auth) {
  auto channel = std::make_shared<AuthChannel>(std::move(inner));
  channel->Set(auth);
  return channel;
}

void SetAuth(AuthChannel& channel, const pb::Auth& auth) { channel.Set(auth); }

std::shared_ptr<rpc::Channel> AsChannel(std::shared_ptr<AuthChannel> channel) { return channel; }

pb::Auth ServerAuth(std::string_view cluster_key) {
  pb::Auth auth;
  auth.set_server_proof(ServerProof(cluster_key));
  return auth;
}

}  // namespace sealfs::auth
