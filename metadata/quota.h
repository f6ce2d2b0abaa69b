// Volume quotas: what each inode is charged, and the book of every volume's
// usage against its quota.
//
// A regular file is charged its size — or the end of the space reserved for
// writing it, if larger — rounded up to 4 KiB, whatever the replication;
// every inode counts one against the inode quota. Growth is taken from the
// book before the change commits (EDQUOT when it does not fit) and handed
// back if the commit fails; shrinking is applied after the commit. So the
// book never shows less than the store holds, and never more than the quota.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "meta.pb.h"
#include "sealfs/rpc/status.h"

namespace rocksdb {
class MergeOperator;
}

namespace sealfs::metadata {

inline constexpr uint64_t kQuotaBlock = 4096;

struct Usage {
  int64_t bytes = 0;
  int64_t inodes = 0;
  bool operator==(const Usage&) const = default;
};

uint64_t ChargedBytes(const pb::Inode& inode);

// Usage changes of one batch, per volume.
class UsageChanges {
 public:
  void Add(uint64_t volume, int64_t bytes, int64_t inodes);
  // The change from `before` to `after` (either may be null: created, freed).
  void Change(const pb::Inode* before, const pb::Inode* after);
  const std::map<uint64_t, Usage>& by_volume() const { return changes_; }
  bool empty() const { return changes_.empty(); }

 private:
  std::map<uint64_t, Usage> changes_;
};

// The 16-byte value of a volume's usage record, and the merge operands
// that add to it.
std::string EncodeUsage(const Usage& usage);
Usage DecodeUsage(std::string_view bytes);
// Adds usage operands to a usage record (the service column family's merge).
std::shared_ptr<rocksdb::MergeOperator> UsageMergeOperator();

class QuotaBook {
 public:
  struct Entry {
    Usage used;
    uint64_t quota_bytes = 0;   // 0: no limit
    uint64_t quota_inodes = 0;  // 0: no limit
  };
  void Set(uint64_t volume, Entry entry);
  void SetQuota(uint64_t volume, uint64_t quota_bytes, uint64_t quota_inodes);
  void Forget(uint64_t volume);
  Entry Get(uint64_t volume) const;
  // Whether the volume exists (its usage is kept); changes of others are ignored.
  bool Known(uint64_t volume) const;

  // Takes the growing parts of `changes` (every volume or none); EDQUOT
  // naming the volume and the limit when one does not fit, unless not
  // `enforced` (bytes already written are charged even past the quota).
  Status Take(const UsageChanges& changes, bool enforced = true);
  // Undoes a Take (the change did not commit).
  void Untake(const UsageChanges& changes);
  // Applies the shrinking parts of `changes` (the change committed).
  void ApplyShrink(const UsageChanges& changes);
  // The most bytes `volume` can still grow by (UINT64_MAX: no limit).
  uint64_t BytesLeft(uint64_t volume) const;

 private:
  mutable std::mutex mutex_;
  std::unordered_map<uint64_t, Entry> entries_;
};

}  // namespace sealfs::metadata
