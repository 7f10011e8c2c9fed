// BlockImage: the FUSE file system of a block-layout volume. It holds
// exactly one file, `image` (inode 2), the volume's plaintext image, served
// from an ImageStore. The loop device under the job's kernel file system is
// its only intended user.
//
// The mount is private: no allow_other (only root, the mount's owner, may
// open anything in it), root directory mode 0700, under a 0700 directory of
// /run/scratchcrypt (docs/THREAT-MODEL.md). The file is opened with
// direct_io, so the kernel keeps no page cache of the plaintext image; the
// loop device sends its I/O as asynchronous direct requests of up to 1 MiB.
//
// Every thread that serves requests is a PR_SET_IO_FLUSHER (see
// mark_io_flusher): the kernel may need this daemon to write back dirty pages
// of the job's file system, so the daemon's own allocations must not wait
// for that.
//
// Durability: a write is acknowledged once it is in the backing file
// (O_DIRECT, no cache of ours), so the daemon's death loses nothing that was
// acknowledged; FLUSH and FSYNC therefore return at once without fsync(2)
// of the backing file (FSYNC answers ENOSYS, so the kernel stops sending
// it): after a power loss the key is gone and the data unreadable anyway
// (docs/DESIGN.md, "Block layout").
#pragma once

#include <fuse_lowlevel.h>

#include "fuse/image_store.h"

namespace scratchcrypt {

inline constexpr fuse_ino_t kImageIno = 2;

class BlockImage {
 public:
  explicit BlockImage(ImageStore& store) : store_(store) {}
  static const fuse_lowlevel_ops& operations();
  ImageStore& store() { return store_; }

 private:
  ImageStore& store_;
};

// Marks the calling thread PR_SET_IO_FLUSHER (PF_MEMALLOC_NOIO and
// PF_LOCAL_THROTTLE); threads it starts afterwards inherit the mark. Call it
// on the thread that starts the request loop, so that each worker is a
// flusher before it reads its first request (libfuse allocates the 1 MiB
// request buffer then: a handler marking itself would be too late). Needs
// CAP_SYS_RESOURCE; without it the daemon logs a warning and serves on.
void mark_io_flusher();

}  // namespace scratchcrypt
