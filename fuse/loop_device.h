// LoopDevice: a loop block device attached to a file, detached again by its
// destructor unless released to the kernel file system mounted on it.
//
// Attaching takes a free device (LOOP_CTL_GET_FREE) and configures it in one
// step (LOOP_CONFIGURE), retrying when another process takes the same
// device first. Devices are attached with LO_FLAGS_AUTOCLEAR: once released,
// the kernel detaches the device by itself when its last user (the mounted
// file system) lets go, also when that is a lazy unmount finishing later.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fuse/unique_fd.h"

namespace scratchcrypt {

struct LoopOptions {
  uint32_t block_size = 4096;      // logical sector size
  bool direct_io = true;           // LO_FLAGS_DIRECT_IO: no page cache on the file
  unsigned max_sectors_kb = 1024;  // largest request the device sends to the file
  std::string label;               // lo_file_name, shown by losetup (no secret)
};

class LoopDevice {
 public:
  // Attaches `file` (opened read-write). Throws Error saying what to do when
  // the node has no loop devices.
  static LoopDevice attach(const std::string& file, const LoopOptions& options);

  LoopDevice(LoopDevice&& other) noexcept = default;
  LoopDevice& operator=(LoopDevice&&) = delete;
  ~LoopDevice();

  const std::string& path() const { return path_; }  // "/dev/loopN"
  // Whether the kernel kept direct I/O (it falls back to buffered silently).
  bool direct_io() const;
  // Leaves the device attached; the kernel detaches it once unused.
  void release() { fd_.reset(); released_ = true; }

 private:
  LoopDevice(std::string path, UniqueFd fd) : path_(std::move(path)), fd_(std::move(fd)) {}
  std::string path_;
  UniqueFd fd_;
  bool released_ = false;
};

// True when loop devices can be attached here (/dev/loop-control opens).
bool loop_devices_available();

// Why a block volume could not get a loop device now ("" when it could):
// /dev/loop-control must open and hand out a free device (LOOP_CTL_GET_FREE,
// which adds one if none is free and max_loop allows). For health checks.
std::string loop_device_problem();

// The label (lo_file_name) of an attached device, or "" when it is free.
std::string loop_label(const std::string& device);

// Detaches `device` ("/dev/loopN") if it is still attached with `label`; a
// device in use is marked to detach when its user lets go. Returns false if
// it is attached with another label (then it is left alone).
bool detach_loop(const std::string& device, const std::string& label);

// Attached loop devices ("/dev/loopN") carrying `label`.
std::vector<std::string> loops_labelled(const std::string& label);

}  // namespace scratchcrypt
