#include "fuse/inode.h"

#include <fcntl.h>

#include <cstring>

namespace scratchcrypt {

namespace {

// The file handle of `fd`'s object, or empty when the file system has none.
std::vector<uint8_t> file_handle_of(int fd) {
  std::vector<uint8_t> buf(sizeof(file_handle) + MAX_HANDLE_SZ);
  auto* fh = reinterpret_cast<file_handle*>(buf.data());
  fh->handle_bytes = MAX_HANDLE_SZ;
  int mount_id;
  if (::name_to_handle_at(fd, "", fh, &mount_id, AT_EMPTY_PATH) != 0) return {};
  buf.resize(sizeof(file_handle) + fh->handle_bytes);
  return buf;
}

}  // namespace

PathFd Inode::path(int mount_fd) {
  if (file_type == S_IFDIR) return PathFd(fd.get());
  std::lock_guard lock(fd_mu);
  if (fd.valid() || handle.empty()) return PathFd(fd.get());
  std::vector<uint8_t> copy = handle;  // open_by_handle_at takes a mutable one
  return PathFd(UniqueFd(::open_by_handle_at(
      mount_fd, reinterpret_cast<file_handle*>(copy.data()), O_PATH | O_CLOEXEC)));
}

void Inode::pin(int mount_fd) {
  if (file_type == S_IFDIR) return;
  std::lock_guard lock(fd_mu);
  if (fd.valid() || handle.empty()) return;
  std::vector<uint8_t> copy = handle;
  fd.reset(::open_by_handle_at(mount_fd, reinterpret_cast<file_handle*>(copy.data()),
                               O_PATH | O_CLOEXEC));
}

Inode& InodeTable::acquire(UniqueFd fd, const struct stat& st) {
  std::lock_guard lock(mu_);
  auto& slot = inodes_[{st.st_dev, st.st_ino}];
  if (!slot) {
    std::vector<uint8_t> handle;
    if (!S_ISDIR(st.st_mode)) handle = file_handle_of(fd.get());
    if (!handle.empty()) fd.reset();  // the handle reopens it on demand
    slot = std::make_unique<Inode>(std::move(fd), std::move(handle), st.st_dev, st.st_ino,
                                   st.st_mode & S_IFMT);
  }
  slot->lookups.fetch_add(1, std::memory_order_relaxed);
  return *slot;
}

void InodeTable::pin(dev_t dev, ino_t ino, int mount_fd) {
  std::lock_guard lock(mu_);
  auto it = inodes_.find({dev, ino});
  if (it != inodes_.end()) it->second->pin(mount_fd);
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
