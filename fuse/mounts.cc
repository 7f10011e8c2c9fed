#include "fuse/mounts.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace scratchcrypt {

namespace {

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string unescape(const std::string& field) {
  std::string out;
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size() + 0 && i + 3 <= field.size()) {
      out.push_back(static_cast<char>(std::strtol(field.substr(i + 1, 3).c_str(), nullptr, 8)));
      i += 3;
    } else {
      out.push_back(field[i]);
    }
  }
  return out;
}

}  // namespace

bool path_under(const std::string& path, const std::string& root) {
  return path == root || (path.size() > root.size() && path.compare(0, root.size(), root) == 0 &&
                          path[root.size()] == '/');
}

namespace {

std::string read_link(const std::string& path) {
  char buf[PATH_MAX];
  ssize_t n = ::readlink(path.c_str(), buf, sizeof buf - 1);
  return n < 0 ? std::string() : std::string(buf, static_cast<size_t>(n));
}

}  // namespace

std::vector<MountEntry> list_mounts(const std::string& mountinfo) {
  std::vector<MountEntry> out;
  std::ifstream in(mountinfo);
  std::string line;
  while (std::getline(in, line)) {
    // id parent major:minor root mountpoint options [optional...] - fstype source super
    std::istringstream fields(line);
    std::string id, parent, devno, root, mountpoint, options, word;
    fields >> id >> parent >> devno >> root >> mountpoint >> options;
    while (fields >> word && word != "-") {
    }
    MountEntry entry;
    fields >> entry.fstype >> entry.source;
    entry.mountpoint = unescape(mountpoint);
    entry.source = unescape(entry.source);
    std::sscanf(devno.c_str(), "%u:%u", &entry.dev_major, &entry.dev_minor);
    out.push_back(std::move(entry));
  }
  return out;
}

std::optional<MountEntry> mount_at(const std::string& mountpoint) {
  std::optional<MountEntry> found;
  const std::string wanted = absolute_path(mountpoint);
  for (auto& entry : list_mounts()) {
    if (entry.mountpoint == wanted) found = entry;  // the last one is on top
  }
  return found;
}

std::string absolute_path(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  auto slash = p.rfind('/');
  std::string parent = slash == std::string::npos ? "." : (slash == 0 ? "/" : p.substr(0, slash));
  std::string base = slash == std::string::npos ? p : p.substr(slash + 1);
  if (base.empty() || base == "." || base == "..") {
    char* resolved = ::realpath(p.c_str(), nullptr);
    if (resolved == nullptr) return p;
    std::string out(resolved);
    std::free(resolved);
    return out;
  }
  char* resolved = ::realpath(parent.c_str(), nullptr);
  if (resolved == nullptr) return p;
  std::string out(resolved);
  std::free(resolved);
  return out == "/" ? "/" + base : out + "/" + base;
}

std::string resolved_path(const std::string& path) {
  char* real = ::realpath(path.c_str(), nullptr);
  if (real == nullptr) return absolute_path(path);
  std::string out(real);
  std::free(real);
  return out;
}

std::string parent_dir(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

bool directory_is_empty(const std::string& path) {
  DIR* dir = ::opendir(path.c_str());
  if (dir == nullptr) return false;
  bool empty = true;
  while (dirent* entry = ::readdir(dir)) {
    const std::string name = entry->d_name;
    if (name != "." && name != "..") {
      empty = false;
      break;
    }
  }
  ::closedir(dir);
  return empty;
}

bool on_ext4_without_journal(const std::string& path) {
  constexpr long kExt4Magic = 0xEF53;
  std::string at = path;
  struct stat st;
  while (::stat(at.c_str(), &st) != 0) {
    if (at.empty() || at[0] != '/' || at == "/") return false;
    at = parent_dir(at);
  }
  struct statfs fs;
  if (::statfs(at.c_str(), &fs) != 0 || fs.f_type != kExt4Magic) return false;
  // The block device's kernel name, as /proc/fs/ext4 and /proc/fs/jbd2 use it.
  const std::string sys = "/sys/dev/block/" + std::to_string(major(st.st_dev)) + ":" +
                          std::to_string(minor(st.st_dev));
  char link[PATH_MAX];
  const ssize_t n = ::readlink(sys.c_str(), link, sizeof link - 1);
  if (n <= 0) return false;
  const std::string target(link, static_cast<size_t>(n));
  const std::string device = target.substr(target.rfind('/') + 1);
  struct stat known;
  if (::stat(("/proc/fs/ext4/" + device).c_str(), &known) != 0) return false;
  // A journal shows as /proc/fs/jbd2/<device>-<journal inode>.
  DIR* journals = ::opendir("/proc/fs/jbd2");
  if (journals == nullptr) return true;  // jbd2 not even loaded
  bool journaled = false;
  while (dirent* entry = ::readdir(journals)) {
    if (std::string(entry->d_name).rfind(device + "-", 0) == 0) journaled = true;
  }
  ::closedir(journals);
  return !journaled;
}

bool is_dead_mount(const std::string& path) {
  // statfs always reaches the daemon; stat could be answered from cache.
  struct statfs st;
  return ::statfs(path.c_str(), &st) != 0 && errno == ENOTCONN;
}

bool abort_fuse_connection(const MountEntry& mount) {
  const std::string control = "/sys/fs/fuse/connections/" + std::to_string(mount.dev_minor) + "/abort";
  int fd = ::open(control.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    // The control file system may not be mounted yet.
    ::mount("fusectl", "/sys/fs/fuse/connections", "fusectl", 0, nullptr);
    fd = ::open(control.c_str(), O_WRONLY | O_CLOEXEC);
  }
  if (fd < 0) return false;
  bool ok = ::write(fd, "1", 1) == 1;
  ::close(fd);
  return ok;
}

std::optional<dev_t> proc_link_device(const std::string& link) {
  struct statx stx;
  if (::statx(AT_FDCWD, link.c_str(), AT_STATX_DONT_SYNC, STATX_TYPE, &stx) != 0) return std::nullopt;
  return makedev(stx.stx_dev_major, stx.stx_dev_minor);
}

std::optional<dev_t> maps_line_device(const std::string& line) {
  // address perms offset dev inode [path]
  std::istringstream fields(line);
  std::string address, perms, offset, dev, inode;
  if (!(fields >> address >> perms >> offset >> dev >> inode) || inode == "0") return std::nullopt;
  unsigned major_no = 0, minor_no = 0;
  if (std::sscanf(dev.c_str(), "%x:%x", &major_no, &minor_no) != 2) return std::nullopt;
  return makedev(major_no, minor_no);
}

std::vector<Holder> processes_using(const std::string& path) {
  std::vector<Holder> out;
  const std::string root = absolute_path(path);
  std::optional<dev_t> device;
  if (auto mount = mount_at(root)) device = makedev(mount->dev_major, mount->dev_minor);
  auto link_uses = [&](const std::string& link) {
    return (device && proc_link_device(link) == device) || path_under(read_link(link), root);
  };
  const pid_t self = ::getpid();
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return out;
  while (dirent* entry = ::readdir(proc)) {
    char* end = nullptr;
    long pid = std::strtol(entry->d_name, &end, 10);
    if (*end != '\0' || pid <= 0 || pid == self) continue;
    const std::string base = std::string("/proc/") + entry->d_name;
    bool uses = link_uses(base + "/cwd") || link_uses(base + "/root");
    if (!uses) {
      if (DIR* fds = ::opendir((base + "/fd").c_str())) {
        while (dirent* fd = ::readdir(fds)) {
          if (fd->d_name[0] != '.' && link_uses(base + "/fd/" + fd->d_name)) {
            uses = true;
            break;
          }
        }
        ::closedir(fds);
      }
    }
    if (!uses) {
      std::ifstream maps(base + "/maps");
      std::string line;
      while (!uses && std::getline(maps, line)) {
        auto slash = line.find('/');
        uses = (device && maps_line_device(line) == device) ||
               (slash != std::string::npos && path_under(line.substr(slash), root));
      }
    }
    if (uses) {
      std::ifstream comm(base + "/comm");
      std::string command;
      std::getline(comm, command);
      out.push_back({static_cast<pid_t>(pid), command});
    }
  }
  ::closedir(proc);
  return out;
}

}  // namespace scratchcrypt
