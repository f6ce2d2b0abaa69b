// sealfs-ceiling SOURCE MOUNTPOINT: a passthrough FUSE file system of
// SOURCE (a tmpfs in `sealfs bench`), the fastest any FUSE file system can
// be on this machine. It is what every benchmark row compares SealFS with:
// libfuse's low-level API, multithreaded, with the same kernel
// capabilities, mount options, cache timeouts and loop settings as
// sealfs-fuse, the same operations served (extended attributes included),
// and no work of its own beyond the system call it passes on.
#define FUSE_USE_VERSION 312
#include <dirent.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <string>

namespace {

constexpr double kTimeout = 1.0;  // sealfs-fuse's attr_timeout and entry_timeout

struct Inode {
  int fd = -1;         // O_PATH, kept while the descriptor budget allows
  std::string handle;  // a struct file_handle, to open it when no fd is kept
  dev_t dev = 0;
  ino_t ino = 0;
  uint64_t lookups = 0;
};

struct DirHandle {
  DIR* dir = nullptr;
  off_t offset = 0;
  dirent* entry = nullptr;
};

struct Ceiling {
  std::mutex mutex;
  std::map<std::pair<dev_t, ino_t>, Inode*> inodes;
  Inode root;
  int mount_fd = -1;  // the source directory, for open_by_handle_at
  // Descriptors kept for inodes, and how many may be (the rest of the
  // descriptor limit serves open files and directories).
  size_t kept = 0;
  size_t max_kept = 1024;
};

Ceiling& Fs(fuse_req_t req) { return *static_cast<Ceiling*>(fuse_req_userdata(req)); }

Inode& Get(fuse_req_t req, fuse_ino_t ino) {
  return ino == FUSE_ROOT_ID ? Fs(req).root : *reinterpret_cast<Inode*>(ino);
}

std::string ProcPath(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

// An O_PATH descriptor of an inode for the length of one operation: the one
// the inode keeps, or one opened from its file handle.
class PathFd {
 public:
  PathFd(fuse_req_t req, fuse_ino_t ino) {
    Inode& inode = Get(req, ino);
    fd_ = inode.fd;
    if (fd_ < 0) {
      auto* handle = reinterpret_cast<file_handle*>(inode.handle.data());
      fd_ = open_by_handle_at(Fs(req).mount_fd, handle, O_PATH);
      owned_ = fd_ >= 0;
    }
  }
  ~PathFd() {
    if (owned_) close(fd_);
  }
  PathFd(const PathFd&) = delete;
  PathFd& operator=(const PathFd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_ = -1;
  bool owned_ = false;
};

// Looks `name` up in `parent` and fills `entry`; returns 0 or an errno.
int DoLookup(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_entry_param* entry) {
  std::memset(entry, 0, sizeof *entry);
  entry->attr_timeout = kTimeout;
  entry->entry_timeout = kTimeout;
  int fd = openat(PathFd(req, parent).get(), name, O_PATH | O_NOFOLLOW);
  if (fd < 0) return errno;
  if (fstatat(fd, "", &entry->attr, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) {
    int error = errno;
    close(fd);
    return error;
  }
  Ceiling& fs = Fs(req);
  std::unique_lock<std::mutex> guard(fs.mutex);
  Inode*& inode = fs.inodes[{entry->attr.st_dev, entry->attr.st_ino}];
  if (inode) {
    close(fd);
  } else {
    std::string handle(sizeof(file_handle) + MAX_HANDLE_SZ, '\0');
    auto* header = reinterpret_cast<file_handle*>(handle.data());
    header->handle_bytes = MAX_HANDLE_SZ;
    int mount_id = 0;
    if (name_to_handle_at(fd, "", header, &mount_id, AT_EMPTY_PATH) < 0) {
      int error = errno;
      fs.inodes.erase({entry->attr.st_dev, entry->attr.st_ino});
      close(fd);
      return error;
    }
    handle.resize(sizeof(file_handle) + header->handle_bytes);
    inode = new Inode{-1, std::move(handle), entry->attr.st_dev, entry->attr.st_ino, 0};
    if (fs.kept < fs.max_kept) {
      inode->fd = fd;
      ++fs.kept;
    } else {
      close(fd);
    }
  }
  ++inode->lookups;
  entry->ino = reinterpret_cast<fuse_ino_t>(inode);
  return 0;
}

void ReplyEntry(fuse_req_t req, fuse_ino_t parent, const char* name) {
  fuse_entry_param entry;
  int error = DoLookup(req, parent, name, &entry);
  if (error) {
    fuse_reply_err(req, error);
  } else {
    fuse_reply_entry(req, &entry);
  }
}

void Forget(fuse_req_t req, fuse_ino_t ino, uint64_t count) {
  if (ino == FUSE_ROOT_ID) return;
  Inode* inode = &Get(req, ino);
  Ceiling& fs = Fs(req);
  std::lock_guard<std::mutex> guard(fs.mutex);
  inode->lookups -= std::min(count, inode->lookups);
  if (inode->lookups == 0) {
    fs.inodes.erase({inode->dev, inode->ino});
    if (inode->fd >= 0) {
      close(inode->fd);
      --fs.kept;
    }
    delete inode;
  }
}

void Init(void*, fuse_conn_info* conn) {
  // As sealfs-fuse asks (client/fuse/namespace_ops.cc).
  conn->max_write = 1u << 20;
  conn->max_readahead = 1u << 20;
  const unsigned wanted[] = {FUSE_CAP_SPLICE_WRITE,     FUSE_CAP_SPLICE_MOVE,
                             FUSE_CAP_SPLICE_READ,      FUSE_CAP_READDIRPLUS,
                             FUSE_CAP_READDIRPLUS_AUTO, FUSE_CAP_PARALLEL_DIROPS,
                             FUSE_CAP_ASYNC_READ};
  for (unsigned capability : wanted) {
    if (conn->capable & capability) conn->want |= capability;
  }
  conn->want &= ~(FUSE_CAP_WRITEBACK_CACHE | FUSE_CAP_POSIX_LOCKS | FUSE_CAP_FLOCK_LOCKS);
}

void Lookup(fuse_req_t req, fuse_ino_t parent, const char* name) { ReplyEntry(req, parent, name); }

void ForgetOne(fuse_req_t req, fuse_ino_t ino, uint64_t count) {
  Forget(req, ino, count);
  fuse_reply_none(req);
}

void ForgetMulti(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
  for (size_t i = 0; i < count; ++i) Forget(req, forgets[i].ino, forgets[i].nlookup);
  fuse_reply_none(req);
}

void Getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  struct stat st;
  if (fstatat(PathFd(req, ino).get(), "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) {
    fuse_reply_err(req, errno);
  } else {
    fuse_reply_attr(req, &st, kTimeout);
  }
}

void Setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info* fi) {
  PathFd inode(req, ino);
  std::string path = ProcPath(inode.get());
  int result = 0;
  if (to_set & FUSE_SET_ATTR_MODE) result = chmod(path.c_str(), attr->st_mode);
  if (result == 0 && (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID))) {
    uid_t uid = (to_set & FUSE_SET_ATTR_UID) ? attr->st_uid : static_cast<uid_t>(-1);
    gid_t gid = (to_set & FUSE_SET_ATTR_GID) ? attr->st_gid : static_cast<gid_t>(-1);
    result = fchownat(inode.get(), "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
  }
  if (result == 0 && (to_set & FUSE_SET_ATTR_SIZE)) {
    result = fi ? ftruncate(static_cast<int>(fi->fh), attr->st_size)
                : truncate(path.c_str(), attr->st_size);
  }
  if (result == 0 && (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME))) {
    timespec times[2] = {{0, UTIME_OMIT}, {0, UTIME_OMIT}};
    if (to_set & FUSE_SET_ATTR_ATIME_NOW)
      times[0].tv_nsec = UTIME_NOW;
    else if (to_set & FUSE_SET_ATTR_ATIME)
      times[0] = attr->st_atim;
    if (to_set & FUSE_SET_ATTR_MTIME_NOW)
      times[1].tv_nsec = UTIME_NOW;
    else if (to_set & FUSE_SET_ATTR_MTIME)
      times[1] = attr->st_mtim;
    result = fi ? futimens(static_cast<int>(fi->fh), times)
                : utimensat(AT_FDCWD, path.c_str(), times, 0);
  }
  if (result < 0) return static_cast<void>(fuse_reply_err(req, errno));
  Getattr(req, ino, fi);
}

void Mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  if (mkdirat(PathFd(req, parent).get(), name, mode) < 0)
    return static_cast<void>(fuse_reply_err(req, errno));
  ReplyEntry(req, parent, name);
}

void Mknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
  if (mknodat(PathFd(req, parent).get(), name, mode, rdev) < 0)
    return static_cast<void>(fuse_reply_err(req, errno));
  ReplyEntry(req, parent, name);
}

void Symlink(fuse_req_t req, const char* target, fuse_ino_t parent, const char* name) {
  if (symlinkat(target, PathFd(req, parent).get(), name) < 0)
    return static_cast<void>(fuse_reply_err(req, errno));
  ReplyEntry(req, parent, name);
}

void Link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t parent, const char* name) {
  PathFd inode(req, ino);
  std::string path = ProcPath(inode.get());
  if (linkat(AT_FDCWD, path.c_str(), PathFd(req, parent).get(), name, AT_SYMLINK_FOLLOW) < 0) {
    return static_cast<void>(fuse_reply_err(req, errno));
  }
  ReplyEntry(req, parent, name);
}

void Unlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  fuse_reply_err(req, unlinkat(PathFd(req, parent).get(), name, 0) < 0 ? errno : 0);
}

void Rmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  fuse_reply_err(req, unlinkat(PathFd(req, parent).get(), name, AT_REMOVEDIR) < 0 ? errno : 0);
}

void Rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t new_parent,
            const char* new_name, unsigned int flags) {
  int result =
      renameat2(PathFd(req, parent).get(), name, PathFd(req, new_parent).get(), new_name, flags);
  fuse_reply_err(req, result < 0 ? errno : 0);
}

void Readlink(fuse_req_t req, fuse_ino_t ino) {
  char target[PATH_MAX + 1];
  ssize_t length = readlinkat(PathFd(req, ino).get(), "", target, PATH_MAX);
  if (length < 0) return static_cast<void>(fuse_reply_err(req, errno));
  target[length] = '\0';
  fuse_reply_readlink(req, target);
}

// O_DIRECT is the kernel's business here (FUSE passes direct I/O as such);
// the backing tmpfs needs none.
int BackingFlags(int flags) { return flags & ~(O_NOFOLLOW | O_DIRECT); }

void Open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  int fd = open(ProcPath(PathFd(req, ino).get()).c_str(), BackingFlags(fi->flags));
  if (fd < 0) return static_cast<void>(fuse_reply_err(req, errno));
  fi->fh = static_cast<uint64_t>(fd);
  fi->keep_cache = 1;
  fuse_reply_open(req, fi);
}

void Create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, fuse_file_info* fi) {
  int fd = openat(PathFd(req, parent).get(), name, BackingFlags(fi->flags) | O_CREAT, mode);
  if (fd < 0) return static_cast<void>(fuse_reply_err(req, errno));
  fuse_entry_param entry;
  int error = DoLookup(req, parent, name, &entry);
  if (error) {
    close(fd);
    return static_cast<void>(fuse_reply_err(req, error));
  }
  fi->fh = static_cast<uint64_t>(fd);
  fuse_reply_create(req, &entry, fi);
}

void Read(fuse_req_t req, fuse_ino_t, size_t size, off_t offset, fuse_file_info* fi) {
  fuse_bufvec buf = FUSE_BUFVEC_INIT(size);
  buf.buf[0].flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
  buf.buf[0].fd = static_cast<int>(fi->fh);
  buf.buf[0].pos = offset;
  fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
}

void WriteBuf(fuse_req_t req, fuse_ino_t, fuse_bufvec* in, off_t offset, fuse_file_info* fi) {
  fuse_bufvec out = FUSE_BUFVEC_INIT(fuse_buf_size(in));
  out.buf[0].flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
  out.buf[0].fd = static_cast<int>(fi->fh);
  out.buf[0].pos = offset;
  ssize_t written = fuse_buf_copy(&out, in, static_cast<fuse_buf_copy_flags>(0));
  if (written < 0) return static_cast<void>(fuse_reply_err(req, static_cast<int>(-written)));
  fuse_reply_write(req, static_cast<size_t>(written));
}

void Flush(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  fuse_reply_err(req, close(dup(static_cast<int>(fi->fh))) < 0 ? errno : 0);
}

void Release(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  close(static_cast<int>(fi->fh));
  fuse_reply_err(req, 0);
}

void Fsync(fuse_req_t req, fuse_ino_t, int datasync, fuse_file_info* fi) {
  int fd = static_cast<int>(fi->fh);
  fuse_reply_err(req, (datasync ? fdatasync(fd) : fsync(fd)) < 0 ? errno : 0);
}

void Fallocate(fuse_req_t req, fuse_ino_t, int mode, off_t offset, off_t length,
               fuse_file_info* fi) {
  int result = fallocate(static_cast<int>(fi->fh), mode, offset, length);
  fuse_reply_err(req, result < 0 ? errno : 0);
}

void Opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  int fd = openat(PathFd(req, ino).get(), ".", O_RDONLY | O_DIRECTORY);
  if (fd < 0) return static_cast<void>(fuse_reply_err(req, errno));
  auto* handle = new DirHandle;
  handle->dir = fdopendir(fd);
  if (!handle->dir) {
    int error = errno;
    close(fd);
    delete handle;
    return static_cast<void>(fuse_reply_err(req, error));
  }
  fi->fh = reinterpret_cast<uint64_t>(handle);
  fuse_reply_open(req, fi);
}

void ReaddirCommon(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, fuse_file_info* fi,
                   bool plus) {
  auto* handle = reinterpret_cast<DirHandle*>(fi->fh);
  std::string reply(size, '\0');
  size_t used = 0;
  if (offset != handle->offset) {
    seekdir(handle->dir, offset);
    handle->entry = nullptr;
    handle->offset = offset;
  }
  for (;;) {
    if (!handle->entry) {
      errno = 0;
      handle->entry = readdir(handle->dir);
      if (!handle->entry) break;
    }
    dirent* entry = handle->entry;
    off_t next = entry->d_off;
    size_t added;
    bool dots = std::strcmp(entry->d_name, ".") == 0 || std::strcmp(entry->d_name, "..") == 0;
    if (plus) {
      fuse_entry_param param{};
      if (dots) {
        param.attr.st_ino = entry->d_ino;
        param.attr.st_mode = static_cast<mode_t>(entry->d_type << 12);
      } else if (int error = DoLookup(req, ino, entry->d_name, &param); error) {
        handle->entry = nullptr;  // gone meanwhile
        continue;
      }
      added = fuse_add_direntry_plus(req, reply.data() + used, size - used, entry->d_name, &param,
                                     next);
      if (added > size - used) {
        if (!dots) Forget(req, param.ino, 1);
        break;
      }
    } else {
      struct stat st {};
      st.st_ino = entry->d_ino;
      st.st_mode = static_cast<mode_t>(entry->d_type << 12);
      added = fuse_add_direntry(req, reply.data() + used, size - used, entry->d_name, &st, next);
      if (added > size - used) break;
    }
    used += added;
    handle->entry = nullptr;
    handle->offset = next;
  }
  fuse_reply_buf(req, reply.data(), used);
}

void Readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, fuse_file_info* fi) {
  ReaddirCommon(req, ino, size, offset, fi, false);
}

void Readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, fuse_file_info* fi) {
  ReaddirCommon(req, ino, size, offset, fi, true);
}

void Releasedir(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  auto* handle = reinterpret_cast<DirHandle*>(fi->fh);
  closedir(handle->dir);
  delete handle;
  fuse_reply_err(req, 0);
}

void Statfs(fuse_req_t req, fuse_ino_t ino) {
  struct statvfs st;
  if (fstatvfs(PathFd(req, ino).get(), &st) < 0)
    return static_cast<void>(fuse_reply_err(req, errno));
  fuse_reply_statfs(req, &st);
}

// Extended attributes, passed on as libfuse's passthrough_ll does with
// `-o xattr` (through /proc/self/fd: O_PATH descriptors take no f*xattr).
// sealfs-fuse serves them, so the kernel asks both for them alike (ls -l
// asks every file for security.selinux and system.posix_acl_access).
void ReplyXattrSize(fuse_req_t req, size_t size, ssize_t got, const std::string& value) {
  if (got < 0) return static_cast<void>(fuse_reply_err(req, errno));
  if (size == 0) return static_cast<void>(fuse_reply_xattr(req, static_cast<size_t>(got)));
  fuse_reply_buf(req, value.data(), static_cast<size_t>(got));
}

void Getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  std::string value(size, '\0');
  ssize_t got =
      getxattr(ProcPath(PathFd(req, ino).get()).c_str(), name, size ? value.data() : nullptr, size);
  ReplyXattrSize(req, size, got, value);
}

void Listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  std::string value(size, '\0');
  ssize_t got =
      listxattr(ProcPath(PathFd(req, ino).get()).c_str(), size ? value.data() : nullptr, size);
  ReplyXattrSize(req, size, got, value);
}

void Setxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size,
              int flags) {
  int result = setxattr(ProcPath(PathFd(req, ino).get()).c_str(), name, value, size, flags);
  fuse_reply_err(req, result < 0 ? errno : 0);
}

void Removexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  int result = removexattr(ProcPath(PathFd(req, ino).get()).c_str(), name);
  fuse_reply_err(req, result < 0 ? errno : 0);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: sealfs-ceiling SOURCE MOUNTPOINT\n");
    return 2;
  }
  // Inodes keep a descriptor each (as in libfuse's passthrough_hp) while
  // the limit allows, raised as far as it goes; the others are opened from
  // their file handles for each operation.
  rlimit files{1u << 20, 1u << 20};  // fs.nr_open's default; needs root
  if (setrlimit(RLIMIT_NOFILE, &files) != 0 && getrlimit(RLIMIT_NOFILE, &files) == 0) {
    files.rlim_cur = files.rlim_max;
    setrlimit(RLIMIT_NOFILE, &files);
  }
  Ceiling fs;
  if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur > 8192) {
    fs.max_kept = files.rlim_cur - 4096;
  }
  fs.root.fd = open(argv[1], O_PATH);
  fs.mount_fd = open(argv[1], O_RDONLY | O_DIRECTORY);
  if (fs.root.fd < 0 || fs.mount_fd < 0) {
    std::fprintf(stderr, "sealfs-ceiling: cannot open %s: %s\n", argv[1], std::strerror(errno));
    return 1;
  }
  fuse_lowlevel_ops ops{};
  ops.init = Init;
  ops.lookup = Lookup;
  ops.forget = ForgetOne;
  ops.forget_multi = ForgetMulti;
  ops.getattr = Getattr;
  ops.setattr = Setattr;
  ops.readlink = Readlink;
  ops.mknod = Mknod;
  ops.mkdir = Mkdir;
  ops.unlink = Unlink;
  ops.rmdir = Rmdir;
  ops.symlink = Symlink;
  ops.rename = Rename;
  ops.link = Link;
  ops.open = Open;
  ops.read = Read;
  ops.write_buf = WriteBuf;
  ops.flush = Flush;
  ops.release = Release;
  ops.fsync = Fsync;
  ops.opendir = Opendir;
  ops.readdir = Readdir;
  ops.readdirplus = Readdirplus;
  ops.releasedir = Releasedir;
  ops.statfs = Statfs;
  ops.create = Create;
  ops.fallocate = Fallocate;
  ops.getxattr = Getxattr;
  ops.listxattr = Listxattr;
  ops.setxattr = Setxattr;
  ops.removexattr = Removexattr;
  // sealfs-fuse's mount options (as `sealfs local up` mounts it).
  const char* fuse_argv[] = {"sealfs-ceiling", "-o",
                             "allow_other,default_permissions,fsname=ceiling,subtype=ceiling"};
  fuse_args args = FUSE_ARGS_INIT(3, const_cast<char**>(fuse_argv));
  fuse_session* session = fuse_session_new(&args, &ops, sizeof ops, &fs);
  if (!session || fuse_session_mount(session, argv[2]) != 0) {
    std::fprintf(stderr, "sealfs-ceiling: cannot mount %s\n", argv[2]);
    return 1;
  }
  fuse_set_signal_handlers(session);
  fuse_loop_config* loop = fuse_loop_cfg_create();
  fuse_loop_cfg_set_clone_fd(loop, 1);
  fuse_loop_cfg_set_max_threads(loop, 64);
  fuse_loop_cfg_set_idle_threads(loop, 16);
  int result = fuse_session_loop_mt(session, loop);
  fuse_loop_cfg_destroy(loop);
  fuse_remove_signal_handlers(session);
  fuse_session_unmount(session);
  fuse_session_destroy(session);
  return result == 0 || result == SIGTERM || result == SIGINT ? 0 : 1;
}
