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
#include <memory>
#include <vector>

#include "tests/fs/test_util.h"
#include "tests/lifecycle/lifecycle_util.h"

namespace lctest {
namespace {

using sctest::LoopDisk;

class RawDiskTest : public NodeTest {
 protected:
  void SetUp() override {
    NodeTest::SetUp();
    if (!exists("/usr/sbin/mkfs.ext4") && !exists("/sbin/mkfs.ext4")) GTEST_SKIP() << "no mkfs.ext4 (e2fsprogs)";
    if (!exists("/dev/loop-control")) GTEST_SKIP() << "no loop devices here (/dev/loop-control)";
  }
  // Declared after NodeTest's temporary directory, so unmounted before it goes.
  std::unique_ptr<LoopDisk> disk_;
};

std::string token(const std::string& prefix) {
  unsigned char b[12];
  int fd = ::open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  EXPECT_EQ(12, ::read(fd, b, sizeof b));
  ::close(fd);
  return prefix + hex(std::string(reinterpret_cast<char*>(b), sizeof b));
}

TEST_F(RawDiskTest, NoPlaintextOnTheDiskBeforeOrAfterWipe) {
  disk_ = std::make_unique<LoopDisk>(root_ + "/disk.img", root_ + "/disk", 64);
  ASSERT_TRUE(disk_->ok());
  ASSERT_TRUE(disk_->mount());
  // The node's backing_root lives on that disk; mounts and the log do not.
  backing_root_ = disk_->dir() + "/backing";
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

  std::string disk = disk_->bytes();
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
  ASSERT_TRUE(disk_->umount());  // everything the file system had is on the image now
  disk = disk_->bytes();
  EXPECT_FALSE(contains(disk, canary)) << "file contents in plaintext on the disk after the wipe";
  EXPECT_FALSE(contains(disk, name_canary)) << "a file name in plaintext on the disk after the wipe";
  EXPECT_FALSE(contains(disk, key_text.substr(0, 32)) || contains(disk, key_text.substr(32)))
      << "the key is on the disk after the wipe";

  // Positive control: the same canary in a plain file is found by the same search.
  ASSERT_TRUE(disk_->mount());
  ASSERT_TRUE(spit(disk_->dir() + "/" + name_canary + "-plain", canary + " in the clear"));
  ASSERT_TRUE(disk_->umount());
  disk = disk_->bytes();
  EXPECT_TRUE(contains(disk, canary)) << "control: a plaintext file's contents should be found";
  EXPECT_TRUE(contains(disk, name_canary)) << "control: a plaintext file name should be found";
}

TEST_F(RawDiskTest, ConfigWarnsOfABackingExt4WithoutAJournal) {
  for (const bool journal : {false, true}) {
    const std::string tag = journal ? "journaled" : "journal-less";
    disk_ = std::make_unique<LoopDisk>(
        root_ + "/" + tag + ".img", root_ + "/" + tag, 32,
        journal ? std::vector<std::string>{} : std::vector<std::string>{"-O", "^has_journal"});
    ASSERT_TRUE(disk_->ok()) << tag;
    ASSERT_TRUE(disk_->mount()) << tag;
    // backing_root need not exist yet: the check looks at its nearest ancestor.
    ASSERT_TRUE(spit(config_, "backing_root = " + disk_->dir() + "/not/yet\nmount_root = " +
                                  mount_root_ + "\nrecord_log = " + record_log_ + "\n"));
    RunResult r = sc({"config"});
    EXPECT_EQ(0, r.exit_code) << r.output;
    EXPECT_TRUE(contains(r.output, "backing_root = " + disk_->dir())) << r.output;
    EXPECT_EQ(!journal, contains(r.output, "without a journal")) << tag << ": " << r.output;
  }
}

}  // namespace
}  // namespace lctest
