#include "crypto/keyring.h"

#include <linux/keyctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace scratchcrypt::keyring {

namespace {

using KeySerial = int32_t;
constexpr const char* kKeyType = "user";
constexpr std::string_view kDescriptionPrefix = "scratchcrypt:";

// The owner (uid 0) may do everything; group and others nothing; a possessor
// may only see that the key exists. Possession alone must not grant reading:
// a job process that inherited a root session keyring linking root's user
// keyring possesses the key, but is not uid 0.
constexpr uint32_t kPermissions = 0x013f0000;  // KEY_POS_VIEW | KEY_USR_ALL

long keyctl(int op, unsigned long a2, unsigned long a3 = 0, unsigned long a4 = 0,
            unsigned long a5 = 0) {
  return syscall(SYS_keyctl, op, a2, a3, a4, a5);
}

std::string description(std::string_view volume_id) {
  return std::string(kDescriptionPrefix) + std::string(volume_id);
}

std::optional<KeySerial> find(std::string_view volume_id) {
  const std::string desc = description(volume_id);
  long serial = keyctl(KEYCTL_SEARCH, KEY_SPEC_USER_KEYRING,
                       reinterpret_cast<unsigned long>(kKeyType),
                       reinterpret_cast<unsigned long>(desc.c_str()), 0);
  if (serial < 0) return std::nullopt;
  return static_cast<KeySerial>(serial);
}

[[noreturn]] void fail(const std::string& what) {
  throw std::runtime_error(what + ": " + std::strerror(errno) +
                           " (is the kernel keyring available to root here?)");
}

}  // namespace

// add_key(2) cannot take permissions: a new key gets the default ones, which
// let every possessor read it. So the key is made in this thread's own
// keyring, which no other process possesses, restricted there, and only
// then linked into root's user keyring (where a job that inherited a root
// session keyring possesses it), replacing any key of the same name.
void store(std::string_view volume_id, const VolumeKey& key) {
  const std::string desc = description(volume_id);
  const auto bytes = key.bytes();
  long serial = syscall(SYS_add_key, kKeyType, desc.c_str(), bytes.data(), bytes.size(),
                        KEY_SPEC_THREAD_KEYRING);
  if (serial < 0) fail("cannot store the volume key in the kernel keyring");
  const auto key_serial = static_cast<unsigned long>(serial);
  if (keyctl(KEYCTL_SETPERM, key_serial, kPermissions) < 0 ||
      keyctl(KEYCTL_LINK, key_serial, static_cast<unsigned long>(KEY_SPEC_USER_KEYRING)) < 0) {
    const int err = errno;
    keyctl(KEYCTL_INVALIDATE, key_serial);
    errno = err;
    fail("cannot restrict the volume key's permissions and link it into root's user keyring");
  }
  keyctl(KEYCTL_UNLINK, key_serial, static_cast<unsigned long>(KEY_SPEC_THREAD_KEYRING));
}

std::optional<VolumeKey> load(std::string_view volume_id) {
  auto serial = find(volume_id);
  if (!serial) return std::nullopt;
  SecureBuffer buffer(kVolumeKeyBytes);
  long size = keyctl(KEYCTL_READ, static_cast<unsigned long>(*serial),
                     reinterpret_cast<unsigned long>(buffer.data()), buffer.size());
  if (size < 0) fail("cannot read the volume key from the kernel keyring");
  if (static_cast<size_t>(size) != kVolumeKeyBytes) {
    throw std::runtime_error("the keyring entry for volume " + std::string(volume_id) +
                             " is not a scratchcrypt key");
  }
  return VolumeKey::from_bytes(buffer.bytes());
}

bool remove(std::string_view volume_id) {
  bool removed = false;
  // A key could have been added twice by racing mounts; drop every copy.
  while (auto serial = find(volume_id)) {
    if (keyctl(KEYCTL_INVALIDATE, static_cast<unsigned long>(*serial)) < 0 &&
        keyctl(KEYCTL_UNLINK, static_cast<unsigned long>(*serial),
               static_cast<unsigned long>(KEY_SPEC_USER_KEYRING)) < 0) {
      fail("cannot remove the volume key from the kernel keyring");
    }
    removed = true;
  }
  return removed;
}

std::vector<std::string> list() {
  std::vector<KeySerial> serials(256);
  for (;;) {
    long bytes = keyctl(KEYCTL_READ, static_cast<unsigned long>(KEY_SPEC_USER_KEYRING),
                        reinterpret_cast<unsigned long>(serials.data()),
                        serials.size() * sizeof(KeySerial));
    if (bytes < 0) fail("cannot list root's user keyring");
    if (static_cast<size_t>(bytes) <= serials.size() * sizeof(KeySerial)) {
      serials.resize(static_cast<size_t>(bytes) / sizeof(KeySerial));
      break;
    }
    serials.resize(static_cast<size_t>(bytes) / sizeof(KeySerial));
  }
  std::vector<std::string> ids;
  for (KeySerial serial : serials) {
    char desc[512];
    long n = keyctl(KEYCTL_DESCRIBE, static_cast<unsigned long>(serial),
                    reinterpret_cast<unsigned long>(desc), sizeof desc - 1);
    if (n <= 0) continue;
    desc[std::min<long>(n, sizeof desc - 1)] = '\0';
    // "type;uid;gid;perm;description"
    std::string_view text(desc);
    if (text.substr(0, 5) != "user;") continue;
    auto last = text.rfind(';');
    auto name = text.substr(last + 1);
    if (name.substr(0, kDescriptionPrefix.size()) == kDescriptionPrefix) {
      ids.emplace_back(name.substr(kDescriptionPrefix.size()));
    }
  }
  return ids;
}

}  // namespace scratchcrypt::keyring
