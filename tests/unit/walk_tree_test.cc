// walk_tree: every entry once, post-order, within a fixed number of open
// descriptors whatever the depth, and never into a directory that was
// swapped under it.
#include "tools/walk_tree.h"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <utility>

namespace scratchcrypt {
namespace {

int open_fds() {
  int n = 0;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (dirent* e = ::readdir(d)) n += e->d_name[0] != '.';
    ::closedir(d);
  }
  return n - 1;  // the one opendir holds
}

class WalkTreeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // tmpfs: a deep chain on a disk file system spends most of the test
    // waiting for the journal; the walk does the same work on both.
    char tmpl[] = "/dev/shm/sc-walk-XXXXXX";
    ASSERT_NE(nullptr, ::mkdtemp(tmpl));
    dir_ = tmpl;
  }
  void TearDown() override {
    if (!dir_.empty()) std::system(("rm -rf " + dir_).c_str());
  }
  // A chain dir_/root/d/d/.../d of `depth` directories below root, built
  // by descriptor (a path would pass PATH_MAX); `files` files in each.
  // deepest_ becomes the inode of the deepest directory.
  void make_chain(int depth, int files) {
    int fd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY);
    ASSERT_EQ(0, ::mkdirat(fd, "root", 0755));
    int at = ::openat(fd, "root", O_RDONLY | O_DIRECTORY);
    ::close(fd);
    for (int level = 0; level <= depth; ++level) {
      for (int f = 0; f < files; ++f) {
        int file = ::openat(at, ("f" + std::to_string(f)).c_str(), O_WRONLY | O_CREAT, 0644);
        ASSERT_GE(file, 0) << std::strerror(errno);
        ::close(file);
      }
      if (level == depth) {
        struct stat st;
        if (::fstat(at, &st) == 0) deepest_ = st.st_ino;
        break;
      }
      ASSERT_EQ(0, ::mkdirat(at, "d", 0755)) << "level " << level << ": " << std::strerror(errno);
      int next = ::openat(at, "d", O_RDONLY | O_DIRECTORY);
      ASSERT_GE(next, 0);
      ::close(at);
      at = next;
    }
    ::close(at);
  }
  std::string dir_;
  ino_t deepest_ = 0;
};

TEST_F(WalkTreeTest, DeletesAHundredThousandLevelsWithinBoundedDescriptors) {
  constexpr int kDepth = 100000;
  make_chain(kDepth, 0);
  // The limit is far below the depth: a walk holding one descriptor per
  // level stops at the limit and leaves the chain behind.
  rlimit saved;
  ASSERT_EQ(0, ::getrlimit(RLIMIT_NOFILE, &saved));
  const int base = open_fds();
  rlimit low = saved;
  low.rlim_cur = static_cast<rlim_t>(base) + kWalkOpenDirs + 8;
  ASSERT_EQ(0, ::setrlimit(RLIMIT_NOFILE, &low));
  long visits = 0, removed = 0;
  int most_fds = 0;
  const int parent = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY);
  const bool complete = walk_tree(parent, "root", [&](int fd, const char* name, const struct stat& st) {
    if (++visits % 997 == 0) most_fds = std::max(most_fds, open_fds());
    removed += ::unlinkat(fd, name, S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0) == 0;
  });
  ::close(parent);
  ASSERT_EQ(0, ::setrlimit(RLIMIT_NOFILE, &saved));
  EXPECT_TRUE(complete);
  EXPECT_EQ(kDepth + 1, visits);
  EXPECT_EQ(kDepth + 1, removed);
  struct stat st;
  EXPECT_NE(0, ::lstat((dir_ + "/root").c_str(), &st)) << "the chain is still there";
  EXPECT_LE(most_fds, base + static_cast<int>(kWalkOpenDirs) + 2);
}

TEST_F(WalkTreeTest, ReadOnlyWalkVisitsEveryEntryOncePostOrder) {
  constexpr int kDepth = 300, kFiles = 7;
  make_chain(kDepth, kFiles);
  std::set<std::pair<dev_t, ino_t>> seen;
  std::set<ino_t> dirs_done;
  long visits = 0;
  bool order_ok = true;
  ASSERT_TRUE(walk_tree(AT_FDCWD, (dir_ + "/root").c_str(), [&](int fd, const char* name,
                                                               const struct stat& st) {
    ++visits;
    EXPECT_TRUE(seen.insert({st.st_dev, st.st_ino}).second) << "visited twice: " << name;
    struct stat here;
    if (S_ISDIR(st.st_mode)) {
      // Post-order: its child directory was visited before it.
      struct stat child;
      if (::fstatat(fd, (std::string(name) + "/d").c_str(), &child, AT_SYMLINK_NOFOLLOW) == 0 &&
          dirs_done.count(child.st_ino) == 0) {
        order_ok = false;
      }
      dirs_done.insert(st.st_ino);
    }
    // `fd` is the directory the entry is in.
    EXPECT_EQ(0, ::fstatat(fd, name, &here, AT_SYMLINK_NOFOLLOW)) << name;
    EXPECT_EQ(st.st_ino, here.st_ino) << name;
  }));
  EXPECT_EQ((kDepth + 1) * (kFiles + 1), visits);
  EXPECT_TRUE(order_ok) << "a directory was visited before its entries";
}

TEST_F(WalkTreeTest, StopsWhenAClosedAncestorWasSwapped) {
  // Deep enough that the ancestors at the top were closed on the way down.
  constexpr int kDepth = 3 * static_cast<int>(kWalkOpenDirs);
  make_chain(kDepth, 1);
  ASSERT_EQ(0, ::mkdir((dir_ + "/elsewhere").c_str(), 0755));
  std::string moved = dir_ + "/root";
  for (int i = 0; i < static_cast<int>(kWalkOpenDirs); ++i) moved += "/d";
  bool swapped = false;
  long above = 0;
  const bool complete = walk_tree(AT_FDCWD, (dir_ + "/root").c_str(), [&](int fd, const char*,
                                                                          const struct stat&) {
    struct stat in;
    if (!swapped && ::fstat(fd, &in) == 0 && in.st_ino == deepest_) {  // all the way down
      swapped = ::rename(moved.c_str(), (dir_ + "/elsewhere/d").c_str()) == 0;
    } else if (swapped) {
      ++above;
    }
  });
  ASSERT_TRUE(swapped) << std::strerror(errno);
  EXPECT_FALSE(complete) << "the walk went on through a '..' that is another directory now";
  // It stopped at the moved directory: what is below it in the chain was
  // visited, nothing above it.
  EXPECT_LT(above, 2L * (kDepth - static_cast<int>(kWalkOpenDirs)) + 2);
  struct stat st;
  EXPECT_EQ(0, ::stat((dir_ + "/root/f0").c_str(), &st));
}

}  // namespace
}  // namespace scratchcrypt
