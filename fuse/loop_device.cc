#include "fuse/loop_device.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <thread>

#include "fuse/error.h"
#include "fuse/log.h"
#include "fuse/mounts.h"

namespace scratchcrypt {

namespace {

std::string sysfs_of(const std::string& device) {
  return "/sys/block/" + device.substr(device.rfind('/') + 1);
}

std::string read_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

std::string backing_file_of(const std::string& device) {
  return read_line(sysfs_of(device) + "/loop/backing_file");
}

// devtmpfs creates /dev/loopN asynchronously after LOOP_CTL_GET_FREE adds it.
UniqueFd open_device(const std::string& path) {
  for (int i = 0; i < 100; ++i) {
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
    if (fd.valid() || errno != ENOENT) return fd;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return UniqueFd(-1);
}

}  // namespace

bool loop_devices_available() {
  UniqueFd control(::open("/dev/loop-control", O_RDWR | O_CLOEXEC));
  return control.valid();
}

std::string loop_device_problem() {
  UniqueFd control(::open("/dev/loop-control", O_RDWR | O_CLOEXEC));
  if (!control.valid()) {
    return std::string("cannot open /dev/loop-control: ") + std::strerror(errno);
  }
  if (::ioctl(control.get(), LOOP_CTL_GET_FREE) < 0) {
    return std::string("/dev/loop-control has no free loop device to give: ") +
           std::strerror(errno);
  }
  return "";
}

LoopDevice LoopDevice::attach(const std::string& file, const LoopOptions& options) {
  UniqueFd control(::open("/dev/loop-control", O_RDWR | O_CLOEXEC));
  if (!control.valid()) {
    const int err = errno;
    throw Error(errno_text("cannot open /dev/loop-control, so this node cannot attach loop "
                           "devices (load the loop module; in a container, pass "
                           "/dev/loop-control and /dev/loop* through); or use layout = files "
                           "(mount --layout files)", err));
  }
  UniqueFd backing(::open(file.c_str(), O_RDWR | O_CLOEXEC));
  if (!backing.valid()) throw Error(errno_text("cannot open the volume image " + file, errno));

  loop_config config{};
  config.fd = static_cast<uint32_t>(backing.get());
  config.block_size = options.block_size;
  config.info.lo_flags = LO_FLAGS_AUTOCLEAR | (options.direct_io ? LO_FLAGS_DIRECT_IO : 0);
  std::strncpy(reinterpret_cast<char*>(config.info.lo_file_name), options.label.c_str(),
               LO_NAME_SIZE - 1);
  // Other processes attach loop devices too: a free device can be taken
  // between GET_FREE and CONFIGURE, which then fails with EBUSY.
  int last_error = 0;
  for (int attempt = 0; attempt < 64; ++attempt) {
    const int number = ::ioctl(control.get(), LOOP_CTL_GET_FREE);
    if (number < 0) {
      throw Error(errno_text("no free loop device (LOOP_CTL_GET_FREE); detach unused ones "
                             "(losetup -a) or use layout = files", errno));
    }
    const std::string path = "/dev/loop" + std::to_string(number);
    UniqueFd fd = open_device(path);
    if (!fd.valid()) {
      last_error = errno;
      if (last_error == EBUSY || last_error == ENXIO) continue;
      throw Error(errno_text("cannot open " + path, last_error));
    }
    if (::ioctl(fd.get(), LOOP_CONFIGURE, &config) != 0) {
      last_error = errno;
      if (last_error == EBUSY) {
        std::this_thread::sleep_for(std::chrono::milliseconds(attempt));
        continue;
      }
      throw Error(errno_text("cannot attach the volume image to " + path, last_error));
    }
    LoopDevice device(path, std::move(fd));
    if (options.max_sectors_kb > 0) {
      std::ofstream limit(sysfs_of(path) + "/queue/max_sectors_kb");
      limit << options.max_sectors_kb << std::endl;
      if (!limit) log::warning("cannot set max_sectors_kb of " + path);
    }
    return device;
  }
  throw Error(errno_text("cannot attach a loop device: every free one was taken by another "
                         "process first", last_error));
}

LoopDevice::~LoopDevice() {
  if (released_ || !fd_.valid()) return;
  ::ioctl(fd_.get(), LOOP_CLR_FD, 0);  // autoclear also detaches on close
}

bool LoopDevice::direct_io() const { return read_line(sysfs_of(path_) + "/loop/dio") == "1"; }

std::string loop_label(const std::string& device) {
  UniqueFd fd(::open(device.c_str(), O_RDONLY | O_CLOEXEC));
  loop_info64 info{};
  if (!fd.valid() || ::ioctl(fd.get(), LOOP_GET_STATUS64, &info) != 0) return "";
  info.lo_file_name[LO_NAME_SIZE - 1] = 0;
  return reinterpret_cast<const char*>(info.lo_file_name);
}

bool detach_loop(const std::string& device, const std::string& label) {
  const std::string found = loop_label(device);
  if (found.empty()) return true;  // already detached
  if (found != label) return false;
  UniqueFd fd(::open(device.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd.valid()) return loop_label(device).empty();
  // In use (a lazily unmounted file system): the kernel sets autoclear and
  // detaches once it is released. Otherwise it detaches now.
  ::ioctl(fd.get(), LOOP_CLR_FD, 0);
  return true;
}

std::vector<std::string> loops_labelled(const std::string& label) {
  std::vector<std::string> out;
  DIR* dir = ::opendir("/sys/block");
  if (dir == nullptr) return out;
  while (dirent* entry = ::readdir(dir)) {
    if (std::strncmp(entry->d_name, "loop", 4) != 0) continue;
    const std::string device = std::string("/dev/") + entry->d_name;
    if (backing_file_of(device).empty()) continue;  // free: no need to open it
    if (loop_label(device) == label) out.push_back(device);
  }
  ::closedir(dir);
  return out;
}

}  // namespace scratchcrypt
