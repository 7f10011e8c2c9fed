// The block layout's life cycle: what a mount makes (a kernel file system of
// the exact size on a loop device over a private image mount), backing space
// reservation, and ends: wipe of a large tree, forced wipe, a killed daemon
// followed by wipe or sweep. Each leaves no mount, loop device, daemon, key
// or backing file behind.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "tests/lifecycle/lifecycle_util.h"

namespace lctest {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using sctest::LoopDisk;

class BlockTest : public NodeTest {
 protected:
  void SetUp() override {
    NodeTest::SetUp();
    if (!exists("/dev/loop-control")) GTEST_SKIP() << "no loop devices here (/dev/loop-control)";
  }
  std::string make_block(const std::string& name, const std::string& size,
                         std::vector<std::string> extra = {}) {
    extra.insert(extra.begin(), {"--layout", "block", "--size-limit", size});
    return make_volume(name, {}, extra);
  }
  std::string image_mount(const std::string& id) const { return run_dir_ + "/images/" + id; }
  // Loop devices whose backing file is this volume's image.
  int loops_of(const std::string& id) const {
    int n = 0;
    if (DIR* d = ::opendir("/sys/block")) {
      while (dirent* e = ::readdir(d)) {
        if (std::strncmp(e->d_name, "loop", 4) != 0) continue;
        if (contains(slurp(std::string("/sys/block/") + e->d_name + "/loop/backing_file"), id)) ++n;
      }
      ::closedir(d);
    }
    return n;
  }
  // Nothing of volume `id` (made as `name`) is left on the node.
  void expect_gone(const std::string& name, const std::string& id, pid_t daemon) {
    EXPECT_FALSE(is_mountpoint(mnt(name))) << "the job's file system is still mounted";
    EXPECT_FALSE(is_mountpoint(image_mount(id))) << "the image mount is still there";
    EXPECT_FALSE(exists(image_mount(id)));
    EXPECT_TRUE(wait_gone(daemon, 5s)) << "daemon " << daemon << " still runs";
    EXPECT_EQ(-1, key_serial(id)) << "key still in the keyring";
    const auto deadline = Clock::now() + 5s;
    while (loops_of(id) > 0 && Clock::now() < deadline) std::this_thread::sleep_for(20ms);
    EXPECT_EQ(0, loops_of(id)) << "a loop device is still attached to the image";
    EXPECT_FALSE(exists(backing(name)));
  }
};

long thread_flags_all(pid_t pid, long mask) {
  // Every worker thread has served a request by now only if there was load;
  // count the threads that carry the flags.
  long with = 0;
  if (DIR* d = ::opendir(("/proc/" + std::to_string(pid) + "/task").c_str())) {
    while (dirent* e = ::readdir(d)) {
      if (e->d_name[0] == '.') continue;
      std::string stat = slurp("/proc/" + std::to_string(pid) + "/task/" + e->d_name + "/stat");
      auto paren = stat.rfind(')');
      if (paren == std::string::npos) continue;
      std::istringstream fields(stat.substr(paren + 2));
      std::string skip;
      unsigned long flags = 0;
      for (int i = 0; i < 6; ++i) fields >> skip;  // state ppid pgrp session tty tpgid
      fields >> flags;
      if ((flags & static_cast<unsigned long>(mask)) == static_cast<unsigned long>(mask)) ++with;
    }
    ::closedir(d);
  }
  return with;
}

// Whether this (root) process may do what the daemon needs CAP_SYS_RESOURCE
// for; some containers drop it.
bool has_sys_resource() {
  std::istringstream status(slurp("/proc/self/status"));
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("CapEff:", 0) == 0) return (std::stoull(line.substr(7), nullptr, 16) >> 24) & 1;
  }
  return false;
}

// Writes `bytes` of data into `path`; the errno of the first failure, or 0.
int fill(const std::string& path, uint64_t bytes) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return errno;
  const std::string chunk = sctest::pattern(1 << 20, 5);
  int err = 0;
  for (uint64_t done = 0; done < bytes && err == 0;) {
    ssize_t n = ::write(fd, chunk.data(), std::min<uint64_t>(chunk.size(), bytes - done));
    if (n < 0) err = errno;
    else done += static_cast<uint64_t>(n);
  }
  if (err == 0 && ::fsync(fd) != 0) err = errno;
  ::close(fd);
  return err;
}

TEST_F(BlockTest, MountsAPrivateImageAndAKernelFileSystemOfTheExactSize) {
  const std::string id = make_block("v", "256M", {"--uid", "60001", "--gid", "60001"});
  ASSERT_FALSE(id.empty());
  const std::string m = mnt("v");
  // The job's file system: ext4, nodev, nosuid, owned by the job, 0700.
  bool found = false;
  std::istringstream mountinfo(slurp("/proc/self/mountinfo"));
  for (std::string line; std::getline(mountinfo, line);) {
    if (!contains(line, " " + m + " ")) continue;
    found = true;
    EXPECT_TRUE(contains(line, "nodev")) << line;
    EXPECT_TRUE(contains(line, "nosuid")) << line;
    EXPECT_TRUE(contains(line, " - ext4 /dev/loop")) << line;
  }
  EXPECT_TRUE(found) << m << " is not mounted";
  struct stat st;
  ASSERT_EQ(0, ::stat(m.c_str(), &st));
  EXPECT_EQ(60001u, st.st_uid);
  EXPECT_EQ(0700u, st.st_mode & 07777);
  // Its size is the size limit: df shows it, and writing more fails with ENOSPC.
  struct statvfs vfs;
  ASSERT_EQ(0, ::statvfs(m.c_str(), &vfs));
  const uint64_t size = static_cast<uint64_t>(vfs.f_blocks) * vfs.f_frsize;
  EXPECT_LE(size, 256u << 20);
  EXPECT_GE(size, 220u << 20);
  auto enospc = sctest::as_user(60001, 60001, [&] { return static_cast<long>(fill(m + "/big", 300u << 20)); });
  EXPECT_EQ(ENOSPC, enospc.value);
  // The backing: the header (layout, size) and one image file of that size.
  const std::string header = slurp(backing("v") + "/.scratchcrypt-volume");
  EXPECT_TRUE(contains(header, "\nlayout block\nsize 268435456\n")) << header;
  ASSERT_EQ(0, ::stat((backing("v") + "/image").c_str(), &st));
  EXPECT_EQ(268435456, st.st_size);
  EXPECT_EQ(0600u, st.st_mode & 07777);
  EXPECT_EQ(2u, files_under(backing("v")).size());
  // The image mount is root's alone.
  ASSERT_EQ(0, ::stat(image_mount(id).c_str(), &st));
  EXPECT_EQ(0700u, st.st_mode & 07777);
  ASSERT_EQ(0, ::stat((run_dir_ + "/images").c_str(), &st));
  EXPECT_EQ(0700u, st.st_mode & 07777);
  auto peek = sctest::as_user(60001, 60001, [&] {
    return static_cast<long>(::open((image_mount(id) + "/image").c_str(), O_RDONLY));
  });
  EXPECT_EQ(-1, peek.value);
  EXPECT_EQ(EACCES, peek.err);
  // Even past the directory permissions, the FUSE mount admits root only.
  ::chmod(image_mount(id).c_str(), 0755);
  ::chmod((run_dir_ + "/images").c_str(), 0755);
  peek = sctest::as_user(60001, 60001, [&] {
    return static_cast<long>(::open((image_mount(id) + "/image").c_str(), O_RDONLY));
  });
  EXPECT_EQ(-1, peek.value);
  EXPECT_EQ(EACCES, peek.err);
  ::chmod((run_dir_ + "/images").c_str(), 0700);
  // The daemon: never chosen by the OOM killer; its request threads are I/O
  // flushers (PF_MEMALLOC_NOIO | PF_LOCAL_THROTTLE).
  const pid_t daemon = lock_holder(backing("v"));
  ASSERT_GT(daemon, 0);
  if (has_sys_resource()) {
    EXPECT_EQ("-1000\n", slurp("/proc/" + std::to_string(daemon) + "/oom_score_adj"));
    EXPECT_GE(thread_flags_all(daemon, 0x00080000 | 0x00100000), 1);
  } else {
    std::printf("NOTE: no CAP_SYS_RESOURCE here: oom_score_adj -1000 and PR_SET_IO_FLUSHER "
                "cannot be set, not checked\n");
  }
  // status names the layout.
  auto status = status_of(id);
  ASSERT_TRUE(status);
  EXPECT_EQ("block", status->str("layout"));
  EXPECT_EQ("ok", status->str("health"));
  EXPECT_EQ(m, status->str("mountpoint"));

  RunResult r = sc({"wipe", "--wait", m});
  EXPECT_EQ(0, r.exit_code) << r.output;
  auto record = wait_record(id, 5s);
  ASSERT_TRUE(record);
  EXPECT_TRUE(record->fields.at("verified").boolean);
  expect_gone("v", id, daemon);
}

TEST_F(BlockTest, ForcedWipeOfAHugeTreeIsImmediateAndTheNextVolumeStartsAtOnce) {
  const std::string id = make_block("t", "4G");  // inodes for 200,000 objects
  ASSERT_FALSE(id.empty());
  const pid_t daemon = lock_holder(backing("t"));
  // 100,000 files and a tree 100,000 levels deep, all still in the page cache.
  const std::string m = mnt("t");
  ASSERT_EQ(0, ::mkdir((m + "/files").c_str(), 0755));
  int dir = ::open((m + "/files").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  for (int i = 0; i < 100000; ++i) {
    int fd = ::openat(dir, ("f" + std::to_string(i)).c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0) << i << ": " << std::strerror(errno);
    ASSERT_EQ(2, ::write(fd, "hi", 2));
    ::close(fd);
  }
  ::close(dir);
  int at = ::open(m.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  for (int depth = 0; depth < 100000; ++depth) {
    ASSERT_EQ(0, ::mkdirat(at, "d", 0755)) << depth;
    int next = ::openat(at, "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ::close(at);
    at = next;
  }
  // A holder: a process at the bottom of the tree (deeper than any path the
  // kernel can print) with a file open; it notes when it is cut off.
  const std::string cut_off = root_ + "/cut-off";
  const pid_t holder = ::fork();
  if (holder == 0) {
    int fd = ::openat(at, "held", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    for (;;) {
      if (::pwrite(fd, "x", 1, 0) < 0 && errno == EIO) {
        ::close(::open(cut_off.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
        _exit(42);
      }
      ::usleep(1000);
    }
  }
  ::close(at);
  ASSERT_GT(holder, 0);
  std::this_thread::sleep_for(100ms);
  RunResult r = sc({"wipe", m});
  EXPECT_EQ(3, r.exit_code) << r.output;
  const auto started = Clock::now();
  r = sc({"wipe", "--force", m});
  const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
  EXPECT_EQ(0, r.exit_code) << r.output;
  // The command also waits (up to 0.5 s) for the image's deletion to show
  // it does not fail at once; the key is gone and the path free before.
  EXPECT_LT(seconds, 3.0) << "a forced wipe must not write out what the job left";
  std::printf("forced wipe of 100,000 files and a 100,000-deep tree: %.3f s\n", seconds);
  EXPECT_TRUE(wait_gone(holder, 5s));
  EXPECT_TRUE(exists(cut_off)) << "the holder was not cut off";
  ::kill(holder, SIGKILL);
  // The next job's volume at the same place, at once.
  ASSERT_EQ(0, ::mkdir(backing("t").c_str(), 0700));
  const auto next_started = Clock::now();
  RunResult next = sc({"mount", "--layout", "block", "--size-limit", "1G", backing("t"), m});
  const double next_seconds = std::chrono::duration<double>(Clock::now() - next_started).count();
  EXPECT_EQ(0, next.exit_code) << next.output;
  std::printf("next block volume of 1 GiB mounted in %.3f s\n", next_seconds);
  EXPECT_LT(next_seconds, 1.0);
  auto record = wait_record(id, 10s);
  ASSERT_TRUE(record);
  EXPECT_TRUE(record->fields.at("verified").boolean);
  EXPECT_EQ(1, record->num("holders_cut_off"));
  // (Typically 50-250 ms here; it includes a scan of every process's
  // descriptors for holders, which a busy shared machine slows down.)
  EXPECT_LT(record->num("crypto_erase_ms"), 2000) << "the node was not ready for the next job at once";
  std::printf("crypto-erased after %.0f ms\n", record->num("crypto_erase_ms"));
  EXPECT_TRUE(wait_gone(daemon, 5s));
  EXPECT_EQ(-1, key_serial(id));
  EXPECT_EQ(0, loops_of(id));
  const std::string header = slurp(backing("t") + "/.scratchcrypt-volume");
  const auto at_id = header.find("\nid ");
  ASSERT_NE(std::string::npos, at_id);
  track(header.substr(at_id + 4, 32));
  EXPECT_EQ(0, sc({"wipe", "--wait", m}).exit_code);
}

// kill -9 of the daemon under load: the job's file system gets I/O errors,
// and `how` (wipe or sweep) still ends everything.
void crash_under_load(BlockTest& t, const std::string& name, const std::string& id,
                      const std::string& m, pid_t daemon) {
  const pid_t writer = ::fork();
  if (writer == 0) {
    const std::string chunk(1 << 20, 'w');
    for (int i = 0;; ++i) {
      int fd = ::open((m + "/w" + std::to_string(i % 4)).c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      if (fd < 0) _exit(errno == EIO || errno == EROFS ? 42 : 1);
      for (int k = 0; k < 16; ++k) {
        if (::write(fd, chunk.data(), chunk.size()) < 0) _exit(errno == EIO || errno == EROFS ? 42 : 2);
      }
      if (::fsync(fd) != 0) _exit(errno == EIO || errno == EROFS ? 42 : 3);
      ::close(fd);
    }
  }
  ASSERT_GT(writer, 0);
  std::this_thread::sleep_for(300ms);
  ASSERT_EQ(0, ::kill(daemon, SIGKILL));
  int status = 0;
  const auto deadline = Clock::now() + 20s;
  pid_t done = 0;
  while ((done = ::waitpid(writer, &status, WNOHANG)) == 0 && Clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  if (done == 0) {
    ::kill(writer, SIGKILL);
    ::waitpid(writer, &status, 0);
  }
  EXPECT_NE(0, done) << "the writer hung after the daemon died";
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 42)
      << "the writer did not see an I/O error: status " << status;
  (void)t;
  (void)name;
  (void)id;
}

TEST_F(BlockTest, KilledDaemonUnderLoadThenWipeCleansUp) {
  const std::string id = make_block("k", "512M");
  ASSERT_FALSE(id.empty());
  const pid_t daemon = lock_holder(backing("k"));
  ASSERT_GT(daemon, 0);
  crash_under_load(*this, "k", id, mnt("k"), daemon);
  auto status = status_of(id);
  ASSERT_TRUE(status);
  EXPECT_EQ("dead", status->str("health"));
  RunResult r = sc({"wipe", "--force", "--wait", mnt("k")});
  EXPECT_EQ(0, r.exit_code) << r.output;
  expect_gone("k", id, daemon);
  // The node stays usable.
  EXPECT_FALSE(make_block("k2", "256M").empty());
}

TEST_F(BlockTest, KilledDaemonUnderLoadThenSweepCleansUp) {
  const std::string id = make_block("s", "512M");
  ASSERT_FALSE(id.empty());
  const pid_t daemon = lock_holder(backing("s"));
  ASSERT_GT(daemon, 0);
  crash_under_load(*this, "s", id, mnt("s"), daemon);
  RunResult r = sc({"sweep"});
  EXPECT_EQ(0, r.exit_code) << r.output;
  EXPECT_TRUE(contains(r.output, "swept 1 volume(s)")) << r.output;
  expect_gone("s", id, daemon);
}

// Space: sparse images are promised their full size. A volume that does not
// fit beside the live ones is refused; one job filling its volume stops at
// its own ENOSPC and never takes space another volume was promised.
TEST_F(BlockTest, BackingSpaceIsReservedForEveryLiveVolume) {
  LoopDisk disk(root_ + "/disk.img", root_ + "/disk", 640);
  ASSERT_TRUE(disk.ok());
  ASSERT_TRUE(disk.mount());
  backing_root_ = disk.dir() + "/backing";
  ASSERT_EQ(0, ::mkdir(backing_root_.c_str(), 0700));
  ASSERT_TRUE(spit(config_, "backing_root = " + backing_root_ + "\nmount_root = " + mount_root_ +
                                "\nrecord_log = " + record_log_ + "\n"));
  const std::string a = make_block("a", "220M"), b = make_block("b", "220M");
  ASSERT_FALSE(a.empty());
  ASSERT_FALSE(b.empty());
  // A third does not fit beside them: refused, and nothing is left behind.
  ::mkdir(backing("c").c_str(), 0700);
  ::mkdir(mnt("c").c_str(), 0755);
  RunResult r = sc({"mount", "--layout", "block", "--size-limit", "220M", backing("c"), mnt("c")});
  EXPECT_EQ(4, r.exit_code) << r.output;
  EXPECT_TRUE(contains(r.output, "promised to live block volumes")) << r.output;
  EXPECT_FALSE(is_mountpoint(mnt("c")));
  EXPECT_TRUE(files_under(backing("c")).empty());
  // Job a fills its volume: its own file system says ENOSPC.
  EXPECT_EQ(ENOSPC, fill(mnt("a") + "/all", 400u << 20));
  // Job b still gets every byte it was promised, and reads it back.
  struct statvfs vfs;
  ASSERT_EQ(0, ::statvfs(mnt("b").c_str(), &vfs));
  const uint64_t room = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize - (4u << 20);
  EXPECT_EQ(0, fill(mnt("b") + "/all", room));
  EXPECT_TRUE(sctest::drop_caches());
  const std::string back = slurp(mnt("b") + "/all");
  EXPECT_EQ(room, back.size());
  EXPECT_EQ(sctest::pattern(1 << 20, 5), back.substr(0, 1 << 20));
  // Deleting returns the space to the backing disk (discard through the chain).
  struct stat st;
  ASSERT_EQ(0, ::stat((backing("a") + "/image").c_str(), &st));
  const uint64_t before = static_cast<uint64_t>(st.st_blocks) * 512;
  ASSERT_EQ(0, ::unlink((mnt("a") + "/all").c_str()));
  ::sync();
  uint64_t after = before;
  for (int i = 0; i < 100 && after > before / 4; ++i) {
    std::this_thread::sleep_for(20ms);
    ASSERT_EQ(0, ::stat((backing("a") + "/image").c_str(), &st));
    after = static_cast<uint64_t>(st.st_blocks) * 512;
  }
  EXPECT_LT(after, before / 4) << "deleted blocks were not punched out of the image";
  EXPECT_EQ(0, sc({"wipe", "--wait", mnt("a")}).exit_code);
  EXPECT_EQ(0, sc({"wipe", "--wait", mnt("b")}).exit_code);
}

// `layout` in the configuration decides what the prologue makes; `config`
// says which layout this node uses; a bad value is refused before anything.
TEST_F(BlockTest, TheConfiguredLayoutIsWhatThePrologueMakes) {
  const std::string base = "backing_root = " + backing_root_ + "\nmount_root = " + mount_root_ +
                           "\nrecord_log = " + record_log_ + "\nsize_limit = 64M\n";
  for (const std::string layout : {"files", "block", "auto"}) {
    SCOPED_TRACE(layout);
    ASSERT_TRUE(spit(config_, base + "layout = " + layout + "\n"));
    RunResult config = sc({"config"});
    EXPECT_EQ(0, config.exit_code) << config.output;
    EXPECT_TRUE(contains(config.output, "layout = " + layout + "\n")) << config.output;
    const bool block = layout != "files";  // auto: this node has loop devices (SetUp)
    EXPECT_TRUE(contains(config.output, std::string("use the ") + (block ? "block" : "files") + " layout"))
        << config.output;
    const std::string job = "lay-" + layout;
    RunResult pro = sc({"prologue", "--job", job, "--uid", "60001", "--gid", "60001"});
    ASSERT_EQ(0, pro.exit_code) << pro.output;
    const std::string header = slurp(backing(job) + "/.scratchcrypt-volume");
    const auto at = header.find("\nid ");
    ASSERT_NE(std::string::npos, at);
    const std::string id = header.substr(at + 4, 32);
    track(id);
    EXPECT_EQ(block, contains(header, "\nlayout block\n")) << header;
    auto status = status_of(id);
    ASSERT_TRUE(status);
    EXPECT_EQ(block ? "block" : "files", status->str("layout"));
    EXPECT_EQ("ok", status->str("health"));
    RunResult epi = sc({"epilogue", "--job", job});
    EXPECT_EQ(0, epi.exit_code) << epi.output;
    EXPECT_FALSE(is_mountpoint(mnt(job)));
  }
  ASSERT_TRUE(spit(config_, base + "layout = blocks\n"));
  RunResult bad = sc({"prologue", "--job", "bad", "--uid", "60001", "--gid", "60001"});
  EXPECT_EQ(2, bad.exit_code) << bad.output;
  EXPECT_TRUE(contains(bad.output, "layout must be auto, block or files")) << bad.output;
  EXPECT_FALSE(exists(backing("bad")));
}

}  // namespace
}  // namespace lctest
