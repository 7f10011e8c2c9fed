#include "fuse/channel.h"

#include <fcntl.h>
#include <linux/fuse.h>
#include <poll.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstddef>
#include <cstring>

#include "fuse/error.h"

namespace scratchcrypt {

namespace {

// One session per daemon process, so the INIT exchange is process-wide.
std::atomic<bool> init_replied{false};
std::atomic<uint64_t> init_unique{0};
std::atomic<bool> kernel_offers_killpriv_v2{false};

template <typename T>
T load(const void* at) {
  T value;
  std::memcpy(&value, at, sizeof value);
  return value;
}

// Notes what the kernel offers in its INIT request.
ssize_t channel_read(int fd, void* buf, size_t size, void*) {
  const ssize_t n = ::read(fd, buf, size);
  constexpr size_t kInitFlagsEnd =
      sizeof(fuse_in_header) + offsetof(fuse_init_in, flags) + sizeof(uint32_t);
  if (n >= static_cast<ssize_t>(kInitFlagsEnd) && !init_replied.load(std::memory_order_acquire)) {
    const auto in = load<fuse_in_header>(buf);
    if (in.opcode == FUSE_INIT) {
      const auto flags = load<uint32_t>(static_cast<const char*>(buf) + sizeof(fuse_in_header) +
                                        offsetof(fuse_init_in, flags));
      kernel_offers_killpriv_v2.store((flags & FUSE_HANDLE_KILLPRIV_V2) != 0);
      init_unique.store(in.unique, std::memory_order_release);
    }
  }
  return n;
}

// Adds FUSE_HANDLE_KILLPRIV_V2 to libfuse's INIT reply (iov[0] the header,
// iov[1] struct fuse_init_out), when the kernel offered it.
ssize_t channel_writev(int fd, struct iovec* iov, int count, void*) {
  if (init_replied.load(std::memory_order_acquire) || count != 2 ||
      iov[0].iov_len != sizeof(fuse_out_header)) {
    return ::writev(fd, iov, count);
  }
  const auto out = load<fuse_out_header>(iov[0].iov_base);
  constexpr size_t kFlagsAt = offsetof(fuse_init_out, flags);
  if (out.unique != init_unique.load(std::memory_order_acquire) || out.error != 0 ||
      iov[1].iov_len < kFlagsAt + sizeof(uint32_t) || iov[1].iov_len > sizeof(fuse_init_out)) {
    return ::writev(fd, iov, count);
  }
  init_replied.store(true, std::memory_order_release);
  if (!kernel_offers_killpriv_v2.load()) return ::writev(fd, iov, count);
  fuse_init_out reply{};
  std::memcpy(&reply, iov[1].iov_base, iov[1].iov_len);
  reply.flags |= FUSE_HANDLE_KILLPRIV_V2;
  iovec amended[2] = {iov[0], {&reply, iov[1].iov_len}};
  return ::writev(fd, amended, 2);
}

const fuse_custom_io kChannelIo = {
    .writev = channel_writev,
    .read = channel_read,
    .splice_receive = nullptr,
    .splice_send = nullptr,
};

}  // namespace

FuseChannel::FuseChannel(const std::string& mountpoint, const std::string& fsname,
                         int mountpoint_fd, bool shared)
    : mountpoint_(mountpoint), fd_(::open("/dev/fuse", O_RDWR | O_CLOEXEC)) {
  if (!fd_.valid()) {
    const int err = errno;
    throw Error(errno_text("cannot open /dev/fuse (is the fuse module loaded, and does the "
                           "container pass /dev/fuse through?)", err));
  }
  // The options libfuse's own mount passes (fuse(4)); rootmode is octal.
  char options[128];
  std::snprintf(options, sizeof options, "fd=%d,rootmode=%o,user_id=0,group_id=0%s", fd_.get(),
                static_cast<unsigned>(S_IFDIR), shared ? ",allow_other,default_permissions" : "");
  const std::string target =
      mountpoint_fd >= 0 ? "/proc/self/fd/" + std::to_string(mountpoint_fd) : mountpoint;
  const char* type = shared ? "fuse.scratchcrypt" : "fuse.scratchcrypt-image";
  if (::mount(fsname.c_str(), target.c_str(), type, MS_NOSUID | MS_NODEV | (shared ? 0 : MS_NOEXEC),
              options) != 0) {
    const int err = errno;
    throw Error(errno_text("cannot mount at " + mountpoint + " (is the fuse module loaded "
                           "and /dev/fuse present?)", err));
  }
  mounted_ = true;
}

void FuseChannel::attach(fuse_session* session) {
  const int fd = fd_.get();
  if (fuse_session_custom_io(session, &kChannelIo, fd) != 0) {
    throw Error("cannot attach the FUSE session to /dev/fuse");
  }
  session_fd_ = fd_.release();
}

void FuseChannel::unmount() {
  if (!mounted_) return;
  mounted_ = false;
  // POLLERR on the device: unmounted from outside, or the connection was
  // aborted; the mount point may already hold something else.
  pollfd device = {fd_.valid() ? fd_.get() : session_fd_, 0, 0};
  if (::poll(&device, 1, 0) == 1 && (device.revents & POLLERR)) return;
  ::umount2(mountpoint_.c_str(), MNT_DETACH);
}

int serve_requests(fuse_session* session, unsigned threads) {
  fuse_loop_config* config = fuse_loop_cfg_create();
  fuse_loop_cfg_set_clone_fd(config, 0);
  fuse_loop_cfg_set_max_threads(config, threads);
  fuse_loop_cfg_set_idle_threads(config, threads);
  const int rc = fuse_session_loop_mt(session, config);
  fuse_loop_cfg_destroy(config);
  return rc;
}

}  // namespace scratchcrypt
