#include "fuse/filesystem.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <climits>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "fuse/device_node.h"
#include "fuse/encrypted_directory.h"
#include "fuse/fault_injection.h"
#include "fuse/file_io.h"
#include "fuse/log.h"

namespace scratchcrypt {

namespace {

constexpr size_t kMaxRequestBytes = 1 << 20;  // max_write / max_read

// ---------------------------------------------------------------------------
// Small helpers

Filesystem& fs_of(fuse_req_t req) { return *static_cast<Filesystem*>(fuse_req_userdata(req)); }

int stat_of(int path_fd, struct stat* st) {
  return ::fstatat(path_fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) == 0 ? 0 : -errno;
}

// An open regular file: the backing descriptor opened for this handle.
struct OpenFile {
  UniqueFd fd;
  Inode* writer = nullptr;  // counted in its writers while open for writing

  OpenFile() = default;
  OpenFile(const OpenFile&) = delete;
  OpenFile& operator=(const OpenFile&) = delete;
  ~OpenFile() {
    if (writer != nullptr) writer->writers.fetch_sub(1);
  }
  void count_writer(Inode& inode, int flags) {
    if ((flags & O_ACCMODE) == O_RDONLY) return;
    writer = &inode;
    inode.writers.fetch_add(1);
  }
};

// An open directory: a backing stream and the position the kernel last saw.
struct OpenDir {
  std::mutex mu;
  DIR* dir = nullptr;
  off_t offset = 0;
  dirent* pending = nullptr;  // read but not yet returned (buffer was full)
  DirId id;
  ~OpenDir() {
    if (dir != nullptr) ::closedir(dir);
  }
};

// FUSE carries a handle as a uint64_t: ownership passes to the kernel at
// open and comes back at release.
template <typename T>
uint64_t to_handle(std::unique_ptr<T> object) {
  return reinterpret_cast<uint64_t>(object.release());
}
template <typename T>
T& handle(fuse_file_info* fi) {
  return *reinterpret_cast<T*>(fi->fh);
}
template <typename T>
std::unique_ptr<T> take_handle(fuse_file_info* fi) {
  return std::unique_ptr<T>(reinterpret_cast<T*>(fi->fh));
}

fuse_ino_t node_id(Filesystem& fs, Inode& inode) {
  return &inode == &fs.root() ? FUSE_ROOT_ID : reinterpret_cast<fuse_ino_t>(&inode);
}

// The names of directory `dir` for an operation on `name`, or -errno: a bad
// name is refused first, then a directory without a valid id (-EIO).
int names_of(Filesystem& fs, Inode& dir, const char* name, std::optional<EncryptedDirectory>* out) {
  if (int err = check_name(name)) return err;
  DirId id;
  if (int err = fs.dir_id(dir, &id)) return err;
  out->emplace(dir.fd.get(), id, fs.volume().names());
  return 0;
}

SymlinkTargets symlinks_of(Filesystem& fs) {
  return SymlinkTargets(fs.volume().root_fd(), fs.volume().names());
}

// What the kernel is shown of backing object `path_fd` whose lstat is `st`:
// a symlink's plaintext target length, a device node's type and number.
void show_attr(Filesystem& fs, int path_fd, struct stat* st) {
  symlinks_of(fs).show_size(path_fd, st);
  show_device_node(fs.volume().names(), path_fd, st);
}

// The backing name of `name` in `dir`.
int backing_name_for(Filesystem& fs, Inode& dir, const char* name, BackingName* out) {
  std::optional<EncryptedDirectory> names;
  if (int err = names_of(fs, dir, name, &names)) return err;
  return names->backing_name(name, out);
}

// Looks up a backing entry and fills the FUSE entry (raising the lookup
// count), or returns -errno.
int lookup_backing(Filesystem& fs, Inode& dir, const std::string& backing_name,
                   fuse_entry_param* e) {
  UniqueFd fd(::openat(dir.fd.get(), backing_name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) return -errno;
  struct stat st;
  if (int err = stat_of(fd.get(), &st)) return err;
  struct stat shown = st;
  show_attr(fs, fd.get(), &shown);
  Inode& inode = fs.inodes().acquire(std::move(fd), st);  // the backing type
  *e = {};
  e->ino = node_id(fs, inode);
  e->attr = shown;
  e->attr_timeout = e->entry_timeout = fs.options().cache_timeout;
  return 0;
}

// New objects belong to the caller; in a setgid directory they take the
// directory's group (and new directories inherit the setgid bit).
int give_to_caller(fuse_req_t req, Inode& dir, int fd, const char* at_name, mode_t mode,
                   bool is_directory) {
  const fuse_ctx* ctx = fuse_req_ctx(req);
  struct stat parent;
  if (int err = stat_of(dir.fd.get(), &parent)) return err;
  gid_t gid = (parent.st_mode & S_ISGID) ? parent.st_gid : ctx->gid;
  const int flags = at_name != nullptr ? AT_SYMLINK_NOFOLLOW : AT_EMPTY_PATH;
  if (::fchownat(fd, at_name != nullptr ? at_name : "", ctx->uid, gid, flags) != 0) return -errno;
  if (at_name != nullptr) return 0;  // symlinks have no mode of their own
  if (is_directory && (parent.st_mode & S_ISGID)) mode |= S_ISGID;
  // chown clears set-id bits, so apply the requested mode afterwards.
  if ((mode & (S_ISUID | S_ISGID)) && ::chmod(proc_fd_path(fd).c_str(), mode & 07777) != 0) {
    return -errno;  // (through /proc: `fd` may be O_PATH)
  }
  return 0;
}

// Flags for opening the backing file: the data path reads to rewrite
// partial units, so writers get O_RDWR; O_APPEND would make pwrite ignore
// its offset; O_DIRECT is done by FUSE direct_io; truncation and creation
// are handled separately.
int backing_open_flags(int flags) {
  // Linux truncates on O_TRUNC even with O_RDONLY; we need a writable fd.
  const bool writable = (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC);
  flags &= ~(O_CREAT | O_EXCL | O_NOCTTY | O_TRUNC | O_APPEND | O_DIRECT);
  if (writable) flags = (flags & ~O_ACCMODE) | O_RDWR;
  return flags | O_CLOEXEC;
}

void set_file_info(Filesystem&, fuse_file_info* fi, int user_flags) {
  if (user_flags & O_DIRECT) {
    fi->direct_io = 1;
  } else {
    fi->keep_cache = 1;  // nobody else writes the backing file
  }
  // close(2) need not wait for a FLUSH round trip: data is written through
  // at write(2) (or at fsync with the write-back cache), and locks are the
  // kernel's own.
  fi->noflush = 1;
}

// libfuse leaves FUSE_CAP_HANDLE_KILLPRIV on: we clear the set-user-ID bit
// (and set-group-ID with group execute) when a file is written or truncated
// by an unprivileged caller. The backing write is root's, which would keep
// them.
void kill_setid_bits(fuse_req_t req, int fd) {
  if (fuse_req_ctx(req)->uid == 0) return;
  struct stat st;
  if (::fstat(fd, &st) != 0) return;
  mode_t kill = S_ISUID;
  if (st.st_mode & S_IXGRP) kill |= S_ISGID;
  if (st.st_mode & kill) ::fchmod(fd, st.st_mode & 07777 & ~kill);
}

std::span<uint8_t> reply_buffer(size_t size) {
  thread_local std::vector<uint8_t> buffer;
  if (buffer.size() < size) buffer.resize(size);
  return {buffer.data(), size};
}

// The 8- or 16-byte id that binds an object's xattr values to it.
int object_id(Filesystem& fs, Inode& inode, std::vector<uint8_t>* out) {
  if (inode.file_type == S_IFDIR) {
    DirId id;
    if (int err = fs.dir_id(inode, &id)) return err;
    out->assign(id.bytes.begin(), id.bytes.end());
    return 0;
  }
  if (inode.file_type == S_IFREG) {
    FileId id;
    if (int err = fs.file_id(inode, -1, &id)) return err;
    out->assign(id.bytes.begin(), id.bytes.end());
    return 0;
  }
  return inode.file_type == S_IFLNK ? -EPERM : -ENOTSUP;
}

// "user.NAME" -> "NAME"; other namespaces are not stored.
const char* user_xattr_suffix(const char* name) {
  return std::strncmp(name, "user.", 5) == 0 && name[5] != '\0' ? name + 5 : nullptr;
}

// ---------------------------------------------------------------------------
// Operations

void op_init(void* userdata, fuse_conn_info* conn) {
  auto& fs = *static_cast<Filesystem*>(userdata);
  if (fs.options().writeback_cache && (conn->capable & FUSE_CAP_WRITEBACK_CACHE)) {
    conn->want |= FUSE_CAP_WRITEBACK_CACHE;
  }
  if (conn->capable & FUSE_CAP_PARALLEL_DIROPS) conn->want |= FUSE_CAP_PARALLEL_DIROPS;
  if (conn->capable & FUSE_CAP_ASYNC_DIO) conn->want |= FUSE_CAP_ASYNC_DIO;
  // We are the backing store's only writer: cached pages stay valid.
  conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
  conn->max_write = kMaxRequestBytes;
  conn->max_readahead = kMaxRequestBytes;
  conn->max_background = 64;
  conn->congestion_threshold = 48;
}

void op_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Filesystem& fs = fs_of(req);
  Inode& dir = fs.inode(parent);
  BackingName bn;
  if (int err = backing_name_for(fs, dir, name, &bn)) {
    fuse_reply_err(req, -err);
    return;
  }
  fuse_entry_param e;
  int err = lookup_backing(fs, dir, bn.name, &e);
  if (err == -ENOENT) {
    e = {};  // a negative entry the kernel may cache
    e.entry_timeout = fs.options().cache_timeout;
    fuse_reply_entry(req, &e);
  } else if (err) {
    fuse_reply_err(req, -err);
  } else {
    fuse_reply_entry(req, &e);
  }
}

void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  Filesystem& fs = fs_of(req);
  fs.forget(fs.inode(ino), nlookup);
  fuse_reply_none(req);
}

void op_forget_multi(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
  Filesystem& fs = fs_of(req);
  for (size_t i = 0; i < count; ++i) {
    fs.forget(fs.inode(forgets[i].ino), forgets[i].nlookup);
  }
  fuse_reply_none(req);
}

void op_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  Filesystem& fs = fs_of(req);
  const PathFd object = fs.path(fs.inode(ino));
  struct stat st;
  if (int err = stat_of(object.get(), &st)) {
    fuse_reply_err(req, -err);
    return;
  }
  show_attr(fs, object.get(), &st);
  fuse_reply_attr(req, &st, fs.options().cache_timeout);
}

// The caller's descriptor, `fd`, is the file's and writable.
int truncate_inode(Filesystem& fs, Inode& inode, int fd, uint64_t new_size) {
  FileId id;
  if (int err = fs.file_id(inode, fd, &id)) return err;
  if (int err = FileIo::load_size(inode, fd)) return err;
  return FileIo(inode, fd, id, fs.volume().contents(), fs.space()).truncate(new_size);
}

void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set,
                fuse_file_info* fi) {
  Filesystem& fs = fs_of(req);
  Inode& inode = fs.inode(ino);
  const PathFd object = fs.path(inode);
  const int path_fd = object.get();
  const std::string path = proc_fd_path(path_fd);
  int err = 0;

  if (to_set & FUSE_SET_ATTR_MODE) {
    if (::chmod(path.c_str(), attr->st_mode & 07777) != 0) err = -errno;
  }
  if (!err && (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID))) {
    uid_t uid = (to_set & FUSE_SET_ATTR_UID) ? attr->st_uid : static_cast<uid_t>(-1);
    gid_t gid = (to_set & FUSE_SET_ATTR_GID) ? attr->st_gid : static_cast<gid_t>(-1);
    if (::fchownat(path_fd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) err = -errno;
  }
  if (!err && (to_set & FUSE_SET_ATTR_SIZE)) {
    if (inode.file_type != S_IFREG) {
      err = -EINVAL;
    } else if (fi != nullptr) {
      err = truncate_inode(fs, inode, handle<OpenFile>(fi).fd.get(), attr->st_size);
      if (!err) kill_setid_bits(req, handle<OpenFile>(fi).fd.get());
    } else {
      UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
      err = fd.valid() ? truncate_inode(fs, inode, fd.get(), attr->st_size) : -errno;
      if (!err) kill_setid_bits(req, fd.get());
    }
  }
  if (!err && (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME))) {
    timespec times[2];
    times[0].tv_nsec = UTIME_OMIT;
    times[1].tv_nsec = UTIME_OMIT;
    if (to_set & FUSE_SET_ATTR_ATIME_NOW) {
      times[0].tv_nsec = UTIME_NOW;
    } else if (to_set & FUSE_SET_ATTR_ATIME) {
      times[0] = attr->st_atim;
    }
    if (to_set & FUSE_SET_ATTR_MTIME_NOW) {
      times[1].tv_nsec = UTIME_NOW;
    } else if (to_set & FUSE_SET_ATTR_MTIME) {
      times[1] = attr->st_mtim;
    }
    int rc = fi != nullptr ? ::futimens(handle<OpenFile>(fi).fd.get(), times)
                           : ::utimensat(AT_FDCWD, path.c_str(), times, 0);
    if (rc != 0) err = -errno;
  }
  if (err) {
    fuse_reply_err(req, -err);
    return;
  }
  op_getattr(req, ino, fi);
}

void op_readlink(fuse_req_t req, fuse_ino_t ino) {
  Filesystem& fs = fs_of(req);
  Inode& inode = fs.inode(ino);
  std::string target;
  if (int err = symlinks_of(fs).read(fs.path(inode).get(), inode.ino, &target)) {
    fuse_reply_err(req, -err);
    return;
  }
  fuse_reply_readlink(req, target.c_str());
}

// Looks a new entry up and replies with it.
void reply_new_entry(fuse_req_t req, Filesystem& fs, Inode& dir, const BackingName& bn) {
  fuse_entry_param e;
  if (int err = lookup_backing(fs, dir, bn.name, &e)) {
    fuse_reply_err(req, -err);
    return;
  }
  fuse_reply_entry(req, &e);
}

// The steps every new entry takes: encrypt its name (making the long-name
// companion if needed), create the backing object with `make`, set it up
// with `finish` (ids, owner), undo what was made if a step fails, and reply
// with the new entry. `make` gets the directory, its names and the backing
// name, `finish` the directory and the backing name; both return 0 or
// -errno.
template <typename Make, typename Finish>
void add_entry(fuse_req_t req, fuse_ino_t parent, const char* name, int undo_flags, Make&& make,
               Finish&& finish) {
  Filesystem& fs = fs_of(req);
  Inode& dir = fs.inode(parent);
  BackingName bn;
  bool made_companion = false;
  std::optional<EncryptedDirectory> names;
  int err = names_of(fs, dir, name, &names);
  if (!err) err = names->prepare_entry(name, &bn, &made_companion);
  if (!err && (err = make(dir, *names, bn.name.c_str())) != 0) {
    if (made_companion) names->remove_companion(bn);
  } else if (!err && (err = finish(dir, bn.name.c_str())) != 0) {
    ::unlinkat(dir.fd.get(), bn.name.c_str(), undo_flags);
    if (made_companion) names->remove_companion(bn);
  }
  if (err) {
    fuse_reply_err(req, -err);
    return;
  }
  reply_new_entry(req, fs, dir, bn);
}

int errno_unless(bool ok) { return ok ? 0 : -errno; }
int nothing_to_finish(Inode&, const char*) { return 0; }

void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  add_entry(
      req, parent, name, AT_REMOVEDIR,
      [&](Inode& dir, EncryptedDirectory&, const char* at) {
        return errno_unless(::mkdirat(dir.fd.get(), at, mode & 07777) == 0);
      },
      [&](Inode& dir, const char* at) {
        UniqueFd fd(::openat(dir.fd.get(), at, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (!fd.valid()) return -errno;
        if (int err = write_object_id(fd.get(), DirId::random().bytes)) return err;
        return give_to_caller(req, dir, fd.get(), nullptr, mode, true);
      });
}

// The kernel lets only callers with CAP_MKNOD make device nodes.
void op_mknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
  const mode_t type = mode & S_IFMT;
  const bool device = type == S_IFCHR || type == S_IFBLK;
  if (type != S_IFREG && type != S_IFIFO && type != S_IFSOCK && !device) {
    fuse_reply_err(req, EINVAL);
    return;
  }
  add_entry(
      req, parent, name, 0,
      [&](Inode& dir, EncryptedDirectory&, const char* at) {
        if (device) return make_device_node(fs_of(req).volume().names(), dir.fd.get(), at, mode, rdev);
        return errno_unless(::mknodat(dir.fd.get(), at, mode, rdev) == 0);
      },
      [&](Inode& dir, const char* at) {
        const int flags = (type == S_IFREG ? O_RDONLY : O_PATH) | O_NOFOLLOW | O_CLOEXEC;
        UniqueFd fd(::openat(dir.fd.get(), at, flags));
        if (!fd.valid()) return -errno;
        if (type == S_IFREG) {
          if (int err = write_object_id(fd.get(), FileId::random().bytes)) return err;
        }
        return give_to_caller(req, dir, fd.get(), nullptr, mode, false);
      });
}

void op_symlink(fuse_req_t req, const char* link, fuse_ino_t parent, const char* name) {
  SymlinkTargets symlinks = symlinks_of(fs_of(req));
  add_entry(
      req, parent, name, 0,
      [&](Inode& dir, EncryptedDirectory&, const char* at) {
        if (int err = symlinks.make(dir.fd.get(), at, link)) return err;
        if (int err = give_to_caller(req, dir, dir.fd.get(), at, 0, false)) {
          symlinks.unmake(dir.fd.get(), at);
          return err;
        }
        return 0;
      },
      nothing_to_finish);
}

void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char* newname) {
  Inode& inode = fs_of(req).inode(ino);
  add_entry(
      req, newparent, newname, 0,
      [&](Inode& dir, EncryptedDirectory&, const char* at) {
        return errno_unless(
            ::linkat(fs_of(req).path(inode).get(), "", dir.fd.get(), at, AT_EMPTY_PATH) == 0);
      },
      nothing_to_finish);
}

// A non-directory about to lose a name (unlink, or a rename over it): held
// by a descriptor across the removal, its inode pinned if the kernel knows
// it. Once the name is gone and it has no link left, its blocks are
// un-counted: at once if nothing holds it, else when its inode is dropped
// (an open file keeps its blocks until then).
class NameLoss {
 public:
  NameLoss(Filesystem& fs, int dir_fd, const char* backing_name) {
    victim_.reset(::openat(dir_fd, backing_name, O_PATH | O_NOFOLLOW | O_CLOEXEC));
    if (!victim_.valid() || stat_of(victim_.get(), &st_) != 0 || S_ISDIR(st_.st_mode)) {
      victim_.reset();
      return;
    }
    fs.inodes().pin(victim_.get(), st_);
  }
  // The lstat of the entry before it lost the name, or nullptr when it
  // could not be held (gone already, or a directory).
  const struct stat* held() const { return victim_.valid() ? &st_ : nullptr; }
  void done(Filesystem& fs) {
    struct stat now;
    if (!victim_.valid() || ::fstat(victim_.get(), &now) != 0 || now.st_nlink != 0) return;
    if (!S_ISREG(now.st_mode)) return;  // the limit counts regular files only
    switch (fs.inodes().orphan(victim_.get(), st_)) {
      case InodeTable::Orphaned::kUnknown:
        fs.space().charge(-static_cast<int64_t>(now.st_blocks) * 512);
        break;
      case InodeTable::Orphaned::kNow:
        fs.space().orphan_held();
        break;
      case InodeTable::Orphaned::kAlready:
        break;
    }
  }

 private:
  UniqueFd victim_;
  struct stat st_ = {};
};

void remove_entry(fuse_req_t req, fuse_ino_t parent, const char* name, bool directory) {
  Filesystem& fs = fs_of(req);
  Inode& dir = fs.inode(parent);
  BackingName bn;
  std::optional<EncryptedDirectory> names;
  int err = names_of(fs, dir, name, &names);
  if (!err) err = names->backing_name(name, &bn);
  if (err) {
    fuse_reply_err(req, -err);
    return;
  }
  SymlinkTargets symlinks = symlinks_of(fs);
  std::string target_companion;  // of a symlink's long target
  std::optional<NameLoss> loss;
  if (!directory) {
    loss.emplace(fs, dir.fd.get(), bn.name.c_str());
    if (const struct stat* st = loss->held(); st != nullptr && st->st_nlink == 1) {
      target_companion = symlinks.companion_of_last_link(dir.fd.get(), bn.name.c_str(), *st);
    }
  }
  if (::unlinkat(dir.fd.get(), bn.name.c_str(), directory ? AT_REMOVEDIR : 0) != 0) {
    fuse_reply_err(req, errno);
    return;
  }
  if (loss) loss->done(fs);
  names->remove_companion(bn);
  symlinks.remove_companion(target_companion);
  fuse_reply_err(req, 0);
}

void op_unlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  remove_entry(req, parent, name, false);
}

void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  remove_entry(req, parent, name, true);
}

void op_rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent,
               const char* newname, unsigned int flags) {
  Filesystem& fs = fs_of(req);
  if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) {
    fuse_reply_err(req, EINVAL);
    return;
  }
  Inode& from_dir = fs.inode(parent);
  Inode& to_dir = fs.inode(newparent);
  BackingName from, to;
  bool made_companion = false;
  std::optional<EncryptedDirectory> from_names, to_names;
  int err = names_of(fs, from_dir, name, &from_names);
  if (!err) err = from_names->backing_name(name, &from);
  if (!err) err = names_of(fs, to_dir, newname, &to_names);
  if (!err) err = to_names->prepare_entry(newname, &to, &made_companion);
  if (err) {
    fuse_reply_err(req, -err);
    return;
  }
  SymlinkTargets symlinks = symlinks_of(fs);
  std::string target_companion;      // of a replaced symlink's long target
  std::optional<NameLoss> replaced;  // the entry renamed over, if any
  if (!(flags & (RENAME_EXCHANGE | RENAME_NOREPLACE))) {
    replaced.emplace(fs, to_dir.fd.get(), to.name.c_str());
    const struct stat* st = replaced->held();
    struct stat source;
    if (st != nullptr && st->st_nlink == 1) {
      target_companion = symlinks.companion_of_last_link(to_dir.fd.get(), to.name.c_str(), *st);
      // Renaming a name onto itself replaces nothing.
      if (!target_companion.empty() &&
          ::fstatat(from_dir.fd.get(), from.name.c_str(), &source, AT_SYMLINK_NOFOLLOW) == 0 &&
          source.st_ino == st->st_ino && source.st_dev == st->st_dev) {
        target_companion.clear();
      }
    }
  }
  if (::renameat2(from_dir.fd.get(), from.name.c_str(), to_dir.fd.get(), to.name.c_str(),
                  flags) != 0) {
    err = errno;
    if (made_companion) to_names->remove_companion(to);
    fuse_reply_err(req, err);
    return;
  }
  if (replaced) replaced->done(fs);
  // After an exchange both names still exist; otherwise the old one is gone.
  if (!(flags & RENAME_EXCHANGE) && !(&from_dir == &to_dir && from.name == to.name)) {
    from_names->remove_companion(from);
  }
  symlinks.remove_companion(target_companion);
  fuse_reply_err(req, 0);
}

int open_backing(Filesystem& fs, Inode& inode, int flags, std::unique_ptr<OpenFile>* out) {
  auto file = std::make_unique<OpenFile>();
  file->fd.reset(::open(proc_fd_path(fs.path(inode).get()).c_str(), backing_open_flags(flags)));
  if (!file->fd.valid()) return -errno;
  FileId id;
  if (int err = fs.file_id(inode, file->fd.get(), &id)) return err;
  if (int err = FileIo::load_size(inode, file->fd.get())) return err;
  file->count_writer(inode, flags);
  *out = std::move(file);
  return 0;
}

void op_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Filesystem& fs = fs_of(req);
  Inode& inode = fs.inode(ino);
  std::unique_ptr<OpenFile> file;
  if (int err = open_backing(fs, inode, fi->flags, &file)) {
    fuse_reply_err(req, -err);
    return;
  }
  // libfuse asks for atomic O_TRUNC, so the kernel leaves truncation (and
  // clearing set-id bits, as truncate(2) does) to open.
  if (fi->flags & O_TRUNC) {
    if (int err = truncate_inode(fs, inode, file->fd.get(), 0)) {
      fuse_reply_err(req, -err);
      return;
    }
    kill_setid_bits(req, file->fd.get());
  }
  set_file_info(fs, fi, fi->flags);
  fi->fh = to_handle(std::move(file));
  if (fuse_reply_open(req, fi) == -ENOENT) take_handle<OpenFile>(fi);  // interrupted
}

void op_create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
               fuse_file_info* fi) {
  Filesystem& fs = fs_of(req);
  Inode& dir = fs.inode(parent);
  BackingName bn;
  bool made_companion = false;
  std::optional<EncryptedDirectory> names;
  int named = names_of(fs, dir, name, &names);
  if (!named) named = names->prepare_entry(name, &bn, &made_companion);
  if (named) {
    fuse_reply_err(req, -named);
    return;
  }
  // Create exclusively so that the new file id is never written over an
  // existing file's; an existing file is opened instead unless O_EXCL.
  UniqueFd fd(::openat(dir.fd.get(), bn.name.c_str(),
                       backing_open_flags(fi->flags) | O_CREAT | O_EXCL | O_NOFOLLOW,
                       mode & 07777));
  if (!fd.valid()) {
    int err = errno;
    if (made_companion) names->remove_companion(bn);
    if (err != EEXIST || (fi->flags & O_EXCL)) {
      fuse_reply_err(req, err);
      return;
    }
    fuse_entry_param e;
    std::unique_ptr<OpenFile> file;
    if ((err = -lookup_backing(fs, dir, bn.name, &e)) == 0) {
      Inode& inode = fs.inode(e.ino);
      err = inode.file_type == S_IFREG ? -open_backing(fs, inode, fi->flags, &file) : EISDIR;
      if (!err && (fi->flags & O_TRUNC)) {
        err = -truncate_inode(fs, inode, file->fd.get(), 0);
        if (!err) kill_setid_bits(req, file->fd.get());
      }
      if (err) fs.forget(inode, 1);
    }
    if (err) {
      fuse_reply_err(req, err);
      return;
    }
    set_file_info(fs, fi, fi->flags);
    fi->fh = to_handle(std::move(file));
    if (fuse_reply_create(req, &e, fi) == -ENOENT) take_handle<OpenFile>(fi);
    return;
  }
  const FileId id = FileId::random();
  int err = write_object_id(fd.get(), id.bytes);
  if (!err) err = give_to_caller(req, dir, fd.get(), nullptr, mode, false);
  fuse_entry_param e;
  if (!err) err = lookup_backing(fs, dir, bn.name, &e);
  if (err) {
    ::unlinkat(dir.fd.get(), bn.name.c_str(), 0);
    if (made_companion) names->remove_companion(bn);
    fuse_reply_err(req, -err);
    return;
  }
  Inode& inode = fs.inode(e.ino);
  FileIo::start_empty(inode);
  {
    std::lock_guard lock(inode.ids_mu);
    inode.file_id = id;  // just written: no need to read it back
  }
  auto file = std::make_unique<OpenFile>();
  file->fd = std::move(fd);
  file->count_writer(inode, fi->flags);
  set_file_info(fs, fi, fi->flags);
  fi->fh = to_handle(std::move(file));
  if (fuse_reply_create(req, &e, fi) == -ENOENT) take_handle<OpenFile>(fi);
}

// The open file's descriptor and id, or an error reply (false) when the
// backing file has no valid id.
bool open_file(fuse_req_t req, Filesystem& fs, Inode& inode, fuse_file_info* fi, int* fd,
               FileId* id) {
  *fd = handle<OpenFile>(fi).fd.get();
  if (int err = fs.file_id(inode, *fd, id)) {
    fuse_reply_err(req, -err);
    return false;
  }
  return true;
}

void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  Filesystem& fs = fs_of(req);
  Inode& inode = fs.inode(ino);
  int fd;
  FileId id;
  if (!open_file(req, fs, inode, fi, &fd, &id)) return;
  std::span<uint8_t> out = reply_buffer(std::min(size, kMaxRequestBytes));
  const ssize_t n = FileIo(inode, fd, id, fs.volume().contents(), fs.space()).read(off, out);
  if (n < 0) {
    fuse_reply_err(req, static_cast<int>(-n));
  } else {
    fuse_reply_buf(req, reinterpret_cast<const char*>(out.data()), static_cast<size_t>(n));
  }
}

void op_write(fuse_req_t req, fuse_ino_t ino, const char* buf, size_t size, off_t off,
              fuse_file_info* fi) {
  Filesystem& fs = fs_of(req);
  Inode& inode = fs.inode(ino);
  int fd;
  FileId id;
  if (!open_file(req, fs, inode, fi, &fd, &id)) return;
  const ssize_t n = FileIo(inode, fd, id, fs.volume().contents(), fs.space())
                        .write(off, {reinterpret_cast<const uint8_t*>(buf), size});
  if (n > 0) kill_setid_bits(req, fd);
  if (n < 0) {
    fuse_reply_err(req, static_cast<int>(-n));
  } else {
    fuse_reply_write(req, static_cast<size_t>(n));
  }
}

void op_flush(fuse_req_t req, fuse_ino_t, fuse_file_info*) { fuse_reply_err(req, 0); }

void op_release(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  take_handle<OpenFile>(fi);
  fuse_reply_err(req, 0);
}

void op_fsync(fuse_req_t req, fuse_ino_t, int datasync, fuse_file_info* fi) {
  const int fd = handle<OpenFile>(fi).fd.get();
  fuse_reply_err(req, (datasync ? ::fdatasync(fd) : ::fsync(fd)) == 0 ? 0 : errno);
}

void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
                  fuse_file_info* fi) {
  Filesystem& fs = fs_of(req);
  Inode& inode = fs.inode(ino);
  if (mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) {
    // Collapse and insert would shift data between units, whose tweaks
    // depend on their position.
    fuse_reply_err(req, EOPNOTSUPP);
    return;
  }
  int fd;
  FileId id;
  if (!open_file(req, fs, inode, fi, &fd, &id)) return;
  // The lock is released before the reply: afterwards the kernel may forget
  // the inode, which frees it.
  const int err = FileIo(inode, fd, id, fs.volume().contents(), fs.space())
                      .fallocate(mode, static_cast<uint64_t>(offset), static_cast<uint64_t>(length));
  fuse_reply_err(req, -err);
}

void op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, fuse_file_info* fi) {
  Filesystem& fs = fs_of(req);
  // With the write-back cache, data may still sit in the kernel's dirty pages
  // where the backing file has a hole. ENOSYS makes the kernel answer itself
  // (the whole file counts as data), which is correct, if less precise.
  if (fs.options().writeback_cache) {
    fuse_reply_err(req, ENOSYS);
    return;
  }
  // Without it, only a shared writable mapping leaves dirty pages, and only
  // while the file is open for writing: those are written back first, so
  // that the backing file answers as ext4 would from its page cache.
  if ((whence == SEEK_DATA || whence == SEEK_HOLE) && fs.inode(ino).writers.load() > 0) {
    fs.write_back_cached(ino, off);
  }
  off_t result = ::lseek(handle<OpenFile>(fi).fd.get(), off, whence);
  if (result < 0) {
    fuse_reply_err(req, errno);
  } else {
    fuse_reply_lseek(req, result);
  }
}

void op_opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Filesystem& fs = fs_of(req);
  Inode& inode = fs.inode(ino);
  auto dir = std::make_unique<OpenDir>();
  if (int err = fs.dir_id(inode, &dir->id)) {
    fuse_reply_err(req, -err);
    return;
  }
  int fd = ::openat(inode.fd.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0 || (dir->dir = ::fdopendir(fd)) == nullptr) {
    int err = errno;
    if (fd >= 0) ::close(fd);
    fuse_reply_err(req, err);
    return;
  }
  fi->fh = to_handle(std::move(dir));
  fi->cache_readdir = 0;
  if (fuse_reply_open(req, fi) == -ENOENT) take_handle<OpenDir>(fi);
}

// Fills `buf` with entries from `offset` on; returns bytes used or -errno.
ssize_t fill_dir_buffer(fuse_req_t req, Filesystem& fs, Inode& parent, OpenDir& dir,
                        off_t offset, std::vector<char>& buf, bool plus) {
  const size_t size = buf.size();
  std::lock_guard lock(dir.mu);
  if (offset != dir.offset) {
    ::seekdir(dir.dir, offset);
    dir.pending = nullptr;
    dir.offset = offset;
  }
  EncryptedDirectory names(::dirfd(dir.dir), dir.id, fs.volume().names());
  size_t used = 0;
  for (;;) {
    if (dir.pending == nullptr) {
      errno = 0;
      dir.pending = ::readdir(dir.dir);
      if (dir.pending == nullptr) {
        if (errno != 0 && used == 0) return -errno;
        break;
      }
    }
    dirent* entry = dir.pending;
    auto name = names.plaintext_name(entry->d_name, entry->d_ino);
    if (!name) {
      dir.pending = nullptr;
      dir.offset = entry->d_off;
      continue;
    }
    size_t added;
    if (plus) {
      fuse_entry_param e = {};
      Inode* acquired = nullptr;
      if (is_dot(entry->d_name)) {
        e.attr.st_ino = entry->d_ino;
        e.attr.st_mode = static_cast<mode_t>(entry->d_type) << 12;
      } else if (lookup_backing(fs, parent, entry->d_name, &e) == 0) {
        acquired = &fs.inode(e.ino);
      } else {
        dir.pending = nullptr;  // vanished meanwhile
        dir.offset = entry->d_off;
        continue;
      }
      added = fuse_add_direntry_plus(req, buf.data() + used, size - used, name->c_str(), &e,
                                     entry->d_off);
      if (added > size - used && acquired != nullptr) fs.forget(*acquired, 1);
    } else {
      struct stat st = {};
      st.st_ino = entry->d_ino;
      const unsigned char type =
          shown_entry_type(fs.volume().names(), ::dirfd(dir.dir), entry->d_name, entry->d_type);
      st.st_mode = static_cast<mode_t>(type) << 12;
      added = fuse_add_direntry(req, buf.data() + used, size - used, name->c_str(), &st,
                                entry->d_off);
    }
    if (added > size - used) break;  // keep `pending` for the next call
    used += added;
    dir.pending = nullptr;
    dir.offset = entry->d_off;
  }
  return static_cast<ssize_t>(used);
}

// Replies only after the handle's lock is released: once the reply is out,
// the kernel may release the handle (and free it) on another thread.
void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, fuse_file_info* fi,
                bool plus) {
  Filesystem& fs = fs_of(req);
  std::vector<char> buf(size);
  ssize_t used = fill_dir_buffer(req, fs, fs.inode(ino), handle<OpenDir>(fi), offset, buf, plus);
  if (used < 0) {
    fuse_reply_err(req, static_cast<int>(-used));
  } else {
    fuse_reply_buf(req, buf.data(), static_cast<size_t>(used));
  }
}

void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  do_readdir(req, ino, size, off, fi, false);
}

void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  do_readdir(req, ino, size, off, fi, true);
}

void op_releasedir(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  take_handle<OpenDir>(fi);
  fuse_reply_err(req, 0);
}

void op_fsyncdir(fuse_req_t req, fuse_ino_t, int datasync, fuse_file_info* fi) {
  const int fd = ::dirfd(handle<OpenDir>(fi).dir);
  fuse_reply_err(req, (datasync ? ::fdatasync(fd) : ::fsync(fd)) == 0 ? 0 : errno);
}

void op_statfs(fuse_req_t req, fuse_ino_t) {
  Filesystem& fs = fs_of(req);
  struct statvfs st;
  if (::fstatvfs(fs.volume().root_fd(), &st) != 0) {
    fuse_reply_err(req, errno);
    return;
  }
  st.f_namemax = kMaxNameBytes;
  fs.space().apply_to(&st);
  fuse_reply_statfs(req, &st);
}

void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value,
                 size_t size, int flags) {
  Filesystem& fs = fs_of(req);
  Inode& inode = fs.inode(ino);
  const char* suffix = user_xattr_suffix(name);
  if (suffix == nullptr) {
    fuse_reply_err(req, EOPNOTSUPP);
    return;
  }
  std::vector<uint8_t> id;
  if (int err = object_id(fs, inode, &id)) {
    fuse_reply_err(req, -err);
    return;
  }
  NameCipher& names = fs.volume().names();
  const std::string stored_name = names.encrypt_xattr_name(suffix);
  if (stored_name.size() > XATTR_NAME_MAX) {
    fuse_reply_err(req, ERANGE);
    return;
  }
  auto stored = names.encrypt_xattr_value(id, suffix,
                                          {reinterpret_cast<const uint8_t*>(value), size});
  int rc = ::setxattr(proc_fd_path(fs.path(inode).get()).c_str(), stored_name.c_str(), stored.data(),
                      stored.size(), flags);
  fuse_reply_err(req, rc == 0 ? 0 : errno);
}

void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  Filesystem& fs = fs_of(req);
  Inode& inode = fs.inode(ino);
  const char* suffix = user_xattr_suffix(name);
  if (suffix == nullptr || inode.file_type == S_IFLNK) {
    fuse_reply_err(req, ENODATA);  // we keep no security.*, system.*, trusted.*
    return;
  }
  std::vector<uint8_t> id;
  if (int err = object_id(fs, inode, &id)) {
    fuse_reply_err(req, err == -ENOTSUP ? ENODATA : -err);
    return;
  }
  NameCipher& names = fs.volume().names();
  const std::string stored_name = names.encrypt_xattr_name(suffix);
  const PathFd object = fs.path(inode);
  const std::string path = proc_fd_path(object.get());
  std::vector<uint8_t> stored(XATTR_SIZE_MAX);
  ssize_t n = ::getxattr(path.c_str(), stored_name.c_str(), stored.data(), stored.size());
  if (n < 0) {
    fuse_reply_err(req, errno == ENAMETOOLONG || errno == ERANGE ? ENODATA : errno);
    return;
  }
  stored.resize(static_cast<size_t>(n));
  auto value = names.decrypt_xattr_value(id, suffix, stored);
  if (!value) {
    log::warning("an extended attribute does not decrypt (backing inode " +
                 std::to_string(inode.ino) + ")");
    fuse_reply_err(req, EIO);
  } else if (size == 0) {
    fuse_reply_xattr(req, value->size());
  } else if (size < value->size()) {
    fuse_reply_err(req, ERANGE);
  } else {
    fuse_reply_buf(req, reinterpret_cast<const char*>(value->data()), value->size());
  }
}

void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  Filesystem& fs = fs_of(req);
  Inode& inode = fs.inode(ino);
  std::string list;
  if (inode.file_type != S_IFLNK) {
    std::vector<char> stored(XATTR_LIST_MAX);
    const PathFd object = fs.path(inode);
    ssize_t n = ::listxattr(proc_fd_path(object.get()).c_str(), stored.data(), stored.size());
    if (n < 0) {
      fuse_reply_err(req, errno);
      return;
    }
    for (ssize_t pos = 0; pos < n;) {
      std::string_view stored_name(stored.data() + pos);
      pos += static_cast<ssize_t>(stored_name.size()) + 1;
      if (auto name = fs.volume().names().decrypt_xattr_name(stored_name)) {
        list += "user.";
        list += *name;
        list.push_back('\0');
      }
    }
  }
  if (size == 0) {
    fuse_reply_xattr(req, list.size());
  } else if (size < list.size()) {
    fuse_reply_err(req, ERANGE);
  } else {
    fuse_reply_buf(req, list.data(), list.size());
  }
}

void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  Filesystem& fs = fs_of(req);
  const char* suffix = user_xattr_suffix(name);
  if (suffix == nullptr) {
    fuse_reply_err(req, ENODATA);
    return;
  }
  const std::string stored_name = fs.volume().names().encrypt_xattr_name(suffix);
  const PathFd object = fs.path(fs.inode(ino));
  int rc = ::removexattr(proc_fd_path(object.get()).c_str(), stored_name.c_str());
  fuse_reply_err(req, rc == 0 ? 0 : errno);
}

// Every handler runs inside this guard: an exception (an OpenSSL failure,
// std::bad_alloc) becomes an errno reply instead of reaching
// std::terminate and taking the volume down. Handlers reply last, after
// everything that can throw, so a request that threw has no reply yet.
// kNoReply: forget takes no reply but fuse_reply_none; every other request
// an errno.
template <auto Op, bool kNoReply = false>
struct Guarded;

template <typename... Args, void (*Op)(fuse_req_t, Args...), bool kNoReply>
struct Guarded<Op, kNoReply> {
  static void call(fuse_req_t req, Args... args) noexcept {
    int err;
    try {
      Op(req, args...);
      return;
    } catch (const std::bad_alloc&) {
      err = ENOMEM;
    } catch (const std::exception& e) {
      log::error(std::string("a request failed: ") + e.what());
      err = EIO;
    } catch (...) {
      log::error("a request failed with an unknown exception");
      err = EIO;
    }
    if constexpr (kNoReply) {
      fuse_reply_none(req);
    } else {
      fuse_reply_err(req, err);
    }
  }
};

void guarded_init(void* userdata, fuse_conn_info* conn) noexcept {
  try {
    op_init(userdata, conn);
  } catch (const std::exception& e) {
    log::error(std::string("init failed: ") + e.what());
  }
}

fuse_lowlevel_ops make_operations() {
  fuse_lowlevel_ops ops = {};
  ops.init = guarded_init;
  ops.lookup = Guarded<op_lookup>::call;
  ops.forget = Guarded<op_forget, true>::call;
  ops.forget_multi = Guarded<op_forget_multi, true>::call;
  ops.getattr = Guarded<op_getattr>::call;
  ops.setattr = Guarded<op_setattr>::call;
  ops.readlink = Guarded<op_readlink>::call;
  ops.mkdir = Guarded<op_mkdir>::call;
  ops.mknod = Guarded<op_mknod>::call;
  ops.symlink = Guarded<op_symlink>::call;
  ops.link = Guarded<op_link>::call;
  ops.unlink = Guarded<op_unlink>::call;
  ops.rmdir = Guarded<op_rmdir>::call;
  ops.rename = Guarded<op_rename>::call;
  ops.open = Guarded<op_open>::call;
  ops.create = Guarded<op_create>::call;
  ops.read = Guarded<op_read>::call;
  ops.write = Guarded<op_write>::call;
  ops.flush = Guarded<op_flush>::call;
  ops.release = Guarded<op_release>::call;
  ops.fsync = Guarded<op_fsync>::call;
  ops.fallocate = Guarded<op_fallocate>::call;
  ops.lseek = Guarded<op_lseek>::call;
  ops.opendir = Guarded<op_opendir>::call;
  ops.readdir = Guarded<op_readdir>::call;
  ops.readdirplus = Guarded<op_readdirplus>::call;
  ops.releasedir = Guarded<op_releasedir>::call;
  ops.fsyncdir = Guarded<op_fsyncdir>::call;
  ops.statfs = Guarded<op_statfs>::call;
  ops.setxattr = Guarded<op_setxattr>::call;
  ops.getxattr = Guarded<op_getxattr>::call;
  ops.listxattr = Guarded<op_listxattr>::call;
  ops.removexattr = Guarded<op_removexattr>::call;
  return ops;
}

}  // namespace

Filesystem::Filesystem(Volume& volume, FilesystemOptions options)
    : volume_(volume), options_(options), space_(options.size_limit, options.used_at_start) {
  UniqueFd fd(::open(volume_.backing().c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  struct stat st;
  if (!fd.valid() || stat_of(fd.get(), &st) != 0) {
    throw std::runtime_error("cannot open the backing root");
  }
  root_ = &inodes_.add_root(std::move(fd), st);
}

const fuse_lowlevel_ops& Filesystem::operations() {
  static const fuse_lowlevel_ops ops = make_operations();
  return ops;
}

void Filesystem::forget(Inode& inode, uint64_t n) {
  if (fault_injected("slow-forget")) std::this_thread::sleep_for(std::chrono::milliseconds(300));
  if (const auto freed = inodes_.forget(inode, n)) space_.orphan_freed(*freed);
}

Inode& Filesystem::inode(fuse_ino_t ino) {
  return ino == FUSE_ROOT_ID ? *root_ : *reinterpret_cast<Inode*>(ino);
}

void Filesystem::write_back_cached(fuse_ino_t ino, off_t from) {
  if (fuse_session* session = session_.load()) {
    fuse_lowlevel_notify_inval_inode(session, ino, from, 0);
  }
}

int Filesystem::dir_id(Inode& dir, DirId* out) {
  if (dir.file_type != S_IFDIR) return -ENOTDIR;
  std::lock_guard lock(dir.ids_mu);
  if (!dir.dir_id) {
    DirId id;
    if (int err = read_dir_id(dir.fd.get(), &id)) {
      log::warning("a directory has no valid id (backing inode " + std::to_string(dir.ino) +
                   "); it was changed on disk");
      return err;
    }
    dir.dir_id = id;
  }
  *out = *dir.dir_id;
  return 0;
}

int Filesystem::file_id(Inode& file, int open_fd, FileId* out) {
  std::lock_guard lock(file.ids_mu);
  if (!file.file_id) {
    UniqueFd own;
    if (open_fd < 0) {  // xattr ids are read through a real descriptor
      own.reset(::open(proc_fd_path(path(file).get()).c_str(), O_RDONLY | O_CLOEXEC));
      if (!own.valid()) return -errno;
      open_fd = own.get();
    }
    FileId id;
    if (int err = read_file_id(open_fd, &id)) {
      log::warning("a file has no valid id (backing inode " + std::to_string(file.ino) +
                   "); it was changed on disk");
      return err;
    }
    file.file_id = id;
  }
  *out = *file.file_id;
  return 0;
}

}  // namespace scratchcrypt
