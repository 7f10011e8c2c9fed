// Ending a block-layout volume's mounts: the job's kernel file system, its
// loop device, the daemon and the daemon's private image mount. Used by
// wipe, epilogue and sweep (end_block_volume) and by umount.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "fuse/registry.h"

namespace scratchcrypt {

struct BlockParts {
  std::string id;
  std::string mountpoint;          // the job's file system; "" when not mounted
  std::vector<std::string> loops;  // attached loop devices labelled with the volume
  std::string image_mount;         // the daemon's image mount; "" when gone
  pid_t pid = 0;                   // the daemon, 0 when unknown
};

// What of block volume `id` is still there, from its registry record (if
// any) and the system: mounts, loop devices labelled "scratchcrypt:<id>".
BlockParts find_block_parts(const std::string& id, const VolumeRecord* record);

// For wipe: refuses (Error, exit 3) while processes use the job's file
// system or hold one of its loop devices open, unless `force`. Then shuts
// that file system down without writing anything more (so whatever the job
// left, millions of files or gigabytes of dirty pages, unmounting takes no
// time), cuts off the holders (their I/O fails; processes with volume files
// mapped, and root processes holding the loop device itself, which would
// keep it attached, are killed; a holder of the device that lets go within
// a second, as udev's probes do, is not one), unmounts it,
// detaches the loop device, stops the daemon (SIGTERM: it zeroizes its key;
// SIGKILL if it hangs) and removes the image mount. Returns how many
// processes were cut off. Throws Error when something stays mounted.
int end_block_volume(const BlockParts& parts, bool force);

// For umount: a clean unmount of the job's file system (exit 3 when busy),
// then the loop device, the daemon and the image mount as above.
void unmount_block_volume(const BlockParts& parts);

}  // namespace scratchcrypt
