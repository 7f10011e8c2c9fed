// Logging for the daemon and the commands: stderr in the foreground, syslog
// (daemon facility) once daemonized. Messages name the volume, never a file
// name, a path inside the volume, or any key material.
#pragma once

#include <string>

namespace scratchcrypt::log {

// Sends later messages to syslog, tagged "scratchcrypt".
void use_syslog();
void set_volume(const std::string& volume_id);

void info(const std::string& message);
void warning(const std::string& message);
void error(const std::string& message);

}  // namespace scratchcrypt::log
