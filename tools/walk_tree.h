// Walking a backing tree by descriptor (openat/fdopendir), never by path:
// trees deeper than PATH_MAX are walked whole, and links are not followed.
//
// A job builds the tree, so the walk's own resources are bounded whatever
// its depth or width: it is iterative (no recursion), keeps at most
// kWalkOpenDirs directories open, and re-opens an ancestor it had to close
// through ".." of its child, checked to be the same directory (device and
// inode) before anything is done in it. Its memory grows with the depth
// only (one name and one stat per level), not with the width.
#pragma once

#include <sys/stat.h>

#include <cstddef>
#include <functional>

namespace scratchcrypt {

// Most directories walk_tree holds open at once (plus one while re-opening).
inline constexpr size_t kWalkOpenDirs = 16;

// What walk_tree reports for each entry: the directory it is in (as a
// descriptor), its name there, and its lstat.
using TreeVisit = std::function<void(int dir_fd, const char* name, const struct stat& st)>;

// Visits `name` in `parent_fd` (or a path, with AT_FDCWD) and everything
// under it, post-order: a directory after its entries, so that `visit` may
// remove what it is given (it must not touch anything else in the tree). An
// entry that cannot be stat'ed is skipped; a directory that cannot be opened
// is visited without its entries. Returns false when the walk had to stop
// early: an ancestor could not be re-opened, or was replaced meanwhile (the
// directories above the point where it stopped are then not visited).
bool walk_tree(int parent_fd, const char* name, const TreeVisit& visit);

}  // namespace scratchcrypt
