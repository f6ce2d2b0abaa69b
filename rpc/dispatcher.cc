#include <asio/post.hpp>
#include <asio/thread_pool.hpp>
#include <future>

#include "sealfs/rpc/service.h"

namespace sealfs::rpc {

Result<Message> Channel::Call(ServiceId service, uint16_t method, std::string body,
                              std::string_view payload, CallOptions options) {
  std::promise<Result<Message>> promise;
  auto future = promise.get_future();
  CallAsync(service, method, std::move(body), payload, options,
            [&promise](Result<Message> reply) { promise.set_value(std::move(reply)); });
  return future.get();
}

Dispatcher::Dispatcher(int worker_threads)
    : pool_(std::make_unique<asio::thread_pool>(worker_threads)) {}

Dispatcher::~Dispatcher() { Shutdown(); }

void Dispatcher::Shutdown() {
  shut_down_ = true;
  pool_->join();
}

void Dispatcher::Submit(Message request, std::string peer, std::function<void(Message)> respond) {
  Message reply;
  reply.header.flags = kFlagResponse;
  reply.header.service = request.header.service;
  reply.header.method = request.header.method;
  reply.header.request_id = request.header.request_id;
  if (shut_down_) {
    reply.header.status = ESHUTDOWN;
    reply.body = "server is shutting down";
    return respond(std::move(reply));
  }
  auto found =
      handlers_.find(Key(static_cast<ServiceId>(request.header.service), request.header.method));
  if (found == handlers_.end()) {
    reply.header.status = EOPNOTSUPP;
    reply.body = "unknown method " + std::to_string(request.header.service) + "." +
                 std::to_string(request.header.method);
    return respond(std::move(reply));
  }
  asio::post(*pool_,
             [handler = &found->second, request = std::move(request), reply = std::move(reply),
              peer = std::move(peer), respond = std::move(respond)]() mutable {
               handler->operator()(request, reply, peer);
               respond(std::move(reply));
             });
}

}  // namespace sealfs::rpc
