// The node configuration, /etc/scratchcrypt/scratchcrypt.conf.
//
// `key = value` lines; '#' starts a comment. Every key is optional and has
// the default below. An unknown key, a bad value or a malformed line is
// rejected with the file, line and reason before anything is mounted. The
// file is chosen by --config, else $SCRATCHCRYPT_CONFIG, else the default.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fuse/volume.h"

namespace scratchcrypt {

inline constexpr const char* kDefaultConfigPath = "/etc/scratchcrypt/scratchcrypt.conf";

enum class VolumeMode { kPerJob, kNode };

struct Config {
  std::string backing_root = "/var/lib/scratchcrypt/backing";  // on the local disk
  std::string mount_root = "/scratch";                          // <root>/<job id>
  uint64_t size_limit = 0;                                      // per volume; 0 = none
  std::string record_log = "/var/log/scratchcrypt/wipe.jsonl";
  VolumeMode mode = VolumeMode::kPerJob;
  std::string node_mount = "/scratch/node";                     // node mode's one volume
  bool writeback_cache = false;
  bool trim = true;  // FITRIM the backing file system after each wipe
  // Prometheus text file rewritten after each prologue, epilogue, wipe,
  // sweep and health check (tools/metrics.h); empty: none.
  std::string metrics_file;
  unsigned health_disk_full = 95;  // `health` fails at this % of the backing disk used
  // Volume layout for prologue and node mode: "block", "files", or "auto"
  // (block wherever loop devices can be attached, files otherwise).
  std::string layout = "auto";
  std::string block_fs = "ext4";  // the block layout's file system: ext4 or xfs
  std::string path;  // the file it came from ("" when defaults only)
};

// The layout `config` asks for, with "auto" resolved on this node; `why`
// (if given) says how it was chosen, for logs and `config`.
VolumeLayout effective_layout(const Config& config, std::string* why = nullptr);

// Loads `path`; when `path` is the default and does not exist, defaults.
Config load_config(const std::string& explicit_path);

// "key = value" lines for every setting, as `scratchcrypt config` prints them.
std::vector<std::pair<std::string, std::string>> config_items(const Config& config);

}  // namespace scratchcrypt
