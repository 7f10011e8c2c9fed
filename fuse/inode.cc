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

void Inode::pin_with(int held) {
  if (file_type == S_IFDIR) return;
  std::lock_guard lock(fd_mu);
  if (!fd.valid()) fd.reset(::fcntl(held, F_DUPFD_CLOEXEC, 0));
}

InodeTable::Key InodeTable::key_of(int fd, const struct stat& st, std::vector<uint8_t>* handle) {
  if (!S_ISDIR(st.st_mode)) *handle = file_handle_of(fd);
  return Key{st.st_dev, st.st_ino, *handle};
}

Inode& InodeTable::acquire(UniqueFd fd, const struct stat& st) {
  std::vector<uint8_t> handle;
  Key key = key_of(fd.get(), st, &handle);
  std::lock_guard lock(mu_);
  auto& slot = inodes_[std::move(key)];
  if (!slot) {
    if (!handle.empty()) fd.reset();  // the handle reopens it on demand
    slot = std::make_unique<Inode>(std::move(fd), std::move(handle), st.st_dev, st.st_ino,
                                   st.st_mode & S_IFMT);
  }
  slot->lookups.fetch_add(1, std::memory_order_relaxed);
  return *slot;
}

Inode* InodeTable::find(const Key& key) {
  auto it = inodes_.find(key);
  return it == inodes_.end() ? nullptr : it->second.get();
}

void InodeTable::pin(int victim, const struct stat& st) {
  std::vector<uint8_t> handle;
  const Key key = key_of(victim, st, &handle);
  std::lock_guard lock(mu_);
  if (Inode* inode = find(key)) inode->pin_with(victim);
}

InodeTable::Orphaned InodeTable::orphan(int victim, const struct stat& st) {
  std::vector<uint8_t> handle;
  const Key key = key_of(victim, st, &handle);
  std::lock_guard lock(mu_);
  Inode* inode = find(key);
  if (inode == nullptr) return Orphaned::kUnknown;
  if (inode->orphaned) return Orphaned::kAlready;
  inode->orphaned = true;
  return Orphaned::kNow;
}

Inode& InodeTable::add_root(UniqueFd fd, const struct stat& st) {
  Inode& root = acquire(std::move(fd), st);
  root.lookups.fetch_add(1u << 30, std::memory_order_relaxed);  // pinned
  return root;
}

std::optional<uint64_t> InodeTable::forget(Inode& inode, uint64_t n) {
  std::unique_ptr<Inode> dropped;
  {
    std::lock_guard lock(mu_);
    if (inode.lookups.fetch_sub(n, std::memory_order_acq_rel) != n) return std::nullopt;
    auto it = inodes_.find(Key{inode.dev, inode.ino, inode.handle});
    if (it != inodes_.end()) {
      dropped = std::move(it->second);
      inodes_.erase(it);
    }
  }
  if (!dropped || !dropped->orphaned) return std::nullopt;
  struct stat st;
  if (!dropped->fd.valid() || ::fstat(dropped->fd.get(), &st) != 0) return 0;
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

size_t InodeTable::size() {
  std::lock_guard lock(mu_);
  return inodes_.size();
}

}  // namespace scratchcrypt
