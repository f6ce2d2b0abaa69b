// Handles across a change of daemon: what a daemon records in the journal
// while it serves, and how a successor takes the handles over.
#include <sys/stat.h>

#include <cstdio>
#include <limits>

#include "fuse_fs.h"
#include "sealfs/rpc/credentials.h"

namespace sealfs::fuse {

void FuseFs::NoteUncommittedEnd(uint64_t fh, uint64_t end) {
  HandleSlot* slot = journal_.Find(fh);
  if (slot == nullptr) return;
  uint64_t known = slot->value.load(std::memory_order_relaxed);
  while (known < end && !slot->value.compare_exchange_weak(known, end)) {
  }
}

void FuseFs::ClearUncommittedEnds(InodeState& state) {
  for (uint64_t fh : state.handles) {
    if (HandleSlot* slot = journal_.Find(fh)) slot->value.store(0);
  }
}

size_t FuseFs::AdoptHandles() {
  size_t adopted = 0;
  for (const HandleJournal::Live& live : journal_.LiveHandles()) {
    if (live.kind == HandleKind::kDirectory) {
      ++adopted;  // the journal itself keeps all a directory handle needs
      continue;
    }
    const bool write = live.kind == HandleKind::kFileWrite;
    // Opened again under this daemon's session: the server keeps the file
    // (even unlinked) for as long as the kernel holds the handle.
    auto opened = client_.Open(live.ino, write);
    if (!opened.ok()) {
      // Removed meanwhile by another client: the kernel's next request on
      // the handle gets the server's answer for the inode (ENOENT).
      std::fprintf(stderr, "sealfs-fuse: cannot take over handle %llu of inode %llu: %s\n",
                   static_cast<unsigned long long>(live.fh),
                   static_cast<unsigned long long>(live.ino), opened.status().ToString().c_str());
      continue;
    }
    uint64_t size = opened->attr().size();
    if (live.value > size) {
      // The predecessor wrote past the committed size and died before it
      // committed. A data epoch no file has makes the server grow the size
      // only as far as the data its servers really hold.
      pb::CommitWriteRequest request;
      request.set_ino(live.ino);
      request.set_size(live.value);
      request.set_mtime_ns(auth::WallClockNs());
      request.set_data_epoch(std::numeric_limits<uint64_t>::max());
      pb::CommitWriteResponse response;
      Status committed = client_.Meta(rpc::meta::kCommitWrite, request, &response);
      if (!committed.ok()) {
        std::fprintf(stderr, "sealfs-fuse: cannot commit the writes of inode %llu: %s\n",
                     static_cast<unsigned long long>(live.ino), committed.ToString().c_str());
      } else {
        size = response.attr().size();
      }
    }
    if (HandleSlot* slot = journal_.Find(live.fh)) slot->value.store(0);
    auto state = State(live.ino);
    {
      std::lock_guard<std::mutex> lock(state->mutex);
      if (opened->layout().chains_size() > 0) state->layout = opened->layout();
      ++state->opens;
      state->handles.push_back(live.fh);
      state->data_epoch = opened->attr().data_epoch();
      state->size = size;
      state->mtime_ns = opened->attr().mtime_ns();
    }
    ++adopted;
  }
  return adopted;
}

}  // namespace sealfs::fuse
