// The namespace checker behind `sealfs fsck`: what the stores hold, read in
// one snapshot per shard (NamespaceFacts), and what is wrong with it
// (Findings). The check works on facts alone, so facts gathered from
// several shards are checked the same way as those of one.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "sealfs/rpc/status.h"

namespace sealfs::pb {
class FsckResponse;
}

namespace sealfs::metadata {

class MetaStore;

struct InodeFact {
  uint64_t ino = 0;
  uint32_t mode = 0;
  uint32_t nlink = 0;
  uint64_t parent = 0;  // directories: the directory that names them (a root: itself)
  uint64_t volume_id = 0;
  int64_t xattrs = -1;  // the extended attributes its record counts; -1: not counted
};

// A directory entry (dentries) with the listing record (dirindex) it should have.
struct EntryFact {
  uint64_t parent = 0;
  std::string name;
  uint64_t ino = 0;
  uint32_t type = 0;  // S_IFMT bits
  uint64_t seq = 0;
};

struct IndexFact {
  uint64_t parent = 0;
  uint64_t seq = 0;
  uint64_t ino = 0;
  uint32_t type = 0;
  std::string name;
};

struct VolumeFact {
  uint64_t id = 0;
  std::string name;
  uint64_t root_ino = 0;
};

struct NamespaceFacts {
  std::vector<InodeFact> inodes;
  std::vector<EntryFact> entries;
  std::vector<IndexFact> index;
  std::vector<VolumeFact> volumes;
  std::unordered_set<uint64_t> orphans;           // unlinked files kept while open
  std::unordered_map<uint64_t, uint32_t> xattrs;  // extended attributes stored, per inode
};

enum class Problem {
  kDanglingEntry,            // an entry names an inode that does not exist
  kEntryInMissingDirectory,  // an entry under a directory that does not exist
  kEntryType,                // an entry's type differs from its inode's
  kMissingIndex,             // an entry without its listing record (readdir misses it)
  kStrayIndex,               // a listing record without the entry it lists
  kLinkCount,                // nlink differs from the names (and subdirectories) counted
  kDirectoryNames,           // a directory named by more than one entry
  kDirectoryParent,          // a directory's parent differs from the directory naming it
  kUnreachable,              // an inode no name reaches from its volume's root
  kStrayOrphan,              // an orphan record of a file that is linked or gone
  kMissingRoot,              // a volume whose root directory does not exist
  kVolumeMismatch,           // an entry naming an inode of another volume
  kXattrCount,               // an inode's count of extended attributes differs from those stored
};

const char* ProblemName(Problem problem);

struct Finding {
  static Finding Of(Problem problem, uint64_t ino) {
    Finding finding;
    finding.problem = problem;
    finding.ino = ino;
    return finding;
  }
  Problem problem = Problem::kDanglingEntry;
  uint64_t ino = 0;     // the inode concerned (the one an entry names, for entries)
  uint64_t parent = 0;  // entries and listing records: their directory
  std::string name;
  uint64_t seq = 0;  // listing records
  uint32_t type = 0;
  // kLinkCount: the count found and the one the names call for;
  // kDirectoryParent: the parent found and the right one (in ino terms);
  // kXattrCount: the count recorded and the attributes stored.
  uint64_t found = 0;
  uint64_t expected = 0;
  uint64_t volume_id = 0;  // kUnreachable: the volume to reattach it to
};

// One sentence saying what is wrong.
std::string Describe(const Finding& finding);

struct CheckSummary {
  uint64_t volumes = 0, directories = 0, files = 0, entries = 0, orphans = 0;
};

// Checks the namespace: every entry names an existing inode of its
// directory's volume, with its type and a listing record; every inode's
// link count equals the names it has (directories: 2 + subdirectories,
// plus nothing for an open orphan); every directory other than a root has
// exactly one name, the parent it records, and is reachable from its
// volume's root; every other inode is named or an orphan; an inode that
// counts its extended attributes counts those stored.
std::vector<Finding> CheckNamespace(const NamespaceFacts& facts, CheckSummary* summary = nullptr);

// Checks the store; with `repair`, mends what it found and checks again, in
// rounds (one repair can reveal the next: a removed entry changes a link
// count) until the namespace is clean or a round mends nothing.
Status RunFsck(MetaStore& store, bool repair, pb::FsckResponse* response);

}  // namespace sealfs::metadata
