// Volume: one encrypted scratch volume on its backing directory.
//
// The backing directory holds the volume's header (.scratchcrypt-volume:
// format version, volume id, key check value; no secret) and the encrypted
// tree. A mounted volume holds a write lock on the header, so the same
// backing can never be served by two daemons. See docs/FORMAT.md.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <array>
#include <memory>
#include <optional>
#include <string>

#include "crypto/contents_cipher.h"
#include "crypto/name_cipher.h"
#include "crypto/volume_key.h"
#include "fuse/unique_fd.h"

namespace scratchcrypt {

inline constexpr const char* kHeaderName = ".scratchcrypt-volume";
inline constexpr const char* kIdXattr = "user.scratchcrypt.id";

// The on-disk format this version makes and serves (docs/FORMAT.md).
inline constexpr int kFormatVersion = 2;
// How a volume stores its data (docs/FORMAT.md): `files` mirrors the tree
// as encrypted backing files; `block` keeps one encrypted image file that a
// loop device and a kernel file system sit on.
enum class VolumeLayout { kFiles, kBlock };
const char* layout_name(VolumeLayout layout);

struct VolumeHeader {
  int format = kFormatVersion;  // 1 = older volumes: recognized (wipe, sweep), not served
  std::string id;  // 32 hex digits
  std::array<uint8_t, kKeyCheckBytes> key_check{};
  uint64_t size_limit = 0;  // bytes; 0 = none. Kept here so a remount keeps it.
  VolumeLayout layout = VolumeLayout::kFiles;
  uint64_t size = 0;  // block layout: the image size in bytes
};

// The header of BACKING, or nullopt when BACKING is not a volume.
std::optional<VolumeHeader> read_volume_header(const std::string& backing);

// The pid holding BACKING's volume lock (its daemon), or nullopt if none.
std::optional<pid_t> volume_lock_holder(const std::string& backing);

struct RootOwner {
  uid_t uid = 0;
  gid_t gid = 0;
  mode_t mode = 0700;
};

class Volume {
 public:
  // Makes a new volume in BACKING, which must be an empty directory.
  static Volume create(const std::string& backing, VolumeKey key, const RootOwner& owner);
  // Makes a new block-layout volume of `size` bytes in BACKING, which must be
  // an empty directory: the header only (the image is ImageStore's).
  static Volume create_block(const std::string& backing, VolumeKey key, uint64_t size);
  // Opens the existing volume in BACKING with its key (which must match).
  static Volume open(const std::string& backing, VolumeKey key);

  // For a mount that failed after create(): gives BACKING back as create()
  // found it (no header, no root id, its owner and mode). Does nothing for
  // a volume that open() found.
  void discard();
  // True for a volume create() made (until discard()).
  bool created() const { return created_from_.has_value(); }

  const std::string& id() const { return header_.id; }
  uint64_t size_limit() const { return header_.size_limit; }
  // Records the volume's size limit in its header (rewritten in place and
  // synced), for the next mount of the volume.
  void set_size_limit(uint64_t limit);
  const VolumeHeader& header() const { return header_; }
  const std::string& backing() const { return backing_; }
  int root_fd() const { return root_.get(); }
  const VolumeKey& key() const { return key_; }
  ContentsCipher& contents() { return *contents_; }
  NameCipher& names() { return *names_; }

 private:
  Volume(std::string backing, UniqueFd root, UniqueFd header_fd, VolumeHeader header,
         VolumeKey key);
  static UniqueFd open_backing_dir(const std::string& backing);
  static UniqueFd open_new_backing(const std::string& backing, const std::string& again);
  static void write_new_header(const std::string& backing, int root_fd, VolumeHeader& header,
                               bool* made);
  static UniqueFd lock_header(const std::string& backing, int root_fd, const std::string& id);

  std::string backing_;
  UniqueFd root_;
  UniqueFd header_fd_;  // holds the lock
  VolumeHeader header_;
  VolumeKey key_;
  std::unique_ptr<ContentsCipher> contents_;
  std::unique_ptr<NameCipher> names_;
  std::optional<struct stat> created_from_;  // BACKING before create()
};

// Object ids kept in the backing xattr (docs/FORMAT.md).
// -errno on failure; -EIO when the id is missing or malformed.
int read_file_id(int fd, FileId* id);
int read_dir_id(int path_fd, DirId* id);
int write_object_id(int fd, std::span<const uint8_t> id);

}  // namespace scratchcrypt
