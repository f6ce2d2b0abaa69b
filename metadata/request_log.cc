#include "sealfs/metadata/request_log.h"

#include "keys.h"
#include "meta.pb.h"
#include "sealfs/rpc/credentials.h"

namespace sealfs::metadata {

namespace {
thread_local PendingRequest* t_current = nullptr;
}  // namespace

std::string AppliedKey(const RequestKey& key) {
  return std::string(kAppliedPrefix) + EncodeIno(key.session_id) + EncodeIno(key.seq);
}

std::string EncodeApplied(const AppliedRequest& applied) {
  return EncodeIno(static_cast<uint64_t>(applied.applied_ns)) + EncodeIno(applied.result_ino);
}

std::optional<AppliedRequest> DecodeApplied(std::string_view bytes) {
  if (bytes.size() < 16) return std::nullopt;
  AppliedRequest applied;
  applied.applied_ns = static_cast<int64_t>(DecodeIno(bytes.data()));
  applied.result_ino = DecodeIno(bytes.data() + 8);
  return applied;
}

PendingRequest* CurrentRequest() { return t_current; }

void NoteResultIno(uint64_t ino) {
  if (t_current != nullptr) t_current->result_ino = ino;
}

RequestLog::Scope::Scope(RequestLog& log, const RequestKey& key) : log_(log), pending_{key, 0} {
  std::unique_lock<std::mutex> lock(log_.mutex_);
  log_.done_.wait(lock, [&] { return !log_.running_.contains(key); });
  log_.running_.insert(key);
  previous_ = t_current;
  t_current = &pending_;
}

RequestLog::Scope::~Scope() {
  t_current = previous_;
  {
    std::lock_guard<std::mutex> lock(log_.mutex_);
    log_.running_.erase(pending_.key);
  }
  log_.done_.notify_all();
}

std::optional<std::string> RequestLog::Answer(const RequestKey& key) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto found = answers_.find(key);
  if (found == answers_.end()) return std::nullopt;
  return found->second;
}

void RequestLog::RememberAnswer(const RequestKey& key, std::string response) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!answers_.insert_or_assign(key, std::move(response)).second) return;
  answer_order_.emplace_back(auth::WallClockNs(), key);
  while (answers_.size() > kMaxAnswersInMemory && !answer_order_.empty()) {
    answers_.erase(answer_order_.front().second);
    answer_order_.pop_front();
  }
}

void RequestLog::ForgetOldAnswers(int64_t now_ns) {
  std::lock_guard<std::mutex> lock(mutex_);
  while (!answer_order_.empty() && answer_order_.front().first < now_ns - kKeepNs) {
    answers_.erase(answer_order_.front().second);
    answer_order_.pop_front();
  }
}

}  // namespace sealfs::metadata
