// Filesystem: the FUSE low-level operations of one mounted volume.
//
// Every name is encrypted with the parent directory's id before it touches
// the backing store, every byte of file contents goes through
// EncryptedFile, and metadata (owner, mode, times, size, links) is the
// backing inode's own. Runs as root with allow_other and
// default_permissions: the kernel checks permissions, and new objects are
// given to the calling user (setgid directories honoured).
#pragma once

#include <fuse_lowlevel.h>

#include <atomic>
#include <cstdint>

#include "fuse/inode.h"
#include "fuse/space_limit.h"
#include "fuse/volume.h"

namespace scratchcrypt {

struct FilesystemOptions {
  // Kernel write-back caching of file data: faster small writes, but errors
  // such as ENOSPC surface at fsync/close instead of write, unlike a local
  // disk. Off unless the operator asks for it.
  bool writeback_cache = false;
  double cache_timeout = 3600;  // entry/attr timeouts: we are the only writer
  uint64_t size_limit = 0;      // bytes the volume may occupy; 0 = the disk's
  // Bytes of backing blocks the volume's regular files already hold, when an
  // existing volume is mounted again: the size limit counts from there.
  uint64_t used_at_start = 0;
};

class Filesystem {
 public:
  Filesystem(Volume& volume, FilesystemOptions options);

  static const fuse_lowlevel_ops& operations();

  Volume& volume() { return volume_; }
  const FilesystemOptions& options() const { return options_; }
  InodeTable& inodes() { return inodes_; }
  Inode& inode(fuse_ino_t ino);
  Inode& root() { return *root_; }
  // Lowers an inode's lookup count (InodeTable::forget), and un-counts the
  // blocks of an orphan that goes.
  void forget(Inode& inode, uint64_t n);
  // The session serving the volume, for notifications to the kernel.
  void attach_session(fuse_session* session) { session_ = session; }
  // Makes the kernel write back the dirty cached pages of node `ino` from
  // `from` on (it drops that part of its cache, laundering dirty pages
  // first). Must not be called with a lock a WRITE request would need.
  void write_back_cached(fuse_ino_t ino, off_t from);

  // A descriptor of the inode's backing object for one operation.
  PathFd path(Inode& inode) { return inode.path(volume_.root_fd()); }

  // Ids of backing objects, cached in the inode. -EIO if missing/corrupt.
  // `open_fd` is a descriptor of the file if the caller has one, else -1.
  int dir_id(Inode& dir, DirId* out);
  int file_id(Inode& file, int open_fd, FileId* out);

  // The size limit and the space the volume uses against it.
  SpaceLimit& space() { return space_; }

 private:
  Volume& volume_;
  FilesystemOptions options_;
  InodeTable inodes_;
  Inode* root_ = nullptr;
  std::atomic<fuse_session*> session_{nullptr};
  SpaceLimit space_;
};

}  // namespace scratchcrypt
