// Internals of a MetaStore shared by its implementation files: the column
// family handles and the striped inode locks.
#pragma once

#include <rocksdb/db.h>

#include <array>
#include <mutex>
#include <set>

#include "sealfs/metadata/meta_store.h"

namespace sealfs::metadata {

struct MetaStore::Handles {
  rocksdb::ColumnFamilyHandle* inodes = nullptr;
  rocksdb::ColumnFamilyHandle* dentries = nullptr;
  rocksdb::ColumnFamilyHandle* dirindex = nullptr;
  rocksdb::ColumnFamilyHandle* xattrs = nullptr;
  rocksdb::ColumnFamilyHandle* service = nullptr;
  rocksdb::ColumnFamilyHandle* default_cf = nullptr;
};

// Striped inode locks. A LockSet takes its stripes in index order, so two
// operations that lock overlapping inode sets never deadlock.
class MetaStore::Locks {
 public:
  class LockSet {
   public:
    LockSet(Locks& locks, std::initializer_list<uint64_t> inos) : locks_(locks) {
      for (uint64_t ino : inos) {
        if (ino != 0) stripes_.insert(Stripe(ino));
      }
      for (size_t stripe : stripes_) locks_.mutexes_[stripe].lock();
    }
    ~LockSet() {
      for (auto it = stripes_.rbegin(); it != stripes_.rend(); ++it) locks_.mutexes_[*it].unlock();
    }

   private:
    Locks& locks_;
    std::set<size_t> stripes_;
  };

 private:
  static size_t Stripe(uint64_t ino) { return (ino * 0x9E3779B97F4A7C15ull) >> 52; }
  std::array<std::mutex, 4096> mutexes_;
};

using LockSet = MetaStore::Locks::LockSet;

}  // namespace sealfs::metadata
