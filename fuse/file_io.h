// FileIo: the data operations of one regular file, as the FUSE handlers
// call them. It takes the inode's data lock (shared to read, exclusive for
// anything that changes contents), keeps the inode's cached size and
// allocation, enforces the volume's SpaceLimit and runs EncryptedFile.
//
// Every function returns 0 or a byte count, or -errno; nothing throws.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <span>

#include "fuse/encrypted_file.h"
#include "fuse/inode.h"
#include "fuse/space_limit.h"

namespace scratchcrypt {

class FileIo {
 public:
  // `fd` is a backing descriptor of `inode` (read-write for the functions
  // that change it), `id` its file id.
  FileIo(Inode& inode, int fd, const FileId& id, ContentsCipher& cipher, SpaceLimit& space)
      : inode_(inode), fd_(fd), file_(fd, id, cipher), space_(space) {}

  // Loads the inode's size and allocation from `fd` the first time the file
  // is opened (the data path keeps them afterwards).
  static int load_size(Inode& inode, int fd);
  // The same for a file this daemon has just created: empty.
  static void start_empty(Inode& inode);

  ssize_t read(uint64_t offset, std::span<uint8_t> out);
  ssize_t write(uint64_t offset, std::span<const uint8_t> data);
  int truncate(uint64_t new_size);
  // FALLOC_FL_KEEP_SIZE, PUNCH_HOLE and ZERO_RANGE; other modes are refused
  // by the caller. Allocates before it zeroes, so a full disk fails it with
  // the file as it was; only ZERO_RANGE's second allocation (of the blocks
  // the zeroing itself freed, if something else took them meanwhile) can
  // fail after the range reads as zeros.
  int fallocate(int mode, uint64_t offset, uint64_t length);

 private:
  // Charges the change in allocated blocks since the inode last looked.
  void reaccount();
  // The most a write of [offset, end) can allocate: the part beyond the
  // end of the file and the holes inside it, in whole 4 KiB blocks. 0 when
  // there is no limit.
  uint64_t growth(uint64_t offset, uint64_t end, uint64_t size) const;

  Inode& inode_;
  int fd_;
  EncryptedFile file_;
  SpaceLimit& space_;
};

}  // namespace scratchcrypt
