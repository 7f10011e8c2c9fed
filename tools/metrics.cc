#include "tools/metrics.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cerrno>
#include <cstdio>
#include <ctime>
#include <map>
#include <sstream>
#include <thread>

#include "fuse/error.h"
#include "fuse/log.h"
#include "fuse/mounts.h"
#include "fuse/registry.h"
#include "fuse/unique_fd.h"
#include "tools/holders.h"
#include "tools/make_dirs.h"
#include "tools/wipe_record.h"

namespace scratchcrypt {

namespace {

// Histogram bucket bounds, in seconds. Crypto-erase is the part a job end
// waits for (unmount, daemon exit, key invalidation): milliseconds normally.
// The whole wipe includes deleting the ciphertext: seconds for big trees.
constexpr std::array<double, 9> kEraseBuckets = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};
constexpr std::array<double, 10> kWipeBuckets = {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120};

// The totals, as kept in the state file: "name value" lines of integers
// (durations in milliseconds, times in unix milliseconds).
using State = std::map<std::string, int64_t>;

State parse_state(const std::string& text) {
  State state;
  std::istringstream in(text);
  std::string name;
  long long value;
  while (in >> name >> value) state[name] = value;
  return state;
}

std::string read_all(int fd) {
  std::string text;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) text.append(buf, static_cast<size_t>(n));
  return text;
}

int64_t number(const std::string& text) {
  return text.empty() ? 0 : std::strtoll(text.c_str(), nullptr, 10);
}

// "2026-11-24T08:55:06.006Z" -> unix milliseconds (0 when empty or malformed).
int64_t parse_iso_ms(const std::string& text) {
  tm t = {};
  int ms = 0;
  if (std::sscanf(text.c_str(), "%d-%d-%dT%d:%d:%d.%dZ", &t.tm_year, &t.tm_mon, &t.tm_mday,
                  &t.tm_hour, &t.tm_min, &t.tm_sec, &ms) != 7) {
    return 0;
  }
  t.tm_year -= 1900;
  t.tm_mon -= 1;
  return static_cast<int64_t>(::timegm(&t)) * 1000 + ms;
}

template <size_t N>
void observe(State& state, const std::string& name, const std::array<double, N>& bounds,
             int64_t ms) {
  for (size_t i = 0; i < N; ++i) {
    if (static_cast<double>(ms) / 1000.0 <= bounds[i]) ++state[name + "_bucket_" + std::to_string(i)];
  }
  ++state[name + "_count"];
  state[name + "_sum_ms"] += ms;
}

// Counts one wipe record into the totals.
void count_record(State& state, const std::string& line) {
  const std::string outcome = json_field(line, "outcome");
  if (outcome.empty()) return;  // not a record
  const bool failed = outcome != "complete";
  ++state[failed ? "wipes_failed" : "wipes_complete"];
  state["bytes_removed"] += number(json_field(line, "bytes_removed"));
  state["files_removed"] += number(json_field(line, "files_removed"));
  const int64_t erase_ms = number(json_field(line, "crypto_erase_ms"));
  const int64_t wipe_ms = number(json_field(line, "duration_ms"));
  const int64_t started = parse_iso_ms(json_field(line, "started"));
  observe(state, "erase", kEraseBuckets, erase_ms);
  state["last_erase_ms"] = erase_ms;
  if (!json_field(line, "deletion_finished").empty()) {
    observe(state, "wipe", kWipeBuckets, wipe_ms);
    state["last_wipe_ms"] = wipe_ms;
  }
  state["last_wipe_time_ms"] = started;
  if (failed) state["last_failure_time_ms"] = started;
}

// Counts the records appended to the log since the state's offset.
void catch_up(State& state, const std::string& log_path) {
  UniqueFd fd(::open(log_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return;  // no wipe yet
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return;
  int64_t offset = state["log_offset"];
  if (state["log_dev"] != static_cast<int64_t>(st.st_dev) ||
      state["log_ino"] != static_cast<int64_t>(st.st_ino) || offset > st.st_size) {
    offset = 0;  // a new or rotated log: its records are all new
  }
  if (::lseek(fd.get(), offset, SEEK_SET) < 0) return;
  const std::string text = read_all(fd.get());
  size_t start = 0;
  for (size_t end; (end = text.find('\n', start)) != std::string::npos; start = end + 1) {
    count_record(state, text.substr(start, end - start));
  }
  state["log_dev"] = static_cast<int64_t>(st.st_dev);
  state["log_ino"] = static_cast<int64_t>(st.st_ino);
  state["log_offset"] = offset + static_cast<int64_t>(start);  // a partial last line waits
}

// Registered volumes whose daemon runs and whose mount point is mounted.
int live_volumes() {
  int live = 0;
  for (const auto& r : registered_volumes()) {
    if (process_alive(r.pid) && mount_at(r.mountpoint)) ++live;
  }
  return live;
}

std::string seconds(int64_t ms) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", static_cast<double>(ms) / 1000.0);
  return buf;
}

std::string bound_text(double bound) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", bound);
  return buf;
}

template <size_t N>
void histogram(std::ostringstream& out, const State& s, const std::string& metric,
               const std::string& key, const std::array<double, N>& bounds,
               const std::string& help) {
  auto get = [&](const std::string& name) {
    auto it = s.find(name);
    return it == s.end() ? int64_t{0} : it->second;
  };
  out << "# HELP " << metric << " " << help << "\n# TYPE " << metric << " histogram\n";
  for (size_t i = 0; i < N; ++i) {
    out << metric << "_bucket{le=\"" << bound_text(bounds[i]) << "\"} "
        << get(key + "_bucket_" + std::to_string(i)) << "\n";
  }
  out << metric << "_bucket{le=\"+Inf\"} " << get(key + "_count") << "\n"
      << metric << "_sum " << seconds(get(key + "_sum_ms")) << "\n"
      << metric << "_count " << get(key + "_count") << "\n";
}

std::string exposition(const State& s, int live) {
  auto get = [&](const std::string& name, int64_t fallback = 0) {
    auto it = s.find(name);
    return it == s.end() ? fallback : it->second;
  };
  std::ostringstream out;
  auto metric = [&](const std::string& name, const char* type, const std::string& help,
                    const std::string& value) {
    out << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n"
        << name << " " << value << "\n";
  };
  metric("scratchcrypt_volumes_live", "gauge",
         "Volumes mounted on this node and served by a live daemon.", std::to_string(live));
  out << "# HELP scratchcrypt_wipes_total Volumes ended (wipe, epilogue, sweep, retried "
         "deletion), by outcome of their wipe record.\n"
         "# TYPE scratchcrypt_wipes_total counter\n"
      << "scratchcrypt_wipes_total{outcome=\"complete\"} " << get("wipes_complete") << "\n"
      << "scratchcrypt_wipes_total{outcome=\"failed\"} " << get("wipes_failed") << "\n";
  metric("scratchcrypt_wipe_removed_bytes_total", "counter",
         "Bytes of ciphertext files deleted by wipes.", std::to_string(get("bytes_removed")));
  metric("scratchcrypt_wipe_removed_files_total", "counter",
         "Ciphertext files deleted by wipes.", std::to_string(get("files_removed")));
  histogram(out, s, "scratchcrypt_crypto_erase_duration_seconds", "erase", kEraseBuckets,
            "Time from a wipe's start until the key was destroyed and the mount gone.");
  histogram(out, s, "scratchcrypt_wipe_duration_seconds", "wipe", kWipeBuckets,
            "Time from a wipe's start until its ciphertext was deleted.");
  metric("scratchcrypt_last_crypto_erase_duration_seconds", "gauge",
         "Crypto-erase time of the last wipe.", seconds(get("last_erase_ms")));
  metric("scratchcrypt_last_wipe_duration_seconds", "gauge",
         "Whole duration of the last wipe whose deletion finished.", seconds(get("last_wipe_ms")));
  metric("scratchcrypt_last_wipe_timestamp_seconds", "gauge",
         "Unix time at which the last wipe started (0: none yet).",
         seconds(get("last_wipe_time_ms")));
  metric("scratchcrypt_last_wipe_failure_timestamp_seconds", "gauge",
         "Unix time at which the last failed wipe started (0: none).",
         seconds(get("last_failure_time_ms")));
  metric("scratchcrypt_health_problems", "gauge",
         "Problems the last `scratchcrypt health` found (-1: not run yet).",
         std::to_string(get("health_problems", -1)));
  metric("scratchcrypt_health_check_timestamp_seconds", "gauge",
         "Unix time of the last `scratchcrypt health` (0: not run yet).",
         seconds(get("health_time_ms")));
  return out.str();
}

std::string state_text(const State& state) {
  std::string text;
  for (const auto& [name, value] : state) text += name + " " + std::to_string(value) + "\n";
  return text;
}

// Writes `data` to `path` atomically: a temporary file beside it, fsync,
// rename. (The caller fsyncs the directory once for both files.)
void replace_file(const std::string& path, const std::string& data, mode_t mode) {
  std::string tmp = path + ".XXXXXX";
  UniqueFd fd(::mkstemp(tmp.data()));
  if (!fd.valid()) throw Error(errno_text("cannot create a temporary file beside " + path, errno));
  bool ok = ::fchmod(fd.get(), mode) == 0 &&
            ::write(fd.get(), data.data(), data.size()) == static_cast<ssize_t>(data.size()) &&
            ::fsync(fd.get()) == 0;
  const int err = errno;
  fd.reset();
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = ok ? errno : err;
    ::unlink(tmp.c_str());
    throw Error(errno_text("cannot write " + path, e));
  }
}

// The state file, opened and exclusively locked; reopened when another
// writer replaced it while we waited. Gives up after a while rather than
// hold up a job's start or end: a skipped update loses nothing, the next
// one counts the records from the state's offset on.
UniqueFd lock_state(const std::string& path) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (;;) {
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!fd.valid()) throw Error(errno_text("cannot open " + path, errno));
    if (::flock(fd.get(), LOCK_EX | LOCK_NB) == 0) {
      struct stat held, current;
      if (::fstat(fd.get(), &held) == 0 && ::stat(path.c_str(), &current) == 0 &&
          held.st_ino == current.st_ino && held.st_dev == current.st_dev) {
        return fd;
      }
    } else if (errno != EWOULDBLOCK) {
      throw Error(errno_text("cannot lock " + path, errno));
    }
    if (std::chrono::steady_clock::now() > deadline) {
      throw Error("another update held " + path + " for 10 s; skipped this one");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace

void update_metrics(const Config& config, std::optional<int> health_problems) {
  if (config.metrics_file.empty()) return;
  try {
    try_make_dirs(parent_dir(config.metrics_file), 0755);
    const std::string state_path = config.metrics_file + ".state";
    UniqueFd lock = lock_state(state_path);
    State state = parse_state(read_all(lock.get()));
    catch_up(state, config.record_log);
    if (health_problems) {
      state["health_problems"] = *health_problems;
      state["health_time_ms"] = now_ms();
    }
    replace_file(state_path, state_text(state), 0600);
    replace_file(config.metrics_file, exposition(state, live_volumes()), 0644);
    UniqueFd dir(::open(parent_dir(state_path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (dir.valid()) ::fsync(dir.get());  // both renames survive a crash
  } catch (const std::exception& e) {
    log::warning("metrics not updated: " + std::string(e.what()));
  }
}

}  // namespace scratchcrypt
