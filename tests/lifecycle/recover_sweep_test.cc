// A daemon killed mid-write loses nothing that was fsync'd (mount
// --recover, key from the kernel keyring), and `sweep` ends what crashes
// left behind while leaving live volumes alone.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <thread>

#include "tests/fs/test_util.h"
#include "tests/lifecycle/lifecycle_util.h"

namespace lctest {
namespace {

using namespace std::chrono_literals;

class RecoverTest : public NodeTest {};
class SweepTest : public NodeTest {};

constexpr size_t kRecord = 4096;

std::string record_data(uint32_t i) { return sctest::pattern(kRecord, 1000 + i); }

TEST_F(RecoverTest, KillDuringWritesLosesNothingFsynced) {
  const std::string id = make_volume("r");
  ASSERT_FALSE(id.empty());
  const pid_t daemon = lock_holder(backing("r"));
  ASSERT_GT(daemon, 0);
  const std::string file = mnt("r") + "/journal";

  // The writer appends records, fsyncs each, and only then reports its count
  // through a pipe (outside the volume).
  int counts[2];
  ASSERT_EQ(0, ::pipe(counts));
  pid_t writer = ::fork();
  if (writer == 0) {
    ::close(counts[0]);
    int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) _exit(2);
    for (uint32_t i = 0;; ++i) {
      const std::string rec = record_data(i);
      if (::write(fd, rec.data(), rec.size()) != static_cast<ssize_t>(rec.size())) break;
      if (::fsync(fd) != 0) break;
      uint32_t done = i + 1;
      if (::write(counts[1], &done, sizeof done) != sizeof done) break;
    }
    _exit(0);
  }
  ::close(counts[1]);
  uint32_t synced = 0, n = 0;
  const auto start = std::chrono::steady_clock::now();
  while (synced < 200 && std::chrono::steady_clock::now() - start < 20s &&
         ::read(counts[0], &n, sizeof n) == sizeof n) {
    synced = n;
  }
  ASSERT_GT(synced, 0u) << "the writer made no progress";
  ASSERT_EQ(0, ::kill(daemon, SIGKILL));
  // Whatever the writer still reports was fsync'd before it saw the error.
  while (::read(counts[0], &n, sizeof n) == sizeof n) synced = n;
  ::close(counts[0]);
  ASSERT_TRUE(wait_gone(writer, 10s)) << "the writer hangs on the dead mount";
  ASSERT_TRUE(wait_gone(daemon, 5s));
  std::printf("[   INFO   ] %u records (4 KiB, fsync'd) written before kill -9\n", synced);

  auto dead = status_of(id);
  ASSERT_TRUE(dead.has_value()) << "status does not list the volume of the dead daemon";
  EXPECT_EQ("dead", dead->str("health"));
  EXPECT_GT(key_serial(id), 0) << "the key left the keyring when the daemon died";

  // A plain mount is refused with the way out; --recover brings it back.
  RunResult plain = sc({"mount", backing("r"), mnt("r")});
  EXPECT_EQ(4, plain.exit_code) << plain.output;
  EXPECT_TRUE(contains(plain.output, "--recover")) << plain.output;
  RunResult rec = sc({"mount", "--recover", backing("r"), mnt("r")});
  ASSERT_EQ(0, rec.exit_code) << rec.output;

  int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  struct stat st;
  ASSERT_EQ(0, ::fstat(fd, &st));
  EXPECT_GE(static_cast<uint64_t>(st.st_size), uint64_t{synced} * kRecord);
  uint32_t bad = 0;
  for (uint32_t i = 0; i < synced; ++i) {
    if (sctest::pread_str(fd, kRecord, static_cast<off_t>(i) * kRecord) != record_data(i) && bad++ < 5) {
      ADD_FAILURE() << "fsync'd record " << i << " of " << synced << " did not survive";
    }
  }
  ::close(fd);
  EXPECT_EQ(0u, bad);

  auto ok = status_of(id);
  ASSERT_TRUE(ok.has_value());
  EXPECT_EQ("ok", ok->str("health"));
  const pid_t again = lock_holder(backing("r"));
  EXPECT_GT(again, 0);
  EXPECT_NE(daemon, again);
  // And the recovered volume still takes writes.
  EXPECT_TRUE(spit(mnt("r") + "/after", "after recovery"));
  EXPECT_EQ("after recovery", slurp(mnt("r") + "/after"));
}

TEST_F(SweepTest, EndsLeftoversAndLeavesLiveVolumesAlone) {
  std::map<std::string, std::string> ids;
  std::map<std::string, pid_t> pids;
  for (const std::string name : {"killed1", "killed2", "unmounted", "live"}) {
    ids[name] = make_volume(name);
    ASSERT_FALSE(ids[name].empty());
    pids[name] = lock_holder(backing(name));
    ASSERT_GT(pids[name], 0);
    ASSERT_TRUE(spit(mnt(name) + "/f", "data of " + name));
  }
  for (const std::string name : {"killed1", "killed2"}) {
    ASSERT_EQ(0, ::kill(pids[name], SIGKILL));
    ASSERT_TRUE(wait_gone(pids[name], 5s));
  }
  RunResult um = sc({"umount", mnt("unmounted")});
  ASSERT_EQ(0, um.exit_code) << um.output;
  // An interrupted deletion from an earlier wipe.
  const std::string trash_id = "0123456789abcdef0123456789abcdef";
  const std::string trash = backing_root_ + "/.wiped-" + trash_id;
  ASSERT_EQ(0, ::mkdir(trash.c_str(), 0700));
  ASSERT_EQ(0, ::mkdir((trash + "/d").c_str(), 0700));
  ASSERT_TRUE(spit(trash + "/d/x", std::string(5000, 'c')));
  // Something that is not ours in backing_root.
  ASSERT_EQ(0, ::mkdir((backing_root_ + "/foreign").c_str(), 0700));
  ASSERT_TRUE(spit(backing_root_ + "/foreign/keep", "keep"));

  RunResult sweep = sc({"sweep"});
  ASSERT_EQ(0, sweep.exit_code) << sweep.output;
  EXPECT_TRUE(contains(sweep.output, "swept 3 volume(s), 1 unfinished deletion(s)")) << sweep.output;

  for (const std::string name : {"killed1", "killed2", "unmounted"}) {
    const std::string& id = ids[name];
    EXPECT_FALSE(is_mountpoint(mnt(name))) << name << ": mount left";
    EXPECT_FALSE(exists(backing(name))) << name << ": backing left";
    EXPECT_EQ(-1, key_serial(id)) << name << ": key left";
    auto rec = wait_record(id, 1s);
    ASSERT_TRUE(rec.has_value()) << name << ": no record";
    EXPECT_EQ("sweep", rec->str("event")) << name;
    EXPECT_EQ("complete", rec->str("outcome")) << name;
    EXPECT_TRUE((*rec)["verified"].boolean) << name;
    EXPECT_FALSE(rec->str("deletion_finished").empty()) << name;
    EXPECT_GE(rec->num("files_removed"), 2) << name;  // the header and f
    EXPECT_FALSE(status_of(id).has_value()) << name << ": still in status";
  }
  EXPECT_FALSE(exists(trash)) << "interrupted deletion not finished";
  auto trash_rec = wait_record(trash_id, 1s);
  ASSERT_TRUE(trash_rec.has_value()) << "no record for the finished deletion";
  EXPECT_EQ("sweep", trash_rec->str("event"));
  EXPECT_EQ(1, trash_rec->num("files_removed"));
  EXPECT_EQ(5000, trash_rec->num("bytes_removed"));
  EXPECT_EQ("keep", slurp(backing_root_ + "/foreign/keep")) << "sweep touched a foreign directory";

  // The live one is untouched.
  EXPECT_TRUE(is_mountpoint(mnt("live")));
  EXPECT_EQ("data of live", slurp(mnt("live") + "/f"));
  EXPECT_GT(key_serial(ids["live"]), 0);
  EXPECT_FALSE(process_gone(pids["live"]));
  EXPECT_EQ(pids["live"], lock_holder(backing("live")));
  auto live = status_of(ids["live"]);
  ASSERT_TRUE(live.has_value());
  EXPECT_EQ("ok", live->str("health"));
  for (const auto& r : records()) EXPECT_NE(ids["live"], r.str("volume")) << "a record for the live volume";

  // A second sweep finds nothing.
  RunResult again = sc({"sweep"});
  EXPECT_EQ(0, again.exit_code) << again.output;
  // (Keys and dead mounts are node-wide: other volumes on a shared test node may count.)
  EXPECT_TRUE(contains(again.output, "swept 0 volume(s), 0 unfinished deletion(s)")) << again.output;
}

// Issue 12, point 9: sweep destroys (and counts, and records) the keyring
// keys of volumes that exist nowhere: no mount, no record, no backing. It
// runs in a user namespace of its own, whose root has a user keyring of its
// own: this sweep cannot reach the keys of volumes outside this test.
TEST_F(SweepTest, DestroysKeysOfVolumesThatExistNowhere) {
  const std::string orphan = "0f0e0d0c0b0a09080706050403020100";
  const std::string live = "00112233445566778899aabbccddeeff";
  // A volume the registry says a live daemon (this test) serves.
  ASSERT_TRUE(spit(run_dir_ + "/" + live + ".json",
                   "{\"id\": \"" + live + "\", \"backing\": \"" + backing("live") +
                       "\", \"mountpoint\": \"" + mnt("live") + "\", \"pid\": " +
                       std::to_string(::getpid()) + ", \"uid\": 0, \"gid\": 0, \"job\": \"\", "
                       "\"size_limit\": 0, \"started\": 0}\n",
                   0600));
  ASSERT_TRUE(spit(root_ + "/key", std::string(64, 'k'), 0600));
  const std::string script =
      "set -e; for id in " + orphan + " " + live + "; do keyctl padd user scratchcrypt:$id @u < " +
      root_ + "/key > /dev/null; done; \"$0\" sweep; "
      "keyctl search @u user scratchcrypt:" + orphan + " > /dev/null 2>&1 && echo orphan-kept || echo orphan-gone; "
      "keyctl search @u user scratchcrypt:" + live + " > /dev/null 2>&1 && echo live-kept || echo live-gone";
  RunResult r = sctest::run({"/usr/bin/unshare", "--user", "--map-root-user", "/bin/sh", "-c", script,
                             sctest::scratchcrypt_bin()});
  ASSERT_EQ(0, r.exit_code) << r.output;
  EXPECT_TRUE(contains(r.output, "1 stale key(s)")) << r.output;
  EXPECT_TRUE(contains(r.output, "orphan-gone")) << r.output;
  EXPECT_TRUE(contains(r.output, "live-kept")) << r.output;
  auto rec = wait_record(orphan, 1s);
  ASSERT_TRUE(rec.has_value()) << "no record for the destroyed key";
  EXPECT_EQ("sweep", rec->str("event"));
  EXPECT_TRUE((*rec)["key_destroyed"].boolean);
  EXPECT_TRUE((*rec)["verified"].boolean);
  for (const auto& other : records()) EXPECT_NE(live, other.str("volume")) << "a record for the live volume";
}

}  // namespace
}  // namespace lctest
