// Inode and InodeTable: the filesystem's view of backing objects.
//
// As in libfuse's passthrough_hp, every inode the kernel knows holds an
// O_PATH descriptor of its backing object (or its file handle), so
// operations work on descriptors and never on backing paths (renames cannot
// race them). The FUSE node id is the Inode's address; the kernel's lookup
// count decides its lifetime.
//
// The table is keyed by the backing object's identity, not only its inode
// number: (dev, ino) plus, for non-directories, the file handle, which holds
// the inode's generation. A backing inode number freed and reused by a new
// object while the kernel still knows the old inode therefore gets a new
// Inode, never the old one's handle, type or file id. (Directories hold a
// descriptor, so their number cannot be reused while they are known.)
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
  // supported, or when they are about to lose a name (pin_with()), since a
  // handle of an unlinked inode no longer opens.
  PathFd path(int mount_fd);

  // Holds `held` (a descriptor of this inode) as its pin if it has none.
  void pin_with(int held);

  std::mutex fd_mu;             // guards fd of non-directories
  UniqueFd fd;                  // see above; directories: set once, never changes
  const std::vector<uint8_t> handle;  // struct file_handle, or empty
  const dev_t dev;
  const ino_t ino;
  const mode_t file_type;  // S_IFMT bits
  std::atomic<uint64_t> lookups{0};
  // Under the table's lock: it lost its last name while the kernel knew it;
  // its blocks are freed when it is dropped (the pin keeps them until then).
  bool orphaned = false;
  // Open handles that may write, and so may map the file shared and
  // writable: while there are any, the kernel's page cache can hold data
  // that the backing file does not have yet (munmap writes it back, and
  // comes before the handle's release).
  std::atomic<uint32_t> writers{0};

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
  // The inode of the backing object `fd` (O_PATH will do), created from it
  // if the table has none, with its lookup count raised by one.
  Inode& acquire(UniqueFd fd, const struct stat& st);
  // Before a non-directory loses a name (unlink, rename over it): `victim`
  // is an O_PATH descriptor of it, taken before. A known inode is pinned
  // with a duplicate, whatever its link count: the handle of an inode with
  // no name left does not open, and concurrent removals of hard links could
  // each see another link.
  void pin(int victim, const struct stat& st);
  // After the name is gone: if `victim` has no link left, a known inode
  // becomes an orphan, whose blocks stay allocated until it is dropped.
  enum class Orphaned { kUnknown, kNow, kAlready };
  Orphaned orphan(int victim, const struct stat& st);
  // Adds the root, which is never forgotten.
  Inode& add_root(UniqueFd fd, const struct stat& st);
  // Lowers the lookup count by n; drops the inode at zero. When that drops
  // an orphan, returns the backing bytes it held (freed now), else nullopt.
  std::optional<uint64_t> forget(Inode& inode, uint64_t n);
  size_t size();

 private:
  struct Key {
    dev_t dev;
    ino_t ino;
    std::vector<uint8_t> handle;  // empty for directories
    auto operator<=>(const Key&) const = default;
  };
  static Key key_of(int fd, const struct stat& st, std::vector<uint8_t>* handle);
  Inode* find(const Key& key);  // under mu_

  std::mutex mu_;
  std::map<Key, std::unique_ptr<Inode>> inodes_;
};

}  // namespace scratchcrypt
