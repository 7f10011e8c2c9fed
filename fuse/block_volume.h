// The daemon of a block-layout volume (docs/DESIGN.md, "Block layout").
//
// It makes the volume (key, header, the sparse ciphertext image file in
// BACKING), reserves its size on the backing file system, serves the
// plaintext image through a private FUSE mount under image_mount_root(),
// attaches it to a loop device, makes ext4 (or xfs) on it and mounts that at
// the mount point for the job. It reports once the job's file system is
// usable and serves until stopped (SIGTERM, or its image mount going away).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>

#include "fuse/daemon.h"

namespace scratchcrypt {

// Runs in the hardened daemon process. `report(code, message)` tells the
// waiting caller the verdict (0 once mounted). Returns the exit status.
int serve_block_volume(const MountRequest& request,
                       const std::function<void(int, const std::string&)>& report);

// Backing space (docs/DESIGN.md, "Space"): a block volume's image is sparse,
// so its size is promised, not allocated. A new volume is admitted only if
// every live block volume on the same backing file system can still grow to
// its full size: sum over them of (size - allocated) + the new size must fit
// in the free space less a margin. size 0 asks for everything that is left.
struct SpaceCheck {
  uint64_t free_bytes = 0;      // available to root... to us on the backing fs
  uint64_t promised_bytes = 0;  // not yet allocated by live block volumes there
  uint64_t margin_bytes = 0;
  uint64_t size = 0;            // the size granted (0 when refused)
};
// Throws Error (exit 4) when `wanted` does not fit, with the figures.
SpaceCheck reserve_space(const std::string& backing, uint64_t wanted);

// The margin kept free on a backing file system of `total` bytes.
uint64_t space_margin(uint64_t total);

}  // namespace scratchcrypt
