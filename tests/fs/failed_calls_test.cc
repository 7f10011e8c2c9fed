// What a failed call leaves behind (issue 12, point 1) and what an
// exception inside a request does (point 3): a file reads exactly as before
// a write, truncate or hole punch that failed, on the mount and after a
// remount; the daemon answers an exception with an errno and keeps serving.
//
// Failures are real where this machine can make them (EFBIG and ENOSPC from
// a small loop-mounted ext4) and injected otherwise, through the daemon's
// test-only fault file (fuse/fault_injection.h).
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <memory>

#include "tests/fs/mount_fixture.h"
#include "tests/fs/test_util.h"

namespace sctest {
namespace {

constexpr off_t kTiB = off_t{1} << 40;
const std::string kHello = "Hello, scratchcrypt!";

class FailedCallTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SKIP_ON_BLOCK_LAYOUT("the files layout's data path under failures and injected faults "
                         "(the block layout's kernel file system handles its own)");
    if (!LoopDisk::available()) GTEST_SKIP() << "no mkfs.ext4 or loop devices here";
    // 4 KiB blocks (not mkfs's 1 KiB for small images): ext4's defaults, and
    // a full disk then stops writes at data unit boundaries.
    disk_ = std::make_unique<LoopDisk>(dir_.path() + "/disk.img", dir_.path() + "/disk", 32,
                                       std::vector<std::string>{"-b", "4096", "-m", "0"});
    ASSERT_TRUE(disk_->ok());
    ASSERT_TRUE(disk_->mount());
    faults_ = dir_.path() + "/faults";
    MountOptions options;
    options.extra_args = {"--mode", "0777"};
    options.base_dir = disk_->dir();
    options.fault_file = faults_;
    m_ = std::make_unique<Mount>(options);
    ASSERT_TRUE(m_->ok()) << m_->mount_result().output;
  }
  void TearDown() override { m_.reset(); }

  // Fault points the daemon fails from now on ("" for none).
  void inject(const std::string& points) {
    std::ofstream(faults_, std::ios::trunc) << points << "\n";
  }
  std::string p(const std::string& name) const { return m_->path(name); }

  // Each file in `expected` reads exactly so, with that size.
  void expect_files(const std::map<std::string, std::string>& expected, const std::string& when) {
    for (const auto& [name, contents] : expected) {
      SCOPED_TRACE(name + " " + when);
      struct stat st = {};
      ASSERT_EQ(0, ::stat(p(name).c_str(), &st)) << strerror(errno);
      EXPECT_EQ(static_cast<off_t>(contents.size()), st.st_size);
      EXPECT_BYTES_EQ(contents, read_file(p(name)));
    }
  }
  void expect_files_and_after_remount(const std::map<std::string, std::string>& expected) {
    expect_files(expected, "on the mount");
    inject("");
    ASSERT_TRUE(m_->remount());
    expect_files(expected, "after remount");
  }

  TempDir dir_{"failed"};
  std::unique_ptr<LoopDisk> disk_;  // after dir_: unmounted before it goes
  std::string faults_;
  std::unique_ptr<Mount> m_;        // after disk_: unmounted before it
};

TEST_F(FailedCallTest, EfbigTruncateAndWriteLeaveTheFileAsItWas) {
  ASSERT_TRUE(write_file(p("hello"), kHello));
  ASSERT_TRUE(write_file(p("two-units"), pattern(4096 + 700, 3)));
  // ext4 with 4 KiB blocks holds files up to 16 TiB.
  SYS_FAILS(EFBIG, ::truncate(p("hello").c_str(), 20 * kTiB));
  SYS_FAILS(EFBIG, ::truncate(p("two-units").c_str(), 20 * kTiB));
  {
    Fd fd(::open(p("hello").c_str(), O_WRONLY));
    SYS_FAILS(EFBIG, ::pwrite(fd.get(), "x", 1, 17 * kTiB));
    Fd fd2(::open(p("two-units").c_str(), O_WRONLY));
    SYS_FAILS(EFBIG, ::pwrite(fd2.get(), "xyz", 3, 17 * kTiB + 5));
  }
  expect_files_and_after_remount({{"hello", kHello}, {"two-units", pattern(4096 + 700, 3)}});
}

TEST_F(FailedCallTest, EnospcPartWayLeavesTheFileAsItWas) {
  const std::string sparse_head = pattern(10, 5);
  ASSERT_TRUE(write_file(p("hello"), kHello));
  ASSERT_TRUE(write_file(p("sparse"), sparse_head));
  ASSERT_EQ(0, ::truncate(p("sparse").c_str(), 1 << 20));
  std::string sparse = sparse_head;
  sparse.resize(1 << 20, '\0');
  // Fill the backing disk: big writes until ENOSPC, then single units.
  {
    Fd fd(::open(p("filler").c_str(), O_WRONLY | O_CREAT, 0644));
    const std::string chunk = pattern(1 << 20, 2);
    for (off_t at = 0; ::pwrite(fd.get(), chunk.data(), chunk.size(), at) > 0; at += 1 << 20) {}
    EXPECT_EQ(ENOSPC, errno) << strerror(errno);
    Fd more(::open(p("filler2").c_str(), O_WRONLY | O_CREAT, 0644));
    for (off_t at = 0; ::pwrite(more.get(), chunk.data(), 4096, at) == 4096; at += 4096) {}
    SYS_OK(::fsync(fd.get()));
  }
  const std::string big = pattern(1 << 20, 7);
  {
    Fd fd(::open(p("hello").c_str(), O_WRONLY));
    // Extending: the 20-byte last unit is re-encrypted as a full unit in its
    // allocated block, then the new units find no space.
    SYS_FAILS(ENOSPC, ::pwrite(fd.get(), big.data(), big.size(), 8192));
    // Into holes of a sparse file, with a partial first unit.
    Fd sfd(::open(p("sparse").c_str(), O_WRONLY));
    SYS_FAILS(ENOSPC, ::pwrite(sfd.get(), big.data(), 3 * 4096, 100000 + 50));
    // Zeroing a range must allocate it, which fails before anything is zeroed.
    Fd rw(::open(p("sparse").c_str(), O_RDWR));
    SYS_FAILS(ENOSPC, ::fallocate(rw.get(), FALLOC_FL_ZERO_RANGE, 0, 512 * 1024));
  }
  expect_files({{"hello", kHello}, {"sparse", sparse}}, "when full");
  ASSERT_EQ(0, ::unlink(p("filler").c_str()));
  ASSERT_EQ(0, ::unlink(p("filler2").c_str()));
  expect_files_and_after_remount({{"hello", kHello}, {"sparse", sparse}});
}

TEST_F(FailedCallTest, EioFromTheBackingLeavesTheFileAsItWas) {
  const std::string two = pattern(4096 + 700, 4);
  ASSERT_TRUE(write_file(p("hello"), kHello));
  ASSERT_TRUE(write_file(p("two-units"), two));
  Fd hello(::open(p("hello").c_str(), O_RDWR));
  Fd units(::open(p("two-units").c_str(), O_RDWR));

  // The write's own units fail after the old last unit was re-encrypted.
  inject("main-store-eio");
  SYS_FAILS(EIO, ::pwrite(hello.get(), "later", 5, 8192));
  SYS_FAILS(EIO, ::pwrite(units.get(), "later", 5, 3 * 4096));
  SYS_FAILS(EIO, ::pwrite(units.get(), "mid", 3, 4000));
  // Resizing fails after (shrink) or before (grow) the last unit changed.
  inject("ftruncate-eio");
  SYS_FAILS(EIO, ::ftruncate(hello.get(), 5));
  SYS_FAILS(EIO, ::ftruncate(hello.get(), 100));
  SYS_FAILS(EIO, ::ftruncate(units.get(), 4096 + 3));
  SYS_FAILS(EIO, ::ftruncate(units.get(), 5000));
  SYS_FAILS(EIO, ::ftruncate(units.get(), 100));
  // Every store fails.
  inject("store-eio");
  SYS_FAILS(EIO, ::pwrite(hello.get(), "x", 1, 3));
  SYS_FAILS(EIO, ::ftruncate(units.get(), 4096 + 5));
  SYS_FAILS(EIO, ::fallocate(units.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 100, 8000));
  inject("");
  hello.reset();
  units.reset();
  expect_files_and_after_remount({{"hello", kHello}, {"two-units", two}});
}

TEST_F(FailedCallTest, ExceptionsInRequestsBecomeErrnoAndTheVolumeLives) {
  ASSERT_TRUE(write_file(p("f"), kHello));
  Fd fd(::open(p("f").c_str(), O_RDWR | O_DIRECT));  // no page cache: every read asks
  ASSERT_TRUE(fd.ok()) << strerror(errno);
  alignas(4096) static char buf[4096];
  inject("throw");
  SYS_FAILS(EIO, ::pread(fd.get(), buf, sizeof buf, 0));
  SYS_FAILS(EIO, ::pwrite(fd.get(), buf, sizeof buf, 0));
  inject("bad-alloc");
  SYS_FAILS(ENOMEM, ::pread(fd.get(), buf, sizeof buf, 0));
  SYS_FAILS(ENOMEM, ::pwrite(fd.get(), buf, sizeof buf, 0));
  inject("");
  struct statfs st;
  EXPECT_EQ(0, ::statfs(m_->mnt().c_str(), &st)) << "the daemon must survive: " << strerror(errno);
  EXPECT_EQ(static_cast<ssize_t>(kHello.size()), ::pread(fd.get(), buf, sizeof buf, 0));
  EXPECT_EQ(kHello, std::string(buf, kHello.size()));
  fd.reset();
  expect_files_and_after_remount({{"f", kHello}});
}

}  // namespace
}  // namespace sctest
