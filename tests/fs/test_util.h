// Small assertion helpers shared by the filesystem suites.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include <gtest/gtest.h>

// A system call that must succeed (returns -1 on failure).
#define SYS_OK(expr)                                                              \
  do {                                                                            \
    errno = 0;                                                                    \
    auto sys_ok_rc_ = (expr);                                                     \
    ASSERT_NE(-1, static_cast<long>(sys_ok_rc_)) << #expr << ": " << std::strerror(errno); \
  } while (0)

// A system call that must fail with `err`.
#define SYS_FAILS(err, expr)                                                      \
  do {                                                                            \
    errno = 0;                                                                    \
    auto sys_fails_rc_ = (expr);                                                  \
    EXPECT_EQ(-1, static_cast<long>(sys_fails_rc_)) << #expr << " succeeded";     \
    EXPECT_EQ((err), errno) << #expr << ": expected " << std::strerror(err)       \
                            << ", got " << std::strerror(errno);                  \
  } while (0)

namespace sctest {

// An owned descriptor.
struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd(Fd&& other) noexcept : fd(other.fd) { other.fd = -1; }
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  int get() const { return fd; }
  bool ok() const { return fd >= 0; }
  void reset(int f = -1) {
    if (fd >= 0) ::close(fd);
    fd = f;
  }
};

inline bool pwrite_all(int fd, const std::string& data, off_t offset) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::pwrite(fd, data.data() + done, data.size() - done, offset + static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

// Reads up to `length` bytes at offset (short at EOF).
inline std::string pread_str(int fd, size_t length, off_t offset) {
  std::string out(length, '\0');
  size_t done = 0;
  while (done < length) {
    ssize_t n = ::pread(fd, out.data() + done, length - done, offset + static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  out.resize(done);
  return out;
}

// The first index where a and b differ (or the shorter length), for messages.
inline size_t first_difference(const std::string& a, const std::string& b) {
  size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
  return i;
}

}  // namespace sctest

// Compares two byte strings without printing megabytes on failure.
#define EXPECT_BYTES_EQ(expected, actual)                                                  \
  do {                                                                                     \
    const std::string& bytes_e_ = (expected);                                              \
    const std::string& bytes_a_ = (actual);                                                \
    EXPECT_TRUE(bytes_e_ == bytes_a_)                                                      \
        << "sizes " << bytes_e_.size() << " vs " << bytes_a_.size()                        \
        << ", first difference at " << sctest::first_difference(bytes_e_, bytes_a_);       \
  } while (0)
