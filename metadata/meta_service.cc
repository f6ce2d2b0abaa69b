#include "sealfs/metadata/meta_service.h"

#include <sys/stat.h>

#include <cstdio>
#include <random>

#include "sealfs/rpc/credentials.h"
#include "sealfs/rpc/methods.h"
#include "sealfs/rpc/parallel_calls.h"

namespace sealfs::metadata {

MetaService::MetaService(MetaStore& store, rpc::IoThreads& io, MetaServiceOptions options)
    : store_(store), io_(io), options_(options) {
  LoadServers();
  auto traffic = store_.LoadTraffic();
  if (traffic.ok()) {
    for (const auto& [server, volume] : *traffic) traffic_[server][volume.volume_id()] = volume;
  }
  auto sessions = store_.Sessions();
  if (sessions.ok()) {
    for (const auto& [id, record] : *sessions) {
      unannounced_sessions_.insert(id);
      if (!record.key_hash().empty()) {
        session_auth_[id] = SessionAuth{record.volume_id(), record.key_hash()};
      }
    }
  } else {
    std::fprintf(stderr, "sealfs-meta: reading sessions: %s\n",
                 sessions.status().ToString().c_str());
  }
}

MetaService::~MetaService() { Stop(); }

void MetaService::Start() {
  sweeper_ = std::thread([this] {
    std::unique_lock<std::mutex> lock(sweep_mutex_);
    Clock::time_point next_sweep = Clock::now() + options_.sweep_interval;
    while (!stopping_) {
      Clock::time_point wake = next_sweep;
      if (removal_due_) wake = std::min(wake, *removal_due_);
      sweep_wakeup_.wait_until(lock, wake);
      if (stopping_) break;
      const Clock::time_point now = Clock::now();
      if (now >= next_sweep) {
        removal_due_.reset();  // the sweep removes data too
        lock.unlock();
        SweepOnce();
        lock.lock();
        next_sweep = Clock::now() + options_.sweep_interval;
      } else if (removal_due_ && now >= *removal_due_) {
        removal_due_.reset();
        lock.unlock();
        const bool more = RemovePendingData();
        lock.lock();
        if (more && !removal_due_) removal_due_ = Clock::now();
      }
    }
  });
}

void MetaService::Stop() {
  {
    std::lock_guard<std::mutex> lock(sweep_mutex_);
    stopping_ = true;
  }
  sweep_wakeup_.notify_all();
  if (sweeper_.joinable()) sweeper_.join();
}

void MetaService::AfterUnlink(const Unlinked& unlinked) {
  if (unlinked.freed) RemoveDataSoon();
}

void MetaService::RemoveDataSoon() {
  {
    std::lock_guard<std::mutex> lock(sweep_mutex_);
    if (removal_due_) return;  // a removal pass is already coming
    removal_due_ = Clock::now() + kRemovalDelay;
  }
  sweep_wakeup_.notify_all();
}

void MetaService::ReleaseOrphanIfClosed(uint64_t ino) {
  Status status = store_.ReleaseOrphan(ino, [this](uint64_t id) { return IsOpen(id); });
  if (!status.ok()) {
    std::fprintf(stderr, "sealfs-meta: releasing orphan %llu: %s\n",
                 static_cast<unsigned long long>(ino), status.ToString().c_str());
  }
}

void MetaService::SweepOnce() {
  ExpireSessions();
  // Orphans nobody holds open any more (IsOpen says yes to every file while
  // sessions from before a restart may still announce theirs).
  Result<std::vector<uint64_t>> orphans = store_.Orphans();
  if (orphans.ok()) {
    for (uint64_t ino : *orphans) ReleaseOrphanIfClosed(ino);
  }
  CheckLeases();
  ReleaseReservations();
  if (Clock::now() - last_ledger_ >= options_.ledger_interval) {
    last_ledger_ = Clock::now();
    RecordLedger();
  }
  if (Clock::now() - last_request_sweep_ >= std::chrono::minutes(1)) {
    last_request_sweep_ = Clock::now();
    ForgetOldRequests();
  }
  // Remove chunks of freed files; a server that is down is retried later.
  RemovePendingData();
}

void MetaService::ForgetOldRequests() {
  int64_t now = auth::WallClockNs();
  request_log_.ForgetOldAnswers(now);
  Result<size_t> forgotten = store_.ForgetAppliedBefore(now - RequestLog::kKeepNs);
  if (!forgotten.ok()) {
    std::fprintf(stderr, "sealfs-meta: %s\n", forgotten.status().ToString().c_str());
  }
}

void MetaService::ReleaseReservations() {
  // Reservations no capability can use any more stop counting, except for
  // what was written into them and not committed yet.
  int64_t now = auth::WallClockNs();
  Result<std::vector<pb::Inode>> expired = store_.ExpiredReservations(now);
  if (!expired.ok()) return;
  for (const pb::Inode& inode : *expired) {
    uint64_t data_end = 0;
    uint64_t held_end = std::max(inode.reserved_end(), inode.returned_end());
    if (held_end > std::max(inode.attr().size(), inode.fallocated_end())) {
      Result<DataUsage> usage = FileUsage(inode, held_end, std::chrono::seconds(10));
      if (!usage.ok()) continue;  // asked again next sweep; stays charged meanwhile
      data_end = usage->data_end;
    }
    Status released = store_.ReleaseReservation(inode.attr().ino(), now, data_end);
    if (!released.ok()) {
      std::fprintf(stderr, "sealfs-meta: releasing a reservation: %s\n",
                   released.ToString().c_str());
    }
  }
}

Result<pb::Inode> MetaService::CommitWrite(const pb::CommitWriteRequest& req) {
  for (int attempt = 0;; ++attempt) {
    Result<pb::Inode> inode = store_.Getattr(req.ino());
    if (!inode.ok()) return inode.status();
    if (!S_ISREG(inode->attr().mode())) return Status(EINVAL, "not a regular file");
    MetaStore::WriteCommit commit{req.ino(),
                                  req.size(),
                                  req.mtime_ns(),
                                  req.durable(),
                                  inode->attr().data_epoch(),
                                  std::nullopt,
                                  req.allocated_delta()};
    // Writes that began before a truncate may have been cut by it: then the
    // size may only grow as far as the data the servers really hold, and the
    // stored blocks are counted afresh. Otherwise the data servers are not
    // asked at all: the writes' own reports keep the count.
    bool truncated_since = req.data_epoch() != inode->attr().data_epoch();
    if (truncated_since) {
      Result<DataUsage> usage =
          FileUsage(*inode, std::min(std::max(req.size(), inode->attr().size()), kMaxFileSize),
                    std::chrono::seconds(20));
      if (!usage.ok()) {
        return Status(
            EIO, "cannot check the file's data after a truncate: " + usage.status().ToString());
      }
      commit.allocated_bytes = usage->allocated_bytes;
      if (req.size() > inode->attr().size()) {
        commit.size = std::max(inode->attr().size(), std::min(req.size(), usage->data_end));
      }
    }
    Result<pb::Inode> committed = store_.CommitWrite(commit);
    if (committed.status().code() == EAGAIN && attempt < 8) continue;  // truncated meanwhile
    return committed;
  }
}

// ---------------------------------------------------------------- handlers

void MetaService::RegisterHandlers(rpc::Dispatcher& d) {
  RegisterNamespaceHandlers(d);
  RegisterFileHandlers(d);
  RegisterAdminHandlers(d);
}

}  // namespace sealfs::metadata
