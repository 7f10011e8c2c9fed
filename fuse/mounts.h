// Facts about mount points, from /proc/self/mountinfo and the kernel's FUSE
// control file system. Used to refuse a second mount, find dead volumes and
// cut off a volume's users at wipe.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

namespace scratchcrypt {

struct MountEntry {
  std::string mountpoint;
  std::string fstype;  // e.g. "fuse.scratchcrypt"
  std::string source;  // e.g. "scratchcrypt:<volume id>"
  unsigned dev_major = 0, dev_minor = 0;
};

// The mounts of our mount namespace, or those a given mountinfo file lists
// (/proc/PID/mountinfo: another process's namespace).
std::vector<MountEntry> list_mounts(const std::string& mountinfo = "/proc/self/mountinfo");
std::optional<MountEntry> mount_at(const std::string& mountpoint);

// The absolute, symlink-free form of `path` without touching `path` itself
// (its parent is resolved), so that it works on a dead FUSE mount point.
std::string absolute_path(const std::string& path);

// `path` with every symlink resolved, the last component too, when it
// exists (realpath); else absolute_path(path).
std::string resolved_path(const std::string& path);

// The directory part of an absolute path ("/a/b" -> "/a", "/a" -> "/").
std::string parent_dir(const std::string& path);

// True when `path` is `root` or lies below it (textually).
bool path_under(const std::string& path, const std::string& root);

// True when `path` is a directory with no entries but . and ..
bool directory_is_empty(const std::string& path);

// True when `path` (or, if it does not exist yet, its nearest existing
// ancestor) is on an ext4 file system without a journal, whose inode
// allocator skips recently deleted inodes: creating files stays slow for
// minutes after a wipe of a large tree (docs/OPERATIONS.md). False when it
// cannot tell.
bool on_ext4_without_journal(const std::string& path);

// True when `path` is a FUSE mount whose daemon is gone (ENOTCONN).
bool is_dead_mount(const std::string& path);

// Aborts the FUSE connection of a mount: every pending and future request
// fails at once. Returns false if the control file system is unavailable.
bool abort_fuse_connection(const MountEntry& mount);

// Processes that have a file, directory, mapping, cwd or root under `path`.
// When `path` is a mount point, by the mount's device rather than by path:
// a process in another mount namespace (a container) sees the volume at
// another path, or through a bind mount, but on the same device.
struct Holder {
  pid_t pid;
  std::string command;
};
std::vector<Holder> processes_using(const std::string& path);

// The device of the file a /proc/<pid>/{fd/N,cwd,root} link stands for,
// from the inode the kernel holds (never a request to a FUSE daemon, which
// may be hung or gone); nullopt when it cannot be told.
std::optional<dev_t> proc_link_device(const std::string& link);

// The device of a /proc/<pid>/maps line's file ("... 00:2f inode path"),
// or nullopt for an anonymous mapping.
std::optional<dev_t> maps_line_device(const std::string& line);

}  // namespace scratchcrypt
