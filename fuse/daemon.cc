#include "fuse/daemon.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <optional>

#include "crypto/keyring.h"
#include "fuse/block_volume.h"
#include "fuse/channel.h"
#include "fuse/error.h"
#include "fuse/log.h"
#include "fuse/mounts.h"
#include "fuse/registry.h"

namespace scratchcrypt {

namespace {

constexpr unsigned kWorkerThreads = 16;

struct FuseSessionDeleter {
  void operator()(fuse_session* se) const { fuse_session_destroy(se); }
};

// Refusals that need no daemon: checked in the caller's process, so the
// operator reads them on the terminal.
void check_request(const MountRequest& r) {
  if (::geteuid() != 0) {
    throw Error("mounting needs root (the daemon serves several users with allow_other)", 2);
  }
  struct stat st;
  if (::stat(r.backing.c_str(), &st) != 0) {
    throw Error("backing directory " + r.backing + " does not exist: create it first "
                "(mkdir -p -m 0700 " + r.backing + ")", 2);
  }
  if (!S_ISDIR(st.st_mode)) throw Error("backing " + r.backing + " is not a directory", 2);

  if (auto header = read_volume_header(r.backing)) {
    if (auto holder = volume_lock_holder(r.backing)) {
      throw Error("backing " + r.backing + " is already mounted by daemon pid " +
                  std::to_string(*holder) + "; a backing directory can be mounted only once "
                  "(see `scratchcrypt status`)", 4);
    }
    if (header->layout == VolumeLayout::kBlock) {
      throw Error("backing " + r.backing + " holds block-layout volume " + header->id +
                  ", which cannot be mounted again (--recover is a files-layout feature: a "
                  "kernel file system cannot move to a new daemon); end it with `scratchcrypt "
                  "wipe " + r.backing + "`", 4);
    }
  }
  if (r.layout == VolumeLayout::kBlock && r.recover) {
    throw Error("--recover is a files-layout feature; a block-layout volume is made once and "
                "ended with `scratchcrypt wipe`", 2);
  }
  const bool dead = is_dead_mount(r.mountpoint);
  if (dead && !r.recover) {
    throw Error("mount point " + r.mountpoint + " holds a volume whose daemon died; bring it "
                "back with `scratchcrypt mount --recover " + r.backing + " " + r.mountpoint +
                "` or end it with `scratchcrypt wipe " + r.mountpoint + "`", 4);
  }
  if (!dead) {
    if (::stat(r.mountpoint.c_str(), &st) != 0) {
      throw Error("mount point " + r.mountpoint + " does not exist: create it first (mkdir -p " +
                  r.mountpoint + ")", 2);
    }
    if (!S_ISDIR(st.st_mode)) throw Error("mount point " + r.mountpoint + " is not a directory", 2);
    if (auto mounted = mount_at(r.mountpoint)) {
      throw Error("mount point " + r.mountpoint + " is already mounted (" + mounted->fstype +
                  "); unmount it first or choose another", 4);
    }
    if (!directory_is_empty(r.mountpoint)) {
      throw Error("mount point " + r.mountpoint + " is not empty; mounting over it would hide "
                  "its files: give an empty directory", 4);
    }
  }
  if (absolute_path(r.backing) == absolute_path(r.mountpoint)) {
    throw Error("the backing directory and the mount point must differ", 2);
  }
}

VolumeKey obtain_key(const MountRequest& r, const std::optional<VolumeHeader>& header) {
  if (r.key_fd >= 0) {
    VolumeKey key = VolumeKey::read_from_fd(r.key_fd);
    ::close(r.key_fd);
    return key;
  }
  if (r.recover) {
    if (!header) throw Error("backing " + r.backing + " is not a scratchcrypt volume; nothing to recover", 4);
    auto key = keyring::load(header->id);
    if (!key) {
      throw Error("the kernel keyring has no key for volume " + header->id + " (the node "
                  "rebooted or the volume was wiped): its data cannot be read by anyone any "
                  "more; remove it with `scratchcrypt wipe " + r.backing + "`", 4);
    }
    return std::move(*key);
  }
  return VolumeKey::generate();
}

// Leaves any cgroup of the job that started us (v1 hierarchies and v2).
void move_to_root_cgroups() {
  const std::string pid = std::to_string(::getpid());
  for (const auto& mount : list_mounts()) {
    if (mount.fstype != "cgroup" && mount.fstype != "cgroup2") continue;
    std::ofstream procs(mount.mountpoint + "/cgroup.procs");
    procs << pid << std::endl;  // best effort: not every hierarchy allows it
  }
}

void harden_process() {
  ::prctl(PR_SET_DUMPABLE, 0);  // no core dumps, no ptrace by non-root
  // Key schedules live in OpenSSL's memory: lock every page we touch so
  // none of it can be swapped out.
  ::mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT);
  ::umask(0);  // the kernel already applied the caller's umask
  // One descriptor per inode the kernel knows: a job's tree needs far more
  // than the soft limit of 1024 a prolog may hand down.
  rlimit files;
  if (::getrlimit(RLIMIT_NOFILE, &files) == 0) {
    std::ifstream nr_open("/proc/sys/fs/nr_open");
    rlim_t most = 0;
    if (nr_open >> most && most > files.rlim_max) files.rlim_max = most;
    files.rlim_cur = files.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &files) != 0) {
      ::getrlimit(RLIMIT_NOFILE, &files);
      files.rlim_cur = files.rlim_max;
      ::setrlimit(RLIMIT_NOFILE, &files);
    }
  }
}

// Reports the daemon's verdict to the waiting caller: "0\n" or "<code> <message>".
void report(int fd, int code, const std::string& message) {
  if (fd < 0) return;
  std::string text = std::to_string(code) + " " + message;
  ssize_t ignored = ::write(fd, text.data(), text.size());
  (void)ignored;
  ::close(fd);
}

// A background daemon's stdio goes nowhere once the caller has its verdict.
void detach_stdio() {
  int null = ::open("/dev/null", O_RDWR);
  ::dup2(null, 0);
  ::dup2(null, 1);
  ::dup2(null, 2);
  if (null > 2) ::close(null);
}

// Runs in the daemon process. Returns its exit status.
int serve(const MountRequest& r, int report_fd) {
  harden_process();
  if (r.layout == VolumeLayout::kBlock) {
    return serve_block_volume(r, [&](int code, const std::string& message) {
      report(report_fd, code, message);
      if (!r.foreground) detach_stdio();
    });
  }
  std::optional<Volume> volume;
  std::unique_ptr<fuse_session, FuseSessionDeleter> session;
  std::optional<FuseChannel> channel;  // after the session: unmounts before it closes
  std::optional<Filesystem> fs;
  try {
    auto header = read_volume_header(r.backing);
    if (header && !r.recover && r.key_fd < 0) {
      throw Error("backing " + r.backing + " already holds volume " + header->id +
                  "; remount it with --recover, or end it with `scratchcrypt wipe " +
                  r.backing + "`", 4);
    }
    VolumeKey key = obtain_key(r, header);
    if (header) {
      volume.emplace(Volume::open(r.backing, std::move(key)));  // takes the lock
    } else {
      volume.emplace(Volume::create(r.backing, std::move(key), r.owner));
    }
    // Only the holder of the volume lock may replace a dead mount.
    if (r.recover && is_dead_mount(r.mountpoint) &&
        ::umount2(r.mountpoint.c_str(), MNT_DETACH) != 0) {
      throw Error(errno_text("cannot detach the dead mount at " + r.mountpoint, errno));
    }
    log::set_volume(volume->id());
    keyring::store(volume->id(), volume->key());
    // The size limit lives in the header, so that a remount (--recover after
    // a crash) keeps it; a limit given now replaces it.
    FilesystemOptions options = r.fs;
    if (options.size_limit == 0) options.size_limit = volume->size_limit();
    if (options.size_limit != volume->size_limit()) volume->set_size_limit(options.size_limit);
    fs.emplace(*volume, options);

    // Mount options are the channel's; libfuse only serves.
    std::vector<std::string> argv = {"scratchcrypt"};
    if (r.debug) argv.push_back("-d");
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    fuse_args fargs = FUSE_ARGS_INIT(static_cast<int>(args.size()), args.data());
    session.reset(fuse_session_new(&fargs, &Filesystem::operations(),
                                   sizeof(fuse_lowlevel_ops), &*fs));
    if (!session) throw Error("cannot start a FUSE session (is /dev/fuse present?)");
    fs->attach_session(session.get());
    if (fuse_set_signal_handlers(session.get()) != 0) throw Error("cannot set signal handlers");
    channel.emplace(r.mountpoint, "scratchcrypt:" + volume->id(), r.mountpoint_fd);
    if (r.mountpoint_fd >= 0) ::close(r.mountpoint_fd);  // not a holder of what it covers
    channel->attach(session.get());
    VolumeRecord record{volume->id(), absolute_path(r.backing), absolute_path(r.mountpoint),
                        ::getpid(), r.owner.uid, r.owner.gid, r.job, options.size_limit,
                        static_cast<int64_t>(::time(nullptr))};
    if (r.recover) {
      if (auto old = find_volume(volume->id())) {
        record.uid = old->uid;
        record.gid = old->gid;
        record.job = old->job;
      }
    }
    register_volume(record);
  } catch (const std::exception& e) {
    // Unmounted, and a volume made by this call leaves neither its key nor
    // its header behind (BACKING is as it was); a recovered one keeps both.
    if (session) fuse_remove_signal_handlers(session.get());
    channel.reset();
    session.reset();
    fs.reset();
    std::string undone;
    if (volume && volume->created()) {
      try {
        keyring::remove(volume->id());
      } catch (const std::exception&) {
      }
      volume->discard();
      undone = " (the new volume " + volume->id() + " was undone: no key or header left)";
    }
    const auto* error = dynamic_cast<const Error*>(&e);
    const int code = error != nullptr ? error->exit_code() : 1;
    report(report_fd, code, e.what() + undone);
    return code;
  }

  log::info("mounted at " + r.mountpoint + (r.recover ? " (recovered)" : ""));
  report(report_fd, 0, "");
  if (!r.foreground) detach_stdio();
  const int rc = serve_requests(session.get(), kWorkerThreads);
  fuse_remove_signal_handlers(session.get());
  channel->unmount();
  unregister_volume(volume->id());
  log::info("unmounted");
  return rc == 0 ? 0 : 1;
}

}  // namespace

int mount_volume(const MountRequest& request) {
  check_request(request);
  if (request.foreground) return serve(request, -1);

  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) throw Error(errno_text("pipe", errno));
  std::fflush(nullptr);
  pid_t child = ::fork();
  if (child < 0) throw Error(errno_text("cannot start the volume daemon", errno));
  if (child == 0) {
    ::close(pipe_fds[0]);
    ::setsid();
    move_to_root_cgroups();
    if (::chdir("/") != 0) _exit(1);
    // Detach from the caller entirely: our exit status is read by nobody.
    pid_t daemon = ::fork();
    if (daemon < 0) _exit(1);
    if (daemon > 0) _exit(0);
    log::use_syslog();
    _exit(serve(request, pipe_fds[1]));
  }
  ::close(pipe_fds[1]);
  int status = 0;
  ::waitpid(child, &status, 0);
  std::string verdict;
  char buf[512];
  ssize_t n;
  while ((n = ::read(pipe_fds[0], buf, sizeof buf)) > 0) verdict.append(buf, static_cast<size_t>(n));
  ::close(pipe_fds[0]);
  if (verdict.empty()) throw Error("the volume daemon died before mounting; see the system log", 1);
  auto space = verdict.find(' ');
  int code = std::atoi(verdict.substr(0, space).c_str());
  if (code != 0) throw Error(verdict.substr(space + 1), code);
  return 0;
}

}  // namespace scratchcrypt
