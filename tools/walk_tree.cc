#include "tools/walk_tree.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstring>

namespace scratchcrypt {

void walk_tree(int parent_fd, const char* name, const TreeVisit& visit) {
  struct stat st;
  if (::fstatat(parent_fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) return;
  if (S_ISDIR(st.st_mode)) {
    int fd = ::openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0) {
      if (DIR* dir = ::fdopendir(fd)) {
        while (dirent* entry = ::readdir(dir)) {
          if (std::strcmp(entry->d_name, ".") == 0 || std::strcmp(entry->d_name, "..") == 0) continue;
          walk_tree(fd, entry->d_name, visit);
        }
        ::closedir(dir);
      } else {
        ::close(fd);
      }
    }
  }
  visit(parent_fd, name, st);
}

}  // namespace scratchcrypt
