// One RDMA queue pair: buffers, credits, one-sided transfers, completions.
#include "rdma_connection.h"

#include <fcntl.h>
#include <netdb.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstdio>
#include <cstring>

#include "sealfs/rpc/rdma_transport.h"
#include "sealfs/rpc/transport.h"

namespace sealfs::rpc {
namespace {
std::atomic<uint64_t> registered_bytes{0};
}  // namespace

uint64_t RdmaRegisteredBytes() { return registered_bytes.load(); }

namespace rdma {
namespace {

enum WorkType : uint64_t { kRecvWork = 1, kSendWork = 2, kBulkWork = 3 };
uint64_t WorkId(WorkType type, uint64_t index) { return (uint64_t{type} << 56) | index; }
WorkType TypeOf(uint64_t wr_id) { return static_cast<WorkType>(wr_id >> 56); }
uint64_t IndexOf(uint64_t wr_id) { return wr_id & ((uint64_t{1} << 56) - 1); }
// The unsignalled RDMA WRITE of a reply payload: no operation waits for it.
constexpr uint64_t kUntrackedBulk = 0;

// Sends up to this size go inline in the work request where the device can.
constexpr uint32_t kWantedInline = 256;

// One SEND in this many asks for a completion (and any SEND someone waits
// on): fewer completions to handle, and the slots still come back, since a
// send queue completes in order.
constexpr size_t kSignalEvery = 8;

// After completions were handled, the completion queue is polled this long
// before the connection sleeps on its event channel again: an answer often
// follows within microseconds, and waking from the channel costs far more.
constexpr auto kPollBeforeSleeping = std::chrono::microseconds(20);
constexpr int kPollRounds = 8;
static_assert(kSendBuffers >= kSignalEvery, "a signalled SEND must fit among the send buffers");

// Registered bulk buffers a connection keeps for reuse.
constexpr size_t kMaxCachedBulkBytes = 64u << 20;

int AccessFor(BufferUse use) {
  switch (use) {
    case BufferUse::kPeerReads:
      // The peer may only read. Local write access grants the peer nothing;
      // it makes the kernel pin the pages writable, so the payload this
      // process copies in lands in the very pages the device reads.
      return IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ;
    case BufferUse::kPeerWrites:
      // Verbs require local write access for remote write access.
      return IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE;
    case BufferUse::kLocal:
    default:
      // An RDMA READ lands here: the device writes it locally.
      return IBV_ACCESS_LOCAL_WRITE;
  }
}

void Put32(char* out, uint32_t value) { std::memcpy(out, &value, 4); }
uint32_t Get32(const char* in) {
  uint32_t value;
  std::memcpy(&value, in, 4);
  return value;
}

}  // namespace

ibv_mr* RegisterMemory(ibv_pd* pd, void* data, size_t size, int access) {
  ibv_mr* mr = ibv_reg_mr(pd, data, size, access);
  if (mr != nullptr) registered_bytes += size;
  return mr;
}

void DeregisterMemory(ibv_mr* mr) {
  if (mr == nullptr) return;
  size_t size = mr->length;
  int error = ibv_dereg_mr(mr);
  if (error != 0) {
    std::fprintf(stderr, "rdma: ibv_dereg_mr failed: %s\n", std::strerror(error));
    return;
  }
  registered_bytes -= size;
}

void FreeRegistered(Registered& buffer) {
  DeregisterMemory(buffer.mr);
  std::free(buffer.data);
  buffer = Registered{};
}

BufferPool::~BufferPool() {
  for (auto& [size, list] : free_) {
    for (Registered& buffer : list) FreeRegistered(buffer);
  }
}

size_t BufferPool::SizeClass(size_t size) { return std::max(kMinBulkBuffer, std::bit_ceil(size)); }

std::optional<Registered> BufferPool::TakeCached(size_t size_class) {
  auto found = free_.find(size_class);
  if (found == free_.end() || found->second.empty()) return std::nullopt;
  Registered buffer = found->second.back();
  found->second.pop_back();
  cached_bytes_ -= buffer.size;
  return buffer;
}

bool BufferPool::Keep(Registered buffer) {
  auto& list = free_[buffer.size];
  if (list.size() >= kMaxBulkInFlight || cached_bytes_ + buffer.size > max_cached_bytes_) {
    return false;
  }
  cached_bytes_ += buffer.size;
  list.push_back(buffer);
  return true;
}

Domain::~Domain() {
  for (auto& pool : pools_) pool.reset();
  // Fails with EBUSY while any memory of this domain is still registered.
  int error = ibv_dealloc_pd(pd_);
  if (error != 0) std::fprintf(stderr, "rdma: ibv_dealloc_pd: %s\n", std::strerror(error));
}

Result<Registered> Domain::Acquire(BufferUse use, size_t size) {
  if (size > kMaxPayloadSize) {
    return Status(EMSGSIZE, "RDMA buffer of " + std::to_string(size) + " bytes exceeds the limit");
  }
  size_t size_class = BufferPool::SizeClass(size);
  {
    std::lock_guard lock(mutex_);
    if (retired_) return Status(ECONNRESET, "RDMA connection failed");
    auto& pool = pools_[static_cast<int>(use)];
    if (!pool) pool = std::make_unique<BufferPool>(kMaxCachedBulkBytes);
    if (auto cached = pool->TakeCached(size_class)) return *cached;
  }
  // New memory is registered outside the lock: that takes a while.
  Registered buffer;
  buffer.size = size_class;
  buffer.data = static_cast<char*>(std::aligned_alloc(4096, size_class));
  if (buffer.data == nullptr) return Status(ENOMEM, "cannot allocate an RDMA buffer");
  buffer.mr = RegisterMemory(pd_, buffer.data, size_class, AccessFor(use));
  if (buffer.mr == nullptr) {
    int error = errno ? errno : ENOMEM;
    std::free(buffer.data);
    return Status(error, std::string("cannot register RDMA memory: ") + std::strerror(error));
  }
  return buffer;
}

void Domain::Release(BufferUse use, Registered buffer) {
  if (buffer.data == nullptr) return;
  {
    std::lock_guard lock(mutex_);
    auto& pool = pools_[static_cast<int>(use)];
    // No one reuses memory of a failed connection: it is unpinned now. Its
    // queue pair may still be live only if the failure was a protocol
    // error, and then the peer is not trusted anyway.
    if (!retired_ && pool && pool->Keep(buffer)) return;
  }
  FreeRegistered(buffer);
}

void Domain::Retire() {
  std::unique_ptr<BufferPool> pools[3];
  {
    std::lock_guard lock(mutex_);
    retired_ = true;
    for (int i = 0; i < 3; ++i) pools[i] = std::move(pools_[i]);
  }
  // The cached buffers are deregistered and freed here, outside the lock.
}

struct Loan {
  Loan(std::shared_ptr<Domain> lender, BufferUse used_as, Registered lent)
      : domain(std::move(lender)), use(used_as), buffer(lent) {}
  Loan(const Loan&) = delete;
  Loan& operator=(const Loan&) = delete;
  ~Loan() { domain->Returned(use, buffer); }
  std::shared_ptr<Domain> domain;
  BufferUse use;
  Registered buffer;
};

Payload Domain::Lend(BufferUse use, Registered buffer, size_t size) {
  lent_bytes_ += buffer.size;
  auto loan = std::make_shared<Loan>(shared_from_this(), use, buffer);
  return Payload::Held(buffer.data, size, std::move(loan), this);
}

const Registered* Domain::Lent(const Payload& payload) const {
  if (payload.owner() != this || !payload.keeper()) return nullptr;
  return &static_cast<const Loan*>(payload.keeper().get())->buffer;
}

void Domain::Returned(BufferUse use, Registered buffer) {
  lent_bytes_ -= buffer.size;
  Release(use, buffer);
  if (on_returned_) on_returned_();
}

Status RdmaConnection::Setup(unsigned comp_vector_hint) {
  ibv_context* verbs = id_->verbs;
  if (verbs == nullptr) return Status(ENODEV, "no RDMA device for this address");
  ibv_pd* pd = ibv_alloc_pd(verbs);
  if (!pd) return Status(ENOMEM, "ibv_alloc_pd failed");
  // Memory lent to requests came back: requests waiting for room may start.
  std::weak_ptr<RdmaConnection> weak = shared_from_this();
  domain_ = std::make_shared<Domain>(pd, [weak, strand = strand_] {
    auto self = weak.lock();
    if (!self || !self->waiting_for_room_.load()) return;
    asio::post(strand, [weak] {
      if (auto self = weak.lock()) self->StartWaitingForRoom();
    });
  });
  channel_ = ibv_create_comp_channel(verbs);
  if (!channel_) return Status(ENOMEM, "ibv_create_comp_channel failed");
  int cq_depth = static_cast<int>(kRecvDepth + kSendQueueDepth);
  int vectors = verbs->num_comp_vectors > 0 ? verbs->num_comp_vectors : 1;
  cq_ = ibv_create_cq(verbs, cq_depth, nullptr, channel_,
                      static_cast<int>(comp_vector_hint % static_cast<unsigned>(vectors)));
  if (!cq_) return Status(ENOMEM, "ibv_create_cq failed");
  if (ibv_req_notify_cq(cq_, 0) != 0) return Status(EIO, "ibv_req_notify_cq failed");
  ibv_qp_init_attr attr{};
  attr.send_cq = cq_;
  attr.recv_cq = cq_;
  attr.qp_type = IBV_QPT_RC;
  attr.cap.max_send_wr = kSendQueueDepth;
  attr.cap.max_recv_wr = kRecvDepth;
  attr.cap.max_send_sge = 1;
  attr.cap.max_recv_sge = 1;
  // Small messages (credit updates, short replies) travel inline in the work
  // request, sparing the device a read of the send buffer; without that
  // support, plain sends.
  attr.cap.max_inline_data = kWantedInline;
  if (rdma_create_qp(id_, pd, &attr) != 0) {
    attr.cap.max_inline_data = 0;
    if (rdma_create_qp(id_, pd, &attr) != 0) {
      return Status(errno ? errno : EIO,
                    std::string("rdma_create_qp failed: ") + std::strerror(errno));
    }
  }
  max_inline_ = attr.cap.max_inline_data;
  qp_created_ = true;
  // Receive buffers are always written by a SEND before they are read, and
  // send buffers by Pump: no need to clear them.
  size_t area = (kRecvDepth + kSendBuffers) * kMessageSize;
  message_area_ = static_cast<char*>(std::aligned_alloc(4096, area));
  if (!message_area_) return Status(ENOMEM, "cannot allocate message buffers");
  message_mr_ = RegisterMemory(pd, message_area_, area, IBV_ACCESS_LOCAL_WRITE);
  if (!message_mr_) return Status(ENOMEM, "cannot register message buffers");
  for (size_t i = 0; i < kRecvDepth; ++i) SEALFS_RETURN_IF_ERROR(PostRecv(i));
  for (size_t i = 0; i < kSendBuffers; ++i) free_send_.push_back(i);
  sent_callbacks_.resize(kSendBuffers);
  peer_credits_ = kRecvDepth;
  int flags = fcntl(channel_->fd, F_GETFL);
  fcntl(channel_->fd, F_SETFL, flags | O_NONBLOCK);
  cq_watch_.assign(channel_->fd);
  WatchCompletions();
  return Status::Ok();
}

Result<Registered> RdmaConnection::AcquireBuffer(BufferUse use, size_t size) {
  if (failed_ || !domain_) return Status(ECONNRESET, "RDMA connection failed");
  return domain_->Acquire(use, size);
}

void RdmaConnection::ReleaseBuffer(BufferUse use, Registered buffer) {
  if (domain_) {
    domain_->Release(use, buffer);
  } else {
    FreeRegistered(buffer);
  }
}

void RdmaConnection::Send(FrameHeader header, std::string body, std::string inline_payload,
                          RdmaExt ext, std::string_view borrowed_payload,
                          std::function<void()> on_sent) {
  if (failed_) {
    if (on_sent) on_sent();
    return;
  }
  header.body_length = static_cast<uint32_t>(body.size());
  if (!(header.flags & kFlagPayloadPlaced)) {
    header.payload_length = static_cast<uint32_t>(inline_payload.size() + borrowed_payload.size());
  }
  queue_.push_back(Outgoing{header, std::move(body), std::move(inline_payload), borrowed_payload,
                            ext, false, std::move(on_sent)});
  Pump();
}

bool RdmaConnection::Cancel(uint64_t request_id) {
  for (auto it = queue_.begin(); it != queue_.end(); ++it) {
    if (!it->credits_only && it->header.request_id == request_id) {
      auto on_sent = std::move(it->on_sent);
      queue_.erase(it);
      if (on_sent) on_sent();
      return true;
    }
  }
  return false;
}

void RdmaConnection::WithBulkSlot(std::function<void()> start) {
  if (failed_) return;
  if (bulk_in_flight_ < kMaxBulkInFlight) {
    ++bulk_in_flight_;
    start();
  } else {
    bulk_waiting_.push_back(std::move(start));
  }
}

void RdmaConnection::WithRoom(size_t size, std::function<void()> start) {
  if (failed_) return;
  room_waiting_.emplace_back(size, std::move(start));
  waiting_for_room_ = true;
  StartWaitingForRoom();
}

void RdmaConnection::StartWaitingForRoom() {
  // Started only with a bulk slot free, so each start lends its buffer at
  // once and the next check sees it: the bound holds, not just each check.
  while (!failed_ && domain_ && !room_waiting_.empty() && bulk_in_flight_ < kMaxBulkInFlight) {
    size_t lent = domain_->lent_bytes();
    // The first one always fits when nothing is lent, whatever its size.
    if (lent > 0 && lent + room_waiting_.front().first > kMaxLentBytes) return;
    auto start = std::move(room_waiting_.front().second);
    room_waiting_.pop_front();
    waiting_for_room_ = !room_waiting_.empty();
    ++bulk_in_flight_;
    start();
  }
}

void RdmaConnection::FinishBulk() {
  if (bulk_in_flight_ > 0) --bulk_in_flight_;
  if (failed_) return;
  // Replies first: they give memory back.
  if (!bulk_waiting_.empty()) {
    auto start = std::move(bulk_waiting_.front());
    bulk_waiting_.pop_front();
    ++bulk_in_flight_;
    start();
    return;
  }
  StartWaitingForRoom();
}

void RdmaConnection::Read(uint64_t addr, uint32_t rkey, uint32_t length, Registered local,
                          std::function<void(Status)> done) {
  PostBulk(IBV_WR_RDMA_READ, local, length, addr, rkey, std::move(done));
  RdmaCounters().rdma_read_ops++;
  RdmaCounters().rdma_read_bytes += length;
}

bool RdmaConnection::WriteThenSend(const Registered& local, const char* data, uint32_t length,
                                   uint64_t addr, uint32_t rkey) {
  if (failed_) return false;
  if (!PostOneSided(IBV_WR_RDMA_WRITE, local, data, length, addr, rkey,
                    WorkId(kBulkWork, kUntrackedBulk), /*signaled=*/false)) {
    Fail(Status(EIO, "posting an RDMA WRITE failed"));
    return false;
  }
  RdmaCounters().rdma_write_ops++;
  RdmaCounters().rdma_write_bytes += length;
  return true;
}

void RdmaConnection::Fail(const Status& status) {
  if (failed_) return;
  failed_ = true;
  if (domain_) domain_->Retire();
  // Every holder of a buffer or a bulk slot hears of the failure once, so no
  // registered memory outlives the connection.
  auto queued = std::move(queue_);
  queue_.clear();
  for (Outgoing& outgoing : queued) {
    if (outgoing.on_sent) outgoing.on_sent();
  }
  RunSentCallbacks();
  auto ops = std::move(bulk_ops_);
  bulk_ops_.clear();
  for (auto& [id, done] : ops) done(status);
  bulk_waiting_.clear();
  room_waiting_.clear();
  if (on_failure) on_failure(status);
}

void RdmaConnection::Disconnect() {
  if (id_ && !disconnected_) {
    disconnected_ = true;
    rdma_disconnect(id_);
  }
}

void RdmaConnection::Destroy() {
  if (destroyed_) return;
  on_message = nullptr;
  on_failure = nullptr;
  Fail(Status(ECONNRESET, "RDMA connection closed"));
  destroyed_ = true;
  asio::error_code ignored;
  if (cq_watch_.is_open()) {
    cq_watch_.cancel(ignored);
    cq_watch_.release();
  }
  if (qp_created_) rdma_destroy_qp(id_);
  qp_created_ = false;
  DeregisterMemory(message_mr_);
  message_mr_ = nullptr;
  std::free(message_area_);
  message_area_ = nullptr;
  if (cq_) {
    int error = ibv_destroy_cq(cq_);
    if (error != 0) std::fprintf(stderr, "rdma: ibv_destroy_cq: %s\n", std::strerror(error));
  }
  cq_ = nullptr;
  if (channel_) ibv_destroy_comp_channel(channel_);
  channel_ = nullptr;
  // The protection domain goes with the last buffer lent out of it.
  domain_.reset();
}

Status RdmaConnection::PostRecv(size_t index) {
  ibv_sge sge{reinterpret_cast<uint64_t>(Slot(index)), static_cast<uint32_t>(kMessageSize),
              message_mr_->lkey};
  ibv_recv_wr wr{};
  wr.wr_id = WorkId(kRecvWork, index);
  wr.sg_list = &sge;
  wr.num_sge = 1;
  ibv_recv_wr* bad = nullptr;
  if (ibv_post_recv(id_->qp, &wr, &bad) != 0) return Status(EIO, "ibv_post_recv failed");
  return Status::Ok();
}

void RdmaConnection::PostBulk(ibv_wr_opcode opcode, Registered local, uint32_t length,
                              uint64_t addr, uint32_t rkey, std::function<void(Status)> done) {
  // The bulk slot is given back before `done` runs, whatever the outcome.
  auto finish = [this, done = std::move(done)](Status status) {
    FinishBulk();
    done(std::move(status));
  };
  if (failed_) return finish(Status(ECONNRESET, "RDMA connection failed"));
  uint64_t op = ++next_bulk_op_;
  bulk_ops_[op] = std::move(finish);
  if (!PostOneSided(opcode, local, local.data, length, addr, rkey, WorkId(kBulkWork, op),
                    /*signaled=*/true)) {
    Fail(Status(EIO, "posting a one-sided transfer failed"));
  }
}

bool RdmaConnection::PostOneSided(ibv_wr_opcode opcode, const Registered& local, const char* data,
                                  uint32_t length, uint64_t addr, uint32_t rkey, uint64_t work_id,
                                  bool signaled) {
  ibv_sge sge{reinterpret_cast<uint64_t>(data), length, local.mr->lkey};
  ibv_send_wr wr{};
  wr.wr_id = work_id;
  wr.opcode = opcode;
  wr.sg_list = &sge;
  wr.num_sge = 1;
  if (signaled) wr.send_flags = IBV_SEND_SIGNALED;
  wr.wr.rdma.remote_addr = addr;
  wr.wr.rdma.rkey = rkey;
  ibv_send_wr* bad = nullptr;
  return ibv_post_send(id_->qp, &wr, &bad) == 0;
}

void RdmaConnection::Pump() {
  while (!failed_ && !queue_.empty() && !free_send_.empty()) {
    Outgoing& next = queue_.front();
    // One credit stays reserved for returning credits, so two peers that
    // both ran out can always tell each other.
    if (next.credits_only ? peer_credits_ < 1 : peer_credits_ < 2) return;
    size_t slot = free_send_.back();
    free_send_.pop_back();
    --peer_credits_;
    char* out = Slot(kRecvDepth + slot);
    Put32(out, static_cast<uint32_t>(to_return_));
    to_return_ = 0;
    size_t length = 4;
    if (next.credits_only) {
      FrameHeader marker;
      marker.flags = kFlagCreditsOnly;
      EncodedHeader header = EncodeHeader(marker);
      std::memcpy(out + 4, header.data(), header.size());
      length = 4 + kFrameHeaderSize;
    } else {
      EncodedHeader header = EncodeHeader(next.header);
      std::memcpy(out + 4, header.data(), header.size());
      std::memcpy(out + 4 + kFrameHeaderSize, &next.ext, sizeof(RdmaExt));
      char* cursor = out + kPrefix;
      std::memcpy(cursor, next.body.data(), next.body.size());
      cursor += next.body.size();
      std::memcpy(cursor, next.payload.data(), next.payload.size());
      cursor += next.payload.size();
      if (!next.borrowed.empty()) std::memcpy(cursor, next.borrowed.data(), next.borrowed.size());
      cursor += next.borrowed.size();
      length = static_cast<size_t>(cursor - out);
      RdmaCounters().messages_sent++;
      RdmaCounters().bytes_sent += length;
    }
    // A completion is asked for when someone waits on this SEND, and every
    // kSignalEvery SENDs so their slots come back.
    bool signaled = next.on_sent != nullptr || unsignalled_in_a_row_ + 1 >= kSignalEvery;
    unsignalled_in_a_row_ = signaled ? 0 : unsignalled_in_a_row_ + 1;
    sent_callbacks_[slot] = std::move(next.on_sent);
    sends_in_flight_.push_back(slot);
    queue_.pop_front();
    ibv_sge sge{reinterpret_cast<uint64_t>(out), static_cast<uint32_t>(length), message_mr_->lkey};
    ibv_send_wr wr{};
    wr.wr_id = WorkId(kSendWork, slot);
    wr.opcode = IBV_WR_SEND;
    wr.sg_list = &sge;
    wr.num_sge = 1;
    if (signaled) {
      wr.send_flags = IBV_SEND_SIGNALED;
      RdmaCounters().signalled_sends++;
    }
    if (length <= max_inline_) wr.send_flags |= IBV_SEND_INLINE;
    ibv_send_wr* bad = nullptr;
    if (ibv_post_send(id_->qp, &wr, &bad) != 0) {
      Fail(Status(EIO, "ibv_post_send failed"));
      return;
    }
  }
}

void RdmaConnection::RunSentCallbacks() {
  for (auto& callback : sent_callbacks_) {
    if (callback) std::exchange(callback, nullptr)();
  }
}

void RdmaConnection::WatchCompletions() {
  cq_watch_.async_wait(asio::posix::stream_descriptor::wait_read,
                       [self = shared_from_this()](const asio::error_code& error) {
                         if (error || self->destroyed_) return;
                         RdmaCounters().completion_wakeups++;
                         ibv_cq* event_cq = nullptr;
                         void* context = nullptr;
                         while (ibv_get_cq_event(self->channel_, &event_cq, &context) == 0) {
                           ibv_ack_cq_events(event_cq, 1);
                         }
                         ibv_req_notify_cq(self->cq_, 0);
                         if (self->PollCompletions() > 0) {
                           self->PollSoon(std::chrono::steady_clock::now() + kPollBeforeSleeping,
                                          kPollRounds);
                         }
                         if (!self->destroyed_) self->WatchCompletions();
                       });
}

void RdmaConnection::PollSoon(std::chrono::steady_clock::time_point deadline, int rounds_left) {
  asio::post(strand_, [self = shared_from_this(), deadline, rounds_left] {
    if (self->destroyed_) return;
    auto now = std::chrono::steady_clock::now();
    if (self->PollCompletions() > 0) {
      // More came: poll on, a bounded number of times.
      if (rounds_left > 1) self->PollSoon(now + kPollBeforeSleeping, rounds_left - 1);
    } else if (now < deadline) {
      self->PollSoon(deadline, rounds_left);
    }
  });
}

size_t RdmaConnection::PollCompletions() {
  ibv_wc completions[16];
  int n;
  size_t handled = 0;
  while (!destroyed_ && (n = ibv_poll_cq(cq_, 16, completions)) > 0) {
    RdmaCounters().work_completions += n;
    handled += n;
    for (int i = 0; i < n && !destroyed_; ++i) HandleCompletion(completions[i]);
  }
  return handled;
}

void RdmaConnection::HandleCompletion(const ibv_wc& wc) {
  WorkType type = TypeOf(wc.wr_id);
  uint64_t index = IndexOf(wc.wr_id);
  if (wc.status != IBV_WC_SUCCESS) {
    if (type == kBulkWork && index != kUntrackedBulk) {
      auto op = bulk_ops_.find(index);
      if (op != bulk_ops_.end()) {
        auto done = std::move(op->second);
        bulk_ops_.erase(op);
        done(
            Status(EIO, std::string("one-sided transfer failed: ") + ibv_wc_status_str(wc.status)));
      }
    }
    Fail(Status(wc.status == IBV_WC_WR_FLUSH_ERR ? ECONNRESET : EIO,
                std::string("RDMA work completion: ") + ibv_wc_status_str(wc.status)));
    return;
  }
  switch (type) {
    case kRecvWork:
      // Whatever arrived after a failure is not acted on.
      if (!failed_) HandleReceive(index, wc.byte_len);
      break;
    case kSendWork:
      if (index < kSendBuffers) SendsDone(index);
      Pump();
      break;
    case kBulkWork: {
      auto op = bulk_ops_.find(index);
      if (op == bulk_ops_.end()) break;
      auto done = std::move(op->second);
      bulk_ops_.erase(op);
      done(Status::Ok());
      break;
    }
  }
}

void RdmaConnection::SendsDone(size_t slot) {
  if (std::find(sends_in_flight_.begin(), sends_in_flight_.end(), slot) == sends_in_flight_.end()) {
    return;
  }
  while (!sends_in_flight_.empty()) {
    size_t done = sends_in_flight_.front();
    sends_in_flight_.pop_front();
    free_send_.push_back(done);
    if (sent_callbacks_[done]) std::exchange(sent_callbacks_[done], nullptr)();
    if (done == slot || failed_) break;
  }
}

void RdmaConnection::HandleReceive(size_t slot, uint32_t length) {
  const char* in = Slot(slot);
  if (length < 4 + kFrameHeaderSize) {
    Fail(Status(EPROTO, "RDMA message too short"));
    return;
  }
  uint32_t returned = Get32(in);
  // The peer can return only credits for messages we sent it.
  if (returned > kRecvDepth - peer_credits_) {
    Fail(Status(EPROTO, "peer returned " + std::to_string(returned) + " credits, more than the " +
                            std::to_string(kRecvDepth - peer_credits_) + " it holds"));
    return;
  }
  peer_credits_ += returned;
  Result<FrameHeader> header = DecodeHeader(in + 4, kFrameHeaderSize);
  if (!header.ok()) {
    Fail(Status(EPROTO, "bad RDMA message: " + header.status().message()));
    return;
  }
  std::optional<Message> message;
  RdmaExt ext;
  if (!(header->flags & kFlagCreditsOnly)) {
    size_t inline_payload = (header->flags & kFlagPayloadPlaced) ? 0 : header->payload_length;
    if (length < kPrefix || size_t{header->body_length} + inline_payload > length - kPrefix) {
      Fail(Status(EPROTO, "RDMA message lengths do not match"));
      return;
    }
    std::memcpy(&ext, in + 4 + kFrameHeaderSize, sizeof ext);
    message.emplace();
    message->header = *header;
    message->body.assign(in + kPrefix, header->body_length);
    message->payload = std::string(in + kPrefix + header->body_length, inline_payload);
  }
  if (!PostRecv(slot).ok()) {
    Fail(Status(EIO, "reposting a receive buffer failed"));
    return;
  }
  ++to_return_;
  if (to_return_ >= kRecvDepth / 2 && !credit_update_queued()) {
    queue_.push_front(Outgoing{{}, {}, {}, {}, {}, true, nullptr});
  }
  Pump();
  if (message && on_message && !failed_) on_message(std::move(*message), ext);
}

Status CmEvents::Open() {
  channel_ = rdma_create_event_channel();
  if (!channel_)
    return Status(ENODEV, std::string("rdma_create_event_channel: ") + std::strerror(errno));
  int flags = fcntl(channel_->fd, F_GETFL);
  fcntl(channel_->fd, F_SETFL, flags | O_NONBLOCK);
  watch_.assign(channel_->fd);
  return Status::Ok();
}

void CmEvents::Watch(std::function<void(rdma_cm_event*)> on_event) {
  on_event_ = std::move(on_event);
  Arm();
}

void CmEvents::Close() {
  if (!channel_) return;
  Kill();
  asio::error_code ignored;
  watch_.cancel(ignored);
  watch_.release();
  rdma_destroy_event_channel(channel_);
  channel_ = nullptr;
}

void CmEvents::Arm() {
  watch_.async_wait(asio::posix::stream_descriptor::wait_read,
                    [this, alive = alive_](const asio::error_code& error) {
                      if (error || !*alive || !channel_) return;
                      // A copy: on_event may destroy this watcher (after Kill).
                      auto on_event = on_event_;
                      rdma_cm_event* event = nullptr;
                      while (*alive && channel_ && rdma_get_cm_event(channel_, &event) == 0)
                        on_event(event);
                      if (*alive && channel_) Arm();
                    });
}

Result<sockaddr_storage> Resolve(const std::string& address) {
  auto parsed = ParseAddress(address);
  if (!parsed.ok()) return parsed.status();
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* result = nullptr;
  if (getaddrinfo(parsed->first.c_str(), std::to_string(parsed->second).c_str(), &hints, &result) !=
          0 ||
      result == nullptr) {
    return Status(EHOSTUNREACH, "cannot resolve " + address);
  }
  sockaddr_storage storage{};
  std::memcpy(&storage, result->ai_addr, result->ai_addrlen);
  freeaddrinfo(result);
  return storage;
}

}  // namespace rdma
}  // namespace sealfs::rpc
