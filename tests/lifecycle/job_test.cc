// The scheduler's side: prologue/epilogue from options and from Slurm's
// environment, refusals (bad job id, bad configuration), the size limit, and
// how fast a node is ready for the next job after a big volume is wiped.
#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <csignal>
#include <sstream>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <thread>

#include "fuse/mounts.h"
#include "tests/fs/test_util.h"
#include "tests/lifecycle/lifecycle_util.h"

namespace lctest {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

class JobTest : public NodeTest {
 protected:
  std::string volume_id_at(const std::string& backing_dir) {
    std::istringstream in(slurp(backing_dir + "/.scratchcrypt-volume"));
    for (std::string line; std::getline(in, line);) {
      if (line.rfind("id ", 0) == 0) return line.substr(3);
    }
    return "";
  }
  // Checks the job's mount: where, whose, which mode, who may enter.
  void expect_job_mount(const std::string& job, uid_t uid, gid_t gid) {
    const std::string path = mount_root_ + "/" + job;
    EXPECT_TRUE(is_mountpoint(path)) << path;
    struct stat st;
    ASSERT_EQ(0, ::stat(path.c_str(), &st)) << std::strerror(errno);
    EXPECT_EQ(uid, st.st_uid);
    EXPECT_EQ(gid, st.st_gid);
    EXPECT_EQ(0700u, st.st_mode & 07777) << std::oct << st.st_mode;
    const std::string file = path + "/mine";
    auto owner = sctest::as_user(uid, gid, [&]() -> long {
      int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
      if (fd < 0) return -1;
      long ok = ::write(fd, "job data", 8);
      ::close(fd);
      return ok;
    });
    EXPECT_EQ(8, owner.value) << "the job's user cannot write its scratch: " << std::strerror(owner.err);
    const uid_t other = uid == sctest::kUserB ? sctest::kUserA : sctest::kUserB;
    auto stranger = sctest::as_user(other, other, [&]() -> long { return ::open(path.c_str(), O_RDONLY | O_DIRECTORY); });
    EXPECT_EQ(-1, stranger.value) << "another user opened the job's scratch";
    EXPECT_EQ(EACCES, stranger.err) << std::strerror(stranger.err);
    auto stranger_file = sctest::as_user(other, other, [&]() -> long { return ::open(file.c_str(), O_RDONLY); });
    EXPECT_EQ(-1, stranger_file.value) << "another user read a file of the job's scratch";
  }
};

TEST_F(JobTest, PrologueAndEpilogueWithExplicitOptions) {
  RunResult pro = sc({"prologue", "--job", "1234", "--uid", "60001", "--gid", "60002"});
  ASSERT_EQ(0, pro.exit_code) << pro.output;
  EXPECT_TRUE(contains(pro.output, "SCRATCH=" + mount_root_ + "/1234\n")) << pro.output;
  expect_job_mount("1234", 60001, 60002);
  const std::string id = volume_id_at(backing("1234"));
  ASSERT_FALSE(id.empty());
  track(id);
  EXPECT_GT(key_serial(id), 0);
  auto st = status_of(id);
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ("1234", st->str("job"));
  EXPECT_EQ(60001, st->num("uid"));

  // A second prologue for the same job is a no-op that prints the same path.
  RunResult again = sc({"prologue", "--job", "1234", "--uid", "60001", "--gid", "60002"});
  EXPECT_EQ(0, again.exit_code) << again.output;
  EXPECT_TRUE(contains(again.output, "SCRATCH=" + mount_root_ + "/1234")) << again.output;
  EXPECT_EQ(id, volume_id_at(backing("1234")));

  RunResult epi = sc({"epilogue", "--job", "1234"});
  ASSERT_EQ(0, epi.exit_code) << epi.output;
  EXPECT_FALSE(is_mountpoint(mount_root_ + "/1234"));
  EXPECT_FALSE(exists(mount_root_ + "/1234")) << "epilogue left the mount point directory";
  EXPECT_EQ(-1, key_serial(id));
  auto rec = wait_record(id, 10s);
  ASSERT_TRUE(rec.has_value()) << "epilogue wrote no record";
  EXPECT_EQ("1234", rec->str("job"));
  EXPECT_EQ(60001, rec->num("uid"));
  EXPECT_EQ("complete", rec->str("outcome"));
  EXPECT_TRUE((*rec)["verified"].boolean);
  EXPECT_FALSE(rec->str("deletion_finished").empty());
  EXPECT_FALSE(exists(backing("1234")));
}

TEST_F(JobTest, PrologueAndEpilogueFromSlurmEnvironment) {
  RunResult pro = run_env({"prologue"}, {"SLURM_JOB_ID=777", "SLURM_JOB_UID=60002", "SLURM_JOB_GID=60001"});
  ASSERT_EQ(0, pro.exit_code) << pro.output;
  EXPECT_TRUE(contains(pro.output, "SCRATCH=" + mount_root_ + "/777\n")) << pro.output;
  expect_job_mount("777", 60002, 60001);
  const std::string id = volume_id_at(backing("777"));
  ASSERT_FALSE(id.empty());
  track(id);

  // A job that is still running something in its scratch at the end.
  pid_t straggler = ::fork();
  if (straggler == 0) {
    if (::chdir((mount_root_ + "/777").c_str()) != 0) _exit(1);
    ::pause();
    _exit(0);
  }
  std::this_thread::sleep_for(50ms);
  RunResult epi = run_env({"epilogue"}, {"SLURM_JOB_ID=777"});
  ASSERT_EQ(0, epi.exit_code) << epi.output;
  EXPECT_FALSE(is_mountpoint(mount_root_ + "/777"));
  EXPECT_EQ(-1, key_serial(id));
  auto rec = wait_record(id, 10s);
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ("777", rec->str("job"));
  EXPECT_TRUE((*rec)["forced"].boolean);
  EXPECT_EQ("complete", rec->str("outcome"));
  ::kill(straggler, SIGKILL);
  wait_gone(straggler, 5s);
}

TEST_F(JobTest, EpilogueOfAJobWithoutVolumeSucceeds) {
  RunResult epi = sc({"epilogue", "--job", "4242"});
  EXPECT_EQ(0, epi.exit_code) << epi.output;
  RunResult env = run_env({"epilogue"}, {"SLURM_JOB_ID=4243"});
  EXPECT_EQ(0, env.exit_code) << env.output;
  EXPECT_FALSE(exists(record_log_)) << "a record for a job that had no volume";
}

TEST_F(JobTest, BadJobIdsAreRefused) {
  for (const std::string& job : std::vector<std::string>{"../x", "..", ".", "a/b", "/etc", "x y", std::string(65, 'j')}) {
    RunResult pro = sc({"prologue", "--job", job, "--uid", "60001", "--gid", "60001"});
    EXPECT_EQ(2, pro.exit_code) << "prologue --job '" << job << "': " << pro.output;
    EXPECT_TRUE(contains(pro.output, "job id")) << pro.output;
    RunResult epi = sc({"epilogue", "--job", job});
    EXPECT_EQ(2, epi.exit_code) << "epilogue --job '" << job << "': " << epi.output;
  }
  RunResult env = run_env({"prologue"}, {"SLURM_JOB_ID=../x", "SLURM_JOB_UID=60001", "SLURM_JOB_GID=60001"});
  EXPECT_EQ(2, env.exit_code) << env.output;
  EXPECT_FALSE(exists(root_ + "/x"));
  EXPECT_FALSE(exists("/etc/.scratchcrypt-volume"));
  EXPECT_TRUE(sctest::run({"/bin/rmdir", mount_root_}).exit_code == 0) << "something was created in mount_root";
  ASSERT_EQ(0, ::mkdir(mount_root_.c_str(), 0755));
  for (const auto& f : files_under(backing_root_)) ADD_FAILURE() << "created: " << f;
}

TEST_F(JobTest, BadConfigurationIsRejectedWithFileAndLine) {
  const std::string scratch = root_ + "/bad-scratch";
  struct Case {
    std::string text;
    int line;
  };
  const std::vector<Case> cases = {
      {"backing_root = " + backing_root_ + "\nmount_root = " + scratch + "\nthis line is bad\n", 3},
      {"# comment\nbacking_root = " + backing_root_ + "\nmount_root = " + scratch + "\nsize_limt = 1G\n", 4},
      {"backing_root = " + backing_root_ + "\nsize_limit = lots\nmount_root = " + scratch + "\n", 2},
      {"mount_root = relative/path\n", 1},
      {"backing_root = " + backing_root_ + "\nmount_root = " + scratch + "\nmode = shared\n", 3},
  };
  const std::string conf = root_ + "/bad.conf";
  for (const auto& c : cases) {
    ASSERT_TRUE(spit(conf, c.text));
    RunResult pro = sc({"prologue", "--config", conf, "--job", "5", "--uid", "60001", "--gid", "60001"});
    EXPECT_EQ(2, pro.exit_code) << c.text << pro.output;
    EXPECT_TRUE(contains(pro.output, conf + ":" + std::to_string(c.line))) << c.text << "\n" << pro.output;
    RunResult env = run_env({"prologue", "--job", "5", "--uid", "60001", "--gid", "60001"},
                            {"SCRATCHCRYPT_CONFIG=" + conf});
    EXPECT_EQ(2, env.exit_code) << env.output;
    RunResult epi = sc({"epilogue", "--config", conf, "--job", "5"});
    EXPECT_EQ(2, epi.exit_code) << epi.output;
    EXPECT_FALSE(exists(scratch)) << "something was made for a rejected configuration";
    EXPECT_FALSE(is_mountpoint(scratch + "/5"));
    EXPECT_TRUE(files_under(backing_root_).empty());
  }
}

TEST_F(JobTest, SizeLimitGivesEnospcAndShowsInDf) {
  ASSERT_TRUE(spit(config_, "backing_root = " + backing_root_ + "\nmount_root = " + mount_root_ +
                                "\nrecord_log = " + record_log_ + "\nsize_limit = 8M\n"));
  RunResult pro = sc({"prologue", "--job", "sz", "--uid", "60001", "--gid", "60001"});
  ASSERT_EQ(0, pro.exit_code) << pro.output;
  const std::string path = mount_root_ + "/sz";
  track(volume_id_at(backing("sz")));

  struct statvfs vfs;
  ASSERT_EQ(0, ::statvfs(path.c_str(), &vfs));
  EXPECT_EQ(uint64_t{8} << 20, uint64_t{vfs.f_blocks} * vfs.f_frsize);
  RunResult df = sctest::run({"/bin/df", "-B1", "--output=size", path});
  ASSERT_EQ(0, df.exit_code) << df.output;
  EXPECT_TRUE(contains(df.output, std::to_string(8 << 20))) << df.output;

  int fd = ::open((path + "/fill").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  const std::string chunk(64 << 10, 'f');
  uint64_t written = 0;
  int err = 0;
  while (written < (uint64_t{16} << 20)) {
    ssize_t n = ::write(fd, chunk.data(), chunk.size());
    if (n < 0) {
      err = errno;
      break;
    }
    written += static_cast<uint64_t>(n);
  }
  ::close(fd);
  EXPECT_EQ(ENOSPC, err) << "wrote " << written << " bytes past an 8 MiB limit: " << std::strerror(err);
  EXPECT_LE(written, uint64_t{8} << 20);
  EXPECT_GE(written, uint64_t{7} << 20) << "the limit cut in far too early";
  ASSERT_EQ(0, ::statvfs(path.c_str(), &vfs));
  EXPECT_LT(uint64_t{vfs.f_bavail} * vfs.f_frsize, uint64_t{1} << 20) << "df shows space left when full";
  // Space comes back when the file goes.
  ASSERT_EQ(0, ::unlink((path + "/fill").c_str()));
  EXPECT_TRUE(spit(path + "/again", std::string(1 << 20, 'a')));

  const std::string id = volume_id_at(backing("sz"));
  RunResult epi = sc({"epilogue", "--job", "sz"});
  EXPECT_EQ(0, epi.exit_code) << epi.output;
  EXPECT_TRUE(wait_record(id, 30s).has_value());
}

// A job may create more files than the descriptor limit the prologue ran
// with (Slurm prologs and systemd services often start at a soft limit of
// 1024): the daemon must not run out of descriptors on the job.
TEST_F(JobTest, ManyFilesUnderALowInheritedDescriptorLimit) {
  struct rlimit lim;
  ASSERT_EQ(0, ::getrlimit(RLIMIT_NOFILE, &lim));
  if (lim.rlim_max < 8192) GTEST_SKIP() << "hard descriptor limit too low to test: " << lim.rlim_max;
  RunResult pro = sctest::run({"/usr/bin/prlimit", "--nofile=1024:" + std::to_string(lim.rlim_max),
                               sctest::scratchcrypt_bin(), "prologue", "--job", "fds", "--uid", "60001", "--gid", "60001"});
  ASSERT_EQ(0, pro.exit_code) << pro.output;
  const std::string path = mount_root_ + "/fds";
  track(volume_id_at(backing("fds")));
  constexpr int kFiles = 3000;
  int failed_at = -1, err = 0;
  for (int i = 0; i < kFiles && failed_at < 0; ++i) {
    const std::string name = path + "/f" + std::to_string(i);
    int fd = ::open(name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
      failed_at = i;
      err = errno;
    } else {
      ::close(fd);
    }
  }
  EXPECT_EQ(-1, failed_at) << "creating file " << failed_at << " of " << kFiles << " failed: " << std::strerror(err)
                           << " (the daemon keeps a descriptor per known inode and kept the inherited soft "
                              "limit of 1024)";
  const std::string id = volume_id_at(backing("fds"));
  RunResult epi = sc({"epilogue", "--job", "fds"});
  EXPECT_EQ(0, epi.exit_code) << epi.output;
  EXPECT_TRUE(wait_record(id, 30s).has_value());
}

// The next job can start (volume mounted on the same paths) almost at once
// after a big volume is wiped: crypto-erase is synchronous, deletion is not.
TEST_F(JobTest, NewVolumeSoonAfterWipingManyFiles) {
  const char* want_env = std::getenv("LIFECYCLE_FILES");
  const long want = want_env != nullptr ? std::atol(want_env) : 100000;
  // Creating files through FUSE is the slow part (1500-2000 files/s on the
  // 2-core test machine, so 100,000 files take about a minute); the default
  // budget keeps the suite short. LIFECYCLE_CREATE_SECONDS=70 reaches 100k.
  const char* budget_env = std::getenv("LIFECYCLE_CREATE_SECONDS");
  const auto budget = std::chrono::seconds(budget_env != nullptr ? std::atol(budget_env) : 30);

  RunResult pro = sc({"prologue", "--job", "big", "--uid", "60001", "--gid", "60001"});
  ASSERT_EQ(0, pro.exit_code) << pro.output;
  const std::string path = mount_root_ + "/big";
  const std::string old_id = volume_id_at(backing("big"));
  ASSERT_FALSE(old_id.empty());
  track(old_id);

  // Create the files (two threads, 1000 per directory) until `want` or the
  // time budget.
  const auto start = Clock::now();
  std::atomic<long> made{0};
  std::atomic<bool> out_of_time{false};
  std::mutex error_mu;
  std::string error;
  constexpr long kPerDir = 1000;
  const long dirs = (want + kPerDir - 1) / kPerDir;
  auto worker = [&](long first_dir, long step) {
    for (long d = first_dir; d < dirs && error.empty() && !out_of_time; d += step) {
      const std::string dir = path + "/d" + std::to_string(d);
      int dfd = -1;
      if (::mkdir(dir.c_str(), 0700) != 0 || (dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        std::lock_guard lock(error_mu);
        error = "mkdir/open " + dir + ": " + std::strerror(errno);
        return;
      }
      for (long i = 0; i < kPerDir && d * kPerDir + i < want; ++i) {
        char name[32];
        std::snprintf(name, sizeof name, "f%ld", i);
        int fd = ::openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0 || ::write(fd, name, 4) != 4) {
          std::lock_guard lock(error_mu);
          error = dir + "/" + name + ": " + std::strerror(errno);
          break;
        }
        ::close(fd);
        // The daemon holds a descriptor per inode the kernel remembers
        // (see ManyFilesUnderALowInheritedDescriptorLimit); let the kernel
        // forget them now and then so that this test measures the wipe.
        if (++made % 4000 == 0) std::ofstream("/proc/sys/vm/drop_caches") << "2" << std::flush;
        if ((i & 63) == 0 && Clock::now() - start > budget) {
          out_of_time = true;
          break;
        }
      }
      ::close(dfd);
    }
  };
  std::thread t1(worker, 0, 2), t2(worker, 1, 2);
  t1.join();
  t2.join();
  ASSERT_TRUE(error.empty()) << "creating files failed: " << error;
  const double create_s = std::chrono::duration<double>(Clock::now() - start).count();
  std::printf("[   INFO   ] created %ld files through the mount in %.1f s (%.0f files/s)%s\n", made.load(),
              create_s, made / create_s, made < want ? " (time budget reached)" : "");
  ASSERT_GE(made.load(), std::min(want, 1000L));

  const auto wipe_start = Clock::now();
  RunResult epi = sc({"epilogue", "--job", "big"});
  const auto wiped = Clock::now();
  RunResult next = sc({"prologue", "--job", "big", "--uid", "60002", "--gid", "60002"});
  const auto ready = Clock::now();
  ASSERT_EQ(0, epi.exit_code) << epi.output;
  ASSERT_EQ(0, next.exit_code) << next.output;
  const double total = std::chrono::duration<double>(ready - wipe_start).count();
  std::printf("[   INFO   ] wipe of %ld files to next volume mounted: %.3f s (epilogue %.3f s, prologue %.3f s)\n",
              made.load(), total, std::chrono::duration<double>(wiped - wipe_start).count(),
              std::chrono::duration<double>(ready - wiped).count());
  EXPECT_LT(total, 3.0) << "goal: under 1 s";

  const std::string new_id = volume_id_at(backing("big"));
  track(new_id);
  EXPECT_NE(old_id, new_id);
  EXPECT_EQ(-1, key_serial(old_id));
  expect_job_mount("big", 60002, 60002);
  EXPECT_FALSE(exists(path + "/d0")) << "the new volume shows the old files";

  auto rec = wait_record(old_id, 120s);
  ASSERT_TRUE(rec.has_value()) << "no record of the old volume's deletion within 120 s";
  const double delete_s = std::chrono::duration<double>(Clock::now() - wipe_start).count();
  std::printf("[   INFO   ] deletion finished (record written) %.1f s after the wipe started (%.0f files/s)\n",
              delete_s, made / delete_s);
  std::printf("[   INFO   ] record: crypto_erase_ms %.0f, duration_ms %.0f, files_removed %.0f\n",
              rec->num("crypto_erase_ms"), rec->num("duration_ms"), rec->num("files_removed"));
  EXPECT_FALSE(rec->str("deletion_finished").empty());
  // (Its outcome: RecordStaysCompleteWhenTheNextJobTakesThePath.)
  if (contains(slurp(backing("big") + "/.scratchcrypt-volume"), "\nlayout block\n")) {
    // Block layout: the backing holds the header and one image file.
    EXPECT_EQ(2, rec->num("files_removed"));
  } else {
    EXPECT_GE(rec->num("files_removed"), static_cast<double>(made.load()));
    EXPECT_GE(rec->num("bytes_removed"), static_cast<double>(made.load() * 4));
  }
  // Nothing of the old volume left beside the new one.
  if (DIR* d = ::opendir(backing_root_.c_str())) {
    while (dirent* e = ::readdir(d)) {
      const std::string name = e->d_name;
      EXPECT_TRUE(name == "." || name == ".." || name == "big") << "left in backing_root: " << name;
    }
    ::closedir(d);
  }
  RunResult end = sc({"epilogue", "--job", "big"});
  EXPECT_EQ(0, end.exit_code) << end.output;
  EXPECT_TRUE(wait_record(new_id, 30s).has_value());
}

// A per-job volume's path is taken again at once when the same job id comes
// back (a requeued job; always in node mode) while the old ciphertext is
// still being deleted in the background: that deletion must still be
// recorded as complete.
TEST_F(JobTest, RecordStaysCompleteWhenTheNextJobTakesThePath) {
  RunResult pro = sc({"prologue", "--job", "again", "--uid", "60001", "--gid", "60001"});
  ASSERT_EQ(0, pro.exit_code) << pro.output;
  const std::string old_id = volume_id_at(backing("again"));
  ASSERT_FALSE(old_id.empty());
  track(old_id);
  ASSERT_TRUE(spit(mount_root_ + "/again/file", "data"));
  // Bulk in the backing (written natively: fast), so that deleting it takes
  // longer than the epilogue waits for it.
  const std::string bulk = backing("again") + "/bulk";
  ASSERT_EQ(0, ::mkdir(bulk.c_str(), 0700));
  for (int d = 0; d < 40; ++d) {
    const std::string dir = bulk + "/" + std::to_string(d);
    ASSERT_EQ(0, ::mkdir(dir.c_str(), 0700));
    for (int i = 0; i < 1000; ++i) {
      int fd = ::open((dir + "/" + std::to_string(i)).c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
      ASSERT_GE(fd, 0);
      ::close(fd);
    }
  }
  RunResult epi = sc({"epilogue", "--job", "again"});
  ASSERT_EQ(0, epi.exit_code) << epi.output;
  RunResult next = sc({"prologue", "--job", "again", "--uid", "60001", "--gid", "60001"});
  ASSERT_EQ(0, next.exit_code) << next.output;
  const std::string new_id = volume_id_at(backing("again"));
  track(new_id);
  ASSERT_NE(old_id, new_id);
  auto rec = wait_record(old_id, 60s);
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ("complete", rec->str("outcome")) << slurp(record_log_);
  EXPECT_TRUE((*rec)["verified"].boolean);
  EXPECT_GE(rec->num("files_removed"), 40000);
  RunResult end = sc({"epilogue", "--job", "again"});
  EXPECT_EQ(0, end.exit_code) << end.output;
  EXPECT_TRUE(wait_record(new_id, 30s).has_value());
}

// Issue 12, point 6: the prologue trusts nothing it finds. Each attack
// leaves the job without a volume (exit 4, a message naming the fix), and
// nothing mounted, made or chowned anywhere else.
class PrologueAttackTest : public JobTest {
 protected:
  RunResult prologue(const std::string& job) {
    return sc({"prologue", "--job", job, "--uid", std::to_string(sctest::kUserA), "--gid",
               std::to_string(sctest::kUserA)});
  }
  // Nothing of the job's: no mount anywhere under the test, no key, no
  // volume in backing_root.
  void expect_no_volume(const std::string& job) {
    for (const auto& m : scratchcrypt::list_mounts()) {
      EXPECT_FALSE(m.fstype == "fuse.scratchcrypt" && m.mountpoint.rfind(root_ + "/", 0) == 0)
          << "mounted at " << m.mountpoint;
    }
    EXPECT_FALSE(exists(backing(job) + "/.scratchcrypt-volume"));
  }
};

TEST_F(PrologueAttackTest, SymlinkPlantedAtTheNextJobsMountPoint) {
  // Where the link points: a directory the attacker wants a volume (owned
  // by the attacker) mounted over.
  const std::string target = root_ + "/victim";
  ASSERT_EQ(0, ::mkdir(target.c_str(), 0755));
  ASSERT_EQ(0, ::symlink(target.c_str(), (mount_root_ + "/next").c_str()));
  RunResult r = prologue("next");
  EXPECT_EQ(4, r.exit_code) << r.output;
  EXPECT_TRUE(contains(r.output, mount_root_ + "/next already exists")) << r.output;
  EXPECT_FALSE(is_mountpoint(target)) << "root mounted the job's volume over the link's target";
  struct stat st;
  ASSERT_EQ(0, ::lstat((mount_root_ + "/next").c_str(), &st));
  EXPECT_TRUE(S_ISLNK(st.st_mode)) << "the planted link was replaced";
  ASSERT_EQ(0, ::stat(target.c_str(), &st));
  EXPECT_EQ(0u, st.st_uid);
  expect_no_volume("next");
  EXPECT_FALSE(exists(backing("next"))) << "the refused prologue left its backing directory";
}

TEST_F(PrologueAttackTest, PreCreatedMountPoint) {
  const std::string dir = mount_root_ + "/pre";
  ASSERT_EQ(0, ::mkdir(dir.c_str(), 0777));
  ASSERT_EQ(0, ::chown(dir.c_str(), sctest::kUserB, sctest::kUserB));
  RunResult r = prologue("pre");
  EXPECT_EQ(4, r.exit_code) << r.output;
  EXPECT_TRUE(contains(r.output, "already exists")) << r.output;
  EXPECT_FALSE(is_mountpoint(dir));
  struct stat st;
  ASSERT_EQ(0, ::stat(dir.c_str(), &st));
  EXPECT_EQ(sctest::kUserB, st.st_uid) << "the planted directory was taken over";
  expect_no_volume("pre");
}

TEST_F(PrologueAttackTest, GroupWritableMountRoot) {
  ASSERT_EQ(0, ::chown(mount_root_.c_str(), 0, sctest::kUserB));
  ASSERT_EQ(0, ::chmod(mount_root_.c_str(), 0775));
  RunResult r = prologue("gw");
  EXPECT_EQ(4, r.exit_code) << r.output;
  EXPECT_TRUE(contains(r.output, "mount_root " + mount_root_ + " is writable by its group")) << r.output;
  EXPECT_TRUE(contains(r.output, "chown root: " + mount_root_ + " && chmod go-w " + mount_root_)) << r.output;
  EXPECT_FALSE(exists(mount_root_ + "/gw"));
  expect_no_volume("gw");
  // The fix the message names makes the node usable.
  ASSERT_EQ(0, ::chown(mount_root_.c_str(), 0, 0));
  ASSERT_EQ(0, ::chmod(mount_root_.c_str(), 0755));
  RunResult ok = prologue("gw");
  EXPECT_EQ(0, ok.exit_code) << ok.output;
  EXPECT_EQ(0, sc({"epilogue", "--job", "gw"}).exit_code);
}

TEST_F(PrologueAttackTest, BackingRootNotOwnedByRoot) {
  ASSERT_EQ(0, ::chown(backing_root_.c_str(), sctest::kUserA, sctest::kUserA));
  RunResult r = prologue("own");
  EXPECT_EQ(4, r.exit_code) << r.output;
  EXPECT_TRUE(contains(r.output, "backing_root " + backing_root_ + " is owned by uid " +
                                     std::to_string(sctest::kUserA)))
      << r.output;
  EXPECT_TRUE(contains(r.output, "chown root: " + backing_root_)) << r.output;
  EXPECT_FALSE(exists(mount_root_ + "/own"));
  expect_no_volume("own");
  ASSERT_EQ(0, ::chown(backing_root_.c_str(), 0, 0));
}

}  // namespace
}  // namespace lctest
