#include "fuse/block_volume.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <ctime>
#include <fstream>
#include <memory>
#include <optional>
#include <thread>

#include "crypto/keyring.h"
#include "fuse/block_image.h"
#include "fuse/channel.h"
#include "fuse/error.h"
#include "fuse/image_store.h"
#include "fuse/log.h"
#include "fuse/loop_device.h"
#include "fuse/make_fs.h"
#include "fuse/mounts.h"
#include "fuse/registry.h"

namespace scratchcrypt {

namespace {

constexpr unsigned kWorkerThreads = 16;
constexpr uint64_t kMiB = 1 << 20;
constexpr uint64_t kMinimumSize = 8 * kMiB;  // room for a file system's own metadata

struct FuseSessionDeleter {
  void operator()(fuse_session* se) const { fuse_session_destroy(se); }
};

// Keeps the kernel's OOM killer away: the daemon is what the kernel writes
// the job's dirty pages through, and killing it loses the job's volume.
void protect_from_oom() {
  std::ofstream adj("/proc/self/oom_score_adj");
  adj << -1000 << std::endl;
  if (!adj) log::warning("cannot set oom_score_adj to -1000 (the daemon needs CAP_SYS_RESOURCE)");
}

// A directory that only root may enter, made if missing.
void make_private_dir(const std::string& path) {
  if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) {
    throw Error(errno_text("cannot create " + path, errno));
  }
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != 0 ||
      (st.st_mode & 077) != 0) {
    throw Error(path + " must be a directory owned by root with mode 0700; fix or remove it", 1);
  }
}

// Serializes admissions node-wide, so that two volumes made at once cannot
// both be promised the same free space. Held until the new volume is in
// the registry, where the next admission counts it.
class AdmissionLock {
 public:
  AdmissionLock() {
    const std::string dir = registry_dir();
    ::mkdir(parent_dir(dir).c_str(), 0700);
    ::mkdir(dir.c_str(), 0700);
    fd_.reset(::open((dir + "/.admission.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    if (!fd_.valid() || ::flock(fd_.get(), LOCK_EX) != 0) {
      throw Error(errno_text("cannot lock the volume registry in " + dir, errno));
    }
  }
  void release() { fd_.reset(); }

 private:
  UniqueFd fd_;
};

uint64_t allocated_bytes_of(const std::string& backing) {
  struct stat st;
  if (::stat((backing + "/" + kImageFileName).c_str(), &st) != 0) return 0;
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

std::string size_text(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f GiB", static_cast<double>(bytes) / (1 << 30));
  return bytes >= (1ULL << 30) ? buf : std::to_string(bytes / kMiB) + " MiB";
}

}  // namespace

uint64_t space_margin(uint64_t total) {
  return std::clamp<uint64_t>(total / 64, 64 * kMiB, 4ULL << 30);
}

SpaceCheck reserve_space(const std::string& backing, uint64_t wanted) {
  struct statvfs vfs;
  struct stat here;
  if (::statvfs(backing.c_str(), &vfs) != 0 || ::stat(backing.c_str(), &here) != 0) {
    throw Error(errno_text("cannot read the free space of " + backing, errno));
  }
  SpaceCheck check;
  check.free_bytes = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
  check.margin_bytes = space_margin(static_cast<uint64_t>(vfs.f_blocks) * vfs.f_frsize);
  for (const auto& r : registered_volumes()) {
    struct stat there;
    if (r.layout != "block" || !process_alive(r.pid) || ::stat(r.backing.c_str(), &there) != 0 ||
        there.st_dev != here.st_dev) {
      continue;
    }
    const uint64_t used = allocated_bytes_of(r.backing);
    check.promised_bytes += r.size_limit > used ? r.size_limit - used : 0;
  }
  const uint64_t committed = check.promised_bytes + check.margin_bytes;
  const uint64_t left = check.free_bytes > committed ? check.free_bytes - committed : 0;
  const uint64_t size = wanted == 0 ? left / kMiB * kMiB
                                    : (wanted + kSectorBytes - 1) / kSectorBytes * kSectorBytes;
  if (wanted != 0 && size < kMinimumSize) {
    throw Error("a block-layout volume needs at least " + size_text(kMinimumSize) +
                    " for its file system's own metadata; raise size_limit (--size-limit)",
                2);
  }
  if (size < kMinimumSize || size > left) {
    throw Error("the backing file system of " + backing + " cannot hold a block volume of " +
                    (wanted == 0 ? std::string("at least ") + size_text(kMinimumSize)
                                 : size_text(size)) +
                    ": " + size_text(check.free_bytes) + " free, " +
                    size_text(check.promised_bytes) + " of it promised to live block volumes, " +
                    size_text(check.margin_bytes) + " kept as margin. Use a smaller size_limit "
                    "(--size-limit), wait for running jobs to end, or free space",
                4);
  }
  check.size = size;
  return check;
}

int serve_block_volume(const MountRequest& r,
                       const std::function<void(int, const std::string&)>& report) {
  protect_from_oom();
  std::optional<Volume> volume;
  std::optional<ImageStore> store;
  std::optional<BlockImage> image;
  std::unique_ptr<fuse_session, FuseSessionDeleter> session;
  std::optional<FuseChannel> channel;
  std::string image_dir;
  bool made = false;  // the volume exists on disk: remove it again on failure
  auto forget_volume = [&] {
    if (!made) return;
    unregister_volume(volume->id());
    keyring::remove(volume->id());
    ::unlinkat(volume->root_fd(), kImageFileName, 0);
    ::unlinkat(volume->root_fd(), kHeaderName, 0);
    if (!image_dir.empty()) ::rmdir(image_dir.c_str());
  };
  const auto kernel_fs = parse_kernel_fs(r.kernel_fs);
  VolumeRecord record;
  try {
    if (!kernel_fs) throw Error("unknown file system '" + r.kernel_fs + "': use ext4 or xfs", 2);
    if (read_volume_header(r.backing)) {
      throw Error("backing " + r.backing + " already holds a volume; a block-layout volume is "
                  "never mounted twice (its kernel file system cannot be recovered): end it "
                  "with `scratchcrypt wipe " + r.backing + "`", 4);
    }
    VolumeKey key = [&] {
      if (r.key_fd < 0) return VolumeKey::generate();
      VolumeKey given = VolumeKey::read_from_fd(r.key_fd);
      ::close(r.key_fd);
      return given;
    }();
    AdmissionLock admission;
    const SpaceCheck space = reserve_space(r.backing, r.fs.size_limit);
    volume.emplace(Volume::create_block(r.backing, std::move(key), space.size));
    made = true;
    log::set_volume(volume->id());
    bool direct = false;
    UniqueFd backing_fd = create_backing_image(volume->root_fd(), space.size, &direct);
    if (!direct) {
      log::warning("the backing file system refuses O_DIRECT: the image goes through the page "
                   "cache, which can stall under memory pressure; put backing_root on ext4 or xfs");
    }
    store.emplace(std::move(backing_fd), direct, space.size, volume->contents());
    image.emplace(*store);
    keyring::store(volume->id(), volume->key());
    record = {volume->id(), absolute_path(r.backing), absolute_path(r.mountpoint), ::getpid(),
              r.owner.uid, r.owner.gid, r.job, space.size, static_cast<int64_t>(::time(nullptr)),
              "block", "", ""};
    register_volume(record);
    admission.release();

    ::mkdir(parent_dir(image_mount_root()).c_str(), 0700);
    make_private_dir(image_mount_root());
    image_dir = image_mount_root() + "/" + volume->id();
    make_private_dir(image_dir);
    std::vector<std::string> argv = {"scratchcrypt"};
    if (r.debug) argv.push_back("-d");
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    fuse_args fargs = FUSE_ARGS_INIT(static_cast<int>(args.size()), args.data());
    session.reset(fuse_session_new(&fargs, &BlockImage::operations(), sizeof(fuse_lowlevel_ops),
                                   &*image));
    if (!session) throw Error("cannot start a FUSE session (is /dev/fuse present?)");
    if (fuse_set_signal_handlers(session.get()) != 0) throw Error("cannot set signal handlers");
    channel.emplace(image_dir, "scratchcrypt-image:" + volume->id(), -1, /*shared=*/false);
    channel->attach(session.get());
  } catch (const Error& e) {
    if (session) fuse_remove_signal_handlers(session.get());
    channel.reset();
    forget_volume();
    report(e.exit_code(), e.what());
    return e.exit_code();
  } catch (const std::exception& e) {
    if (session) fuse_remove_signal_handlers(session.get());
    channel.reset();
    forget_volume();
    report(1, e.what());
    return 1;
  }

  // The loop device, mkfs and the mount all read and write the image, so
  // they run beside the request loop, not before it.
  std::atomic<bool> setup_failed{false};
  std::thread setup([&] {
    try {
      LoopDevice loop = LoopDevice::attach(image_dir + "/" + kImageFileName,
                                           {4096, true, kMaxRequestBytes / 1024,
                                            "scratchcrypt:" + volume->id()});
      if (!loop.direct_io()) log::warning("the loop device runs without direct I/O");
      make_fs(*kernel_fs, loop.path(), store->size());
      // Onto the very directory the caller opened, when it passed one.
      mount_fs(*kernel_fs, loop.path(),
               r.mountpoint_fd >= 0 ? "/proc/self/fd/" + std::to_string(r.mountpoint_fd)
                                    : r.mountpoint);
      if (r.mountpoint_fd >= 0) ::close(r.mountpoint_fd);  // not a holder of what it covers
      try {
        hand_over_root(loop.path(), r.mountpoint, r.owner.uid, r.owner.gid, r.owner.mode);
      } catch (...) {
        ::umount2(r.mountpoint.c_str(), MNT_DETACH);
        throw;
      }
      loop.release();  // the mount holds it now; the kernel detaches it after
      record.loop = loop.path();
      record.image_mount = image_dir;
      register_volume(record);
      log::info("mounted " + std::string(kernel_fs_name(*kernel_fs)) + " of " +
                std::to_string(store->size()) + " bytes at " + r.mountpoint + " on " +
                loop.path() + (store->direct() ? "" : " (buffered backing I/O)"));
      report(0, "");
    } catch (const std::exception& e) {
      setup_failed = true;
      const Error* error = dynamic_cast<const Error*>(&e);
      report(error != nullptr ? error->exit_code() : 1, e.what());
      fuse_session_exit(session.get());
      ::umount2(image_dir.c_str(), MNT_DETACH);  // wakes the request loop
    }
  });

  mark_io_flusher();  // the worker threads started below inherit it
  const int rc = serve_requests(session.get(), kWorkerThreads);
  setup.join();
  fuse_remove_signal_handlers(session.get());
  channel->unmount();
  if (setup_failed) {
    forget_volume();
    return 1;
  }
  ::rmdir(image_dir.c_str());
  unregister_volume(volume->id());
  log::info("stopped");
  return rc == 0 ? 0 : 1;
}

}  // namespace scratchcrypt
