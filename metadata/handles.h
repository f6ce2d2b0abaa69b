// Column family handles of a MetaStore, shared by its implementation files.
#pragma once

#include <rocksdb/db.h>

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

}  // namespace sealfs::metadata
