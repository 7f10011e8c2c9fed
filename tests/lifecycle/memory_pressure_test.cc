// The block layout under memory pressure (issue 11). The kernel writes a
// job's dirty pages back through the volume's daemon, so the daemon must
// never wait for memory that only that write-back could free. Checked here:
// what keeps it out of that loop (no page cache of its own, out of the
// job's memory cgroup, locked memory, I/O flusher threads, OOM score), then
// two loads that must finish within a bound without a hung task and read
// back byte for byte: a job in a 64 MiB memory cgroup writing 1 GiB, and a
// job writing next to a node-wide memory hog.
//
// Memory cgroups: v2 where its hierarchy has the memory controller, else
// v1's `memory` hierarchy (docs/TESTING.md says which ran where).
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "fuse/mounts.h"
#include "fuse/registry.h"
#include "tests/lifecycle/lifecycle_util.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

namespace lctest {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr uint64_t kMiB = 1 << 20;
constexpr auto kBound = 60s;  // what each load must finish within

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// The value of a "key value" line (/proc/meminfo in kB, /proc/vmstat,
// memory.events, fdinfo); "" when absent.
std::string field_text(const std::string& path, const std::string& key) {
  std::istringstream in(slurp(path));
  for (std::string line; std::getline(in, line);) {
    std::istringstream words(line);
    std::string k, v;
    if (words >> k >> v && (k == key || k == key + ":")) return v;
  }
  return "";
}
long long field(const std::string& path, const std::string& key) {
  const std::string v = field_text(path, key);
  return v.empty() ? -1 : std::stoll(v);
}

// A memory cgroup of its own, removed (its processes killed first) by the
// destructor. Made under the test's own cgroup, so that its processes stay
// inside whatever runs the test.
class MemoryCgroup {
 public:
  MemoryCgroup(const std::string& name, uint64_t limit) {
    std::string v2_mount, v1_mount;
    for (const auto& m : scratchcrypt::list_mounts()) {
      if (m.fstype == "cgroup2" && contains(slurp(m.mountpoint + "/cgroup.controllers"), "memory")) {
        v2_mount = m.mountpoint;
      }
      if (m.fstype == "cgroup" && exists(m.mountpoint + "/memory.limit_in_bytes")) v1_mount = m.mountpoint;
    }
    v2_ = !v2_mount.empty();
    if (!v2_ && v1_mount.empty()) return;
    // Our own place in that hierarchy, from /proc/self/cgroup.
    std::string own;
    std::istringstream self(slurp("/proc/self/cgroup"));
    for (std::string line; std::getline(self, line);) {
      const auto a = line.find(':'), b = line.find(':', a + 1);
      const std::string controllers = line.substr(a + 1, b - a - 1);
      if (v2_ ? line.rfind("0::", 0) == 0 : ("," + controllers + ",").find(",memory,") != std::string::npos) {
        own = line.substr(b + 1);
      }
    }
    std::string parent = (v2_ ? v2_mount : v1_mount) + (own == "/" ? "" : own);
    // v2: a child needs the memory controller enabled in its parent.
    if (v2_ && !contains(slurp(parent + "/cgroup.subtree_control"), "memory")) parent = v2_mount;
    path_ = parent + "/" + name + "-" + std::to_string(::getpid());
    if (::mkdir(path_.c_str(), 0755) != 0) {
      path_.clear();
      return;
    }
    ok_ = spit(path_ + (v2_ ? "/memory.max" : "/memory.limit_in_bytes"), std::to_string(limit));
    if (v2_) spit(path_ + "/memory.swap.max", "0");
  }
  ~MemoryCgroup() {
    if (path_.empty()) return;
    for (int round = 0; round < 500; ++round) {
      std::istringstream procs(slurp(path_ + "/cgroup.procs"));
      bool any = false;
      for (pid_t pid; procs >> pid;) {
        any = true;
        ::kill(pid, SIGKILL);
      }
      sctest::reap_orphans();
      if (!any && ::rmdir(path_.c_str()) == 0) return;
      std::this_thread::sleep_for(10ms);
    }
    ADD_FAILURE() << "could not remove the test cgroup " << path_;
  }
  MemoryCgroup(const MemoryCgroup&) = delete;
  MemoryCgroup& operator=(const MemoryCgroup&) = delete;

  bool ok() const { return ok_; }
  bool v2() const { return v2_; }
  const std::string& path() const { return path_; }
  // Moves the calling process in (a forked child, before it works or execs).
  bool join() const { return spit(path_ + "/cgroup.procs", "0"); }
  // How often the limit was hit, and how often its OOM killer struck.
  long long limit_hits() const {
    return v2_ ? field(path_ + "/memory.events", "max") : std::stoll("0" + trim(slurp(path_ + "/memory.failcnt")));
  }
  long long oom_kills() const {
    return v2_ ? field(path_ + "/memory.events", "oom_kill") : field(path_ + "/memory.oom_control", "oom_kill");
  }
  uint64_t peak() const {
    const std::string f = v2_ ? "/memory.peak" : "/memory.max_usage_in_bytes";
    return std::stoull("0" + trim(slurp(path_ + f)));
  }

 private:
  std::string path_;
  bool v2_ = false;
  bool ok_ = false;
};

// Hung tasks reported by the kernel while this object lives. The kernel's
// threshold (usually 120 s) is lowered to 20 s meanwhile, well inside the
// loads' bound, and restored.
class HungTaskWatch {
 public:
  HungTaskWatch() {
    saved_timeout_ = trim(slurp(kTimeout));
    if (!saved_timeout_.empty()) spit(kTimeout, "20");
    kmsg_ = ::open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (kmsg_ >= 0) ::lseek(kmsg_, 0, SEEK_END);
    count_ = field_count();
  }
  ~HungTaskWatch() {
    if (!saved_timeout_.empty()) spit(kTimeout, saved_timeout_);
    if (kmsg_ >= 0) ::close(kmsg_);
  }
  HungTaskWatch(const HungTaskWatch&) = delete;
  HungTaskWatch& operator=(const HungTaskWatch&) = delete;

  bool ok() const { return kmsg_ >= 0; }
  // The kernel log lines about hung tasks since construction ("" if none).
  std::string reports() {
    std::string found;
    char record[8192];
    for (;;) {
      ssize_t n = ::read(kmsg_, record, sizeof record - 1);
      if (n < 0 && errno == EPIPE) continue;  // overwritten records: skip on
      if (n <= 0) break;
      record[n] = '\0';
      const char* text = std::strchr(record, ';');
      const std::string line = text != nullptr ? text + 1 : record;
      if (contains(line, "blocked for more than") || contains(line, "hung_task")) found += line;
    }
    if (field_count() > count_) found += "hung_task_detect_count grew\n";
    return found;
  }

 private:
  static constexpr const char* kTimeout = "/proc/sys/kernel/hung_task_timeout_secs";
  static long long field_count() {
    return std::stoll("0" + trim(slurp("/proc/sys/kernel/hung_task_detect_count")));
  }
  std::string saved_timeout_;
  int kmsg_ = -1;
  long long count_ = 0;
};

// MemAvailable in kB, read with plain system calls (for a forked child).
long long mem_available_kb() {
  char buf[4096];
  const int fd = ::open("/proc/meminfo", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  const ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return -1;
  buf[n] = '\0';
  const char* at = std::strstr(buf, "MemAvailable:");
  return at != nullptr ? std::strtoll(at + 13, nullptr, 10) : -1;
}

// Page reclaim so far, node-wide (pages scanned by kswapd and in direct reclaim).
long long pages_scanned() {
  return field("/proc/vmstat", "pgscan_kswapd") + field("/proc/vmstat", "pgscan_direct");
}

// The job's data: `files` files of `mib` MiB; every MiB carries its own
// position, so a misplaced block is caught on read-back.
std::string chunk_of(const std::string& base, int file, uint64_t mib) {
  std::string c = base;
  std::snprintf(c.data(), 32, "file %d MiB %llu\n", file, static_cast<unsigned long long>(mib));
  return c;
}

// Forks a writer of the job's data into `dir` (in `cgroup` when given):
// exits 0 once everything is written and fsync'd, else with the failing step.
pid_t start_writer(const std::string& dir, int files, uint64_t mib, const MemoryCgroup* cgroup) {
  const std::string base = sctest::pattern(kMiB, 11);
  const pid_t pid = ::fork();
  if (pid != 0) return pid;
  if (cgroup != nullptr && !cgroup->join()) _exit(10);
  for (int f = 0; f < files; ++f) {
    int fd = ::open((dir + "/data" + std::to_string(f)).c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) _exit(11);
    for (uint64_t m = 0; m < mib; ++m) {
      const std::string c = chunk_of(base, f, m);
      if (::write(fd, c.data(), c.size()) != static_cast<ssize_t>(c.size())) _exit(12);
    }
    if (::fsync(fd) != 0 || ::close(fd) != 0) _exit(13);
  }
  _exit(0);
}

// Waits up to `bound` for `pid`; kills it if it is still running then.
// Returns its wait status, or -1 when it had to be killed.
int wait_bounded(pid_t pid, std::chrono::seconds bound, double* seconds) {
  const auto started = Clock::now();
  int status = 0;
  pid_t done = 0;
  while ((done = ::waitpid(pid, &status, WNOHANG)) == 0 && Clock::now() - started < bound) {
    std::this_thread::sleep_for(20ms);
  }
  *seconds = std::chrono::duration<double>(Clock::now() - started).count();
  if (done == pid) return status;
  ::kill(pid, SIGKILL);
  ::waitpid(pid, &status, 0);
  return -1;
}

// The first difference between what the writer wrote and what reads back
// after the caches are dropped ("" when every byte is right).
std::string verify(const std::string& dir, int files, uint64_t mib) {
  if (!sctest::drop_caches()) return "cannot drop the page cache";
  const std::string base = sctest::pattern(kMiB, 11);
  std::string got(kMiB, '\0');
  for (int f = 0; f < files; ++f) {
    int fd = ::open((dir + "/data" + std::to_string(f)).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return "data" + std::to_string(f) + ": " + std::strerror(errno);
    for (uint64_t m = 0; m < mib; ++m) {
      ssize_t n = ::pread(fd, got.data(), kMiB, static_cast<off_t>(m * kMiB));
      if (n != static_cast<ssize_t>(kMiB) || got != chunk_of(base, f, m)) {
        ::close(fd);
        return "data" + std::to_string(f) + " differs in MiB " + std::to_string(m);
      }
    }
    ::close(fd);
  }
  return "";
}

class MemoryPressureTest : public NodeTest {
 protected:
  void SetUp() override {
    NodeTest::SetUp();
    if (!exists("/dev/loop-control")) GTEST_SKIP() << "no loop devices here (/dev/loop-control)";
  }
  // A block volume whose `scratchcrypt mount` runs inside `cgroup`, if given
  // (as a prologue started from a job's cgroup would); returns its daemon's pid.
  pid_t mount_from(const MemoryCgroup* cgroup, const std::string& name, const std::string& size) {
    ::mkdir(backing(name).c_str(), 0700);
    ::mkdir(mnt(name).c_str(), 0755);
    const std::string bin = sctest::scratchcrypt_bin();
    const std::string b = backing(name), m = mnt(name);
    const pid_t child = ::fork();
    if (child == 0) {
      if (cgroup != nullptr && !cgroup->join()) _exit(100);
      ::execl(bin.c_str(), bin.c_str(), "mount", "--layout", "block", "--size-limit", size.c_str(),
              b.c_str(), m.c_str(), static_cast<char*>(nullptr));
      _exit(101);
    }
    int status = 0;
    ::waitpid(child, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "mount failed: status " << status;
    const pid_t daemon = lock_holder(b);
    std::istringstream header(slurp(b + "/.scratchcrypt-volume"));
    for (std::string line; std::getline(header, line);) {
      if (line.rfind("id ", 0) == 0) track(line.substr(3));
    }
    return daemon;
  }
};

std::string task_stat_field(const std::string& stat_path, int index) {
  const std::string stat = slurp(stat_path);
  const auto paren = stat.rfind(')');
  if (paren == std::string::npos) return "";
  std::istringstream fields(stat.substr(paren + 2));
  std::string f;
  for (int i = 0; i <= index && fields >> f;) ++i;
  return f;
}

bool has_sys_resource() {
  return (std::stoull("0x" + [] {
            std::istringstream status(slurp("/proc/self/status"));
            for (std::string line; std::getline(status, line);) {
              if (line.rfind("CapEff:", 0) == 0) return trim(line.substr(8));
            }
            return std::string("0");
          }(), nullptr, 16) >> 24) & 1;
}

TEST_F(MemoryPressureTest, TheDaemonStaysOutOfTheWriteBackLoop) {
  MemoryCgroup job("sc-job", 64 * kMiB);
  ASSERT_TRUE(job.ok()) << "no memory cgroup hierarchy to test in";
  std::printf("memory cgroup %s (%s)\n", job.path().c_str(), job.v2() ? "v2" : "v1");
  const pid_t daemon = mount_from(&job, "v", "256M");
  ASSERT_GT(daemon, 0);
  const std::string proc = "/proc/" + std::to_string(daemon);
  // Never in the job's memory cgroup: its cgroups are the root ones.
  std::istringstream cgroups(slurp(proc + "/cgroup"));
  for (std::string line; std::getline(cgroups, line);) {
    EXPECT_EQ(":/", line.substr(line.rfind(':'))) << "the daemon stayed in a cgroup: " << line;
  }
  // No page cache of its own: the image file on the backing disk is open
  // O_DIRECT, and the loop device reads and writes the FUSE image directly.
  bool backing_open = false;
  if (DIR* d = ::opendir((proc + "/fd").c_str())) {
    while (dirent* e = ::readdir(d)) {
      char target[4096] = {};
      if (::readlink((proc + "/fd/" + e->d_name).c_str(), target, sizeof target - 1) <= 0) continue;
      if (std::string(target) != backing("v") + "/image") continue;
      backing_open = true;
      const long flags = std::stol("0" + field_text(proc + "/fdinfo/" + e->d_name, "flags"), nullptr, 8);
      EXPECT_NE(0, flags & O_DIRECT) << "the backing image is open without O_DIRECT";
    }
    ::closedir(d);
  }
  EXPECT_TRUE(backing_open) << "the daemon does not hold " << backing("v") << "/image";
  auto record = scratchcrypt::find_volume(ids_.back());
  ASSERT_TRUE(record);
  const std::string loop = record->loop;
  ASSERT_EQ(0u, loop.rfind("/dev/loop", 0)) << "the registry names no loop device";
  EXPECT_EQ("1", trim(slurp("/sys/block/" + loop.substr(5) + "/loop/dio")))
      << loop << " runs without direct I/O";
  // Locked memory: mlockall(MCL_FUTURE) marks every new mapping locked.
  EXPECT_GT(field(proc + "/status", "VmLck"), 0);
  std::istringstream smaps(slurp(proc + "/smaps"));
  bool in_heap = false, heap_locked = false;
  for (std::string line; std::getline(smaps, line);) {
    if (line.find('-') < line.find(' ') && line.find(' ') != std::string::npos &&
        std::isxdigit(static_cast<unsigned char>(line[0]))) {
      in_heap = contains(line, "[heap]");
    }
    if (in_heap && line.rfind("VmFlags:", 0) == 0) heap_locked = contains(line, " lo");
  }
  EXPECT_TRUE(heap_locked) << "the daemon's heap is not locked";
  // Request threads are I/O flushers (PF_MEMALLOC_NOIO | PF_LOCAL_THROTTLE)
  // from their start, and the OOM killer never picks the daemon. Both need
  // CAP_SYS_RESOURCE, which some containers (this one, maybe) withhold.
  if (has_sys_resource()) {
    EXPECT_EQ("-1000", trim(slurp(proc + "/oom_score_adj")));
    constexpr unsigned long kFlusher = 0x00080000 | 0x00100000;
    int threads = 0;
    if (DIR* d = ::opendir((proc + "/task").c_str())) {
      while (dirent* e = ::readdir(d)) {
        if (e->d_name[0] == '.') continue;
        const std::string task = proc + "/task/" + e->d_name;
        const unsigned long flags = std::stoul("0" + task_stat_field(task + "/stat", 6));
        ++threads;
        EXPECT_EQ(kFlusher, flags & kFlusher) << "thread " << e->d_name << " ("
                                              << trim(slurp(task + "/comm")) << ") is no I/O flusher";
      }
      ::closedir(d);
    }
    EXPECT_GE(threads, 2);
  } else {
    std::printf("NOTE: no CAP_SYS_RESOURCE here: oom_score_adj -1000 and PR_SET_IO_FLUSHER "
                "cannot be set, not checked\n");
  }
  EXPECT_EQ(0, sc({"wipe", "--wait", mnt("v")}).exit_code);
}

TEST_F(MemoryPressureTest, AJobInA64MiBCgroupWrites1GiB) {
  HungTaskWatch hung;
  ASSERT_TRUE(hung.ok()) << "cannot read the kernel log (/dev/kmsg)";
  MemoryCgroup job("sc-job", 64 * kMiB);
  ASSERT_TRUE(job.ok()) << "no memory cgroup hierarchy to test in";
  const pid_t daemon = mount_from(&job, "v", "2G");
  ASSERT_GT(daemon, 0);
  const pid_t writer = start_writer(mnt("v"), 4, 256, &job);
  double seconds = 0;
  const int status = wait_bounded(writer, kBound, &seconds);
  std::printf("%s cgroup of 64 MiB: 1 GiB written and fsync'd in %.1f s; limit hit %lld times, "
              "peak %llu MiB, %lld OOM kills\n", job.v2() ? "v2" : "v1", seconds, job.limit_hits(),
              static_cast<unsigned long long>(job.peak() / kMiB), job.oom_kills());
  ASSERT_NE(-1, status) << "the writer did not finish within " << kBound.count() << " s";
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "writer status " << status;
  EXPECT_GT(job.limit_hits(), 0) << "the job never reached its memory limit: no pressure tested";
  EXPECT_EQ(0, job.oom_kills());
  EXPECT_EQ("", hung.reports());
  EXPECT_EQ("", verify(mnt("v"), 4, 256));
  EXPECT_FALSE(sctest::process_gone(daemon));
  EXPECT_EQ(0, sc({"wipe", "--wait", mnt("v")}).exit_code);
}

TEST_F(MemoryPressureTest, AJobWritesNextToANodeWideMemoryHog) {
  HungTaskWatch hung;
  ASSERT_TRUE(hung.ok()) << "cannot read the kernel log (/dev/kmsg)";
  const pid_t daemon = mount_from(nullptr, "v", "2G");
  ASSERT_GT(daemon, 0);
  // The hog takes what is available less a margin smaller than the job's
  // write, so the job's page cache must be reclaimed while it writes. It
  // takes its memory 64 MiB at a time and stops once no more than the margin
  // is left (whatever else runs on the node meanwhile). It is bounded three
  // ways: its own cgroup's limit, the OOM killer's first choice
  // (oom_score_adj 1000), and killed as soon as the job is done.
  const uint64_t margin = 768 * kMiB;
  const uint64_t available = static_cast<uint64_t>(field("/proc/meminfo", "MemAvailable")) * 1024;
  ASSERT_GT(available, 2 * margin);
  const uint64_t most = available - margin;
  MemoryCgroup hog_group("sc-hog", most + 64 * kMiB);
  ASSERT_TRUE(hog_group.ok());
  int ready[2];
  ASSERT_EQ(0, ::pipe2(ready, O_CLOEXEC));
  const auto hog_started = Clock::now();
  const pid_t hog = ::fork();
  if (hog == 0) {
    ::close(ready[0]);
    spit("/proc/self/oom_score_adj", "1000");
    if (!hog_group.join()) _exit(1);
    auto* p = static_cast<char*>(::mmap(nullptr, most, PROT_READ | PROT_WRITE,
                                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0));
    if (p == MAP_FAILED) _exit(2);
    uint64_t held = 0;
    for (; held < most && mem_available_kb() * 1024 > static_cast<long long>(margin); held += 64 * kMiB) {
      const uint64_t n = std::min<uint64_t>(64 * kMiB, most - held);
      if (::madvise(p + held, n, MADV_POPULATE_WRITE) != 0) {
        for (uint64_t i = 0; i < n; i += 4096) p[held + i] = 1;
      }
    }
    if (::write(ready[1], &held, sizeof held) != sizeof held) _exit(3);
    for (;;) ::pause();
  }
  ::close(ready[1]);
  uint64_t hog_bytes = 0;
  const bool hogging = ::read(ready[0], &hog_bytes, sizeof hog_bytes) == sizeof hog_bytes;
  ::close(ready[0]);
  ASSERT_TRUE(hogging) << "the hog could not take its memory";
  std::printf("hog holds %.1f GiB after %.1f s; %lld MiB available next to it\n",
              static_cast<double>(hog_bytes) / (1 << 30),
              std::chrono::duration<double>(Clock::now() - hog_started).count(),
              field("/proc/meminfo", "MemAvailable") / 1024);
  const long long scanned_before = pages_scanned();
  const pid_t writer = start_writer(mnt("v"), 4, 256, nullptr);
  double seconds = 0;
  const int status = wait_bounded(writer, kBound, &seconds);
  const long long scanned = pages_scanned() - scanned_before;
  const bool hog_alive = !sctest::process_gone(hog);
  ::kill(hog, SIGKILL);  // it takes seconds to give 20 GiB back: reaped after the read-back
  std::printf("next to the hog: 1 GiB written and fsync'd in %.1f s, %lld pages scanned by "
              "reclaim meanwhile, hog %s\n", seconds, scanned, hog_alive ? "alive" : "killed");
  ASSERT_NE(-1, status) << "the writer did not finish within " << kBound.count() << " s";
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "writer status " << status;
  EXPECT_GT(scanned, 0) << "no page was reclaimed while the job wrote: no pressure tested";
  EXPECT_EQ("", hung.reports());
  const auto verify_started = Clock::now();
  EXPECT_EQ("", verify(mnt("v"), 4, 256));
  std::printf("read back in %.1f s\n", std::chrono::duration<double>(Clock::now() - verify_started).count());
  ::waitpid(hog, nullptr, 0);
  EXPECT_FALSE(sctest::process_gone(daemon));
  EXPECT_EQ(0, sc({"wipe", "--wait", mnt("v")}).exit_code);
}

}  // namespace
}  // namespace lctest
