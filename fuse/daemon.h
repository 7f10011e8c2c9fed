// The volume daemon: checks the mount request, makes or recovers the key,
// mounts the FUSE file system and serves it until it is unmounted.
//
// In the background mode (the default), the caller's process returns only
// once the mount is usable, with the daemon's verdict: 0, or an Error's exit
// code and message. The daemon itself detaches from the caller (own session,
// root cgroups: a FUSE daemon inside a job's memory limit could deadlock in
// reclaim), makes itself non-dumpable and locks its memory.
#pragma once

#include <sys/types.h>

#include <string>

#include "fuse/filesystem.h"
#include "fuse/volume.h"

namespace scratchcrypt {

struct MountRequest {
  std::string backing;
  std::string mountpoint;
  // A descriptor (O_PATH) of the mount point directory, opened without
  // following links: the mount goes onto it rather than onto whatever the
  // path resolves to by then. -1: by path.
  int mountpoint_fd = -1;
  int key_fd = -1;         // read the key from here instead of generating it
  bool recover = false;    // take the key of an existing volume from the keyring
  bool foreground = false;
  bool debug = false;      // libfuse request tracing (foreground only)
  RootOwner owner;         // of the volume root, for a new volume
  FilesystemOptions fs;
  std::string job;         // scheduler job id, for status and wipe records
  VolumeLayout layout = VolumeLayout::kFiles;
  std::string kernel_fs = "ext4";  // block layout: ext4 or xfs
};

// Returns the exit status for the command (0 once mounted). Throws Error for
// requests refused before any daemon starts.
int mount_volume(const MountRequest& request);

}  // namespace scratchcrypt
