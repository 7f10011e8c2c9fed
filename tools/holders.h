// Dealing with processes that still use a volume.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>

namespace scratchcrypt {

// Throws Error (exit 3) listing the processes that use `path`, saying that
// `action` is refused and how to force it.
[[noreturn]] void refuse_busy(const std::string& path, const std::string& action);

// Takes the volume's data away from processes that still use it, once its
// FUSE connection is aborted: pages the kernel cached for their open files
// are dropped (through duplicates of their own descriptors, which needs no
// request to the daemon), and processes that have volume files mapped into
// memory, whose pages cannot be taken back, are killed. Returns how many
// processes were killed.
int evict_cached_data(const std::string& mountpoint);

// Waits until process `pid` is gone; false on timeout.
bool wait_for_exit(pid_t pid, std::chrono::milliseconds timeout);

// Unmounts a scratchcrypt mount point and waits for its daemon.
void unmount_volume(const std::string& mountpoint);

}  // namespace scratchcrypt
