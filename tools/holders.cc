#include "tools/holders.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>

#include <cerrno>
#include <fstream>
#include <thread>

#include "fuse/error.h"
#include "fuse/mounts.h"
#include "fuse/registry.h"
#include "fuse/unique_fd.h"

namespace scratchcrypt {

void refuse_busy(const std::string& path, const std::string& action) {
  std::string list;
  for (const auto& holder : processes_using(path)) {
    list += "\n  pid " + std::to_string(holder.pid) + " (" + holder.command + ")";
  }
  if (list.empty()) list = "\n  (no process found; a file may be in use by the kernel, e.g. a loop device)";
  throw Error("cannot " + action + " " + path + ": processes still use it:" + list +
                  "\nstop them, or use --force to cut them off (they get I/O errors)",
              3);
}

int evict_cached_data(const std::string& mountpoint) {
  // By device, as processes_using finds holders: a holder in another mount
  // namespace sees the volume under another path.
  const auto mount = mount_at(mountpoint);
  if (!mount) return 0;
  const dev_t device = makedev(mount->dev_major, mount->dev_minor);
  int killed = 0;
  for (const auto& holder : processes_using(mountpoint)) {
    const std::string base = "/proc/" + std::to_string(holder.pid);
    UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, holder.pid, 0)));
    if (DIR* fds = ::opendir((base + "/fd").c_str())) {
      while (dirent* entry = ::readdir(fds)) {
        if (entry->d_name[0] == '.' || !pidfd.valid()) continue;
        if (proc_link_device(base + "/fd/" + entry->d_name) != device) continue;
        UniqueFd copy(static_cast<int>(
            ::syscall(SYS_pidfd_getfd, pidfd.get(), std::atoi(entry->d_name), 0)));
        if (copy.valid()) ::posix_fadvise(copy.get(), 0, 0, POSIX_FADV_DONTNEED);
      }
      ::closedir(fds);
    }
    std::ifstream maps(base + "/maps");
    std::string line;
    while (std::getline(maps, line)) {
      if (maps_line_device(line) == device) {
        ::kill(holder.pid, SIGKILL);
        ++killed;
        break;
      }
    }
  }
  return killed;
}

bool wait_for_exit(pid_t pid, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (process_alive(pid)) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

}  // namespace scratchcrypt
