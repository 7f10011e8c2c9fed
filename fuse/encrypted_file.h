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
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <span>

#include "crypto/contents_cipher.h"

namespace scratchcrypt {

class EncryptedFile {
 public:
  EncryptedFile(int fd, const FileId& id, ContentsCipher& cipher)
      : fd_(fd), id_(id), cipher_(cipher) {}

  // Reads up to out.size() bytes at offset; returns the count (short at EOF).
  // `out` may be larger than the data; the plaintext lands at out[0..n).
  ssize_t read(uint64_t offset, std::span<uint8_t> out, uint64_t size);

  // Writes data at offset; *size is updated when the file grows.
  ssize_t write(uint64_t offset, std::span<const uint8_t> data, uint64_t* size);

  // Sets the file's length to new_size (up or down).
  int truncate(uint64_t new_size, uint64_t* size);

  // Makes [offset, offset+length) read as zeros; whole units become holes.
  int punch_hole(uint64_t offset, uint64_t length, uint64_t size);

 private:
  // Re-encrypts unit `unit` (currently `old_length` bytes stored) so that it
  // holds `new_length` bytes: zero-extended or cut.
  int reshape_unit(uint64_t unit, size_t old_length, size_t new_length);
  // Zeroes [from, to) inside one unit by read-modify-write.
  int zero_within_unit(uint64_t unit, size_t unit_length, size_t from, size_t to);

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
