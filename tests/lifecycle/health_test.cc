// `scratchcrypt health`: each problem kind is made for real on a private
// node, health must print exactly its line and exit 1, and once the problem
// is fixed the way the line says, print "ok" and exit 0.
//
// A check polls for a few seconds until the output is the expected one:
// mounts and keys of other tests on the machine may pass through states
// health would report for a moment.
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "crypto/keyring.h"
#include "crypto/volume_key.h"
#include "tests/lifecycle/lifecycle_util.h"

namespace lctest {
namespace {

using namespace std::chrono_literals;

class HealthTest : public NodeTest {
 protected:
  void SetUp() override {
    NodeTest::SetUp();
    // No FITRIM after the wipes here: it scans the machine's whole /tmp file
    // system (seconds, under load far more) and nothing here looks at it.
    ASSERT_TRUE(spit(config_, slurp(config_) + "trim = no\n"));
  }

  // Runs `health` until it prints exactly `lines` (or "ok" when empty) or
  // 10 s have passed; then checks output and exit status.
  void expect_health(const std::vector<std::string>& lines, const std::vector<std::string>& extra = {}) {
    std::string want;
    for (const auto& line : lines) want += line + "\n";
    if (lines.empty()) want = "ok\n";
    std::vector<std::string> args = {"health"};
    args.insert(args.end(), extra.begin(), extra.end());
    RunResult r;
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    do {
      r = sc(args);
      if (r.output == want) break;
      std::this_thread::sleep_for(100ms);
    } while (std::chrono::steady_clock::now() < deadline);
    EXPECT_EQ(want, r.output);
    EXPECT_EQ(lines.empty() ? 0 : 1, r.exit_code) << r.output;
  }

  // Kills a volume's daemon as a crash would.
  pid_t kill_daemon(const std::string& name) {
    const pid_t pid = lock_holder(backing(name));
    EXPECT_GT(pid, 0);
    if (pid <= 0) return pid;
    EXPECT_EQ(0, ::kill(pid, SIGKILL));
    EXPECT_TRUE(wait_gone(pid, 5s));
    return pid;
  }

  static std::string dead_mount_line(const std::string& mountpoint, const std::string& id) {
    return "dead mount: " + mountpoint + " (volume " + id +
           ") does not answer (ENOTCONN), its daemon is gone; end it with `scratchcrypt wipe "
           "--force " + mountpoint + "` (or bring it back with `scratchcrypt mount --recover`)";
  }
  static std::string leftover_line(const std::string& id, const std::string& backing_dir) {
    return "leftover volume: " + id + " in " + backing_dir +
           " is stored but no daemon serves it; end it with `scratchcrypt wipe " + backing_dir +
           "` (or `scratchcrypt sweep`)";
  }
};

TEST_F(HealthTest, AFreshNodeAndALiveVolumeAreOk) {
  expect_health({});
  const std::string id = make_volume("live");
  ASSERT_FALSE(id.empty());
  ASSERT_TRUE(spit(mnt("live") + "/f", "data"));
  expect_health({});
}

TEST_F(HealthTest, DeadMountUntilWiped) {
  const std::string id = make_volume("a");
  ASSERT_FALSE(id.empty());
  kill_daemon("a");
  expect_health({dead_mount_line(mnt("a"), id)});
  RunResult w = sc({"wipe", "--force", "--wait", mnt("a")});
  ASSERT_EQ(0, w.exit_code) << w.output;
  expect_health({});
}

TEST_F(HealthTest, DeadDaemonWithoutMountUntilWiped) {
  const std::string id = make_volume("b");
  ASSERT_FALSE(id.empty());
  const pid_t pid = kill_daemon("b");
  ASSERT_EQ(0, ::umount2(mnt("b").c_str(), MNT_DETACH)) << std::strerror(errno);
  expect_health({"dead daemon: volume " + id + " at " + mnt("b") + ": its daemon (pid " +
                 std::to_string(pid) + ") is gone and it is not mounted; end it with "
                 "`scratchcrypt wipe " + id + "`"});
  RunResult w = sc({"wipe", "--wait", id});
  ASSERT_EQ(0, w.exit_code) << w.output;
  expect_health({});
}

// A hung daemon whose mount was detached: registered, alive, not mounted.
// Once it runs again it sees its connection gone and exits, leaving the
// stored volume that no daemon serves.
TEST_F(HealthTest, RecordWithoutMountThenLeftoverVolume) {
  const std::string id = make_volume("c");
  ASSERT_FALSE(id.empty());
  const pid_t pid = lock_holder(backing("c"));
  ASSERT_GT(pid, 0);
  ASSERT_EQ(0, ::kill(pid, SIGSTOP));
  ASSERT_EQ(0, ::umount2(mnt("c").c_str(), MNT_DETACH)) << std::strerror(errno);
  expect_health({"stale record: volume " + id + " is registered at " + mnt("c") +
                 ", which is not mounted, while its daemon (pid " + std::to_string(pid) +
                 ") still runs; end it with `scratchcrypt wipe " + id + "`"});
  ASSERT_EQ(0, ::kill(pid, SIGCONT));
  ASSERT_TRUE(wait_gone(pid, 5s)) << "the daemon did not exit after losing its mount";
  expect_health({leftover_line(id, backing("c"))});
  RunResult w = sc({"wipe", "--wait", backing("c")});
  ASSERT_EQ(0, w.exit_code) << w.output;
  expect_health({});
}

TEST_F(HealthTest, UnmountedVolumeIsALeftover) {
  const std::string id = make_volume("d");
  ASSERT_FALSE(id.empty());
  RunResult um = sc({"umount", mnt("d")});
  ASSERT_EQ(0, um.exit_code) << um.output;
  expect_health({leftover_line(id, backing("d"))});
  RunResult w = sc({"wipe", "--wait", backing("d")});
  ASSERT_EQ(0, w.exit_code) << w.output;
  expect_health({});
}

TEST_F(HealthTest, UnfinishedDeletionUntilFinished) {
  const std::string trash = backing_root_ + "/.wiped-00112233445566778899aabbccddeeff";
  ASSERT_EQ(0, ::mkdir(trash.c_str(), 0700));
  ASSERT_TRUE(spit(trash + "/x", std::string(3000, 'c')));
  expect_health({"unfinished deletion: " + trash +
                 " (an earlier wipe could not delete it); fix the cause, then run "
                 "`scratchcrypt sweep`"});
  // The next job's prologue or epilogue finishes it (as sweep would, which
  // also acts on other volumes of this shared test machine).
  RunResult epi = sc({"epilogue", "--job", "none"});
  ASSERT_EQ(0, epi.exit_code) << epi.output;
  EXPECT_FALSE(exists(trash));
  expect_health({});
}

// A key that outlived its volume's wipe. (Wipe destroys and verifies the
// key, so the test puts one back under the wiped volume's id.) A key of a
// volume this node never had is not its business: the keyring is shared
// with other configurations (here: other tests).
TEST_F(HealthTest, StaleKeyUntilRemoved) {
  const std::string id = make_volume("k");
  ASSERT_FALSE(id.empty());
  RunResult w = sc({"wipe", "--wait", mnt("k")});
  ASSERT_EQ(0, w.exit_code) << w.output;
  const std::string foreign = "feedface00000000feedface00000000";
  track(foreign);  // teardown drops both keys whatever happens
  scratchcrypt::keyring::store(foreign, scratchcrypt::VolumeKey::generate());
  scratchcrypt::keyring::store(id, scratchcrypt::VolumeKey::generate());
  expect_health({"stale key: scratchcrypt:" + id +
                 " in root's keyring belongs to a volume this node has ended; remove it with "
                 "`keyctl invalidate $(keyctl search @u user scratchcrypt:" + id + ")`"});
  RunResult k = sctest::run({"/bin/sh", "-c", "keyctl invalidate $(keyctl search @u user scratchcrypt:" + id + ")"});
  ASSERT_EQ(0, k.exit_code) << k.output;
  expect_health({});
}

TEST_F(HealthTest, FullBackingDiskAgainstTheConfiguredThreshold) {
  const std::string disk = root_ + "/disk";
  ASSERT_EQ(0, ::mkdir(disk.c_str(), 0700));
  ASSERT_EQ(0, ::mount("tmpfs", disk.c_str(), "tmpfs", 0, "size=4m,mode=0700")) << std::strerror(errno);
  const std::string small_root = disk + "/backing";
  ASSERT_EQ(0, ::mkdir(small_root.c_str(), 0700));
  const std::string base = "backing_root = " + small_root + "\nmount_root = " + mount_root_ +
                           "\nrecord_log = " + record_log_ + "\n";
  ASSERT_TRUE(spit(config_, base));
  expect_health({});
  // 3.9 MiB of 4 MiB.
  ASSERT_TRUE(spit(disk + "/fill", std::string(3900 * 1024, 'f')));
  struct statvfs vfs;
  ASSERT_EQ(0, ::statvfs(small_root.c_str(), &vfs));
  const double used = static_cast<double>(vfs.f_blocks - vfs.f_bfree);
  const int percent = static_cast<int>(used * 100.0 / (used + static_cast<double>(vfs.f_bavail)) + 0.999);
  ASSERT_GE(percent, 95);
  expect_health({"backing disk full: " + small_root + " is " + std::to_string(percent) +
                 "% used (health_disk_full = 95%); free space there or raise health_disk_full"});
  // A threshold above the use: healthy; below it again: full.
  ASSERT_TRUE(spit(config_, base + "health_disk_full = 100%\n"));
  if (percent < 100) expect_health({});
  ASSERT_TRUE(spit(config_, base + "health_disk_full = 50\n"));
  expect_health({"backing disk full: " + small_root + " is " + std::to_string(percent) +
                 "% used (health_disk_full = 50%); free space there or raise health_disk_full"});
  ASSERT_EQ(0, ::unlink((disk + "/fill").c_str()));
  expect_health({});
}

// layout = block needs a loop device: here loop devices work, so ok; then
// health runs in a mount namespace of its own whose /dev/loop-control is
// /dev/null (it opens, but hands out no device), as on a node without the
// loop module's control device working.
TEST_F(HealthTest, BlockLayoutWithoutALoopDevice) {
  auto health_without_loop_control = [&] {
    return sctest::run({"/usr/bin/unshare", "--mount", "--propagation", "private", "/bin/sh", "-c",
                        "mount --bind /dev/null /dev/loop-control && exec \"$0\" \"$@\"",
                        sctest::scratchcrypt_bin(), "health", "--config", config_});
  };
  ASSERT_TRUE(spit(config_, slurp(config_) + "layout = block\n"));
  expect_health({});
  const RunResult r = health_without_loop_control();
  EXPECT_EQ(1, r.exit_code) << r.output;
  EXPECT_EQ("no loop device: layout = block but /dev/loop-control has no free loop device to "
            "give: Inappropriate ioctl for device; load the loop module (modprobe loop, raise "
            "max_loop), pass /dev/loop-control and /dev/loop* into the container, or set layout = "
            "files\n",
            r.output);
  // layout = auto falls back to files on such a node: not a problem.
  ASSERT_TRUE(spit(config_, slurp(config_) + "layout = auto\n"));
  const RunResult fallback = health_without_loop_control();
  EXPECT_EQ(0, fallback.exit_code) << fallback.output;
}

TEST_F(HealthTest, UnreadableOrInvalidConfiguration) {
  ASSERT_TRUE(spit(config_, "backing_root = " + backing_root_ + "\nbogus = 1\n"));
  expect_health({"configuration: " + config_ + ":2: unknown setting 'bogus' (see scratchcrypt(8), CONFIGURATION)"});
  ASSERT_TRUE(spit(config_, "backing_root = " + backing_root_ + "\nhealth_disk_full = 0\n"));
  expect_health({"configuration: " + config_ + ":2: health_disk_full must be a percentage from 1 to 100 (got '0')"});
  const std::string missing = root_ + "/missing.conf";
  expect_health({"configuration: configuration file " + missing + " cannot be read"}, {"--config", missing});
  ASSERT_TRUE(spit(config_, "backing_root = " + backing_root_ + "\nmount_root = " + mount_root_ + "\n"));
  expect_health({});
}

TEST_F(HealthTest, EveryProblemHasItsLine) {
  // Several at once: one line each, in a stable order.
  const std::string dead = make_volume("dead");
  const std::string stored = make_volume("stored");
  ASSERT_FALSE(dead.empty());
  ASSERT_FALSE(stored.empty());
  kill_daemon("dead");
  RunResult um = sc({"umount", mnt("stored")});
  ASSERT_EQ(0, um.exit_code) << um.output;
  const std::string trash = backing_root_ + "/.wiped-ffeeddccbbaa99887766554433221100";
  ASSERT_EQ(0, ::mkdir(trash.c_str(), 0700));
  expect_health({dead_mount_line(mnt("dead"), dead), leftover_line(stored, backing("stored")),
                 "unfinished deletion: " + trash +
                     " (an earlier wipe could not delete it); fix the cause, then run "
                     "`scratchcrypt sweep`"});
}

}  // namespace
}  // namespace lctest
