// pread/pwrite that retry on EINTR and short transfers, for the data paths.
#pragma once

#include <sys/types.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>

namespace scratchcrypt {

// Bytes read (stops at EOF) or -errno.
inline ssize_t pread_full(int fd, uint8_t* data, size_t length, uint64_t offset) {
  size_t done = 0;
  while (done < length) {
    ssize_t n = ::pread(fd, data + done, length - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -errno;
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return static_cast<ssize_t>(done);
}

// Bytes written or -errno; *stored (if given) says how much was stored
// before an error.
inline ssize_t pwrite_full(int fd, const uint8_t* data, size_t length, uint64_t offset,
                           size_t* stored = nullptr) {
  size_t done = 0;
  if (stored != nullptr) *stored = 0;
  while (done < length) {
    ssize_t n = ::pwrite(fd, data + done, length - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -errno;
    done += static_cast<size_t>(n);
    if (stored != nullptr) *stored = done;
  }
  return static_cast<ssize_t>(done);
}

}  // namespace scratchcrypt
