// What someone reading the raw disk would find: the backing file system is
// an ext4 image on a loop device, and its bytes are searched directly for
// plaintext written through a volume (contents, names, the key), while the
// volume is mounted and after it is wiped. A plain file written to the same
// disk at the end shows the search finds what is there.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <vector>

#include "tests/fs/test_util.h"
#include "tests/lifecycle/lifecycle_util.h"

namespace lctest {
namespace {

class RawDiskTest : public NodeTest {
 protected:
  std::string image_, disk_;

  bool mount_disk() {
    RunResult r = sctest::run({"/usr/bin/mount", "-o", "loop", image_, disk_});
    EXPECT_EQ(0, r.exit_code) << "mount -o loop: " << r.output;
    return r.exit_code == 0;
  }
  bool umount_disk() {
    RunResult r = sctest::run({"/usr/bin/umount", disk_});
    EXPECT_EQ(0, r.exit_code) << "umount: " << r.output;
    return r.exit_code == 0;
  }
  // Every byte that reached the image (as the disk would hold it).
  std::string image_bytes() {
    ::sync();
    std::ofstream("/proc/sys/vm/drop_caches") << "3" << std::flush;  // best effort
    return slurp(image_);
  }
};

std::string token(const std::string& prefix) {
  unsigned char b[12];
  int fd = ::open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  EXPECT_EQ(12, ::read(fd, b, sizeof b));
  ::close(fd);
  return prefix + hex(std::string(reinterpret_cast<char*>(b), sizeof b));
}

TEST_F(RawDiskTest, NoPlaintextOnTheDiskBeforeOrAfterWipe) {
  if (!exists("/usr/sbin/mkfs.ext4") && !exists("/sbin/mkfs.ext4")) GTEST_SKIP() << "no mkfs.ext4 (e2fsprogs)";
  if (!exists("/dev/loop-control")) GTEST_SKIP() << "no loop devices here (/dev/loop-control)";
  image_ = root_ + "/disk.img";
  disk_ = root_ + "/disk";
  {
    int fd = ::open(image_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(0, ::ftruncate(fd, 64 << 20));
    ::close(fd);
  }
  RunResult mkfs = sctest::run({"/sbin/mkfs.ext4", "-F", "-q", image_});
  ASSERT_EQ(0, mkfs.exit_code) << mkfs.output;
  ASSERT_EQ(0, ::mkdir(disk_.c_str(), 0755));
  ASSERT_TRUE(mount_disk());
  // The node's backing_root lives on that disk; mounts and the log do not.
  backing_root_ = disk_ + "/backing";
  ASSERT_EQ(0, ::mkdir(backing_root_.c_str(), 0700));
  ASSERT_TRUE(spit(config_, "backing_root = " + backing_root_ + "\nmount_root = " + mount_root_ +
                                "\nrecord_log = " + record_log_ + "\n"));

  const auto key = sctest::test_key(77);
  const std::string key_text(key.begin(), key.end());
  const std::string id = make_volume("v", key);
  ASSERT_FALSE(id.empty());

  const std::string canary = token("SCRATCHCRYPT-CANARY-");  // 44 bytes
  const std::string name_canary = token("canaryname");
  std::string contents;
  while (contents.size() < (1 << 20)) contents += canary;
  ASSERT_TRUE(spit(mnt("v") + "/" + name_canary + "-big", contents));
  ASSERT_EQ(0, ::mkdir((mnt("v") + "/" + name_canary + "-dir").c_str(), 0755));
  for (int i = 0; i < 20; ++i) {
    const std::string name = mnt("v") + "/" + name_canary + "-dir/" + name_canary + "-" + std::to_string(i);
    ASSERT_TRUE(spit(name, canary + " small file " + std::to_string(i)));
  }
  ASSERT_EQ(0, ::symlink((name_canary + "-target").c_str(), (mnt("v") + "/" + name_canary + "-link").c_str()));
  ASSERT_EQ(contents, slurp(mnt("v") + "/" + name_canary + "-big"));
  {
    int fd = ::open((mnt("v") + "/" + name_canary + "-big").c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(0, ::fsync(fd));
    ::close(fd);
  }

  std::string disk = image_bytes();
  ASSERT_EQ(size_t{64} << 20, disk.size());
  EXPECT_FALSE(contains(disk, canary)) << "file contents in plaintext on the disk (volume mounted)";
  EXPECT_FALSE(contains(disk, name_canary)) << "a file name in plaintext on the disk (volume mounted)";
  EXPECT_FALSE(contains(disk, key_text.substr(0, 32)) || contains(disk, key_text.substr(32)))
      << "the key is on the disk (volume mounted)";
  EXPECT_FALSE(contains(disk, hex(key_text.substr(0, 32)))) << "the key, in hex, is on the disk";
  // The ciphertext is there (the test looks at the right disk).
  EXPECT_TRUE(contains(disk, "id " + id)) << "the volume header is not on the image";

  RunResult wipe = sc({"wipe", "--wait", mnt("v")});
  ASSERT_EQ(0, wipe.exit_code) << wipe.output;
  ASSERT_TRUE(umount_disk());  // everything the file system had is on the image now
  disk = image_bytes();
  EXPECT_FALSE(contains(disk, canary)) << "file contents in plaintext on the disk after the wipe";
  EXPECT_FALSE(contains(disk, name_canary)) << "a file name in plaintext on the disk after the wipe";
  EXPECT_FALSE(contains(disk, key_text.substr(0, 32)) || contains(disk, key_text.substr(32)))
      << "the key is on the disk after the wipe";

  // Positive control: the same canary in a plain file is found by the same search.
  ASSERT_TRUE(mount_disk());
  ASSERT_TRUE(spit(disk_ + "/" + name_canary + "-plain", canary + " in the clear"));
  ASSERT_TRUE(umount_disk());
  disk = image_bytes();
  EXPECT_TRUE(contains(disk, canary)) << "control: a plaintext file's contents should be found";
  EXPECT_TRUE(contains(disk, name_canary)) << "control: a plaintext file name should be found";
}

// A loop-mounted ext4 image, detached whatever the test's outcome.
class LoopDisk {
 public:
  LoopDisk(const std::string& image, const std::string& dir, const std::vector<std::string>& mkfs)
      : dir_(dir) {
    int fd = ::open(image.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 || ::ftruncate(fd, 32 << 20) != 0) return;
    ::close(fd);
    std::vector<std::string> argv = {"/sbin/mkfs.ext4", "-F", "-q"};
    argv.insert(argv.end(), mkfs.begin(), mkfs.end());
    argv.push_back(image);
    ::mkdir(dir.c_str(), 0755);
    mounted_ = sctest::run(argv).exit_code == 0 &&
               sctest::run({"/usr/bin/mount", "-o", "loop", image, dir}).exit_code == 0;
  }
  ~LoopDisk() {
    if (mounted_) sctest::run({"/usr/bin/umount", "-l", dir_});
  }
  bool ok() const { return mounted_; }

 private:
  std::string dir_;
  bool mounted_ = false;
};

TEST_F(RawDiskTest, ConfigWarnsOfABackingExt4WithoutAJournal) {
  if (!exists("/usr/sbin/mkfs.ext4") && !exists("/sbin/mkfs.ext4")) GTEST_SKIP() << "no mkfs.ext4 (e2fsprogs)";
  if (!exists("/dev/loop-control")) GTEST_SKIP() << "no loop devices here (/dev/loop-control)";
  for (const bool journal : {false, true}) {
    const std::string tag = journal ? "journaled" : "journal-less";
    LoopDisk disk(root_ + "/" + tag + ".img", root_ + "/" + tag,
                  journal ? std::vector<std::string>{} : std::vector<std::string>{"-O", "^has_journal"});
    ASSERT_TRUE(disk.ok()) << tag;
    // backing_root need not exist yet: the check looks at its nearest ancestor.
    ASSERT_TRUE(spit(config_, "backing_root = " + root_ + "/" + tag + "/not/yet\nmount_root = " +
                                  mount_root_ + "\nrecord_log = " + record_log_ + "\n"));
    RunResult r = sc({"config"});
    EXPECT_EQ(0, r.exit_code) << r.output;
    EXPECT_TRUE(contains(r.output, "backing_root = " + root_ + "/" + tag)) << r.output;
    EXPECT_EQ(!journal, contains(r.output, "without a journal")) << tag << ": " << r.output;
  }
}

}  // namespace
}  // namespace lctest
