// "mkdir -p" for the command: directories the node configuration names
// (backing_root, mount_root, the wipe record log's directory) are made on
// first use.
#pragma once

#include <sys/types.h>

#include <string>

namespace scratchcrypt {

// Makes `path` and each missing directory on the way to it, all with `mode`;
// those that exist already are left as they are. Returns 0, or the errno of
// the first one that could not be made (and stops there); `*failed`, when
// given, is then set to that directory.
int try_make_dirs(const std::string& path, mode_t mode, std::string* failed = nullptr);

// The same, but throws Error "cannot create DIR: REASON" when one cannot be
// made.
void make_dirs(const std::string& path, mode_t mode);

}  // namespace scratchcrypt
