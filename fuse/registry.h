// The registry of live volumes on this node: one small JSON file per mounted
// volume in /run/scratchcrypt/volumes (tmpfs, so it is gone at reboot, as are
// the keys). Written by the daemon, read by status, wipe, sweep and the
// scheduler hooks. It holds no secret and no name from inside a volume.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

namespace scratchcrypt {

struct VolumeRecord {
  std::string id;
  std::string backing;
  std::string mountpoint;
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  std::string job;       // scheduler job id, if any
  uint64_t size_limit = 0;
  int64_t started = 0;   // unix seconds
  // Block layout (empty for the files layout): the loop device and the
  // private mount point of the daemon's image file system.
  std::string layout;    // "block", or "" = files
  std::string loop;      // "/dev/loopN"
  std::string image_mount;
};

// The registry directory; SCRATCHCRYPT_RUN_DIR overrides it (for tests).
std::string registry_dir();
// Where block-layout daemons mount their image file systems: a root-only
// directory, /run/scratchcrypt/images, or $SCRATCHCRYPT_RUN_DIR/images.
std::string image_mount_root();

void register_volume(const VolumeRecord& record);
void unregister_volume(const std::string& id);
std::vector<VolumeRecord> registered_volumes();
std::optional<VolumeRecord> find_volume(const std::string& mountpoint_or_backing);

// True while `pid` (a record's daemon) runs; a zombie counts as gone: a
// detached daemon's parent is init, which may take a while to reap it, but a
// zombie holds no memory, key or file any more.
bool process_alive(pid_t pid);

// Minimal JSON helpers shared by the registry and the wipe records.
std::string json_escape(const std::string& text);
// The value of "key" in a flat JSON object that we wrote ourselves (a
// registry file, a wipe record): the unescaped string, or the number or
// literal as written; "" when absent.
std::string json_field(const std::string& json, const std::string& key);

}  // namespace scratchcrypt
