// The kernel file system of a block-layout volume: formatting the volume's
// image (through its loop device), mounting it for the job, and throwing it
// away at wipe.
//
// The image reads as zeros until written, so mkfs zeroes, discards and
// initializes nothing in the background (ext4: assume_storage_prezeroed,
// which also keeps the lazy inode-table initializer from writing the whole
// table through the daemon later). The mount is for a throw-away disk:
// nodev, nosuid, noatime, online discard (deleted blocks become holes in the
// backing file), errors=remount-ro (an I/O error after the daemon died must
// not take the node down: never errors=panic).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>

namespace scratchcrypt {

enum class KernelFs { kExt4, kXfs };
const char* kernel_fs_name(KernelFs fs);
std::optional<KernelFs> parse_kernel_fs(const std::string& name);

// Formats `device` of `size` bytes. Throws Error with mkfs's own message, or
// naming the package to install when mkfs is missing.
void make_fs(KernelFs fs, const std::string& device, uint64_t size);

// Mounts `device` at `mountpoint` (a path, or /proc/self/fd/N of the
// directory). Throws Error.
void mount_fs(KernelFs fs, const std::string& device, const std::string& mountpoint);

// Gives the root of a freshly made file system to its user: owner, group
// and mode set through a descriptor (ext4's lost+found is removed: nobody
// will ever run fsck on a throw-away disk). Throws Error.
// `mountpoint` must be the root of the file system on `device`.
void hand_over_root(const std::string& device, const std::string& mountpoint, uid_t uid,
                    gid_t gid, mode_t mode);

// Shuts down the file system whose root `root_fd` is (FS_IOC_SHUTDOWN
// without flushing the log): every later I/O fails with EIO and nothing more
// is written, so it unmounts at once whatever dirty data it held. For wipe.
bool shutdown_fs(int root_fd);

}  // namespace scratchcrypt
