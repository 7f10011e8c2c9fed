#include "fuse/image_store.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>

#include "fuse/error.h"
#include "fuse/full_io.h"

namespace scratchcrypt {

namespace {

const FileId kNoFileId{};  // block layout: the tweak's upper half is zero

struct FreeDeleter {
  void operator()(uint8_t* p) const { std::free(p); }
};

// Per-thread aligned buffers for O_DIRECT: a request of kMaxRequestBytes at
// any offset covers at most two more sectors.
constexpr size_t kBufferBytes = kMaxRequestBytes + 2 * kSectorBytes;

uint8_t* thread_buffer(int which) {
  thread_local std::unique_ptr<uint8_t, FreeDeleter> buffers[2];
  auto& buffer = buffers[which];
  if (!buffer) {
    void* p = nullptr;
    if (::posix_memalign(&p, kSectorBytes, kBufferBytes) != 0) return nullptr;
    buffer.reset(static_cast<uint8_t*>(p));
  }
  return buffer.get();
}

// Whole sectors in; beyond the stored end (never, the file has the image's
// size) would read as holes.
int read_all(int fd, uint8_t* buf, size_t length, uint64_t offset) {
  const ssize_t n = pread_full(fd, buf, length, offset);
  if (n < 0) return static_cast<int>(n);
  std::memset(buf + n, 0, length - static_cast<size_t>(n));
  return 0;
}

int write_all(int fd, const uint8_t* buf, size_t length, uint64_t offset) {
  const ssize_t n = pwrite_full(fd, buf, length, offset);
  return n < 0 ? static_cast<int>(n) : 0;
}

}  // namespace

ImageStore::ImageStore(UniqueFd backing, bool direct, uint64_t size, ContentsCipher& cipher)
    : fd_(std::move(backing)), direct_(direct), size_(size), cipher_(cipher) {}

int ImageStore::read_sectors(uint64_t first, size_t count, uint8_t* buf) {
  const size_t bytes = count * kSectorBytes;
  if (int rc = read_all(fd_.get(), buf, bytes, first * kSectorBytes); rc != 0) return rc;
  cipher_.decrypt(kNoFileId, first, {buf, bytes}, {buf, bytes});
  return 0;
}

int ImageStore::write_sectors(uint64_t first, size_t count, const uint8_t* in, uint8_t* scratch) {
  const size_t bytes = count * kSectorBytes;
  cipher_.encrypt(kNoFileId, first, {in, bytes}, {scratch, bytes});
  return write_all(fd_.get(), scratch, bytes, first * kSectorBytes);
}

ssize_t ImageStore::read_in_place(uint64_t offset, size_t size, const uint8_t** data) {
  if (offset >= size_) return 0;
  const size_t total = static_cast<size_t>(std::min<uint64_t>({size, size_ - offset, kMaxRequestBytes}));
  uint8_t* buf = thread_buffer(0);
  if (buf == nullptr) return -ENOMEM;
  const size_t skip = static_cast<size_t>(offset % kSectorBytes);
  const size_t count = (skip + total + kSectorBytes - 1) / kSectorBytes;
  if (int rc = read_sectors(offset / kSectorBytes, count, buf); rc != 0) return rc;
  *data = buf + skip;
  return static_cast<ssize_t>(total);
}

ssize_t ImageStore::read(uint64_t offset, std::span<uint8_t> out) {
  size_t done = 0;
  while (done < out.size()) {
    const uint8_t* data = nullptr;
    const ssize_t n = read_in_place(offset + done, out.size() - done, &data);
    if (n <= 0) return n < 0 ? n : static_cast<ssize_t>(done);
    std::memcpy(out.data() + done, data, static_cast<size_t>(n));
    done += static_cast<size_t>(n);
  }
  return static_cast<ssize_t>(done);
}

int ImageStore::write_partial(uint64_t offset, std::span<const uint8_t> in) {
  uint8_t* buf = thread_buffer(0);
  if (buf == nullptr) return -ENOMEM;
  const uint64_t first = offset / kSectorBytes;
  const size_t skip = static_cast<size_t>(offset % kSectorBytes);
  const size_t count = (skip + in.size() + kSectorBytes - 1) / kSectorBytes;
  if (int rc = read_sectors(first, count, buf); rc != 0) return rc;
  std::memcpy(buf + skip, in.data(), in.size());
  return write_sectors(first, count, buf, buf);
}

ssize_t ImageStore::write(uint64_t offset, std::span<const uint8_t> in) {
  if (offset >= size_ || in.size() > size_ - offset) return -ENOSPC;
  uint8_t* scratch = thread_buffer(1);
  if (scratch == nullptr) return -ENOMEM;
  size_t done = 0;
  while (done < in.size()) {
    const uint64_t at = offset + done;
    const size_t chunk = std::min(in.size() - done, kMaxRequestBytes);
    int rc;
    if (at % kSectorBytes == 0 && chunk % kSectorBytes == 0) {
      std::shared_lock lock(rmw_);
      rc = write_sectors(at / kSectorBytes, chunk / kSectorBytes, in.data() + done, scratch);
    } else {
      std::unique_lock lock(rmw_);
      rc = write_partial(at, in.subspan(done, chunk));
    }
    if (rc != 0) return rc;
    done += chunk;
  }
  return static_cast<ssize_t>(in.size());
}

int ImageStore::punch(uint64_t offset, uint64_t length) {
  if (offset >= size_) return 0;
  length = std::min(length, size_ - offset);
  const uint64_t end = offset + length;
  const uint64_t inner_begin = (offset + kSectorBytes - 1) / kSectorBytes * kSectorBytes;
  const uint64_t inner_end = end / kSectorBytes * kSectorBytes;
  // No whole sector inside: less than two sectors in all.
  static const uint8_t zeros[2 * kSectorBytes] = {};
  // Edges that cover part of a sector: rewrite them with zeros, encrypted.
  if (inner_begin >= inner_end) {
    std::unique_lock lock(rmw_);
    return write_partial(offset, {zeros, static_cast<size_t>(length)});
  }
  if (offset < inner_begin) {
    std::unique_lock lock(rmw_);
    if (int rc = write_partial(offset, {zeros, static_cast<size_t>(inner_begin - offset)}); rc != 0) return rc;
  }
  if (inner_end < end) {
    std::unique_lock lock(rmw_);
    if (int rc = write_partial(inner_end, {zeros, static_cast<size_t>(end - inner_end)}); rc != 0) return rc;
  }
  std::shared_lock lock(rmw_);
  if (::fallocate(fd_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                  static_cast<off_t>(inner_begin), static_cast<off_t>(inner_end - inner_begin)) == 0) {
    return 0;
  }
  if (errno != EOPNOTSUPP) return -errno;
  // No hole punching: stored zeros read as zeros too (a hole by the format).
  uint8_t* buf = thread_buffer(1);
  if (buf == nullptr) return -ENOMEM;
  std::memset(buf, 0, kMaxRequestBytes);
  for (uint64_t at = inner_begin; at < inner_end; at += kMaxRequestBytes) {
    const size_t chunk = static_cast<size_t>(std::min<uint64_t>(kMaxRequestBytes, inner_end - at));
    if (int rc = write_all(fd_.get(), buf, chunk, at); rc != 0) return rc;
  }
  return 0;
}

UniqueFd create_backing_image(int backing_dir_fd, uint64_t size, bool* direct) {
  UniqueFd fd(::openat(backing_dir_fd, kImageFileName,
                       O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd.valid()) throw Error(errno_text("cannot create the volume image file", errno));
  if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) {
    throw Error(errno_text("cannot size the volume image file", errno));
  }
  // Reopen through /proc so that O_DIRECT is tried on the file itself.
  const std::string self = "/proc/self/fd/" + std::to_string(fd.get());
  UniqueFd odirect(::open(self.c_str(), O_RDWR | O_DIRECT | O_CLOEXEC));
  *direct = odirect.valid();
  return *direct ? std::move(odirect) : std::move(fd);
}

}  // namespace scratchcrypt
