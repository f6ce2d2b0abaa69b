// Plants damage in a metadata store on disk, as a crash between two writes
// or a bad disk would, for fsck to find. Open only while no server holds
// the store.
#pragma once

#include <gtest/gtest.h>
#include <rocksdb/db.h>

#include <memory>
#include <string>
#include <vector>

#include "keys.h"
#include "meta.pb.h"
#include "quota.h"

namespace sealfs::metadata {

class StoreDamage {
 public:
  explicit StoreDamage(const std::string& path) {
    rocksdb::ColumnFamilyOptions plain;
    rocksdb::ColumnFamilyOptions service;
    service.merge_operator = UsageMergeOperator();
    std::vector<rocksdb::ColumnFamilyDescriptor> families = {
        {rocksdb::kDefaultColumnFamilyName, plain},
        {"inodes", plain},
        {"dentries", plain},
        {"dirindex", plain},
        {"xattrs", plain},
        {"service", service}};
    rocksdb::DB* db = nullptr;
    rocksdb::Status status = rocksdb::DB::Open({}, path, families, &handles_, &db);
    EXPECT_TRUE(status.ok()) << status.ToString();
    db_.reset(db);
  }
  ~StoreDamage() {
    for (auto* handle : handles_) db_->DestroyColumnFamilyHandle(handle);
    db_->Close();
  }

  pb::Inode Inode(uint64_t ino) {
    std::string value;
    EXPECT_TRUE(db_->Get({}, handles_[1], EncodeIno(ino), &value).ok()) << ino;
    pb::Inode inode;
    inode.ParseFromString(value);
    return inode;
  }
  void PutInode(const pb::Inode& inode) {
    Check(db_->Put(Sync(), handles_[1], EncodeIno(inode.attr().ino()), inode.SerializeAsString()));
  }
  void SetLinkCount(uint64_t ino, uint32_t nlink) {
    pb::Inode inode = Inode(ino);
    inode.mutable_attr()->set_nlink(nlink);
    PutInode(inode);
  }
  // The entry's seq, or 0 if it does not exist.
  uint64_t EntrySeq(uint64_t parent, const std::string& name) {
    std::string value;
    if (!db_->Get({}, handles_[2], DentryKey(parent, name), &value).ok()) return 0;
    return DecodeDentry(value).seq;
  }
  void AddEntry(uint64_t parent, const std::string& name, uint64_t ino, uint32_t type,
                uint64_t seq) {
    Check(db_->Put(Sync(), handles_[2], DentryKey(parent, name), EncodeDentry({ino, seq, type})));
    Check(db_->Put(Sync(), handles_[3], IndexKey(parent, seq), EncodeIndex(ino, type, name)));
  }
  // Removes a name, leaving its inode unnamed.
  void RemoveEntry(uint64_t parent, const std::string& name) {
    uint64_t seq = EntrySeq(parent, name);
    ASSERT_NE(seq, 0u) << name;
    Check(db_->Delete(Sync(), handles_[2], DentryKey(parent, name)));
    Check(db_->Delete(Sync(), handles_[3], IndexKey(parent, seq)));
  }
  void RemoveIndexOf(uint64_t parent, const std::string& name) {
    Check(db_->Delete(Sync(), handles_[3], IndexKey(parent, EntrySeq(parent, name))));
  }
  void AddIndexOnly(uint64_t parent, uint64_t seq, uint64_t ino, const std::string& name) {
    Check(db_->Put(Sync(), handles_[3], IndexKey(parent, seq), EncodeIndex(ino, S_IFREG, name)));
  }
  void AddOrphanRecord(uint64_t ino) { Check(db_->Put(Sync(), handles_[5], OrphanKey(ino), "")); }

 private:
  static rocksdb::WriteOptions Sync() {
    rocksdb::WriteOptions options;
    options.sync = true;
    return options;
  }
  static void Check(const rocksdb::Status& status) {
    EXPECT_TRUE(status.ok()) << status.ToString();
  }

  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
};

}  // namespace sealfs::metadata
