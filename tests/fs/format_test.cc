// The volume as it sits on the backing disk, and the refusals and failures
// around it: decryption of what the mount wrote by the independent reader
// (tests/format), refused mounts with their exit codes, a daemon killed in
// the middle of writes, corrupted backing entries, a full backing disk.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sodium.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <linux/falloc.h>

#include <atomic>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "crypto/keyring.h"
#include "tests/fs/mount_fixture.h"
#include "tests/fs/test_util.h"

namespace sctest {
namespace {

std::string hex(const std::string& bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 15]);
  }
  return out;
}

std::string sha256_hex(const std::string& data) {
  if (sodium_init() < 0) return "";
  unsigned char digest[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(digest, reinterpret_cast<const unsigned char*>(data.data()), data.size());
  return hex(std::string(reinterpret_cast<char*>(digest), sizeof digest));
}

// Runs tests/format/fs_format_check.py over a backing tree with `key`.
RunResult decrypt_tree(const std::string& backing, const std::vector<uint8_t>& key) {
  const std::string input = hex(std::string(key.begin(), key.end())) + "\n";
  return run({"/usr/bin/python3", source_dir() + "/tests/format/fs_format_check.py", backing}, {},
             120, &input);
}

TEST(Format, IndependentReaderDecryptsWhatTheMountWrote) {
  SKIP_ON_BLOCK_LAYOUT("the files layout's backing format (tests/format checks the block layout)");
  const auto key = test_key(42);
  Mount m(MountOptions{{}, key});
  ASSERT_TRUE(m.ok()) << m.mount_result().output;

  std::map<std::string, std::string> files;  // path -> contents
  for (size_t len : {0u, 5u, 15u, 16u, 17u, 4096u, 4097u, 10000u}) {
    files["len" + std::to_string(len)] = pattern(len, len + 1);
  }
  const std::string long_name = std::string(180, 'N') + "-long";
  files[long_name] = "a long name's file";
  files["sub/dir/inner"] = pattern(12345, 9);
  files["name with spaces \xc3\xa9\x01"] = "odd bytes in the name";
  ASSERT_EQ(0, ::mkdir(m.path("sub").c_str(), 0755));
  ASSERT_EQ(0, ::mkdir(m.path("sub/dir").c_str(), 0700));
  for (const auto& [path, data] : files) ASSERT_TRUE(write_file(m.path(path), data)) << path;
  // A sparse file: data, a hole of whole units, data in a partial last unit.
  std::string sparse(3 * 1024 * 1024 + 100, '\0');
  {
    Fd fd(::open(m.path("sparse").c_str(), O_RDWR | O_CREAT, 0644));
    ASSERT_TRUE(pwrite_all(fd.get(), "head", 0));
    ASSERT_TRUE(pwrite_all(fd.get(), "tail-data", static_cast<off_t>(sparse.size() - 9)));
    sparse.replace(0, 4, "head");
    sparse.replace(sparse.size() - 9, 9, "tail-data");
  }
  files["sparse"] = sparse;
  // A file with a punched hole in the middle.
  std::string punched = pattern(5 * 4096, 77);
  ASSERT_TRUE(write_file(m.path("punched"), punched));
  {
    Fd fd(::open(m.path("punched").c_str(), O_RDWR));
    ASSERT_EQ(0, ::fallocate(fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 4096, 8192 + 10));
    std::fill(punched.begin() + 4096, punched.begin() + 4096 + 8192 + 10, '\0');
  }
  files["punched"] = punched;
  ASSERT_EQ(0, ::symlink("../target/of/the link", m.path("sub/link").c_str()));
  const std::string long_target = "../" + std::string(4000, 'T');  // long form: a companion
  ASSERT_EQ(0, ::symlink(long_target.c_str(), m.path("sub/dir/longlink").c_str()));
  ASSERT_EQ(0, ::mknod(m.path("sub/tty").c_str(), S_IFCHR | 0600, makedev(5, 0)));
  ASSERT_EQ(0, ::mknod(m.path("sub/sda1").c_str(), S_IFBLK | 0600, makedev(8, 1)));
  ASSERT_EQ(0, ::mknod(m.path("sub/fifo").c_str(), S_IFIFO | 0600, 0));
  ASSERT_EQ(0, ::setxattr(m.path("len5").c_str(), "user.note", "value!", 6, 0));
  ASSERT_EQ(0, ::setxattr(m.path("sub").c_str(), "user.dirnote", "", 0, 0));
  ASSERT_TRUE(m.umount());

  RunResult r = decrypt_tree(m.backing(), key);
  ASSERT_EQ(0, r.exit_code) << r.output;
  std::set<std::string> expected;
  for (const auto& [path, data] : files) {
    expected.insert("f\t" + hex(path) + "\t" + std::to_string(data.size()) + "\t" + sha256_hex(data));
  }
  expected.insert("d\t" + hex("sub"));
  expected.insert("d\t" + hex("sub/dir"));
  expected.insert("l\t" + hex("sub/link") + "\t" + hex("../target/of/the link"));
  expected.insert("l\t" + hex("sub/dir/longlink") + "\t" + hex(long_target));
  expected.insert("n\t" + hex("sub/tty") + "\tc\t5\t0");
  expected.insert("n\t" + hex("sub/sda1") + "\tb\t8\t1");
  expected.insert("p\t" + hex("sub/fifo"));
  expected.insert("x\t" + hex("len5") + "\t" + hex("note") + "\t" + hex("value!"));
  expected.insert("x\t" + hex("sub") + "\t" + hex("dirnote") + "\t");
  std::set<std::string> got;
  std::istringstream lines(r.output);
  std::string line;
  while (std::getline(lines, line)) {
    if (!line.empty()) got.insert(line);
  }
  for (const auto& e : expected) EXPECT_EQ(1u, got.count(e)) << "the reader did not find: " << e;
  for (const auto& g : got) EXPECT_EQ(1u, expected.count(g)) << "the reader found more: " << g;

  // The same key again through --key-fd mounts it; a different key is refused.
  int fd = key_pipe(test_key(43));
  RunResult refused = run_scratchcrypt({"mount", "--key-fd", std::to_string(fd), m.backing(), m.mnt()}, {fd});
  ::close(fd);
  EXPECT_EQ(4, refused.exit_code) << refused.output;
  EXPECT_NE(std::string::npos, refused.output.find("key")) << refused.output;
  RunResult again = m.mount_again({});  // the fixture passes the right key
  ASSERT_EQ(0, again.exit_code) << again.output;
  for (const auto& [path, data] : files) EXPECT_BYTES_EQ(data, read_file(m.path(path)));
}

// A volume of format 1 (8-byte file ids, key-stream short tails) is
// recognised but not served, with a message that says what to do.
TEST(Format, AFormat1VolumeIsRefusedClearly) {
  SKIP_ON_BLOCK_LAYOUT("format 1 is a files-layout format (block volumes came with format 2)");
  Mount m;
  ASSERT_TRUE(m.ok()) << m.mount_result().output;
  ASSERT_TRUE(m.umount());
  const std::string header_path = m.backing() + "/.scratchcrypt-volume";
  std::string header = read_file(header_path);
  ASSERT_EQ(0u, header.rfind("scratchcrypt-volume 2\n", 0)) << header;
  header.replace(0, std::strlen("scratchcrypt-volume 2"), "scratchcrypt-volume 1");
  ASSERT_TRUE(write_file(header_path, header, 0600));
  RunResult r = m.mount_again({"--recover"});
  EXPECT_EQ(4, r.exit_code) << r.output;
  EXPECT_NE(std::string::npos, r.output.find("format 1")) << r.output;
  EXPECT_NE(std::string::npos, r.output.find("scratchcrypt wipe")) << r.output;
  EXPECT_FALSE(is_mountpoint(m.mnt()));
}

TEST(Format, SecondMountOfTheSameBackingIsRefused) {
  Mount m;
  ASSERT_TRUE(m.ok()) << m.mount_result().output;
  const pid_t daemon = m.daemon_pid();
  ASSERT_GT(daemon, 0);
  TempDir other("mnt2");
  for (const std::vector<std::string>& extra : {std::vector<std::string>{},
                                                std::vector<std::string>{"--recover"}}) {
    std::vector<std::string> args = {"mount"};
    args.insert(args.end(), extra.begin(), extra.end());
    args.push_back(m.backing());
    args.push_back(other.path());
    RunResult r = run_scratchcrypt(args);
    SCOPED_TRACE(extra.empty() ? "plain mount" : "mount --recover");
    EXPECT_EQ(4, r.exit_code) << r.output;
    EXPECT_NE(std::string::npos, r.output.find(std::to_string(daemon)))
        << "the message should name the daemon pid " << daemon << ": " << r.output;
    struct statfs st;
    ASSERT_EQ(0, ::statfs(other.path().c_str(), &st));
    EXPECT_NE(0x65735546, static_cast<int>(st.f_type)) << "nothing may be mounted there";
  }
  EXPECT_TRUE(write_file(m.path("still-works"), "yes"));
}

TEST(Format, RefusedMountRequests) {
  TempDir dir("refuse");
  const std::string d = dir.path();
  ASSERT_EQ(0, ::mkdir((d + "/backing").c_str(), 0700));
  ASSERT_EQ(0, ::mkdir((d + "/mnt").c_str(), 0755));
  ASSERT_EQ(0, ::mkdir((d + "/full-mnt").c_str(), 0755));
  ASSERT_TRUE(write_file(d + "/full-mnt/existing", "x"));
  ASSERT_TRUE(write_file(d + "/file-backing", "x"));
  ASSERT_EQ(0, ::mkdir((d + "/foreign").c_str(), 0700));
  ASSERT_TRUE(write_file(d + "/foreign/someone-elses-data", "keep me"));
  struct Case {
    std::string what;
    std::string backing, mnt;
    int code;
    std::string needle;  // a word the message must contain
  };
  const Case cases[] = {
      {"non-empty mount point", d + "/backing", d + "/full-mnt", 4, "empty"},
      {"missing backing", d + "/no-such-dir", d + "/mnt", 2, "exist"},
      {"backing is a file", d + "/file-backing", d + "/mnt", 2, "directory"},
      {"foreign non-empty backing", d + "/foreign", d + "/mnt", 4, "empty"},
      {"missing mount point", d + "/backing", d + "/no-mnt", 2, "exist"},
      {"mount point is the backing", d + "/backing", d + "/backing", 2, "differ"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    std::vector<std::string> args = {"mount"};
    for (const auto& a : layout_args()) args.push_back(a);
    args.insert(args.end(), {c.backing, c.mnt});
    RunResult r = run_scratchcrypt(args);
    EXPECT_EQ(c.code, r.exit_code) << r.output;
    EXPECT_NE(std::string::npos, r.output.find(c.needle)) << r.output;
    EXPECT_GT(r.output.size(), 20u) << "a refusal must explain itself";
  }
  // Nothing was mounted or touched.
  std::ifstream mounts("/proc/self/mountinfo");
  std::string all((std::istreambuf_iterator<char>(mounts)), std::istreambuf_iterator<char>());
  EXPECT_EQ(std::string::npos, all.find(d + "/")) << "a refused request left a mount";
  EXPECT_EQ("keep me", read_file(d + "/foreign/someone-elses-data"));
  EXPECT_EQ("x", read_file(d + "/full-mnt/existing"));
  struct stat st;
  EXPECT_NE(0, ::stat((d + "/foreign/.scratchcrypt-volume").c_str(), &st));
  // An existing volume without --recover or a key is refused, not re-keyed.
  {
    Mount m;
    ASSERT_TRUE(m.ok());
    ASSERT_TRUE(write_file(m.path("f"), "data"));
    ASSERT_TRUE(m.umount());
    RunResult r = m.mount_again({});
    EXPECT_EQ(4, r.exit_code) << r.output;
    EXPECT_NE(std::string::npos, r.output.find("--recover")) << r.output;
    if (block_layout()) {  // never mounted twice: only wipe ends it
      r = m.mount_again({"--recover"});
      EXPECT_EQ(4, r.exit_code) << r.output;
      EXPECT_NE(std::string::npos, r.output.find("files-layout feature")) << r.output;
      EXPECT_NE(std::string::npos, r.output.find("wipe")) << r.output;
      return;
    }
    ASSERT_EQ(0, m.mount_again({"--recover"}).exit_code);
    EXPECT_EQ("data", read_file(m.path("f")));
  }
}

TEST(Format, KilledDaemonRecoversFsyncedData) {
  SKIP_ON_BLOCK_LAYOUT("mount --recover is a files-layout feature (lifecycle tests cover a "
                       "killed block daemon)");
  Mount m;
  ASSERT_TRUE(m.ok()) << m.mount_result().output;
  std::map<std::string, std::string> synced;
  for (size_t len : {1u, 15u, 4096u, 4097u, 100000u}) {
    const std::string path = m.path("synced" + std::to_string(len));
    synced[path] = pattern(len, len);
    Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT, 0644));
    ASSERT_TRUE(pwrite_all(fd.get(), synced[path], 0));
    ASSERT_EQ(0, ::fsync(fd.get()));
  }
  // A writer keeps going while the daemon dies under it.
  std::atomic<bool> stop{false};
  std::atomic<int> errors{0};
  std::atomic<long> writes{0};
  const std::string busy = m.path("busy");
  std::thread writer([&] {
    Fd fd(::open(busy.c_str(), O_WRONLY | O_CREAT, 0644));
    const std::string chunk = pattern(10000, 3);
    for (long i = 0; !stop.load(); ++i) {
      if (::pwrite(fd.get(), chunk.data(), chunk.size(), (i % 100) * 10000) < 0) {
        errors++;
        if (errors > 10) break;
      } else {
        writes++;
      }
      if (i % 50 == 0) ::fsync(fd.get());
    }
  });
  while (writes.load() < 200) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const pid_t daemon = m.daemon_pid();
  ASSERT_GT(daemon, 0);
  ASSERT_EQ(0, ::kill(daemon, SIGKILL));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  stop = true;
  writer.join();
  struct statfs st;
  EXPECT_NE(0, ::statfs(m.mnt().c_str(), &st));
  EXPECT_EQ(ENOTCONN, errno) << "a dead daemon leaves a disconnected mount";
  reap_orphans();
  // A plain mount is refused and says how to recover.
  RunResult plain = m.mount_again({});
  EXPECT_EQ(4, plain.exit_code) << plain.output;
  EXPECT_NE(std::string::npos, plain.output.find("--recover")) << plain.output;
  RunResult r = m.mount_again({"--recover"});
  ASSERT_EQ(0, r.exit_code) << r.output;
  for (const auto& [path, data] : synced) {
    SCOPED_TRACE(path);
    EXPECT_BYTES_EQ(data, read_file(path));
  }
  // The busy file is readable (contents up to the last fsync are not
  // checked byte for byte: later unsynced writes may or may not be there).
  int err = 0;
  const std::string b = read_file(busy, &err);
  EXPECT_EQ(0, err) << strerror(err);
  EXPECT_TRUE(write_file(m.path("after"), "works"));
  EXPECT_EQ("works", read_file(m.path("after")));
}

// The backing entry of a mount path (by inode number).
std::string backing_entry(Mount& m, const std::string& name) { return backing_of(m, m.path(name)); }

TEST(Format, CorruptedBackingEntriesAreContained) {
  SKIP_ON_BLOCK_LAYOUT("corrupts the files layout's backing entries");
  Mount m;
  ASSERT_TRUE(m.ok()) << m.mount_result().output;
  ASSERT_TRUE(write_file(m.path("good"), "good data"));
  ASSERT_TRUE(write_file(m.path("renamed-on-disk"), "x"));
  ASSERT_TRUE(write_file(m.path("bad-id"), pattern(9000, 5)));
  ASSERT_TRUE(write_file(m.path("no-id"), "y"));
  const std::string renamed = backing_entry(m, "renamed-on-disk");
  const std::string bad_id = backing_entry(m, "bad-id");
  const std::string no_id = backing_entry(m, "no-id");
  ASSERT_FALSE(renamed.empty() || bad_id.empty() || no_id.empty());
  ASSERT_TRUE(m.umount());
  // Garbage that is valid base64url, but does not authenticate.
  ASSERT_EQ(0, ::rename(renamed.c_str(), (m.backing() + "/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").c_str()));
  ASSERT_TRUE(write_file(m.backing() + "/not-base64!", "planted"));
  ASSERT_EQ(0, ::setxattr(bad_id.c_str(), "user.scratchcrypt.id", "abc", 3, 0));
  ASSERT_EQ(0, ::removexattr(no_id.c_str(), "user.scratchcrypt.id"));
  ASSERT_EQ(0, m.mount_again({"--recover"}).exit_code);

  std::set<std::string> names;
  DIR* d = ::opendir(m.mnt().c_str());
  ASSERT_NE(nullptr, d);
  errno = 0;
  while (dirent* e = ::readdir(d)) names.insert(e->d_name);
  EXPECT_EQ(0, errno) << "readdir must skip, not fail";
  ::closedir(d);
  EXPECT_EQ((std::set<std::string>{".", "..", "good", "bad-id", "no-id"}), names);
  int err = 0;
  read_file(m.path("bad-id"), &err);
  EXPECT_EQ(EIO, err) << strerror(err);
  read_file(m.path("no-id"), &err);
  EXPECT_EQ(EIO, err) << strerror(err);
  EXPECT_EQ("good data", read_file(m.path("good")));
  struct statfs st;
  EXPECT_EQ(0, ::statfs(m.mnt().c_str(), &st)) << "the daemon must survive";
  EXPECT_TRUE(write_file(m.path("new"), "new"));
  EXPECT_EQ("new", read_file(m.path("new")));
}

TEST(Format, FullBackingDiskKeepsEarlierData) {
  TempDir dir("full");
  const std::string image = dir.path() + "/disk.img";
  const std::string fs_root = dir.path() + "/fs";
  {
    Fd fd(::open(image.c_str(), O_RDWR | O_CREAT, 0600));
    ASSERT_EQ(0, ::ftruncate(fd.get(), 32 << 20));
  }
  RunResult mk = run({"/usr/sbin/mkfs.ext4", "-q", "-F", "-m", "0", image});
  ASSERT_EQ(0, mk.exit_code) << mk.output;
  ASSERT_EQ(0, ::mkdir(fs_root.c_str(), 0755));
  RunResult lo = run({"/usr/bin/mount", "-o", "loop", image, fs_root});
  if (lo.exit_code != 0) GTEST_SKIP() << "cannot loop-mount an ext4 image here: " << lo.output;
  struct Unmounter {
    std::string path;
    ~Unmounter() { run({"/usr/bin/umount", "-l", path}); }
  } unmount_loop{fs_root};
  const std::string backing = fs_root + "/backing", mnt = dir.path() + "/mnt";
  ASSERT_EQ(0, ::mkdir(backing.c_str(), 0700));
  ASSERT_EQ(0, ::mkdir(mnt.c_str(), 0755));
  RunResult r = run_scratchcrypt({"mount", backing, mnt});
  ASSERT_EQ(0, r.exit_code) << r.output;
  struct Cleanup {
    std::string mnt, backing;
    ~Cleanup() {
      if (run_scratchcrypt({"umount", mnt}).exit_code != 0) run({"/usr/bin/umount", "-l", mnt});
      std::ifstream in(backing + "/.scratchcrypt-volume");
      std::string line;
      while (std::getline(in, line)) {
        if (line.rfind("id ", 0) == 0) scratchcrypt::keyring::remove(line.substr(3));
      }
      reap_orphans();
    }
  } cleanup{mnt, backing};

  const std::string early = pattern(2 * 1024 * 1024 + 123, 1);
  ASSERT_TRUE(write_file(mnt + "/early", early));
  ASSERT_TRUE(write_file(mnt + "/small", "tail"));
  // Fill until the backing disk says no.
  int first_error = 0;
  {
    Fd fd(::open((mnt + "/filler").c_str(), O_WRONLY | O_CREAT, 0644));
    const std::string chunk = pattern(1 << 20, 2);
    for (int i = 0; i < 64 && first_error == 0; ++i) {
      if (!pwrite_all(fd.get(), chunk, static_cast<off_t>(i) << 20)) first_error = errno;
      if (first_error == 0 && ::fsync(fd.get()) != 0) first_error = errno;
    }
    const int rc = ::close(fd.fd);
    if (first_error == 0 && rc != 0) first_error = errno;
    fd.fd = -1;
  }
  EXPECT_EQ(ENOSPC, first_error) << strerror(first_error);
  // Creating more fails cleanly, earlier data is intact.
  EXPECT_EQ(early, read_file(mnt + "/early"));
  EXPECT_EQ("tail", read_file(mnt + "/small"));
  // Freeing space makes the volume usable again.
  EXPECT_EQ(0, ::unlink((mnt + "/filler").c_str()));
  EXPECT_TRUE(write_file(mnt + "/after", "room again"));
  RunResult um = run_scratchcrypt({"umount", mnt});
  EXPECT_EQ(0, um.exit_code) << um.output;
  RunResult re = run_scratchcrypt({"mount", "--recover", backing, mnt});
  ASSERT_EQ(0, re.exit_code) << re.output;
  EXPECT_EQ(early, read_file(mnt + "/early"));
  EXPECT_EQ("tail", read_file(mnt + "/small"));
  EXPECT_EQ("room again", read_file(mnt + "/after"));
}

}  // namespace
}  // namespace sctest
