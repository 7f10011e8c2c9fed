// EncryptedDirectory: the names in one backing directory, and symlink
// targets (docs/FORMAT.md sections 5 and 6).
//
// A plaintext name becomes its backing name with the directory's id
// (NameCipher). A long name's full ciphertext lives in a companion file
// beside its entry: this module makes the companion before the entry is
// created and removes it once the entry is gone. Reading a directory turns
// backing entries back into plaintext names, skipping scratchcrypt's
// reserved entries and entries that do not decrypt.
//
// SymlinkTargets keeps symlink targets: encrypted, in the backing symlink
// while they fit (targets up to 3039 bytes), else in a companion file in
// the volume root that the backing symlink names. The companion belongs to
// the symlink's inode, whatever its names: it goes when the last one does.
//
// Functions return 0 or -errno, as the FUSE layer replies; nothing throws.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>

#include "crypto/name_cipher.h"

namespace scratchcrypt {

// 0 for a valid name component, -ENOENT for an empty one, -ENAMETOOLONG
// over 255 bytes.
int check_name(const char* name);

// "." and "..".
bool is_dot(const char* name);

class EncryptedDirectory {
 public:
  // `dir_fd` is a descriptor of the backing directory (O_PATH will do for
  // lookups; creating and reading companions needs it to be searchable),
  // `id` its dir id.
  EncryptedDirectory(int dir_fd, const DirId& id, NameCipher& names)
      : fd_(dir_fd), id_(id), names_(names) {}

  // The backing name of `name`, which check_name() must accept.
  int backing_name(const char* name, BackingName* out);

  // The same for an entry about to be created: a long name's companion is
  // made if it is missing; *made_companion says whether this call made it,
  // for remove_companion() if the entry cannot be created after all.
  int prepare_entry(const char* name, BackingName* out, bool* made_companion);

  // Removes the companion of a long backing name whose entry is gone.
  void remove_companion(const BackingName& name);

  // The plaintext name of the backing entry `backing_name` (backing inode
  // `ino`, for the log); "." and ".." as they are; nullopt for reserved
  // entries and entries that do not decrypt, which a listing skips.
  std::optional<std::string> plaintext_name(const char* backing_name, ino_t ino);


 private:
  int fd_;
  DirId id_;
  NameCipher& names_;
};

class SymlinkTargets {
 public:
  // `root_fd` is the volume root (BACKING), where long targets are kept.
  SymlinkTargets(int root_fd, NameCipher& names) : root_fd_(root_fd), names_(names) {}

  // Creates the backing symlink `at` in directory `dir_fd` pointing to the
  // encrypted `target` (1..4095 bytes, which the kernel checks).
  int make(int dir_fd, const char* at, std::string_view target);

  // Removes the backing symlink `at` that make() just created, and its
  // companion (when the symlink cannot be finished).
  void unmake(int dir_fd, const char* at);

  // The plaintext target of the backing symlink `link_fd` (an O_PATH
  // descriptor); -EIO when it does not decrypt. `ino` names it in the log.
  int read(int link_fd, ino_t ino, std::string* target);

  // Makes the lstat `st` of backing object `path_fd` show the plaintext
  // target's length if it is a symlink; leaves other objects as they are.
  void show_size(int path_fd, struct stat* st);

  // The companion that must go once the entry `at` of `dir_fd`, whose
  // lstat is `st`, loses its name: a long symlink's with one link left;
  // "" for anything else. remove_companion() it after the entry is gone.
  std::string companion_of_last_link(int dir_fd, const char* at, const struct stat& st);
  void remove_companion(const std::string& companion);

 private:
  // The stored target of a backing symlink, or "" if it cannot be read.
  static std::string stored_target(int dir_fd, const char* at);
  // The companion a stored target names, or "" for a short target.
  static std::string companion_named_by(const std::string& stored);

  int root_fd_;
  NameCipher& names_;
};

}  // namespace scratchcrypt
