#include "tools/walk_tree.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace scratchcrypt {

namespace {

struct DirCloser {
  void operator()(DIR* dir) const { ::closedir(dir); }
};
using DirPtr = std::unique_ptr<DIR, DirCloser>;

// One directory on the way down from the walk's root.
struct Frame {
  std::string name;  // in the directory of the frame above
  struct stat st;    // of the directory that was opened
  DirPtr dir;        // null while closed to stay within kWalkOpenDirs
  long next = 0;     // telldir() after the entry being walked below
};

// Opens a directory without following a link; `*st` becomes its fstat, so
// that what is reported is what was walked.
DirPtr open_dir(int at, const char* name, struct stat* st) {
  const int fd = ::openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return nullptr;
  struct stat opened;
  DIR* dir = ::fstat(fd, &opened) == 0 ? ::fdopendir(fd) : nullptr;
  if (dir == nullptr) {
    ::close(fd);
    return nullptr;
  }
  *st = opened;
  return DirPtr(dir);
}

bool is_dot(const char* name) { return std::strcmp(name, ".") == 0 || std::strcmp(name, "..") == 0; }

}  // namespace

bool walk_tree(int parent_fd, const char* name, const TreeVisit& visit) {
  struct stat st;
  if (::fstatat(parent_fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) return true;
  DirPtr root = S_ISDIR(st.st_mode) ? open_dir(parent_fd, name, &st) : nullptr;
  if (!root) {
    visit(parent_fd, name, st);
    return true;
  }
  std::vector<Frame> stack;
  stack.push_back({name, st, std::move(root), 0});
  size_t first_open = 0;  // frames below it are closed (the open ones are the deepest)
  while (!stack.empty()) {
    DIR* dir = stack.back().dir.get();
    if (dirent* entry = ::readdir(dir)) {  // an error reading ends the directory too
      if (is_dot(entry->d_name)) continue;
      const int fd = ::dirfd(dir);
      struct stat entry_st;
      if (::fstatat(fd, entry->d_name, &entry_st, AT_SYMLINK_NOFOLLOW) != 0) continue;
      DirPtr child = S_ISDIR(entry_st.st_mode) ? open_dir(fd, entry->d_name, &entry_st) : nullptr;
      if (!child) {
        visit(fd, entry->d_name, entry_st);
        continue;
      }
      stack.back().next = ::telldir(dir);
      stack.push_back({entry->d_name, entry_st, std::move(child), 0});
      if (stack.size() - first_open > kWalkOpenDirs) stack[first_open++].dir.reset();
      continue;
    }
    // Done with the directory on top: visit it in its parent.
    Frame done = std::move(stack.back());
    stack.pop_back();
    if (stack.empty()) {
      done.dir.reset();
      visit(parent_fd, done.name.c_str(), done.st);
      break;
    }
    Frame& parent = stack.back();
    if (!parent.dir) {
      // Closed on the way down: back through "..", which must still be it.
      struct stat up_st;
      DirPtr up = open_dir(::dirfd(done.dir.get()), "..", &up_st);
      if (!up || up_st.st_dev != parent.st.st_dev || up_st.st_ino != parent.st.st_ino) return false;
      ::seekdir(up.get(), parent.next);
      parent.dir = std::move(up);
      first_open = stack.size() - 1;
    }
    done.dir.reset();
    visit(::dirfd(parent.dir.get()), done.name.c_str(), done.st);
  }
  return true;
}

}  // namespace scratchcrypt
