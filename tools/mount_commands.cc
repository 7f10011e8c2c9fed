// `scratchcrypt mount` and `scratchcrypt umount`.
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <thread>

#include "fuse/daemon.h"
#include "fuse/error.h"
#include "fuse/mounts.h"
#include "fuse/registry.h"
#include "tools/block_teardown.h"
#include "tools/commands.h"
#include "tools/holders.h"
#include "tools/walk_tree.h"
#include <fcntl.h>

namespace scratchcrypt {

const cli::Command kMountCommand = {
    "mount",
    "[options] BACKING MOUNTPOINT",
    "Mount an encrypted scratch volume stored in BACKING at MOUNTPOINT.",
    "An empty BACKING directory becomes a new volume with a fresh random key that exists\n"
    "only in the daemon's locked memory and in root's kernel keyring; it is never written\n"
    "to any disk. The command returns once the volume is usable; the daemon runs on in\n"
    "the background (-f keeps it in the foreground). MOUNTPOINT must be an empty\n"
    "directory. A BACKING that already holds a volume is only mounted with --recover\n"
    "(key from the keyring) or --key-fd.",
    {
        {"key-fd", "N", "read the 64-byte volume key from file descriptor N"},
        {"recover", "", "remount an existing volume (after a daemon crash or umount)"},
        {"uid", "USER", "owner of a new volume's root directory (default: root)"},
        {"gid", "GROUP", "group of a new volume's root directory (default: root)"},
        {"mode", "MODE", "mode of a new volume's root directory (default: 0700)"},
        {"size-limit", "SIZE", "most bytes the volume may hold, e.g. 50G (files layout: default none, "
                               "kept when remounted; block layout: its exact size, default all free space)"},
        {"layout", "LAYOUT", "block (a kernel file system on an encrypted image) or files "
                             "(default: files)"},
        {"fs", "TYPE", "block layout: ext4 (default) or xfs"},
        {"job", "ID", "scheduler job id, recorded in status and wipe records"},
        {"writeback-cache", "", "let the kernel cache writes (faster; ENOSPC shows at close)"},
        {"f", "", "stay in the foreground, log to stderr"},
        {"debug", "", "trace every FUSE request (with -f)"},
    },
    2,
    2,
};

const cli::Command kUmountCommand = {
    "umount",
    "MOUNTPOINT",
    "Unmount a volume; its data and key stay, for `mount --recover` or `wipe`.",
    "Refuses (exit 3) while processes use the volume, and lists them. To end a volume\n"
    "for good, use `scratchcrypt wipe`.",
    {},
    1,
    1,
};

namespace {

// Backing blocks held by the regular files of the volume in `backing`: what
// the size limit counts (no daemon writes to it while it is not mounted).
uint64_t file_bytes(const std::string& backing) {
  uint64_t total = 0;
  walk_tree(AT_FDCWD, backing.c_str(), [&](int, const char*, const struct stat& st) {
    if (S_ISREG(st.st_mode)) total += static_cast<uint64_t>(st.st_blocks) * 512;
  });
  return total;
}

}  // namespace

int run_mount(const cli::Args& args) {
  MountRequest request;
  request.backing = resolved_path(args.positional()[0]);
  request.mountpoint = absolute_path(args.positional()[1]);
  if (args.has("key-fd")) {
    request.key_fd = static_cast<int>(cli::parse_number("key-fd", args.get("key-fd")));
    if (::fcntl(request.key_fd, F_GETFD) < 0) {
      throw Error("--key-fd " + args.get("key-fd") + ": that file descriptor is not open", 2);
    }
  }
  request.recover = args.has("recover");
  if (request.recover && request.key_fd >= 0) {
    throw Error("--recover takes the key from the keyring; do not combine it with --key-fd", 2);
  }
  if (args.has("uid")) request.owner.uid = cli::parse_user("uid", args.get("uid"));
  if (args.has("gid")) request.owner.gid = cli::parse_group("gid", args.get("gid"));
  if (args.has("mode")) request.owner.mode = cli::parse_mode("mode", args.get("mode"));
  if (args.has("size-limit")) request.fs.size_limit = cli::parse_size("size-limit", args.get("size-limit"));
  request.fs.writeback_cache = args.has("writeback-cache");
  if (read_volume_header(request.backing)) request.fs.used_at_start = file_bytes(request.backing);
  request.job = args.get("job");
  const std::string layout = args.get("layout", "files");
  if (layout != "files" && layout != "block") {
    throw Error("--layout must be block or files (got '" + layout + "')", 2);
  }
  request.layout = layout == "block" ? VolumeLayout::kBlock : VolumeLayout::kFiles;
  request.kernel_fs = args.get("fs", "ext4");
  if (args.has("fs") && request.layout != VolumeLayout::kBlock) {
    throw Error("--fs chooses the block layout's file system; add --layout block", 2);
  }
  if (request.kernel_fs != "ext4" && request.kernel_fs != "xfs") {
    throw Error("--fs must be ext4 or xfs (got '" + request.kernel_fs + "')", 2);
  }
  if (request.layout == VolumeLayout::kBlock && request.fs.writeback_cache) {
    throw Error("--writeback-cache is a files-layout option (the block layout's kernel file "
                "system has its own page cache)", 2);
  }
  request.foreground = args.has("f");
  request.debug = args.has("debug");
  return mount_volume(request);
}

void unmount_volume(const std::string& mountpoint) {
  auto record = find_volume(mountpoint);
  if (::umount2(mountpoint.c_str(), 0) != 0) {
    int err = errno;
    if (err == EBUSY) refuse_busy(mountpoint, "unmount");
    if (err == EINVAL) throw Error(mountpoint + " is not a mount point", 4);
    throw Error(errno_text("cannot unmount " + mountpoint, err));
  }
  // The daemon leaves its loop once the kernel ends the session; wait for it
  // so that a remount right after cannot find the volume still locked.
  if (record && record->pid > 0) wait_for_exit(record->pid, std::chrono::seconds(10));
}

int run_umount(const cli::Args& args) {
  const std::string mountpoint = absolute_path(args.positional()[0]);
  auto mount = mount_at(mountpoint);
  if (auto record = find_volume(mountpoint); record && record->layout == "block" && mount) {
    const BlockParts parts = find_block_parts(record->id, &*record);
    if (parts.mountpoint == mountpoint) {
      unmount_block_volume(parts);
      return 0;
    }
  }
  if (!mount || mount->fstype != "fuse.scratchcrypt") {
    throw Error(mountpoint + " is not a mounted scratchcrypt volume (see `scratchcrypt status`)", 4);
  }
  unmount_volume(mountpoint);
  return 0;
}

}  // namespace scratchcrypt
