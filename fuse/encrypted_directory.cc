#include "fuse/encrypted_directory.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <vector>

#include "fuse/log.h"
#include "fuse/unique_fd.h"

namespace scratchcrypt {

namespace {

constexpr size_t kMaxStoredSymlink = PATH_MAX - 1;

// Backing names that start with '.' are scratchcrypt's (base64url never
// makes one): the volume header, long-name companions and long names.
bool is_reserved(const char* backing_name) { return backing_name[0] == '.' && !is_dot(backing_name); }

}  // namespace

int check_name(const char* name) {
  const size_t length = std::strlen(name);
  if (length == 0) return -ENOENT;
  if (length > kMaxNameBytes) return -ENAMETOOLONG;
  return 0;
}

bool is_dot(const char* name) {
  return std::strcmp(name, ".") == 0 || std::strcmp(name, "..") == 0;
}

int EncryptedDirectory::backing_name(const char* name, BackingName* out) {
  if (int err = check_name(name)) return err;
  *out = names_.encrypt_name(id_, name);
  return 0;
}

int EncryptedDirectory::prepare_entry(const char* name, BackingName* out, bool* made_companion) {
  *made_companion = false;
  if (int err = backing_name(name, out)) return err;
  if (!out->is_long()) return 0;
  const std::string companion = companion_of(out->name);
  UniqueFd fd(::openat(fd_, companion.c_str(),
                       O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd.valid()) return errno == EEXIST ? 0 : -errno;
  const auto& text = out->long_text;
  if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    int err = errno ? -errno : -EIO;
    ::unlinkat(fd_, companion.c_str(), 0);
    return err;
  }
  *made_companion = true;
  return 0;
}

void EncryptedDirectory::remove_companion(const BackingName& name) {
  if (name.is_long()) ::unlinkat(fd_, companion_of(name.name).c_str(), 0);
}

std::optional<std::string> EncryptedDirectory::plaintext_name(const char* backing_name,
                                                              ino_t ino) {
  if (is_dot(backing_name)) return std::string(backing_name);
  std::string text;
  if (is_long_name(backing_name)) {
    UniqueFd fd(::openat(fd_, companion_of(backing_name).c_str(),
                         O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    char buf[4 * kMaxNameBytes];
    ssize_t n = fd.valid() ? ::read(fd.get(), buf, sizeof buf) : -1;
    if (n <= 0) return std::nullopt;
    text.assign(buf, static_cast<size_t>(n));
  } else if (is_reserved(backing_name)) {
    return std::nullopt;
  } else {
    text = backing_name;
  }
  auto plain = names_.decrypt_name(id_, text);
  if (!plain) {
    log::warning("skipped a directory entry that does not decrypt (backing inode " +
                 std::to_string(ino) + "); it was changed or added on disk");
  }
  return plain;
}

int EncryptedDirectory::make_symlink(const char* at, std::string_view target) {
  const std::string stored = names_.encrypt_symlink(target);
  if (stored.size() > kMaxStoredSymlink) return -ENAMETOOLONG;
  return ::symlinkat(stored.c_str(), fd_, at) == 0 ? 0 : -errno;
}

int read_symlink(NameCipher& names, int link_fd, ino_t ino, std::string* target) {
  std::vector<char> stored(PATH_MAX + 1);
  ssize_t n = ::readlinkat(link_fd, "", stored.data(), stored.size());
  if (n < 0) return -errno;
  auto plain = names.decrypt_symlink({stored.data(), static_cast<size_t>(n)});
  if (!plain) {
    log::warning("a symlink does not decrypt (backing inode " + std::to_string(ino) +
                 "); it was changed on disk");
    return -EIO;
  }
  *target = std::move(*plain);
  return 0;
}

// A backing symlink stores base64url(nonce16 || tag16 || target); its
// plaintext length follows from the stored length.
void show_symlink_size(struct stat* st) {
  if (!S_ISLNK(st->st_mode)) return;
  const off_t decoded = st->st_size * 3 / 4;
  st->st_size = std::max<off_t>(0, decoded - 32);
}

}  // namespace scratchcrypt
