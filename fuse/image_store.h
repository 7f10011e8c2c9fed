// ImageStore: the plaintext image of a block-layout volume, stored as one
// ciphertext file on the backing disk (docs/FORMAT.md, "Block layout").
//
// The image is cut into 4096-byte sectors; sector s is AES-256-XTS with the
// volume's `contents` subkey and tweak LE64(s) || 8 zero bytes (dm-crypt's
// plain64 in 4096-byte sectors), stored at the same offset. A stored sector
// that is all zero bytes is a hole and reads as zeros, so the backing file
// stays sparse and punching it discards the sector.
//
// The backing file is opened O_DIRECT: the daemon keeps no page cache of its
// own, so under memory pressure the kernel never waits on dirty pages that
// only this daemon could write (the daemon serves the loop device that the
// kernel writes back through). Where the backing file system refuses
// O_DIRECT, buffered I/O is used and a warning logged.
//
// Thread-safe: any number of requests run at once. Sector-aligned writes
// proceed in parallel; a write or punch that covers part of a sector
// (read-modify-write) runs alone.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <shared_mutex>
#include <span>

#include "crypto/contents_cipher.h"
#include "fuse/unique_fd.h"

namespace scratchcrypt {

inline constexpr size_t kSectorBytes = 4096;
// The largest request served in one piece (the FUSE and loop request size).
inline constexpr size_t kMaxRequestBytes = 1 << 20;
// The backing file's name inside the backing directory.
inline constexpr const char* kImageFileName = "image";

class ImageStore {
 public:
  // Takes the opened backing file (see open_backing_image) and the image
  // size in bytes, a multiple of kSectorBytes.
  ImageStore(UniqueFd backing, bool direct, uint64_t size, ContentsCipher& cipher);

  uint64_t size() const { return size_; }
  bool direct() const { return direct_; }
  int fd() const { return fd_.get(); }

  // All return bytes done or -errno; never throw. Reads stop at the image
  // end; writes past it fail with -ENOSPC.
  ssize_t read(uint64_t offset, std::span<uint8_t> out);
  // Like read() for at most kMaxRequestBytes, without a copy: decrypts into
  // a buffer of the calling thread and points *data at the bytes, valid
  // until the thread's next call into this store.
  ssize_t read_in_place(uint64_t offset, size_t size, const uint8_t** data);
  ssize_t write(uint64_t offset, std::span<const uint8_t> in);
  // Makes [offset, offset+length) read as zeros, freeing backing space for
  // whole sectors (discard). 0 or -errno.
  int punch(uint64_t offset, uint64_t length);

 private:
  // Sectors [first, first+count) of plaintext into `buf` (aligned).
  int read_sectors(uint64_t first, size_t count, uint8_t* buf);
  // Encrypts `count` plaintext sectors from `in` via `scratch` and stores them.
  int write_sectors(uint64_t first, size_t count, const uint8_t* in, uint8_t* scratch);
  int write_partial(uint64_t offset, std::span<const uint8_t> in);

  UniqueFd fd_;
  bool direct_;
  uint64_t size_;
  ContentsCipher& cipher_;
  std::shared_mutex rmw_;  // shared: whole-sector writes; exclusive: partial ones
};

// Creates BACKING_DIR/image (O_EXCL, mode 0600) of `size` bytes, all holes,
// and opens it for ImageStore; *direct tells whether O_DIRECT was accepted.
// Throws Error.
UniqueFd create_backing_image(int backing_dir_fd, uint64_t size, bool* direct);

}  // namespace scratchcrypt
