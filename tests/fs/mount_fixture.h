// Test support for the filesystem suites: a real scratchcrypt mount in a
// temporary directory, torn down (unmounted, key dropped, files removed)
// whatever the test's outcome, plus helpers to run the binary, to act as
// another user and to wait for processes (the lifecycle suite uses them too).
//
// The binary comes from $SCRATCHCRYPT_BIN (the Makefile sets it to the
// absolute path of build/scratchcrypt).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace sctest {

// Test users: plain numeric ids, no passwd entries needed.
inline constexpr uid_t kUserA = 60001;
inline constexpr uid_t kUserB = 60002;
inline constexpr gid_t kGroupA = 60001;
inline constexpr gid_t kGroupB = 60002;
inline constexpr gid_t kGroupShared = 60010;

// The scratchcrypt binary ($SCRATCHCRYPT_BIN); fails the test if unset.
std::string scratchcrypt_bin();

struct RunResult {
  int exit_code = -1;   // exit status, or 128+signal, or -1 if it could not run
  std::string output;   // stdout and stderr, interleaved
};

// Runs argv[0] (a path) with argv, without a shell. Descriptors in keep_fds
// stay open in the child under the same numbers; all others above 2 are
// closed. Kills the child after timeout_s seconds.
// `input`, if given, is the child's stdin (through a pipe).
RunResult run(const std::vector<std::string>& argv, const std::vector<int>& keep_fds = {},
              int timeout_s = 60, const std::string* input = nullptr);

// The source tree: $SCRATCHCRYPT_SRC, or the parent of the binary's directory.
std::string source_dir();

// Runs `scratchcrypt ARGS...`.
RunResult run_scratchcrypt(const std::vector<std::string>& args,
                           const std::vector<int>& keep_fds = {}, int timeout_s = 60);

// Makes this process the reaper of the volume daemons it starts (they
// double-fork), so that a finished daemon is reaped at once instead of
// waiting for the container's init, and reaps any such orphan now.
void reap_orphans();

// True when `pid` is gone or a zombie (reaps our own orphans first).
bool process_gone(pid_t pid);
// Waits up to `timeout` until process_gone(pid); false if it is not by then.
bool wait_gone(pid_t pid, std::chrono::milliseconds timeout);
// The pid holding a backing directory's volume lock (its daemon), or -1.
pid_t lock_holder(const std::string& backing);
// Whether `path` is a mount point (per /proc/self/mountinfo).
bool is_mountpoint(const std::string& path);

// Result of a function run as another user.
struct AsUser {
  long value = -1;  // what the function returned
  int err = 0;      // errno right after it returned
};

// Runs fn in a forked child after setgroups(groups)/setgid(gid)/setuid(uid),
// returns its result and errno. fn must only make system calls (it runs in
// a fork of a threaded process).
AsUser as_user(uid_t uid, gid_t gid, const std::function<long()>& fn,
               const std::vector<gid_t>& groups = {});

// Removes a tree (not crossing into other mounts). Best effort.
void remove_tree(const std::string& path);

// A fresh directory under /tmp (ext4 here: user xattrs work), removed by
// the destructor.
class TempDir {
 public:
  explicit TempDir(const std::string& tag = "sc", const std::string& base = "/tmp");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A 64-byte test key known to the test (never a real volume's key).
std::vector<uint8_t> test_key(uint8_t seed);

// A pipe whose read end carries `key` to `scratchcrypt mount --key-fd N`.
// Returns the read end (the write end is written and closed).
int key_pipe(const std::vector<uint8_t>& key);

// The layout the filesystem suites run on: $SCRATCHCRYPT_TEST_LAYOUT
// ("files" unless set to "block"). `make test` runs fs_tests once per layout.
bool block_layout();
// `scratchcrypt mount` arguments that select the suite's layout.
std::vector<std::string> layout_args();
// Skips the current test on the block layout, with the reason (for tests of
// the files layout's backing format, request counts or recovery).
#define SKIP_ON_BLOCK_LAYOUT(reason)                          \
  do {                                                        \
    if (::sctest::block_layout()) GTEST_SKIP() << (reason);   \
  } while (0)

// sync(2), then drops the kernel's clean page, dentry and inode caches.
bool drop_caches();

struct MountOptions {
  std::vector<std::string> extra_args;  // e.g. {"--mode", "0777"}
  std::vector<uint8_t> key;             // non-empty: pass it with --key-fd
  // Non-empty: the daemon runs in the foreground (mount -f --debug), a child
  // of the test, writing its request trace to this file.
  std::string trace_file;
  // Non-empty: where the volume's directory (backing and mount point) is
  // made instead of /tmp, e.g. a LoopDisk.
  std::string base_dir;
  // Non-empty: the daemon's fault file (fuse/fault_injection.h); the test
  // writes fault point names into it.
  std::string fault_file;
};

// A scratchcrypt volume: ROOT/backing mounted at ROOT/mnt.
class Mount {
 public:
  explicit Mount(const MountOptions& options = {});
  ~Mount();
  Mount(const Mount&) = delete;
  Mount& operator=(const Mount&) = delete;

  // Whether the constructor's mount succeeded (check with ASSERT_TRUE).
  bool ok() const { return mounted_; }
  const RunResult& mount_result() const { return mount_result_; }

  const std::string& root() const { return dir_.path(); }
  const std::string& backing() const { return backing_; }
  const std::string& mnt() const { return mnt_; }
  std::string path(const std::string& relative) const { return mnt_ + "/" + relative; }
  std::string volume_id() const;
  // The daemon's pid from `scratchcrypt`'s volume registry, or -1.
  pid_t daemon_pid() const;

  // scratchcrypt umount; true on success.
  bool umount();
  // umount, then mount --recover (or --key-fd with the same key); true if
  // both worked. Block layout: the kernel file system is remounted instead.
  bool remount();
  // mount again (after umount or a daemon crash) with extra args.
  RunResult mount_again(const std::vector<std::string>& args);
  bool mounted() const { return mounted_; }

 private:
  RunResult do_mount(const std::vector<std::string>& args);
  bool remount_kernel_fs();
  RunResult start_traced_daemon(std::vector<std::string> argv, int key_fd);
  void teardown();

  TempDir dir_;
  std::string backing_;
  std::string mnt_;
  MountOptions options_;
  bool mounted_ = false;
  RunResult mount_result_;
  std::string volume_id_;
};

// An ext4 image file and its loop mount at `dir`, unmounted (lazily if
// busy) whatever the test's outcome.
class LoopDisk {
 public:
  // Makes a `mib` MiB image with mkfs.ext4 and `mkfs_args`; check ok().
  LoopDisk(const std::string& image, const std::string& dir, int mib,
           const std::vector<std::string>& mkfs_args = {});
  ~LoopDisk();
  LoopDisk(const LoopDisk&) = delete;
  LoopDisk& operator=(const LoopDisk&) = delete;

  // Whether this machine can make one at all (mkfs.ext4, loop devices).
  static bool available();
  bool ok() const { return made_; }
  const std::string& dir() const { return dir_; }
  bool mount();
  bool umount();
  // Every byte that reached the image (as the disk would hold it).
  std::string bytes() const;

 private:
  std::string image_, dir_;
  bool made_ = false;
  bool mounted_ = false;
};

// A gtest fixture with one fresh mount per test (root dir mode 0777 so the
// test users can work in it).
class MountTest : public ::testing::Test {
 protected:
  void SetUp() override;
  // Extra `scratchcrypt mount` arguments for this fixture's volume.
  virtual std::vector<std::string> mount_args() const { return {}; }
  void TearDown() override { m_.reset(); }
  std::string p(const std::string& relative) const { return m_->path(relative); }
  std::unique_ptr<Mount> m_;
};

// The same, run once per kernel caching mode: write-through (the default)
// and --writeback-cache, where dirty data lives in the kernel's page cache.
class CacheModeTest : public MountTest, public ::testing::WithParamInterface<bool> {
 protected:
  std::vector<std::string> mount_args() const override {
    return GetParam() ? std::vector<std::string>{"--writeback-cache"} : std::vector<std::string>{};
  }
};
std::string cache_mode_name(const ::testing::TestParamInfo<bool>& info);

// File helpers: whole-file read/write through ordinary syscalls.
std::string read_file(const std::string& path, int* err = nullptr);
bool write_file(const std::string& path, const std::string& data, mode_t mode = 0644);
// Deterministic pseudo-random bytes.
std::string pattern(size_t length, uint64_t seed);
// Backing st_blocks of a path (lstat), or -1.
long long blocks_of(const std::string& path);
// The backing object (under `backing`) with inode number `ino`, or "".
std::string find_backing_by_ino(const std::string& backing, ino_t ino);
// The backing object of a path in the mount (same inode number), or "".
std::string backing_of(const Mount& m, const std::string& mount_path);

}  // namespace sctest
