// VolumeKey: the 512-bit secret of one scratch volume, and the KDF that turns
// it into one subkey per purpose.
//
// The key is made from the kernel CSPRNG (libsodium randombytes, which uses
// getrandom(2)), lives only in a SecureBuffer, and is zeroized by destroy()
// or the destructor. Subkeys (docs/FORMAT.md, "Key derivation"):
//
//   subkey(purpose, n) = BLAKE2b(key = volume key, digest_size = n,
//                                message = "scratchcrypt/v1/" + purpose)
//
// No subkey serves two purposes; the volume key itself encrypts nothing.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "crypto/secure_buffer.h"

namespace scratchcrypt {

inline constexpr size_t kVolumeKeyBytes = 64;
inline constexpr size_t kKeyCheckBytes = 16;

// The purposes of the subkeys, as written into the KDF message.
namespace purpose {
inline constexpr std::string_view kContents = "contents";  // AES-256-XTS, 64 B
inline constexpr std::string_view kTail = "tail";          // AES-256, 32 B
inline constexpr std::string_view kNames = "names";        // AES-256-SIV, 64 B
inline constexpr std::string_view kKeyCheck = "key-check"; // public, 16 B
}  // namespace purpose

class VolumeKey {
 public:
  // A fresh random key from the kernel CSPRNG.
  static VolumeKey generate();
  // Reads exactly kVolumeKeyBytes from fd (a pipe or file handed over by a
  // key service). Throws if fewer bytes arrive.
  static VolumeKey read_from_fd(int fd);
  // Copies key bytes (e.g. from the kernel keyring). Size must match.
  static VolumeKey from_bytes(std::span<const uint8_t> bytes);

  VolumeKey(VolumeKey&&) noexcept = default;
  VolumeKey& operator=(VolumeKey&&) noexcept = default;

  // The subkey for one purpose, 16..64 bytes long, in locked memory.
  SecureBuffer derive(std::string_view purpose, size_t length) const;

  // A public value that identifies the key without revealing it; stored in
  // the volume header so that a wrong key is refused instead of producing
  // garbage.
  std::array<uint8_t, kKeyCheckBytes> check_value() const;

  std::span<const uint8_t> bytes() const { return secret_.bytes(); }

  // Crypto-erase: zeroizes the key. Any later derive() throws.
  void destroy();
  bool destroyed() const { return secret_.is_zero(); }

 private:
  explicit VolumeKey(SecureBuffer secret) : secret_(std::move(secret)) {}
  SecureBuffer secret_;
};

}  // namespace scratchcrypt
