#include "fuse/space_limit.h"

#include <algorithm>

namespace scratchcrypt {

bool SpaceLimit::would_exceed(uint64_t growth) {
  if (!enabled() || growth == 0 || !over(growth)) return false;
  std::unique_lock lock(orphans_mu_);
  orphans_gone_.wait_for(lock, kOrphanWait, [&] { return orphans_ == 0 || !over(growth); });
  return over(growth);
}

void SpaceLimit::orphan_held() {
  if (!enabled()) return;
  std::lock_guard lock(orphans_mu_);
  ++orphans_;
}

void SpaceLimit::orphan_freed(uint64_t bytes) {
  if (!enabled()) return;
  charge(-static_cast<int64_t>(bytes));
  {
    std::lock_guard lock(orphans_mu_);
    if (orphans_ > 0) --orphans_;
  }
  orphans_gone_.notify_all();
}

uint64_t SpaceLimit::used() const {
  return static_cast<uint64_t>(std::max<int64_t>(0, used_.load()));
}

void SpaceLimit::apply_to(struct statvfs* st) const {
  if (!enabled()) return;
  const uint64_t unit = st->f_frsize ? st->f_frsize : st->f_bsize;
  const uint64_t in_use = std::min(used(), limit_);
  st->f_blocks = limit_ / unit;
  st->f_bfree = std::min<uint64_t>(st->f_bfree, (limit_ - in_use) / unit);
  st->f_bavail = std::min<uint64_t>(st->f_bavail, (limit_ - in_use) / unit);
}

}  // namespace scratchcrypt
