// `scratchcrypt wipe`: what a finished wipe leaves (nothing but a record),
// refusals that touch nothing, and forced wipes that cut holders off.
#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <thread>
#include <cerrno>
#include <cstring>
#include <regex>
#include <sstream>

#include "tests/fs/test_util.h"
#include "tests/lifecycle/lifecycle_util.h"
#include "tools/walk_tree.h"

namespace lctest {
namespace {

class WipeTest : public NodeTest {};

std::string random_token() {
  unsigned char b[8];
  int fd = ::open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  ssize_t n = ::read(fd, b, sizeof b);
  ::close(fd);
  EXPECT_EQ(8, n);
  return hex(std::string(reinterpret_cast<char*>(b), sizeof b));
}

bool is_iso_time(const std::string& t) {
  return std::regex_match(t, std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)"));
}

// Lines in the record log.
size_t record_lines(const std::string& log) {
  const std::string text = slurp(log);
  return static_cast<size_t>(std::count(text.begin(), text.end(), '\n'));
}

TEST_F(WipeTest, LeavesNoMountDaemonKeyOrFileAndACompleteRecord) {
  const std::string id = make_volume("w");
  ASSERT_FALSE(id.empty());
  const pid_t daemon = lock_holder(backing("w"));
  ASSERT_GT(daemon, 0);
  ASSERT_GT(key_serial(id), 0);

  // Files with names that must never reach the record.
  const std::string tag = "secretname" + random_token();
  const std::vector<std::pair<std::string, size_t>> files = {
      {tag + "-a.txt", 1000}, {tag + "-b.bin", 70001}, {tag + "-empty", 0},
      {tag + "-dir/" + tag + "-inner", 4096 * 3 + 5}};
  ASSERT_EQ(0, ::mkdir((mnt("w") + "/" + tag + "-dir").c_str(), 0755));
  uint64_t written = 0;
  for (const auto& [name, size] : files) {
    ASSERT_TRUE(spit(mnt("w") + "/" + name, sctest::pattern(size, size)));
    written += size;
  }
  // What the wipe will find in the backing: our files plus the volume's own.
  uint64_t backing_files = 0, backing_bytes = 0;
  for (const auto& f : files_under(backing("w"))) {
    struct stat st;
    ASSERT_EQ(0, ::lstat(f.c_str(), &st));
    ++backing_files;
    backing_bytes += static_cast<uint64_t>(st.st_size);
  }
  ASSERT_GE(backing_files, files.size());
  // A copy of the ciphertext, as someone imaging the disk would keep it.
  const std::string snapshot = root_ + "/snapshot";
  sctest::RunResult cp = sctest::run({"/bin/cp", "-a", backing("w"), snapshot});
  ASSERT_EQ(0, cp.exit_code) << cp.output;

  RunResult wipe = sc({"wipe", "--wait", "--job", "job-17", mnt("w")});
  ASSERT_EQ(0, wipe.exit_code) << wipe.output;

  EXPECT_FALSE(is_mountpoint(mnt("w"))) << "still mounted";
  EXPECT_TRUE(wait_gone(daemon, std::chrono::seconds(2))) << "daemon " << daemon << " still runs";
  EXPECT_EQ(-1, key_serial(id)) << "key still in the keyring";
  EXPECT_FALSE(exists(backing("w"))) << "backing directory still there";
  for (const auto& f : files_under(backing_root_)) ADD_FAILURE() << "left in backing_root: " << f;
  if (DIR* d = ::opendir(backing_root_.c_str())) {
    while (dirent* e = ::readdir(d)) {
      EXPECT_TRUE(std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0)
          << "left in backing_root: " << e->d_name;
    }
    ::closedir(d);
  }
  auto status = status_of(id);
  EXPECT_FALSE(status.has_value()) << "status still lists the wiped volume";

  // The record: one complete JSON line, no name from inside the volume.
  const std::string log = slurp(record_log_);
  EXPECT_FALSE(contains(log, tag)) << "a file name from inside the volume is in the record: " << log;
  auto recs = records();
  ASSERT_EQ(1u, recs.size()) << log;
  const Json& r = recs[0];
  EXPECT_EQ("wipe", r.str("event"));
  EXPECT_EQ(id, r.str("volume"));
  EXPECT_EQ("job-17", r.str("job"));
  EXPECT_TRUE(is_iso_time(r.str("started"))) << log;
  EXPECT_TRUE(is_iso_time(r.str("crypto_erased"))) << log;
  EXPECT_TRUE(is_iso_time(r.str("deletion_finished"))) << log;
  EXPECT_LE(r.str("started"), r.str("crypto_erased"));
  EXPECT_LE(r.str("crypto_erased"), r.str("deletion_finished"));
  EXPECT_EQ(static_cast<double>(backing_files), r.num("files_removed")) << log;
  EXPECT_EQ(static_cast<double>(backing_bytes), r.num("bytes_removed")) << log;
  // Backing files are as long as their plaintext: the difference is the header.
  EXPECT_GE(r.num("bytes_removed"), static_cast<double>(written));
  EXPECT_LT(r.num("bytes_removed"), static_cast<double>(written) + 4096);
  EXPECT_EQ("complete", r.str("outcome")) << log;
  EXPECT_EQ(Json::kBool, r["verified"].type);
  EXPECT_TRUE(r["verified"].boolean) << log;
  EXPECT_TRUE(r["key_destroyed"].boolean) << log;
  EXPECT_FALSE(r.has("error")) << log;

  // No way back: not on the old path, not from a copy of the ciphertext.
  ASSERT_EQ(0, ::mkdir(backing("w").c_str(), 0700));
  RunResult again = sc({"mount", "--recover", backing("w"), mnt("w")});
  EXPECT_EQ(4, again.exit_code) << again.output;
  EXPECT_TRUE(contains(again.output, "not a scratchcrypt volume")) << again.output;
  EXPECT_FALSE(is_mountpoint(mnt("w")));
  RunResult copy = sc({"mount", "--recover", snapshot, mnt("w")});
  EXPECT_EQ(4, copy.exit_code) << copy.output;
  EXPECT_TRUE(contains(copy.output, "no key for volume " + id)) << copy.output;
  EXPECT_FALSE(is_mountpoint(mnt("w")));
}

// A process that holds a file of the volume open and reads on request.
struct Holder {
  pid_t pid = -1;
  int cmd = -1, result = -1;

  struct Read {
    long n = -2;
    int err = 0;
    char head[16] = {};
  };

  // Holds `path` open and reads it on request; with `from_cwd`, instead
  // lives in the file's directory and opens it afresh (by its relative
  // name) for every read.
  static Holder start(const std::string& path, bool from_cwd = false) {
    int to[2], from[2];
    Holder h;
    if (::pipe(to) != 0 || ::pipe(from) != 0) return h;
    h.pid = ::fork();
    if (h.pid == 0) {
      // Only our own pipe ends: another holder's would keep it from seeing EOF.
      for (int fd = 3; fd < 1024; ++fd) {
        if (fd != to[0] && fd != from[1]) ::close(fd);
      }
      ::prctl(PR_SET_NAME, from_cwd ? "sc-cwd-holder" : "sc-holder");
      const std::string dir = path.substr(0, path.rfind('/')), name = path.substr(path.rfind('/') + 1);
      if (::chdir(from_cwd ? dir.c_str() : "/") != 0) _exit(1);
      int fd = from_cwd ? -1 : ::open(path.c_str(), O_RDONLY);
      char c;
      while (::read(to[0], &c, 1) == 1) {
        Read r;
        if (from_cwd) {
          int f = ::open(name.c_str(), O_RDONLY);
          r.n = f < 0 ? -1 : ::pread(f, r.head, sizeof r.head, 0);
          r.err = errno;
          if (f >= 0) ::close(f);
        } else {
          r.n = fd < 0 ? -3 : ::pread(fd, r.head, sizeof r.head, 0);
          r.err = errno;
        }
        if (::write(from[1], &r, sizeof r) != sizeof r) break;
      }
      _exit(0);
    }
    ::close(to[0]);
    ::close(from[1]);
    h.cmd = to[1];
    h.result = from[0];
    return h;
  }
  Read read() {
    Read r;
    char c = 'r';
    if (::write(cmd, &c, 1) != 1 || ::read(result, &r, sizeof r) != sizeof r) r.n = -4;
    return r;
  }
  void stop() {
    if (cmd >= 0) ::close(cmd);
    if (result >= 0) ::close(result);
    cmd = result = -1;
    if (pid > 0) wait_gone(pid, std::chrono::seconds(5));
    pid = -1;
  }
  ~Holder() { stop(); }
};

TEST_F(WipeTest, BusyIsRefusedAndForceCutsHoldersOff) {
  const std::string id = make_volume("b");
  ASSERT_FALSE(id.empty());
  const std::string data = "holder-data-" + random_token();
  ASSERT_TRUE(spit(mnt("b") + "/data", data + std::string(10000, 'z')));
  Holder h = Holder::start(mnt("b") + "/data");
  ASSERT_GT(h.pid, 0);
  auto before = h.read();
  ASSERT_EQ(16, before.n) << std::strerror(before.err);
  ASSERT_EQ(data.substr(0, 16), std::string(before.head, 16));
  Holder cwd = Holder::start(mnt("b") + "/data", true);
  ASSERT_GT(cwd.pid, 0);
  auto cwd_before = cwd.read();
  ASSERT_EQ(16, cwd_before.n) << std::strerror(cwd_before.err);

  const size_t lines = record_lines(record_log_);
  RunResult busy = sc({"wipe", mnt("b")});
  EXPECT_EQ(3, busy.exit_code) << busy.output;
  EXPECT_TRUE(contains(busy.output, "pid " + std::to_string(h.pid))) << busy.output;
  EXPECT_TRUE(contains(busy.output, "sc-holder")) << busy.output;
  EXPECT_TRUE(contains(busy.output, "pid " + std::to_string(cwd.pid))) << busy.output;
  // Refused means untouched.
  EXPECT_TRUE(is_mountpoint(mnt("b")));
  EXPECT_GT(key_serial(id), 0);
  EXPECT_EQ(data, slurp(mnt("b") + "/data").substr(0, data.size()));
  EXPECT_EQ(lines, record_lines(record_log_));
  EXPECT_EQ(16, h.read().n);
  EXPECT_EQ(16, cwd.read().n);

  RunResult forced = sc({"wipe", "--force", "--wait", mnt("b")});
  ASSERT_EQ(0, forced.exit_code) << forced.output;
  auto after = h.read();
  EXPECT_EQ(-1, after.n) << "the holder still reads after a forced wipe: '"
                         << std::string(after.head, std::max(0L, std::min(after.n, 16L))) << "'";
  EXPECT_TRUE(after.err == EIO || after.err == ENOTCONN) << std::strerror(after.err);
  h.stop();
  auto cwd_after = cwd.read();
  EXPECT_EQ(-1, cwd_after.n) << "a process living in the volume opened and read a file after a forced wipe";
  EXPECT_TRUE(cwd_after.err == EIO || cwd_after.err == ENOTCONN || cwd_after.err == ENOENT)
      << std::strerror(cwd_after.err);
  cwd.stop();

  int err = 0;
  std::string leftover = slurp(mnt("b") + "/data", &err);
  EXPECT_TRUE(leftover.empty()) << "data readable after the wipe";
  EXPECT_EQ(-1, key_serial(id));
  EXPECT_FALSE(is_mountpoint(mnt("b")));
  EXPECT_FALSE(exists(backing("b")));
  auto rec = wait_record(id, std::chrono::seconds(1));
  ASSERT_TRUE(rec.has_value());
  std::printf("[   INFO   ] forced wipe with 2 holders: crypto-erased after %.0f ms\n", rec->num("crypto_erase_ms"));
  EXPECT_LT(rec->num("crypto_erase_ms"), 3000) << "cutting off two holders took seconds";
  EXPECT_TRUE((*rec)["forced"].boolean);
  EXPECT_EQ(2, rec->num("holders_cut_off"));
  EXPECT_EQ("complete", rec->str("outcome"));
}

TEST_F(WipeTest, SecondWipeIsRefusedAndTouchesNothing) {
  const std::string id = make_volume("d");
  ASSERT_FALSE(id.empty());
  RunResult first = sc({"wipe", "--wait", mnt("d")});
  ASSERT_EQ(0, first.exit_code) << first.output;
  const std::string log = slurp(record_log_);
  // Something new in the old place (the next job's files) must survive.
  ASSERT_TRUE(spit(mnt("d") + "/next-job-file", "keep me"));
  for (const std::string& target : {mnt("d"), backing("d"), id}) {
    RunResult second = sc({"wipe", "--wait", target});
    EXPECT_EQ(4, second.exit_code) << target << ": " << second.output;
    EXPECT_TRUE(contains(second.output, "not a scratchcrypt volume") ||
                contains(second.output, "nothing left to wipe"))
        << second.output;
    EXPECT_TRUE(contains(second.output, "nothing was touched")) << second.output;
  }
  EXPECT_EQ("keep me", slurp(mnt("d") + "/next-job-file"));
  EXPECT_EQ(log, slurp(record_log_)) << "a refused wipe wrote a record";
}

TEST_F(WipeTest, WrongTargetsAreRefusedAndTouchNothing) {
  // A plain directory with files, outside and inside backing_root.
  const std::string plain = root_ + "/plain";
  const std::string ours = backing_root_ + "/not-a-volume";
  for (const auto& dir : {plain, ours}) {
    ASSERT_EQ(0, ::mkdir(dir.c_str(), 0755));
    ASSERT_TRUE(spit(dir + "/a", "aaa"));
    ASSERT_EQ(0, ::mkdir((dir + "/sub").c_str(), 0755));
    ASSERT_TRUE(spit(dir + "/sub/b", "bbb"));
  }
  // A live volume stored outside backing_root.
  const std::string out_b = root_ + "/elsewhere/backing", out_m = root_ + "/elsewhere/mnt";
  ASSERT_EQ(0, ::mkdir((root_ + "/elsewhere").c_str(), 0755));
  ASSERT_EQ(0, ::mkdir(out_b.c_str(), 0700));
  ASSERT_EQ(0, ::mkdir(out_m.c_str(), 0755));
  RunResult m = sc({"mount", out_b, out_m});
  ASSERT_EQ(0, m.exit_code) << m.output;
  std::string out_id;
  {
    std::istringstream in(slurp(out_b + "/.scratchcrypt-volume"));
    for (std::string line; std::getline(in, line);) {
      if (line.rfind("id ", 0) == 0) out_id = line.substr(3);
    }
  }
  ASSERT_FALSE(out_id.empty());
  track(out_id);
  ASSERT_TRUE(spit(out_m + "/precious", "precious data"));
  // Unmounted, the registry forgets it: found only on disk, outside
  // backing_root, it is not ours to delete (a registered one is: see
  // MountedOutsideBackingRootIsWipeable).
  RunResult um = sc({"umount", out_m});
  ASSERT_EQ(0, um.exit_code) << um.output;

  struct stat etc_before;
  ASSERT_EQ(0, ::stat("/etc/passwd", &etc_before));
  const std::vector<std::string> targets = {"/etc", "/etc/", plain, plain + "/sub", ours, out_b, out_m,
                                            root_ + "/does-not-exist", "/"};
  for (const auto& target : targets) {
    RunResult r = sc({"wipe", "--force", "--wait", target});
    EXPECT_EQ(4, r.exit_code) << "wipe " << target << ": " << r.output;
    EXPECT_FALSE(r.output.empty()) << "wipe " << target << " refused without a message";
  }
  RunResult outside = sc({"wipe", "--force", "--wait", out_b});
  EXPECT_TRUE(contains(outside.output, "outside backing_root")) << outside.output;

  struct stat etc_after;
  ASSERT_EQ(0, ::stat("/etc/passwd", &etc_after));
  EXPECT_EQ(etc_before.st_mtime, etc_after.st_mtime);
  EXPECT_EQ(etc_before.st_ino, etc_after.st_ino);
  for (const auto& dir : {plain, ours}) {
    EXPECT_EQ("aaa", slurp(dir + "/a")) << dir;
    EXPECT_EQ("bbb", slurp(dir + "/sub/b")) << dir;
  }
  EXPECT_GT(key_serial(out_id), 0);
  EXPECT_TRUE(exists(out_b + "/.scratchcrypt-volume"));
  RunResult back = sc({"mount", "--recover", out_b, out_m});
  ASSERT_EQ(0, back.exit_code) << back.output;
  EXPECT_EQ("precious data", slurp(out_m + "/precious"));
  EXPECT_FALSE(exists(record_log_)) << "a refused wipe wrote a record: " << slurp(record_log_);
  RunResult um2 = sc({"umount", out_m});
  EXPECT_EQ(0, um2.exit_code) << um2.output;
}

// Issue 12, point 4: a job's directory chain 100,000 levels deep is wiped
// like any volume (it used to exhaust wipe's descriptors, fail with "could
// not all be deleted" and drain the node). backing_root is on tmpfs here: on
// the test machine's disk, 100,000 directories keep the journal busy for a
// minute, and the walk is the same on both.
TEST_F(WipeTest, DeletesAChainAHundredThousandLevelsDeep) {
  constexpr int kDepth = 100000;
  sctest::TempDir shm("deep", "/dev/shm");
  ASSERT_FALSE(shm.path().empty());
  backing_root_ = shm.path() + "/backing";
  ASSERT_EQ(0, ::mkdir(backing_root_.c_str(), 0700));
  ASSERT_TRUE(spit(config_, "backing_root = " + backing_root_ + "\nmount_root = " + mount_root_ +
                                "\nrecord_log = " + record_log_ + "\n"));
  const std::string id = make_volume("deep");
  ASSERT_FALSE(id.empty());

  // What a job does: mkdir, then go into it. Through the mount as deep as
  // the daemon's descriptor limit allows here (it holds one per inode the
  // kernel knows, and this machine's hard limit is 20,000), then on in the
  // backing directory, as a job on a node with a higher limit would.
  constexpr int kThroughMount = 10000;
  const auto start = std::chrono::steady_clock::now();
  auto make_chain = [](int at, int levels, const char* where) {
    for (int level = 0; level < levels && at >= 0; ++level) {
      if (::mkdirat(at, "d", 0700) != 0) {
        ADD_FAILURE() << where << ": mkdir at level " << level << ": " << std::strerror(errno);
        break;
      }
      const int next = ::openat(at, "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (next < 0) ADD_FAILURE() << where << ": open at level " << level << ": " << std::strerror(errno);
      ::close(at);
      at = next;
    }
    return at;
  };
  int at = make_chain(::open(mnt("deep").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC), kThroughMount,
                      "through the mount");
  if (at >= 0) ::close(at);
  // Down the backing's chain (one directory per level, encrypted names).
  at = ::open(backing("deep").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  for (int level = 0; level < kThroughMount && at >= 0; ++level) {
    DIR* dir = ::fdopendir(::dup(at));
    ASSERT_NE(nullptr, dir);
    std::string sub;
    while (dirent* e = ::readdir(dir)) {
      if (e->d_type == DT_DIR && e->d_name[0] != '.') sub = e->d_name;
    }
    ::closedir(dir);
    ASSERT_FALSE(sub.empty()) << "no directory at backing level " << level;
    const int next = ::openat(at, sub.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ::close(at);
    at = next;
  }
  at = make_chain(at, kDepth - kThroughMount, "in the backing");
  if (at >= 0) ::close(at);
  const double built_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  RunResult wipe = sc({"wipe", "--wait", mnt("deep")}, 120);
  const double total_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("[   INFO   ] %d levels: built in %.1f s, wiped in %.1f s\n", kDepth,
              built_s, total_s - built_s);
  EXPECT_EQ(0, wipe.exit_code) << wipe.output;
  EXPECT_FALSE(exists(backing("deep"))) << "the chain is still in the backing";
  if (DIR* d = ::opendir(backing_root_.c_str())) {
    while (dirent* e = ::readdir(d)) {
      EXPECT_TRUE(e->d_name[0] == '.' && (e->d_name[1] == '\0' || std::strcmp(e->d_name, "..") == 0))
          << "left in backing_root: " << e->d_name;
    }
    ::closedir(d);
  }
  auto rec = wait_record(id, std::chrono::seconds(1));
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ("complete", rec->str("outcome"));
  EXPECT_TRUE((*rec)["verified"].boolean);
  // The next job's prologue is not refused.
  RunResult pro = sc({"prologue", "--job", "after-deep", "--uid", "0", "--gid", "0"});
  EXPECT_EQ(0, pro.exit_code) << pro.output;
  RunResult epi = sc({"epilogue", "--job", "after-deep"});
  EXPECT_EQ(0, epi.exit_code) << epi.output;
  // Whatever a failure left: gone before the temporary directory is.
  scratchcrypt::walk_tree(AT_FDCWD, backing_root_.c_str(),
                          [](int fd, const char* name, const struct stat& st) {
                            ::unlinkat(fd, name, S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0);
                          });
}

// The volume id in a backing directory's header.
std::string header_id(const std::string& backing_dir) {
  std::istringstream in(slurp(backing_dir + "/.scratchcrypt-volume"));
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("id ", 0) == 0) return line.substr(3);
  }
  return "";
}

// Issue 12, point 9: what `scratchcrypt mount` made, outside backing_root,
// `wipe` ends where it is (the registry knows it).
TEST_F(WipeTest, MountedOutsideBackingRootIsWipeable) {
  const std::string out_b = root_ + "/elsewhere-b", out_m = root_ + "/elsewhere-m";
  ASSERT_EQ(0, ::mkdir(out_b.c_str(), 0700));
  ASSERT_EQ(0, ::mkdir(out_m.c_str(), 0755));
  RunResult m = sc({"mount", out_b, out_m});
  ASSERT_EQ(0, m.exit_code) << m.output;
  const std::string id = header_id(out_b);
  ASSERT_FALSE(id.empty());
  track(id);
  ASSERT_TRUE(spit(out_m + "/f", "outside data"));
  RunResult w = sc({"wipe", "--wait", out_m});
  ASSERT_EQ(0, w.exit_code) << w.output;
  EXPECT_FALSE(is_mountpoint(out_m));
  EXPECT_FALSE(exists(out_b)) << "the backing outside backing_root is still there";
  EXPECT_EQ(-1, key_serial(id));
  auto rec = wait_record(id, std::chrono::seconds(1));
  ASSERT_TRUE(rec.has_value());
  EXPECT_TRUE((*rec)["verified"].boolean);
  EXPECT_EQ(out_b, rec->str("backing"));
}

// Issue 12, point 7: backing_root given as a symlink (to the scratch disk)
// must not make every epilogue refuse.
TEST_F(WipeTest, BackingRootThroughASymlink) {
  const std::string link = root_ + "/backing-link";
  ASSERT_EQ(0, ::symlink(backing_root_.c_str(), link.c_str()));
  ASSERT_TRUE(spit(config_, "backing_root = " + link + "\nmount_root = " + mount_root_ +
                                "\nrecord_log = " + record_log_ + "\n"));
  RunResult pro = sc({"prologue", "--job", "lnk", "--uid", "0", "--gid", "0"});
  ASSERT_EQ(0, pro.exit_code) << pro.output;
  const std::string id = header_id(backing("lnk"));
  ASSERT_FALSE(id.empty());
  track(id);
  RunResult epi = sc({"epilogue", "--job", "lnk"});
  EXPECT_EQ(0, epi.exit_code) << epi.output;
  EXPECT_EQ(-1, key_serial(id));
  EXPECT_TRUE(wait_record(id, std::chrono::seconds(2)).has_value());
  for (int i = 0; i < 200 && exists(backing("lnk")); ++i) ::usleep(10000);
  EXPECT_FALSE(exists(backing("lnk")));
}

// Issue 12, point 7: a registry record whose backing now holds another
// volume must not delete that volume.
TEST_F(WipeTest, StaleRecordDoesNotDeleteAnotherVolume) {
  const std::string a = make_volume("a"), b = make_volume("b");
  ASSERT_FALSE(a.empty());
  ASSERT_FALSE(b.empty());
  ASSERT_TRUE(spit(mnt("b") + "/keep", "b's data"));
  // A's record now names B's backing, as after A's path was reused.
  const std::string rec_path = run_dir_ + "/" + a + ".json";
  std::string json = slurp(rec_path);
  const std::string from = "\"backing\": \"" + backing("a") + "\"";
  ASSERT_NE(std::string::npos, json.find(from)) << json;
  json.replace(json.find(from), from.size(), "\"backing\": \"" + backing("b") + "\"");
  ASSERT_TRUE(spit(rec_path, json, 0600));

  RunResult w = sc({"wipe", "--force", "--wait", a});
  EXPECT_EQ(4, w.exit_code) << w.output;
  EXPECT_TRUE(contains(w.output, "holds volume " + b)) << w.output;
  EXPECT_TRUE(contains(w.output, "nothing was touched")) << w.output;
  EXPECT_EQ(b, header_id(backing("b")));
  EXPECT_EQ("b's data", slurp(mnt("b") + "/keep"));
  EXPECT_GT(key_serial(b), 0);
  EXPECT_GT(key_serial(a), 0) << "a refused wipe destroyed a key";
}

// Issue 12, point 7: a volume whose backing cannot be found is crypto-erased,
// but not recorded as verified (its ciphertext was not deleted).
TEST_F(WipeTest, LostBackingIsNotVerified) {
  const std::string id = make_volume("lost");
  ASSERT_FALSE(id.empty());
  const std::string moved = root_ + "/moved-away";
  ASSERT_EQ(0, ::rename(backing("lost").c_str(), moved.c_str()));
  RunResult w = sc({"wipe", "--force", "--wait", mnt("lost")});
  EXPECT_EQ(1, w.exit_code) << w.output;
  EXPECT_TRUE(contains(w.output, "ciphertext was not found")) << w.output;
  EXPECT_FALSE(is_mountpoint(mnt("lost")));
  EXPECT_EQ(-1, key_serial(id));
  auto rec = wait_record(id, std::chrono::seconds(1));
  ASSERT_TRUE(rec.has_value());
  EXPECT_FALSE((*rec)["verified"].boolean) << slurp(record_log_);
  EXPECT_EQ("failed", rec->str("outcome"));
  EXPECT_TRUE(exists(moved + "/.scratchcrypt-volume"));
}

bool sigterm_pending(pid_t pid) {
  std::istringstream in(slurp("/proc/" + std::to_string(pid) + "/status"));
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("ShdPnd:", 0) == 0 || line.rfind("SigPnd:", 0) == 0) {
      const unsigned long long mask = std::stoull(line.substr(line.find_first_not_of(" \t", 7)), nullptr, 16);
      if (mask & (1ULL << (SIGTERM - 1))) return true;
    }
  }
  return false;
}

// Issue 12, point 7: a daemon that does not leave is sent SIGTERM (it
// zeroizes its key on the way out) before it is killed.
TEST_F(WipeTest, HungDaemonIsAskedToLeaveBeforeItIsKilled) {
  const std::string id = make_volume("hung");
  ASSERT_FALSE(id.empty());
  const pid_t daemon = lock_holder(backing("hung"));
  ASSERT_GT(daemon, 0);
  ASSERT_EQ(0, ::kill(daemon, SIGSTOP));  // hung: it serves nothing, handles nothing
  std::atomic<bool> done{false};
  RunResult w;
  std::thread wiper([&] {
    w = sc({"wipe", "--force", "--wait", mnt("hung")}, 60);
    done = true;
  });
  bool asked = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!done && std::chrono::steady_clock::now() < deadline && !asked) {
    asked = sigterm_pending(daemon);
    if (!asked) ::usleep(20000);
  }
  ::kill(daemon, SIGCONT);  // let it act on the SIGTERM (and leave)
  wiper.join();
  EXPECT_TRUE(asked) << "the hung daemon was never sent SIGTERM";
  EXPECT_EQ(0, w.exit_code) << w.output;
  EXPECT_TRUE(wait_gone(daemon, std::chrono::seconds(5)));
  EXPECT_EQ(-1, key_serial(id));
}

// Issue 12, point 7: a process in another mount namespace (a container)
// that sees the volume only through its own bind mount is a holder too.
TEST_F(WipeTest, HolderInAnotherMountNamespaceIsFound) {
  const std::string id = make_volume("ns");
  ASSERT_FALSE(id.empty());
  ASSERT_TRUE(spit(mnt("ns") + "/data", "container data"));
  const std::string view = root_ + "/container-view";
  ASSERT_EQ(0, ::mkdir(view.c_str(), 0755));
  int ready[2], hold[2];
  ASSERT_EQ(0, ::pipe(ready));
  ASSERT_EQ(0, ::pipe(hold));
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(ready[0]);
    ::close(hold[1]);
    ::prctl(PR_SET_NAME, "sc-container");
    // Its own mounts: the volume at another path, the original hidden.
    if (::unshare(CLONE_NEWNS) != 0 || ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
        ::mount(mnt("ns").c_str(), view.c_str(), nullptr, MS_BIND, nullptr) != 0 ||
        ::umount2(mnt("ns").c_str(), MNT_DETACH) != 0 || ::chdir("/") != 0) {
      _exit(2);
    }
    const int fd = ::open((view + "/data").c_str(), O_RDONLY);
    if (fd < 0) _exit(3);
    if (::write(ready[1], "r", 1) != 1) _exit(4);
    char c;
    while (::read(hold[0], &c, 1) == 1) {
    }
    _exit(0);
  }
  ::close(ready[1]);
  ::close(hold[0]);
  char c = 0;
  const bool holding = ::read(ready[0], &c, 1) == 1;
  ::close(ready[0]);
  if (holding) {
    RunResult busy = sc({"wipe", mnt("ns")});
    EXPECT_EQ(3, busy.exit_code) << busy.output;
    EXPECT_TRUE(contains(busy.output, "pid " + std::to_string(child))) << busy.output;
    EXPECT_TRUE(is_mountpoint(mnt("ns")));
    EXPECT_GT(key_serial(id), 0);
    RunResult forced = sc({"wipe", "--force", "--wait", mnt("ns")});
    EXPECT_EQ(0, forced.exit_code) << forced.output;
    auto rec = wait_record(id, std::chrono::seconds(1));
    ASSERT_TRUE(rec.has_value());
    EXPECT_EQ(1, rec->num("holders_cut_off"));
  }
  ::close(hold[1]);
  int status = 0;
  ::waitpid(child, &status, 0);
  ASSERT_TRUE(holding) << "the container process could not set up (status " << status << ")";
  EXPECT_EQ(-1, key_serial(id));
}

TEST_F(WipeTest, ByVolumeId) {
  // `wipe --help`: MOUNTPOINT|BACKING|VOLUME-ID.
  const std::string id = make_volume("i");
  ASSERT_FALSE(id.empty());
  RunResult r = sc({"wipe", "--wait", id});
  EXPECT_EQ(0, r.exit_code) << r.output;
  EXPECT_FALSE(is_mountpoint(mnt("i")));
  EXPECT_EQ(-1, key_serial(id));
  EXPECT_FALSE(exists(backing("i")));
}

}  // namespace
}  // namespace lctest
