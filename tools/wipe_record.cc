#include "tools/wipe_record.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <ctime>
#include <sstream>

#include "fuse/error.h"
#include "fuse/mounts.h"
#include "fuse/registry.h"
#include "tools/make_dirs.h"

namespace scratchcrypt {

int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

std::string iso_time(int64_t unix_ms) {
  if (unix_ms == 0) return "";
  time_t seconds = static_cast<time_t>(unix_ms / 1000);
  tm utc;
  ::gmtime_r(&seconds, &utc);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", utc.tm_year + 1900,
                utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec,
                static_cast<int>(unix_ms % 1000));
  return buf;
}

std::string to_json(const WipeRecord& r) {
  auto text = [](const std::string& s) { return "\"" + json_escape(s) + "\""; };
  std::ostringstream out;
  out << "{\"event\": " << text(r.event) << ", \"volume\": " << text(r.volume)
      << ", \"job\": " << text(r.job) << ", \"uid\": " << r.uid
      << ", \"backing\": " << text(r.backing) << ", \"mountpoint\": " << text(r.mountpoint)
      << ", \"started\": " << text(iso_time(r.started_ms))
      << ", \"crypto_erased\": " << text(iso_time(r.crypto_erased_ms))
      << ", \"deletion_finished\": " << text(iso_time(r.deletion_finished_ms))
      << ", \"crypto_erase_ms\": " << (r.crypto_erased_ms ? r.crypto_erased_ms - r.started_ms : 0)
      << ", \"duration_ms\": "
      << (r.deletion_finished_ms ? r.deletion_finished_ms - r.started_ms : 0)
      << ", \"files_removed\": " << r.files_removed << ", \"bytes_removed\": " << r.bytes_removed
      << ", \"forced\": " << (r.forced ? "true" : "false")
      << ", \"holders_cut_off\": " << r.holders_cut_off
      << ", \"key_destroyed\": " << (r.key_found ? "true" : "false")
      << ", \"trim\": " << text(r.trim) << ", \"verified\": " << (r.verified ? "true" : "false")
      << ", \"outcome\": " << text(r.outcome);
  if (!r.error.empty()) out << ", \"error\": " << text(r.error);
  out << "}";
  return out.str();
}

void append_record(const std::string& log_path, const WipeRecord& record) {
  try_make_dirs(parent_dir(log_path), 0750);  // if that fails, open() says why
  int fd = ::open(log_path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) throw Error(errno_text("cannot open the wipe record log " + log_path, errno));
  const std::string line = to_json(record) + "\n";
  ::flock(fd, LOCK_EX);
  const bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size()) &&
                  ::fsync(fd) == 0;
  const int err = errno;
  ::close(fd);
  if (!ok) throw Error(errno_text("cannot append to the wipe record log " + log_path, err));
}

}  // namespace scratchcrypt
