// EncryptedFile: the data path. Reads and writes plaintext at any offset and
// length on one backing file, through ContentsCipher's data units.
//
// Partial units are read, decrypted, patched and re-encrypted
// (read-modify-write); a unit's encryption depends on its length when it is
// the file's last unit, so growing or shrinking a file re-encrypts the old
// and the new last unit. Holes stay holes. The caller serializes: it holds
// the inode's lock (shared for read, exclusive for anything that writes) and
// passes the file's current size, which only these functions change.
//
// All functions return 0 or a byte count on success and -errno on failure,
// as the FUSE layer replies.
//
// What a failed call leaves behind: the file reads exactly as before the
// call, with its old size, on disk too. Each call saves the stored bytes of
// the units it re-encrypts in place (the old last unit, the partial units at
// the ends of a write or hole) before it changes them, and on failure writes
// them back and cuts the backing file to its old length. Growing steps come
// first where they can fail (ftruncate before re-encrypting the old last
// unit at its new length). Two limits, both as on a local disk:
//  * a write whose backing write stops part-way (ENOSPC, EIO) after whole
//    data units of it are stored returns the short count of those bytes, and
//    the file is consistent at the matching size; only when nothing of it
//    could be stored does it fail and roll back;
//  * if the backing file system fails inside a data unit the write covers
//    completely (its old contents were not read, so not saved), that unit
//    can read half old, half new; file systems with 4 KiB blocks (ext4, xfs
//    defaults) stop writes at block, hence unit, boundaries.
// If the rollback itself fails (the device is failing), the error is still
// returned and the unit may read as garbage.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <span>
#include <vector>

#include "crypto/contents_cipher.h"

namespace scratchcrypt {

// Stored bytes saved before a call changes them in place, to be written back
// (and the file cut to its old length) if the call fails.
class StoredUndo {
 public:
  StoredUndo(int fd, uint64_t old_size) : fd_(fd), old_size_(old_size) {}
  // Saves `length` stored bytes at `offset` (already read by the caller).
  void save(uint64_t offset, const uint8_t* stored, size_t length);
  // Restores the file and returns `err` (the call's error).
  int fail(int err);
  // The saved bytes of the unit at `offset`, if saved: restored alone when
  // a short write leaves that unit torn.
  int restore_unit(uint64_t offset);

 private:
  struct Saved {
    uint64_t offset;
    std::vector<uint8_t> bytes;
  };
  int fd_;
  uint64_t old_size_;
  std::vector<Saved> saved_;
};

class EncryptedFile {
 public:
  EncryptedFile(int fd, const FileId& id, ContentsCipher& cipher)
      : fd_(fd), id_(id), cipher_(cipher) {}

  // Reads up to out.size() bytes at offset; returns the count (short at EOF).
  // `out` may be larger than the data; the plaintext lands at out[0..n).
  ssize_t read(uint64_t offset, std::span<uint8_t> out, uint64_t size);

  // Writes data at offset; *size is updated when the file grows. Returns
  // data.size(), a short count (see above), or -errno.
  ssize_t write(uint64_t offset, std::span<const uint8_t> data, uint64_t* size);

  // Sets the file's length to new_size (up or down).
  int truncate(uint64_t new_size, uint64_t* size);

  // Makes [offset, offset+length) read as zeros; whole units become holes.
  int punch_hole(uint64_t offset, uint64_t length, uint64_t size);

 private:
  // Re-encrypts unit `unit` (currently `old_length` bytes stored) so that it
  // holds `new_length` bytes: zero-extended or cut.
  int reshape_unit(uint64_t unit, size_t old_length, size_t new_length, StoredUndo& undo);
  // Zeroes [from, to) inside one unit by read-modify-write.
  int zero_within_unit(uint64_t unit, size_t unit_length, size_t from, size_t to,
                       StoredUndo& undo);

  int fd_;
  FileId id_;
  ContentsCipher& cipher_;
};

// The length of unit `unit` in a file of `size` bytes (0 past the end).
inline size_t unit_length(uint64_t unit, uint64_t size) {
  const uint64_t start = unit * kDataUnitBytes;
  if (start >= size) return 0;
  return static_cast<size_t>(std::min<uint64_t>(kDataUnitBytes, size - start));
}

}  // namespace scratchcrypt
