// The metrics file (metrics_file, tools/metrics.h): after real prologue and
// epilogue cycles its values are those of the wipe records, it passes the
// exposition-format check (tests/lifecycle/check_metrics.py, which uses
// prometheus_client's parser), its counters carry on across a rotated record
// log and a deleted metrics file, and a failed wipe is counted with its time.
#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cmath>
#include <ctime>
#include <set>
#include <sstream>
#include <thread>

#include "tests/lifecycle/lifecycle_util.h"

namespace lctest {
namespace {

using namespace std::chrono_literals;

// Sets or clears FS_IMMUTABLE_FL (chattr +i / -i).
bool set_immutable(const std::string& path, bool on) {
  int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return false;
  int flags = 0;
  bool ok = ::ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0;
  flags = on ? (flags | FS_IMMUTABLE_FL) : (flags & ~FS_IMMUTABLE_FL);
  ok = ok && ::ioctl(fd, FS_IOC_SETFLAGS, &flags) == 0;
  ::close(fd);
  return ok;
}

// "2026-11-24T08:55:06.006Z" as unix seconds.
double iso_seconds(const std::string& text) {
  tm t = {};
  int ms = 0;
  if (std::sscanf(text.c_str(), "%d-%d-%dT%d:%d:%d.%dZ", &t.tm_year, &t.tm_mon, &t.tm_mday,
                  &t.tm_hour, &t.tm_min, &t.tm_sec, &ms) != 7) {
    return -1;
  }
  t.tm_year -= 1900;
  t.tm_mon -= 1;
  return static_cast<double>(::timegm(&t)) + ms / 1000.0;
}

class MetricsTest : public NodeTest {
 protected:
  void SetUp() override {
    NodeTest::SetUp();
    metrics_dir_ = root_ + "/textfile";
    metrics_ = metrics_dir_ + "/scratchcrypt.prom";
    // (trim = no: FITRIM would scan the machine's whole /tmp file system.)
    ASSERT_TRUE(spit(config_, slurp(config_) + "metrics_file = " + metrics_ + "\ntrim = no\n"));
  }

  // The samples of the metrics file: "name{labels}" -> value.
  std::map<std::string, double> samples() {
    std::map<std::string, double> out;
    std::istringstream in(slurp(metrics_));
    for (std::string line; std::getline(in, line);) {
      if (line.empty() || line[0] == '#') continue;
      const auto space = line.rfind(' ');
      out[line.substr(0, space)] = std::strtod(line.c_str() + space + 1, nullptr);
    }
    return out;
  }
  // Waits until `name` has `value` (the background deletion updates the
  // file after the epilogue has returned; fsyncs can take seconds on a busy
  // machine); returns the samples then.
  std::map<std::string, double> wait_for(const std::string& name, double value) {
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    std::map<std::string, double> s;
    do {
      sctest::reap_orphans();
      s = samples();
      if (s.count(name) && s[name] == value) break;
      std::this_thread::sleep_for(20ms);
    } while (std::chrono::steady_clock::now() < deadline);
    EXPECT_EQ(value, s[name]) << name << " in\n" << slurp(metrics_);
    return s;
  }
  void expect_valid_format() {
    RunResult r = sctest::run({"/usr/bin/python3", sctest::source_dir() + "/tests/lifecycle/check_metrics.py", metrics_});
    EXPECT_EQ(0, r.exit_code) << r.output << "\n" << slurp(metrics_);
  }
  // prologue, a file of `bytes` written by the job's user, epilogue; the record.
  Json job_cycle(const std::string& job, size_t bytes) {
    RunResult pro = sc({"prologue", "--job", job, "--uid", "60001", "--gid", "60001"});
    EXPECT_EQ(0, pro.exit_code) << pro.output;
    const std::string id = read_id(backing(job));
    track(id);
    EXPECT_EQ(1, samples()["scratchcrypt_volumes_live"]) << slurp(metrics_);
    const std::string file = mnt(job) + "/data";
    const std::string data(bytes, 'd');
    auto w = sctest::as_user(60001, 60001, [&]() -> long {
      int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
      if (fd < 0) return -1;
      long n = ::write(fd, data.data(), data.size());
      ::close(fd);
      return n;
    });
    EXPECT_EQ(static_cast<long>(bytes), w.value);
    RunResult epi = sc({"epilogue", "--job", job});
    EXPECT_EQ(0, epi.exit_code) << epi.output;
    auto rec = wait_record(id, 10s);
    EXPECT_TRUE(rec.has_value()) << "no record for job " << job;
    return rec ? *rec : Json{};
  }
  static std::string read_id(const std::string& backing_dir) {
    std::istringstream in(slurp(backing_dir + "/.scratchcrypt-volume"));
    for (std::string line; std::getline(in, line);) {
      if (line.rfind("id ", 0) == 0) return line.substr(3);
    }
    return "";
  }

  std::string metrics_dir_, metrics_;
};

TEST_F(MetricsTest, ValuesFollowRealJobsAndCountersSurviveRotationAndRewrites) {
  const Json first = job_cycle("11", 200000);
  auto s = wait_for("scratchcrypt_wipes_total{outcome=\"complete\"}", 1);
  EXPECT_EQ(0, s["scratchcrypt_wipes_total{outcome=\"failed\"}"]);
  EXPECT_EQ(0, s["scratchcrypt_volumes_live"]);
  EXPECT_GE(first.num("bytes_removed"), 200000);
  EXPECT_EQ(first.num("bytes_removed"), s["scratchcrypt_wipe_removed_bytes_total"]);
  EXPECT_EQ(first.num("files_removed"), s["scratchcrypt_wipe_removed_files_total"]);
  EXPECT_NEAR(first.num("crypto_erase_ms") / 1000, s["scratchcrypt_last_crypto_erase_duration_seconds"], 1e-9);
  EXPECT_NEAR(first.num("duration_ms") / 1000, s["scratchcrypt_last_wipe_duration_seconds"], 1e-9);
  EXPECT_NEAR(iso_seconds(first.str("started")), s["scratchcrypt_last_wipe_timestamp_seconds"], 1e-3);
  EXPECT_EQ(0, s["scratchcrypt_last_wipe_failure_timestamp_seconds"]);
  EXPECT_EQ(1, s["scratchcrypt_wipe_duration_seconds_count"]);
  EXPECT_EQ(1, s["scratchcrypt_crypto_erase_duration_seconds_bucket{le=\"+Inf\"}"]);
  EXPECT_NEAR(first.num("crypto_erase_ms") / 1000, s["scratchcrypt_crypto_erase_duration_seconds_sum"], 1e-9);
  EXPECT_EQ(-1, s["scratchcrypt_health_problems"]) << "health has not run yet";
  expect_valid_format();

  const Json second = job_cycle("12", 50000);
  s = wait_for("scratchcrypt_wipes_total{outcome=\"complete\"}", 2);
  EXPECT_EQ(first.num("bytes_removed") + second.num("bytes_removed"), s["scratchcrypt_wipe_removed_bytes_total"]);
  EXPECT_EQ(2, s["scratchcrypt_crypto_erase_duration_seconds_count"]);
  EXPECT_NEAR((first.num("duration_ms") + second.num("duration_ms")) / 1000,
              s["scratchcrypt_wipe_duration_seconds_sum"], 1e-9);

  // logrotate moves the record log away: the totals carry on.
  ASSERT_EQ(0, ::rename(record_log_.c_str(), (record_log_ + ".1").c_str()));
  const Json third = job_cycle("13", 1000);
  s = wait_for("scratchcrypt_wipes_total{outcome=\"complete\"}", 3);
  EXPECT_EQ(first.num("bytes_removed") + second.num("bytes_removed") + third.num("bytes_removed"),
            s["scratchcrypt_wipe_removed_bytes_total"]);
  EXPECT_NEAR(iso_seconds(third.str("started")), s["scratchcrypt_last_wipe_timestamp_seconds"], 1e-3);

  // A lost metrics file is rewritten with the same totals by the next update.
  ASSERT_EQ(0, ::unlink(metrics_.c_str()));
  RunResult h = sc({"health"});
  EXPECT_EQ(0, h.exit_code) << h.output;
  s = wait_for("scratchcrypt_wipes_total{outcome=\"complete\"}", 3);
  EXPECT_EQ(0, s["scratchcrypt_health_problems"]);
  EXPECT_NEAR(static_cast<double>(::time(nullptr)), s["scratchcrypt_health_check_timestamp_seconds"], 10);
  expect_valid_format();

  // Written atomically: nothing but the file and its state is left beside it.
  std::set<std::string> names;
  if (DIR* d = ::opendir(metrics_dir_.c_str())) {
    while (dirent* e = ::readdir(d)) {
      if (e->d_name[0] != '.') names.insert(e->d_name);
    }
    ::closedir(d);
  }
  EXPECT_EQ((std::set<std::string>{"scratchcrypt.prom", "scratchcrypt.prom.state"}), names);
}

TEST_F(MetricsTest, AFailedWipeIsCountedWithItsTimeAndHealthProblemsShow) {
  RunResult pro = sc({"prologue", "--job", "21", "--uid", "60001", "--gid", "60001"});
  ASSERT_EQ(0, pro.exit_code) << pro.output;
  const std::string id = read_id(backing("21"));
  track(id);
  ASSERT_TRUE(spit(mnt("21") + "/f", "will not be deletable"));
  std::string pinned;
  for (const auto& f : files_under(backing("21"))) {
    if (f.find(".scratchcrypt-volume") == std::string::npos) pinned = f;
  }
  ASSERT_FALSE(pinned.empty());
  ASSERT_TRUE(set_immutable(pinned, true)) << "chattr +i is not supported under /tmp";

  RunResult epi = sc({"epilogue", "--job", "21"});
  const std::string trash = backing_root_ + "/.wiped-" + id;
  const std::string moved = trash + pinned.substr(backing("21").size());
  set_immutable(moved, false);  // first, so that teardown can delete it whatever follows
  EXPECT_NE(0, epi.exit_code) << epi.output;
  auto rec = wait_record(id, 10s);
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ("failed", rec->str("outcome"));
  auto s = wait_for("scratchcrypt_wipes_total{outcome=\"failed\"}", 1);
  EXPECT_EQ(0, s["scratchcrypt_wipes_total{outcome=\"complete\"}"]);
  EXPECT_NEAR(iso_seconds(rec->str("started")), s["scratchcrypt_last_wipe_failure_timestamp_seconds"], 1e-3);
  expect_valid_format();

  // The unfinished deletion is a health problem, counted in the file.
  RunResult h = sc({"health"});
  EXPECT_EQ(1, h.exit_code) << h.output;
  EXPECT_TRUE(contains(h.output, "unfinished deletion: " + trash)) << h.output;
  s = samples();
  EXPECT_LE(1, s["scratchcrypt_health_problems"]) << slurp(metrics_);

  // Once the deletion is finished (the next job end does it) it is counted
  // as a completed wipe; the failure time stays.
  RunResult next = sc({"epilogue", "--job", "22"});
  EXPECT_EQ(0, next.exit_code) << next.output;
  s = wait_for("scratchcrypt_wipes_total{outcome=\"complete\"}", 1);
  EXPECT_EQ(1, s["scratchcrypt_wipes_total{outcome=\"failed\"}"]);
  EXPECT_NEAR(iso_seconds(rec->str("started")), s["scratchcrypt_last_wipe_failure_timestamp_seconds"], 1e-3);
}

}  // namespace
}  // namespace lctest
