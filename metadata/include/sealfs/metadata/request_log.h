// RequestLog: namespace changes applied at most once.
//
// A client that gets no answer (the metadata server restarted, the
// connection broke, the call timed out) sends the same request again with
// the same number (Auth.request_seq, per session). While a change runs, a
// record of it rides in the same RocksDB write batch as the change itself,
// so after any crash the change and the record are both there or both not.
// A repeated request that finds its record is answered from it instead of
// being applied again: a retried create does not come back EEXIST, a
// retried unlink not ENOENT, a rename is not done twice.
//
// The answer itself is kept in memory for the common case (a lost reply on
// a live server); after a restart only the durable record is left, and the
// handler rebuilds the answer from the state it left (see MetaService).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>

namespace sealfs::metadata {

struct RequestKey {
  uint64_t session_id = 0;
  uint64_t seq = 0;
  auto operator<=>(const RequestKey&) const = default;
};

// What the durable record says of an applied request.
struct AppliedRequest {
  uint64_t result_ino = 0;  // the inode a create made (0 for other changes)
  int64_t applied_ns = 0;
};

// Encoding of the durable record (service column family).
std::string AppliedKey(const RequestKey& key);
std::string EncodeApplied(const AppliedRequest& applied);
std::optional<AppliedRequest> DecodeApplied(std::string_view bytes);
inline constexpr std::string_view kAppliedPrefix = "applied/";

// The request whose changes the current thread is committing, if any: the
// store adds its record to every batch it commits on this thread.
struct PendingRequest {
  RequestKey key;
  uint64_t result_ino = 0;
};
PendingRequest* CurrentRequest();
// A create names the inode it made, before it commits.
void NoteResultIno(uint64_t ino);

class RequestLog {
 public:
  // Records are kept at least this long, longer than any client retries.
  static constexpr int64_t kKeepNs = 30ll * 60 * 1'000'000'000;
  static constexpr size_t kMaxAnswersInMemory = 100'000;

  // Runs a request's handler: marks it as the thread's current request and
  // keeps a second copy of the same request waiting until the first is done.
  class Scope {
   public:
    Scope(RequestLog& log, const RequestKey& key);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    RequestLog& log_;
    PendingRequest pending_;
    PendingRequest* previous_;
  };

  // The answer given to a request, if it was applied and is still in memory.
  std::optional<std::string> Answer(const RequestKey& key);
  void RememberAnswer(const RequestKey& key, std::string response);
  // Forgets answers kept in memory longer than kKeepNs.
  void ForgetOldAnswers(int64_t now_ns);

 private:
  std::mutex mutex_;
  std::condition_variable done_;
  std::set<RequestKey> running_;
  std::map<RequestKey, std::string> answers_;
  std::deque<std::pair<int64_t, RequestKey>> answer_order_;
};

}  // namespace sealfs::metadata
