#include "tools/block_teardown.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <dirent.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <algorithm>
#include <chrono>
#include <thread>

#include "fuse/error.h"
#include "fuse/loop_device.h"
#include "fuse/make_fs.h"
#include "fuse/mounts.h"
#include "fuse/registry.h"
#include "fuse/unique_fd.h"
#include "tools/holders.h"

namespace scratchcrypt {

namespace {

using namespace std::chrono_literals;

std::string loop_label_of(const std::string& id) { return "scratchcrypt:" + id; }

bool same_device(const MountEntry& mount, const std::string& loop) {
  struct stat st;
  return ::stat(loop.c_str(), &st) == 0 && S_ISBLK(st.st_mode) &&
         major(st.st_rdev) == mount.dev_major && minor(st.st_rdev) == mount.dev_minor;
}

// The job's file system: a mount of one of the volume's loop devices.
std::string job_mount(const std::vector<std::string>& loops, const std::string& preferred) {
  std::string found;
  for (const auto& m : list_mounts()) {
    for (const auto& loop : loops) {
      if (!same_device(m, loop)) continue;
      if (m.mountpoint == preferred) return preferred;
      found = m.mountpoint;
    }
  }
  return found;
}

// The job's file system root, opened for shutdown, if it is on one of the
// volume's loop devices.
UniqueFd open_job_root(const std::string& mountpoint, const std::vector<std::string>& loops) {
  UniqueFd root(::open(mountpoint.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  struct stat st;
  if (!root.valid() || ::fstat(root.get(), &st) != 0) return {};
  for (const auto& loop : loops) {
    struct stat dev;
    if (::stat(loop.c_str(), &dev) == 0 && dev.st_rdev == st.st_dev) return root;
  }
  return {};
}

// Drops the last reference to a detached file system in a process of its
// own: tearing down the kernel's inodes and dentries of what the job left
// (a million files, a tree 100,000 levels deep) takes seconds of CPU that
// nobody needs to wait for. The device stays attached until it is done.
void release_in_background(UniqueFd root) {
  std::fflush(nullptr);
  const pid_t child = ::fork();
  if (child == 0) {
    ::setsid();
    if (::fork() != 0) _exit(0);
    root.reset();
    _exit(0);
  }
  root.reset();
  if (child > 0) {
    int status;
    ::waitpid(child, &status, 0);
  }
}

struct DeviceUser {
  pid_t pid;
  std::string command;
  bool maps = false;    // has a file of the device memory-mapped
  bool device = false;  // has the device itself open (root only), which keeps a loop attached
};

// Processes with a descriptor, cwd, root or mapping on the file system of
// device `dev`, or with the device itself open. By device, not path: a
// job's files may lie deeper than any path the kernel can print.
std::vector<DeviceUser> device_users(dev_t dev) {
  std::vector<DeviceUser> out;
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return out;
  const pid_t self = ::getpid();
  char wanted_maps[32];
  std::snprintf(wanted_maps, sizeof wanted_maps, " %02x:%02x ", major(dev), minor(dev));
  while (dirent* e = ::readdir(proc)) {
    const pid_t pid = std::atoi(e->d_name);
    if (pid <= 0 || pid == self) continue;
    const std::string base = "/proc/" + std::string(e->d_name);
    DeviceUser user{pid, "", false, false};
    auto on_device = [&](const std::string& link) {
      struct stat st;
      if (::stat(link.c_str(), &st) != 0) return false;
      if (S_ISBLK(st.st_mode) && st.st_rdev == dev) user.device = true;
      return st.st_dev == dev || user.device;
    };
    bool uses = on_device(base + "/cwd") || on_device(base + "/root");
    if (DIR* fds = ::opendir((base + "/fd").c_str())) {
      while (dirent* f = ::readdir(fds)) {
        if (f->d_name[0] != '.' && on_device(base + "/fd/" + f->d_name)) uses = true;
      }
      ::closedir(fds);
    }
    std::ifstream maps(base + "/maps");
    for (std::string line; std::getline(maps, line);) {
      if (line.find(wanted_maps) != std::string::npos) {
        uses = user.maps = true;
        break;
      }
    }
    if (!uses) continue;
    std::ifstream comm(base + "/comm");
    std::getline(comm, user.command);
    out.push_back(user);
  }
  ::closedir(proc);
  return out;
}

void stop_daemon_and_image(const BlockParts& parts) {
  for (const auto& loop : parts.loops) detach_loop(loop, loop_label_of(parts.id));
  if (parts.pid > 0 && process_alive(parts.pid)) {
    ::kill(parts.pid, SIGTERM);  // leaves its request loop, zeroizes the key
    if (!wait_for_exit(parts.pid, 5s)) {
      ::kill(parts.pid, SIGKILL);
      wait_for_exit(parts.pid, 2s);
    }
  }
  if (!parts.image_mount.empty()) {
    if (auto mount = mount_at(parts.image_mount); mount && mount->fstype == "fuse.scratchcrypt-image") {
      abort_fuse_connection(*mount);
      ::umount2(parts.image_mount.c_str(), MNT_DETACH);
    }
    ::rmdir(parts.image_mount.c_str());
  }
}

// The users of the job's file system, and whoever holds one of the loop
// devices itself open: the kernel detaches a loop device only once its last
// holder lets go. udev's probes open a device for a moment after a change:
// those get up to a second to go away before they count.
std::vector<DeviceUser> volume_users(const BlockParts& parts) {
  std::vector<DeviceUser> users;
  const auto deadline = std::chrono::steady_clock::now() + 1s;  // a scan of /proc takes a while
  for (;;) {
    users.clear();
    for (const auto& loop : parts.loops) {
      struct stat dev;
      if (::stat(loop.c_str(), &dev) != 0 || !S_ISBLK(dev.st_mode)) continue;
      const auto more = device_users(dev.st_rdev);
      users.insert(users.end(), more.begin(), more.end());
    }
    if (std::none_of(users.begin(), users.end(), [](const DeviceUser& u) { return u.device; }) ||
        std::chrono::steady_clock::now() >= deadline) {
      break;
    }
    std::this_thread::sleep_for(20ms);
  }
  return users;
}

}  // namespace

BlockParts find_block_parts(const std::string& id, const VolumeRecord* record) {
  BlockParts parts;
  parts.id = id;
  parts.loops = loops_labelled(loop_label_of(id));
  parts.mountpoint = job_mount(parts.loops, record != nullptr ? record->mountpoint : "");
  const std::string image = image_mount_root() + "/" + id;
  if (auto mount = mount_at(image); mount && mount->fstype == "fuse.scratchcrypt-image") {
    parts.image_mount = image;
  } else if (record != nullptr && !record->image_mount.empty()) {
    parts.image_mount = record->image_mount;
  }
  if (record != nullptr) parts.pid = record->pid;
  return parts;
}

int end_block_volume(const BlockParts& parts, bool force) {
  const std::vector<DeviceUser> users = volume_users(parts);
  const int holders = static_cast<int>(users.size());
  if (holders > 0 && !force) {
    std::string list;
    for (const auto& u : users) list += "\n  pid " + std::to_string(u.pid) + " (" + u.command + ")";
    throw Error("cannot wipe " + (parts.mountpoint.empty() ? "volume " + parts.id : parts.mountpoint) +
                    ": processes still use it:" + list +
                    "\nstop them, or use --force to cut them off (they get I/O errors)",
                3);
  }
  // From here on nothing more is written to the image and every I/O of
  // the holders fails. Mapped pages cannot be taken back, and an open loop
  // device would stay attached: those processes are killed.
  UniqueFd root;
  if (!parts.mountpoint.empty()) {
    root = open_job_root(parts.mountpoint, parts.loops);
    if (root.valid()) shutdown_fs(root.get());
  }
  for (const auto& u : users) {
    if (u.maps || u.device) ::kill(u.pid, SIGKILL);
  }
  if (!parts.mountpoint.empty()) {
    if (::umount2(parts.mountpoint.c_str(), MNT_DETACH) != 0 && errno != EINVAL) {
      throw Error(errno_text("cannot detach " + parts.mountpoint, errno));
    }
    if (root.valid()) release_in_background(std::move(root));
  }
  stop_daemon_and_image(parts);
  if (!parts.mountpoint.empty() && job_mount(parts.loops, parts.mountpoint) == parts.mountpoint) {
    throw Error("the file system of volume " + parts.id + " is still mounted at " + parts.mountpoint);
  }
  return holders;
}

void unmount_block_volume(const BlockParts& parts) {
  if (!parts.mountpoint.empty() && ::umount2(parts.mountpoint.c_str(), 0) != 0) {
    const int err = errno;
    if (err == EBUSY) refuse_busy(parts.mountpoint, "unmount");
    if (err != EINVAL) throw Error(errno_text("cannot unmount " + parts.mountpoint, err));
  }
  stop_daemon_and_image(parts);
}

}  // namespace scratchcrypt
