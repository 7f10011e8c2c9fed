#include "fuse/fault_injection.h"

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

namespace scratchcrypt {

namespace {

// Read once: the daemon's environment does not change.
const char* fault_file() {
  static const char* const path = [] {
    const char* p = std::getenv("SCRATCHCRYPT_FAULT_FILE");
    return p != nullptr && *p != '\0' ? p : nullptr;
  }();
  return path;
}

}  // namespace

bool fault_injected(const char* point) {
  const char* path = fault_file();
  if (path == nullptr) return false;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line == point) return true;
  }
  return false;
}

}  // namespace scratchcrypt
