#include "tools/holders.h"

#include <signal.h>

#include <cerrno>
#include <thread>

#include "fuse/error.h"
#include "fuse/mounts.h"

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

bool wait_for_exit(pid_t pid, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (::kill(pid, 0) == 0 || errno != ESRCH) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

}  // namespace scratchcrypt
