#include "fuse/device_node.h"

#include <dirent.h>
#include <fcntl.h>
#include <sodium.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <string>
#include <vector>

#include "fuse/log.h"
#include "fuse/unique_fd.h"

namespace scratchcrypt {

namespace {

constexpr size_t kNonceBytes = 16;
constexpr size_t kRecordBytes = 9;  // type || LE32(major) || LE32(minor)

std::span<const uint8_t> as_bytes(std::string_view text) {
  return {reinterpret_cast<const uint8_t*>(text.data()), text.size()};
}

void put_le32(uint8_t* out, uint32_t value) {
  for (int i = 0; i < 4; ++i) out[i] = static_cast<uint8_t>(value >> (8 * i));
}

uint32_t get_le32(const uint8_t* in) {
  uint32_t value = 0;
  for (int i = 0; i < 4; ++i) value |= static_cast<uint32_t>(in[i]) << (8 * i);
  return value;
}

// The stored xattr: nonce || SIV(AD = ["device", nonce], record). The
// nonce makes two nodes of the same device differ on disk.
std::vector<uint8_t> seal_record(NameCipher& names, mode_t type, dev_t rdev) {
  std::array<uint8_t, kRecordBytes> record;
  record[0] = type == S_IFBLK ? 'b' : 'c';
  put_le32(&record[1], major(rdev));
  put_le32(&record[5], minor(rdev));
  std::vector<uint8_t> stored(kNonceBytes);
  randombytes_buf(stored.data(), stored.size());
  auto sealed = names.seal({as_bytes("device"), {stored.data(), kNonceBytes}}, record);
  stored.insert(stored.end(), sealed.begin(), sealed.end());
  return stored;
}

// Reads and opens the record of backing FIFO `path_fd`: 1 if it holds a
// device node (type and number set), 0 if it is a plain FIFO, -1 if the
// record does not decrypt.
int open_record(NameCipher& names, int path_fd, mode_t* type, dev_t* rdev) {
  uint8_t stored[128];
  const ssize_t n = ::getxattr(proc_fd_path(path_fd).c_str(), kDeviceXattr, stored, sizeof stored);
  if (n < 0) return 0;  // ENODATA: a FIFO
  if (static_cast<size_t>(n) <= kNonceBytes) return -1;
  auto record = names.open({as_bytes("device"), {stored, kNonceBytes}},
                           {stored + kNonceBytes, static_cast<size_t>(n) - kNonceBytes});
  if (!record || record->size() != kRecordBytes || ((*record)[0] != 'b' && (*record)[0] != 'c')) {
    return -1;
  }
  *type = (*record)[0] == 'b' ? S_IFBLK : S_IFCHR;
  *rdev = makedev(get_le32(&(*record)[1]), get_le32(&(*record)[5]));
  return 1;
}

}  // namespace

int make_device_node(NameCipher& names, int dir_fd, const char* at, mode_t mode, dev_t rdev) {
  if (::mkfifoat(dir_fd, at, mode & 07777) != 0) return -errno;
  UniqueFd fd(::openat(dir_fd, at, O_PATH | O_NOFOLLOW | O_CLOEXEC));
  const auto stored = seal_record(names, mode & S_IFMT, rdev);
  if (!fd.valid() ||
      ::setxattr(proc_fd_path(fd.get()).c_str(), kDeviceXattr, stored.data(), stored.size(), 0) != 0) {
    const int err = errno;
    ::unlinkat(dir_fd, at, 0);
    return -err;
  }
  return 0;
}

void show_device_node(NameCipher& names, int path_fd, struct stat* st) {
  if (!S_ISFIFO(st->st_mode)) return;
  mode_t type;
  dev_t rdev;
  const int found = open_record(names, path_fd, &type, &rdev);
  if (found < 0) {
    log::warning("a device node's record does not decrypt (backing inode " +
                 std::to_string(st->st_ino) + "); it was changed on disk");
  } else if (found > 0) {
    st->st_mode = type | (st->st_mode & 07777);
    st->st_rdev = rdev;
  }
}

unsigned char shown_entry_type(NameCipher& names, int dir_fd, const char* name,
                               unsigned char d_type) {
  if (d_type != DT_FIFO) return d_type;
  UniqueFd fd(::openat(dir_fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC));
  mode_t type;
  dev_t rdev;
  if (!fd.valid() || open_record(names, fd.get(), &type, &rdev) <= 0) return d_type;
  return type == S_IFBLK ? DT_BLK : DT_CHR;
}

}  // namespace scratchcrypt
