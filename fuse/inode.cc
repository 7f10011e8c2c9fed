#include "fuse/inode.h"

namespace scratchcrypt {

Inode& InodeTable::acquire(UniqueFd fd, const struct stat& st) {
  std::lock_guard lock(mu_);
  auto& slot = inodes_[{st.st_dev, st.st_ino}];
  if (!slot) {
    slot = std::make_unique<Inode>(std::move(fd), st.st_dev, st.st_ino, st.st_mode & S_IFMT);
  }
  slot->lookups.fetch_add(1, std::memory_order_relaxed);
  return *slot;
}

Inode& InodeTable::add_root(UniqueFd fd, const struct stat& st) {
  Inode& root = acquire(std::move(fd), st);
  root.lookups.fetch_add(1u << 30, std::memory_order_relaxed);  // pinned
  return root;
}

void InodeTable::forget(Inode& inode, uint64_t n) {
  std::lock_guard lock(mu_);
  if (inode.lookups.fetch_sub(n, std::memory_order_acq_rel) == n) {
    inodes_.erase({inode.dev, inode.ino});
  }
}

size_t InodeTable::size() {
  std::lock_guard lock(mu_);
  return inodes_.size();
}

}  // namespace scratchcrypt
