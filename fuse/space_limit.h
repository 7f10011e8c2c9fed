// SpaceLimit: the volume's size limit (FilesystemOptions::size_limit), in
// bytes of backing blocks allocated.
//
// The data path asks before an operation that can allocate whether its
// worst-case growth still fits, and charges the real change in allocated
// blocks afterwards (st_blocks deltas). A limit of 0 means none: every call
// is then a no-op that says yes.
//
// A file unlinked while open keeps its blocks, and its charge, until the
// kernel forgets it. The kernel sends RELEASE and FORGET after close(2) and
// unlink(2) have returned, so a job that closes, removes and writes again
// could find its own freed space still charged; an allocation that would not
// fit therefore waits (at most kOrphanWait) while such files are pending.
#pragma once

#include <sys/statvfs.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>

namespace scratchcrypt {

class SpaceLimit {
 public:
  // `used` is what the volume's files already hold (a remounted volume).
  SpaceLimit(uint64_t limit, uint64_t used)
      : limit_(limit), used_(static_cast<int64_t>(limit != 0 ? used : 0)) {}

  bool enabled() const { return limit_ != 0; }
  uint64_t limit() const { return limit_; }

  static constexpr std::chrono::milliseconds kOrphanWait{1000};

  // Whether allocating `growth` more bytes would go over the limit, after
  // waiting for pending orphans (above) if that is what stands in the way.
  bool would_exceed(uint64_t growth);
  // A regular file lost its last name while the kernel still holds it.
  void orphan_held();
  // The kernel dropped such a file; its `bytes` are freed.
  void orphan_freed(uint64_t bytes);
  // Records a change in allocated bytes (negative when blocks were freed).
  void charge(int64_t delta_bytes) {
    if (enabled()) used_.fetch_add(delta_bytes);
  }
  uint64_t used() const;

  // Shows the limit as the file system's size in statfs (df).
  void apply_to(struct statvfs* st) const;

 private:
  bool over(uint64_t growth) const { return used() + growth > limit_; }

  const uint64_t limit_;
  std::atomic<int64_t> used_{0};
  std::mutex orphans_mu_;
  std::condition_variable orphans_gone_;
  uint64_t orphans_ = 0;  // guarded by orphans_mu_
};

}  // namespace scratchcrypt
