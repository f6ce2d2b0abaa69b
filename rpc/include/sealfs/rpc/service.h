// Typed services over the frame protocol. A method is declared once as a
// Method<Request, Response> constant (see methods.h); servers Register a handler
// for it and clients Invoke it, so adding an operation is one obvious edit.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "sealfs/rpc/transport.h"

namespace asio {
class thread_pool;
}

namespace sealfs::rpc {

template <typename Request, typename Response>
struct Method {
  ServiceId service;
  uint16_t id;
  const char* name;
};

// What a handler sees besides its request message.
struct RequestContext {
  std::string_view payload;   // raw bytes sent with the request
  std::string reply_payload;  // raw bytes to send back
  const std::string* peer = nullptr;

  // Room of `size` bytes for the reply payload, in memory the transport
  // sends from without a copy where it has such memory. The reply payload is
  // then the bytes KeepReply names (all of the room until it is called);
  // `reply_payload` must stay empty.
  char* ReserveReply(size_t size);
  void KeepReply(size_t offset, size_t length) { reply_room.Narrow(offset, length); }

  const ReplyAllocator* allocate_reply = nullptr;
  Payload reply_room;
};

// Where a handler runs. On a worker by default, so that blocking work
// (synced RocksDB writes, disk) never holds up a transport thread. A handler
// that only reads memory or cached state, and holds locks only briefly, may
// run inline on the transport thread that read its request: that saves two
// thread wake-ups per call (to a worker and back), most of a round trip's
// cost on a virtual machine.
enum class Runs { kOnWorker, kInline };

// Owns the handler table and the worker threads that run handlers.
class Dispatcher : public RequestSink {
 public:
  explicit Dispatcher(int worker_threads);
  ~Dispatcher() override;

  // Sees every request this dispatcher ran: its method's name, the status
  // it answered with and how long the handler took (metrics). Set before
  // serving.
  using Observer =
      std::function<void(std::string_view method, int status, std::chrono::nanoseconds took)>;
  void SetObserver(Observer observer) { observer_ = std::move(observer); }

  template <typename Request, typename Response>
  void Register(Method<Request, Response> method,
                std::function<Status(const Request&, Response*, RequestContext&)> handler,
                Runs runs = Runs::kOnWorker) {
    names_[Key(method.service, method.id)] = method.name;
    if (runs == Runs::kInline) inline_.insert(Key(method.service, method.id));
    handlers_[Key(method.service, method.id)] = [handler](Message& request, Message& reply,
                                                          const RequestOrigin& origin) {
      Request typed_request;
      if (!typed_request.ParseFromString(request.body)) {
        reply.header.status = EBADMSG;
        reply.body = "request body does not parse";
        return;
      }
      Response typed_response;
      RequestContext context;
      context.payload = request.payload;
      context.peer = &origin.peer;
      if (origin.allocate_reply) context.allocate_reply = &origin.allocate_reply;
      Status status = handler(typed_request, &typed_response, context);
      if (!status.ok()) {
        reply.header.status = status.code();
        reply.body = status.message();
        return;
      }
      typed_response.SerializeToString(&reply.body);
      if (context.reply_room.size() > 0 || context.reply_payload.empty()) {
        reply.payload = std::move(context.reply_room);
      } else {
        reply.payload = std::move(context.reply_payload);
      }
    };
  }

  void Submit(Message request, RequestOrigin origin, std::function<void(Message)> respond) override;

  // Waits for running handlers; later submissions are answered with ESHUTDOWN.
  void Shutdown();

 private:
  using Handler = std::function<void(Message&, Message&, const RequestOrigin&)>;
  static uint32_t Key(ServiceId service, uint16_t method) {
    return (static_cast<uint32_t>(service) << 16) | method;
  }

  std::unordered_map<uint32_t, Handler> handlers_;
  std::unordered_map<uint32_t, const char*> names_;
  std::unordered_set<uint32_t> inline_;
  Observer observer_;
  std::unique_ptr<asio::thread_pool> pool_;
  std::atomic<bool> shut_down_{false};
  std::atomic<int> submitting_{0};  // calls of Submit under way
};

// Calls a method and waits for its answer. A remote error comes back as the
// Status the handler returned.
template <typename Request, typename Response>
Status Invoke(Channel& channel, Method<Request, Response> method, const Request& request,
              Response* response, std::string_view payload = {},
              std::string* reply_payload = nullptr, CallOptions options = {}) {
  Result<Message> reply =
      channel.Call(method.service, method.id, request.SerializeAsString(), payload, options);
  if (!reply.ok()) return reply.status();
  if (reply->header.status != 0) return Status(reply->header.status, reply->body);
  if (!response->ParseFromString(reply->body)) {
    return Status(EBADMSG, std::string(method.name) + ": response does not parse");
  }
  if (reply_payload != nullptr) *reply_payload = reply->payload.TakeString();
  return Status::Ok();
}

// Asynchronous form: `done` receives the status, the response and the reply
// payload on a transport thread.
template <typename Request, typename Response, typename Done>
void InvokeAsync(Channel& channel, Method<Request, Response> method, const Request& request,
                 std::string_view payload, CallOptions options, Done done) {
  channel.CallAsync(method.service, method.id, request.SerializeAsString(), payload, options,
                    [method, done = std::move(done)](Result<Message> reply) {
                      Response response;
                      Payload empty;
                      if (!reply.ok()) return done(reply.status(), response, empty);
                      if (reply->header.status != 0) {
                        return done(Status(reply->header.status, reply->body), response, empty);
                      }
                      if (!response.ParseFromString(reply->body)) {
                        return done(
                            Status(EBADMSG, std::string(method.name) + ": response does not parse"),
                            response, empty);
                      }
                      done(Status::Ok(), response, reply->payload);
                    });
}

}  // namespace sealfs::rpc
