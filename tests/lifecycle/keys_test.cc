// Key custody of a running volume: the daemon's memory is locked and not
// dumpable, the key reaches no file, command line, environment or log, and
// its kernel-keyring copy is root's alone.
#include <fcntl.h>
#include <grp.h>
#include <linux/keyctl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "tests/fs/test_util.h"
#include "tests/lifecycle/lifecycle_util.h"

namespace lctest {
namespace {

long keyctl(int op, unsigned long a2, unsigned long a3 = 0, unsigned long a4 = 0,
            unsigned long a5 = 0) {
  return ::syscall(SYS_keyctl, op, a2, a3, a4, a5);
}

std::string key_string(const std::vector<uint8_t>& key) { return std::string(key.begin(), key.end()); }

// Whether `haystack` holds the key, whole, either half, or in hex.
bool holds_key(const std::string& haystack, const std::string& key) {
  const std::string half1 = key.substr(0, 32), half2 = key.substr(32);
  return contains(haystack, half1) || contains(haystack, half2) || contains(haystack, hex(half1)) ||
         contains(haystack, hex(half2));
}

long status_kib(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::strtol(line.c_str() + field.size() + 1, nullptr, 10);
  }
  return -1;
}

// The dumpable flag of `pid`, as the process itself sees it
// (prctl(PR_GET_DUMPABLE) called inside it by gdb); -1 when gdb cannot
// tell. No kernel interface shows another process's flag, and a probe
// without CAP_SYS_PTRACE is refused by a fully capable root daemon whatever
// its flag, so asking the process is the one reliable check.
int dumpable_of(pid_t pid, std::string* output = nullptr) {
  sctest::RunResult r = sctest::run({"/usr/bin/gdb", "-nx", "-batch", "-p", std::to_string(pid), "-ex",
                                     "print (int)prctl(3, 0, 0, 0, 0)"},
                                    {}, 60);
  if (output) *output = r.output;
  auto pos = r.output.find("$1 = ");
  if (pos == std::string::npos) return -1;
  return std::atoi(r.output.c_str() + pos + 5);
}

class KeysTest : public NodeTest {};

TEST_F(KeysTest, DaemonMemoryIsLockedAndNotDumpable) {
  const std::string id = make_volume("k");
  ASSERT_FALSE(id.empty());
  const pid_t daemon = lock_holder(backing("k"));
  ASSERT_GT(daemon, 0);

  EXPECT_GT(status_kib(daemon, "VmLck"), 0) << "the daemon's memory is not locked (mlockall)";

  if (!exists("/usr/bin/gdb")) GTEST_SKIP() << "gdb is not installed (apt-get install gdb)";
  // Positive control: an ordinary process is dumpable.
  int ready[2];
  ASSERT_EQ(0, ::pipe(ready));
  pid_t plain = ::fork();
  if (plain == 0) {
    ::close(ready[1]);
    char c;
    ssize_t ignored = ::read(ready[0], &c, 1);  // until the test closes it
    (void)ignored;
    _exit(0);
  }
  ::close(ready[0]);
  std::string gdb_output;
  const int control = dumpable_of(plain, &gdb_output);
  ::close(ready[1]);
  wait_gone(plain, std::chrono::seconds(5));
  if (control == -1) GTEST_SKIP() << "gdb cannot attach here (no CAP_SYS_PTRACE?): " << gdb_output;
  EXPECT_EQ(1, control) << "control: an ordinary process should be dumpable";

  EXPECT_EQ(0, dumpable_of(daemon, &gdb_output)) << gdb_output << "the daemon is dumpable (PR_SET_DUMPABLE 0 missing or undone): "
                                       "its memory, key included, can end up in a core dump";
  // The daemon still serves after being asked.
  EXPECT_TRUE(spit(mnt("k") + "/after-gdb", "still here"));
  EXPECT_EQ("still here", slurp(mnt("k") + "/after-gdb"));
}

TEST_F(KeysTest, KnownKeyReachesNoFileArgumentEnvironmentOrLog) {
  const auto key = sctest::test_key(41);
  const std::string k = key_string(key);
  const std::string id = make_volume("k", key);
  ASSERT_FALSE(id.empty());
  const pid_t daemon = lock_holder(backing("k"));
  ASSERT_GT(daemon, 0);
  // The key is in use (positive control for the searches below).
  ASSERT_EQ(k, key_bytes(id)) << "the keyring does not hold the key given with --key-fd";

  // Some data, so that the backing holds more than a header.
  ASSERT_TRUE(spit(mnt("k") + "/file", std::string(100000, 'x')));
  ASSERT_EQ(0, ::mkdir((mnt("k") + "/dir").c_str(), 0755));
  ASSERT_TRUE(spit(mnt("k") + "/dir/small", "abc"));
  ::sync();

  const std::string proc = "/proc/" + std::to_string(daemon);
  EXPECT_FALSE(holds_key(slurp(proc + "/cmdline"), k)) << "key in the daemon's command line";
  EXPECT_FALSE(holds_key(slurp(proc + "/environ"), k)) << "key in the daemon's environment";
  for (const auto& f : files_under(backing("k"))) {
    EXPECT_FALSE(holds_key(slurp(f), k)) << "key bytes in backing file " << f;
  }
  for (const auto& f : files_under(run_dir_)) {
    EXPECT_FALSE(holds_key(slurp(f), k)) << "key bytes in registry file " << f;
  }
  RunResult status = sc({"status", "--json"});
  EXPECT_FALSE(holds_key(status.output, k)) << "key in status output";

  RunResult wipe = sc({"wipe", "--wait", mnt("k")});
  ASSERT_EQ(0, wipe.exit_code) << wipe.output;
  EXPECT_FALSE(holds_key(wipe.output, k));
  EXPECT_FALSE(holds_key(slurp(record_log_), k)) << "key bytes in the wipe record log";
  for (const char* log : {"/var/log/syslog", "/var/log/messages", "/var/log/daemon.log"}) {
    if (exists(log)) {
      EXPECT_FALSE(holds_key(slurp(log), k)) << "key bytes in " << log;
    }
  }
  // No file anywhere in the test's tree (backing root, mounts, log, registry).
  for (const auto& f : files_under(root_)) {
    EXPECT_FALSE(holds_key(slurp(f), k)) << "key bytes in " << f;
  }
}

TEST_F(KeysTest, KeyringHoldsKeyForRootOnly) {
  const auto key = sctest::test_key(42);
  const std::string id = make_volume("k", key);
  ASSERT_FALSE(id.empty());

  const long serial = key_serial(id);
  ASSERT_GT(serial, 0) << "no user key scratchcrypt:" << id << " in root's user keyring";
  EXPECT_EQ(key_string(key), key_bytes(id));

  char desc[512] = {};
  ASSERT_GT(keyctl(KEYCTL_DESCRIBE, static_cast<unsigned long>(serial),
                   reinterpret_cast<unsigned long>(desc), sizeof desc - 1),
            0);
  // "type;uid;gid;perm;description"
  std::string d(desc);
  std::vector<std::string> parts;
  std::stringstream ss(d);
  for (std::string part; std::getline(ss, part, ';');) parts.push_back(part);
  ASSERT_EQ(5u, parts.size()) << d;
  EXPECT_EQ("user", parts[0]);
  EXPECT_EQ("0", parts[1]) << "key not owned by root: " << d;
  EXPECT_EQ("scratchcrypt:" + id, parts[4]);
  const unsigned long perm = std::strtoul(parts[3].c_str(), nullptr, 16);
  EXPECT_EQ(0u, perm & 0xffffu) << "group/other may use the key: perm " << parts[3];

  const long root_user_keyring =
      keyctl(KEYCTL_GET_KEYRING_ID, static_cast<unsigned long>(KEY_SPEC_USER_KEYRING), 0);
  ASSERT_GT(root_user_keyring, 0);
  const std::string wanted = "scratchcrypt:" + id;

  // A job user: cannot find it, read it, describe it, nor see it in /proc/keys.
  auto as_job = [&](const std::function<long()>& fn) {
    return sctest::as_user(sctest::kUserA, sctest::kGroupA, fn);
  };
  auto search_own = as_job([&] {
    return keyctl(KEYCTL_SEARCH, static_cast<unsigned long>(KEY_SPEC_USER_KEYRING),
                  reinterpret_cast<unsigned long>("user"), reinterpret_cast<unsigned long>(wanted.c_str()), 0);
  });
  EXPECT_EQ(-1, search_own.value) << "a job user found the volume key in its keyrings";
  auto search_session = as_job([&] {
    return keyctl(KEYCTL_SEARCH, static_cast<unsigned long>(KEY_SPEC_SESSION_KEYRING),
                  reinterpret_cast<unsigned long>("user"), reinterpret_cast<unsigned long>(wanted.c_str()), 0);
  });
  EXPECT_EQ(-1, search_session.value) << "a job user found the volume key through its session keyring";
  auto search_root = as_job([&] {
    return keyctl(KEYCTL_SEARCH, static_cast<unsigned long>(root_user_keyring),
                  reinterpret_cast<unsigned long>("user"), reinterpret_cast<unsigned long>(wanted.c_str()), 0);
  });
  EXPECT_EQ(-1, search_root.value) << "a job user searched root's user keyring";
  auto read = as_job([&] {
    static char buf[128];
    return keyctl(KEYCTL_READ, static_cast<unsigned long>(serial), reinterpret_cast<unsigned long>(buf),
                  sizeof buf);
  });
  EXPECT_EQ(-1, read.value) << "a job user read the volume key by its serial";
  EXPECT_EQ(EACCES, read.err) << std::strerror(read.err);
  auto describe = as_job([&] {
    static char buf[256];
    return keyctl(KEYCTL_DESCRIBE, static_cast<unsigned long>(serial), reinterpret_cast<unsigned long>(buf),
                  sizeof buf);
  });
  EXPECT_EQ(-1, describe.value) << "a job user can describe the volume key";
  auto listed = as_job([&]() -> long {
    int fd = ::open("/proc/keys", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    static char buf[65536];
    ssize_t total = 0, n;
    while ((n = ::read(fd, buf + total, sizeof buf - 1 - static_cast<size_t>(total))) > 0) total += n;
    ::close(fd);
    buf[total] = '\0';
    return std::strstr(buf, wanted.c_str()) != nullptr ? 1 : 0;
  });
  EXPECT_EQ(0, listed.value) << "a job user sees the volume key in /proc/keys";

  // Clean unmount keeps it (for --recover), wipe destroys it.
  RunResult um = sc({"umount", mnt("k")});
  ASSERT_EQ(0, um.exit_code) << um.output;
  EXPECT_GT(key_serial(id), 0) << "umount dropped the key: the volume cannot be recovered";
  RunResult wipe = sc({"wipe", "--wait", backing("k")});
  ASSERT_EQ(0, wipe.exit_code) << wipe.output;
  EXPECT_EQ(-1, key_serial(id)) << "the key survived the wipe";
}

// A job started by a root process whose session keyring links root's user
// keyring (systemd KeyringMode=shared for a root service, a root shell that
// ran `keyctl link @u @s`, ...) inherits that session keyring across
// setuid. Possession must not be enough to read another volume's key.
TEST_F(KeysTest, InheritedRootSessionKeyringDoesNotExposeTheKey) {
  const std::string id = make_volume("k", sctest::test_key(43));
  ASSERT_FALSE(id.empty());
  const long serial = key_serial(id);
  ASSERT_GT(serial, 0);
  int p[2];
  ASSERT_EQ(0, ::pipe(p));
  pid_t child = ::fork();
  if (child == 0) {
    ::close(p[0]);
    long result[3] = {-9, -9, 0};
    if (keyctl(KEYCTL_JOIN_SESSION_KEYRING, 0) >= 0 &&
        keyctl(KEYCTL_LINK, static_cast<unsigned long>(KEY_SPEC_USER_KEYRING),
               static_cast<unsigned long>(KEY_SPEC_SESSION_KEYRING)) == 0 &&
        ::setgroups(0, nullptr) == 0 && ::setgid(sctest::kGroupA) == 0 && ::setuid(sctest::kUserA) == 0) {
      char buf[128];
      result[0] = keyctl(KEYCTL_READ, static_cast<unsigned long>(serial), reinterpret_cast<unsigned long>(buf),
                         sizeof buf);
      const std::string wanted = "scratchcrypt:" + id;
      result[1] = keyctl(KEYCTL_SEARCH, static_cast<unsigned long>(KEY_SPEC_SESSION_KEYRING),
                         reinterpret_cast<unsigned long>("user"), reinterpret_cast<unsigned long>(wanted.c_str()), 0);
      result[2] = ::getuid();
    }
    ssize_t ignored = ::write(p[1], result, sizeof result);
    (void)ignored;
    _exit(0);
  }
  ::close(p[1]);
  long result[3] = {-9, -9, -9};
  ASSERT_EQ(static_cast<ssize_t>(sizeof result), ::read(p[0], result, sizeof result));
  ::close(p[0]);
  wait_gone(child, std::chrono::seconds(5));
  ASSERT_EQ(sctest::kUserA, result[2]) << "could not set up the job process";
  EXPECT_EQ(-1, result[0]) << "a job process (uid " << sctest::kUserA << ") read " << result[0]
                           << " bytes of the volume key through the root session keyring it inherited "
                              "(the key grants all rights to its possessor: perm 0x3f3f0000)";
  EXPECT_EQ(-1, result[1]) << "a job process found the volume key through its inherited session keyring";
}

// Issue 12, point 8: a mount that fails after the key was made (here: the
// volume registry cannot be written) takes the key and the header with it,
// and leaves BACKING as it was.
TEST_F(KeysTest, FailedMountLeavesNoKeyNoHeaderAndBackingAsItWas) {
  const std::string b = backing("fail"), m = mnt("fail");
  ASSERT_EQ(0, ::mkdir(b.c_str(), 0750));
  ASSERT_EQ(0, ::chown(b.c_str(), 0, 0));
  ASSERT_EQ(0, ::mkdir(m.c_str(), 0755));
  struct stat before;
  ASSERT_EQ(0, ::stat(b.c_str(), &before));
  ASSERT_TRUE(spit(root_ + "/not-a-dir", "x"));
  RunResult r = run_env({"mount", b, m}, {"SCRATCHCRYPT_RUN_DIR=" + root_ + "/not-a-dir/run"});
  EXPECT_NE(0, r.exit_code) << r.output;
  EXPECT_TRUE(contains(r.output, "volume registry")) << r.output;
  // The id, from the message or from a header left behind.
  std::string id;
  const std::string marker = "the new volume ";
  if (auto at = r.output.find(marker); at != std::string::npos) id = r.output.substr(at + marker.size(), 32);
  std::istringstream header(slurp(b + "/.scratchcrypt-volume"));
  for (std::string line; std::getline(header, line);) {
    if (line.rfind("id ", 0) == 0) id = line.substr(3);
  }
  ASSERT_EQ(32u, id.size()) << r.output;
  track(id);
  EXPECT_EQ(-1, key_serial(id)) << "the failed mount left its key in the keyring";
  // Invalidated at once; gone from /proc/keys when the kernel's key
  // garbage collector has run.
  bool listed = true;
  for (int i = 0; i < 250 && listed; ++i) {
    listed = contains(slurp("/proc/keys"), "scratchcrypt:" + id);
    if (listed) ::usleep(20000);
  }
  EXPECT_FALSE(listed) << "the key is still in /proc/keys after 5 s";
  EXPECT_FALSE(is_mountpoint(m));
  EXPECT_TRUE(files_under(b).empty()) << "the failed mount left files in BACKING";
  struct stat after;
  ASSERT_EQ(0, ::stat(b.c_str(), &after));
  EXPECT_EQ(before.st_uid, after.st_uid);
  EXPECT_EQ(before.st_gid, after.st_gid);
  EXPECT_EQ(before.st_mode, after.st_mode);
  char value[64];
  EXPECT_LT(::getxattr(b.c_str(), "user.scratchcrypt.id", value, sizeof value), 0) << "root id left";
  // BACKING takes a new volume at once.
  const std::string again = make_volume("fail");
  EXPECT_FALSE(again.empty());
}

// Issue 12, point 8: the key is never where another process could find it
// before its permissions are restricted: add_key(2) puts it into a keyring
// of the daemon's own thread, and it is linked into root's user keyring
// only after KEYCTL_SETPERM. (Traced, since the window is too short to
// observe from outside.)
TEST_F(KeysTest, KeyIsRestrictedBeforeAnyoneElseCanFindIt) {
  const std::string b = backing("perm"), m = mnt("perm");
  ASSERT_EQ(0, ::mkdir(b.c_str(), 0700));
  ASSERT_EQ(0, ::mkdir(m.c_str(), 0755));
  const std::string trace = root_ + "/keyctl.trace";
  if (sctest::run({"/usr/bin/strace", "-qq", "-o", "/dev/null", "/bin/true"}).exit_code != 0) {
    GTEST_SKIP() << "strace cannot trace here (not installed, or ptrace not permitted)";
  }
  // -s 0: no string contents (the key) in the trace.
  const pid_t strace = ::fork();
  ASSERT_GE(strace, 0);
  if (strace == 0) {
    const std::string bin = sctest::scratchcrypt_bin();
    ::execl("/usr/bin/strace", "strace", "-f", "-qq", "-s", "0", "-e", "trace=add_key,keyctl", "-o",
            trace.c_str(), bin.c_str(), "mount", b.c_str(), m.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  for (int i = 0; i < 500 && !is_mountpoint(m); ++i) ::usleep(20000);
  ASSERT_TRUE(is_mountpoint(m)) << slurp(trace);
  std::string id;
  std::istringstream header(slurp(b + "/.scratchcrypt-volume"));
  for (std::string line; std::getline(header, line);) {
    if (line.rfind("id ", 0) == 0) id = line.substr(3);
  }
  track(id);
  RunResult w = sc({"wipe", "--wait", m});
  EXPECT_EQ(0, w.exit_code) << w.output;
  int status = 0;
  ::waitpid(strace, &status, 0);  // it ends with the daemon
  const std::string text = slurp(trace);
  // The 64-byte key: where add_key put it, and its serial.
  std::istringstream lines(text);
  std::string serial;
  std::vector<std::string> later;
  for (std::string line; std::getline(lines, line);) {
    if (line.find("add_key(") != std::string::npos && line.find(", 64, ") != std::string::npos) {
      EXPECT_EQ(std::string::npos, line.find("KEY_SPEC_USER_KEYRING"))
          << "the key was added straight into root's user keyring, with default permissions: " << line;
      serial = line.substr(line.rfind("= ") + 2);
    } else if (!serial.empty() && line.find(" " + serial + ",") != std::string::npos) {
      later.push_back(line);
    }
  }
  ASSERT_FALSE(serial.empty()) << text;
  // Restricted first, linked for others after.
  size_t setperm = later.size(), link = later.size();
  for (size_t i = 0; i < later.size(); ++i) {
    if (later[i].find("KEYCTL_SETPERM") != std::string::npos && setperm == later.size()) setperm = i;
    if (later[i].find("KEYCTL_LINK") != std::string::npos && later[i].find("KEY_SPEC_USER_KEYRING") != std::string::npos) link = i;
  }
  EXPECT_LT(setperm, later.size()) << text;
  EXPECT_LT(link, later.size()) << text;
  EXPECT_LT(setperm, link) << text;
}

}  // namespace
}  // namespace lctest
