#include "tools/health.h"

#include <dirent.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>

#include "crypto/keyring.h"
#include "fuse/error.h"
#include "fuse/loop_device.h"
#include "fuse/mounts.h"
#include "fuse/registry.h"
#include "fuse/volume.h"
#include "tools/commands.h"
#include "tools/holders.h"
#include "tools/metrics.h"
#include "tools/wipe.h"

namespace scratchcrypt {

namespace {

constexpr const char* kSource = "scratchcrypt:";

struct Backing {
  std::string id;
  std::string path;
};

// Volumes stored directly under backing_root (the layout prologue makes).
std::vector<Backing> stored_volumes(const std::string& root) {
  std::vector<Backing> out;
  DIR* dir = ::opendir(root.c_str());
  if (dir == nullptr) return out;
  while (dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    const std::string path = root + "/" + entry->d_name;
    if (auto header = read_volume_header(path)) out.push_back({header->id, path});
  }
  ::closedir(dir);
  std::sort(out.begin(), out.end(), [](const Backing& a, const Backing& b) { return a.path < b.path; });
  return out;
}

std::vector<MountEntry> scratchcrypt_mounts() {
  std::vector<MountEntry> out;
  for (auto& m : list_mounts()) {
    if (m.fstype == "fuse.scratchcrypt" && m.source.rfind(kSource, 0) == 0) out.push_back(std::move(m));
  }
  return out;
}

std::string volume_of(const MountEntry& m) { return m.source.substr(std::string(kSource).size()); }

std::string job_text(const VolumeRecord& r) { return r.job.empty() ? "" : " (job " + r.job + ")"; }

// The nearest existing directory at or above `path` (backing_root may not
// exist yet: the first prologue makes it).
std::string existing_ancestor(std::string path) {
  struct stat st;
  while (path.size() > 1 && ::stat(path.c_str(), &st) != 0) path = parent_dir(path);
  return path;
}

}  // namespace

std::set<std::string> volumes_mounted_anywhere() {
  std::set<std::string> ids, namespaces;
  auto add = [&](const std::string& mountinfo) {
    for (const auto& m : list_mounts(mountinfo)) {
      if (m.fstype == "fuse.scratchcrypt" && m.source.rfind(kSource, 0) == 0) ids.insert(volume_of(m));
    }
  };
  add("/proc/self/mountinfo");
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return ids;
  while (dirent* entry = ::readdir(proc)) {
    if (entry->d_name[0] < '1' || entry->d_name[0] > '9') continue;
    const std::string dir = std::string("/proc/") + entry->d_name;
    char ns[64];
    const ssize_t n = ::readlink((dir + "/ns/mnt").c_str(), ns, sizeof ns - 1);
    if (n <= 0 || !namespaces.insert(std::string(ns, static_cast<size_t>(n))).second) continue;
    add(dir + "/mountinfo");
  }
  ::closedir(proc);
  return ids;
}


std::vector<std::string> stale_keys(const Config& config) {
  std::set<std::string> known = volumes_mounted_anywhere();
  for (const auto& r : registered_volumes()) known.insert(r.id);
  for (const auto& b : stored_volumes(absolute_path(config.backing_root))) known.insert(b.id);
  std::set<std::string> unknown;
  for (const auto& id : keyring::list()) {
    if (known.count(id) == 0) unknown.insert(id);
  }
  std::vector<std::string> out;
  if (unknown.empty()) return out;
  // Only keys of volumes that this node ended: the keyring is shared by
  // every configuration on the machine (test nodes, containers), whose
  // stored volumes we cannot see.
  std::ifstream log(config.record_log);
  for (std::string line; std::getline(log, line);) {
    const std::string id = json_field(line, "volume");
    if (unknown.erase(id) != 0) out.push_back(id);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> health_problems(const Config& config) {
  std::vector<std::string> problems;
  const std::string root = absolute_path(config.backing_root);
  const std::string mount_root = absolute_path(config.mount_root);
  const std::string node_mount = absolute_path(config.node_mount);
  const auto mounts = scratchcrypt_mounts();
  const auto stored = stored_volumes(root);
  std::set<std::string> reported;  // volume ids: one line per volume

  auto stored_at = [&](const std::string& id) -> std::string {
    for (const auto& b : stored) {
      if (b.id == id) return b.path;
    }
    return "";
  };
  auto dead_mount = [&](const MountEntry& m) {
    problems.push_back("dead mount: " + m.mountpoint + " (volume " + volume_of(m) +
                       ") does not answer (ENOTCONN), its daemon is gone; end it with "
                       "`scratchcrypt wipe --force " + m.mountpoint + "` (or bring it back with "
                       "`scratchcrypt mount --recover`)");
    reported.insert(volume_of(m));
  };

  // Registered volumes: each must be mounted and served by a live daemon.
  auto records = registered_volumes();
  std::sort(records.begin(), records.end(),
            [](const VolumeRecord& a, const VolumeRecord& b) { return a.mountpoint < b.mountpoint; });
  for (const auto& r : records) {
    // Its FUSE mount, or whatever is mounted at its mount point (a layout may
    // mount a kernel file system there on top of the volume).
    std::optional<MountEntry> mount;
    for (const auto& m : mounts) {
      if (volume_of(m) == r.id) mount = m;
    }
    if (!mount) mount = mount_at(r.mountpoint);
    if (mount && is_dead_mount(mount->mountpoint)) {
      dead_mount(*mount);
    } else if (!process_alive(r.pid)) {
      problems.push_back("dead daemon: volume " + r.id + job_text(r) + " at " + r.mountpoint +
                         ": its daemon (pid " + std::to_string(r.pid) + ") is gone" +
                         (mount ? "" : " and it is not mounted") + "; end it with `scratchcrypt wipe " +
                         r.id + "`");
      reported.insert(r.id);
    } else if (!mount) {
      problems.push_back("stale record: volume " + r.id + job_text(r) + " is registered at " +
                         r.mountpoint + ", which is not mounted, while its daemon (pid " +
                         std::to_string(r.pid) + ") still runs; end it with `scratchcrypt wipe " +
                         r.id + "`");
      reported.insert(r.id);
    }
  }
  // Dead mounts of this node's volumes that the registry does not know.
  for (const auto& m : mounts) {
    if (reported.count(volume_of(m)) != 0) continue;
    const bool ours = path_under(m.mountpoint, mount_root) || m.mountpoint == node_mount ||
                      !stored_at(volume_of(m)).empty();
    if (ours && is_dead_mount(m.mountpoint)) dead_mount(m);
  }
  // Volumes stored under backing_root that no daemon serves.
  for (const auto& b : stored) {
    if (reported.count(b.id) != 0 || volume_lock_holder(b.path)) continue;
    problems.push_back("leftover volume: " + b.id + " in " + b.path +
                       " is stored but no daemon serves it; end it with `scratchcrypt wipe " +
                       b.path + "` (or `scratchcrypt sweep`)");
    reported.insert(b.id);
  }
  for (const auto& trash : abandoned_deletions(config)) {
    problems.push_back("unfinished deletion: " + trash +
                       " (an earlier wipe could not delete it); fix the cause, then run "
                       "`scratchcrypt sweep`");
  }
  for (const auto& id : stale_keys(config)) {
    problems.push_back("stale key: scratchcrypt:" + id +
                       " in root's keyring belongs to a volume this node has ended; remove it with "
                       "`keyctl invalidate $(keyctl search @u user scratchcrypt:" + id + ")`");
  }
  // A node set to the block layout must be able to attach a loop device
  // (with layout = auto it falls back to files, which is not a problem).
  if (config.layout == "block") {
    if (const std::string why = loop_device_problem(); !why.empty()) {
      problems.push_back("no loop device: layout = block but " + why +
                         "; load the loop module (modprobe loop, raise max_loop), pass "
                         "/dev/loop-control and /dev/loop* into the container, or set layout = files");
    }
  }
  // Room on the backing disk, as df counts it.
  const std::string disk = existing_ancestor(root);
  struct statvfs vfs;
  if (::statvfs(disk.c_str(), &vfs) != 0) {
    problems.push_back("backing disk: cannot check " + disk + ": " + std::strerror(errno));
  } else if (vfs.f_blocks > 0) {
    const double used = static_cast<double>(vfs.f_blocks - vfs.f_bfree);
    const double usable = used + static_cast<double>(vfs.f_bavail);
    const int percent = usable > 0 ? static_cast<int>(used * 100.0 / usable + 0.999) : 100;
    if (percent >= static_cast<int>(config.health_disk_full)) {
      problems.push_back("backing disk full: " + disk + " is " + std::to_string(percent) +
                         "% used (health_disk_full = " + std::to_string(config.health_disk_full) +
                         "%); free space there or raise health_disk_full");
    }
  }
  return problems;
}

}  // namespace scratchcrypt

// ---- the `health` command

namespace scratchcrypt {

const cli::Command kHealthCommand = {
    "health",
    "[options]",
    "Whether this node may take jobs: prints ok (exit 0) or one line per problem (exit 1).",
    "For Slurm's HealthCheckProgram (packaging/slurm/healthcheck.sh drains the node) and\n"
    "cloud health probes. Problems: a dead mount (its daemon is gone), a registered volume\n"
    "whose daemon died or whose mount is gone, a volume in backing_root that no daemon\n"
    "serves, an unfinished deletion (.wiped-* in backing_root), a key in root's keyring\n"
    "of a volume this node has ended (in record_log), a backing disk at or above\n"
    "health_disk_full percent, no loop device to attach with layout = block, and a\n"
    "configuration that cannot be read. Each line says\n"
    "what to do. Running volumes are not problems. Also rewrites metrics_file, when\n"
    "configured.",
    {kConfigOption},
    0,
    0,
};

int run_health(const cli::Args& args) {
  if (::geteuid() != 0) throw Error("health must run as root (it reads root's keyring)", 2);
  Config config;
  try {
    config = load_config(args.get("config"));
  } catch (const Error& e) {
    std::printf("configuration: %s\n", e.what());
    return 1;
  }
  const auto problems = health_problems(config);
  update_metrics(config, static_cast<int>(problems.size()));
  for (const auto& line : problems) std::printf("%s\n", line.c_str());
  if (problems.empty()) std::printf("ok\n");
  return problems.empty() ? 0 : 1;
}

}  // namespace scratchcrypt
