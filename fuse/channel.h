// FuseChannel: the daemon's /dev/fuse connection and the mount it serves.
//
// The daemon mounts /dev/fuse itself (it runs as root) and hands the
// descriptor to libfuse as "custom I/O" instead of calling
// fuse_session_mount(), for one reason: libfuse before 3.15 cannot negotiate
// FUSE_HANDLE_KILLPRIV_V2. Without it the kernel asks the daemon for
// security.capability (a GETXATTR round trip) before every write(2), which
// doubles the cost of small writes; with it the kernel marks inodes S_NOSEC
// and stops asking. The channel adds the flag to the INIT reply when the
// kernel offers it. That is correct for scratchcrypt: it stores no security.*
// attributes, so there is never a capability to remove, and it clears set-id
// bits itself on unprivileged writes and truncation (filesystem.cc).
// Everything else passes through untouched.
#pragma once

#include <fuse_lowlevel.h>

#include <string>

#include "fuse/unique_fd.h"

namespace scratchcrypt {

class FuseChannel {
 public:
  // Opens /dev/fuse and mounts it at `mountpoint` as fuse.scratchcrypt with
  // source `fsname`, allow_other, default_permissions, nosuid and nodev.
  // With `mountpoint_fd` (a descriptor of the directory, e.g. O_PATH), the
  // mount goes onto that very directory, whatever `mountpoint`'s path
  // resolves to by then. A private channel (`shared` false: a block volume's
  // image) is fuse.scratchcrypt-image, without allow_other: only root, the
  // mount's owner, may enter it. Throws Error with what to check when it fails.
  FuseChannel(const std::string& mountpoint, const std::string& fsname, int mountpoint_fd = -1,
              bool shared = true);
  FuseChannel(const FuseChannel&) = delete;
  FuseChannel& operator=(const FuseChannel&) = delete;
  // Unmounts, unless already unmounted.
  ~FuseChannel() { unmount(); }

  // Gives the descriptor to `session`, which reads requests and writes
  // replies through the channel from then on (and closes it when destroyed).
  void attach(fuse_session* session);

  // Detaches the mount unless it is already gone (unmounted from outside, or
  // the connection aborted). Idempotent.
  void unmount();

 private:
  std::string mountpoint_;
  UniqueFd fd_;          // ours until attach()
  int session_fd_ = -1;  // after attach(): owned by the session
  bool mounted_ = false;
};

// Serves `session` on `threads` worker threads until it ends; libfuse's
// return code. Worker threads stay once started: libfuse would otherwise end
// and restart threads between requests, each start costing a fresh stack and
// fresh per-thread buffers and cipher contexts.
int serve_requests(fuse_session* session, unsigned threads);

}  // namespace scratchcrypt
