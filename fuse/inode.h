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

#include "crypto/contents_cipher.h"
#include "crypto/name_cipher.h"
#include "fuse/unique_fd.h"

namespace scratchcrypt {

struct Inode {
  Inode(UniqueFd path_fd, dev_t d, ino_t i, mode_t type)
      : fd(std::move(path_fd)), dev(d), ino(i), file_type(type) {}

  const UniqueFd fd;  // O_PATH to the backing object
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
