#include "tools/config.h"

#include <cstdlib>
#include <fstream>

#include "fuse/error.h"
#include "fuse/loop_device.h"
#include "tools/cli.h"

namespace scratchcrypt {

namespace {

std::string trim(const std::string& text) {
  const auto first = text.find_first_not_of(" \t\r");
  if (first == std::string::npos) return {};
  const auto last = text.find_last_not_of(" \t\r");
  return text.substr(first, last - first + 1);
}

void require_absolute(const std::string& where, const std::string& key, const std::string& value) {
  if (value.empty() || value[0] != '/' || value.find("/../") != std::string::npos ||
      value.size() < 2) {
    throw Error(where + ": " + key + " must be an absolute path other than / (got '" + value + "')", 2);
  }
}

bool parse_yes_no(const std::string& where, const std::string& key, const std::string& value) {
  if (value != "yes" && value != "no") {
    throw Error(where + ": " + key + " must be yes or no (got '" + value + "')", 2);
  }
  return value == "yes";
}

void apply(Config& config, const std::string& where, const std::string& key,
           const std::string& value) {
  if (key == "backing_root") {
    require_absolute(where, key, value);
    config.backing_root = value;
  } else if (key == "mount_root") {
    require_absolute(where, key, value);
    config.mount_root = value;
  } else if (key == "node_mount") {
    require_absolute(where, key, value);
    config.node_mount = value;
  } else if (key == "record_log") {
    require_absolute(where, key, value);
    config.record_log = value;
  } else if (key == "size_limit") {
    try {
      config.size_limit = cli::parse_size("size_limit", value);
    } catch (const Error&) {
      throw Error(where + ": size_limit '" + value + "' is not a size (examples: 0, 512M, 50G)", 2);
    }
  } else if (key == "mode") {
    if (value == "per-job") {
      config.mode = VolumeMode::kPerJob;
    } else if (value == "node") {
      config.mode = VolumeMode::kNode;
    } else {
      throw Error(where + ": mode must be per-job or node (got '" + value + "')", 2);
    }
  } else if (key == "writeback_cache") {
    config.writeback_cache = parse_yes_no(where, key, value);
  } else if (key == "trim") {
    config.trim = parse_yes_no(where, key, value);
  } else if (key == "metrics_file") {
    if (!value.empty()) require_absolute(where, key, value);
    config.metrics_file = value;
  } else if (key == "health_disk_full") {
    std::string digits = value;
    if (!digits.empty() && digits.back() == '%') digits.pop_back();
    if (digits.empty() || digits.size() > 3 ||
        digits.find_first_not_of("0123456789") != std::string::npos || std::stoul(digits) < 1 ||
        std::stoul(digits) > 100) {
      throw Error(where + ": health_disk_full must be a percentage from 1 to 100 (got '" + value +
                  "')", 2);
    }
    config.health_disk_full = static_cast<unsigned>(std::stoul(digits));
  } else if (key == "layout") {
    if (value != "auto" && value != "block" && value != "files") {
      throw Error(where + ": layout must be auto, block or files (got '" + value + "')", 2);
    }
    config.layout = value;
  } else if (key == "block_fs") {
    if (value != "ext4" && value != "xfs") {
      throw Error(where + ": block_fs must be ext4 or xfs (got '" + value + "')", 2);
    }
    config.block_fs = value;
  } else {
    throw Error(where + ": unknown setting '" + key + "' (see scratchcrypt(8), CONFIGURATION)", 2);
  }
}

}  // namespace

VolumeLayout effective_layout(const Config& config, std::string* why) {
  if (config.layout == "block" || config.layout == "files") {
    if (why != nullptr) *why = "set in the configuration";
    return config.layout == "block" ? VolumeLayout::kBlock : VolumeLayout::kFiles;
  }
  const bool loops = loop_devices_available();
  if (why != nullptr) {
    *why = loops ? "auto: this node can attach loop devices"
                 : "auto: this node cannot attach loop devices (no /dev/loop-control)";
  }
  return loops ? VolumeLayout::kBlock : VolumeLayout::kFiles;
}

Config load_config(const std::string& explicit_path) {
  std::string path = explicit_path;
  if (path.empty()) {
    const char* env = std::getenv("SCRATCHCRYPT_CONFIG");
    path = env != nullptr && *env != '\0' ? env : "";
  }
  const bool is_default = path.empty();
  if (is_default) path = kDefaultConfigPath;

  Config config;
  std::ifstream in(path);
  if (!in) {
    if (is_default) return config;
    throw Error("configuration file " + path + " cannot be read", 2);
  }
  config.path = path;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    const std::string where = path + ":" + std::to_string(number);
    if (auto hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    line = trim(line);
    if (line.empty()) continue;
    const auto eq = line.find('=');
    if (eq == std::string::npos) {
      throw Error(where + ": expected 'key = value', got '" + line + "'", 2);
    }
    const std::string key = trim(line.substr(0, eq)), value = trim(line.substr(eq + 1));
    // metrics_file may be set empty (no metrics); every other key needs a value.
    if (key.empty() || (value.empty() && key != "metrics_file")) {
      throw Error(where + ": expected 'key = value', got '" + line + "'", 2);
    }
    apply(config, where, key, value);
  }
  if (config.backing_root == config.mount_root) {
    throw Error(path + ": backing_root and mount_root must differ", 2);
  }
  return config;
}

std::vector<std::pair<std::string, std::string>> config_items(const Config& c) {
  return {
      {"backing_root", c.backing_root},
      {"mount_root", c.mount_root},
      {"size_limit", std::to_string(c.size_limit)},
      {"record_log", c.record_log},
      {"mode", c.mode == VolumeMode::kNode ? "node" : "per-job"},
      {"node_mount", c.node_mount},
      {"writeback_cache", c.writeback_cache ? "yes" : "no"},
      {"trim", c.trim ? "yes" : "no"},
      {"metrics_file", c.metrics_file},
      {"health_disk_full", std::to_string(c.health_disk_full)},
      {"layout", c.layout},
      {"block_fs", c.block_fs},
  };
}

}  // namespace scratchcrypt
