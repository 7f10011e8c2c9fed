// SpaceLimit: the volume's size limit (FilesystemOptions::size_limit), in
// bytes of backing blocks allocated.
//
// The data path asks before an operation that can allocate whether its
// worst-case growth still fits, and charges the real change in allocated
// blocks afterwards (st_blocks deltas). A limit of 0 means none: every call
// is then a no-op that says yes.
#pragma once

#include <sys/statvfs.h>

#include <atomic>
#include <cstdint>

namespace scratchcrypt {

class SpaceLimit {
 public:
  // `used` is what the volume's files already hold (a remounted volume).
  SpaceLimit(uint64_t limit, uint64_t used)
      : limit_(limit), used_(static_cast<int64_t>(limit != 0 ? used : 0)) {}

  bool enabled() const { return limit_ != 0; }
  uint64_t limit() const { return limit_; }

  // Whether allocating `growth` more bytes would go over the limit.
  bool would_exceed(uint64_t growth) const;
  // Records a change in allocated bytes (negative when blocks were freed).
  void charge(int64_t delta_bytes) {
    if (enabled()) used_.fetch_add(delta_bytes);
  }
  uint64_t used() const;

  // Shows the limit as the file system's size in statfs (df).
  void apply_to(struct statvfs* st) const;

 private:
  const uint64_t limit_;
  std::atomic<int64_t> used_{0};
};

}  // namespace scratchcrypt
