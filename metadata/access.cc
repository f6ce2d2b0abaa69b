// Who may do what on the metadata service: sessions bound to one volume,
// the admin, and servers; and the capabilities that let clients reach file
// data on data servers.
#include <sys/stat.h>

#include <cstring>

#include "sealfs/metadata/meta_service.h"
#include "sealfs/rpc/credentials.h"

namespace sealfs::metadata {

Result<Principal> MetaService::Authenticate(const pb::Auth& auth, Access access) {
  Principal who;
  if (!auth.admin_key().empty()) {
    if (!auth::SecretMatches(options_.admin_hash, auth.admin_key())) {
      return Status(EACCES, "the admin credential is wrong");
    }
    who.kind = Principal::Kind::kAdmin;
  } else if (!auth.server_proof().empty()) {
    if (!auth::IsServerProof(options_.cluster_key, auth.server_proof())) {
      return Status(EACCES, "the server proof is wrong (another cluster key?)");
    }
    who.kind = Principal::Kind::kServer;
  } else if (auth.session_id() != 0) {
    {
      std::lock_guard<std::mutex> lock(sessions_mutex_);
      auto found = session_auth_.find(auth.session_id());
      if (found == session_auth_.end()) {
        return Status(EKEYEXPIRED, "session " + std::to_string(auth.session_id()) +
                                       " has ended (expired, or its volume was deleted): "
                                       "mount again");
      }
      if (!auth::SecretMatches(found->second.key_hash, auth.session_key())) {
        return Status(EACCES, "the session key is wrong");
      }
      who.volume_id = found->second.volume_id;
    }
    who.kind = Principal::Kind::kSession;
    who.session_id = auth.session_id();
    TouchSession(who.session_id);
  }
  bool allowed = false;
  switch (access) {
    case Access::kMount:
      allowed = true;
      break;
    case Access::kClient:
      allowed = who.kind == Principal::Kind::kSession || who.kind == Principal::Kind::kAdmin;
      break;
    case Access::kAdmin:
      allowed = who.kind == Principal::Kind::kAdmin;
      break;
    case Access::kServer:
      allowed = who.kind == Principal::Kind::kServer;
      break;
    case Access::kAnyone:
      allowed = who.kind != Principal::Kind::kNobody;
      break;
  }
  if (!allowed) {
    return Status(EACCES, who.kind == Principal::Kind::kNobody
                              ? "the request carries no credential"
                              : "this credential may not make this request");
  }
  return who;
}

Status MetaService::CheckInodes(const Principal& who, std::initializer_list<uint64_t> inos) {
  if (who.kind != Principal::Kind::kSession) return Status::Ok();
  for (uint64_t ino : inos) {
    Result<pb::Inode> inode = store_.Getattr(ino);
    if (!inode.ok()) return inode.status();
    if (inode->volume_id() != who.volume_id) {
      return Status(EACCES, "inode " + std::to_string(ino) + " is not in the mounted volume");
    }
  }
  return Status::Ok();
}

Result<std::pair<uint64_t, std::string>> MetaService::NewSession(uint64_t volume_id) {
  std::string key = auth::RandomSecret();
  uint64_t id = 0;
  while (id == 0) {
    std::string random = auth::RandomSecret();
    std::memcpy(&id, random.data(), sizeof id);
  }
  pb::SessionRecord record;
  record.set_volume_id(volume_id);
  record.set_key_hash(auth::HashSecret(key));
  {
    // Known in memory before it is recorded, so that a sweep in between
    // never takes the record for one of a session that is gone.
    std::lock_guard<std::mutex> lock(sessions_mutex_);
    session_auth_[id] = SessionAuth{volume_id, record.key_hash()};
    sessions_[id].last_seen = Clock::now();
  }
  Status recorded = store_.PutSession(id, record);
  if (!recorded.ok()) {
    std::lock_guard<std::mutex> lock(sessions_mutex_);
    session_auth_.erase(id);
    sessions_.erase(id);
    return recorded;
  }
  return std::make_pair(id, key);
}

size_t MetaService::SessionsOf(uint64_t volume_id) {
  std::lock_guard<std::mutex> lock(sessions_mutex_);
  size_t count = 0;
  for (const auto& [id, session] : session_auth_) count += session.volume_id == volume_id;
  return count;
}

size_t MetaService::EndSessionsOf(uint64_t volume_id) {
  std::vector<uint64_t> ended;
  {
    std::lock_guard<std::mutex> lock(sessions_mutex_);
    for (auto it = session_auth_.begin(); it != session_auth_.end();) {
      if (it->second.volume_id == volume_id) {
        ended.push_back(it->first);
        it = session_auth_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (uint64_t id : ended) store_.DeleteSession(id);
  return ended.size();
}

int64_t MetaService::CapabilityTtlNs() const {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(options_.capability_ttl).count();
}

int64_t MetaService::ReservationUntilNs(int64_t now) const { return now + 2 * CapabilityTtlNs(); }

Result<pb::Capability> MetaService::IssueCapability(uint64_t ino, uint64_t session_id, bool write,
                                                    uint64_t need_end, uint64_t want_end) {
  int64_t now = auth::WallClockNs();
  int64_t ttl = CapabilityTtlNs();
  pb::Capability cap;
  cap.set_ino(ino);
  cap.set_session_id(session_id);
  cap.set_rights(pb::CAP_READ);
  cap.set_expires_ns(now + ttl);
  Result<pb::Inode> inode =
      write ? store_.Reserve(ino, need_end, want_end, now + ttl, ReservationUntilNs(now))
            : store_.Getattr(ino);
  if (!inode.ok()) return inode.status();
  if (!S_ISREG(inode->attr().mode())) return Status(EINVAL, "not a regular file");
  cap.set_volume_id(inode->volume_id());
  cap.set_chunk_size(inode->layout().chunk_size());
  *cap.mutable_stripe() = inode->layout().chains();
  if (write) {
    cap.set_rights(pb::CAP_READ | pb::CAP_WRITE);
    // Every byte it lets the client write stays reserved while it is valid.
    cap.set_write_limit(inode->reserved_end());
    cap.set_expires_ns(std::min(cap.expires_ns(), inode->reserved_until_ns()));
  }
  auth::SignCapability(&cap, options_.cluster_key);
  return cap;
}

}  // namespace sealfs::metadata
