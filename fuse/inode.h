// Inode and InodeTable: the filesystem's view of backing objects.
//
// As in libfuse's passthrough_hp, every inode the kernel knows holds an
// O_PATH descriptor of its backing object, so operations work on descriptors
// and never on backing paths (renames cannot race them). The FUSE node id is
// the Inode's address; the kernel's lookup count decides its lifetime.
#pragma once

#include <sys/stat.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <utility>
#include <vector>

#include "crypto/contents_cipher.h"
#include "crypto/name_cipher.h"
#include "fuse/unique_fd.h"

namespace scratchcrypt {

// A descriptor of an inode's backing object for the length of one
// operation: borrowed from the inode, or opened from its file handle.
class PathFd {
 public:
  explicit PathFd(int borrowed) : borrowed_(borrowed) {}
  explicit PathFd(UniqueFd owned) : owned_(std::move(owned)) {}
  int get() const { return owned_.valid() ? owned_.get() : borrowed_; }

 private:
  int borrowed_ = -1;
  UniqueFd owned_;
};

struct Inode {
  Inode(UniqueFd path_fd, std::vector<uint8_t> file_handle, dev_t d, ino_t i, mode_t type)
      : fd(std::move(path_fd)), handle(std::move(file_handle)), dev(d), ino(i), file_type(type) {}

  // Directories hold an O_PATH descriptor for their whole life. Other
  // inodes hold only a file handle (name_to_handle_at), so that a tree of
  // any size fits in the daemon's descriptor limit (which a container may
  // keep at a few thousand); they get a descriptor when handles are not
  // supported, or when they are about to lose their last name (pin()),
  // since a handle of an unlinked inode no longer opens.
  PathFd path(int mount_fd);
  void pin(int mount_fd);

  std::mutex fd_mu;             // guards fd of non-directories
  UniqueFd fd;                  // see above; directories: set once, never changes
  const std::vector<uint8_t> handle;  // struct file_handle, or empty
  const dev_t dev;
  const ino_t ino;
  const mode_t file_type;  // S_IFMT bits
  std::atomic<uint64_t> lookups{0};

  // Data path: shared for reads, exclusive for writes, truncation and
  // fallocate, so a read never sees a half-rewritten data unit.
  std::shared_mutex io;
  // Under io: the plaintext (= stored) size, once an open loaded it.
  std::optional<uint64_t> size;
  // Under io: backing bytes allocated (st_blocks * 512), for the size limit.
  uint64_t allocated = 0;

  // The per-object ids (docs/FORMAT.md), read once from the backing xattr.
  std::mutex ids_mu;
  std::optional<FileId> file_id;
  std::optional<DirId> dir_id;
};

class InodeTable {
 public:
  // The inode for (dev, ino), created from `fd` if the table has none, with
  // its lookup count raised by one.
  Inode& acquire(UniqueFd fd, const struct stat& st);
  // Pins the inode (dev, ino), if known, before its last name goes away.
  void pin(dev_t dev, ino_t ino, int mount_fd);
  // Adds the root, which is never forgotten.
  Inode& add_root(UniqueFd fd, const struct stat& st);
  // Lowers the lookup count by n; drops the inode at zero.
  void forget(Inode& inode, uint64_t n);
  size_t size();

 private:
  std::mutex mu_;
  std::map<std::pair<dev_t, ino_t>, std::unique_ptr<Inode>> inodes_;
};

}  // namespace scratchcrypt
