#include "fuse/log.h"

#include <syslog.h>

#include <atomic>
#include <cstdio>
#include <mutex>

namespace scratchcrypt::log {

namespace {
std::atomic<bool> to_syslog{false};
std::mutex mu;
std::string volume;  // under mu

void emit(int priority, const char* level, const std::string& message) {
  std::lock_guard lock(mu);
  const std::string prefix = volume.empty() ? "" : "volume " + volume + ": ";
  if (to_syslog) {
    ::syslog(priority, "%s%s", prefix.c_str(), message.c_str());
  } else {
    std::fprintf(stderr, "scratchcrypt: %s%s%s\n", level, prefix.c_str(), message.c_str());
  }
}
}  // namespace

void use_syslog() {
  ::openlog("scratchcrypt", LOG_PID | LOG_NDELAY, LOG_DAEMON);
  to_syslog = true;
}

void set_volume(const std::string& volume_id) {
  std::lock_guard lock(mu);
  volume = volume_id;
}

void info(const std::string& message) { emit(LOG_INFO, "", message); }
void warning(const std::string& message) { emit(LOG_WARNING, "warning: ", message); }
void error(const std::string& message) { emit(LOG_ERR, "error: ", message); }

}  // namespace scratchcrypt::log
