#include "fuse/file_io.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <mutex>
#include <new>
#include <shared_mutex>
#include <stdexcept>

#include "fuse/fault_injection.h"

namespace scratchcrypt {

int FileIo::load_size(Inode& inode, int fd) {
  std::unique_lock lock(inode.io);
  if (inode.size) return 0;
  struct stat st;
  if (::fstat(fd, &st) != 0) return -errno;
  inode.size = static_cast<uint64_t>(st.st_size);
  inode.allocated = static_cast<uint64_t>(st.st_blocks) * 512;
  return 0;
}

void FileIo::start_empty(Inode& inode) {
  std::unique_lock lock(inode.io);
  inode.size = 0;
  inode.allocated = 0;
}

void FileIo::reaccount() {
  if (!space_.enabled()) return;
  struct stat st;
  if (::fstat(fd_, &st) != 0) return;
  const uint64_t now = static_cast<uint64_t>(st.st_blocks) * 512;
  space_.charge(static_cast<int64_t>(now) - static_cast<int64_t>(inode_.allocated));
  inode_.allocated = now;
}

namespace {

// The failures a data operation can throw (OpenSSL errors, allocation),
// on request of a test (fuse/fault_injection.h).
void maybe_throw() {
  if (fault_injected("throw")) throw std::runtime_error("injected cipher failure");
  if (fault_injected("bad-alloc")) throw std::bad_alloc();
}

}  // namespace

uint64_t FileIo::growth(uint64_t offset, uint64_t end, uint64_t size) const {
  if (!space_.enabled()) return 0;
  constexpr uint64_t kBlock = 4096;
  auto down = [](uint64_t x) { return x / kBlock * kBlock; };
  auto up = [](uint64_t x) { return (x + kBlock - 1) / kBlock * kBlock; };
  uint64_t bytes = end > size ? up(end) - down(std::max(offset, size)) : 0;
  // Holes inside the file (a sparse file written into) get blocks too.
  const uint64_t stop = std::min(end, size);
  for (uint64_t pos = offset; pos < stop;) {
    const off_t hole = ::lseek(fd_, static_cast<off_t>(pos), SEEK_HOLE);
    if (hole < 0 || static_cast<uint64_t>(hole) >= stop) break;
    const off_t data = ::lseek(fd_, hole, SEEK_DATA);
    const uint64_t hole_end = data < 0 ? stop : std::min<uint64_t>(static_cast<uint64_t>(data), stop);
    bytes += up(hole_end) - down(static_cast<uint64_t>(hole));
    pos = hole_end;
  }
  return bytes;
}

ssize_t FileIo::read(uint64_t offset, std::span<uint8_t> out) {
  std::shared_lock lock(inode_.io);
  maybe_throw();
  return file_.read(offset, out, *inode_.size);
}

ssize_t FileIo::write(uint64_t offset, std::span<const uint8_t> data) {
  std::unique_lock lock(inode_.io);
  uint64_t size = *inode_.size;
  if (space_.would_exceed(growth(offset, offset + data.size(), size))) return -ENOSPC;
  maybe_throw();
  ssize_t n = file_.write(offset, data, &size);
  inode_.size = size;
  reaccount();
  return n;
}

int FileIo::truncate(uint64_t new_size) {
  std::unique_lock lock(inode_.io);
  uint64_t size = *inode_.size;
  int err = file_.truncate(new_size, &size);
  inode_.size = size;
  reaccount();
  return err;
}

int FileIo::fallocate(int mode, uint64_t offset, uint64_t length) {
  std::unique_lock lock(inode_.io);
  uint64_t size = *inode_.size;
  const uint64_t end = offset + length;
  const bool punch = mode & FALLOC_FL_PUNCH_HOLE;
  auto allocate = [&]() -> int {
    return ::fallocate(fd_, FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                       static_cast<off_t>(length)) == 0
               ? 0
               : -errno;
  };
  int err = 0;
  if (punch && !(mode & FALLOC_FL_KEEP_SIZE)) {
    err = -EINVAL;  // as the kernel requires
  } else if (!punch && space_.would_exceed(length)) {
    err = -ENOSPC;
  } else if (punch) {
    err = file_.punch_hole(offset, length, size);
  } else {
    // Allocating first fails (ENOSPC) before any data changed; ZERO_RANGE
    // then zeroes (whole units become holes) and allocates what that freed.
    err = allocate();
    if (!err && (mode & FALLOC_FL_ZERO_RANGE)) {
      err = file_.punch_hole(offset, length, size);
      if (!err) err = allocate();
    }
    if (!err && !(mode & FALLOC_FL_KEEP_SIZE) && end > size) err = file_.truncate(end, &size);
  }
  inode_.size = size;
  reaccount();
  return err;
}

}  // namespace scratchcrypt
