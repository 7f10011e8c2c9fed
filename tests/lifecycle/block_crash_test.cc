// kill -9 of a block volume's daemon under real load (issue 11): several
// writers with fsync, a process blocked in fsync of 512 MiB of dirty pages,
// one writing through a shared mapping, and a root process reading the loop
// device itself. Every one of them must see an error, none may hang; then
// the epilogue, `wipe` or `sweep` ends everything (no mount, no loop device,
// no daemon, no key, no backing file) and the next volume mounts at the same
// place.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <sstream>
#include <thread>

#include "fuse/loop_device.h"
#include "fuse/registry.h"
#include "tests/lifecycle/lifecycle_util.h"

namespace lctest {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr int kSawError = 42;  // exit status of a load process that got its I/O error
constexpr size_t kMiB = 1 << 20;

bool io_error(int err) { return err == EIO || err == EROFS || err == ENOTCONN || err == ENOSPC; }

// The load processes. Each runs until its I/O fails; exits kSawError then.
[[noreturn]] void writer(const std::string& dir, int n) {
  const std::string chunk(kMiB, static_cast<char>('a' + n));
  for (int round = 0;; ++round) {
    const std::string path = dir + "/w" + std::to_string(n) + "-" + std::to_string(round % 8);
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) _exit(io_error(errno) ? kSawError : 1);
    for (int k = 0; k < 8; ++k) {
      if (::write(fd, chunk.data(), chunk.size()) < 0) _exit(io_error(errno) ? kSawError : 2);
    }
    if (::fsync(fd) != 0) _exit(io_error(errno) ? kSawError : 3);
    ::close(fd);
  }
}

// Dirties 512 MiB, tells `ready` it is about to fsync, and fsyncs.
[[noreturn]] void fsyncer(const std::string& dir, int ready) {
  int fd = ::open((dir + "/big").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) _exit(1);
  const std::string chunk(kMiB, 'f');
  for (int i = 0; i < 512; ++i) {
    if (::write(fd, chunk.data(), chunk.size()) < 0) _exit(io_error(errno) ? kSawError : 2);
  }
  if (::write(ready, "f", 1) != 1) _exit(4);
  if (::fsync(fd) != 0) _exit(io_error(errno) ? kSawError : 3);
  _exit(0);  // the fsync finished before the daemon died: the test says so
}

// Rewrites a 64 MiB shared mapping and msyncs it, over and over. A page
// that can no longer be read in raises SIGBUS, which counts as an error seen.
[[noreturn]] void mapper(const std::string& dir) {
  constexpr size_t kSize = 64 * kMiB;
  int fd = ::open((dir + "/mapped").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0 || ::ftruncate(fd, kSize) != 0) _exit(1);
  auto* p = static_cast<char*>(::mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
  if (p == MAP_FAILED) _exit(2);
  for (char c = 'A';; c = c == 'Z' ? 'A' : c + 1) {
    for (size_t i = 0; i < kSize; i += 4096) p[i] = c;
    if (::msync(p, kSize, MS_SYNC) != 0) _exit(io_error(errno) ? kSawError : 3);
  }
}

// Reads the loop device itself (as root may), keeping it busy; once a read
// fails it holds the device open and waits, as a careless tool would.
[[noreturn]] void loop_reader(const std::string& device, int failed) {
  int fd = ::open(device.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
  if (fd < 0) _exit(1);
  void* buf = nullptr;
  if (::posix_memalign(&buf, 4096, kMiB) != 0) _exit(2);
  for (off_t at = 0;; at = (at + static_cast<off_t>(kMiB)) % (256 * static_cast<off_t>(kMiB))) {
    if (::pread(fd, buf, kMiB, at) < 0) break;
  }
  if (::write(failed, "e", 1) != 1) _exit(3);
  for (;;) ::pause();
}

// Whether a byte arrives on `fd` within `timeout`.
bool byte_within(int fd, std::chrono::milliseconds timeout) {
  pollfd p{fd, POLLIN, 0};
  char c;
  return ::poll(&p, 1, static_cast<int>(timeout.count())) == 1 && ::read(fd, &c, 1) == 1;
}

// The system call `pid` is in, from /proc/PID/syscall ("" when running).
std::string current_syscall(pid_t pid) {
  std::istringstream in(slurp("/proc/" + std::to_string(pid) + "/syscall"));
  std::string nr;
  in >> nr;
  return nr;
}

class BlockCrashTest : public NodeTest, public ::testing::WithParamInterface<std::string> {
 protected:
  void SetUp() override {
    NodeTest::SetUp();
    if (!exists("/dev/loop-control")) GTEST_SKIP() << "no loop devices here (/dev/loop-control)";
  }
  void TearDown() override {
    for (auto& [pid, what] : load_) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    NodeTest::TearDown();
  }
  template <typename Fn>
  pid_t start(const std::string& what, Fn fn) {
    const pid_t pid = ::fork();
    if (pid == 0) fn();
    load_[pid] = what;
    return pid;
  }
  std::map<pid_t, std::string> load_;
};

TEST_P(BlockCrashTest, KillUnderLoadThenCleanUpCompletely) {
  const std::string job = "crash";
  const std::string id = make_volume(job, {}, {"--layout", "block", "--size-limit", "2G", "--job", job});
  ASSERT_FALSE(id.empty());
  const std::string m = mnt(job);
  const pid_t daemon = lock_holder(backing(job));
  ASSERT_GT(daemon, 0);
  auto record = scratchcrypt::find_volume(id);
  ASSERT_TRUE(record);
  const std::string loop = record->loop;
  ASSERT_EQ(0u, loop.rfind("/dev/loop", 0)) << "the registry names no loop device";
  const std::string image_mount = record->image_mount;

  int ready[2], failed[2];
  ASSERT_EQ(0, ::pipe2(ready, O_CLOEXEC));
  ASSERT_EQ(0, ::pipe2(failed, O_CLOEXEC));
  for (int n = 0; n < 3; ++n) start("writer " + std::to_string(n), [&] { writer(m, n); });
  start("mapper", [&] { mapper(m); });
  const pid_t reader = start("loop reader", [&] { loop_reader(loop, failed[1]); });
  const pid_t syncer = start("fsyncer", [&] { fsyncer(m, ready[1]); });
  ::close(ready[1]);
  ::close(failed[1]);
  // Kill the daemon while the fsyncer is inside fsync(2) (x86-64: 74).
  const bool syncing = byte_within(ready[0], 60s);
  ::close(ready[0]);
  ASSERT_TRUE(syncing) << "the fsyncer did not get to its fsync";
  const auto deadline = Clock::now() + 5s;
  while (current_syscall(syncer) != "74" && Clock::now() < deadline) std::this_thread::sleep_for(1ms);
  EXPECT_EQ("74", current_syscall(syncer)) << "the fsyncer is not blocked in fsync";
  ASSERT_EQ(0, ::kill(daemon, SIGKILL));
  const auto killed = Clock::now();

  // Every load process sees an error within the bound; none hangs.
  constexpr auto kBound = 20s;
  for (const auto& [pid, what] : std::map<pid_t, std::string>(load_)) {
    if (pid == reader) continue;
    int status = 0;
    pid_t done = 0;
    while ((done = ::waitpid(pid, &status, WNOHANG)) == 0 && Clock::now() - killed < kBound) {
      std::this_thread::sleep_for(10ms);
    }
    EXPECT_EQ(pid, done) << what << " still runs " << kBound.count() << " s after the daemon died (in "
                         << slurp("/proc/" + std::to_string(pid) + "/wchan") << ")";
    if (done != pid) continue;
    load_.erase(pid);
    const bool sigbus = what == "mapper" && WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS;
    EXPECT_TRUE(sigbus || (WIFEXITED(status) && WEXITSTATUS(status) == kSawError))
        << what << " did not see an I/O error: status " << status;
  }
  EXPECT_TRUE(byte_within(failed[0], 5s)) << "reads of the loop device did not fail";
  ::close(failed[0]);
  std::printf("every load process saw its error %.1f s after the kill\n",
              std::chrono::duration<double>(Clock::now() - killed).count());
  auto status = status_of(id);
  ASSERT_TRUE(status);
  EXPECT_EQ("dead", status->str("health"));

  // The clean-up under test ends everything, the loop reader's hold included.
  RunResult r;
  if (GetParam() == "epilogue") r = sc({"epilogue", "--job", job});
  if (GetParam() == "wipe") r = sc({"wipe", "--force", "--wait", m});
  if (GetParam() == "sweep") r = sc({"sweep"});
  EXPECT_EQ(0, r.exit_code) << r.output;
  EXPECT_FALSE(is_mountpoint(m)) << "the job's file system is still mounted";
  EXPECT_FALSE(is_mountpoint(image_mount)) << "the image mount is still there";
  EXPECT_TRUE(wait_gone(daemon, 5s));
  EXPECT_EQ(-1, key_serial(id)) << "key still in the keyring";
  auto until = Clock::now() + 10s;
  while ((!scratchcrypt::loops_labelled("scratchcrypt:" + id).empty() || exists(backing(job))) && Clock::now() < until) {
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(0u, scratchcrypt::loops_labelled("scratchcrypt:" + id).size()) << "a loop device is still attached to the image";
  EXPECT_FALSE(exists(backing(job))) << "the backing directory is still there";
  EXPECT_TRUE(wait_gone(reader, 5s)) << "the process holding the loop device was not cut off";
  auto wiped = wait_record(id, 10s);
  ASSERT_TRUE(wiped);
  EXPECT_TRUE(wiped->fields.at("verified").boolean);

  // The node stays usable: the next volume at the same place.
  const std::string next = make_volume(job, {}, {"--layout", "block", "--size-limit", "256M", "--job", job});
  EXPECT_FALSE(next.empty());
  EXPECT_TRUE(sctest::write_file(m + "/after", "the next job"));
  EXPECT_EQ(0, sc({"wipe", "--wait", m}).exit_code);
}

// A root process with the loop device open keeps it attached: wipe counts
// it as a holder (refused without --force) and --force cuts it off.
TEST_F(BlockCrashTest, AProcessHoldingTheLoopDeviceIsAHolder) {
  const std::string id = make_volume("h", {}, {"--layout", "block", "--size-limit", "256M"});
  ASSERT_FALSE(id.empty());
  auto record = scratchcrypt::find_volume(id);
  ASSERT_TRUE(record);
  const std::string loop = record->loop;
  int opened[2];
  ASSERT_EQ(0, ::pipe2(opened, O_CLOEXEC));
  const pid_t holder = start("holder", [&] {
    int fd = ::open(loop.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || ::write(opened[1], "o", 1) != 1) _exit(1);
    for (;;) ::pause();
  });
  ::close(opened[1]);
  ASSERT_TRUE(byte_within(opened[0], 10s));
  ::close(opened[0]);
  RunResult r = sc({"wipe", mnt("h")});
  EXPECT_EQ(3, r.exit_code) << r.output;
  EXPECT_TRUE(contains(r.output, "pid " + std::to_string(holder))) << r.output;
  const auto forced = Clock::now();
  r = sc({"wipe", "--force", "--wait", mnt("h")});
  EXPECT_EQ(0, r.exit_code) << r.output;
  std::printf("forced wipe took %.1f s\n", std::chrono::duration<double>(Clock::now() - forced).count());
  EXPECT_TRUE(wait_gone(holder, 5s)) << "the holder of the loop device was not cut off";
  const auto until = Clock::now() + 5s;
  while (!scratchcrypt::loops_labelled("scratchcrypt:" + id).empty() && Clock::now() < until) {
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_TRUE(scratchcrypt::loops_labelled("scratchcrypt:" + id).empty());
}

INSTANTIATE_TEST_SUITE_P(Cleanup, BlockCrashTest, ::testing::Values("epilogue", "wipe", "sweep"),
                         [](const auto& p) { return p.param; });

}  // namespace
}  // namespace lctest
