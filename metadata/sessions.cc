// Client sessions of the metadata service and the files they hold open.
//
// Open counts live in memory. Sessions themselves are recorded in the store,
// so that after a restart the service knows clients may still hold files:
// until each recorded session has re-announced its open files (its next
// keepalive) or timed out, an unlinked file is kept as an orphan rather than
// freed.
#include <algorithm>
#include <cstdio>

#include "sealfs/metadata/meta_service.h"

namespace sealfs::metadata {

bool MetaService::TouchSession(uint64_t session_id) {
  if (session_id == 0) return false;
  std::lock_guard<std::mutex> lock(sessions_mutex_);
  auto [it, inserted] = sessions_.try_emplace(session_id);
  it->second.last_seen = Clock::now();
  return inserted;
}

void MetaService::OpenFile(uint64_t session_id, uint64_t ino) {
  std::lock_guard<std::mutex> lock(sessions_mutex_);
  Session& session = sessions_[session_id];
  session.last_seen = Clock::now();
  ++session.open_counts[ino];
  ++open_totals_[ino];
}

bool MetaService::CloseFile(uint64_t session_id, uint64_t ino) {
  std::lock_guard<std::mutex> lock(sessions_mutex_);
  auto session = sessions_.find(session_id);
  if (session == sessions_.end()) return !open_totals_.contains(ino);
  session->second.last_seen = Clock::now();
  auto count = session->second.open_counts.find(ino);
  if (count == session->second.open_counts.end()) return !open_totals_.contains(ino);
  if (--count->second == 0) session->second.open_counts.erase(count);
  auto total = open_totals_.find(ino);
  if (total != open_totals_.end() && --total->second <= 0) {
    open_totals_.erase(total);
    return true;
  }
  return false;
}

void MetaService::AnnounceOpenFiles(uint64_t session_id, const std::vector<uint64_t>& inos) {
  {
    // The client's list is authoritative: it replaces what was known, which
    // also restores it after this server restarted.
    std::lock_guard<std::mutex> lock(sessions_mutex_);
    Session& session = sessions_[session_id];
    for (auto& [ino, count] : session.open_counts) {
      auto total = open_totals_.find(ino);
      if (total != open_totals_.end() && (total->second -= count) <= 0) open_totals_.erase(total);
    }
    session.open_counts.clear();
    for (uint64_t ino : inos) {
      ++session.open_counts[ino];
      ++open_totals_[ino];
    }
    session.last_seen = Clock::now();
    unannounced_sessions_.erase(session_id);
  }
}

bool MetaService::InRestartGrace() {
  // Called with sessions_mutex_ held.
  if (unannounced_sessions_.empty()) return false;
  if (Clock::now() - started_ <= options_.session_timeout) return true;
  unannounced_sessions_.clear();  // the rest timed out
  return false;
}

bool MetaService::IsOpen(uint64_t ino) {
  std::lock_guard<std::mutex> lock(sessions_mutex_);
  return open_totals_.contains(ino) || InRestartGrace();
}

void MetaService::ExpireSessions() {
  std::vector<uint64_t> expired;
  bool grace;
  {
    std::lock_guard<std::mutex> lock(sessions_mutex_);
    auto now = Clock::now();
    for (auto it = sessions_.begin(); it != sessions_.end();) {
      if (now - it->second.last_seen > options_.session_timeout) {
        for (auto& [ino, count] : it->second.open_counts) {
          auto total = open_totals_.find(ino);
          if (total != open_totals_.end() && (total->second -= count) <= 0)
            open_totals_.erase(total);
        }
        expired.push_back(it->first);
        it = sessions_.erase(it);
      } else {
        ++it;
      }
    }
    grace = InRestartGrace();
  }
  if (!grace) {
    // Recorded sessions that never came back after a restart are gone too.
    auto recorded = store_.Sessions();
    if (recorded.ok()) {
      std::lock_guard<std::mutex> lock(sessions_mutex_);
      for (const auto& [id, record] : *recorded) {
        if (!sessions_.contains(id)) expired.push_back(id);
      }
    }
  }
  std::sort(expired.begin(), expired.end());
  expired.erase(std::unique(expired.begin(), expired.end()), expired.end());
  {
    // An expired session cannot authenticate any more: its client mounts
    // again with its token.
    std::lock_guard<std::mutex> lock(sessions_mutex_);
    for (uint64_t id : expired) session_auth_.erase(id);
  }
  for (uint64_t id : expired) store_.DeleteSession(id);
}

}  // namespace sealfs::metadata
