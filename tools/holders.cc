#include "tools/holders.h"

#include <signal.h>

#include <cerrno>
#include <fstream>
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

namespace {

// Gone, or a zombie: a detached daemon's parent is init, which may take a
// while to reap it, but a zombie holds no memory, key or file any more.
bool has_exited(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return true;
  auto paren = line.rfind(')');
  return paren == std::string::npos || paren + 2 >= line.size() || line[paren + 2] == 'Z' ||
         line[paren + 2] == 'X';
}

}  // namespace

bool process_alive(pid_t pid) { return pid > 0 && !has_exited(pid); }

bool wait_for_exit(pid_t pid, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!has_exited(pid)) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

}  // namespace scratchcrypt
