#include "fuse/make_fs.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <vector>

#include "fuse/error.h"
#include "fuse/log.h"
#include "fuse/unique_fd.h"

namespace scratchcrypt {

namespace {

// FS_IOC_SHUTDOWN (ext4, xfs, f2fs, btrfs share the number) and its flag.
constexpr unsigned long kShutdownIoctl = _IOR('X', 125, uint32_t);
constexpr uint32_t kShutdownNoLogFlush = 2;

std::string find_tool(const std::string& name) {
  for (const char* dir : {"/usr/sbin", "/sbin", "/usr/bin", "/bin"}) {
    const std::string path = std::string(dir) + "/" + name;
    if (::access(path.c_str(), X_OK) == 0) return path;
  }
  return "";
}

// Runs argv without a shell; returns its exit status and combined output.
int run_tool(const std::vector<std::string>& argv, std::string* output) {
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) throw Error(errno_text("pipe", errno));
  UniqueFd read_end(pipe_fds[0]), write_end(pipe_fds[1]);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, write_end.get(), 1);
  posix_spawn_file_actions_adddup2(&actions, write_end.get(), 2);
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  char path_env[] = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";
  char* env[] = {path_env, nullptr};
  pid_t pid = 0;
  const int rc = ::posix_spawn(&pid, args[0], &actions, nullptr, args.data(), env);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw Error(errno_text("cannot run " + argv[0], rc));
  write_end.reset();
  char buf[4096];
  ssize_t n;
  while ((n = ::read(read_end.get(), buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR)) {
    if (n > 0) output->append(buf, static_cast<size_t>(n));
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace

const char* kernel_fs_name(KernelFs fs) { return fs == KernelFs::kXfs ? "xfs" : "ext4"; }

std::optional<KernelFs> parse_kernel_fs(const std::string& name) {
  if (name == "ext4") return KernelFs::kExt4;
  if (name == "xfs") return KernelFs::kXfs;
  return std::nullopt;
}

void make_fs(KernelFs fs, const std::string& device, uint64_t size) {
  const bool ext4 = fs == KernelFs::kExt4;
  const std::string tool = find_tool(ext4 ? "mkfs.ext4" : "mkfs.xfs");
  if (tool.empty()) {
    throw Error(std::string(ext4 ? "mkfs.ext4 is missing: install e2fsprogs"
                                 : "mkfs.xfs is missing: install xfsprogs") +
                " (apt-get install " + (ext4 ? "e2fsprogs" : "xfsprogs") +
                "), or use layout = files");
  }
  std::vector<std::string> argv;
  if (ext4) {
    // -m 0: no blocks reserved for root on a job's disk. The journal stays:
    // without one, ext4 avoids reusing freed inodes for minutes, which slows
    // a job that deletes and recreates large trees (docs/OPERATIONS.md); and
    // its commits cost one no-op FSYNC round trip each here.
    argv = {tool, "-q", "-F", "-b", "4096", "-m", "0",
            "-E", "nodiscard,lazy_itable_init=1,lazy_journal_init=1,assume_storage_prezeroed=1"};
    // Below 64 MiB the smallest journal (4 MiB) would take a large share of
    // the volume, whose size a job reads as its space.
    if (size < (uint64_t{64} << 20)) argv.insert(argv.end(), {"-O", "^has_journal"});
    argv.push_back(device);
  } else {
    argv = {tool, "-q", "-f", "-K", "-b", "size=4096", "-s", "size=4096", device};
  }
  const auto start = std::chrono::steady_clock::now();
  std::string output;
  const int status = run_tool(argv, &output);
  if (status != 0) {
    throw Error("cannot make the volume's " + std::string(kernel_fs_name(fs)) + " file system (" +
                argv[0] + " exit " + std::to_string(status) + "): " + output);
  }
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - start).count();
  log::info(std::string("made ") + kernel_fs_name(fs) + " in " + std::to_string(ms) + " ms");
}

void mount_fs(KernelFs fs, const std::string& device, const std::string& mountpoint) {
  // minixdf: statfs counts the file system's own metadata too, so `df`
  // shows exactly the volume's size.
  const char* options = fs == KernelFs::kExt4 ? "discard,errors=remount-ro,minixdf" : "discard";
  if (::mount(device.c_str(), mountpoint.c_str(), kernel_fs_name(fs),
              MS_NODEV | MS_NOSUID | MS_NOATIME, options) != 0) {
    throw Error(errno_text(std::string("cannot mount the volume's ") + kernel_fs_name(fs) +
                               " file system at " + mountpoint, errno));
  }
}

void hand_over_root(const std::string& device, const std::string& mountpoint, uid_t uid,
                    gid_t gid, mode_t mode) {
  UniqueFd root(::open(mountpoint.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!root.valid()) throw Error(errno_text("cannot open the new file system at " + mountpoint, errno));
  struct stat st, dev;
  if (::fstat(root.get(), &st) != 0 || ::stat(device.c_str(), &dev) != 0 || st.st_dev != dev.st_rdev) {
    throw Error(mountpoint + " is not the new file system on " + device + " (was it replaced?)");
  }
  ::unlinkat(root.get(), "lost+found", AT_REMOVEDIR);
  if (::fchown(root.get(), uid, gid) != 0 || ::fchmod(root.get(), mode & 07777) != 0) {
    throw Error(errno_text("cannot set the owner and mode of " + mountpoint, errno));
  }
}

bool shutdown_fs(int root_fd) {
  uint32_t flags = kShutdownNoLogFlush;
  return ::ioctl(root_fd, kShutdownIoctl, &flags) == 0;
}

}  // namespace scratchcrypt
