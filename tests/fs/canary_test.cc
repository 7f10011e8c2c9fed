// Nothing written through the mount appears in plaintext on the backing
// disk: distinctive canaries in contents (full units, a 1..15-byte tail, a
// sparse file), names (short and long form), directory names, symlink
// targets and xattr names and values are searched for, byte for byte, in
// every backing file, name, symlink target and xattr after umount.
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <set>
#include <string_view>
#include <vector>

#include "tests/fs/mount_fixture.h"
#include "tests/fs/test_util.h"

namespace sctest {
namespace {

// Distinct canaries per kind, so a hit says what leaked.
const std::vector<std::string>& canaries() {
  static const std::vector<std::string> list = {
      "QZcontentCANARY8r1",  // file contents (repeated, across units)
      "QZtailC4n!",          // the whole of a 10-byte file (short tail)
      "QZsparseCANARY7w",    // contents of a sparse file far from offset 0
      "QZnameCANARY3k",      // a file name
      "QZdirCANARY5m",       // a directory name
      "QZlongCANARY6p",      // inside a 230-byte name (long form)
      "QZlinkCANARY2t",      // a symlink target
      "QZxnameCANARY9",      // an xattr name
      "QZxvalueCANARY4",     // an xattr value
      "QZunitCANARY0",       // exactly one 16-byte XTS block, aligned
  };
  return list;
}

struct Hit {
  std::string where;
  std::string canary;
};

void search_bytes(std::string_view data, const std::string& where, std::vector<Hit>* hits) {
  for (const auto& c : canaries()) {
    if (data.find(c) != std::string_view::npos) hits->push_back({where, c});
  }
}

// Reads a backing file's data regions only (a sparse file may be huge).
void search_file(const std::string& path, std::vector<Hit>* hits) {
  int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    ADD_FAILURE() << "cannot open backing file " << path << ": " << strerror(errno);
    return;
  }
  struct stat st;
  ::fstat(fd, &st);
  off_t pos = 0;
  std::string overlap;  // canaries may straddle two reads
  while (pos < st.st_size) {
    off_t data = ::lseek(fd, pos, SEEK_DATA);
    if (data < 0) break;
    off_t hole = ::lseek(fd, data, SEEK_HOLE);
    if (hole < 0) hole = st.st_size;
    for (off_t at = data; at < hole;) {
      const size_t n = static_cast<size_t>(std::min<off_t>(hole - at, 1 << 20));
      std::string chunk = overlap + pread_str(fd, n, at);
      search_bytes(chunk, path + " (contents near offset " + std::to_string(at) + ")", hits);
      overlap = chunk.substr(chunk.size() > 64 ? chunk.size() - 64 : 0);
      at += static_cast<off_t>(n);
    }
    overlap.clear();
    pos = hole;
  }
  ::close(fd);
}

void search_xattrs(const std::string& path, std::vector<Hit>* hits) {
  char names[65536];
  ssize_t n = ::llistxattr(path.c_str(), names, sizeof names);
  if (n < 0) return;
  search_bytes(std::string_view(names, static_cast<size_t>(n)), path + " (xattr names)", hits);
  for (ssize_t pos = 0; pos < n;) {
    const char* name = names + pos;
    pos += static_cast<ssize_t>(strlen(name)) + 1;
    std::string value(65536, '\0');
    ssize_t len = ::lgetxattr(path.c_str(), name, value.data(), value.size());
    if (len >= 0) {
      value.resize(static_cast<size_t>(len));
      search_bytes(value, path + " (xattr " + name + ")", hits);
    }
  }
}

// Everything under `root`: names, file bytes, symlink targets, xattrs.
std::vector<Hit> search_backing(const std::string& root) {
  static thread_local std::vector<Hit>* out;
  std::vector<Hit> hits;
  out = &hits;
  ::nftw(
      root.c_str(),
      [](const char* fpath, const struct stat* st, int, struct FTW* ftw) {
        const std::string path = fpath;
        search_bytes(path.substr(static_cast<size_t>(ftw->base)), path + " (name)", out);
        if (S_ISREG(st->st_mode)) search_file(path, out);
        if (S_ISLNK(st->st_mode)) {
          char target[8192];
          ssize_t n = ::readlink(fpath, target, sizeof target);
          if (n > 0) search_bytes(std::string_view(target, static_cast<size_t>(n)), path + " (symlink target)", out);
        }
        search_xattrs(path, out);
        return 0;
      },
      32, FTW_PHYS);
  return hits;
}

std::string describe(const std::vector<Hit>& hits) {
  std::string out;
  for (const auto& h : hits) out += "\n  " + h.canary + " found in " + h.where;
  return out;
}

TEST(Canary, NoPlaintextOnTheBackingDisk) {
  Mount m;
  ASSERT_TRUE(m.ok()) << m.mount_result().output;
  const auto& c = canaries();
  const std::string contents_canary = c[0], tail = c[1], sparse = c[2], fname = c[3], dname = c[4],
                    long_part = c[5], link = c[6], xname = c[7], xvalue = c[8], unit = c[9];
  ASSERT_EQ(16u, unit.size() + 3);  // padded below to one 16-byte block

  // Contents: the canary repeated over several units, at every alignment.
  std::string big;
  while (big.size() < 3 * 4096 + 777) big += contents_canary + std::to_string(big.size() % 7);
  const std::string dir = m.path(dname);
  ASSERT_EQ(0, ::mkdir(dir.c_str(), 0755));
  const std::string file = dir + "/" + fname;
  ASSERT_TRUE(write_file(file, big));
  ASSERT_EQ(10u, tail.size());
  ASSERT_TRUE(write_file(m.path("tail"), tail));  // a 10-byte file: the tail cipher only
  ASSERT_TRUE(write_file(m.path("block"), unit + "xyz"));  // exactly 16 bytes
  {
    Fd fd(::open(m.path("sparse").c_str(), O_RDWR | O_CREAT, 0644));
    ASSERT_TRUE(pwrite_all(fd.get(), sparse, 0));
    ASSERT_TRUE(pwrite_all(fd.get(), sparse + sparse, (1LL << 30) + 4090));
    ASSERT_TRUE(pwrite_all(fd.get(), sparse, (2LL << 30) + 1));
    ASSERT_EQ(0, ::fsync(fd.get()));
  }
  const std::string long_name = std::string(100, 'a') + long_part + std::string(116, 'b');
  ASSERT_TRUE(write_file(m.path(long_name), "long"));
  ASSERT_EQ(0, ::mkdir(m.path(long_name + "D").c_str(), 0755));
  ASSERT_EQ(0, ::symlink(("../" + link + "/target").c_str(), m.path("link").c_str()));
  ASSERT_EQ(0, ::symlink(link.c_str(), m.path(fname + "-link").c_str()));
  ASSERT_EQ(0, ::setxattr(file.c_str(), ("user." + xname).c_str(), xvalue.data(), xvalue.size(), 0));
  ASSERT_EQ(0, ::setxattr(dir.c_str(), ("user." + xname).c_str(), xvalue.data(), xvalue.size(), 0));
  ASSERT_EQ(0, ::setxattr(m.path("tail").c_str(), "user.v", xvalue.data(), xvalue.size(), 0));
  // A renamed and a hard-linked name, and a file truncated back to a tail.
  ASSERT_TRUE(write_file(m.path("tmpname"), big));
  ASSERT_EQ(0, ::rename(m.path("tmpname").c_str(), m.path(fname + "2").c_str()));
  ASSERT_EQ(0, ::link(file.c_str(), m.path(fname + "3").c_str()));
  ASSERT_EQ(0, ::truncate(m.path(fname + "2").c_str(), 12));
  // Through the mount everything reads back.
  EXPECT_EQ(big, read_file(file));
  EXPECT_EQ(tail, read_file(m.path("tail")));
  char target[256];
  ssize_t n = ::readlink(m.path("link").c_str(), target, sizeof target);
  EXPECT_EQ("../" + link + "/target", std::string(target, n > 0 ? static_cast<size_t>(n) : 0));
  ::sync();
  // Block layout: searched while mounted (sync wrote everything through to
  // the image), then read back after remounting its kernel file system.
  if (!block_layout()) {
    ASSERT_TRUE(m.umount());
  }

  // The search must be able to fail: plant each kind directly, find it,
  // remove it again.
  const std::string planted_dir = m.backing() + "/plant-" + dname;
  ASSERT_EQ(0, ::mkdir(planted_dir.c_str(), 0700));
  ASSERT_TRUE(write_file(planted_dir + "/f", "xx" + contents_canary + "yy"));
  ASSERT_EQ(0, ::symlink(("a/" + link).c_str(), (planted_dir + "/l").c_str()));
  ASSERT_EQ(0, ::setxattr((planted_dir + "/f").c_str(), ("user." + xname).c_str(), "v", 1, 0));
  ASSERT_EQ(0, ::setxattr(planted_dir.c_str(), "user.p", xvalue.data(), xvalue.size(), 0));
  {
    Fd fd(::open((planted_dir + "/sparse").c_str(), O_RDWR | O_CREAT, 0600));
    ASSERT_TRUE(pwrite_all(fd.get(), "z" + sparse, (1LL << 30) + 4090));  // across a 1 MiB read
  }
  std::vector<Hit> planted = search_backing(m.backing());
  std::set<std::string> found;
  for (const auto& h : planted) found.insert(h.canary);
  EXPECT_EQ((std::set<std::string>{contents_canary, dname, link, xname, xvalue, sparse}), found)
      << "the search missed a planted canary:" << describe(planted);
  remove_tree(planted_dir);
  ASSERT_NE(0, ::access(planted_dir.c_str(), F_OK));

  std::vector<Hit> hits = search_backing(m.backing());
  EXPECT_TRUE(hits.empty()) << "plaintext found on the backing disk:" << describe(hits);

  // And the volume still holds it all.
  if (block_layout()) {
    ASSERT_TRUE(m.remount());
  } else {
    ASSERT_EQ(0, m.mount_again({"--recover"}).exit_code);
  }
  EXPECT_EQ(big, read_file(file));
  EXPECT_EQ(big, read_file(m.path(fname + "3")));
  EXPECT_EQ(big.substr(0, 12), read_file(m.path(fname + "2")));
  EXPECT_EQ(tail, read_file(m.path("tail")));
  EXPECT_EQ(unit + "xyz", read_file(m.path("block")));
  EXPECT_EQ("long", read_file(m.path(long_name)));
  char value[64];
  ssize_t vn = ::getxattr(file.c_str(), ("user." + xname).c_str(), value, sizeof value);
  EXPECT_EQ(xvalue, std::string(value, vn > 0 ? static_cast<size_t>(vn) : 0));
  Fd fd(::open(m.path("sparse").c_str(), O_RDONLY));
  EXPECT_EQ(sparse + sparse, pread_str(fd.get(), sparse.size() * 2, (1LL << 30) + 4090));
}

}  // namespace
}  // namespace sctest
