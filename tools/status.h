// What `scratchcrypt status` reports about the volumes of this node.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "tools/config.h"

namespace scratchcrypt {

struct VolumeStatus {
  std::string id;
  std::string mountpoint;  // empty when not mounted
  std::string backing;
  uid_t uid = 0;
  std::string job;
  pid_t pid = 0;
  // ok: served; dead: mounted but its daemon is gone (mount --recover, or
  // wipe); unmounted: stored but not mounted (key kept for --recover).
  std::string health;
  uint64_t used_bytes = 0;  // backing blocks in use
  uint64_t size_limit = 0;  // block layout: the volume's exact size
  std::string layout = "files";
};

std::vector<VolumeStatus> volume_statuses(const Config& config);
std::string status_json(const std::vector<VolumeStatus>& volumes);
std::string status_table(const std::vector<VolumeStatus>& volumes);

}  // namespace scratchcrypt
