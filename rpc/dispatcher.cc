#include <asio/post.hpp>
#include <asio/thread_pool.hpp>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>

#include "sealfs/rpc/service.h"

namespace sealfs::rpc {

Result<Message> Channel::Call(ServiceId service, uint16_t method, std::string body,
                              std::string_view payload, CallOptions options) {
  // Shared with the callback, which may still be running when we return.
  struct Outcome {
    std::mutex mutex;
    std::condition_variable ready;
    std::optional<Result<Message>> reply;
    std::atomic<bool> done{false};
  };
  auto outcome = std::make_shared<Outcome>();
  CallAsync(service, method, std::move(body), payload, options, [outcome](Result<Message> reply) {
    {
      std::lock_guard<std::mutex> lock(outcome->mutex);
      outcome->reply = std::move(reply);
    }
    outcome->done.store(true, std::memory_order_release);
    outcome->ready.notify_one();
  });
  SpinUntil([&outcome] { return outcome->done.load(std::memory_order_acquire); });
  std::unique_lock<std::mutex> lock(outcome->mutex);
  outcome->ready.wait(lock, [&outcome] { return outcome->reply.has_value(); });
  return std::move(*outcome->reply);
}

bool SpinUntil(const std::function<bool()>& ready, std::chrono::microseconds budget) {
  auto deadline = std::chrono::steady_clock::now() + budget;
  while (!ready()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

Dispatcher::Dispatcher(int worker_threads)
    : pool_(std::make_unique<asio::thread_pool>(worker_threads)) {}

Dispatcher::~Dispatcher() { Shutdown(); }

void Dispatcher::Shutdown() {
  shut_down_ = true;
  // Submit counts itself before it looks at shut_down_: once none is left,
  // every handler that will run was posted or has run inline.
  while (submitting_.load() > 0) std::this_thread::yield();
  pool_->join();
}

char* RequestContext::ReserveReply(size_t size) {
  if (allocate_reply != nullptr) reply_room = (*allocate_reply)(size);
  if (reply_room.size() != size) reply_room = std::string(size, '\0');
  return reply_room.mutable_data();
}

void Dispatcher::Submit(Message request, RequestOrigin origin,
                        std::function<void(Message)> respond) {
  Message reply;
  reply.header.flags = kFlagResponse;
  reply.header.service = request.header.service;
  reply.header.method = request.header.method;
  reply.header.request_id = request.header.request_id;
  ++submitting_;
  struct Leave {
    std::atomic<int>& count;
    ~Leave() { --count; }
  } leave{submitting_};
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
  auto run = [this, name = names_.at(found->first), handler = &found->second](
                 Message& request, Message& reply, const RequestOrigin& origin) {
    auto start = std::chrono::steady_clock::now();
    handler->operator()(request, reply, origin);
    if (observer_) {
      observer_(name, reply.header.status, std::chrono::steady_clock::now() - start);
    }
  };
  if (inline_.contains(found->first)) {
    run(request, reply, origin);
    return respond(std::move(reply));
  }
  asio::post(*pool_, [run, request = std::move(request), reply = std::move(reply),
                      origin = std::move(origin), respond = std::move(respond)]() mutable {
    run(request, reply, origin);
    respond(std::move(reply));
  });
}

}  // namespace sealfs::rpc
