#include "crypto/volume_key.h"

#include <sodium.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace scratchcrypt {

namespace {
constexpr std::string_view kKdfPrefix = "scratchcrypt/v1/";
}

VolumeKey VolumeKey::generate() {
  SecureBuffer secret(kVolumeKeyBytes);
  randombytes_buf(secret.data(), secret.size());
  return VolumeKey(std::move(secret));
}

VolumeKey VolumeKey::read_from_fd(int fd) {
  SecureBuffer secret(kVolumeKeyBytes);
  size_t got = 0;
  while (got < secret.size()) {
    ssize_t n = ::read(fd, secret.data() + got, secret.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      throw std::runtime_error(std::string("cannot read the volume key from fd ") +
                               std::to_string(fd) + ": " + std::strerror(errno));
    }
    if (n == 0) {
      throw std::runtime_error("the key fd gave " + std::to_string(got) +
                               " bytes; a volume key is exactly 64 bytes");
    }
    got += static_cast<size_t>(n);
  }
  return VolumeKey(std::move(secret));
}

VolumeKey VolumeKey::from_bytes(std::span<const uint8_t> bytes) {
  if (bytes.size() != kVolumeKeyBytes) {
    throw std::runtime_error("a volume key is exactly 64 bytes");
  }
  SecureBuffer secret(kVolumeKeyBytes);
  std::memcpy(secret.data(), bytes.data(), bytes.size());
  return VolumeKey(std::move(secret));
}

SecureBuffer VolumeKey::derive(std::string_view purpose, size_t length) const {
  if (destroyed()) throw std::logic_error("volume key used after destruction");
  if (length < crypto_generichash_BYTES_MIN || length > crypto_generichash_BYTES_MAX) {
    throw std::invalid_argument("subkey length out of range");
  }
  std::string message(kKdfPrefix);
  message.append(purpose);
  SecureBuffer out(length);
  if (crypto_generichash(out.data(), out.size(),
                         reinterpret_cast<const uint8_t*>(message.data()),
                         message.size(), secret_.data(), secret_.size()) != 0) {
    throw std::runtime_error("key derivation failed");
  }
  return out;
}

std::array<uint8_t, kKeyCheckBytes> VolumeKey::check_value() const {
  SecureBuffer check = derive(purpose::kKeyCheck, kKeyCheckBytes);
  std::array<uint8_t, kKeyCheckBytes> out{};
  std::memcpy(out.data(), check.data(), out.size());
  return out;
}

void VolumeKey::destroy() { secret_.zeroize(); }

}  // namespace scratchcrypt
