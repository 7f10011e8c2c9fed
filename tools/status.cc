#include "tools/status.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <sstream>

#include "fuse/mounts.h"
#include "fuse/registry.h"
#include "fuse/volume.h"
#include "tools/block_teardown.h"
#include "tools/holders.h"
#include "tools/walk_tree.h"

namespace scratchcrypt {

namespace {

// Backing blocks in use by the tree at `path`.
uint64_t allocated_bytes(const std::string& path) {
  uint64_t total = 0;
  walk_tree(AT_FDCWD, path.c_str(), [&](int, const char*, const struct stat& st) {
    total += static_cast<uint64_t>(st.st_blocks) * 512;
  });
  return total;
}

std::string health_of(const std::string& mountpoint, pid_t pid) {
  if (mountpoint.empty()) return "unmounted";
  if (is_dead_mount(mountpoint) || (pid > 0 && !process_alive(pid))) return "dead";
  return "ok";
}

}  // namespace

std::vector<VolumeStatus> volume_statuses(const Config& config) {
  std::vector<VolumeStatus> out;
  auto add = [&](VolumeStatus v) {
    v.used_bytes = v.backing.empty() ? 0 : allocated_bytes(v.backing);
    out.push_back(std::move(v));
  };
  for (const auto& r : registered_volumes()) {
    VolumeStatus v{r.id, r.mountpoint, r.backing, r.uid, r.job, r.pid, "", 0, r.size_limit,
                   r.layout.empty() ? "files" : r.layout};
    if (v.layout == "block") {
      v.mountpoint = find_block_parts(r.id, &r).mountpoint;
    } else if (auto mount = mount_at(r.mountpoint); !mount || mount->source != "scratchcrypt:" + r.id) {
      v.mountpoint.clear();
    }
    v.health = health_of(v.mountpoint, v.pid);
    add(std::move(v));
  }
  const std::string root = absolute_path(config.backing_root);
  if (DIR* dir = ::opendir(root.c_str())) {
    while (dirent* entry = ::readdir(dir)) {
      if (entry->d_name[0] == '.') continue;
      const std::string path = root + "/" + entry->d_name;
      auto header = read_volume_header(path);
      if (!header) continue;
      bool known = false;
      for (const auto& v : out) known = known || v.id == header->id;
      if (known) continue;
      VolumeStatus v;
      v.id = header->id;
      v.backing = path;
      v.pid = volume_lock_holder(path).value_or(0);
      v.layout = layout_name(header->layout);
      v.size_limit = header->size;
      if (header->layout == VolumeLayout::kBlock) {
        v.mountpoint = find_block_parts(v.id, nullptr).mountpoint;
      } else {
        for (const auto& m : list_mounts()) {
          if (m.source == "scratchcrypt:" + v.id) v.mountpoint = m.mountpoint;
        }
      }
      v.health = health_of(v.mountpoint, v.pid);
      add(std::move(v));
    }
    ::closedir(dir);
  }
  return out;
}

std::string status_json(const std::vector<VolumeStatus>& volumes) {
  std::ostringstream out;
  out << "{\"volumes\": [";
  for (size_t i = 0; i < volumes.size(); ++i) {
    const auto& v = volumes[i];
    out << (i ? ", " : "") << "{\"id\": \"" << v.id << "\", \"mountpoint\": \""
        << json_escape(v.mountpoint) << "\", \"backing\": \"" << json_escape(v.backing)
        << "\", \"uid\": " << v.uid << ", \"job\": \"" << json_escape(v.job)
        << "\", \"pid\": " << v.pid << ", \"layout\": \"" << v.layout << "\", \"health\": \"" << v.health
        << "\", \"used_bytes\": " << v.used_bytes << ", \"size_limit\": " << v.size_limit << "}";
  }
  out << "]}\n";
  return out.str();
}

std::string status_table(const std::vector<VolumeStatus>& volumes) {
  if (volumes.empty()) return "no scratchcrypt volumes on this node\n";
  std::ostringstream out;
  char line[512];
  std::snprintf(line, sizeof line, "%-10s %-6s %-9s %-8s %-7s %-10s %12s  %s\n", "VOLUME", "LAYOUT",
                "HEALTH", "JOB", "UID", "PID", "USED", "MOUNTPOINT");
  out << line;
  for (const auto& v : volumes) {
    std::snprintf(line, sizeof line, "%-10s %-6s %-9s %-8s %-7u %-10d %12llu  %s\n",
                  v.id.substr(0, 8).c_str(), v.layout.c_str(), v.health.c_str(), v.job.empty() ? "-" : v.job.c_str(),
                  v.uid, v.pid, static_cast<unsigned long long>(v.used_bytes),
                  v.mountpoint.empty() ? "-" : v.mountpoint.c_str());
    out << line;
  }
  return out.str();
}

}  // namespace scratchcrypt
