// The error convention of scratchcrypt.
//
//  * The FUSE data path returns -errno (or replies with errno), as the kernel
//    expects; it never throws across a FUSE callback.
//  * Everything else (setup, mounting, the command line) throws Error, whose
//    message is written for the operator: what went wrong and what to do.
#pragma once

#include <stdexcept>
#include <string>

namespace scratchcrypt {

class Error : public std::runtime_error {
 public:
  // `exit_code` is what the command exits with (see docs/OPERATIONS.md).
  explicit Error(const std::string& message, int exit_code = 1)
      : std::runtime_error(message), exit_code_(exit_code) {}
  int exit_code() const { return exit_code_; }

 private:
  int exit_code_;
};

// "message: strerror(errno)".
std::string errno_text(const std::string& message, int err);

}  // namespace scratchcrypt
