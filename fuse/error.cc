#include "fuse/error.h"

#include <cstring>

namespace scratchcrypt {

std::string errno_text(const std::string& message, int err) {
  return message + ": " + std::strerror(err);
}

}  // namespace scratchcrypt
