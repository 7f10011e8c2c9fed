// Issue 12 point 2: a file that loses its last two names at once, in two
// directories, while the kernel still knows it, must not leave its inode
// behind for a new object that gets the same backing inode number: that
// object would be served through the old inode (stale handle, old file id)
// and its data would be unreadable after a remount.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sys/resource.h>

#include <atomic>
#include <barrier>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "tests/fs/mount_fixture.h"
#include "tests/fs/test_util.h"

namespace sctest {
namespace {

class InodeReuseTest : public MountTest {};

// The kernel serializes removals of one inode (it locks the victim), so the
// daemon can still be left without a pin when opening one fails: here the
// daemon is out of descriptors at the moment the last name goes. The
// backing inode is then freed while the kernel still knows the file (held
// by an O_PATH descriptor, which the daemon never sees), and new files get
// its inode number.
TEST_F(InodeReuseTest, AReusedBackingInodeNumberIsANewInode) {
  SKIP_ON_BLOCK_LAYOUT("the files layout's inode table over backing inode numbers");
  const pid_t daemon = m_->daemon_pid();
  ASSERT_GT(daemon, 0);
  // Never opened, so no release of the daemon's descriptor can be pending.
  ASSERT_EQ(0, ::mknod(p("old").c_str(), S_IFREG | 0644, 0));
  Fd held(::open(p("old").c_str(), O_PATH));
  ASSERT_TRUE(held.ok());
  struct stat old_st;
  ASSERT_EQ(0, ::fstat(held.get(), &old_st));
  rlimit saved;
  ASSERT_EQ(0, ::prlimit(daemon, RLIMIT_NOFILE, nullptr, &saved));
  rlimit none = saved;
  none.rlim_cur = 0;  // no new descriptor at all
  ASSERT_EQ(0, ::prlimit(daemon, RLIMIT_NOFILE, &none, nullptr));
  const int unlinked = ::unlink(p("old").c_str());
  const int unlink_errno = errno;
  ASSERT_EQ(0, ::prlimit(daemon, RLIMIT_NOFILE, &saved, nullptr));
  ASSERT_EQ(0, unlinked) << strerror(unlink_errno);

  std::map<std::string, std::string> made;
  bool reused = false;
  for (int i = 0; i < 20; ++i) {
    const std::string path = p("new" + std::to_string(i));
    const std::string data = pattern(5000 + static_cast<size_t>(i), 100 + i);
    ASSERT_EQ(0, ::mknod(path.c_str(), S_IFREG | 0644, 0)) << strerror(errno);
    Fd fd(::open(path.c_str(), O_WRONLY));
    ASSERT_TRUE(fd.ok()) << path << ": " << strerror(errno);
    ASSERT_TRUE(pwrite_all(fd.get(), data, 0));
    struct stat st;
    ASSERT_EQ(0, ::fstat(fd.get(), &st));
    reused = reused || st.st_ino == old_st.st_ino;
    made[path] = data;
  }
  EXPECT_TRUE(reused) << "no new file got the freed inode number; the test proved nothing";
  held.reset();
  ASSERT_TRUE(m_->remount());
  for (const auto& [path, data] : made) {
    SCOPED_TRACE(path);
    EXPECT_BYTES_EQ(data, read_file(path));
  }
}

TEST_F(InodeReuseTest, ConcurrentUnlinksOfHardLinksThenReuseKeepEveryFile) {
  for (const char* d : {"a", "b", "new"}) ASSERT_EQ(0, ::mkdir(p(d).c_str(), 0755));
  constexpr int kRounds = 150;
  constexpr int kMakers = 3;
  constexpr int kPairs = 3;
  std::mutex mu;
  std::map<std::string, std::string> expected;  // path -> contents
  std::vector<std::string> failures;
  auto fail = [&](const std::string& what) {
    std::lock_guard lock(mu);
    if (failures.size() < 20) failures.push_back(what + ": " + strerror(errno));
  };
  std::atomic<bool> stop{false};

  // Makers create, fill and check new files all along, some with mknod (an
  // entry looked up afresh), some with open(O_CREAT).
  std::vector<std::thread> makers;
  for (int t = 0; t < kMakers; ++t) {
    makers.emplace_back([&, t] {
      for (int i = 0; !stop.load() || i < 20; ++i) {
        const std::string path = p("new/" + std::to_string(t) + "-" + std::to_string(i));
        const std::string data = pattern(100 + static_cast<size_t>(i % 7) * 1000, t * 100000 + i);
        if (i % 2 == 0) {
          if (::mknod(path.c_str(), S_IFREG | 0644, 0) != 0) { fail("mknod " + path); continue; }
          Fd fd(::open(path.c_str(), O_WRONLY));
          if (!fd.ok() || !pwrite_all(fd.get(), data, 0)) { fail("fill " + path); continue; }
        } else if (!write_file(path, data)) {
          fail("create " + path);
          continue;
        }
        if (read_file(path) != data) fail("read back " + path);
        std::lock_guard lock(mu);
        expected[path] = data;
      }
    });
  }
  // Pairs of unlinkers remove the two names of one file at the same moment,
  // while an O_PATH descriptor (which the daemon never sees) keeps the
  // kernel's inode alive.
  std::vector<Fd> held(kPairs * kRounds);
  auto unlinker = [&](int pair, bool first, std::barrier<>& sync) {
    for (int r = 0; r < kRounds; ++r) {
      const std::string name = std::to_string(pair) + "-" + std::to_string(r);
      const std::string a = p("a/" + name), b = p("b/" + name);
      const size_t slot = static_cast<size_t>(pair * kRounds + r);
      if (first) {
        if (!write_file(a, pattern(5000, slot)) || ::link(a.c_str(), b.c_str()) != 0) fail("link");
        struct stat st;
        ::stat(b.c_str(), &st);
        held[slot].reset(::open(a.c_str(), O_PATH));
      }
      sync.arrive_and_wait();
      if (::unlink((first ? a : b).c_str()) != 0) fail("unlink");
      sync.arrive_and_wait();
    }
  };
  std::vector<std::unique_ptr<std::barrier<>>> barriers;
  std::vector<std::thread> unlinkers;
  for (int pair = 0; pair < kPairs; ++pair) {
    barriers.push_back(std::make_unique<std::barrier<>>(2));
    unlinkers.emplace_back(unlinker, pair, true, std::ref(*barriers.back()));
    unlinkers.emplace_back(unlinker, pair, false, std::ref(*barriers.back()));
  }
  for (auto& t : unlinkers) t.join();
  stop.store(true);
  for (auto& t : makers) t.join();
  for (const auto& f : failures) ADD_FAILURE() << f;
  held.clear();
  ASSERT_TRUE(m_->remount());
  size_t bad = 0;
  for (const auto& [path, data] : expected) {
    if (read_file(path) != data && ++bad <= 5) ADD_FAILURE() << path << " differs after remount";
  }
  EXPECT_EQ(0u, bad) << "of " << expected.size() << " files";
}

}  // namespace
}  // namespace sctest
