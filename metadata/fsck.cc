#include "sealfs/metadata/fsck.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <deque>
#include <map>
#include <unordered_map>

namespace sealfs::metadata {

namespace {

std::string Hex(uint64_t ino) {
  char text[24];
  std::snprintf(text, sizeof text, "%#llx", static_cast<unsigned long long>(ino));
  return text;
}

const char* TypeName(uint32_t type) {
  switch (type & S_IFMT) {
    case S_IFDIR:
      return "directory";
    case S_IFREG:
      return "file";
    case S_IFLNK:
      return "symlink";
    case S_IFIFO:
      return "fifo";
    case S_IFSOCK:
      return "socket";
    case S_IFCHR:
      return "character device";
    case S_IFBLK:
      return "block device";
    default:
      return "unknown type";
  }
}

std::string Where(const Finding& f) { return "'" + f.name + "' in directory " + Hex(f.parent); }

}  // namespace

const char* ProblemName(Problem problem) {
  switch (problem) {
    case Problem::kDanglingEntry:
      return "dangling-entry";
    case Problem::kEntryInMissingDirectory:
      return "entry-in-missing-directory";
    case Problem::kEntryType:
      return "entry-type";
    case Problem::kMissingIndex:
      return "missing-listing-record";
    case Problem::kStrayIndex:
      return "stray-listing-record";
    case Problem::kLinkCount:
      return "link-count";
    case Problem::kDirectoryNames:
      return "directory-names";
    case Problem::kDirectoryParent:
      return "directory-parent";
    case Problem::kUnreachable:
      return "unreachable";
    case Problem::kStrayOrphan:
      return "stray-orphan";
    case Problem::kMissingRoot:
      return "missing-root";
    case Problem::kVolumeMismatch:
      return "volume-mismatch";
    case Problem::kXattrCount:
      return "xattr-count";
  }
  return "unknown";
}

std::string Describe(const Finding& f) {
  switch (f.problem) {
    case Problem::kDanglingEntry:
      return "entry " + Where(f) + " names inode " + Hex(f.ino) + ", which does not exist";
    case Problem::kEntryInMissingDirectory:
      return "entry " + Where(f) + " is in a directory that does not exist";
    case Problem::kEntryType:
      return "entry " + Where(f) + " says " + TypeName(f.type) + " but inode " + Hex(f.ino) +
             " is a " + TypeName(static_cast<uint32_t>(f.expected));
    case Problem::kMissingIndex:
      return "entry " + Where(f) + " has no listing record (readdir does not show it)";
    case Problem::kStrayIndex:
      return "listing record " + std::to_string(f.seq) + " of directory " + Hex(f.parent) +
             " shows '" + f.name + "', which that directory does not hold";
    case Problem::kLinkCount:
      return "inode " + Hex(f.ino) + " has link count " + std::to_string(f.found) +
             ", its names call for " + std::to_string(f.expected);
    case Problem::kDirectoryNames:
      return "directory " + Hex(f.ino) + " is also named " + Where(f) +
             " (a directory has one name)";
    case Problem::kDirectoryParent:
      return "directory " + Hex(f.ino) + " records parent " + Hex(f.found) + " but is named in " +
             Hex(f.expected);
    case Problem::kUnreachable:
      return std::string(TypeName(f.type)) + " " + Hex(f.ino) + " of volume " +
             std::to_string(f.volume_id) + " is not reachable from the volume's root";
    case Problem::kStrayOrphan:
      return "orphan record of inode " + Hex(f.ino) + ", which is linked or gone";
    case Problem::kMissingRoot:
      return "volume '" + f.name + "' has no root directory (inode " + Hex(f.ino) + ")";
    case Problem::kVolumeMismatch:
      return "entry " + Where(f) + " names inode " + Hex(f.ino) + " of volume " +
             std::to_string(f.found) + ", not of the directory's volume " +
             std::to_string(f.expected);
    case Problem::kXattrCount:
      return "inode " + Hex(f.ino) + " counts " + std::to_string(f.found) +
             " extended attributes but has " + std::to_string(f.expected) +
             " (a mount would answer 'none' for those it misses)";
  }
  return "unknown problem";
}

std::vector<Finding> CheckNamespace(const NamespaceFacts& facts, CheckSummary* summary) {
  std::vector<Finding> findings;
  std::unordered_map<uint64_t, const InodeFact*> inodes;
  inodes.reserve(facts.inodes.size());
  for (const InodeFact& inode : facts.inodes) inodes[inode.ino] = &inode;
  std::unordered_map<uint64_t, const VolumeFact*> roots;
  for (const VolumeFact& volume : facts.volumes) {
    roots[volume.root_ino] = &volume;
    if (!inodes.count(volume.root_ino)) {
      findings.push_back(
          {Problem::kMissingRoot, volume.root_ino, 0, volume.name, 0, 0, 0, 0, volume.id});
    }
  }
  std::map<std::pair<uint64_t, uint64_t>, const IndexFact*> index;
  for (const IndexFact& record : facts.index) index[{record.parent, record.seq}] = &record;

  std::unordered_map<uint64_t, uint64_t> names;    // ino -> entries naming it
  std::unordered_map<uint64_t, uint64_t> subdirs;  // directory -> subdirectories named in it
  std::unordered_map<uint64_t, std::vector<const EntryFact*>>
      dir_names;                                                 // directory -> its entries
  std::unordered_map<uint64_t, std::vector<uint64_t>> children;  // directory -> directories in it
  std::map<std::pair<uint64_t, std::string>, uint64_t> entry_seq;
  for (const EntryFact& entry : facts.entries) {
    entry_seq[{entry.parent, entry.name}] = entry.seq;
    Finding at{Problem::kDanglingEntry, entry.ino, entry.parent, entry.name, entry.seq, entry.type};
    auto record = index.find({entry.parent, entry.seq});
    if (record == index.end() || record->second->name != entry.name ||
        record->second->ino != entry.ino) {
      at.problem = Problem::kMissingIndex;
      findings.push_back(at);
    }
    auto dir = inodes.find(entry.parent);
    if (dir == inodes.end() || !S_ISDIR(dir->second->mode)) {
      at.problem = Problem::kEntryInMissingDirectory;
      findings.push_back(at);
      continue;
    }
    auto child = inodes.find(entry.ino);
    if (child == inodes.end()) {
      at.problem = Problem::kDanglingEntry;
      findings.push_back(at);
      continue;
    }
    const InodeFact& inode = *child->second;
    if ((inode.mode & S_IFMT) != entry.type) {
      at.problem = Problem::kEntryType;
      at.expected = inode.mode & S_IFMT;
      findings.push_back(at);
    }
    if (inode.volume_id != dir->second->volume_id) {
      at.problem = Problem::kVolumeMismatch;
      at.found = inode.volume_id;
      at.expected = dir->second->volume_id;
      findings.push_back(at);
    }
    ++names[entry.ino];
    if (S_ISDIR(inode.mode)) {
      ++subdirs[entry.parent];
      dir_names[entry.ino].push_back(&entry);
      children[entry.parent].push_back(entry.ino);
    }
  }
  for (const IndexFact& record : facts.index) {
    auto entry = entry_seq.find({record.parent, record.name});
    if (entry == entry_seq.end() || entry->second != record.seq) {
      findings.push_back(
          {Problem::kStrayIndex, record.ino, record.parent, record.name, record.seq, record.type});
    }
  }

  // Reachability: a walk down from every volume root.
  std::unordered_set<uint64_t> reached;
  std::deque<uint64_t> queue;
  for (const VolumeFact& volume : facts.volumes) {
    if (inodes.count(volume.root_ino) && reached.insert(volume.root_ino).second) {
      queue.push_back(volume.root_ino);
    }
  }
  while (!queue.empty()) {
    uint64_t dir = queue.front();
    queue.pop_front();
    for (uint64_t child : children[dir]) {
      if (reached.insert(child).second) queue.push_back(child);
    }
  }

  CheckSummary counted;
  counted.volumes = facts.volumes.size();
  counted.entries = facts.entries.size();
  for (const InodeFact& inode : facts.inodes) {
    uint64_t named = names.count(inode.ino) ? names[inode.ino] : 0;
    bool orphan = facts.orphans.count(inode.ino) > 0;
    if (inode.xattrs >= 0) {
      auto stored = facts.xattrs.find(inode.ino);
      uint64_t held = stored == facts.xattrs.end() ? 0 : stored->second;
      if (static_cast<uint64_t>(inode.xattrs) != held) {
        Finding wrong = Finding::Of(Problem::kXattrCount, inode.ino);
        wrong.type = inode.mode & S_IFMT;
        wrong.found = static_cast<uint64_t>(inode.xattrs);
        wrong.expected = held;
        findings.push_back(wrong);
      }
    }
    Finding at = Finding::Of(Problem::kLinkCount, inode.ino);
    at.type = inode.mode & S_IFMT;
    at.volume_id = inode.volume_id;
    at.found = inode.nlink;
    if (S_ISDIR(inode.mode)) {
      ++counted.directories;
      bool root = roots.count(inode.ino) > 0;
      at.expected = 2 + (subdirs.count(inode.ino) ? subdirs[inode.ino] : 0);
      if (inode.nlink != at.expected) findings.push_back(at);
      if (root) continue;
      const std::vector<const EntryFact*>& dir_entries = dir_names[inode.ino];
      if (dir_entries.empty() || !reached.count(inode.ino)) {
        at.problem = Problem::kUnreachable;
        findings.push_back(at);
        continue;
      }
      // The name that matches the recorded parent stays; others are extra.
      const EntryFact* kept = dir_entries.front();
      for (const EntryFact* entry : dir_entries) {
        if (entry->parent == inode.parent) kept = entry;
      }
      for (const EntryFact* entry : dir_entries) {
        if (entry == kept) continue;
        findings.push_back({Problem::kDirectoryNames, inode.ino, entry->parent, entry->name,
                            entry->seq, entry->type});
      }
      if (inode.parent != kept->parent) {
        at.problem = Problem::kDirectoryParent;
        at.found = inode.parent;
        at.expected = kept->parent;
        findings.push_back(at);
      }
      continue;
    }
    ++counted.files;
    if (orphan && !(named == 0 && inode.nlink > 0)) {
      ++counted.orphans;
      if (named > 0) findings.push_back(Finding::Of(Problem::kStrayOrphan, inode.ino));
      if (named > 0 && inode.nlink != named) {
        at.expected = named;
        findings.push_back(at);
      }
      continue;
    }
    if (named == 0) {  // (an orphan still linked counts here too: it is kept, not freed)
      at.problem = Problem::kUnreachable;
      findings.push_back(at);
      continue;
    }
    if (inode.nlink != named) {
      at.expected = named;
      findings.push_back(at);
    }
  }
  for (uint64_t ino : facts.orphans) {
    if (!inodes.count(ino)) findings.push_back(Finding::Of(Problem::kStrayOrphan, ino));
  }
  if (summary) *summary = counted;
  return findings;
}

}  // namespace sealfs::metadata
