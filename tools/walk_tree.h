// Walking a backing tree by descriptor (openat/fdopendir), never by path:
// trees deeper than PATH_MAX are walked whole, and links are not followed.
#pragma once

#include <sys/stat.h>

#include <functional>

namespace scratchcrypt {

// What walk_tree reports for each entry: the directory it is in (as a
// descriptor), its name there, and its lstat.
using TreeVisit = std::function<void(int dir_fd, const char* name, const struct stat& st)>;

// Visits `name` in `parent_fd` (or a path, with AT_FDCWD) and everything
// under it, post-order: a directory after its entries, so that `visit` may
// remove what it is given. An entry that cannot be stat'ed is skipped; a
// directory that cannot be opened is visited without its entries.
void walk_tree(int parent_fd, const char* name, const TreeVisit& visit);

}  // namespace scratchcrypt
