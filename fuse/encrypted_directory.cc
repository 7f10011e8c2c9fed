#include "fuse/encrypted_directory.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cctype>
#include <cstring>
#include <vector>

#include "fuse/log.h"
#include "fuse/unique_fd.h"

namespace scratchcrypt {

namespace {

// A backing symlink holds at most PATH_MAX - 1 bytes: the stored text of
// targets up to 3039 bytes. Longer ones (up to 4095, the kernel's limit)
// are kept in a companion ".T" + text_hash(text) in the volume root, which
// the backing symlink names (45 bytes).
constexpr size_t kMaxStoredSymlink = PATH_MAX - 1;
constexpr std::string_view kLongTargetPrefix = ".T";
constexpr off_t kLongTargetNameBytes = 45;
constexpr size_t kMaxCompanionBytes = 4 * (32 + PATH_MAX) / 3 + 4;

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

int SymlinkTargets::make(int dir_fd, const char* at, std::string_view target) {
  const std::string text = names_.encrypt_symlink(target);
  if (text.size() <= kMaxStoredSymlink) {
    return ::symlinkat(text.c_str(), dir_fd, at) == 0 ? 0 : -errno;
  }
  const std::string companion = std::string(kLongTargetPrefix) + text_hash(text);
  UniqueFd fd(::openat(root_fd_, companion.c_str(),
                       O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd.valid()) return -errno;
  int err = 0;
  if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    err = errno ? -errno : -EIO;
  } else if (::symlinkat(companion.c_str(), dir_fd, at) != 0) {
    err = -errno;
  }
  if (err) ::unlinkat(root_fd_, companion.c_str(), 0);
  return err;
}

void SymlinkTargets::unmake(int dir_fd, const char* at) {
  const std::string companion = companion_named_by(stored_target(dir_fd, at));
  ::unlinkat(dir_fd, at, 0);
  remove_companion(companion);
}

int SymlinkTargets::read(int link_fd, ino_t ino, std::string* target) {
  char stored[PATH_MAX];
  const ssize_t n = ::readlinkat(link_fd, "", stored, sizeof stored);
  if (n < 0) return -errno;
  std::string text(stored, static_cast<size_t>(n));
  const std::string companion = companion_named_by(text);
  if (!companion.empty()) {
    UniqueFd fd(::openat(root_fd_, companion.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    std::vector<char> buf(kMaxCompanionBytes + 1);
    const ssize_t length = fd.valid() ? ::read(fd.get(), buf.data(), buf.size()) : -1;
    text.assign(buf.data(), static_cast<size_t>(std::max<ssize_t>(length, 0)));
  }
  auto plain = names_.decrypt_symlink(text);
  if (!plain) {
    log::warning("a symlink does not decrypt (backing inode " + std::to_string(ino) +
                 "); it was changed on disk");
    return -EIO;
  }
  *target = std::move(*plain);
  return 0;
}

// The stored text is base64url(nonce16 || tag16 || target): its length
// gives the target's.
void SymlinkTargets::show_size(int path_fd, struct stat* st) {
  if (!S_ISLNK(st->st_mode)) return;
  off_t text_length = st->st_size;
  if (st->st_size == kLongTargetNameBytes) {  // never the length of a short form
    struct stat companion;
    const std::string name = companion_named_by(stored_target(path_fd, ""));
    if (!name.empty() && ::fstatat(root_fd_, name.c_str(), &companion, AT_SYMLINK_NOFOLLOW) == 0) {
      text_length = companion.st_size;
    }
  }
  st->st_size = std::max<off_t>(0, text_length * 3 / 4 - 32);
}

std::string SymlinkTargets::companion_of_last_link(int dir_fd, const char* at,
                                                   const struct stat& st) {
  if (!S_ISLNK(st.st_mode) || st.st_nlink != 1 || st.st_size != kLongTargetNameBytes) return "";
  return companion_named_by(stored_target(dir_fd, at));
}

void SymlinkTargets::remove_companion(const std::string& companion) {
  if (!companion.empty()) ::unlinkat(root_fd_, companion.c_str(), 0);
}

std::string SymlinkTargets::stored_target(int dir_fd, const char* at) {
  char stored[PATH_MAX];
  const ssize_t n = ::readlinkat(dir_fd, at, stored, sizeof stored);
  return n > 0 ? std::string(stored, static_cast<size_t>(n)) : std::string();
}

// Checked, since a changed backing disk could make a symlink name any path.
std::string SymlinkTargets::companion_named_by(const std::string& stored) {
  if (stored.size() != kLongTargetNameBytes || stored.rfind(kLongTargetPrefix, 0) != 0) return "";
  for (size_t i = kLongTargetPrefix.size(); i < stored.size(); ++i) {
    const char c = stored[i];
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') return "";
  }
  return stored;
}

}  // namespace scratchcrypt
