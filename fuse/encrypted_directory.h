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
// A symlink's target is stored encrypted as the backing symlink's target;
// lstat shows the plaintext length, which follows from the stored one.
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

  // Creates the backing symlink `at` in this directory, pointing to the
  // encrypted `target`. -ENAMETOOLONG when the stored form does not fit.
  int make_symlink(const char* at, std::string_view target);

 private:
  int fd_;
  DirId id_;
  NameCipher& names_;
};

// The plaintext target of the backing symlink `link_fd` (an O_PATH
// descriptor); -EIO when it does not decrypt. `ino` names it in the log.
int read_symlink(NameCipher& names, int link_fd, ino_t ino, std::string* target);

// Makes the lstat of a backing symlink show the plaintext target's length;
// other objects are left as they are.
void show_symlink_size(struct stat* st);

}  // namespace scratchcrypt
