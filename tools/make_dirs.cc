#include "tools/make_dirs.h"

#include <sys/stat.h>

#include <cerrno>

#include "fuse/error.h"

namespace scratchcrypt {

int try_make_dirs(const std::string& path, mode_t mode, std::string* failed) {
  for (size_t slash = path.find('/', 1);; slash = path.find('/', slash + 1)) {
    const std::string prefix = slash == std::string::npos ? path : path.substr(0, slash);
    if (::mkdir(prefix.c_str(), mode) != 0 && errno != EEXIST) {
      const int err = errno;
      if (failed != nullptr) *failed = prefix;
      return err;
    }
    if (slash == std::string::npos) return 0;
  }
}

void make_dirs(const std::string& path, mode_t mode) {
  std::string failed;
  if (int err = try_make_dirs(path, mode, &failed); err != 0) {
    throw Error(errno_text("cannot create " + failed, err));
  }
}

}  // namespace scratchcrypt
