#include "fuse/volume.h"

#include <dirent.h>
#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "fuse/error.h"
#include "fuse/mounts.h"

namespace scratchcrypt {

namespace {

constexpr const char* kMagic = "scratchcrypt-volume 2";
constexpr const char* kMagicV1 = "scratchcrypt-volume 1";

std::string to_hex(std::span<const uint8_t> bytes) {
  std::string out(bytes.size() * 2 + 1, '\0');
  sodium_bin2hex(out.data(), out.size(), bytes.data(), bytes.size());
  out.pop_back();
  return out;
}

bool from_hex(const std::string& text, std::span<uint8_t> out) {
  size_t length = 0;
  return sodium_hex2bin(out.data(), out.size(), text.data(), text.size(), nullptr, &length,
                        nullptr) == 0 &&
         length == out.size();
}

std::string header_text(const VolumeHeader& header) {
  std::ostringstream out;
  out << kMagic << "\nid " << header.id << "\nkey-check " << to_hex(header.key_check)
      << "\ndata-unit " << kDataUnitBytes << "\n";
  if (header.size_limit != 0) out << "size-limit " << header.size_limit << "\n";
  if (header.layout == VolumeLayout::kBlock) out << "layout block\nsize " << header.size << "\n";
  return out.str();
}

std::optional<VolumeHeader> parse_header(const std::string& text) {
  std::istringstream in(text);
  std::string line;
  if (!std::getline(in, line) || (line != kMagic && line != kMagicV1)) return std::nullopt;
  VolumeHeader header;
  header.format = line == kMagic ? 2 : 1;
  bool have_id = false, have_check = false;
  while (std::getline(in, line)) {
    auto space = line.find(' ');
    if (space == std::string::npos) continue;
    std::string key = line.substr(0, space), value = line.substr(space + 1);
    if (key == "id" && value.size() == 32) {
      header.id = value;
      have_id = true;
    } else if (key == "key-check") {
      have_check = from_hex(value, header.key_check);
    } else if (key == "data-unit" && value != std::to_string(kDataUnitBytes)) {
      return std::nullopt;
    } else if (key == "size-limit") {
      header.size_limit = std::strtoull(value.c_str(), nullptr, 10);
    } else if (key == "layout") {
      if (value == "block") {
        header.layout = VolumeLayout::kBlock;
      } else if (value != "files") {
        return std::nullopt;  // a layout this version does not know
      }
    } else if (key == "size") {
      header.size = std::strtoull(value.c_str(), nullptr, 10);
    }
  }
  if (!have_id || !have_check) return std::nullopt;
  return header;
}

// Undoes what create() did to a backing directory: the header (when it made
// it), the root id, the owner and mode.
void undo_create(int root_fd, const struct stat& before, bool made_header) {
  if (made_header) ::unlinkat(root_fd, kHeaderName, 0);
  ::fremovexattr(root_fd, kIdXattr);
  if (::fchown(root_fd, before.st_uid, before.st_gid) != 0) return;
  ::fchmod(root_fd, before.st_mode & 07777);
}

}  // namespace

const char* layout_name(VolumeLayout layout) {
  return layout == VolumeLayout::kBlock ? "block" : "files";
}

std::optional<VolumeHeader> read_volume_header(const std::string& backing) {
  std::ifstream in(backing + "/" + kHeaderName);
  if (!in) return std::nullopt;
  std::stringstream text;
  text << in.rdbuf();
  return parse_header(text.str());
}

std::optional<pid_t> volume_lock_holder(const std::string& backing) {
  UniqueFd fd(::open((backing + "/" + kHeaderName).c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return std::nullopt;
  struct flock probe = {};
  probe.l_type = F_WRLCK;
  probe.l_whence = SEEK_SET;
  if (::fcntl(fd.get(), F_GETLK, &probe) != 0 || probe.l_type == F_UNLCK) return std::nullopt;
  return probe.l_pid;
}

Volume::Volume(std::string backing, UniqueFd root, UniqueFd header_fd, VolumeHeader header,
               VolumeKey key)
    : backing_(std::move(backing)),
      root_(std::move(root)),
      header_fd_(std::move(header_fd)),
      header_(std::move(header)),
      key_(std::move(key)),
      contents_(std::make_unique<ContentsCipher>(key_)),
      names_(std::make_unique<NameCipher>(key_)) {}

UniqueFd Volume::open_backing_dir(const std::string& backing) {
  // Not through a link: the owner and mode of what is opened are set for a
  // job's user (the commands resolve a link an operator gave beforehand).
  UniqueFd root(::open(backing.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!root.valid()) {
    int err = errno;
    if (err == ELOOP) throw Error("backing " + backing + " is a symbolic link; give the directory itself", 4);
    if (err == ENOENT) {
      throw Error("backing directory " + backing + " does not exist: create it (mkdir -p) or "
                  "pick a directory on the local scratch disk");
    }
    if (err == ENOTDIR) throw Error("backing " + backing + " is not a directory");
    throw Error(errno_text("cannot open backing directory " + backing, err));
  }
  return root;
}

// A POSIX record lock: released by the kernel when the daemon dies, and
// visible with F_GETLK, which tells a second mount who holds the volume.
UniqueFd Volume::lock_header(const std::string& backing, int root_fd, const std::string& id) {
  UniqueFd fd(::openat(root_fd, kHeaderName, O_RDWR | O_CLOEXEC));
  if (!fd.valid()) throw Error(errno_text("cannot open the volume header in " + backing, errno));
  struct flock lock = {};
  lock.l_type = F_WRLCK;
  lock.l_whence = SEEK_SET;
  if (::fcntl(fd.get(), F_SETLK, &lock) != 0) {
    auto holder = volume_lock_holder(backing);
    throw Error("volume " + id + " in " + backing + " is already mounted" +
                    (holder ? " by daemon pid " + std::to_string(*holder) : std::string()) +
                    "; a backing directory can be mounted only once (see `scratchcrypt "
                    "status`)",
                4);
  }
  return fd;
}

// A new volume's backing must be an empty directory. `again` says what to
// do with a volume that is already there.
UniqueFd Volume::open_new_backing(const std::string& backing, const std::string& again) {
  UniqueFd root = open_backing_dir(backing);
  if (read_volume_header(backing)) {
    throw Error("backing " + backing + " already holds a scratchcrypt volume; " + again, 4);
  }
  if (!directory_is_empty(backing)) {
    throw Error("backing " + backing + " is not empty and is not a scratchcrypt volume; "
                "refusing to touch it: give an empty directory", 4);
  }
  return root;
}

// Gives `header` a fresh id and writes it to BACKING (O_EXCL, synced);
// *made turns true once the file exists.
void Volume::write_new_header(const std::string& backing, int root_fd, VolumeHeader& header,
                              bool* made) {
  uint8_t id_bytes[16];
  randombytes_buf(id_bytes, sizeof id_bytes);
  header.id = to_hex(id_bytes);
  UniqueFd fd(::openat(root_fd, kHeaderName, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd.valid()) throw Error(errno_text("cannot create the volume header in " + backing, errno));
  *made = true;
  const std::string text = header_text(header);
  if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()) ||
      ::fsync(fd.get()) != 0) {
    throw Error(errno_text("cannot write the volume header in " + backing, errno));
  }
}

Volume Volume::create(const std::string& backing, VolumeKey key, const RootOwner& owner) {
  UniqueFd root = open_new_backing(backing, "wipe it (scratchcrypt wipe " + backing +
                                                ") or remount it with --recover");
  struct stat before;
  if (::fstat(root.get(), &before) != 0) throw Error(errno_text("cannot stat " + backing, errno));
  bool made_header = false;
  try {
    // The root directory's id doubles as the test that the backing file system
    // keeps user xattrs, which the format needs.
    DirId root_id = DirId::random();
    if (::fsetxattr(root.get(), kIdXattr, root_id.bytes.data(), root_id.bytes.size(), 0) != 0) {
      int err = errno;
      if (err == ENOTSUP) {
        throw Error("the file system of " + backing + " does not support user extended "
                    "attributes, which scratchcrypt needs: use ext4 or xfs (or tmpfs on Linux "
                    ">= 6.6)");
      }
      throw Error(errno_text("cannot write the root id of " + backing, err));
    }
    if (::fchown(root.get(), owner.uid, owner.gid) != 0 ||
        ::fchmod(root.get(), owner.mode & 07777) != 0) {
      throw Error(errno_text("cannot set the owner and mode of " + backing, errno));
    }
    VolumeHeader header;
    header.key_check = key.check_value();
    write_new_header(backing, root.get(), header, &made_header);
    UniqueFd header_fd = lock_header(backing, root.get(), header.id);
    Volume volume(backing, std::move(root), std::move(header_fd), std::move(header), std::move(key));
    volume.created_from_ = before;
    return volume;
  } catch (...) {
    undo_create(root.get(), before, made_header);
    throw;
  }
}

void Volume::discard() {
  if (!created_from_) return;
  undo_create(root_.get(), *created_from_, true);
  header_fd_.reset();  // and its lock
  created_from_.reset();
}

Volume Volume::create_block(const std::string& backing, VolumeKey key, uint64_t size) {
  UniqueFd root = open_new_backing(backing, "a block-layout volume cannot be mounted again: "
                                            "wipe it (scratchcrypt wipe " + backing + ")");
  VolumeHeader header;
  header.key_check = key.check_value();
  header.layout = VolumeLayout::kBlock;
  header.size = size;
  bool made_header = false;
  try {
    write_new_header(backing, root.get(), header, &made_header);
    UniqueFd header_fd = lock_header(backing, root.get(), header.id);
    return Volume(backing, std::move(root), std::move(header_fd), std::move(header), std::move(key));
  } catch (...) {
    if (made_header) ::unlinkat(root.get(), kHeaderName, 0);
    throw;
  }
}

Volume Volume::open(const std::string& backing, VolumeKey key) {
  UniqueFd root = open_backing_dir(backing);
  auto header = read_volume_header(backing);
  if (!header) {
    throw Error("backing " + backing + " is not a scratchcrypt volume (no valid " +
                kHeaderName + ")", 4);
  }
  if (header->format != kFormatVersion) {
    throw Error("volume " + header->id + " in " + backing + " has on-disk format " +
                std::to_string(header->format) + ", made by an older scratchcrypt; this "
                "version serves format " + std::to_string(kFormatVersion) + " only: finish with "
                "it through the old version, or end it with `scratchcrypt wipe " + backing + "`", 4);
  }
  if (sodium_memcmp(header->key_check.data(), key.check_value().data(), kKeyCheckBytes) != 0) {
    throw Error("the key does not belong to volume " + header->id + " in " + backing +
                "; its data cannot be read with it", 4);
  }
  UniqueFd header_fd = lock_header(backing, root.get(), header->id);
  return Volume(backing, std::move(root), std::move(header_fd), std::move(*header),
                std::move(key));
}

void Volume::set_size_limit(uint64_t limit) {
  VolumeHeader header = header_;
  header.size_limit = limit;
  const std::string text = header_text(header);
  if (::pwrite(header_fd_.get(), text.data(), text.size(), 0) != static_cast<ssize_t>(text.size()) ||
      ::ftruncate(header_fd_.get(), static_cast<off_t>(text.size())) != 0 ||
      ::fsync(header_fd_.get()) != 0) {
    throw Error(errno_text("cannot record the size limit in the volume header in " + backing_, errno));
  }
  header_ = std::move(header);
}

int read_file_id(int fd, FileId* id) {
  ssize_t n = ::fgetxattr(fd, kIdXattr, id->bytes.data(), id->bytes.size());
  if (n < 0) return errno == ENODATA || errno == ERANGE ? -EIO : -errno;
  return static_cast<size_t>(n) == id->bytes.size() ? 0 : -EIO;
}

int read_dir_id(int path_fd, DirId* id) {
  ssize_t n = ::getxattr(proc_fd_path(path_fd).c_str(), kIdXattr, id->bytes.data(),
                         id->bytes.size());
  if (n < 0) return errno == ENODATA || errno == ERANGE ? -EIO : -errno;
  return static_cast<size_t>(n) == id->bytes.size() ? 0 : -EIO;
}

int write_object_id(int fd, std::span<const uint8_t> id) {
  return ::fsetxattr(fd, kIdXattr, id.data(), id.size(), 0) == 0 ? 0 : -errno;
}

}  // namespace scratchcrypt
