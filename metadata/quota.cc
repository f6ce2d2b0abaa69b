#include "quota.h"

#include <rocksdb/merge_operator.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <limits>

namespace sealfs::metadata {

uint64_t ChargedBytes(const pb::Inode& inode) {
  if (!S_ISREG(inode.attr().mode())) return 0;
  uint64_t end = std::max({inode.attr().size(), inode.reserved_end(), inode.fallocated_end()});
  return (end + kQuotaBlock - 1) / kQuotaBlock * kQuotaBlock;
}

void UsageChanges::Add(uint64_t volume, int64_t bytes, int64_t inodes) {
  if (bytes == 0 && inodes == 0) return;
  Usage& usage = changes_[volume];
  usage.bytes += bytes;
  usage.inodes += inodes;
  if (usage == Usage{}) changes_.erase(volume);
}

void UsageChanges::Change(const pb::Inode* before, const pb::Inode* after) {
  if (before) Add(before->volume_id(), -static_cast<int64_t>(ChargedBytes(*before)), -1);
  if (after) Add(after->volume_id(), static_cast<int64_t>(ChargedBytes(*after)), 1);
}

std::string EncodeUsage(const Usage& usage) {
  std::string out(16, '\0');
  for (int i = 0; i < 8; ++i) {
    out[i] = static_cast<char>(static_cast<uint64_t>(usage.bytes) >> (8 * i));
    out[8 + i] = static_cast<char>(static_cast<uint64_t>(usage.inodes) >> (8 * i));
  }
  return out;
}

Usage DecodeUsage(std::string_view bytes) {
  if (bytes.size() != 16) return {};
  uint64_t b = 0, n = 0;
  for (int i = 7; i >= 0; --i) {
    b = (b << 8) | static_cast<uint8_t>(bytes[i]);
    n = (n << 8) | static_cast<uint8_t>(bytes[8 + i]);
  }
  return {static_cast<int64_t>(b), static_cast<int64_t>(n)};
}

namespace {
class UsageMerge : public rocksdb::AssociativeMergeOperator {
 public:
  bool Merge(const rocksdb::Slice&, const rocksdb::Slice* existing, const rocksdb::Slice& value,
             std::string* new_value, rocksdb::Logger*) const override {
    Usage sum = existing ? DecodeUsage(existing->ToStringView()) : Usage{};
    Usage add = DecodeUsage(value.ToStringView());
    sum.bytes += add.bytes;
    sum.inodes += add.inodes;
    *new_value = EncodeUsage(sum);
    return true;
  }
  const char* Name() const override { return "sealfs.UsageAdd"; }
};
}  // namespace

std::shared_ptr<rocksdb::MergeOperator> UsageMergeOperator() {
  return std::make_shared<UsageMerge>();
}

void QuotaBook::Set(uint64_t volume, Entry entry) {
  std::lock_guard<std::mutex> lock(mutex_);
  entries_[volume] = entry;
}

void QuotaBook::SetQuota(uint64_t volume, uint64_t quota_bytes, uint64_t quota_inodes) {
  std::lock_guard<std::mutex> lock(mutex_);
  Entry& entry = entries_[volume];
  entry.quota_bytes = quota_bytes;
  entry.quota_inodes = quota_inodes;
}

void QuotaBook::Forget(uint64_t volume) {
  std::lock_guard<std::mutex> lock(mutex_);
  entries_.erase(volume);
}

QuotaBook::Entry QuotaBook::Get(uint64_t volume) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = entries_.find(volume);
  return it == entries_.end() ? Entry{} : it->second;
}

namespace {
bool Fits(int64_t used, int64_t growth, uint64_t quota) {
  if (growth <= 0 || quota == 0) return true;
  return used + growth <= static_cast<int64_t>(std::min<uint64_t>(
                              quota, static_cast<uint64_t>(std::numeric_limits<int64_t>::max())));
}
}  // namespace

bool QuotaBook::Known(uint64_t volume) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return entries_.contains(volume);
}

Status QuotaBook::Take(const UsageChanges& changes, bool enforced) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (const auto& [volume, change] : changes.by_volume()) {
    auto found = entries_.find(volume);
    if (found == entries_.end()) continue;  // a deleted volume: nothing to charge
    if (!enforced) break;                   // charged whatever the quota says
    const Entry& entry = found->second;
    if (!Fits(entry.used.bytes, change.bytes, entry.quota_bytes)) {
      return Status(EDQUOT, "volume's byte quota (" + std::to_string(entry.quota_bytes) +
                                " bytes) is used up: " + std::to_string(entry.used.bytes) +
                                " used, " + std::to_string(change.bytes) + " more needed");
    }
    if (!Fits(entry.used.inodes, change.inodes, entry.quota_inodes)) {
      return Status(EDQUOT, "volume's inode quota (" + std::to_string(entry.quota_inodes) +
                                " inodes) is used up");
    }
  }
  for (const auto& [volume, change] : changes.by_volume()) {
    auto found = entries_.find(volume);
    if (found == entries_.end()) continue;
    found->second.used.bytes += std::max<int64_t>(change.bytes, 0);
    found->second.used.inodes += std::max<int64_t>(change.inodes, 0);
  }
  return Status::Ok();
}

void QuotaBook::Untake(const UsageChanges& changes) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (const auto& [volume, change] : changes.by_volume()) {
    auto found = entries_.find(volume);
    if (found == entries_.end()) continue;
    Entry& entry = found->second;
    entry.used.bytes -= std::max<int64_t>(change.bytes, 0);
    entry.used.inodes -= std::max<int64_t>(change.inodes, 0);
  }
}

void QuotaBook::ApplyShrink(const UsageChanges& changes) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (const auto& [volume, change] : changes.by_volume()) {
    auto found = entries_.find(volume);
    if (found == entries_.end()) continue;
    Entry& entry = found->second;
    entry.used.bytes += std::min<int64_t>(change.bytes, 0);
    entry.used.inodes += std::min<int64_t>(change.inodes, 0);
  }
}

uint64_t QuotaBook::BytesLeft(uint64_t volume) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = entries_.find(volume);
  if (it == entries_.end() || it->second.quota_bytes == 0) {
    return std::numeric_limits<uint64_t>::max();
  }
  int64_t quota = static_cast<int64_t>(std::min<uint64_t>(
      it->second.quota_bytes, static_cast<uint64_t>(std::numeric_limits<int64_t>::max())));
  int64_t left = quota - it->second.used.bytes;
  return left > 0 ? static_cast<uint64_t>(left) : 0;
}

}  // namespace sealfs::metadata
